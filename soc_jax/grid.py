"""The 20-layer CLM5 vertical soil grid, depth integration and PCHIP interpolation.

The grid is CLM's ``nlevgrnd`` grid (25 entries); CLM5 and COMPAS use layers 1..20 (to 8.60 m),
and the Patankar transport builder also reads entry 21. Arrays here are 0-based numpy constants:
``DZ[j]`` is the thickness of layer ``j + 1`` in CLM's 1-based numbering.

Depth integration follows the post-DA scripts of PRODA (SPEC 1.10): full layers above the cut plus
the fraction of the layer that contains the cut. Model-to-observation interpolation is MATLAB's
``interp1(zsoi, soc, depth, 'pchip')`` (SPEC 1.11): Fritsch-Carlson monotone slopes, one-sided
three-point end slopes, and cubic extrapolation outside the node range.

References:
    Lawrence et al. (2019), The Community Land Model version 5, JAMES 11, 4245-4287.
    Fritsch & Carlson (1980), Monotone piecewise cubic interpolation, SIAM J. Numer. Anal. 17.
    Tao et al. (2024), Global Change Biology 30:e17297 (PRODA; public code PRODA_PUBLIC).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "N_LAYERS",
    "DZ",
    "ZISOI",
    "ZSOI",
    "DZ_NODE",
    "Stocks",
    "depth_weights",
    "integrate_to_depth",
    "stocks",
    "pchip_interpolate",
]

N_LAYERS: int = 20
"""Number of soil layers used by CLM5 and COMPAS (to 8.60 m)."""

# Layer thickness (m), 25 entries (CLM nlevgrnd). Source: PRODA_PUBLIC matrix_fun.m.
DZ: np.ndarray = np.array(
    [0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.20, 0.24, 0.28, 0.32, 0.36, 0.40, 0.44, 0.54, 0.64,
     0.74, 0.84, 0.94, 1.04, 1.14, 2.39, 4.67553390593274, 7.63519052838329, 11.14,
     15.1154248593737]
)  # fmt: skip
# Bottom interface of each layer (m); zisoi_0 = 0 is the surface. ZISOI = cumsum(DZ).
ZISOI: np.ndarray = np.array(
    [0.02, 0.06, 0.12, 0.20, 0.32, 0.48, 0.68, 0.92, 1.20, 1.52, 1.88, 2.28, 2.72, 3.26, 3.90,
     4.64, 5.48, 6.42, 7.46, 8.60, 10.99, 15.6655339059327, 23.3007244343160, 34.4407244343160,
     49.5561492936897]
)  # fmt: skip
# Node depth (m): layer mid-points for the first 20 layers.
ZSOI: np.ndarray = np.array(
    [0.01, 0.04, 0.09, 0.16, 0.26, 0.40, 0.58, 0.80, 1.06, 1.36, 1.70, 2.08, 2.50, 2.99, 3.58,
     4.27, 5.06, 5.95, 6.94, 8.03, 9.795, 13.3277669529664, 19.4831291701244, 28.8707244343160,
     41.9984368640029]
)  # fmt: skip
# Distance between node j and node j-1 (m), with zsoi_0 = 0 (so DZ_NODE[0] = 0.01).
DZ_NODE: np.ndarray = np.diff(np.concatenate([[0.0], ZSOI]))


def depth_weights(depth: float) -> np.ndarray:
    """Weights ``w`` (m) such that ``sum(w * soc)`` is the stock from the surface to ``depth``.

    Layers wholly above ``depth`` get their thickness; the layer containing ``depth`` gets the
    thickness of its part above the cut (SPEC 1.10); deeper layers get zero.

    Args:
        depth: integration depth in m, 0 < depth <= 8.60.

    Returns:
        Weights of shape (20,), in m.

    Raises:
        ValueError: if ``depth`` is outside (0, 8.60] m.
    """
    top = np.concatenate([[0.0], ZISOI[: N_LAYERS - 1]])
    bottom = ZISOI[:N_LAYERS]
    if not 0.0 < depth <= bottom[-1] + 1e-12:
        raise ValueError(f"depth must be in (0, {bottom[-1]}] m, got {depth}")
    return np.clip(np.minimum(bottom, depth) - top, 0.0, None)


_W30 = depth_weights(0.3)
_W100 = depth_weights(1.0)
_W200 = depth_weights(2.0)
_WTOTAL = DZ[:N_LAYERS].copy()


def integrate_to_depth(soc: Float[ArrayLike, "... 20"], depth: float) -> Float[Array, "..."]:
    """Stock from the surface to ``depth`` (m) of a layer density ``soc`` (gC m-3) -> gC m-2."""
    return jnp.asarray(soc) @ jnp.asarray(depth_weights(depth))


class Stocks(NamedTuple):
    """Column stocks in gC m-2 (SPEC 1.10)."""

    top_30cm: Array
    top_100cm: Array
    top_200cm: Array
    total: Array


def stocks(soc: Float[ArrayLike, "... 20"]) -> Stocks:
    """Stocks 0-30 cm, 0-100 cm, 0-200 cm and total (to 8.6 m) from layer densities.

    Args:
        soc: layer carbon density in gC m-3, shape (..., 20).

    Returns:
        `Stocks` with arrays of shape (...), in gC m-2.
    """
    soc = jnp.asarray(soc)
    return Stocks(
        soc @ jnp.asarray(_W30),
        soc @ jnp.asarray(_W100),
        soc @ jnp.asarray(_W200),
        soc @ jnp.asarray(_WTOTAL),
    )


def _pchip_slopes(h: Array, delta: Array) -> Array:
    """Fritsch-Carlson slopes with scipy/MATLAB end conditions; h, delta shape (n-1,)."""
    # Interior: weighted harmonic mean where the secants share a sign, else zero. Written as
    # (w1 + w2) d0 d1 / (w1 d1 + w2 d0) on secants divided by their larger magnitude m (held out
    # of the gradient: the mean is homogeneous of degree one, so m (u(d/m)) = u(d) exactly and
    # d/dm of it is zero). Its derivative stays bounded however small the node values are: no
    # 1/d and no d0 d1 underflowing in a denominator (tiny deep-layer SOC gave NaN gradients).
    h0, h1 = h[:-1], h[1:]
    d0, d1 = delta[:-1], delta[1:]
    w1 = 2.0 * h1 + h0
    w2 = h1 + 2.0 * h0
    same_sign = (jnp.sign(d0) * jnp.sign(d1)) > 0
    m = jax.lax.stop_gradient(jnp.maximum(jnp.abs(d0), jnp.abs(d1)))
    m = jnp.where(same_sign, m, 1.0)
    u0 = jnp.where(same_sign, d0 / m, 1.0)
    u1 = jnp.where(same_sign, d1 / m, 1.0)
    interior = jnp.where(same_sign, m * ((w1 + w2) * u0 * u1 / (w1 * u1 + w2 * u0)), 0.0)

    def edge(h_a: Array, h_b: Array, d_a: Array, d_b: Array) -> Array:
        # One-sided three-point estimate, then shape-preserving limits (scipy _edge_case).
        d = ((2.0 * h_a + h_b) * d_a - h_a * d_b) / (h_a + h_b)
        d = jnp.where(jnp.sign(d) != jnp.sign(d_a), 0.0, d)
        limit = (jnp.sign(d_a) != jnp.sign(d_b)) & (jnp.abs(d) > 3.0 * jnp.abs(d_a))
        return jnp.where(limit, 3.0 * d_a, d)

    first = edge(h[0], h[1], delta[0], delta[1])
    last = edge(h[-1], h[-2], delta[-1], delta[-2])
    return jnp.concatenate([first[None], interior, last[None]])


def pchip_interpolate(
    x: Float[ArrayLike, " n"], y: Float[ArrayLike, " n"], xq: Float[ArrayLike, " m"]
) -> Float[Array, " m"]:
    """MATLAB ``interp1(x, y, xq, 'pchip')``: monotone cubic interpolation with extrapolation.

    Equal to ``scipy.interpolate.PchipInterpolator(x, y, extrapolate=True)(xq)``; pure JAX,
    differentiable in ``y`` and ``xq``, jit- and vmap-able. Points outside ``[x[0], x[-1]]`` use
    the cubic of the nearest end interval, as MATLAB does.

    Args:
        x: strictly increasing nodes, shape (n,), n >= 3 (for soc_jax: ``ZSOI[:20]`` in m).
        y: values at the nodes, shape (n,) (e.g. SOC in gC m-3).
        xq: query points, shape (m,) (e.g. observation depths in m).

    Returns:
        Interpolated values, shape (m,).
    """
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    xq = jnp.asarray(xq)
    h = jnp.diff(x)
    delta = jnp.diff(y) / h
    slopes = _pchip_slopes(h, delta)
    k = jnp.clip(jnp.searchsorted(x, xq, side="right") - 1, 0, x.shape[0] - 2)
    hk = h[k]
    t = (xq - x[k]) / hk
    t2, t3 = t * t, t * t * t
    h00 = 2.0 * t3 - 3.0 * t2 + 1.0
    h10 = t3 - 2.0 * t2 + t
    h01 = -2.0 * t3 + 3.0 * t2
    h11 = t3 - t2
    return h00 * y[k] + h10 * hk * slopes[k] + h01 * y[k + 1] + h11 * hk * slopes[k + 1]
