"""Global prediction (SPEC 8): parameters on the grid, steady states, stocks, Pg C totals, maps.

1. The trained members predict normalized parameters for every grid cell from its scaled
   covariates; PRODA clips them before simulating: ``p > 1 -> 1``, ``p <= 0 -> 1e-4``
   (`clip_parameters`).
2. Each cell's steady state runs with that cell's forcing (``jax.jit`` of
   `soc_jax.batching.map_profiles` over fixed-size blocks of cells, progress bar), giving layer
   SOC (gC m-3) and stocks 0-30, 0-100, 0-200 cm and total (gC m-2, `soc_jax.grid.stocks`).
3. Failed steady states (`soc_jax.models.is_failure`: a flag or a non-finite SOC) are never NaN
   in the outputs: their stocks are 0 with ``ok = False``, they are excluded from medians,
   quantiles and totals, and counted.
4. Cell areas by SPEC 8's trapezoid formula (`cell_area`, ``R = 6371008.8`` m) and totals
   ``sum(stock x area)`` in Pg C: best guess = per-cell median over the seed members that
   succeeded, summed over the cells where at least one seed member succeeded; uncertainty =
   per-cell and global median and 14 / 86 % quantiles over the bootstrap members. Every
   bootstrap member's total is summed over the SAME cells: those where every bootstrap member
   succeeded (`member_totals`); a cell where any member failed is left out of every member's
   total (never counted as zero), and the cells and land-area share left out, overall and per
   member, are reported (``totals["proda_bootstrap_cells"]``).
   The "homogeneous" configuration (one global parameter vector: the mean of the training
   targets) and, for CLM5, the "default" configuration (customary parameters, mode
   ``"default"``) are computed beside PRODA's.
5. Outputs: CF NetCDF on the (lat, lon) grid and PNG figures (`write_maps`, `figures`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..batching import map_profiles
from ..forcing import Forcing
from ..grid import N_LAYERS, stocks
from ..models.registry import get_model, is_failure

__all__ = [
    "EARTH_RADIUS",
    "STOCK_NAMES",
    "cell_area",
    "clip_parameters",
    "apply_link",
    "is_failure",
    "predict_parameters",
    "simulate_cells",
    "Prediction",
    "global_prediction",
    "quantile_totals",
    "member_totals",
    "write_maps",
    "figures",
    "heldout_nse",
    "pooled_nse",
]

EARTH_RADIUS: float = 6371008.8
"""Mean Earth radius used by PRODA's area formula, m (SPEC 8)."""
STOCK_NAMES: tuple[str, ...] = ("top_30cm", "top_100cm", "top_200cm", "total")
QUANTILES: tuple[float, float, float] = (0.14, 0.5, 0.86)
_FILL = -9999.0


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


def clip_parameters(p):
    """PRODA's clipping before forward simulation: ``p > 1 -> 1``, ``p <= 0 -> 1e-4``."""
    p = jnp.asarray(p)
    return jnp.where(p > 1.0, 1.0, jnp.where(p <= 0.0, 1e-4, p))


def apply_link(raw, link: str = "clip"):
    """Normalized parameters from raw network outputs: ``"clip"`` (PRODA's two-stage network,
    `clip_parameters`) or ``"sigmoid"`` (end-to-end networks, `soc_jax.proda.end_to_end`)."""
    if link == "clip":
        return clip_parameters(raw)
    if link == "sigmoid":
        return clip_parameters(jax.nn.sigmoid(jnp.asarray(raw)))
    raise ValueError(f"link must be 'clip' or 'sigmoid', got {link!r}")


@eqx.filter_jit
def _predict_block(models, x):
    return eqx.filter_vmap(lambda m: jax.vmap(m)(x))(models)


def predict_parameters(models, X: np.ndarray, block: int = 4096) -> np.ndarray:
    """Raw network outputs for every member and row: (M, n, n_par), unclipped, network dtype.

    Args:
        models: stacked members (`soc_jax.proda.train.Ensemble.best_models`).
        X: (n, 60) scaled covariates (no NaN).
        block: rows per compiled call (the last block is padded).
    """
    dtype = jax.tree.leaves(eqx.filter(models, eqx.is_array))[0].dtype
    n = X.shape[0]
    out = []
    for s in range(0, n, block):
        idx = np.minimum(np.arange(s, s + block), n - 1)
        out.append(
            np.asarray(_predict_block(models, jnp.asarray(X[idx], dtype)))[:, : min(block, n - s)]
        )
    return np.concatenate(out, axis=1)


