"""Stocks and Pg C totals of a global prediction (SPEC 8): cell areas, quantiles, `Prediction`.

`cell_area` gives each lat-lon cell's area (PRODA's trapezoid formula); `total_pg` sums
``stock x area`` over the cells that succeeded, in Pg C, and `coverage` says which share of the
cells and of their area that is; `member_totals` sums every bootstrap member over the SAME
cells; `masked_quantiles` takes per-cell medians and quantiles over the members whose steady
state succeeded (NaN where none did). A failed cell's stock is NaN, never 0, and is never summed.
`failure_reasons` decodes the models' failure flags into words with counts.
`PUBLISHED_TOTALS` and `plausibility_note` compare a global total with published global SOC
stocks (or with a synthetic world's own truth). `Prediction` holds everything predicted on the
grid's land cells (`soc_jax.proda.predict.global_prediction`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..grid import stocks
from ..models.common import FLAG_NAMES

__all__ = [
    "EARTH_RADIUS",
    "FILL_VALUE",
    "IMPLAUSIBLE_FACTOR",
    "TRUTH_TOLERANCE",
    "QUANTILES",
    "STOCK_NAMES",
    "PUBLISHED_TOTALS",
    "Prediction",
    "cell_area",
    "covers_globe",
    "coverage",
    "failure_reasons",
    "masked_quantiles",
    "member_totals",
    "plausibility_note",
    "quantile_totals",
    "reasons_text",
    "stock_array",
    "total_pg",
    "zonal_totals",
]

EARTH_RADIUS: float = 6371008.8
"""Mean Earth radius used by PRODA's area formula, m (SPEC 8)."""
STOCK_NAMES: tuple[str, ...] = ("top_30cm", "top_100cm", "top_200cm", "total")
QUANTILES: tuple[float, float, float] = (0.14, 0.5, 0.86)
FILL_VALUE: float = -9999.0
"""``_FillValue`` of the maps: ocean cells and cells whose every member failed."""


def cell_area(lat, resolution: float = 0.5, method: str = "proda") -> np.ndarray:
    """Area of a lat-lon cell centred at ``lat`` (degrees north), m2.

    ``method="proda"`` is SPEC 8's trapezoid, generalised from 0.5 degree to any resolution
    ``d``: ``L_top = 2 pi R cos(|lat + d/2|) / 360 * d``, ``L_down`` likewise at ``lat - d/2``,
    ``H = pi R / 180 * d``, ``area = (L_top + L_down) H / 2``. Summed over a full global grid
    it is ``4 pi R^2 (h/2) cot(h/2)`` with ``h = d`` in radians (the trapezoid rule for the
    integral of cos), 6e-6 below the sphere at 0.5 degree. ``method="exact"`` is the spherical
    zone ``R^2 (d pi/180) (sin(lat + d/2) - sin(lat - d/2))``, which sums to ``4 pi R^2``.
    """
    lat = np.asarray(lat, dtype=float)
    d = float(resolution)
    R = EARTH_RADIUS
    if method == "proda":
        l_top = 2 * np.pi * R * np.cos(np.deg2rad(np.abs(lat + d / 2))) / 360.0 * d
        l_down = 2 * np.pi * R * np.cos(np.deg2rad(np.abs(lat - d / 2))) / 360.0 * d
        h = np.pi * R / 180.0 * d
        return (l_top + l_down) * h / 2.0
    if method == "exact":
        return (
            R**2
            * np.deg2rad(d)
            * (np.sin(np.deg2rad(lat + d / 2)) - np.sin(np.deg2rad(lat - d / 2)))
        )
    raise ValueError(f"method must be 'proda' or 'exact', got {method!r}")


def stock_array(soc: np.ndarray) -> np.ndarray:
    """(..., 4) stocks 0-30/0-100/0-200 cm/total, gC m-2."""
    return np.stack([np.asarray(s) for s in stocks(soc)], axis=-1)


