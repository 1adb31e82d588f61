"""PRODA's network: covariates (60, min-max scaled) -> normalized parameters (SPEC 7).

``Dense(256, relu) -> Dropout -> Dense(512, relu) -> Dropout -> Dense(512, relu) -> Dropout ->
Dense(256, relu) -> Dropout -> Dense(n_par, linear)`` with Keras' default initialisation:
Glorot-uniform weights (``U(-l, l)``, ``l = sqrt(6 / (fan_in + fan_out))``) and zero biases.
Dropout is Keras' inverted dropout (kept units scaled by ``1 / (1 - rate)`` in training,
identity in inference); PRODA uses rate 0 for CLM5 and 0.2 for COMPAS.

The output is linear in PRODA's normalized parameter space (no squashing); prediction clips it
(`soc_jax.proda.predict.clip_parameters`).
"""

from __future__ import annotations

from collections.abc import Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PRNGKeyArray

__all__ = ["HIDDEN", "PRODANet", "glorot_uniform", "make_ensemble", "n_weights"]

HIDDEN: tuple[int, ...] = (256, 512, 512, 256)
"""Hidden widths of PRODA's network (SPEC 7)."""


def glorot_uniform(key: PRNGKeyArray, fan_out: int, fan_in: int, dtype=jnp.float32) -> Array:
    """Keras ``glorot_uniform``: U(-l, l) with ``l = sqrt(6 / (fan_in + fan_out))``.

    Returns:
        (fan_out, fan_in) weight matrix (Equinox's ``Linear.weight`` layout).
    """
    limit = jnp.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, (fan_out, fan_in), dtype, minval=-limit, maxval=limit)


def _linear(key: PRNGKeyArray, n_in: int, n_out: int, dtype) -> eqx.nn.Linear:
    layer = eqx.nn.Linear(n_in, n_out, key=key, dtype=dtype)
    layer = eqx.tree_at(lambda m: m.weight, layer, glorot_uniform(key, n_out, n_in, dtype))
    return eqx.tree_at(lambda m: m.bias, layer, jnp.zeros(n_out, dtype))


class PRODANet(eqx.Module):
    """The PRODA MLP for one ensemble member.

    Attributes:
        layers: the five ``eqx.nn.Linear`` layers (60 -> 256 -> 512 -> 512 -> 256 -> n_par).
        dropout: dropout rate after each hidden layer (static; 0 disables it).
    """

    layers: tuple[eqx.nn.Linear, ...]
    dropout: float = eqx.field(static=True)

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        key: PRNGKeyArray,
        hidden: Sequence[int] = HIDDEN,
        dropout: float = 0.0,
        dtype=jnp.float32,
    ):
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        sizes = (n_in, *hidden, n_out)
        keys = jax.random.split(key, len(sizes) - 1)
        self.layers = tuple(
            _linear(k, a, b, dtype) for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
        )
        self.dropout = float(dropout)

    def __call__(
        self,
        x: Float[Array, " n_in"],
        *,
        key: PRNGKeyArray | None = None,
        training: bool = False,
    ) -> Float[Array, " n_out"]:
        """Normalized parameters (n_out,) from scaled covariates (n_in,) in [0, 1].

        Args:
            x: min-max scaled covariates of one row.
            key: dropout key (needed only when ``training`` and ``dropout > 0``).
            training: apply dropout (Keras' ``training=True``).
        """
        use_dropout = training and self.dropout > 0.0
        if use_dropout and key is None:
            raise ValueError("training with dropout needs a key")
        keys = jax.random.split(key, len(self.layers)) if use_dropout else [None] * len(self.layers)
        for layer, k in zip(self.layers[:-1], keys[:-1], strict=True):
            x = jax.nn.relu(layer(x))
            if use_dropout:
                keep = jax.random.bernoulli(k, 1.0 - self.dropout, x.shape)
                x = jnp.where(keep, x / (1.0 - self.dropout), 0.0)
        return self.layers[-1](x)


def make_ensemble(keys: PRNGKeyArray, n_in: int, n_out: int, **options) -> PRODANet:
    """Stacked members: one `PRODANet` whose array leaves have a leading member axis.

    Member ``i`` equals ``PRODANet(n_in, n_out, key=keys[i], **options)`` exactly; ``options``
    are `PRODANet`'s keywords ``hidden`` (default `HIDDEN`), ``dropout`` (0) and ``dtype``
    (float32).
    """
    make = eqx.filter_vmap(lambda k: PRODANet(n_in, n_out, key=k, **options))
    return eqx.filter_jit(make)(keys)  # one compiled call instead of eager vmapped ops


def n_weights(model: PRODANet) -> int:
    """Number of trainable scalars of one member."""
    return sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_array)))