@functools.lru_cache(maxsize=8)
def _cell_solver(model: str, mode: str, chunk: int):
    module = get_model(model)

    def one(x, forcing):
        r = module.steady_state(x, forcing, mode=mode)
        bad = is_failure(r)
        soc = jnp.where(bad, 0.0, r.soc)
        return soc, ~bad

    return jax.jit(lambda x, f: map_profiles(one, x, f, chunk_size=chunk))


def simulate_cells(
    model: str,
    params_physical: np.ndarray,
    forcing: Forcing,
    *,
    mode: str,
    block: int = 1024,
    chunk: int = 128,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Steady states of n cells: layer SOC (n, 20) gC m-3 (0 where failed) and ok (n,).

    Args:
        model: ``"clm5"`` or ``"compas"``.
        params_physical: (n, n_par) physical parameters, one row per cell.
        forcing: `Forcing` with a leading cell axis (n).
        mode: the model's ``steady_state`` mode.
        block: cells per compiled call (fixed shape; the last block is padded).
        chunk: cells per vectorised chunk inside a call (`map_profiles`).
        progress: optional tqdm bar, advanced by the cells done.
    """
    solve = _cell_solver(model, mode, chunk)
    arrays = forcing.as_numpy()
    n = params_physical.shape[0]
    soc = np.zeros((n, N_LAYERS))
    ok = np.zeros(n, bool)
    for s in range(0, n, block):
        e = min(s + block, n)
        idx = np.minimum(np.arange(s, s + block), e - 1)
        f = Forcing(**{k: jnp.asarray(v[idx]) for k, v in arrays.items()})
        out_soc, out_ok = solve(jnp.asarray(params_physical[idx], jnp.float64), f)
        soc[s:e] = np.asarray(out_soc)[: e - s]
        ok[s:e] = np.asarray(out_ok)[: e - s]
        if progress is not None:
            progress.update(e - s)
    return soc, ok


def _stock_array(soc: np.ndarray) -> np.ndarray:
    """(..., 4) stocks 0-30/0-100/0-200 cm/total, gC m-2."""
    return np.stack([np.asarray(s) for s in stocks(soc)], axis=-1)


def _masked_quantiles(values: np.ndarray, ok: np.ndarray, q, axis: int = 0) -> np.ndarray:
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


def _total_pg(stock: np.ndarray, ok: np.ndarray, area: np.ndarray) -> np.ndarray:
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
    return _total_pg(stock, common, area), info


def global_prediction(
    model: str,
    models,
    kinds: list[str],
    X: np.ndarray,
    forcing: Forcing,
    lat: np.ndarray,
    resolution: float,
    *,
    mode: str,
    homogeneous: np.ndarray | None = None,
    default: bool = True,
    block: int = 1024,
    progress: bool = False,
    link: str = "clip",
) -> Prediction:
    """Parameters, steady states, stocks and Pg C totals on every grid cell.

    Args:
        model: ``"clm5"`` or ``"compas"``.
        models: stacked trained members (M).
        kinds: (M,) ``"seed"`` or ``"bootstrap"`` per member.
        X: (n, 60) scaled covariates of the cells (no NaN; drop such cells first).
        forcing: the cells' `Forcing` (leading axis n).
        lat: (n,) cell-centre latitudes, degrees north.
        resolution: grid resolution, degrees (for `cell_area`).
        mode: ``steady_state`` mode for the members and the homogeneous configuration.
        homogeneous: one normalized parameter vector for all cells (e.g. the mean target).
        default: also run CLM5's customary parameters in mode ``"default"`` (CLM5 only).
        block: cells per compiled steady-state call.
        progress: tqdm progress bar over steady states.
        link: how raw outputs become normalized parameters (`apply_link`; ``"clip"``:
            PRODA's two-stage network, ``"sigmoid"``: end-to-end networks).
    """
    space = get_model(model).PARAMETERS
    kinds = list(kinds)
    seeds = np.array([k == "seed" for k in kinds])
    boots = np.array([k == "bootstrap" for k in kinds])
    if not seeds.any():
        raise ValueError("need at least one seed (best-guess) member")
    params = np.asarray(apply_link(predict_parameters(models, X), link))  # network's dtype
    M, n, _ = params.shape
    extra_runs = int(homogeneous is not None) + int(default and model == "clm5")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=(M + extra_runs) * n, desc="steady states", unit="cell")
    # per member only the four stocks are kept (a 0.5-degree grid has ~60k cells x 210
    # members); layer SOC is kept for the seed members (their per-cell median)
    st = np.zeros((M, n, len(STOCK_NAMES)))
    ok = np.zeros((M, n), bool)
    seed_soc = np.zeros((int(seeds.sum()), n, N_LAYERS))
    k = 0
    for m in range(M):
        x = np.asarray(space.to_physical(jnp.asarray(params[m], jnp.float64)))
        soc, ok[m] = simulate_cells(model, x, forcing, mode=mode, block=block, progress=bar)
        st[m] = _stock_array(soc)
        if seeds[m]:
            seed_soc[k] = soc
            k += 1
    area = cell_area(lat, resolution)
    best = _masked_quantiles(st[seeds], ok[seeds][..., None], 0.5)
    best_soc = _masked_quantiles(seed_soc, ok[seeds][..., None], 0.5)
    best_ok = ok[seeds].any(axis=0)
    totals: dict = {}
    totals["proda_best_guess"] = {
        b: float(_total_pg(best[:, i], best_ok, area)) for i, b in enumerate(STOCK_NAMES)
    }
    boot_q = None
    if boots.any():
        boot_q = _masked_quantiles(st[boots], ok[boots][..., None], list(QUANTILES))
        per_member, info = member_totals(np.moveaxis(st[boots], -1, 0), ok[boots], area)  # (4, B)
        totals["proda_bootstrap"] = {
            b: quantile_totals(per_member[i]) for i, b in enumerate(STOCK_NAMES)
        }
        totals["proda_bootstrap_members"] = per_member[1].tolist()  # 0-100 cm per member
        totals["proda_bootstrap_cells"] = info
        # the best guess on the same cells, for a like-for-like comparison with the band
        common = ok[boots].all(axis=0) & best_ok
        totals["proda_best_guess_on_bootstrap_cells"] = {
            b: float(_total_pg(best[:, i], common, area)) for i, b in enumerate(STOCK_NAMES)
        }
    extra = {}
    runs = []
    if homogeneous is not None:
        x = np.asarray(
            space.to_physical(jnp.asarray(np.broadcast_to(homogeneous, (n, len(space)))))
        )
        runs.append(("homogeneous", x, mode))
    if default and model == "clm5":
        from ..models import clm5

        runs.append(
            ("default", np.broadcast_to(clm5.default_parameters(), (n, len(space))), "default")
        )
    for name, x, md in runs:
        s, o = simulate_cells(
            model, np.ascontiguousarray(x), forcing, mode=md, block=block, progress=bar
        )
        sk = _stock_array(s)
        extra[name] = (sk, o)
        totals[name] = {b: float(_total_pg(sk[:, i], o, area)) for i, b in enumerate(STOCK_NAMES)}
    if bar is not None:
        bar.close()
    failed = {
        "seed_member_cells": int((~ok[seeds]).sum()),
        "bootstrap_member_cells": int((~ok[boots]).sum()),
        "cells_without_any_seed": int((~best_ok).sum()),
        **{f"{k}_cells": int((~o).sum()) for k, (_, o) in extra.items()},
    }
    totals["failed"] = failed
    return Prediction(
        params, st, best_soc, ok, kinds, area, best, best_ok, boot_q, totals, extra, failed
    )


# -- outputs -------------------------------------------------------------------------------------

_BANDS = {
    "top_30cm": "0-30 cm",
    "top_100cm": "0-100 cm",
    "top_200cm": "0-200 cm",
    "total": "0-8.6 m (all 20 layers)",
}


def _to_grid(values: np.ndarray, grid: xr.Dataset, keep: np.ndarray) -> np.ndarray:
    """(n, ...) cell values -> (..., n_lat, n_lon) with `_FILL` off land or where not ``keep``."""
    nlat, nlon = grid.sizes["grid_lat"], grid.sizes["grid_lon"]
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape[1:] + (nlat, nlon), _FILL)
    il, jl = grid["i_lat"].values, grid["i_lon"].values
    v = np.where(keep.reshape((-1,) + (1,) * (values.ndim - 1)), values, _FILL)
    out[..., il, jl] = np.moveaxis(v, 0, -1)
    return out


def write_maps(
    pred: Prediction,
    grid: xr.Dataset,
    parameter_names: list[str],
    path: str | os.PathLike,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Write the CF NetCDF of parameter maps, stocks and uncertainty on the (lat, lon) grid.

    Missing values (ocean, cells whose every seed member failed) are ``_FillValue = -9999``;
    the arrays never hold NaN. Stocks are in kgC m-2, areas in m2, parameters normalized.

    Args:
        pred: `Prediction` of `global_prediction` on the cells of ``grid``.
        grid: the synthetic world's ``grid.nc`` (cells with ``i_lat``, ``i_lon``, coordinates
            ``grid_lat``, ``grid_lon``; optional true ``p`` and ``stock_100cm``).
        parameter_names: names of the parameters.
        path: output file.
        attrs: extra global attributes.

    Returns:
        The Dataset written.
    """
    seeds = np.array([k == "seed" for k in pred.kinds])
    keep = pred.best_ok
    land = np.ones_like(keep)
    p_best = _masked_quantiles(pred.params[seeds], pred.ok[seeds][..., None], 0.5)
    dims_b = ("depth_band", "lat", "lon")
    kg = 1e-3
    data = {
        "parameter_map": (
            ("parameter", "lat", "lon"),
            _to_grid(p_best, grid, keep),
            {
                "long_name": "PRODA parameter, median over seed members (normalized, clipped)",
                "units": "1",
            },
        ),
        "soc_stock": (
            dims_b,
            _to_grid(pred.best_stocks * kg, grid, keep),
            {"long_name": "SOC stock, median over seed members", "units": "kg m-2"},
        ),
        "n_seed_ok": (
            ("lat", "lon"),
            _to_grid(pred.ok[seeds].sum(0), grid, land),
            {"long_name": "seed members whose steady state succeeded", "units": "1"},
        ),
        "cell_area": (
            ("lat", "lon"),
            _to_grid(pred.area, grid, land),
            {"long_name": "cell area (PRODA trapezoid formula, R = 6371008.8 m)", "units": "m2"},
        ),
    }
    if pred.boot_q is not None:
        for qi, q in enumerate(("q14", "q50", "q86")):
            boots = np.array([k == "bootstrap" for k in pred.kinds])
            keep_b = pred.ok[boots].any(0)
            data[f"soc_stock_{q}"] = (
                dims_b,
                _to_grid(pred.boot_q[qi] * kg, grid, keep_b),
                {
                    "long_name": f"SOC stock, {q[1:]} % quantile over bootstrap members",
                    "units": "kg m-2",
                },
            )
    for name, (sk, o) in pred.extra.items():
        data[f"soc_stock_{name}"] = (
            dims_b,
            _to_grid(sk * kg, grid, o),
            {"long_name": f"SOC stock, {name} parameters", "units": "kg m-2"},
        )
    if "p" in grid:
        data["true_parameter"] = (
            ("parameter", "lat", "lon"),
            _to_grid(grid["p"].values, grid, land),
            {"long_name": "true normalized parameter (synthetic world)", "units": "1"},
        )
    if "stock_100cm" in grid:
        data["true_soc_stock_100cm"] = (
            ("lat", "lon"),
            _to_grid(grid["stock_100cm"].values * kg, grid, land),
            {"long_name": "true SOC stock 0-100 cm (synthetic world)", "units": "kg m-2"},
        )
    ds = xr.Dataset(
        data,
        coords={
            "lat": (
                "lat",
                grid["grid_lat"].values,
                {"standard_name": "latitude", "units": "degrees_north", "long_name": "latitude"},
            ),
            "lon": (
                "lon",
                grid["grid_lon"].values,
                {"standard_name": "longitude", "units": "degrees_east", "long_name": "longitude"},
            ),
            "parameter": ("parameter", np.asarray(parameter_names, dtype=object)),
            "depth_band": ("depth_band", np.asarray(STOCK_NAMES, dtype=object)),
            "depth_band_label": (
                "depth_band",
                np.asarray([_BANDS[b] for b in STOCK_NAMES], dtype=object),
            ),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": "PRODA global prediction (soc_jax)",
            "totals_PgC": json.dumps(pred.totals),
            **(attrs or {}),
        },
    )
    enc = {k: {"_FillValue": _FILL} for k, v in ds.data_vars.items() if v.dtype.kind == "f"}
    ds.to_netcdf(path, engine="netcdf4", encoding=enc)
    return ds


def zonal_totals(stock: np.ndarray, ok: np.ndarray, area: np.ndarray, lat: np.ndarray):
    """Pg C per latitude row: (unique lats ascending, totals)."""
    lats = np.unique(lat)
    tot = np.array([_total_pg(stock[lat == la], ok[lat == la], area[lat == la]) for la in lats])
    return lats, tot


def figures(
    pred: Prediction,
    ds: xr.Dataset,
    grid: xr.Dataset,
    out: str | os.PathLike,
    key_parameters: list[str] | None = None,
    dpi: int = 90,
) -> list[str]:
    """PNG figures: stock maps, key parameter maps, latitude profile, predicted vs true.

    Returns:
        Paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    paths = []
    lon, lat = ds["lon"].values, ds["lat"].values

    def show(ax, arr, title, label, cmap="viridis", vmin=None, vmax=None):
        a = np.ma.masked_equal(np.asarray(arr), _FILL)
        im = ax.pcolormesh(lon, lat, a, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set(title=title, xlabel="longitude (degrees east)", ylabel="latitude (degrees north)")
        plt.colorbar(im, ax=ax, shrink=0.8).set_label(label)

    band = list(ds["depth_band"].values).index("top_100cm")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    best = ds["soc_stock"].values[band]
    vmax = float(np.quantile(best[best != _FILL], 0.98)) if (best != _FILL).any() else None
    show(axes[0], best, "PRODA SOC stock 0-100 cm (seed median)", "kgC m-2", vmin=0, vmax=vmax)
    if "soc_stock_q86" in ds:
        hi, lo = ds["soc_stock_q86"].values[band], ds["soc_stock_q14"].values[band]
        spread = np.where((hi == _FILL) | (lo == _FILL), _FILL, hi - lo)
        show(axes[1], spread, "bootstrap 86 % - 14 % range, 0-100 cm", "kgC m-2", cmap="magma")
    elif "true_soc_stock_100cm" in ds:
        show(
            axes[1],
            ds["true_soc_stock_100cm"].values,
            "true stock 0-100 cm",
            "kgC m-2",
            vmin=0,
            vmax=vmax,
        )
    else:
        axes[1].axis("off")
    p = os.path.join(out, "stock_maps.png")
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)

    names = [str(n) for n in ds["parameter"].values]
    key = [k for k in (key_parameters or names[:2]) if k in names][:4]
    if key:
        fig, axes = plt.subplots(
            1, len(key), figsize=(5.5 * len(key), 3.4), constrained_layout=True
        )
        for ax, k in zip(np.atleast_1d(axes), key, strict=True):
            show(
                ax,
                ds["parameter_map"].values[names.index(k)],
                f"{k} (normalized)",
                "1",
                vmin=0,
                vmax=1,
            )
        p = os.path.join(out, "parameter_maps.png")
        fig.savefig(p, dpi=dpi)
        plt.close(fig)
        paths.append(p)

    cell_lat = grid["lat"].values
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    la, tot = zonal_totals(pred.best_stocks[:, 1], pred.best_ok, pred.area, cell_lat)
    ax.plot(tot, la, "k-", label="PRODA (seed median)")
    if pred.boot_q is not None:
        boots = np.array([k == "bootstrap" for k in pred.kinds])
        keep_b = pred.ok[boots].any(0)
        _, lo = zonal_totals(pred.boot_q[0][:, 1], keep_b, pred.area, cell_lat)
        _, hi = zonal_totals(pred.boot_q[2][:, 1], keep_b, pred.area, cell_lat)
        ax.fill_betweenx(la, lo, hi, color="0.7", label="bootstrap 14-86 % (per cell)")
    for name, (sk, o) in pred.extra.items():
        ax.plot(zonal_totals(sk[:, 1], o, pred.area, cell_lat)[1], la, label=name)
    if "stock_100cm" in grid:
        t = zonal_totals(
            grid["stock_100cm"].values, np.ones(len(cell_lat), bool), pred.area, cell_lat
        )
        ax.plot(t[1], la, "r--", label="truth")
    ax.set(
        xlabel="SOC 0-100 cm per latitude row (Pg C)",
        ylabel="latitude (degrees north)",
        title="latitude profile of SOC stock",
    )
    ax.legend(fontsize=7)
    p = os.path.join(out, "latitude_profile.png")
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)

    if "p" in grid:
        seeds = np.array([k == "seed" for k in pred.kinds])
        pm = pred.params[seeds].mean(0)
        truth = grid["p"].values
        var = np.flatnonzero(truth.std(0) > 1e-6)[:8]
        if var.size:
            ncol = min(4, var.size)
            nrow = int(np.ceil(var.size / ncol))
            fig, axes = plt.subplots(
                nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), constrained_layout=True
            )
            for ax, j in zip(np.ravel(axes), var, strict=False):
                ax.plot(truth[:, j], pm[:, j], ".", ms=2)
                lo_, hi_ = truth[:, j].min(), truth[:, j].max()
                ax.plot([lo_, hi_], [lo_, hi_], "k-", lw=0.8)
                ax.set(
                    title=names[j], xlabel="true p (normalized)", ylabel="predicted p (normalized)"
                )
            for ax in np.ravel(axes)[var.size :]:
                ax.axis("off")
            p = os.path.join(out, "parameters_vs_truth.png")
            fig.savefig(p, dpi=dpi)
            plt.close(fig)
            paths.append(p)
    return paths


# -- explained variation on held-out profiles (SPEC 6) -------------------------------------------


def pooled_nse(obs: np.ndarray, sim: np.ndarray) -> float:
    """Pooled Nash-Sutcliffe efficiency ``1 - sum (o - s)^2 / sum (o - mean o)^2`` over layers."""
    obs, sim = np.asarray(obs, float), np.asarray(sim, float)
    return float(1.0 - np.sum((obs - sim) ** 2) / np.sum((obs - obs.mean()) ** 2))


@jax.jit
def _pchip_rows(soc20, depth):
    from ..grid import ZSOI, pchip_interpolate

    return jax.vmap(lambda y, q: pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), y, q))(
        soc20, depth
    )


def heldout_nse(
    model: str,
    seed_models,
    X: np.ndarray,
    forcing: Forcing,
    obs,
    *,
    mode: str,
    block: int = 256,
    link: str = "clip",
) -> dict:
    """Pooled NSE of layer SOC on held-out profiles (SPEC 6 / issue: mean over seed members).

    The modelled SOC of a layer is the mean over seed members of the PCHIP-interpolated
    steady-state profile at the layer's node depth; profiles where any seed member fails are
    excluded and counted.

    Args:
        model: ``"clm5"`` or ``"compas"``.
        seed_models: stacked seed members.
        X: (n, 60) scaled covariates of the held-out profiles.
        forcing: their `Forcing` (leading axis n).
        obs: `soc_jax.data.ObservationBatch` of the n profiles.
        mode: steady-state mode.

    Returns:
        ``{"nse": ..., "n_profiles": ..., "n_layers": ..., "n_failed_profiles": ...}``.
    """
    space = get_model(model).PARAMETERS
    params = np.asarray(apply_link(predict_parameters(seed_models, X), link))
    sims, oks = [], []
    for m in range(params.shape[0]):
        x = np.asarray(space.to_physical(jnp.asarray(params[m], jnp.float64)))
        soc, ok = simulate_cells(model, x, forcing, mode=mode, block=block)
        sims.append(np.asarray(_pchip_rows(jnp.asarray(soc), jnp.asarray(obs.depth))))
        oks.append(ok)
    ok = np.all(oks, axis=0)
    sim = np.mean(sims, axis=0)
    mask = np.asarray(obs.mask) & ok[:, None]
    return {
        "nse": pooled_nse(np.asarray(obs.soc)[mask], sim[mask]),
        "n_profiles": int(ok.sum()),
        "n_layers": int(mask.sum()),
        "n_failed_profiles": int((~ok).sum()),
    }