def masked_quantiles(values: np.ndarray, ok: np.ndarray, q, axis: int = 0) -> np.ndarray:
    """Quantiles along ``axis`` over entries with ``ok`` only; NaN where none is ok (a cell
    whose every member failed has no value, never 0)."""
    import warnings

    v = np.where(ok, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-failed cells: NaN, on purpose
        return np.nanquantile(v, q, axis=axis)


def quantile_totals(totals: np.ndarray) -> dict[str, float]:
    """Median and 14 / 86 % quantiles of member totals (Pg C)."""
    q = np.quantile(totals, QUANTILES)
    return {"q14": float(q[0]), "median": float(q[1]), "q86": float(q[2])}


@dataclasses.dataclass
class Prediction:
    """Everything predicted on the grid's land cells (n cells).

    Attributes:
        params: (M, n, n_par) clipped normalized parameters of every member (network dtype).
        stocks: (M, n, 4) stocks (0-30, 0-100, 0-200 cm, total) gC m-2, NaN where failed.
        soc: (n, 20) per-cell median over seed members of layer SOC, gC m-3 (NaN where every
            seed member failed).
        ok: (M, n) steady state succeeded.
        kinds: member kinds (``"seed"`` / ``"bootstrap"``).
        area: (n,) cell areas, m2.
        best_stocks: (n, 4) per-cell median over seed members (ok ones), gC m-2 (NaN where
            every seed member failed).
        best_ok: (n,) at least one seed member succeeded.
        boot_q: (3, n, 4) per-cell 14/50/86 % quantiles over bootstraps (None without any;
            NaN where every bootstrap member failed).
        totals: name -> Pg C (dict per configuration and band); ``coverage`` (cells and land-
            area share each total sums over) and ``failure_reasons`` (decoded flags, counts).
        extra: configuration name -> (stocks (n, 4) NaN where failed, ok (n,)) (homogeneous,
            default).
        failed: number of failed (member, cell) steady states per kind.
        flags: (M, n) failure flags of every member (`soc_jax.models.common`; 0: succeeded).
    """

    params: np.ndarray
    stocks: np.ndarray
    soc: np.ndarray
    ok: np.ndarray
    kinds: list[str]
    area: np.ndarray
    best_stocks: np.ndarray
    best_ok: np.ndarray
    boot_q: np.ndarray | None
    totals: dict
    extra: dict
    failed: dict
    flags: np.ndarray | None = None


def total_pg(stock: np.ndarray, ok: np.ndarray, area: np.ndarray) -> np.ndarray:
    """sum over ok cells of stock (gC m-2) x area (m2) / 1e15 -> Pg C; stock (..., n).

    Failed cells (``ok`` False; their stock is NaN) are left out, never counted as 0; see
    `coverage` for the share of the cells and area a total covers.
    """
    return np.sum(np.where(ok, stock, 0.0) * area, axis=-1) / 1e15


def coverage(ok: np.ndarray, area: np.ndarray) -> dict:
    """Which cells a total sums over: ``cells`` (succeeded), ``of_cells`` (all) and
    ``area_fraction`` (their share of the cells' area, i.e. of the land area predicted)."""
    ok = np.asarray(ok, bool)
    area = np.asarray(area, float)
    return {
        "cells": int(ok.sum()),
        "of_cells": int(ok.size),
        "area_fraction": float(area[ok].sum() / area.sum()) if area.sum() > 0 else 0.0,
    }


def failure_reasons(flags: np.ndarray) -> dict[str, int]:
    """Failed steady states per reason: flag meaning (`soc_jax.models.common.FLAG_NAMES`) ->
    count of failed entries with that flag, most frequent first (an entry may have several)."""
    flags = np.asarray(flags, np.int64).ravel()
    counts = {text: int(np.sum((flags & bit) != 0)) for bit, text in FLAG_NAMES.items()}
    unknown = int(np.sum((flags & ~sum(FLAG_NAMES)) != 0))
    if unknown:
        counts["unknown failure flag"] = unknown
    return dict(sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: -kv[1]))


def reasons_text(reasons: dict[str, int], top: int = 3) -> str:
    """``"reason 12, reason 3"`` of the ``top`` most frequent reasons (`failure_reasons`)."""
    return ", ".join(f"{k} {v}" for k, v in list(reasons.items())[:top]) or "none"


