"""The model registry and the ONE definition of a failed model evaluation.

* `MODELS`: the process-model names soc_jax knows (``"clm5"``, ``"compas"``).
* `get_model`: name -> module (`soc_jax.models.clm5` or `soc_jax.models.compas`); an unknown
  name raises a ``ValueError`` that lists `MODELS`.
* `is_failure`: True where a steady state failed: any flag of `soc_jax.models.common`
  (``not result.ok``) or a non-finite modelled SOC in any layer. Calibration
  (`soc_jax.calibration`), the PRODA network (`soc_jax.proda`) and the analyses
  (`soc_jax.analysis`) all use it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["MODELS", "get_model", "is_failure"]

MODELS: tuple[str, ...] = ("clm5", "compas")
"""Process models soc_jax knows, by name."""


def get_model(name: str) -> ModuleType:
    """The process-model module of ``name`` (one of `MODELS`).

    Raises:
        ValueError: ``name`` is not one of `MODELS`.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: model must be one of {', '.join(MODELS)}")
    return importlib.import_module(f"soc_jax.models.{name}")


def is_failure(result: Any) -> Array:
    """True where a steady-state evaluation failed (the ONE definition soc_jax uses).

    Failed means ``not result.ok`` (any flag of `soc_jax.models.common`: bad input, outside the
    prior, nearly singular, not solvable, negative or microbial-ratio COMPAS pools) or any
    non-finite ``result.soc`` (gC m-3) in the last (layer) axis.

    Args:
        result: a steady state with ``ok`` (...,) and ``soc`` (..., n_layers).

    Returns:
        Boolean array of shape ``result.ok.shape``.
    """
    return jnp.logical_not(result.ok) | ~jnp.all(jnp.isfinite(result.soc), axis=-1)
