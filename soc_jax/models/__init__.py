"""Process models: pure one-profile functions, vmapped over profiles at the call site."""

from . import clm5 as clm5

__all__ = ["clm5"]
