"""A small embedded example: plausible CESM2-like forcing for a set of profiles.

No forcing data can be shipped, so examples, tests and benchmarks draw profiles from a simple
climate generator: latitude sets the mean annual temperature and its seasonal amplitude, soil
temperature is damped and lagged with depth, permafrost appears where the deep soil stays below
freezing (cryoturbation), a few sites are frozen all year, some have shallow bedrock, and litter
inputs follow an NPP that grows with temperature and moisture, distributed over depth by a root
profile. The full synthetic world (covariates, true parameter fields, observed profiles) lives in
`soc_jax.data`.
"""

from __future__ import annotations

import numpy as np

from .forcing import DAYS_IN_MONTH, Forcing
from .grid import DZ, N_LAYERS, ZISOI, ZSOI

__all__ = ["example_forcing"]


def example_forcing(n_profiles: int, seed: int = 0) -> tuple[Forcing, np.ndarray]:
    """Plausible monthly forcing for ``n_profiles`` profiles.

    Args:
        n_profiles: number of profiles (>= 1).
        seed: random seed; the same seed gives the same forcing.

    Returns:
        ``(forcing, lat)``: a batched `Forcing` (leading axis ``n_profiles``) and the latitude of
        each profile in degrees north.
    """
    if n_profiles < 1:
        raise ValueError(f"n_profiles must be >= 1, got {n_profiles}")
    rng = np.random.default_rng(seed)  # draws in a fixed order: the helpers run in this order
    lat = rng.uniform(-55.0, 78.0, n_profiles)
    t_mean, t_soil, frozen_site = _soil_temperature(rng, lat)
    fields = {"tsoi": t_soil + 273.15}  # K
    fields |= _active_layer(rng, t_soil)
    fields["nbedrock"] = _bedrock(rng, n_profiles)
    wetness, moisture = _moisture_and_soil(rng, n_profiles)
    fields |= moisture
    fields |= _litter_inputs(rng, t_mean, t_soil, wetness, frozen_site)
    forcing = Forcing(**fields)
    return forcing, lat


_MONTHS = np.arange(12)
_Z = ZSOI[:N_LAYERS]  # node depths, m


def _soil_temperature(rng, lat: np.ndarray):
    """``(t_mean, t_soil, frozen_site)``: mean annual temperature (n,), soil temperature
    (n, 12, 20) in deg C: warm tropics, cold high latitudes, a seasonal wave damped with depth;
    a few sites ice-covered (frozen all year)."""
    n, months, z = lat.size, _MONTHS, _Z
    t_mean = 27.0 - 0.62 * np.clip(np.abs(lat) - 12.0, 0.0, None) + rng.normal(0, 2.0, n)
    amplitude = 1.0 + 0.32 * np.abs(lat) * rng.uniform(0.7, 1.2, n)
    phase = np.where(lat >= 0, 6.5, 0.5)  # warmest month: July (north), January (south)
    damping = 2.2  # m, damping depth of the annual temperature wave
    wave = np.cos(2 * np.pi * (months[None, :, None] - phase[:, None, None]) / 12.0
                  - z[None, None, :] / damping)  # fmt: skip
    t_soil = t_mean[:, None, None] + amplitude[:, None, None] * np.exp(-z / damping) * wave
    frozen_site = rng.uniform(size=n) < 0.03  # ice-covered: frozen all year
    t_soil[frozen_site] = np.minimum(t_soil[frozen_site], -2.0)
    return t_mean, t_soil, frozen_site


def _active_layer(rng, t_soil: np.ndarray):
    """``altmax`` and ``altmax_lastyear`` (n, 12), m, as `Forcing` keywords: the deepest
    interface whose layer thaws in some month (0 = frozen all year); in some permafrost sites
    last year's active layer was not yet diagnosed in early months."""
    n = t_soil.shape[0]
    thawed = (t_soil > 0.0).any(axis=1)  # (n, 20)
    depth_thawed = np.where(thawed, ZISOI[:N_LAYERS][None, :], 0.0).max(axis=1)
    altmax = np.repeat(depth_thawed[:, None], 12, axis=1)
    altmax_lastyear = altmax.copy()
    permafrost = (depth_thawed > 0) & (depth_thawed <= 2.0)
    late = permafrost & (rng.uniform(size=n) < 0.4)
    altmax_lastyear[late, :4] = 0.0
    return {"altmax": altmax, "altmax_lastyear": altmax_lastyear}


