r"""Synthetic SOC(z, t) data and noise models for the UDE (seed Eqs 8-13).

Clean fields on ``z in [0, 1] m`` and ``t in [0, 50] yr``:

.. math::

    C(z, 0) &= 1.2\,e^{-0.02 \cdot 100\,z} \quad (8)\\
    \mathrm{pH}(z, t) &= 6.5 - 0.5 z + 0.10 \sin(2\pi t / 1.0) \quad (9)\\
    \mathrm{CEC}(z, t) &= 0.5 + 0.1 \sin(2\pi z) + 0.05 \cos(2\pi t / 5.0) \quad (10)\\
    \mathrm{Clay}(z, t) &= 25.0 + 5.0 \cos(2\pi z) + 0.5 \sin(2\pi t / 10.0) \quad (11)

Drivers are sampled on the observation grid (annual by default) and linearly interpolated in time
(:class:`soc_jax.ude.vector_field.Drivers`). With annual sampling the 1-year pH cycle of Eq 9 is
aliased to zero (``sin(2 pi k) = 0``); this is a property of the seed's sampling, kept as is.

Two truths:

* ``"seed"`` (a): ``P = R = 0``, pure advection-diffusion (seed Sec 2.1 step 5);
* ``"reaction"`` (b): :class:`~soc_jax.ude.vector_field.KnownReaction`, production from clay, CEC
  and depth, first-order respiration modulated by pH.

Noise (seed Eq 13, "multiplicative Gaussian" and "spatially correlated"):
``x_obs = x (1 + eta eps)`` where ``eps`` is, along depth, a stationary AR(1) sequence with unit
variance and lag-1 correlation ``rho`` (``rho = 0`` gives independent noise), independent across
times and variables.

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Section 2.2 and Tables 2-7.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from soc_jax.ude.column import Column, require_x64
from soc_jax.ude.vector_field import (
    DEFAULT_DIFFUSIVITY,
    DEFAULT_VELOCITY,
    Drivers,
    KnownReaction,
    Transport,
    UDEVectorField,
    solve,
)

#: Surface SOC, decay constant and depth scale of Eq 8.
C0_SURFACE, K_DECAY, DEPTH_SCALE = 1.2, 0.02, 100.0


def initial_profile(z: Float[Array, " nz"]) -> Float[Array, " nz"]:
    """Seed Eq 8, ``C0 = 1.2 exp(-0.02 * 100 z)`` (SOC units), shape ``(nz,)``."""
    return C0_SURFACE * jnp.exp(-K_DECAY * DEPTH_SCALE * z)


def driver_fields(z: Float[Array, " nz"], ts: Float[Array, " nt"]) -> Float[Array, "3 nt nz"]:
    """Seed Eqs 9-11 on the grid.

    Args:
        z: depths (m), shape ``(nz,)``.
        ts: times (yr), shape ``(nt,)``.

    Returns:
        ``(3, nt, nz)``: pH (-), CEC (seed units), clay (%).
    """
    t = ts[:, None]
    zz = z[None, :]
    ph = 6.5 - 0.5 * zz + 0.10 * jnp.sin(2 * jnp.pi * t / 1.0)
    cec = 0.5 + 0.1 * jnp.sin(2 * jnp.pi * zz) + 0.05 * jnp.cos(2 * jnp.pi * t / 5.0)
    clay = 25.0 + 5.0 * jnp.cos(2 * jnp.pi * zz) + 0.5 * jnp.sin(2 * jnp.pi * t / 10.0)
    return jnp.stack([ph, cec, clay])


def ar1_noise(key: PRNGKeyArray, shape: tuple[int, ...], rho: float) -> Array:
    """Standard-normal noise that is AR(1) along the last axis (depth).

    ``e_0 ~ N(0, 1)``, ``e_i = rho e_{i-1} + sqrt(1 - rho^2) xi_i``: stationary, unit variance,
    ``corr(e_i, e_{i+k}) = rho^k``; independent along the other axes.

    Args:
        key: PRNG key.
        shape: output shape; the last axis is depth.
        rho: lag-1 correlation in ``(-1, 1)``.
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(f"AR(1) correlation must lie in (-1, 1), got {rho}")
    xi = jr.normal(key, shape)
    xi = jnp.moveaxis(xi, -1, 0)
    scale = jnp.sqrt(1.0 - rho**2)

    def step(prev, x):
        e = rho * prev + scale * x
        return e, e

    _, rest = jax.lax.scan(step, xi[0], xi[1:])
    e = jnp.concatenate([xi[:1], rest], axis=0)
    return jnp.moveaxis(e, 0, -1)


