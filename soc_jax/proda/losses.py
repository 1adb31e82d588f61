"""PRODA's training losses, exactly as coded (SPEC 7), with row weights for padded batches.

- CLM5 ("joint", L2 x L1): ``(500 mean((y - y_hat)^2)) * (25 mean(|(y - y_hat) / y|))``;
- COMPAS: ``500 mean((y - y_hat)^2)``.

Means run over every element of the batch (rows x parameters), as Keras' ``K.mean`` does. Row
weights ``w`` (1 for a real row, 0 for padding) make a padded batch of 32 give the loss of its
real rows only: ``mean`` becomes ``sum(w e) / (sum(w) n_par)``. Targets ``y`` are normalized
parameters in (0, 1]; the relative term divides by ``y`` (PRODA clips targets away from 0 by
construction; a zero target would give an infinite loss, as in Keras).
"""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = ["LOSSES", "clm5_loss", "compas_loss", "get_loss"]


def _weighted_mean(e: Array, w: Array | None) -> Array:
    if w is None:
        return jnp.mean(e)
    w = jnp.asarray(w, e.dtype)
    return jnp.sum(w[:, None] * e) / (jnp.maximum(jnp.sum(w), 1.0) * e.shape[-1])


def clm5_loss(
    y: Float[ArrayLike, "n p"], y_hat: Float[ArrayLike, "n p"], w: ArrayLike | None = None
) -> Float[Array, ""]:
    """CLM5 joint loss ``(500 mean((y - y_hat)^2)) * (25 mean(|(y - y_hat)/y|))`` (dimensionless).

    Args:
        y: targets, normalized parameters (n, p).
        y_hat: network outputs (n, p).
        w: optional row weights (n,), 1 real / 0 padding.
    """
    y, y_hat = jnp.asarray(y), jnp.asarray(y_hat)
    r = y - y_hat
    safe_y = jnp.where(y == 0, 1.0, y) if w is not None else y
    rel = jnp.abs(r / safe_y)
    if w is not None:  # padded rows may hold y = 0: keep their (zero-weighted) terms finite
        rel = jnp.where(jnp.asarray(w)[:, None] > 0, rel, 0.0)
    return (500.0 * _weighted_mean(r * r, w)) * (25.0 * _weighted_mean(rel, w))


def compas_loss(
    y: Float[ArrayLike, "n p"], y_hat: Float[ArrayLike, "n p"], w: ArrayLike | None = None
) -> Float[Array, ""]:
    """COMPAS loss ``500 mean((y - y_hat)^2)`` (dimensionless); arguments as `clm5_loss`."""
    r = jnp.asarray(y) - jnp.asarray(y_hat)
    return 500.0 * _weighted_mean(r * r, w)


LOSSES: dict[str, Callable] = {"clm5": clm5_loss, "compas": compas_loss}
"""Loss per process model (PRODA: CLM5 joint, COMPAS L2)."""


def get_loss(name: str) -> Callable:
    """The loss function named ``"clm5"`` or ``"compas"``."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]
