"""The synthetic world: sites, covariates, forcing, known true parameters and observed profiles.

No real data can be shipped, so the embedded default dataset is a deterministic synthetic world
(`make_world`). Everything follows from the seed:

1. **Land.** A plausible land mask (continent-like ellipses perturbed by a smooth random field,
   56 S to 78 N, no ice sheets). Sites are drawn uniformly by area on land; the global grid is a
   regular lat-lon grid (default 2 degrees) of land cells.
2. **Covariates** (the 60 of SPEC 5) are deterministic functions of location and of a few smooth
   random fields on the sphere (sums of random plane waves on the unit sphere), so sites and grid
   cells share one world. Temperature falls with latitude (``29 - 40 sin^2(lat)`` degC) and
   elevation (6.5 K/km); precipitation has an ITCZ, dry subtropics and mid-latitude storm
   tracks; monthly temperature and precipitation series give BIO1-BIO19 exactly; texture is a
   softmax of smooth fields (sand + silt + clay = 100 %); pH falls with wetness and cold; bulk
   density rises with sand and depth; CEC rises with clay; Koppen, land cover, texture class,
   soil orders and acidity grade are categorical codes derived from these; NPP is the Miami
   model (Lieth 1975) times 0.45 gC per g dry matter.
3. **Forcing** per site from its covariates: soil temperature per layer and month (annual wave
   damped and lagged with depth, damping depth 2.2 m, +1.5 K snow insulation in cold climates);
   active layer = deepest thawing interface; bedrock layer from depth to bedrock; moisture scalar
   from the aridity index P/PET and the monthly rain; oxygen scalar reduced in wet, deep soil;
   nitrogen scalar FPI from a smooth field and temperature; sand per layer from the 0/30/100 cm
   sand; litter inputs = NPP x season x root profile (Jackson et al. 1996 beta by biome) x
   CWD/metabolic/cellulose/lignin shares (CWD only under forests, more lignin under conifers).
4. **Truth.** Normalized parameters per site ``p_j = c_j + a_j tanh(w_j . u)``, with the
   standardized covariates ``u = (uT, uP, uC, upH, uN, uT*uC)``: ``uT = (BIO1 - 10)/10``,
   ``uP = ln(BIO12/700)/0.8``, ``uC = (Clay_0cm - 22)/10``, ``upH = pH_Water_0cm - 6.3``,
   ``uN = ln(NPP/400 gC m-2 yr-1)/0.7``. The table `truth_table` lists ``c, a, w`` per
   parameter (fixed, not seed-dependent); it is saved with the world. A site whose steady state
   fails (``ok`` False) gets its truth **redrawn** toward the centre, ``p = c + 0.5^r (p - c)``
   for r = 1, 2, 3 and finally ``p = c``; the number of redraws is saved (``truth.redraws``).
   Sites still failing are removed and listed in ``World.failed`` (never silently).
5. **Observations.** 3-10 layers per profile, bottoms mostly 60-200 cm (all deeper than 60 cm,
   so PRODA's screening keeps every profile), thin layers at the top; the model's layer SOC is
   PCHIP-interpolated to the node depths (`soc_jax.grid.pchip_interpolate`, SPEC 1.11) and
   multiplied by ``exp(noise * eps)``, eps ~ N(0, 1) per layer (noise = 0: exactly the model).
   SOC content is back-computed with the site's bulk density and coarse fragments (SPEC 9).

The process model runs in float64 with ``jax.jit(jax.vmap(steady_state))`` in chunks of 2,048
sites (one compiled shape for every world), in the mode given by `MODEL_MODES`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..forcing import DAYS_IN_MONTH, Forcing
from ..grid import DZ, N_LAYERS, ZISOI, ZSOI, pchip_interpolate, stocks
from .covariates import COVARIATE_NAMES, covariates_dataset, nearest_cell
from .forcing_io import dataset_to_forcing, forcing_to_dataset, write_forcing
from .schema import ObservationBatch, _assemble, pad_observations, write_profiles

__all__ = ["World", "make_world", "truth_table", "true_parameters", "MODELS", "MODEL_MODES"]

MODELS: tuple[str, ...] = ("clm5", "compas")
MODEL_MODES: dict[str, str] = {"clm5": "proda", "compas": "documented"}
"""Mode of each model's ``steady_state`` in the world: CLM5 as PRODA codes it (beta input
profile, capped moisture scalar); COMPAS as documented (PRODA's ``mic_ratio < 10`` check is an
MCMC acceptance rule, not part of the model, and would reject about half of the sites)."""
_CHUNK = 2048  # sites per compiled steady-state call (one compiled shape for every world)
_LAT_RANGE = (-56.0, 78.0)
# Continent-like ellipses: (lat centre, lon centre, lat radius, lon radius), degrees.
_CONTINENTS = np.array(
    [
        (52, -105, 20, 32),
        (33, -95, 11, 20),
        (16, -92, 7, 10),
        (64, -150, 8, 18),
        (-8, -60, 17, 17),
        (-35, -66, 15, 8),
        (52, 18, 13, 26),
        (62, 100, 13, 60),
        (42, 90, 14, 40),
        (22, 80, 10, 12),
        (18, 103, 9, 9),
        (10, 20, 14, 28),
        (-15, 26, 15, 13),
        (25, 45, 8, 11),
        (-25, 134, 10, 17),
        (-2, 115, 5, 14),
    ],
    float,
)
_FIELDS = (
    "land",
    "elev",
    "temp",
    "prec",
    "seas",
    "cont",
    "sand",
    "clay",
    "silt",
    "ph",
    "bed",
    "cf",
    "npp",
    "fpi",
    "cat",
)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class _SmoothFields:
    """Random smooth fields on the sphere: sums of plane waves in 3-D evaluated on the unit sphere.

    Each field has roughly zero mean and unit variance; ``freq`` sets the spatial scale (a
    frequency of 3 gives features of ~ 1000-2000 km).
    """

    def __init__(
        self,
        rng: np.random.Generator,
        names: tuple[str, ...],
        n_modes: int = 12,
        freq: dict[str, float] | None = None,
    ):
        freq = freq or {}
        self.names = names
        k = rng.normal(size=(len(names), n_modes, 3))
        scale = np.array([freq.get(n, 3.0) for n in names])
        self.k = (k * scale[:, None, None]).reshape(-1, 3).T  # (3, F*M)
        self.phase = rng.uniform(0, 2 * np.pi, len(names) * n_modes)
        self.n_modes = n_modes

    def __call__(self, lat: np.ndarray, lon: np.ndarray) -> dict[str, np.ndarray]:
        la, lo = np.deg2rad(lat), np.deg2rad(lon)
        xyz = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
        out = np.empty((lat.size, len(self.names)))
        step = 20000
        for s in range(0, lat.size, step):
            waves = np.cos(xyz[s : s + step] @ self.k + self.phase)
            out[s : s + step] = waves.reshape(-1, len(self.names), self.n_modes).sum(-1)
        out *= np.sqrt(2.0 / self.n_modes)
        return {n: out[:, i] for i, n in enumerate(self.names)}


def _land_score(lat: np.ndarray, lon: np.ndarray, f_land: np.ndarray) -> np.ndarray:
    """> 0 on land: max over continents of (1 - ellipse distance^2) plus a smooth perturbation."""
    c = _CONTINENTS
    dlat = (lat[:, None] - c[None, :, 0]) / c[None, :, 2]
    dlon = (lon[:, None] - c[None, :, 1] + 180.0) % 360.0 - 180.0
    dlon = dlon / c[None, :, 3]
    score = (1.0 - dlat**2 - dlon**2).max(axis=1) + 0.25 * f_land
    inside = (lat >= _LAT_RANGE[0]) & (lat <= _LAT_RANGE[1])
    return np.where(inside, score, -1.0)


def _quarters(x: np.ndarray) -> np.ndarray:
    """(n, 12) monthly -> (n, 12) sums over the 3-month window starting at each month."""
    return x + np.roll(x, -1, axis=1) + np.roll(x, -2, axis=1)


def _texture_class(sand: np.ndarray, clay: np.ndarray) -> np.ndarray:
    """USDA texture class code (1 clay ... 12 sand) from sand and clay, %."""
    silt = 100.0 - sand - clay
    conditions = [
        (clay >= 40) & (silt >= 40),  # 2 silty clay
        (clay >= 35) & (sand > 45),  # 3 sandy clay
        clay >= 40,  # 1 clay
        (clay >= 27) & (sand <= 20),  # 5 silty clay loam
        (clay >= 27) & (sand <= 45),  # 4 clay loam
        (clay >= 20) & (silt < 28) & (sand > 45),  # 6 sandy clay loam
        (silt >= 80) & (clay < 12),  # 9 silt
        ((silt >= 50) & (clay >= 12) & (clay < 27)) | ((silt >= 50) & (clay < 12)),  # 8 silt loam
        (clay >= 7) & (clay < 27) & (silt >= 28) & (silt < 50) & (sand <= 52),  # 7 loam
        silt + 1.5 * clay < 15,  # 12 sand
        silt + 2.0 * clay < 30,  # 11 loamy sand
    ]
    return np.select(conditions, [2, 3, 1, 5, 4, 6, 9, 8, 7, 12, 11], default=10).astype(float)


def _koppen(t_month, p_month, t_mean, p_annual) -> np.ndarray:
    """Koppen-Geiger code of Beck et al. (2018), 1 Af ... 30 EF (simplified rules)."""
    tmax, tmin = t_month.max(1), t_month.min(1)
    pmin = p_month.min(1)
    threshold = 20.0 * t_mean + 140.0  # mm, aridity threshold
    warm_months = (t_month >= 10).sum(1)
    conditions = [
        tmax < 0,
        tmax < 10,
        p_annual < 0.5 * threshold,
        p_annual < threshold,
        (tmin >= 18) & (pmin >= 60),
        (tmin >= 18) & (pmin >= 100 - p_annual / 25),
        tmin >= 18,
        (tmin > -3) & (tmax >= 22),
        tmin > -3,
        (tmin < -38),
        tmax >= 22,
        warm_months >= 4,
    ]
    arid_w = np.where(t_mean >= 18, 4, 5)
    arid_s = np.where(t_mean >= 18, 6, 7)
    choices = [30, 29, arid_w, arid_s, 1, 2, 3, 14, 15, 28, 25, 26]
    return np.select(conditions, choices, default=27).astype(float)


def _covariates(lat: np.ndarray, lon: np.ndarray, fields: _SmoothFields) -> dict[str, np.ndarray]:
    """All covariates (SPEC 5 names) plus helper series at the given locations."""
    f = fields(lat, lon)
    n = lat.size
    months = np.arange(12)
    abslat = np.abs(lat)
    elev = np.clip(550.0 * np.exp(0.9 * f["elev"]) - 60.0, 0.0, 5800.0)
    t_mean = 29.0 - 40.0 * np.sin(np.deg2rad(abslat)) ** 2 - 0.0065 * elev + 2.0 * f["temp"]
    amp = 1.0 + 0.3 * abslat * (0.8 + 0.4 * _sigmoid(f["cont"]))
    phase = np.where(lat >= 0, 6.5, 0.5)
    wave = np.cos(2 * np.pi * (months[None, :] - phase[:, None]) / 12.0)
    t_month = t_mean[:, None] + amp[:, None] * wave
    p_annual = (
        150.0
        + 2300.0 * np.exp(-((lat / 11.0) ** 2))
        + 800.0 * np.exp(-(((abslat - 48.0) / 13.0) ** 2))
    ) * np.exp(0.55 * f["prec"])
    seas = 0.9 * _sigmoid(0.8 * f["seas"] + 1.5 * np.exp(-(((abslat - 12.0) / 8.0) ** 2)) - 0.5)
    p_shape = 1.0 + seas[:, None] * wave
    p_month = p_annual[:, None] * p_shape / p_shape.sum(1, keepdims=True)
    dtr = 8.0 + 5.0 * _sigmoid(-f["prec"]) + elev / 1500.0

    tq = _quarters(t_month) / 3.0
    pq = _quarters(p_month)
    rows = np.arange(n)
    wettest, driest = pq.argmax(1), pq.argmin(1)
    warmest, coldest = tq.argmax(1), tq.argmin(1)
    c: dict[str, np.ndarray] = {"Lon": lon, "Lat": lat}
    bio5 = t_month.max(1) + dtr / 2
    bio6 = t_month.min(1) - dtr / 2
    bio = {
        1: t_mean,
        2: dtr,
        3: 100.0 * dtr / (bio5 - bio6),
        4: 100.0 * t_month.std(1),
        5: bio5,
        6: bio6,
        7: bio5 - bio6,
        8: tq[rows, wettest],
        9: tq[rows, driest],
        10: tq[rows, warmest],
        11: tq[rows, coldest],
        12: p_annual,
        13: p_month.max(1),
        14: p_month.min(1),
        15: 100.0 * p_month.std(1) / p_month.mean(1),
        16: pq.max(1),
        17: pq.min(1),
        18: pq[rows, warmest],
        19: pq[rows, coldest],
    }
    c.update({f"BIO{i}": v for i, v in bio.items()})

    pet = 100.0 + 60.0 * np.clip(t_month, 0.0, None).mean(1)  # mm yr-1
    wet = (p_annual / pet) / (p_annual / pet + 0.6)  # wetness index in (0, 1)
    koppen = _koppen(t_month, p_month, t_mean, p_annual)

    # Texture at 0, 30, 100 cm (sand + silt + clay = 100 exactly).
    dtb = np.clip(1600.0 * np.exp(1.1 * f["bed"]) / (1.0 + elev / 2000.0), 70.0, 20000.0)  # cm
    tex = {}
    for k, d in enumerate(("0cm", "30cm", "100cm")):
        logits = np.stack(
            [
                0.7 * f["sand"] + 1.2 * (0.5 - wet) - 0.1 * k,
                0.6 * f["clay"] + 0.9 * (wet > 0.6) * (t_mean > 18) - 0.9 + 0.25 * k,
                0.5 * f["silt"] - 0.1,
            ]
        )
        frac = np.exp(logits - logits.max(0))
        frac /= frac.sum(0)
        sand, clay = 100.0 * frac[0], 100.0 * frac[1]
        silt = 100.0 - sand - clay
        cf = np.clip(
            4.0 + 10.0 * np.exp(0.6 * f["cf"]) * (1.0 + elev / 2000.0) + 3.0 * k, 0.0, 60.0
        )
        bd = np.clip(
            0.95
            + 0.0045 * sand
            + 0.08 * k
            + 0.08 * np.tanh(f["cf"])
            - 0.15 * (t_mean < 0) * (wet > 0.5),
            0.7,
            1.8,
        )
        ph = np.clip(
            8.6
            - 4.5 * wet
            - 0.8 * _sigmoid(-(t_mean - 2.0) / 3.0)
            + 0.4 * np.tanh(f["ph"])
            + 0.15 * k,
            3.5,
            9.5,
        )
        cec = 3.0 + 0.5 * clay + 3.0 * (1.0 + np.tanh(f["cat"]))
        tex[d] = (sand, clay, silt, cf, bd, ph, cec)
        c[f"Bulk_Density_{d}"] = bd
        c[f"CEC_{d}"] = cec
        c[f"Clay_Content_{d}"] = clay
        c[f"Coarse_Fragments_v_{d}"] = cf
        c[f"pH_Water_{d}"] = ph
        c[f"Sand_Content_{d}"] = sand
        c[f"Silt_Content_{d}"] = silt
        c[f"SWC_v_Wilting_Point_{d}"] = 2.0 + 0.4 * clay + 0.05 * silt
        c[f"Texture_USDA_{d}"] = _texture_class(sand, clay)

    c["Abs_Depth_to_Bedrock"] = dtb
    c["Garde_Acid"] = np.digitize(c["pH_Water_0cm"], [4.5, 5.5, 6.5, 7.5]).astype(float) + 1
    c["Occurrence_R_Horizon"] = 100.0 * _sigmoid((200.0 - dtb) / 80.0)
    # Land cover (ESA CCI codes) from climate.
    forest = (wet > 0.5) & (koppen < 29)
    lc = np.select(
        [
            koppen == 30,
            koppen == 29,
            koppen <= 5,
            (koppen <= 7) | (wet < 0.35),
            (koppen <= 3) & forest,
            koppen <= 3,
            (koppen <= 16) & (f["cat"] > 0.4),
            (koppen <= 16) & forest,
            koppen <= 16,
            (koppen == 28) | (t_mean < -6),
            forest,
        ],
        [220, 140, 200, np.where(f["cat"] > 0, 120, 130), 50, 130, 10, 60, 130, 80, 70],
        default=130,
    ).astype(float)
    c["ESA_Land_Cover"] = lc
    permafrost = t_mean < -2.0
    sandy = tex["0cm"][0] > 80
    c["USDA_Suborder"] = np.select(
        [
            permafrost,
            koppen <= 5,
            sandy,
            (koppen <= 3) & (wet > 0.6),
            koppen <= 3,
            (koppen <= 7),
            (koppen >= 25) & forest,
            koppen >= 25,
            forest,
        ],
        [21, 51, 41, 71, 81, 62, 91, 31, 11],
        default=62,
    ).astype(float)
    c["WRB_Subgroup"] = np.select(
        [
            permafrost,
            koppen <= 5,
            sandy,
            (koppen <= 3) & (wet > 0.6),
            koppen <= 3,
            wet > 0.85,
            koppen <= 7,
            (koppen >= 25) & forest,
            forest,
        ],
        [10, 5, 3, 12, 1, 14, 7, 25, 17],
        default=6,
    ).astype(float)
    c["Elevation"] = elev
    c["Koppen_Climate_2018"] = koppen

    # NPP: Miami model (g dry matter m-2 yr-1) x 0.45 gC/g.
    npp_t = 3000.0 / (1.0 + np.exp(1.315 - 0.119 * t_mean))
    npp_p = 3000.0 * (1.0 - np.exp(-0.000664 * p_annual))
    npp = 0.45 * np.minimum(npp_t, npp_p) * (0.85 + 0.3 * _sigmoid(f["npp"]))
    npp = np.where(koppen == 30, 5.0, npp)
    growth = np.clip(t_month + 2.0, 0.05, None) * (p_month / p_month.mean(1, keepdims=True)) ** 0.3
    season = growth / growth.sum(1, keepdims=True)
    npp_month = npp[:, None] * season / (DAYS_IN_MONTH[None, :] * 86400.0)  # gC m-2 s-1
    c["cesm2_npp"] = npp_month.mean(1)
    c["cesm2_npp_std"] = npp_month.std(1)
    residence = np.select([lc == 50, np.isin(lc, (60, 70, 80)), lc == 120], [30.0, 22.0, 8.0], 3.0)
    c["cesm2_vegc"] = npp * residence
    c["nbedrock"] = np.clip(np.searchsorted(ZISOI[:N_LAYERS], dtb / 100.0) + 1, 8, N_LAYERS)
    c["nbedrock"] = c["nbedrock"].astype(float)

    helpers = dict(
        t_month=t_month,
        amp=amp,
        phase=phase,
        p_month=p_month,
        wet=wet,
        npp=npp,
        season=season,
        npp_month=npp_month,
        f_fpi=f["fpi"],
        tex=tex,
    )
    return {"cov": c, "aux": helpers}


_ROOT_BETA = {
    220: 0.914,
    140: 0.914,
    200: 0.975,
    120: 0.975,
    130: 0.943,
    50: 0.962,
    10: 0.961,
    60: 0.966,
    70: 0.976,
    80: 0.943,
}  # fmt: skip Jackson et al. (1996) by biome
_DAMPING = 2.2  # m, damping depth of the annual soil temperature wave


def _forcing(cov: dict[str, np.ndarray], aux: dict) -> Forcing:
    """Forcing per site from its covariates (see the module docstring, item 3)."""
    z = ZSOI[:N_LAYERS]
    n = cov["Lat"].size
    months = np.arange(12)
    t_mean = cov["BIO1"]
    insulation = np.where(t_mean < 5.0, 1.5, 0.0)
    wave = np.cos(
        2 * np.pi * (months[None, :, None] - aux["phase"][:, None, None]) / 12.0
        - z[None, None, :] / _DAMPING
    )
    t_soil = (t_mean + insulation)[:, None, None] + aux["amp"][:, None, None] * np.exp(
        -z / _DAMPING
    )[None, None, :] * wave
    ice = cov["Koppen_Climate_2018"] == 30
    t_soil[ice] = np.minimum(t_soil[ice], -2.0)
    thawed = (t_soil > 0.0).any(axis=1)
    altmax = np.where(thawed, ZISOI[:N_LAYERS][None, :], 0.0).max(axis=1)
    altmax = np.repeat(altmax[:, None], 12, axis=1)
    nbedrock = np.repeat(cov["nbedrock"][:, None], 12, axis=1)

    rain = aux["p_month"] / aux["p_month"].mean(1, keepdims=True)
    w_month = np.clip(aux["wet"][:, None] * (0.75 + 0.25 * rain) ** 0.5, 0.02, 1.0)
    w_scalar = np.clip(
        w_month[:, :, None] * (0.9 + 0.1 * np.minimum(z, 1.0))[None, None, :], 0.0, 1.0
    )
    o_scalar = np.clip(
        1.0 - 0.6 * np.clip((w_scalar - 0.75) / 0.25, 0.0, 1.0) * (1.0 - np.exp(-z / 0.5)), 0.2, 1.0
    )
    fpi = np.clip(
        0.55 + 0.2 * np.tanh(aux["f_fpi"]) + 0.15 * np.tanh((t_mean - 5.0) / 10.0), 0.2, 1.0
    )
    fpi = np.broadcast_to(fpi[:, None, None], (n, 12, N_LAYERS)).copy()
    sand_nodes = np.stack([aux["tex"][d][0] for d in ("0cm", "30cm", "100cm")], 1)
    zs = np.array([0.0, 0.3, 1.0])
    sand = np.empty((n, N_LAYERS))
    for j, zj in enumerate(z):
        k = np.searchsorted(zs, zj) - 1
        if k >= 2:
            sand[:, j] = sand_nodes[:, 2]
        else:
            w = (zj - zs[k]) / (zs[k + 1] - zs[k])
            sand[:, j] = (1 - w) * sand_nodes[:, k] + w * sand_nodes[:, k + 1]
    sand = np.broadcast_to(sand[:, None, :], (n, 12, N_LAYERS)).copy()

    lc = cov["ESA_Land_Cover"]
    forest = np.isin(lc, (50, 60, 70, 80))
    conifer = np.isin(lc, (70, 80))
    woody = np.where(forest, 0.25 + 0.1 * _sigmoid(aux["f_fpi"]), np.where(lc == 120, 0.08, 0.0))
    lignin = np.where(conifer, 0.3, 0.22)
    metabolic = 0.5 - lignin
    shares = np.stack([woody, metabolic * (1 - woody), 0.5 * (1 - woody), lignin * (1 - woody)], 1)
    beta = np.vectorize(_ROOT_BETA.get, otypes=[float])(lc)
    zi = np.concatenate([[0.0], ZISOI[:N_LAYERS]])
    roots = beta[:, None] ** (100 * zi[None, :-1]) - beta[:, None] ** (100 * zi[None, 1:])
    roots /= roots.sum(axis=1, keepdims=True)
    litter = (
        aux["npp"][:, None, None, None]
        * shares[:, :, None, None]
        * aux["season"][:, None, :, None]
        * roots[:, None, None, :]
        / DZ[:N_LAYERS][None, None, None, :]
    )
    return Forcing(
        tsoi=t_soil + 273.15,
        w_scalar=w_scalar,
        o_scalar=o_scalar,
        fpi=fpi,
        sand=sand,
        nbedrock=nbedrock,
        altmax=altmax,
        altmax_lastyear=altmax.copy(),
        litter_input=litter,
        npp=aux["npp_month"],
    )


# (centre c, amplitude a, weights on u = (uT, uP, uC, upH, uN, uT*uC)); unlisted: c = 0.5, a = 0.
_TRUTH_CLM5: dict[str, tuple[float, float, tuple[float, ...]]] = {
    "diffus": (0.3, 0.0, ()),
    "cryo": (0.3, 0.0, ()),
    "q10": (0.45, 0.25, (-0.8, 0.0, 0.3, 0.0, 0.0, 0.0)),
    "efolding": (0.6, 0.2, (0.5, 0.0, -0.6, 0.0, 0.0, 0.2)),
    "taucwd": (0.4, 0.0, ()),
    "taul1": (0.45, 0.0, ()),
    "taul2": (0.45, 0.0, ()),
    "tau4s1": (0.5, 0.2, (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)),
    "tau4s2": (0.2, 0.15, (-0.6, 0.0, 0.8, 0.0, 0.0, 0.0)),
    "tau4s3": (0.15, 0.12, (0.0, 0.0, 0.9, -0.5, 0.0, 0.3)),
    "fl3s2": (0.5, 0.15, (0.0, 0.0, 0.6, -0.6, 0.0, 0.0)),
    "fs1s2": (0.4, 0.0, ()),
    "fs1s3": (0.3, 0.0, ()),
    "fs2s3": (0.4, 0.2, (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)),
    "fs3s1": (0.4, 0.0, ()),
    "w_scaling": (0.4, 0.15, (0.0, -0.8, 0.0, 0.0, 0.0, 0.0)),
    "beta": (0.86, 0.08, (0.7, 0.3, 0.0, 0.0, 0.0, 0.0)),
}
_TRUTH_COMPAS: dict[str, tuple[float, float, tuple[float, ...]]] = {
    "bio": (0.3, 0.0, ()),
    "cryo": (0.3, 0.0, ()),
    "q10": (0.45, 0.25, (-0.8, 0.0, 0.3, 0.0, 0.0, 0.0)),
    "w_scaling": (0.3, 0.15, (0.0, -0.8, 0.0, 0.0, 0.0, 0.0)),
    "mic_cue": (0.45, 0.2, (-0.6, 0.0, 0.5, 0.0, 0.0, 0.0)),
    "tau4s4": (0.4, 0.2, (0.3, 0.0, -0.8, 0.3, 0.0, 0.0)),
    "mm_const_decom": (0.5, 0.25, (0.0, 0.0, 0.9, 0.0, 0.0, 0.3)),
    "pdeath2soc": (0.5, 0.2, (0.0, 0.0, 0.7, -0.4, 0.0, 0.0)),
    "beta": (0.86, 0.08, (0.7, 0.3, 0.0, 0.0, 0.0, 0.0)),
}
_U_NAMES = ("uT", "uP", "uC", "upH", "uN", "uT*uC")


def _model_module(model: str):
    if model == "clm5":
        from ..models import clm5

        return clm5
    if model == "compas":
        from ..models import compas  # lazily: COMPAS is optional for CLM5 worlds

        return compas
    raise ValueError(f"model must be one of {MODELS}, got {model!r}")


def truth_table(model: str = "clm5") -> dict[str, tuple[float, float, tuple[float, ...]]]:
    """The documented truth functions: parameter name -> (centre c, amplitude a, weights w).

    ``p = c + a tanh(w . u)`` with ``u = (uT, uP, uC, upH, uN, uT*uC)`` (module docstring, item
    4). Parameters not varying have ``a = 0``. Every parameter of the model is listed in order.
    """
    space = _model_module(model).PARAMETERS
    table = _TRUTH_CLM5 if model == "clm5" else _TRUTH_COMPAS
    out = {}
    for name in space.names:
        c, a, w = table.get(name, (0.5, 0.0, ()))
        out[name] = (c, a, tuple(w) + (0.0,) * (len(_U_NAMES) - len(w)))
    return out


def _standardized(cov: dict[str, np.ndarray]) -> np.ndarray:
    npp = cov["cesm2_npp"] * 365.0 * 86400.0  # gC m-2 yr-1
    ut = (cov["BIO1"] - 10.0) / 10.0
    uc = (cov["Clay_Content_0cm"] - 22.0) / 10.0
    return np.stack(
        [
            ut,
            np.log(cov["BIO12"] / 700.0) / 0.8,
            uc,
            cov["pH_Water_0cm"] - 6.3,
            np.log(np.maximum(npp, 1.0) / 400.0) / 0.7,
            ut * uc,
        ],
        axis=1,
    )


def true_parameters(cov: dict[str, np.ndarray], model: str = "clm5") -> np.ndarray:
    """True normalized parameters ``p = c + a tanh(w . u)`` per site.

    Args:
        cov: covariates by name, each (n,) (at least BIO1, BIO12, Clay_Content_0cm,
            pH_Water_0cm, cesm2_npp).
        model: ``"clm5"`` or ``"compas"``.

    Returns:
        (n, n_params) normalized parameters in (0, 1).
    """
    u = _standardized(cov)
    table = truth_table(model)
    c = np.array([v[0] for v in table.values()])
    a = np.array([v[1] for v in table.values()])
    w = np.array([v[2] for v in table.values()])  # (n_params, 6)
    return c[None, :] + a[None, :] * np.tanh(u @ w.T)


@functools.lru_cache(maxsize=4)
def _solver(model: str) -> Callable:
    module = _model_module(model)

    def one(params, forcing):
        result = module.steady_state(params, forcing, mode=MODEL_MODES[model])
        return result.soc, result.ok

    return jax.jit(jax.vmap(one))


def _bucket(n: int) -> int:
    """Padded batch size: always `_CHUNK`, so one compiled function serves every world."""
    del n
    return _CHUNK


def _steady_state(model: str, p: np.ndarray, forcing: Forcing, progress=None) -> tuple:
    """soc (n, 20) gC m-3 and ok (n,) for normalized parameters p (n, n_params), chunked."""
    space = _model_module(model).PARAMETERS
    x = np.asarray(space.to_physical(jnp.asarray(p)), dtype=float)
    n = p.shape[0]
    size = _bucket(n)
    solve = _solver(model)
    arrays = forcing.as_numpy()
    soc = np.empty((n, N_LAYERS))
    ok = np.empty(n, bool)
    for s in range(0, n, size):
        e = min(s + size, n)
        idx = np.minimum(np.arange(s, s + size), e - 1)  # pad by repeating the last site
        f = Forcing(**{k: jnp.asarray(v[idx]) for k, v in arrays.items()})
        out_soc, out_ok = solve(jnp.asarray(x[idx]), f)
        soc[s:e] = np.asarray(out_soc)[: e - s]
        ok[s:e] = np.asarray(out_ok)[: e - s]
        if progress is not None:
            progress.update(e - s)
    ok &= np.all(np.isfinite(soc), axis=1)
    return soc, ok


def _solve_with_redraws(model, cov, forcing, progress=None):
    """Truth, soc and the redraw count; failing sites shrink toward the centre (item 4)."""
    p = true_parameters(cov, model)
    centre = np.array([v[0] for v in truth_table(model).values()])
    soc, ok = _steady_state(model, p, forcing, progress)
    redraws = np.zeros(p.shape[0], np.int32)
    for r in (1, 2, 3, 4):
        bad = np.flatnonzero(~ok)
        if bad.size == 0:
            break
        shrink = 0.5**r if r < 4 else 0.0
        p[bad] = centre + shrink * (
            true_parameters({k: v[bad] for k, v in cov.items()}, model) - centre
        )
        soc[bad], ok[bad] = _steady_state(model, p[bad], forcing[bad])
        redraws[bad] = r
    return p, soc, ok, redraws


def _sample_sites(rng: np.random.Generator, n: int, fields: _SmoothFields) -> tuple:
    """n land sites, uniform by area, none on permanent ice (Koppen EF): lat, lon (n,)."""
    lat_out, lon_out = [], []
    have = 0
    while have < n:
        lat, lon = _sample_land(rng, n - have + 16, fields)
        ok = _covariates(lat, lon, fields)["cov"]["Koppen_Climate_2018"] != 30
        lat_out.append(lat[ok])
        lon_out.append(lon[ok])
        have += int(ok.sum())
    return np.concatenate(lat_out)[:n], np.concatenate(lon_out)[:n]


def _sample_land(rng: np.random.Generator, n: int, fields: _SmoothFields) -> tuple:
    lat_out, lon_out = [], []
    have = 0
    s0, s1 = np.sin(np.deg2rad(_LAT_RANGE[0])), np.sin(np.deg2rad(_LAT_RANGE[1]))
    while have < n:
        m = max(2 * (n - have) + 64, 256)
        lat = np.rad2deg(np.arcsin(rng.uniform(s0, s1, m)))
        lon = rng.uniform(-180.0, 180.0, m)
        land = _land_score(lat, lon, fields(lat, lon)["land"]) > 0
        lat_out.append(lat[land])
        lon_out.append(lon[land])
        have += int(land.sum())
    return np.concatenate(lat_out)[:n], np.concatenate(lon_out)[:n]


def _observation_layout(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer edges (n, 11) in m (NaN beyond each profile) and the number of layers (n,)."""
    n_layers = rng.choice(
        np.arange(3, 11), size=n, p=[0.08, 0.14, 0.2, 0.18, 0.14, 0.11, 0.08, 0.07]
    )
    bottom = rng.choice(
        [0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 2.5], size=n, p=[0.1, 0.15, 0.3, 0.15, 0.13, 0.12, 0.05]
    )
    bottom = bottom * rng.uniform(0.95, 1.1, n)
    gamma = rng.uniform(1.2, 1.8, n)
    k = np.arange(11)[None, :]
    frac = (k / n_layers[:, None]) ** gamma[:, None]
    edges = np.round(100.0 * bottom[:, None] * frac) / 100.0
    for j in range(1, 11):  # at least 2 cm per layer
        edges[:, j] = np.maximum(edges[:, j], edges[:, j - 1] + 0.02)
    edges = np.where(k <= n_layers[:, None], edges, np.nan)
    return edges, n_layers


