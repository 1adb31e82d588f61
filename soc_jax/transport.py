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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from .forcing import DAYS_PER_YEAR
from .grid import DZ, DZ_NODE, N_LAYERS, ZISOI, ZSOI

__all__ = [
    "Tridiagonal",
    "TransportBasis",
    "transport_basis",
    "transport_month",
    "transport_operator",
]

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


def _diffusivity_shape(
    nbedrock: Array, altmax: Array, altmax_lastyear: Array
) -> tuple[Array, Array]:
    """Shape of som_diffus_coef for one month: ``D(j) = c * s(j)``, j = 1..21 (SPEC 1.7 step 1).

    Returns:
        ``(s, cryoturbated)``: s (21,) in [0, 1] and whether ``c`` is the cryoturbation
        diffusivity (True) or the bioturbation one (False). Frozen soil (amax = 0) has s = 0.
    """
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
    taper = jnp.where(denom == 0, 0.0, jnp.maximum(1.0 - ratio, 0.0))
    s_cryo = jnp.where(above_bedrock, jnp.where(zi < amax, 1.0, taper), 0.0)
    s_bio = jnp.where(above_bedrock, 1.0, 0.0)
    cryoturbated = (amax > 0) & (amax <= MAX_ALTDEPTH_CRYOTURBATION)
    s = jnp.where(cryoturbated, s_cryo, jnp.where(amax > 0, s_bio, 0.0))
    return s, cryoturbated


def _power_law(x: Array) -> Array:
    """Patankar's A(|P|) = max(0, (1 - 0.1 |P|)^5)."""
    return jnp.maximum(0.0, (1.0 - 0.1 * jnp.abs(x)) ** 5)


class _Conductances(NamedTuple):
    """Per-layer diffusive conductances to the layer above (m) and below (p), day-1 m-1."""

    Dm: Array
    Dp: Array
    top: Array  # row 0: no flux through the surface
    bottom: Array  # rows at or below the bedrock: tri_matrix.m's Dp = Dm rule


def _conductances(d: Array, nbedrock: Array) -> _Conductances:
    """Harmonic-mean interface conductances of SPEC 1.7 steps 2-3 from floored diffusivities d."""
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
    return _Conductances(
        jnp.where(top, 0.0, Dm_gen), jnp.where(bottom, Dm_gen, Dp_gen), top, bottom
    )


def _rows(a: Array, c: Array) -> Tridiagonal:
    """The tridiagonal of SPEC 1.7 steps 4-5 from the coefficients a (above) and c (below).

    Linear in (a, c), so it maps linear and constant parts separately (`transport_basis`).
    """
    n = N_LAYERS
    dz = DZ[:n]
    a_dz, c_dz = a / dz, c / dz
    diag = (-a_dz - c_dz).at[0].set(-c_dz[0]).at[n - 1].set(-a_dz[n - 1])
    return Tridiagonal(a_dz.at[0].set(0.0), diag, c_dz.at[n - 1].set(0.0))


def transport_month(
    bio: ArrayLike,
    cryo: ArrayLike,
    nbedrock: ArrayLike,
    altmax: ArrayLike,
    altmax_lastyear: ArrayLike,
) -> Tridiagonal:
    """Transport operator of one month (one pool), SPEC 1.7 steps 1-5, as ``tri_matrix.m``.

    Args:
        bio: bioturbation diffusivity, m2 yr-1.
        cryo: cryoturbation diffusivity, m2 yr-1.
        nbedrock: bedrock layer index (integer-valued, 1..20).
        altmax: active-layer maximum this year, m.
        altmax_lastyear: active-layer maximum last year, m.

    Returns:
        `Tridiagonal` with diagonals of shape (20,), day-1.
    """
    nbedrock = jnp.asarray(nbedrock)
    s, cryoturbated = _diffusivity_shape(
        nbedrock, jnp.asarray(altmax), jnp.asarray(altmax_lastyear)
    )
    c = jnp.where(cryoturbated, jnp.asarray(cryo), jnp.asarray(bio)) / DAYS_PER_YEAR
    D = c * s
    d = jnp.where(jnp.abs(D) >= EPS_FLOOR, D, EPS_FLOOR)  # j = 1..21
    g = _conductances(d, nbedrock)
    f = EPS_FLOOR  # advection is zero, floored to eps (the f(j) of SPEC 1.7 step 2)
    Fp = jnp.where(g.bottom, 0.0, f)
    Pm = jnp.where(g.top, 0.0, f / jnp.where(g.top, 1.0, g.Dm))
    Pp = Fp / g.Dp
    a = -(g.Dm * _power_law(Pm) + f)
    c_ = -(g.Dp * _power_law(Pp) + jnp.maximum(-Fp, 0.0))
    return _rows(a, c_)