def multiplicative_noise(key: PRNGKeyArray, x: Array, eta: float, rho: float = 0.0) -> Array:
    """Seed Eq 13: ``x (1 + eta eps)`` with AR(1)-along-depth ``eps`` (see :func:`ar1_noise`).

    Args:
        key: PRNG key.
        x: clean field, depth on the last axis.
        eta: relative noise level (0.07 for 7 %).
        rho: lag-1 depth correlation of ``eps``.
    """
    if eta == 0.0:
        return x
    return x * (1.0 + eta * ar1_noise(key, x.shape, rho))


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Settings of the synthetic world.

    Attributes:
        nz: depth nodes.
        t_final: horizon (yr).
        n_times: observation times, uniform on ``[0, t_final]`` (51 = annual).
        truth: ``"seed"`` (P = R = 0) or ``"reaction"`` (:class:`KnownReaction`).
        diffusivity: D (m^2 yr^-1).
        velocity: v (m yr^-1).
        noise: relative noise level eta for drivers and SOC observations.
        rho: lag-1 depth correlation of the noise.
    """

    nz: int = 30
    t_final: float = 50.0
    n_times: int = 51
    truth: str = "reaction"
    diffusivity: float = DEFAULT_DIFFUSIVITY
    velocity: float = DEFAULT_VELOCITY
    noise: float = 0.0
    rho: float = 0.6

    def __post_init__(self):
        if self.truth not in ("seed", "reaction"):
            raise ValueError(f"truth must be 'seed' or 'reaction', got {self.truth!r}")
        if self.noise < 0:
            raise ValueError(f"noise level must be >= 0, got {self.noise}")


class UDEData(eqx.Module):
    """One synthetic experiment: clean truth and noisy observations.

    Attributes:
        z: depths (m), ``(nz,)``.
        ts: observation times (yr), ``(nt,)``.
        c0: initial profile used by the model (clean Eq 8, the prescribed IC Eq 5), ``(nz,)``.
        drivers_clean: clean drivers.
        drivers_obs: noisy drivers seen by the networks.
        soc_clean: clean SOC trajectory ``(nt, nz)``.
        soc_obs: noisy SOC observations ``(nt, nz)`` (every row is noisy; terminal-only
            training uses the last row alone).
    """

    z: Float[Array, " nz"]
    ts: Float[Array, " nt"]
    c0: Float[Array, " nz"]
    drivers_clean: Drivers
    drivers_obs: Drivers
    soc_clean: Float[Array, "nt nz"]
    soc_obs: Float[Array, "nt nz"]


def truth_vector_field(config: SyntheticConfig) -> UDEVectorField:
    """The data-generating vector field for ``config.truth``."""
    reaction = KnownReaction() if config.truth == "reaction" else None
    return UDEVectorField(
        Transport(config.diffusivity, config.velocity), reaction, Column(nz=config.nz)
    )


def make_dataset(config: SyntheticConfig, key: PRNGKeyArray) -> UDEData:
    """Generate clean truth (solved at rtol = atol = 1e-10) and noisy observations.

    Args:
        config: the synthetic world.
        key: PRNG key for the noise (drivers and SOC use independent sub-keys).

    Returns:
        A :class:`UDEData`.

    Raises:
        RuntimeError: if float64 is off, or the truth solve fails.
    """
    require_x64("soc_jax.ude.make_dataset")
    column = Column(nz=config.nz)
    z = column.z
    ts = jnp.linspace(0.0, config.t_final, config.n_times)
    c0 = initial_profile(z)
    clean = driver_fields(z, ts)
    drivers_clean = Drivers(ts, clean)
    soc_clean, ok = solve(
        truth_vector_field(config), c0, drivers_clean, ts, rtol=1e-10, atol=1e-10, max_steps=100_000
    )
    if not bool(ok):
        raise RuntimeError("truth solve failed")
    k_drv, k_soc = jr.split(key)
    noisy = jnp.stack(
        [
            multiplicative_noise(k, clean[i], config.noise, config.rho)
            for i, k in enumerate(jr.split(k_drv, 3))
        ]
    )
    soc_obs = multiplicative_noise(k_soc, soc_clean, config.noise, config.rho)
    return UDEData(z, ts, c0, drivers_clean, Drivers(ts, noisy), soc_clean, soc_obs)