def _bedrock(rng, n: int) -> np.ndarray:
    """Bedrock layer (n, 12): most profiles reach layer 20, a quarter are shallower."""
    nbedrock = np.where(rng.uniform(size=n) < 0.25, rng.integers(5, 20, n), N_LAYERS).astype(float)
    return np.repeat(nbedrock[:, None], 12, axis=1)


def _moisture_and_soil(rng, n: int):
    """``(wetness (n,), fields)``: the moisture, oxygen and nitrogen scalars and sand (%),
    each (n, 12, 20), as `Forcing` keywords."""
    months, z = _MONTHS, _Z
    wetness = rng.uniform(0.15, 1.0, n)
    w_scalar = np.clip(
        wetness[:, None, None] * (0.85 + 0.15 * np.sin(2 * np.pi * months / 12.0))[None, :, None]
        * (1.0 - 0.1 * np.exp(-z / 0.3))[None, None, :], 0.0, 1.0)  # fmt: skip
    o_scalar = np.clip(1.0 - 0.4 * np.clip(w_scalar - 0.8, 0, None) / 0.2
                       - 0.02 * z[None, None, :], 0.3, 1.0)  # fmt: skip
    fpi = np.clip(rng.uniform(0.45, 1.0, n)[:, None, None] + np.zeros((1, 12, N_LAYERS)), 0, 1)
    sand = np.clip(rng.uniform(5, 85, n)[:, None, None] + 3 * np.tanh(z - 1.0), 0, 100)
    sand = np.broadcast_to(sand, (n, 12, N_LAYERS)).copy()
    return wetness, {"w_scalar": w_scalar, "o_scalar": o_scalar, "fpi": fpi, "sand": sand}


def _litter_inputs(rng, t_mean, t_soil, wetness, frozen_site):
    """``litter_input`` (n, 4, 12, 20) gC m-3 per month and ``npp`` (n, 12) gC m-2 s-1 as
    `Forcing` keywords: an NPP
    (gC m-2 yr-1) from temperature and moisture, over a growing season, split into CWD,
    metabolic, cellulose and lignin litter and spread over depth by a root profile."""
    n = t_mean.size
    npp_annual = 1100.0 / (1.0 + np.exp(-(t_mean - 8.0) / 6.0)) * wetness**0.6 + 30.0
    npp_annual[frozen_site] = 5.0
    growth = np.clip(t_soil[:, :, 0] + 2.0, 0.1, None)
    season = growth / growth.sum(axis=1, keepdims=True)  # (n, 12)
    woody = rng.uniform(0.0, 0.35, n)  # CWD share of litter fall
    shares = np.stack(
        [woody, 0.25 * (1 - woody), 0.5 * (1 - woody), 0.25 * (1 - woody)], axis=1
    )  # CWD, metabolic, cellulose, lignin
    root_beta = rng.uniform(0.90, 0.98, n)
    zi = np.concatenate([[0.0], ZISOI[:N_LAYERS]])
    roots = root_beta[:, None] ** (100 * zi[None, :-1]) - root_beta[:, None] ** (100 * zi[None, 1:])
    roots /= roots.sum(axis=1, keepdims=True)
    litter_input = (
        npp_annual[:, None, None, None]
        * shares[:, :, None, None]
        * season[:, None, :, None]
        * roots[:, None, None, :]
        / DZ[:N_LAYERS][None, None, None, :]
    )  # gC m-3 per month
    npp = npp_annual[:, None] * season / (DAYS_IN_MONTH[None, :] * 86400.0)
    return {"litter_input": litter_input, "npp": npp}
