"""Vertical transport of soil carbon: CLM5's Patankar scheme (SPEC 1.7, ``tri_matrix.m``).

Bioturbation (diffusivity ``bio``) mixes carbon wherever the soil thaws below 2 m; where the
maximum active-layer depth ``amax = max(ALTMAX, ALTMAX_LASTYEAR)`` lies in (0, 2] m cryoturbation
(diffusivity ``cryo``) mixes the active layer and tapers linearly to zero at ``min(3 m, bedrock)``;
completely frozen soil (amax = 0) does not mix; nothing mixes below the bedrock. Advection is zero
(``som_adv_flux = 0``), so the scheme is pure diffusion with the Patankar power-law weight.

The operator for one month is a 20x20 tridiagonal matrix ``V_m`` (day-1) with non-negative
diagonal and non-positive off-diagonals, acting on layer densities (gC m-3) as
``dC/dt = -V C``; PRODA averages the 12 monthly matrices. With the bedrock at or below layer 20
the dz-weighted column sums of ``V`` vanish (mass conservation); with a shallower bedrock the
authors' bottom rule (``Dp = Dm`` below the bedrock) is slightly non-conservative, and a faithful
port keeps it.

References:
    Patankar (1980), Numerical Heat Transfer and Fluid Flow, ch. 5.
    Koven et al. (2013), Biogeosciences 10, 7109-7131 (CLM vertically resolved soil carbon).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .forcing import DAYS_PER_YEAR
from .grid import DZ, DZ_NODE, N_LAYERS, ZISOI, ZSOI

__all__ = ["Tridiagonal", "transport_month", "transport_operator"]

EPS_FLOOR: float = 1e-30  # floor of diffusivities/advection in tri_matrix.m
MAX_ALTDEPTH_CRYOTURBATION: float = 2.0  # m, CLM5 max_altdepth_cryoturbation
MAX_DEPTH_CRYOTURB: float = 3.0  # m, CLM5 max_depth_cryoturb

_J = np.arange(1, N_LAYERS + 2)  # 1-based interface/layer index 1..21


class Tridiagonal(NamedTuple):
    """A 20x20 tridiagonal matrix by its diagonals, each shape (..., 20), in day-1.

    ``lower[j]`` couples row j to j-1 (``lower[0] = 0``); ``upper[j]`` couples row j to j+1
    (``upper[19] = 0``).
    """

    lower: Array
    diag: Array
    upper: Array

    def matvec(self, x: Float[Array, "... 20"]) -> Float[Array, "... 20"]:
        """``V @ x`` along the trailing axis."""
        zero = jnp.zeros_like(x[..., :1])
        below = jnp.concatenate([zero, x[..., :-1]], axis=-1)
        above = jnp.concatenate([x[..., 1:], zero], axis=-1)
        return self.lower * below + self.diag * x + self.upper * above

    def to_dense(self) -> Float[Array, "20 20"]:
        """Dense matrix (one profile)."""
        return jnp.diag(self.diag) + jnp.diag(self.lower[1:], k=-1) + jnp.diag(self.upper[:-1], k=1)


def _diffusivity(
    bio: Array, cryo: Array, nbedrock: Array, altmax: Array, altmax_lastyear: Array
) -> Array:
    """som_diffus_coef D(j) for j = 1..21 (m2 day-1), SPEC 1.7 step 1."""
    amax = jnp.maximum(altmax, altmax_lastyear)
    nb = nbedrock.astype(jnp.int32)
    zi = jnp.asarray(ZISOI[: N_LAYERS + 1])  # zisoi(j), j = 1..21
    above_bedrock = jnp.asarray(_J) <= nb + 1
    z_bedrock = jnp.asarray(ZISOI)[nb]  # zisoi(nbedrock + 1), 1-based
    z_end = jnp.minimum(MAX_DEPTH_CRYOTURB, z_bedrock)  # where the cryoturbation taper ends
    denom = z_end - amax
    ratio = (zi - amax) / jnp.where(denom == 0, 1.0, denom)
    # At zi == z_end the taper is exactly 0 (MATLAB: x / x = 1). Under jit XLA may evaluate the
    # division as x * (1 / x) = 1 - 1 ulp, leaving D ~ 1e-22 instead of the 1e-30 floor: say so.
    ratio = jnp.where(zi >= z_end, jnp.maximum(ratio, 1.0), ratio)
    # MATLAB's max(NaN, 0) = 0 covers the 0/0 case (amax exactly at the bedrock interface).
    taper = jnp.where(denom == 0, 0.0, jnp.maximum(cryo * (1.0 - ratio), 0.0))
    d_cryo = jnp.where(above_bedrock, jnp.where(zi < amax, cryo, taper), 0.0)
    d_bio = jnp.where(above_bedrock, bio, 0.0)
    cryoturbated = (amax > 0) & (amax <= MAX_ALTDEPTH_CRYOTURBATION)
    return jnp.where(cryoturbated, d_cryo, jnp.where(amax > 0, d_bio, 0.0))


def _power_law(x: Array) -> Array:
    """Patankar's A(|P|) = max(0, (1 - 0.1 |P|)^5)."""
    return jnp.maximum(0.0, (1.0 - 0.1 * jnp.abs(x)) ** 5)