def _interp_depth(values3: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Linear interpolation of (n, 3) values at 0, 30, 100 cm to depths (n, w) m (flat beyond)."""
    d = np.clip(depth, 0.0, 1.0)
    upper = d > 0.3
    w_lo = np.where(upper, (d - 0.3) / 0.7, d / 0.3)
    a = np.where(upper, values3[:, 1:2], values3[:, 0:1])
    b = np.where(upper, values3[:, 2:3], values3[:, 1:2])
    return (1 - w_lo) * a + w_lo * b


@jax.jit
def _pchip_batch(soc20, depth):
    return jax.vmap(lambda y, q: pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), y, q))(
        soc20, depth
    )


@dataclasses.dataclass
class World:
    """A synthetic world with known truth.

    Attributes:
        profiles: observed profiles Dataset (schema of `soc_jax.data.schema`), dims
            (profile, layer); also ``soc_model`` (profile, node) the model's layer SOC at the 20
            nodes, gC m-3, and ``stock_100cm`` (profile) gC m-2.
        covariates: Dataset (profile, covariate) with the 60 covariates of SPEC 5.
        forcing: Dataset (profile, month, layer) of the `Forcing` fields (see `forcing_io`).
        truth: Dataset (profile, parameter): ``p`` normalized, ``physical`` values, ``redraws``;
            the truth table (``centre``, ``amplitude``, ``weight`` (parameter, feature)).
        grid: Dataset (cell): lat/lon of land cells of the regular grid, covariates, forcing
            fields, true ``p`` and the model ``soc_model`` (cell, node) and ``stock_100cm``.
        model: ``"clm5"`` or ``"compas"``. seed, noise: as given.
        failed: ids of sites removed because even the centre truth failed (normally empty).
        timings: seconds per stage.
    """

    profiles: xr.Dataset
    covariates: xr.Dataset
    forcing: xr.Dataset
    truth: xr.Dataset
    grid: xr.Dataset
    model: str
    seed: int
    noise: float
    failed: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        """Number of sites (profiles)."""
        return int(self.profiles.sizes["profile"])

    @property
    def lat(self) -> np.ndarray:
        """(n,) site latitudes, degrees north."""
        return self.profiles["lat"].values

    @property
    def lon(self) -> np.ndarray:
        """(n,) site longitudes, degrees east."""
        return self.profiles["lon"].values

    def forcing_batch(self) -> Forcing:
        """The sites' `Forcing` with a leading profile axis (numpy float64 leaves)."""
        return dataset_to_forcing(self.forcing)

    def grid_forcing_batch(self) -> Forcing:
        """The grid cells' `Forcing` with a leading cell axis."""
        return dataset_to_forcing(self.grid, dim="cell")

    def true_params(self, physical: bool = False) -> np.ndarray:
        """(n, n_params) true parameters, normalized (default) or physical."""
        return self.truth["physical" if physical else "p"].values

    def observations(self, width: int | None = None) -> ObservationBatch:
        """Observed layers padded to ``width`` slots (`soc_jax.data.pad_observations`)."""
        return pad_observations(self.profiles, width)

    def to_netcdf(self, out: str | os.PathLike) -> dict[str, str]:
        """Write profiles, covariates, forcing, truth and grid NetCDF files into ``out``.

        Returns:
            name -> path of each file written.
        """
        os.makedirs(out, exist_ok=True)
        paths = {
            k: os.path.join(out, f"{k}.nc")
            for k in ("profiles", "covariates", "forcing", "truth", "grid")
        }
        write_profiles(self.profiles, paths["profiles"])
        self.covariates.to_netcdf(paths["covariates"], engine="netcdf4")
        write_forcing(self.forcing, paths["forcing"])
        self.truth.to_netcdf(paths["truth"], engine="netcdf4")
        self.grid.to_netcdf(paths["grid"], engine="netcdf4")
        return paths

    def summary(self) -> str:
        """A short text summary: sizes, SOC quantiles, stocks, redraws."""
        soc = self.profiles["soc"].values[self.profiles["mask"].values]
        q = np.quantile(soc, [0.01, 0.25, 0.5, 0.75, 0.99])
        stock = self.profiles["stock_100cm"].values / 1000.0
        redrawn = float((self.truth["redraws"].values > 0).mean())
        return (
            f"synthetic world: {self.n_sites} sites, model {self.model}, seed {self.seed}, "
            f"noise {self.noise}; {int(self.profiles['n_layers'].sum())} observed layers\n"
            f"observed layer SOC (gC m-3) quantiles 1/25/50/75/99 %: "
            + " / ".join(f"{v:.3g}" for v in q)
            + f"\n0-100 cm stock (kgC m-2): median {np.median(stock):.3g}, 5-95 % "
            f"{np.quantile(stock, 0.05):.3g}-{np.quantile(stock, 0.95):.3g}\n"
            f"truth redrawn for {100 * redrawn:.2f} % of sites; failed {len(self.failed)}; "
            f"grid: {self.grid.sizes['cell']} land cells"
        )

    def figure(self, path: str | os.PathLike, dpi: int = 90) -> None:
        """Summary figure: map of sites coloured by 0-100 cm stock; SOC-vs-depth examples."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(10, 4.2))
        fig.subplots_adjust(left=0.07)
        ax = fig.add_axes([0.07, 0.12, 0.55, 0.8])
        g = self.grid
        ax.scatter(g["lon"], g["lat"], s=6, c="0.88", marker="s", lw=0)
        stock = self.profiles["stock_100cm"].values / 1000.0
        order = np.argsort(stock)
        sc = ax.scatter(
            self.lon[order], self.lat[order], c=np.log10(stock[order]), s=4, cmap="viridis", lw=0
        )
        cb = fig.colorbar(sc, ax=ax, shrink=0.8)
        cb.set_label("log10 stock 0-100 cm (kgC m-2)")
        ax.set(
            xlim=(-180, 180),
            ylim=(-60, 85),
            xlabel="lon",
            ylabel="lat",
            title=f"{self.n_sites} sites ({self.model}, noise {self.noise})",
        )
        ax2 = fig.add_axes([0.72, 0.12, 0.26, 0.8])
        rng = np.random.default_rng(0)
        picks = rng.choice(self.n_sites, size=min(5, self.n_sites), replace=False)
        for c, i in zip(plt.cm.tab10.colors, picks, strict=False):
            m = self.profiles["mask"].values[i]
            ax2.plot(self.profiles["soc_model"].values[i], ZSOI[:N_LAYERS], color=c, lw=1)
            ax2.plot(
                self.profiles["soc"].values[i, m],
                self.profiles["depth_node"].values[i, m],
                "o",
                color=c,
                ms=3,
            )
        ax2.set(
            xscale="log",
            xlim=(30, 3e5),
            ylim=(2.5, 0),
            xlabel="SOC (gC m-3)",
            ylabel="depth (m)",
            title="model (line) and obs (dots)",
        )
        fig.savefig(path, dpi=dpi)
        plt.close(fig)


def _grid_cells(fields: _SmoothFields, resolution: float) -> tuple[np.ndarray, ...]:
    glat = np.arange(90.0 - resolution / 2, -90.0, -resolution)  # north -> south (CESM order)
    glon = np.arange(-180.0 + resolution / 2, 180.0, resolution)
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    la, lo = la.ravel(), lo.ravel()
    land = _land_score(la, lo, fields(la, lo)["land"]) > 0
    ii, jj = np.meshgrid(np.arange(glat.size), np.arange(glon.size), indexing="ij")
    return glat, glon, la[land], lo[land], ii.ravel()[land], jj.ravel()[land]


def _truth_dataset(model: str, p: np.ndarray, dim: str) -> xr.Dataset:
    space = _model_module(model).PARAMETERS
    table = truth_table(model)
    physical = np.asarray(space.to_physical(jnp.asarray(p)), dtype=float)
    return xr.Dataset(
        {
            "p": ((dim, "parameter"), p, {"long_name": "true normalized parameter", "units": "1"}),
            "physical": (
                (dim, "parameter"),
                physical,
                {"long_name": "true parameter, physical units (see unit)"},
            ),
            "centre": ("parameter", np.array([v[0] for v in table.values()])),
            "amplitude": ("parameter", np.array([v[1] for v in table.values()])),
            "weight": (("parameter", "feature"), np.array([v[2] for v in table.values()])),
        },
        coords={
            dim: np.arange(p.shape[0]),
            "parameter": np.asarray(space.names, dtype=object),
            "unit": ("parameter", np.asarray([s.unit for s in space.specs], dtype=object)),
            "feature": np.asarray(_U_NAMES, dtype=object),
        },
        attrs={
            "truth_function": "p = centre + amplitude * tanh(weight . u); u = (uT, uP, uC, "
            "upH, uN, uT*uC), uT = (BIO1 - 10)/10, uP = ln(BIO12/700)/0.8, uC = "
            "(Clay_Content_0cm - 22)/10, upH = pH_Water_0cm - 6.3, uN = ln(NPP/400)/0.7 "
            "(NPP in gC m-2 yr-1)",
            "model": model,
            "mode": MODEL_MODES[model],
        },
    )


def make_world(
    n_sites: int,
    seed: int = 0,
    model: str = "clm5",
    noise: float = 0.2,
    grid_resolution: float = 4.0,
    progress: bool = False,
) -> World:
    """Generate a synthetic world with known truth (see the module docstring).

    Args:
        n_sites: number of sites (profiles), >= 1 (10 to 100,000 typical).
        seed: random seed; the same seed gives identical worlds (and files).
        model: process model generating the observations, ``"clm5"`` or ``"compas"``.
        noise: standard deviation of the multiplicative log-normal observation noise
            (``obs = model * exp(noise * eps)``); 0 gives the model exactly.
        grid_resolution: resolution of the global grid of land cells, degrees.
        progress: show a tqdm progress bar over the steady-state chunks.

    Returns:
        `World`.

    Raises:
        RuntimeError: if float64 is off (``jax.config.update("jax_enable_x64", True)``).
        ValueError: for a bad argument.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "make_world needs float64 steady states: call "
            "jax.config.update('jax_enable_x64', True) first (the soc-jax CLI does this)."
        )
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not 0.25 <= grid_resolution <= 30:
        raise ValueError(f"grid_resolution must be within 0.25..30 degrees, got {grid_resolution}")
    _model_module(model)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ss = np.random.SeedSequence(seed)
    rng_fields, rng_sites, rng_layout, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))
    fields = _SmoothFields(rng_fields, _FIELDS, freq={"land": 2.5, "elev": 3.5, "cont": 1.5})
    lat, lon = _sample_sites(rng_sites, n_sites, fields)
    glat, glon, clat, clon, ci, cj = _grid_cells(fields, grid_resolution)
    site = _covariates(lat, lon, fields)
    cell = _covariates(clat, clon, fields)
    timings["covariates"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    f_site = _forcing(site["cov"], site["aux"])
    f_cell = _forcing(cell["cov"], cell["aux"])
    timings["forcing"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_sites + clat.size, desc=f"{model} steady states", unit="site")
    p, soc20, ok, redraws = _solve_with_redraws(model, site["cov"], f_site, bar)
    gp, gsoc, gok, _ = _solve_with_redraws(model, cell["cov"], f_cell, bar)
    if bar is not None:
        bar.close()
    timings["steady_state"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    edges, n_layers = _observation_layout(rng_layout, n_sites)
    eps = rng_noise.standard_normal((n_sites, 10))
    top, bottom = edges[:, :-1], edges[:, 1:]
    node = 0.5 * (top + bottom)
    mask = ~np.isnan(bottom)
    safe_node = np.where(mask, node, 0.1)
    model_at = np.asarray(
        _pchip_batch(jnp.asarray(np.where(ok[:, None], soc20, 1.0)), jnp.asarray(safe_node))
    )
    obs = np.where(mask, model_at * np.exp(noise * eps), np.nan)
    tex = site["aux"]["tex"]
    bd3 = np.stack([tex[d][4] for d in ("0cm", "30cm", "100cm")], 1)
    cf3 = np.stack([tex[d][3] for d in ("0cm", "30cm", "100cm")], 1)
    bd = np.where(mask, _interp_depth(bd3, safe_node), np.nan)
    cf = np.where(mask, _interp_depth(cf3, safe_node), np.nan)
    content = obs / (bd * 1000.0 * (1.0 - cf / 100.0))
    ids = np.asarray([f"S{i:06d}" for i in range(n_sites)], dtype=object)
    keep = np.flatnonzero(ok)
    failed = [str(ids[i]) for i in np.flatnonzero(~ok)]
    width = int(n_layers[keep].max()) if keep.size else 0
    sl = (keep, slice(0, width))
    profiles = _assemble(
        ids[keep],
        lat[keep],
        lon[keep],
        mask[sl],
        {
            "depth_top": np.where(mask, top, np.nan)[sl],
            "depth_bottom": bottom[sl],
            "depth_node": np.where(mask, node, np.nan)[sl],
            "soc": obs[sl],
            "soc_content": content[sl],
            "bulk_density": bd[sl],
            "coarse_fragments": cf[sl],
        },
        validate=False,
        attrs={"source": f"soc_jax synthetic world (model {model}, seed {seed}, noise {noise})"},
    )
    profiles["soc_model"] = (
        ("profile", "node"),
        soc20[keep],
        {"units": "gC m-3", "long_name": "model SOC at the 20 nodes"},
    )
    profiles = profiles.assign_coords(
        depth_model=("node", ZSOI[:N_LAYERS], {"units": "m", "long_name": "model node depth"})
    )
    profiles["stock_100cm"] = (
        "profile",
        np.asarray(stocks(soc20[keep]).top_100cm),
        {"units": "gC m-2", "long_name": "model SOC stock 0-100 cm"},
    )
    profiles["soc_model_at_obs"] = (
        ("profile", "layer"),
        np.where(mask, model_at, np.nan)[sl],
        {"units": "gC m-3", "long_name": "model SOC at the observation depths (PCHIP)"},
    )

    cov_matrix = np.stack([site["cov"][k] for k in COVARIATE_NAMES], axis=1)[keep]
    ci_lat, ci_lon = nearest_cell(lat[keep], lon[keep], glat, glon)
    cell_index = -np.ones((glat.size, glon.size), np.int64)
    cell_index[ci, cj] = np.arange(ci.size)
    covariates = covariates_dataset(
        cov_matrix, profile_id=ids[keep], grid_cell=cell_index[ci_lat, ci_lon]
    )
    covariates["grid_cell"].attrs["long_name"] = "nearest grid cell (SPEC 1.11); -1 if ocean"
    forcing = forcing_to_dataset(
        Forcing(**{k: v[keep] for k, v in f_site.as_numpy().items()}), profile_id=ids[keep]
    )
    truth = _truth_dataset(model, p[keep], "profile")
    truth["redraws"] = ("profile", redraws[keep], {"long_name": "truth redraws (0 = none)"})
    truth = truth.assign_coords(profile_id=("profile", ids[keep]))

    gkeep = np.flatnonzero(gok)
    g_cov = np.stack([cell["cov"][k] for k in COVARIATE_NAMES], axis=1)[gkeep]
    grid = covariates_dataset(
        g_cov, dim="cell", lat=clat[gkeep], lon=clon[gkeep], i_lat=ci[gkeep], i_lon=cj[gkeep]
    )
    gforce = forcing_to_dataset(
        Forcing(**{k: v[gkeep] for k, v in f_cell.as_numpy().items()}), dim="cell"
    )
    grid = xr.merge([grid, gforce], compat="override")
    grid["p"] = (("cell", "parameter"), gp[gkeep])
    grid = grid.assign_coords(
        parameter=truth["parameter"].values,
        grid_lat=("grid_lat", glat),
        grid_lon=("grid_lon", glon),
    )
    grid["soc_model"] = (("cell", "node"), gsoc[gkeep], {"units": "gC m-3"})
    grid["stock_100cm"] = ("cell", np.asarray(stocks(gsoc[gkeep]).top_100cm), {"units": "gC m-2"})
    grid.attrs.update(resolution_deg=grid_resolution, n_failed_cells=int((~gok).sum()))
    timings["observations_and_datasets"] = time.perf_counter() - t0
    return World(
        profiles, covariates, forcing, truth, grid, model, int(seed), float(noise), failed, timings
    )
