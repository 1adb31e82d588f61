"""The synthetic world's environment: land, smooth fields, the 60 covariates and forcing.

Split from `soc_jax.data.synthetic` (which documents the generator as a whole): everything here
is a deterministic function of location and of a few smooth random fields, shared by sites and
grid cells.
"""

from __future__ import annotations

import numpy as np

from ..forcing import DAYS_IN_MONTH, Forcing
from ..grid import DZ, N_LAYERS, ZISOI, ZSOI

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
    clim = _climate(lat, f)
    t_mean, p_annual = clim["t_mean"], clim["p_annual"]
    c: dict[str, np.ndarray] = {"Lon": lon, "Lat": lat}
    c.update(_bioclim(clim))

    pet = 100.0 + 60.0 * np.clip(clim["t_month"], 0.0, None).mean(1)  # mm yr-1
    wet = (p_annual / pet) / (p_annual / pet + 0.6)  # wetness index in (0, 1)
    koppen = _koppen(clim["t_month"], clim["p_month"], t_mean, p_annual)
    dtb = np.clip(1600.0 * np.exp(1.1 * f["bed"]) / (1.0 + clim["elev"] / 2000.0), 70.0, 20000.0)
    tex = _soil_layers(f, clim["elev"], t_mean, wet, c)
    c["Abs_Depth_to_Bedrock"] = dtb  # cm
    c["Garde_Acid"] = np.digitize(c["pH_Water_0cm"], [4.5, 5.5, 6.5, 7.5]).astype(float) + 1
    c["Occurrence_R_Horizon"] = 100.0 * _sigmoid((200.0 - dtb) / 80.0)
    forest = (wet > 0.5) & (koppen < 29)
    lc = _land_cover(koppen, wet, t_mean, forest, f["cat"])
    c["ESA_Land_Cover"] = lc
    c.update(_soil_classes(koppen, wet, t_mean < -2.0, tex["0cm"][0] > 80, forest))
    c["Elevation"] = clim["elev"]
    c["Koppen_Climate_2018"] = koppen

    npp, season, npp_month = _npp(clim, koppen, f["npp"])
    c["cesm2_npp"] = npp_month.mean(1)
    c["cesm2_npp_std"] = npp_month.std(1)
    residence = np.select([lc == 50, np.isin(lc, (60, 70, 80)), lc == 120], [30.0, 22.0, 8.0], 3.0)
    c["cesm2_vegc"] = npp * residence
    c["nbedrock"] = np.clip(np.searchsorted(ZISOI[:N_LAYERS], dtb / 100.0) + 1, 8, N_LAYERS)
    c["nbedrock"] = c["nbedrock"].astype(float)

    helpers = {k: clim[k] for k in ("t_month", "amp", "phase", "p_month")}
    helpers.update(wet=wet, npp=npp, season=season, npp_month=npp_month, f_fpi=f["fpi"], tex=tex)
    return {"cov": c, "aux": helpers}


