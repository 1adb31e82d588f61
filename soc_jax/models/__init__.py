"""Process models: pure one-profile functions, vmapped over profiles at the call site.

`get_model` (name -> module), `MODELS` and `is_failure` (the one definition of a failed
steady state) live in `soc_jax.models.registry`.
"""

from . import clm5 as clm5
from . import compas as compas
from .registry import MODELS, get_model, is_failure

__all__ = ["MODELS", "clm5", "compas", "get_model", "is_failure"]
