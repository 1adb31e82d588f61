"""Outputs of a global prediction (SPEC 8): CF NetCDF maps on the (lat, lon) grid and PNG figures.

`write_maps` writes parameter maps, stocks, bootstrap quantiles and the reference
configurations of a `soc_jax.proda.totals.Prediction` (missing values are ``_FillValue =
-9999``, never NaN); `figures` draws stock maps, key parameter maps (land cells where the
model failed in grey, with a legend entry "model failed (N cells)"), the latitude profile and,
on a synthetic world, predicted against true parameters; `scatter_grid` is the predicted-vs-
target panel figure (also `soc-jax train`'s ``recovery.png``).
"""

from __future__ import annotations

import json
import os

import numpy as np
import xarray as xr

from .totals import FILL_VALUE, STOCK_NAMES, Prediction, masked_quantiles, zonal_totals

__all__ = ["write_maps", "figures", "scatter_grid"]

_FILL = FILL_VALUE
_KG = 1e-3  # gC -> kgC
_BANDS = {
    "top_30cm": "0-30 cm",
    "top_100cm": "0-100 cm",
    "top_200cm": "0-200 cm",
    "total": "0-8.6 m (all 20 layers)",
}
_DIMS_BAND = ("depth_band", "lat", "lon")


def _to_grid(values: np.ndarray, grid: xr.Dataset, keep: np.ndarray) -> np.ndarray:
    """(n, ...) cell values -> (..., n_lat, n_lon) with `_FILL` off land or where not ``keep``."""
    nlat, nlon = grid.sizes["grid_lat"], grid.sizes["grid_lon"]
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape[1:] + (nlat, nlon), _FILL)
    il, jl = grid["i_lat"].values, grid["i_lon"].values
    v = np.where(keep.reshape((-1,) + (1,) * (values.ndim - 1)), values, _FILL)
    out[..., il, jl] = np.moveaxis(v, 0, -1)
    return out


def _kinds(pred: Prediction, kind: str) -> np.ndarray:
    """(M,) True for the members of ``kind`` (``"seed"`` / ``"bootstrap"``)."""
    return np.array([k == kind for k in pred.kinds])