def member_totals(stock: np.ndarray, ok: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-member Pg C totals, every member summed over the SAME cells.

    The cells summed are those where every member succeeded; a cell where any member failed is
    left out of every member's total (a failed cell is never a zero stock), so the band of
    totals compares members on equal footing.

    Args:
        stock: (..., M, n) stocks of M members on n cells, gC m-2 (any value where failed).
        ok: (M, n) steady state succeeded.
        area: (n,) cell areas, m2.

    Returns:
        ``(totals (..., M) in Pg C, info)``; ``info``: ``n_cells``, ``n_cells_summed``,
        ``cells_left_out``, ``area_share_left_out`` (of the n cells' area),
        ``member_failed_cells`` and ``member_failed_area_share`` (lists over members).
    """
    ok = np.asarray(ok, bool)
    area = np.asarray(area, float)
    common = ok.all(axis=0)
    total_area = float(area.sum())
    info = {
        "n_cells": int(ok.shape[1]),
        "n_cells_summed": int(common.sum()),
        "cells_left_out": int((~common).sum()),
        "area_share_left_out": float(area[~common].sum() / total_area),
        "member_failed_cells": [int(v) for v in (~ok).sum(axis=1)],
        "member_failed_area_share": [float(v) for v in ((~ok) * area).sum(axis=1) / total_area],
    }
    return total_pg(stock, common, area), info


def zonal_totals(stock: np.ndarray, ok: np.ndarray, area: np.ndarray, lat: np.ndarray):
    """Pg C per latitude row: (unique lats ascending, totals); NaN for a row where every cell
    failed (no value, never 0)."""
    lats = np.unique(lat)
    tot = np.array(
        [
            total_pg(stock[lat == la], ok[lat == la], area[lat == la])
            if ok[lat == la].any()
            else np.nan
            for la in lats
        ]
    )
    return lats, tot


# -- plausibility of global totals ---------------------------------------------------------------

PUBLISHED_TOTALS: dict[str, tuple[float, float | None, str, str]] = {
    "top_30cm": (684.0, 724.0, "0-30 cm", "Batjes 1996"),
    "top_100cm": (
        1260.0,
        1548.0,
        "0-100 cm",
        "HWSD 1260 and WISE 1408 (Batjes 2016) as cited by Tao et al. 2024; Batjes 1996 "
        "1462-1548; Jobbagy & Jackson 2000 1502",
    ),
    "top_200cm": (2376.0, 2456.0, "0-200 cm", "Batjes 1996"),
    "total": (2344.0, None, "0-3 m", "Jobbagy & Jackson 2000; none published to 8.6 m"),
}
"""Published global SOC stocks per depth band: ``(low, high, depth, sources)``, Pg C.

* 0-30 cm: 684-724 (Batjes 1996, Eur. J. Soil Sci. 47: 151-163).
* 0-100 cm: 1,260 (HWSD, FAO/IIASA/ISRIC/ISSCAS/JRC 2012) and 1,408 (WISE, Batjes 2016,
  Geoderma 269: 61-68), both as cited by Tao et al. 2024 (Global Change Biology, the PRODA
  convergence paper, which itself reports 1,281 / 1,308 Pg C with customary CLM5 / COMPAS
  parameters and 1,469 / 1,507 Pg C after PRODA); 1,462-1,548 (Batjes 1996); 1,502 (Jobbagy &
  Jackson 2000, Ecol. Appl. 10: 423-436). Range 1,260-1,548.
* 0-200 cm: 2,376-2,456 (Batjes 1996).
* the full 20-layer column (0-8.6 m): no published global estimate; 2,344 Pg C in the top 3 m
  (Jobbagy & Jackson 2000) is a lower reference, and ``IMPLAUSIBLE_FACTOR`` times it the upper
  end of what is unremarkable (``high`` is None).
"""
IMPLAUSIBLE_FACTOR: float = 2.0
"""A total more than this factor above the high end (or below the low end) is implausible."""
TRUTH_TOLERANCE: float = 0.2
"""On a synthetic world, a total within this relative distance of the world's truth gets no
note."""
GLOBAL_LAND_SHARE: float = 0.5
"""`covers_globe`: the cells cover at least this share of Earth's land area (1.49e14 m2)."""
_EARTH_LAND_AREA = 1.49e14  # m2, incl. ice sheets


def covers_globe(area) -> bool:
    """True when cells of ``area`` (m2) cover at least `GLOBAL_LAND_SHARE` of Earth's land, so
    that a total can be held against published global stocks."""
    return float(np.sum(area)) >= GLOBAL_LAND_SHARE * _EARTH_LAND_AREA


def plausibility_note(band: str, total: float, truth: float | None = None) -> str:
    """A note on a global total (Pg C) of ``band`` (`STOCK_NAMES`); ``""`` when unremarkable.

    With ``truth`` (a synthetic world's own total on the same cells, Pg C) the total is held
    against it (no note within `TRUTH_TOLERANCE`); otherwise against `PUBLISHED_TOTALS`
    (no note inside the published range). Beyond `IMPLAUSIBLE_FACTOR` the note says
    "implausible". The value itself is never changed or hidden.
    """
    total = float(total)
    if truth is not None and truth > 0:
        lo, hi = truth * (1 - TRUTH_TOLERANCE), truth * (1 + TRUTH_TOLERANCE)
        ref = f"this synthetic world's truth {truth:,.1f} Pg C on the same cells"
        ratio = total / truth
    else:
        lo, high, depth, source = PUBLISHED_TOTALS[band]
        if high is None:  # one published value, a lower reference
            hi, ratio = lo * IMPLAUSIBLE_FACTOR, total / lo
            ref = f"the published global {depth} stock {lo:,.0f} Pg C ({source})"
        else:
            hi, end = high, "high" if total > high else "low"
            ratio = total / hi if total > hi else total / lo
            ref = f"the {end} end of published global {depth} stocks {lo:,.0f}-{hi:,.0f} Pg C"
            ref += f" ({source})"
    if lo <= total <= hi:
        return ""
    far = total > hi * IMPLAUSIBLE_FACTOR or total < lo / IMPLAUSIBLE_FACTOR
    what = "implausible: " if far else ""
    return f"{what}{ratio:.3g} x {ref}"
