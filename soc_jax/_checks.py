"""Small host-side guards shared by the models."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import numpy as np

if TYPE_CHECKING:
    from .parameters import ParameterSpace


def is_concrete(*trees: Any) -> bool:
    """True if no leaf of ``trees`` is a JAX tracer (we are not inside jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def require_x64(what: str) -> None:
    """Fail loudly instead of silently solving stiff, ill-conditioned systems in float32."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs float64: call jax.config.update('jax_enable_x64', True) at the start "
            "of your program (before creating arrays). soc_jax does not change this global "
            "setting on import."
        )


def validate_profile_inputs(
    space: ParameterSpace, params: Any, forcing: Any, *, within_prior: bool
) -> None:
    """Checks of one profile's (params, forcing).

    Shapes are static, so they are checked inside ``jit`` and ``vmap`` too; values only for
    concrete (untraced) inputs.

    Args:
        space: the model's parameter space.
        params: physical parameter vector, shape (n,).
        forcing: a `Forcing` (values checked) or a prepared profile (checked by ``prepare``).

    Raises:
        ValueError: naming the parameter, the forcing field or the shape that is wrong.
    """
    from .forcing import Forcing

    shape = np.shape(params)
    if len(shape) != 1 or shape[0] != len(space):
        raise ValueError(
            f"params must be one ({len(space)},) vector of physical values per profile "
            f"({', '.join(space.names)}; vmap for batches), got shape {shape}"
        )
    if isinstance(forcing, Forcing) and forcing.batch_shape != ():
        raise ValueError(
            "forcing must be one profile (fields without a batch axis; vmap for batches), got "
            f"batch shape {forcing.batch_shape}"
        )
    if not is_concrete(params, forcing):
        return
    space.validate_physical(params, within_prior=within_prior)
    if isinstance(forcing, Forcing):
        forcing.validate()