def _member_maps(pred: Prediction, grid: xr.Dataset) -> dict:
    """PRODA's maps: median parameters and stocks over seeds, seeds that succeeded, cell area."""
    seeds = _kinds(pred, "seed")
    keep = pred.best_ok
    land = np.ones_like(keep)
    p_best = masked_quantiles(pred.params[seeds], pred.ok[seeds][..., None], 0.5)
    return {
        "parameter_map": (
            ("parameter", "lat", "lon"),
            _to_grid(p_best, grid, keep),
            {
                "long_name": "PRODA parameter, median over seed members (normalized, clipped)",
                "units": "1",
            },
        ),
        "soc_stock": (
            _DIMS_BAND,
            _to_grid(pred.best_stocks * _KG, grid, keep),
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


def _bootstrap_maps(pred: Prediction, grid: xr.Dataset) -> dict:
    """Per-cell 14 / 50 / 86 % quantiles of the stocks over the bootstrap members (if any)."""
    data = {}
    if pred.boot_q is None:
        return data
    for qi, q in enumerate(("q14", "q50", "q86")):
        keep_b = pred.ok[_kinds(pred, "bootstrap")].any(0)
        data[f"soc_stock_{q}"] = (
            _DIMS_BAND,
            _to_grid(pred.boot_q[qi] * _KG, grid, keep_b),
            {
                "long_name": f"SOC stock, {q[1:]} % quantile over bootstrap members",
                "units": "kg m-2",
            },
        )
    return data


def _reference_maps(pred: Prediction, grid: xr.Dataset) -> dict:
    """Stocks of the homogeneous / default configurations and the synthetic world's truth."""
    land = np.ones_like(pred.best_ok)
    data = {}
    for name, (sk, o) in pred.extra.items():
        data[f"soc_stock_{name}"] = (
            _DIMS_BAND,
            _to_grid(sk * _KG, grid, o),
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
            _to_grid(grid["stock_100cm"].values * _KG, grid, land),
            {"long_name": "true SOC stock 0-100 cm (synthetic world)", "units": "kg m-2"},
        )
    return data


def _map_coords(grid: xr.Dataset, parameter_names: list[str]) -> dict:
    """CF coordinates of the maps: lat, lon, parameter and depth band."""
    return {
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
    }


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
    data = {
        **_member_maps(pred, grid),
        **_bootstrap_maps(pred, grid),
        **_reference_maps(pred, grid),
    }
    ds = xr.Dataset(
        data,
        coords=_map_coords(grid, parameter_names),
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


# -- figures -------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str, dpi: int) -> str:
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


_FAILED_COLOR = "0.55"  # grey: land cells where the model failed (ocean stays blank)


def _show(ax, ds, arr, title, label, cmap="viridis", vmin=None, vmax=None, failed=None) -> None:
    """One map panel of ``arr`` on the (lat, lon) grid of ``ds`` (fill values masked); the
    land cells in the (lat, lon) mask ``failed`` are drawn grey with a legend entry."""
    a = np.ma.masked_equal(np.asarray(arr), _FILL)
    lon, lat = ds["lon"].values, ds["lat"].values
    im = ax.pcolormesh(lon, lat, a, shading="nearest", cmap=cmap, vmin=vmin, vmax=vmax)
    if failed is not None and failed.any():
        from matplotlib.colors import ListedColormap
        from matplotlib.patches import Patch

        grey = ListedColormap([_FAILED_COLOR])
        ax.pcolormesh(lon, lat, np.ma.masked_where(~failed, failed), shading="nearest", cmap=grey)
        patch = Patch(facecolor=_FAILED_COLOR, label=f"model failed ({int(failed.sum())} cells)")
        ax.legend(handles=[patch], loc="lower left", fontsize=7)
    ax.set(title=title, xlabel="longitude (degrees east)", ylabel="latitude (degrees north)")
    _pyplot().colorbar(im, ax=ax, shrink=0.8).set_label(label)


def _failed_masks(pred: Prediction, grid: xr.Dataset) -> dict[str, np.ndarray]:
    """(lat, lon) masks of the land cells without a value: ``best`` (every seed member
    failed) and ``bootstrap`` (every bootstrap member failed)."""
    out = {"best": _to_grid(~pred.best_ok, grid, np.ones_like(pred.best_ok)) == 1.0}
    boots = _kinds(pred, "bootstrap")
    if boots.any():
        none_ok = ~pred.ok[boots].any(0)
        out["bootstrap"] = _to_grid(none_ok, grid, np.ones_like(none_ok)) == 1.0
    return out


def _stock_figure(ds: xr.Dataset, out, dpi: int, failed: dict | None = None) -> str:
    """Seed-median stock 0-100 cm beside the bootstrap range (or the truth); cells where the
    model failed are grey (``failed``: `_failed_masks`)."""
    plt = _pyplot()
    failed = failed or {}
    band = list(ds["depth_band"].values).index("top_100cm")
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), constrained_layout=True)
    best = ds["soc_stock"].values[band]
    vmax = float(np.quantile(best[best != _FILL], 0.98)) if (best != _FILL).any() else None
    title = "PRODA SOC stock 0-100 cm (seed median)"
    _show(axes[0], ds, best, title, "kgC m-2", vmin=0, vmax=vmax, failed=failed.get("best"))
    if "soc_stock_q86" in ds:
        hi, lo = ds["soc_stock_q86"].values[band], ds["soc_stock_q14"].values[band]
        spread = np.where((hi == _FILL) | (lo == _FILL), _FILL, hi - lo)
        title = "bootstrap 86 % - 14 % range, 0-100 cm"
        _show(axes[1], ds, spread, title, "kgC m-2", "magma", failed=failed.get("bootstrap"))
    elif "true_soc_stock_100cm" in ds:
        true = ds["true_soc_stock_100cm"].values
        _show(axes[1], ds, true, "true stock 0-100 cm", "kgC m-2", vmin=0, vmax=vmax)
    else:
        axes[1].axis("off")
    return _save(fig, os.path.join(out, "stock_maps.png"), dpi)


def _parameter_figure(ds: xr.Dataset, key: list[str], out, dpi: int, failed=None) -> str:
    """Median parameter maps of the ``key`` parameters (normalized); cells where every seed
    member failed are grey (``failed``: (lat, lon) mask)."""
    names = [str(n) for n in ds["parameter"].values]
    fig, axes = _pyplot().subplots(
        1, len(key), figsize=(5.5 * len(key), 3.4), constrained_layout=True
    )
    for ax, k in zip(np.atleast_1d(axes), key, strict=True):
        arr = ds["parameter_map"].values[names.index(k)]
        _show(ax, ds, arr, f"{k} (normalized)", "1", vmin=0, vmax=1, failed=failed)
    return _save(fig, os.path.join(out, "parameter_maps.png"), dpi)


def _latitude_figure(pred: Prediction, grid: xr.Dataset, out, dpi: int) -> str:
    """Pg C per latitude row: PRODA, its bootstrap band, references and truth."""
    cell_lat = grid["lat"].values
    fig, ax = _pyplot().subplots(figsize=(6, 4), constrained_layout=True)
    la, tot = zonal_totals(pred.best_stocks[:, 1], pred.best_ok, pred.area, cell_lat)
    ax.plot(tot, la, "k-", label="PRODA (seed median)")
    if pred.boot_q is not None:
        keep_b = pred.ok[_kinds(pred, "bootstrap")].any(0)
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
    n_failed = int((~pred.best_ok).sum())
    left_out = f" ({n_failed} failed cells left out)" if n_failed else ""
    ax.set(
        xlabel="SOC 0-100 cm per latitude row (Pg C)",
        ylabel="latitude (degrees north)",
        title="latitude profile of SOC stock" + left_out,
    )
    ax.legend(fontsize=7)
    return _save(fig, os.path.join(out, "latitude_profile.png"), dpi)


def scatter_grid(
    target: np.ndarray,
    pred: np.ndarray,
    var,
    names: list[str],
    path: str,
    *,
    xlabel: str,
    panel: tuple[float, float],
    ms: float,
    title: str | None = None,
    dpi: int = 90,
) -> str:
    """Predicted (y) against target (x) normalized parameters, one panel per column in ``var``.

    Args:
        target, pred: (n, n_par) normalized parameters.
        var: the parameter columns to draw (at most 4 per row).
        names: parameter names (panel titles).
        path: PNG written.
        xlabel: label of the target axis.
        panel: (width, height) of one panel, inches.
        ms: marker size.
        title: figure title (optional).
    """
    plt = _pyplot()
    ncol = min(4, len(var))
    nrow = int(np.ceil(len(var) / ncol))
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(panel[0] * ncol, panel[1] * nrow), constrained_layout=True
    )
    for ax, j in zip(np.ravel(axes), var, strict=False):
        ax.plot(target[:, j], pred[:, j], ".", ms=ms)
        lo, hi = target[:, j].min(), target[:, j].max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set(title=names[j], xlabel=xlabel, ylabel="predicted p (normalized)")
    for ax in np.ravel(axes)[len(var) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return _save(fig, path, dpi)


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
    os.makedirs(out, exist_ok=True)
    failed = _failed_masks(pred, grid)
    paths = [_stock_figure(ds, out, dpi, failed)]
    names = [str(n) for n in ds["parameter"].values]
    key = [k for k in (key_parameters or names[:2]) if k in names][:4]
    if key:
        paths.append(_parameter_figure(ds, key, out, dpi, failed["best"]))
    paths.append(_latitude_figure(pred, grid, out, dpi))
    if "p" in grid:
        pm = pred.params[_kinds(pred, "seed")].mean(0)
        truth = grid["p"].values
        var = np.flatnonzero(truth.std(0) > 1e-6)[:8]
        if var.size:
            path = os.path.join(out, "parameters_vs_truth.png")
            paths.append(
                scatter_grid(
                    truth,
                    pm,
                    var,
                    names,
                    path,
                    xlabel="true p (normalized)",
                    panel=(3.2, 3.0),
                    ms=2,
                    dpi=dpi,
                )
            )
    return paths
