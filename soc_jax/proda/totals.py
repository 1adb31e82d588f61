"""Stocks and Pg C totals of a global prediction (SPEC 8): cell areas, quantiles, `Prediction`.

`cell_area` gives each lat-lon cell's area (PRODA's trapezoid formula); `total_pg` sums
``stock x area`` over the cells that succeeded, in Pg C; `member_totals` sums every bootstrap
member over the SAME cells; `masked_quantiles` takes per-cell medians and quantiles over the
members whose steady state succeeded (never NaN). `Prediction` holds everything predicted on the
grid's land cells (`soc_jax.proda.predict.global_prediction`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..grid import stocks

__all__ = [
    "EARTH_RADIUS",
    "FILL_VALUE",
    "QUANTILES",
    "STOCK_NAMES",
    "Prediction",
    "cell_area",
    "masked_quantiles",
    "member_totals",
    "quantile_totals",
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
    """Quantiles along ``axis`` over entries with ``ok`` only; 0 where none is ok.

    NaN is used only inside this function (``nanquantile``) and never returned.
    """
    import warnings

    v = np.where(ok, values, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-failed cells: handled below
        out = np.nanquantile(v, q, axis=axis)
    return np.where(np.isfinite(out), out, 0.0)


def quantile_totals(totals: np.ndarray) -> dict[str, float]:
    """Median and 14 / 86 % quantiles of member totals (Pg C)."""
    q = np.quantile(totals, QUANTILES)
    return {"q14": float(q[0]), "median": float(q[1]), "q86": float(q[2])}


@dataclasses.dataclass
class Prediction:
    """Everything predicted on the grid's land cells (n cells).

    Attributes:
        params: (M, n, n_par) clipped normalized parameters of every member (network dtype).
        stocks: (M, n, 4) stocks (0-30, 0-100, 0-200 cm, total) gC m-2, 0 where failed.
        soc: (n, 20) per-cell median over seed members of layer SOC, gC m-3.
        ok: (M, n) steady state succeeded.
        kinds: member kinds (``"seed"`` / ``"bootstrap"``).
        area: (n,) cell areas, m2.
        best_stocks: (n, 4) per-cell median over seed members (ok ones), gC m-2.
        best_ok: (n,) at least one seed member succeeded.
        boot_q: (3, n, 4) per-cell 14/50/86 % quantiles over bootstraps (None without any).
        totals: name -> Pg C (dict per configuration and band).
        extra: configuration name -> (stocks (n, 4), ok (n,)) (homogeneous, default).
        failed: number of failed (member, cell) steady states per kind.
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


def total_pg(stock: np.ndarray, ok: np.ndarray, area: np.ndarray) -> np.ndarray:
    """sum over ok cells of stock (gC m-2) x area (m2) / 1e15 -> Pg C; stock (..., n)."""
    return np.sum(np.where(ok, stock, 0.0) * area, axis=-1) / 1e15


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
    """Pg C per latitude row: (unique lats ascending, totals)."""
    lats = np.unique(lat)
    tot = np.array([total_pg(stock[lat == la], ok[lat == la], area[lat == la]) for la in lats])
    return lats, tot