def transport_month(
    bio: ArrayLike,
    cryo: ArrayLike,
    nbedrock: ArrayLike,
    altmax: ArrayLike,
    altmax_lastyear: ArrayLike,
) -> Tridiagonal:
    """Transport operator of one month (one pool), SPEC 1.7 steps 1-5.

    Args:
        bio: bioturbation diffusivity, m2 yr-1.
        cryo: cryoturbation diffusivity, m2 yr-1.
        nbedrock: bedrock layer index (integer-valued, 1..20).
        altmax: active-layer maximum this year, m.
        altmax_lastyear: active-layer maximum last year, m.

    Returns:
        `Tridiagonal` with diagonals of shape (20,), day-1.
    """
    bio = jnp.asarray(bio) / DAYS_PER_YEAR
    cryo = jnp.asarray(cryo) / DAYS_PER_YEAR
    nbedrock = jnp.asarray(nbedrock)
    D = _diffusivity(bio, cryo, nbedrock, jnp.asarray(altmax), jnp.asarray(altmax_lastyear))
    d = jnp.where(jnp.abs(D) >= EPS_FLOOR, D, EPS_FLOOR)  # j = 1..21
    f = EPS_FLOOR  # advection is zero, floored to eps (the f(j) of SPEC 1.7 step 2)

    n = N_LAYERS
    i = np.arange(n)  # 0-based layer index, j = i + 1
    d_j, d_next = d[:n], d[1 : n + 1]
    d_prev = jnp.concatenate([d[:1], d[: n - 1]])  # d_prev[0] unused (top row)
    zsoi_prev = np.concatenate([[0.0], ZSOI[: n - 1]])
    zisoi_prev = np.concatenate([[0.0], ZISOI[: n - 1]])
    w_m = (zisoi_prev - zsoi_prev) / DZ_NODE[i]
    w_p = (ZSOI[i + 1] - ZISOI[i]) / DZ_NODE[i + 1]
    dm = 1.0 / ((1.0 - w_m) / d_j + w_m / d_prev)
    dp = 1.0 / ((1.0 - w_p) / d_j + w_p / d_next)
    Dm_gen = dm / DZ_NODE[i]
    Dp_gen = dp / DZ_NODE[i + 1]

    top = jnp.asarray(i == 0)
    bottom = (jnp.asarray(i + 1) >= nbedrock + 1) & ~top  # bedrock rule of tri_matrix.m
    Dm = jnp.where(top, 0.0, Dm_gen)
    Dp = jnp.where(bottom, Dm_gen, Dp_gen)
    Fm = f
    Fp = jnp.where(bottom, 0.0, f)
    Pm = jnp.where(top, 0.0, Fm / jnp.where(top, 1.0, Dm))
    Pp = Fp / Dp
    a = -(Dm * _power_law(Pm) + max(Fm, 0.0))
    c = -(Dp * _power_law(Pp) + jnp.maximum(-Fp, 0.0))
    b = -a - c
    dz = DZ[:n]
    a_dz, b_dz, c_dz = a / dz, b / dz, c / dz
    diag = b_dz.at[0].set(-c_dz[0]).at[n - 1].set(-a_dz[n - 1])
    lower = a_dz.at[0].set(0.0)
    upper = c_dz.at[n - 1].set(0.0)
    return Tridiagonal(lower, diag, upper)


def transport_operator(
    bio: ArrayLike,
    cryo: ArrayLike,
    nbedrock: Float[ArrayLike, 12],
    altmax: Float[ArrayLike, 12],
    altmax_lastyear: Float[ArrayLike, 12],
) -> Tridiagonal:
    """Annual transport operator: the mean of the 12 monthly operators (SPEC 1.7 step 6).

    Args:
        bio: bioturbation diffusivity, m2 yr-1.
        cryo: cryoturbation diffusivity, m2 yr-1.
        nbedrock: (12,) bedrock layer index per month.
        altmax: (12,) m.
        altmax_lastyear: (12,) m.

    Returns:
        `Tridiagonal` with diagonals of shape (20,), day-1.
    """
    monthly = jax.vmap(transport_month, in_axes=(None, None, 0, 0, 0))(
        bio, cryo, nbedrock, altmax, altmax_lastyear
    )
    return Tridiagonal(*(jnp.mean(m, axis=0) for m in monthly))