def transport_operator(
    bio: ArrayLike,
    cryo: ArrayLike,
    nbedrock: Float[ArrayLike, "12"],
    altmax: Float[ArrayLike, "12"],
    altmax_lastyear: Float[ArrayLike, "12"],
) -> Tridiagonal:
    """Annual transport operator: the mean of the 12 monthly operators (SPEC 1.7 step 6).

    The reference form, month by month; models evaluate the same operator from a
    `transport_basis` prepared once per profile.

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


class TransportBasis(eqx.Module):
    """The annual transport operator of one profile as ``V = bio B_bio + cryo B_cryo + C``.

    Each interface diffusivity of a month is ``c s(j)`` (c the bio- or cryoturbation
    diffusivity of that month's regime, s fixed by the forcing) floored at 1e-30. Where both
    interfaces that a matrix entry uses are unfloored, the entry is linear in c (the Patankar
    weight is exactly 1 in float64, since the floored advection is 1e-30); where either is
    floored it does not depend on c at all (the harmonic mean is the floor's, to the last bit).
    So the 12 monthly operators reduce to three tridiagonals: `transport_basis` builds them
    once from the forcing, `__call__` evaluates the operator for new diffusivities in a few
    multiply-adds.

    Equal to `transport_operator` to rounding (tested to 1e-12) for diffusivities above
    ~1e-20 m2 yr-1 (priors start at 3e-5); below that the entries that would be floored are
    the floor's ~1e-30 day-1 either way (no transport).

    Attributes:
        bio: day-1 per (m2 day-1) of bioturbation diffusivity, diagonals (20,).
        cryo: the same for cryoturbation.
        const: the constant part (floored interfaces), day-1.
    """

    bio: Tridiagonal
    cryo: Tridiagonal
    const: Tridiagonal

    def __call__(self, bio: ArrayLike, cryo: ArrayLike) -> Tridiagonal:
        """The annual operator (day-1) for diffusivities ``bio`` and ``cryo`` in m2 yr-1."""
        b = jnp.asarray(bio) / DAYS_PER_YEAR
        c = jnp.asarray(cryo) / DAYS_PER_YEAR
        return Tridiagonal(
            *(
                b * xb + c * xc + x0
                for xb, xc, x0 in zip(self.bio, self.cryo, self.const, strict=True)
            )
        )


def _month_basis(nbedrock: Array, altmax: Array, altmax_lastyear: Array):
    """(linear part per unit diffusivity in day-1, constant part, cryoturbated) of one month."""
    s, cryoturbated = _diffusivity_shape(nbedrock, altmax, altmax_lastyear)
    linear = s > 0  # unfloored for any physical diffusivity (s >= ~1e-3 where positive)
    d = jnp.where(linear, s, EPS_FLOOR)  # the month at c = 1 m2 day-1
    g = _conductances(d, nbedrock)
    n = N_LAYERS
    lin, prev = linear[:n], jnp.concatenate([linear[:1], linear[: n - 1]])
    lin_m = lin & prev & ~g.top
    lin_p = jnp.where(g.bottom, lin_m, lin & linear[1 : n + 1])
    f = EPS_FLOOR
    Fp = jnp.where(g.bottom, 0.0, f)
    Pm = jnp.where(g.top, 0.0, f / jnp.where(g.top, 1.0, g.Dm))
    Pp = Fp / g.Dp
    a1 = -(g.Dm * _power_law(Pm) + f)
    c1 = -(g.Dp * _power_law(Pp) + jnp.maximum(-Fp, 0.0))
    linear_rows = _rows(jnp.where(lin_m, -g.Dm, 0.0), jnp.where(lin_p, -g.Dp, 0.0))
    const_rows = _rows(jnp.where(lin_m, -f, a1), jnp.where(lin_p, 0.0, c1))
    return linear_rows, const_rows, cryoturbated


def transport_basis(
    nbedrock: Float[ArrayLike, "12"],
    altmax: Float[ArrayLike, "12"],
    altmax_lastyear: Float[ArrayLike, "12"],
) -> TransportBasis:
    """Precompute the annual transport operator's dependence on the two diffusivities.

    Args:
        nbedrock: (12,) bedrock layer index per month.
        altmax: (12,) m.
        altmax_lastyear: (12,) m.

    Returns:
        `TransportBasis`; ``basis(bio, cryo)`` equals
        ``transport_operator(bio, cryo, nbedrock, altmax, altmax_lastyear)``.
    """
    linear, const, cryoturbated = jax.vmap(_month_basis)(
        jnp.asarray(nbedrock), jnp.asarray(altmax), jnp.asarray(altmax_lastyear)
    )
    w = cryoturbated[:, None].astype(linear.diag.dtype)

    def mean(x, weight):
        return Tridiagonal(*(jnp.mean(weight * m, axis=0) for m in x))

    return TransportBasis(bio=mean(linear, 1.0 - w), cryo=mean(linear, w), const=mean(const, 1.0))