def _climate(lat: np.ndarray, f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Elevation (m), monthly air temperature (degC) and precipitation (mm) at ``lat``.

    Returns ``elev``, ``t_mean``, ``amp``, ``phase``, ``t_month`` (n, 12), ``p_annual``,
    ``p_month`` (n, 12) and ``dtr`` (mean diurnal range, degC).
    """
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
    return {
        "elev": elev,
        "t_mean": t_mean,
        "amp": amp,
        "phase": phase,
        "t_month": t_month,
        "p_annual": p_annual,
        "p_month": p_month,
        "dtr": dtr,
    }


def _bioclim(clim: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The 19 WorldClim bioclimatic variables ``BIO1`` ... ``BIO19`` from `_climate`."""
    t_month, p_month, dtr = clim["t_month"], clim["p_month"], clim["dtr"]
    tq = _quarters(t_month) / 3.0
    pq = _quarters(p_month)
    rows = np.arange(t_month.shape[0])
    wettest, driest = pq.argmax(1), pq.argmin(1)
    warmest, coldest = tq.argmax(1), tq.argmin(1)
    bio5 = t_month.max(1) + dtr / 2
    bio6 = t_month.min(1) - dtr / 2
    bio = {
        1: clim["t_mean"],
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
        12: clim["p_annual"],
        13: p_month.max(1),
        14: p_month.min(1),
        15: 100.0 * p_month.std(1) / p_month.mean(1),
        16: pq.max(1),
        17: pq.min(1),
        18: pq[rows, warmest],
        19: pq[rows, coldest],
    }
    return {f"BIO{i}": v for i, v in bio.items()}


def _soil_layers(f, elev, t_mean, wet, c: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Texture and soil properties at 0, 30, 100 cm (sand + silt + clay = 100 exactly).

    Adds the depth-wise covariates to ``c``; returns depth -> ``(sand, clay, silt, cf, bd, ph,
    cec)`` (%, %, %, % volume, g cm-3, 1, cmol kg-1).
    """
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
    return tex


def _land_cover(koppen, wet, t_mean, forest, f_cat) -> np.ndarray:
    """Land cover (ESA CCI codes) from climate."""
    return np.select(
        [
            koppen == 30,
            koppen == 29,
            koppen <= 5,
            (koppen <= 7) | (wet < 0.35),
            (koppen <= 3) & forest,
            koppen <= 3,
            (koppen <= 16) & (f_cat > 0.4),
            (koppen <= 16) & forest,
            koppen <= 16,
            (koppen == 28) | (t_mean < -6),
            forest,
        ],
        [220, 140, 200, np.where(f_cat > 0, 120, 130), 50, 130, 10, 60, 130, 80, 70],
        default=130,
    ).astype(float)


def _soil_classes(koppen, wet, permafrost, sandy, forest) -> dict[str, np.ndarray]:
    """``USDA_Suborder`` and ``WRB_Subgroup`` codes: the first five rules are shared."""
    common = [permafrost, koppen <= 5, sandy, (koppen <= 3) & (wet > 0.6), koppen <= 3]
    usda = np.select(
        [*common, (koppen <= 7), (koppen >= 25) & forest, koppen >= 25, forest],
        [21, 51, 41, 71, 81, 62, 91, 31, 11],
        default=62,
    )
    wrb = np.select(
        [*common, wet > 0.85, koppen <= 7, (koppen >= 25) & forest, forest],
        [10, 5, 3, 12, 1, 14, 7, 25, 17],
        default=6,
    )
    return {"USDA_Suborder": usda.astype(float), "WRB_Subgroup": wrb.astype(float)}


def _npp(clim: dict[str, np.ndarray], koppen, f_npp) -> tuple[np.ndarray, ...]:
    """NPP: Miami model (g dry matter m-2 yr-1) x 0.45 gC/g.

    Returns ``(npp, season, npp_month)``: (n,) gC m-2 yr-1, (n, 12) monthly shares, (n, 12)
    gC m-2 s-1.
    """
    t_month, p_month = clim["t_month"], clim["p_month"]
    npp_t = 3000.0 / (1.0 + np.exp(1.315 - 0.119 * clim["t_mean"]))
    npp_p = 3000.0 * (1.0 - np.exp(-0.000664 * clim["p_annual"]))
    npp = 0.45 * np.minimum(npp_t, npp_p) * (0.85 + 0.3 * _sigmoid(f_npp))
    npp = np.where(koppen == 30, 5.0, npp)
    growth = np.clip(t_month + 2.0, 0.05, None) * (p_month / p_month.mean(1, keepdims=True)) ** 0.3
    season = growth / growth.sum(1, keepdims=True)
    npp_month = npp[:, None] * season / (DAYS_IN_MONTH[None, :] * 86400.0)  # gC m-2 s-1
    return npp, season, npp_month


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
    t_soil, altmax = _soil_temperature(cov, aux)
    w_scalar, o_scalar = _moisture_and_oxygen(aux)
    n = cov["Lat"].size
    fpi = np.clip(
        0.55 + 0.2 * np.tanh(aux["f_fpi"]) + 0.15 * np.tanh((cov["BIO1"] - 5.0) / 10.0), 0.2, 1.0
    )
    return Forcing(
        tsoi=t_soil + 273.15,
        w_scalar=w_scalar,
        o_scalar=o_scalar,
        fpi=np.broadcast_to(fpi[:, None, None], (n, 12, N_LAYERS)).copy(),
        sand=np.broadcast_to(_sand_by_layer(aux["tex"])[:, None, :], (n, 12, N_LAYERS)).copy(),
        nbedrock=np.repeat(cov["nbedrock"][:, None], 12, axis=1),
        altmax=altmax,
        altmax_lastyear=altmax.copy(),
        litter_input=_litter_input(cov["ESA_Land_Cover"], aux),
        npp=aux["npp_month"],
    )


def _soil_temperature(cov: dict[str, np.ndarray], aux: dict) -> tuple[np.ndarray, np.ndarray]:
    """Soil temperature (n, 12, 20) degC and the active layer thickness (n, 12) m.

    The annual wave is damped and lagged with depth, +1.5 K snow insulation in cold climates;
    the active layer is the deepest thawing interface.
    """
    z = ZSOI[:N_LAYERS]
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
    return t_soil, np.repeat(altmax[:, None], 12, axis=1)


def _moisture_and_oxygen(aux: dict) -> tuple[np.ndarray, np.ndarray]:
    """Moisture scalar from wetness and monthly rain; oxygen scalar reduced in wet, deep soil.

    Both (n, 12, 20), dimensionless.
    """
    z = ZSOI[:N_LAYERS]
    rain = aux["p_month"] / aux["p_month"].mean(1, keepdims=True)
    w_month = np.clip(aux["wet"][:, None] * (0.75 + 0.25 * rain) ** 0.5, 0.02, 1.0)
    w_scalar = np.clip(
        w_month[:, :, None] * (0.9 + 0.1 * np.minimum(z, 1.0))[None, None, :], 0.0, 1.0
    )
    o_scalar = np.clip(
        1.0 - 0.6 * np.clip((w_scalar - 0.75) / 0.25, 0.0, 1.0) * (1.0 - np.exp(-z / 0.5)), 0.2, 1.0
    )
    return w_scalar, o_scalar


def _sand_by_layer(tex: dict[str, tuple]) -> np.ndarray:
    """Sand (n, 20) %, linear in depth between the 0, 30, 100 cm values (flat below 1 m)."""
    z = ZSOI[:N_LAYERS]
    sand_nodes = np.stack([tex[d][0] for d in ("0cm", "30cm", "100cm")], 1)
    zs = np.array([0.0, 0.3, 1.0])
    sand = np.empty((sand_nodes.shape[0], N_LAYERS))
    for j, zj in enumerate(z):
        k = np.searchsorted(zs, zj) - 1
        if k >= 2:
            sand[:, j] = sand_nodes[:, 2]
        else:
            w = (zj - zs[k]) / (zs[k + 1] - zs[k])
            sand[:, j] = (1 - w) * sand_nodes[:, k] + w * sand_nodes[:, k + 1]
    return sand


def _litter_input(lc: np.ndarray, aux: dict) -> np.ndarray:
    """Litter input (n, 4, 12, 20) gC m-3 per month: NPP x season x root profile x pool shares.

    Root profile: Jackson et al. (1996) beta by biome; shares CWD/metabolic/cellulose/lignin,
    CWD only under forests, more lignin under conifers.
    """
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
    return (
        aux["npp"][:, None, None, None]
        * shares[:, :, None, None]
        * aux["season"][:, None, :, None]
        * roots[:, None, None, :]
        / DZ[:N_LAYERS][None, None, None, :]
    )


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


def _grid_cells(fields: _SmoothFields, resolution: float) -> tuple[np.ndarray, ...]:
    glat = np.arange(90.0 - resolution / 2, -90.0, -resolution)  # north -> south (CESM order)
    glon = np.arange(-180.0 + resolution / 2, 180.0, resolution)
    la, lo = np.meshgrid(glat, glon, indexing="ij")
    la, lo = la.ravel(), lo.ravel()
    land = _land_score(la, lo, fields(la, lo)["land"]) > 0
    ii, jj = np.meshgrid(np.arange(glat.size), np.arange(glon.size), indexing="ij")
    return glat, glon, la[land], lo[land], ii.ravel()[land], jj.ravel()[land]
