"""Process models: pure one-profile functions, vmapped over profiles at the call site."""

from . import clm5 as clm5
from . import compas as compas

__all__ = ["clm5", "compas"]
