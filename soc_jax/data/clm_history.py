"""CLM5 monthly history files -> soc_jax forcing (a monthly climatology per grid cell).

Users who run CLM5 hold monthly history files (``*.clm2.h0.*.nc``: one or many months per file,
dimensions ``time, levgrnd|levdcmp, lat, lon``; or ``h1`` files by column: ``time, levgrnd|levdcmp,
column``). `read_clm_history` reads a set of them and returns, per grid cell (or column), the
mean over the selected years by calendar month in the schema of ``forcing.nc``
(`soc_jax.data.forcing_to_dataset` with the batch dimension ``cell``). `clm_history_profiles`
extracts the forcing of given profiles (nearest cell centre in latitude and in longitude
separately, first index on ties: SPEC 1.11) keyed by ``profile_id``, ready for
``soc-jax calibrate --data``. The user documentation is ``docs/clm_history.md``.

Month attribution: CLM stamps a monthly mean with the END of its averaging interval
(January's mean carries ``0001-02-01 00:00``). A record is attributed to the calendar month of the
midpoint of its ``time_bounds`` (``time_bnds``, or the variable named by ``time:bounds``); without
bounds, to the month containing the instant 12 hours before its stamp.

Files are read one at a time and only the selected records (and cells) are loaded, so memory holds
one file's variable plus the 12-month sums.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import cftime
import numpy as np
import xarray as xr

from ..forcing import DAYS_IN_MONTH, DAYS_PER_YEAR, N_MONTHS, Forcing
from ..grid import N_LAYERS, ZISOI
from .covariates import nearest_cell
from .forcing_io import forcing_to_dataset

__all__ = [
    "CLM_HISTORY_NAMES",
    "CLM_LITTER_NAMES",
    "ZMIN_BEDROCK",
    "bedrock_index",
    "read_clm_history",
    "clm_history_profiles",
]

SECONDS_PER_DAY = 86400.0
ZMIN_BEDROCK = 0.4
"""CLM5's minimum soil depth for the bedrock index (m): ``nbedrock`` is never above layer 6."""

# Forcing field -> (CLM history variable, kind of unit conversion)
CLM_HISTORY_NAMES: dict[str, tuple[str, str]] = {
    "tsoi": ("TSOI", "temperature"),
    "w_scalar": ("W_SCALAR", "dimensionless"),
    "o_scalar": ("O_SCALAR", "dimensionless"),
    "fpi": ("FPI_vr", "dimensionless"),
    "sand": ("CELLSAND", "percent"),
    "altmax": ("ALTMAX", "length"),
    "altmax_lastyear": ("ALTMAX_LASTYEAR", "length"),
    "npp": ("NPP", "areal_rate"),
}
CLM_LITTER_NAMES: tuple[str, ...] = (
    "CWD_INPUT_ACC_VECTOR",
    "LITR1_INPUT_ACC_VECTOR",
    "LITR2_INPUT_ACC_VECTOR",
    "LITR3_INPUT_ACC_VECTOR",
)
"""CLM names of the vertically resolved inputs, in `Forcing.litter_input` pool order."""
_OPTIONAL = {"t_scalar": ("T_SCALAR", "dimensionless"), "soilpsi": ("SOILPSI", "pressure")}
_LEVEL_DIMS = ("levgrnd", "levdcmp", "levsoi")
_PROFILE_LAT = {"units": "degrees_north", "long_name": "latitude of the profile"}
_PROFILE_LON = {"units": "degrees_east", "long_name": "longitude of the profile"}


def _norm(unit: str) -> str:
    return "".join(str(unit).lower().split()).replace("^", "").replace("**", "")


# kind -> {normalized unit: callable(values, month index array) -> converted}
_KELVIN = {"k", "kelvin"}
_UNITS: dict[str, dict[str, object]] = {
    "temperature": {**{u: 0.0 for u in _KELVIN}, "degc": 273.15, "c": 273.15, "celsius": 273.15},
    "dimensionless": {u: 1.0 for u in ("", "1", "-", "unitless", "none", "proportion", "fraction")},
    "percent": {u: 1.0 for u in ("%", "percent", "percentage")},
    "length": {u: 1.0 for u in ("m", "meters", "metre", "metres")},
    "pressure": {"mpa": 1.0, "mmh2o": 9.80665e-6, "mm": 9.80665e-6},
    # NPP: gC m-2 s-1 in Forcing
    "areal_rate": {
        "gc/m2/s": 1.0,
        "gcm-2s-1": 1.0,
        "gc/m2/yr": 1.0 / (DAYS_PER_YEAR * SECONDS_PER_DAY),
        "gcm-2yr-1": 1.0 / (DAYS_PER_YEAR * SECONDS_PER_DAY),
    },
    # litter inputs: gC m-3 per month in Forcing; seconds or days in each calendar month
    "volume_input": {
        "gc/m3/s": "per_second",
        "gcm-3s-1": "per_second",
        "gc/m3/yr": "per_year",
        "gcm-3yr-1": "per_year",
        "gc/m3/month": 1.0,
        "gcm-3month-1": 1.0,
        "gc/m3": 1.0,
        "gcm-3": 1.0,
    },
}


def _convert(values: np.ndarray, kind: str, unit: str, name: str) -> np.ndarray:
    """Convert a (12, ...) climatology from ``unit`` to the unit `Forcing` uses."""
    rule = _UNITS[kind].get(_norm(unit))
    if rule is None:
        known = sorted({u for u in _UNITS[kind]})
        raise ValueError(
            f"{name} has units {unit!r}, which soc_jax cannot convert; known: {known} "
            f"(declare the units with units={{{name!r}: ...}} if the attribute is wrong)"
        )
    months = (N_MONTHS,) + (1,) * (values.ndim - 1)
    if rule == "per_second":
        return values * (DAYS_IN_MONTH * SECONDS_PER_DAY).reshape(months)
    if rule == "per_year":
        return values * (DAYS_IN_MONTH / DAYS_PER_YEAR).reshape(months)
    if kind == "temperature":
        return values + rule
    return values * rule


def bedrock_index(zbedrock: np.ndarray, zmin: float = ZMIN_BEDROCK) -> np.ndarray:
    """CLM5's bedrock layer index from the depth to bedrock (``initVerticalMod``), 1-based.

    ``nbedrock = j`` for the layer with ``zisoi(j-1) < zbedrock <= zisoi(j)``, searched from the
    layer that contains ``zmin`` down to layer 20; 20 when none matches (deeper than 8.60 m).

    Args:
        zbedrock: depth to bedrock, m (surface dataset variable ``zbedrock``).
        zmin: CLM's minimum soil depth, m.

    Returns:
        float array of layer indices in jmin..20 (NaN where ``zbedrock`` is NaN).
    """
    z = np.asarray(zbedrock, float)
    top = np.concatenate([[0.0], ZISOI[: N_LAYERS - 1]])
    bottom = ZISOI[:N_LAYERS]
    jmin = 3 + int(np.nonzero((top[2:] < zmin) & (bottom[2:] >= zmin))[0][-1])
    out = np.full(z.shape, float(N_LAYERS))
    for j in range(jmin, N_LAYERS + 1):
        out = np.where((top[j - 1] < z) & (bottom[j - 1] >= z), float(j), out)
    return np.where(np.isfinite(z), out, np.nan)


# ---------------------------------------------------------------------------------------------
# time


def _record_months(ds: xr.Dataset, path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, stamp) of each record; month from the midpoint of the time bounds."""
    if "time" not in ds.variables:
        raise ValueError(f"{path}: no 'time' variable (a CLM history file has one)")
    t = ds["time"]
    units, calendar = t.attrs.get("units"), t.attrs.get("calendar", "standard")
    if units is None:
        raise ValueError(f"{path}: time has no 'units' attribute (e.g. 'days since 0001-01-01')")
    stamp = np.atleast_1d(np.asarray(t.values, float))
    bname = t.attrs.get("bounds")
    bname = (
        bname
        if bname in ds.variables
        else next((b for b in ("time_bounds", "time_bnds") if b in ds.variables), None)
    )
    if bname is not None:
        bounds = np.asarray(ds[bname].values, float).reshape(stamp.size, 2)
        middle = bounds.mean(axis=1)
    else:
        middle = stamp - 0.5 * _days_per_unit(units)
    dates = cftime.num2date(middle, units, calendar=calendar)
    years = np.array([d.year for d in np.atleast_1d(dates)])
    months = np.array([d.month for d in np.atleast_1d(dates)])
    return years, months, stamp


def _days_per_unit(units: str) -> float:
    """Number of time units in one day (so 0.5 day is ``0.5 * this``)."""
    word = units.split()[0].lower()
    per_day = {"days": 1.0, "day": 1.0, "hours": 24.0, "hour": 24.0, "minutes": 1440.0}
    per_day |= {"seconds": 86400.0, "second": 86400.0, "s": 86400.0}
    if word not in per_day:
        raise ValueError(f"time units {units!r} are not days, hours, minutes or seconds since")
    return per_day[word]


# ---------------------------------------------------------------------------------------------
# grid


def _grid(ds: xr.Dataset, path: str) -> dict:
    """The horizontal layout of one file: dims, cell lat/lon, and how to flatten to cells."""
    if "column" in ds.dims:
        lat = _first_var(ds, ("cols1d_lat", "grid1d_lat"), path)
        lon = _first_var(ds, ("cols1d_lon", "grid1d_lon"), path)
        grid = {"dims": ("column",), "lat": lat, "lon": lon, "shape": (lat.size,)}
        for key in ("cols1d_ixy", "cols1d_jxy", "cols1d_itype_lunit"):
            if key in ds.variables:
                grid[key] = np.asarray(ds[key].values)
        return grid
    if "lat" in ds.dims and "lon" in ds.dims:
        lat = np.asarray(ds["lat"].values, float)
        lon = np.asarray(ds["lon"].values, float)
        return {"dims": ("lat", "lon"), "lat": lat, "lon": lon, "shape": (lat.size, lon.size)}
    raise ValueError(
        f"{path}: no (lat, lon) or column dimensions; dims are {dict(ds.sizes)} "
        "(soc_jax reads gridded h0 files or h1 files by column)"
    )


def _first_var(ds: xr.Dataset, names: Sequence[str], path: str) -> np.ndarray:
    for name in names:
        if name in ds.variables:
            return np.asarray(ds[name].values, float)
    raise ValueError(f"{path}: column-form file without {' or '.join(names)}")


def _same_grid(a: dict, b: dict) -> bool:
    return (
        a["dims"] == b["dims"]
        and a["shape"] == b["shape"]
        and np.array_equal(a["lat"], b["lat"], equal_nan=True)
        and np.array_equal(a["lon"], b["lon"], equal_nan=True)
    )


def _cell_lat_lon(grid: dict) -> tuple[np.ndarray, np.ndarray]:
    if grid["dims"] == ("column",):
        return grid["lat"], grid["lon"]
    lat, lon = np.meshgrid(grid["lat"], grid["lon"], indexing="ij")
    return lat.ravel(), lon.ravel()


# ---------------------------------------------------------------------------------------------
# reading


class _Accumulator:
    """Sums of each variable by calendar month over the selected records (and cells).

    Only the selected records and the rows/columns holding the selected cells are read from
    each file, so memory holds one variable of one file's selection plus the 12-month sums.
    """

    def __init__(self, cells: np.ndarray | None):
        self.cells = cells
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.units: dict[str, str] = {}
        self.static: dict[str, np.ndarray] = {}
        self.total = np.zeros(N_MONTHS, int)  # selected records per calendar month
        self._window: tuple[dict, np.ndarray] | None = None

    def add(self, name: str, var: xr.DataArray, grid: dict, take: np.ndarray, months, path):
        level = [d for d in var.dims if d in _LEVEL_DIMS]
        self.units.setdefault(name, str(var.attrs.get("units", "")))
        if "time" not in var.dims:
            self.static.setdefault(name, self._values(var, grid, level, path))
            return
        if not np.any(take):
            return
        values = self._values(var.isel(time=np.nonzero(take)[0]), grid, level, path)
        if name not in self.sums:
            self.sums[name] = np.zeros((N_MONTHS,) + values.shape[1:])
            self.counts[name] = np.zeros(N_MONTHS, int)
        for m in range(1, N_MONTHS + 1):
            sel = months == m
            if np.any(sel):
                self.sums[name][m - 1] += values[sel].sum(axis=0)
                self.counts[name][m - 1] += int(sel.sum())

    def _values(self, var, grid, level, path) -> np.ndarray:
        """(time?, level?, cell) float64 values of the selected cells, first 20 levels."""
        order = [d for d in ("time",) if d in var.dims] + level + list(grid["dims"])
        extra = set(var.dims) - set(order)
        if extra:
            raise ValueError(f"{path}: {var.name} has unexpected dimensions {sorted(extra)}")
        if level:
            nlev = var.sizes[level[0]]
            if nlev < N_LAYERS:
                raise ValueError(
                    f"{path}: {var.name} has {nlev} levels on {level[0]}; soc_jax needs the first "
                    f"{N_LAYERS} soil layers (CLM5 with vertically resolved soil BGC)"
                )
            var = var.isel({level[0]: slice(0, N_LAYERS)})
        window, pick = self._cell_window(grid)
        values = np.asarray(var.isel(window).transpose(*order).values, float)
        values = values.reshape(values.shape[: values.ndim - len(grid["dims"])] + (-1,))
        return values if pick is None else values[..., pick]

    def _cell_window(self, grid: dict) -> tuple[dict, np.ndarray | None]:
        """isel of the rows and columns (or columns) holding the cells, and the cells in it."""
        if self._window is None:
            if self.cells is None:
                self._window = ({}, None)
            elif grid["dims"] == ("column",):
                cols = np.unique(self.cells)
                self._window = ({"column": cols}, np.searchsorted(cols, self.cells))
            else:
                i, j = np.unravel_index(self.cells, grid["shape"])
                rows, cols = np.unique(i), np.unique(j)
                pick = np.searchsorted(rows, i) * cols.size + np.searchsorted(cols, j)
                self._window = ({"lat": rows, "lon": cols}, pick)
        return self._window


def _open(path: str) -> xr.Dataset:
    if not os.path.exists(path):
        raise FileNotFoundError(f"CLM history file not found: {path}")
    return xr.open_dataset(path, decode_times=False, mask_and_scale=True)


def _wanted(optional: bool) -> dict[str, tuple[str, str]]:
    names = dict(CLM_HISTORY_NAMES)
    names |= {f"litter_{i}": (v, "volume_input") for i, v in enumerate(CLM_LITTER_NAMES)}
    return names | (dict(_OPTIONAL) if optional else {})


def _scan(paths: list[str], years: set[int] | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Per file (in time order): (path, selected record mask, months); checks time order."""
    info = []
    for path in paths:
        with _open(path) as ds:
            y, m, stamp = _record_months(ds, path)
        info.append((path, y, m, stamp))
    info.sort(key=lambda r: r[3][0] if r[3].size else np.inf)
    stamps = np.concatenate([r[3] for r in info])
    back = np.nonzero(np.diff(stamps) <= 0)[0]
    if back.size:
        k = int(back[0])
        ends = np.cumsum([r[3].size for r in info])
        a, b = (info[int(np.searchsorted(ends, r, side="right"))][0] for r in (k, k + 1))
        raise ValueError(
            f"time is not strictly increasing: stamp {stamps[k + 1]} in {b} does not follow "
            f"{stamps[k]} in {a} (overlapping or repeated files?)"
        )
    year_all = np.concatenate([r[1] for r in info])
    month_all = np.concatenate([r[2] for r in info])
    chosen = set(year_all.tolist()) if years is None else years
    _check_complete(year_all, month_all, chosen, paths)
    return [(p, np.isin(y, sorted(chosen)), m) for p, y, m, _ in info]


def _check_complete(year, month, chosen: set[int], paths: list[str]) -> None:
    have = set(zip(year.tolist(), month.tolist(), strict=True))
    missing = [(y, m) for y in sorted(chosen) for m in range(1, 13) if (y, m) not in have]
    if missing:
        shown = ", ".join(f"{y:04d}-{m:02d}" for y, m in missing[:12])
        more = f" and {len(missing) - 12} more" if len(missing) > 12 else ""
        raise ValueError(
            f"too few months for a climatology: years {sorted(chosen)} need all 12 months each, "
            f"missing {shown}{more} in {len(paths)} file(s) (month from time_bounds; pick complete "
            "years with years=...)"
        )


def _accumulate(paths, years, cells, optional) -> tuple[_Accumulator, dict, list[str]]:
    files = _scan(paths, years)
    acc = _Accumulator(cells)
    wanted = _wanted(optional)
    grid0, found = None, set()
    for path, take, months in files:
        acc.total += np.bincount(months[take], minlength=N_MONTHS + 1)[1:]
        with _open(path) as ds:
            grid = _grid(ds, path)
            if grid0 is None:
                grid0, path0 = grid, path
            elif not _same_grid(grid, grid0):
                raise ValueError(
                    f"grid mismatch: {path} has {grid['dims']} {grid['shape']} with different "
                    f"cell coordinates than {path0} {grid0['shape']}; all files must share one grid"
                )
            for name, (clm, _kind) in wanted.items():
                if clm in ds.variables:
                    acc.add(name, ds[clm], grid, take, months[take], path)
                    found.add(name)
    missing = [wanted[k][0] for k in wanted if k not in found and k not in _OPTIONAL]
    if missing:
        raise ValueError(
            f"variable {missing[0]} not found in the {len(paths)} CLM history file(s) searched: "
            f"{', '.join(paths)}"
            + (f" (also missing: {', '.join(missing[1:])})" if missing[1:] else "")
        )
    return acc, grid0, [f[0] for f in files]


def _climatology(acc: _Accumulator, name: str, kind: str, units: Mapping[str, str]):
    clm = _wanted(True)[name][0]
    unit = units.get(clm, acc.units[name])
    if name in acc.sums:
        if not np.array_equal(acc.counts[name], acc.total):
            raise ValueError(
                f"variable {clm} is in only some of the history files: it covers "
                f"{acc.counts[name].tolist()} records per month, the files {acc.total.tolist()}"
            )
        clim = acc.sums[name] / acc.counts[name].reshape(
            (N_MONTHS,) + (1,) * (acc.sums[name].ndim - 1)
        )
    else:  # time-constant field (e.g. CELLSAND written once): the same every month
        clim = np.broadcast_to(acc.static[name], (N_MONTHS,) + acc.static[name].shape).copy()
    clim = _convert(clim, kind, unit, clm)
    return np.moveaxis(clim, -1, 0)  # (cell, month, ...)


def _nbedrock(surface, acc_grid: dict, cells, paths) -> np.ndarray:
    """Bedrock layer index per cell from the surface dataset (nbedrock, or zbedrock in m)."""
    sources = [surface] if surface is not None else list(paths[:1])
    for src in sources:
        with _open(str(src)) as ds:
            for name in ("nbedrock", "zbedrock"):
                if name in ds.variables:
                    values = _surface_values(ds[name], acc_grid, str(src))
                    values = values if cells is None else values[cells]
                    return values if name == "nbedrock" else bedrock_index(values)
    raise ValueError(
        f"variable nbedrock (or zbedrock) not found in {', '.join(map(str, sources))}: pass the "
        "CLM surface dataset (fsurdat) as surface=..."
    )


def _surface_values(var: xr.DataArray, grid: dict, path: str) -> np.ndarray:
    arr = np.asarray(var.squeeze(drop=True).values, float)
    if grid["dims"] == ("column",):
        if arr.ndim == 1 and arr.size == grid["shape"][0]:
            return arr
        if "cols1d_ixy" not in grid or arr.ndim != 2:
            raise ValueError(f"{path}: {var.name} {arr.shape} does not match the column grid")
        return arr[grid["cols1d_jxy"].astype(int) - 1, grid["cols1d_ixy"].astype(int) - 1]
    if arr.shape != grid["shape"]:
        raise ValueError(
            f"grid mismatch: {path} holds {var.name} on {arr.shape} but the history files are on "
            f"(lat, lon) = {grid['shape']}"
        )
    return arr.ravel()


def read_clm_history(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    surface: str | os.PathLike | None = None,
    years: Iterable[int] | None = None,
    units: Mapping[str, str] | None = None,
    cells: Sequence[int] | None = None,
) -> xr.Dataset:
    """Monthly climatology of CLM5 history files in soc_jax's forcing schema, per cell.

    Args:
        paths: history files (one path, or several; any order: they are sorted by time).
        surface: CLM surface dataset with ``zbedrock`` (m) or ``nbedrock`` (1-based); default:
            look for them in the first history file.
        years: calendar years to average (e.g. ``range(661, 681)``); default all years present.
            Every selected year needs all 12 months.
        units: CLM variable -> units, overriding a missing or wrong ``units`` attribute.
        cells: flat cell indices to read (``lat``-major for gridded files, column index for
            column files); default all.

    Returns:
        Dataset with dimension ``cell`` (``forcing_to_dataset(..., dim="cell")``), month, layer,
        litter_pool, coordinates ``lat``, ``lon`` (and ``i_lat``, ``i_lon`` for gridded files),
        plus ``t_scalar`` and ``soilpsi`` (MPa) when the files hold T_SCALAR and SOILPSI.
        Ocean or missing cells come back as NaN (the models flag them).

    Raises:
        FileNotFoundError: a path that does not exist.
        ValueError: a missing variable (named, with the files searched), a grid mismatch
            between files, too few months for a climatology, non-monotonic time, unknown units.
    """
    paths = [str(paths)] if isinstance(paths, str | os.PathLike) else [str(p) for p in paths]
    if not paths:
        raise ValueError("read_clm_history needs at least one history file")
    cells_arr = None if cells is None else np.asarray(cells, int)
    year_set = None if years is None else {int(y) for y in years}
    acc, grid, ordered = _accumulate(paths, year_set, cells_arr, optional=True)
    units = dict(units or {})
    fields = {k: _climatology(acc, k, kind, units) for k, (_, kind) in CLM_HISTORY_NAMES.items()}
    litter = [_climatology(acc, f"litter_{i}", "volume_input", units) for i in range(4)]
    fields["litter_input"] = np.stack(litter, axis=1)
    nb = _nbedrock(surface, grid, cells_arr, ordered)
    fields["nbedrock"] = np.repeat(nb[:, None], N_MONTHS, axis=1)
    lat, lon = _cell_lat_lon(grid)
    sel = slice(None) if cells_arr is None else cells_arr
    coords = {"lat": lat[sel], "lon": lon[sel]}
    if grid["dims"] == ("lat", "lon"):
        i_lat, i_lon = np.unravel_index(np.arange(lat.size), grid["shape"])
        coords |= {"i_lat": i_lat[sel], "i_lon": i_lon[sel]}
    elif "cols1d_ixy" in grid:  # CLM's 1-based grid indices of each column
        coords |= {"i_lat": grid["cols1d_jxy"][sel] - 1, "i_lon": grid["cols1d_ixy"][sel] - 1}
    ds = forcing_to_dataset(Forcing(**fields), dim="cell", **coords)
    for key, (clm, kind) in _OPTIONAL.items():
        if key in acc.sums or key in acc.static:
            unit_out = "MPa" if kind == "pressure" else "1"
            data = _climatology(acc, key, kind, units)
            ds[key] = (("cell", "month", "layer"), data, {"units": unit_out, "long_name": clm})
    used = sorted(year_set) if year_set is not None else "all"
    ds.attrs |= {
        "source": "CLM5 history files: " + ", ".join(ordered),
        "years": str(used),
        "month_attribution": "midpoint of time_bounds (else 12 h before the time stamp)",
    }
    return ds


def clm_history_profiles(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    profile_id: Sequence,
    lat: Sequence[float],
    lon: Sequence[float],
    **kwargs,
) -> xr.Dataset:
    """Forcing of given profiles from CLM5 history files, keyed by ``profile_id``.

    Each profile takes the cell whose centre is nearest in latitude and, separately, in
    longitude (first index on ties; profile longitudes in -180..180 or 0..360 either way), as
    PRODA's driver does (SPEC 1.11). Only those cells are read. From column files (h1 by
    column) a profile takes the first natural vegetated soil column (``cols1d_itype_lunit`` 1)
    of that grid cell.

    Args:
        paths: history files, as in `read_clm_history`.
        profile_id: (n,) profile ids (unique).
        lat, lon: (n,) profile coordinates, degrees north and east.
        **kwargs: ``surface``, ``years``, ``units`` as in `read_clm_history`.

    Returns:
        Forcing Dataset with dimension ``profile`` and coordinates ``profile_id``,
        ``profile_lat``, ``profile_lon``, ``lat``/``lon`` (cell centre; column files: the
        column's), ``i_lat``, ``i_lon`` (gridded files):
        readable by ``dataset_to_forcing`` and ``soc-jax calibrate --data`` as ``forcing.nc``.
        A profile on an ocean (NaN) cell keeps NaN forcing; the calibration reports it.

    Raises:
        ValueError: duplicate ids; from column files, a profile whose cell has no soil column.
    """
    paths = [str(paths)] if isinstance(paths, str | os.PathLike) else [str(p) for p in paths]
    ids = np.asarray([str(p) for p in profile_id], dtype=object)
    if len(set(ids)) != ids.size:
        raise ValueError("profile_id has duplicates; each profile needs its own id")
    if not (len(ids) == len(lat) == len(lon)) or ids.size == 0:
        raise ValueError("profile_id, lat and lon need the same nonzero length")
    with _open(paths[0]) as ds:
        grid = _grid(ds, paths[0])
        grid_lat, grid_lon = _grid_axes(ds, grid, paths[0])
    i, j = nearest_cell(lat, lon, grid_lat, grid_lon)
    if grid["dims"] == ("lat", "lon"):
        flat = np.ravel_multi_index((i, j), grid["shape"])
    else:
        flat = _soil_column(grid, i, j, ids, paths[0])
    unique, inverse = np.unique(flat, return_inverse=True)
    cells = read_clm_history(paths, cells=unique, **kwargs)
    out = cells.isel(cell=inverse).rename({"cell": "profile"})
    out = out.assign_coords(
        profile=np.arange(ids.size),
        profile_id=("profile", ids),
        profile_lat=("profile", np.asarray(lat, float), _PROFILE_LAT),
        profile_lon=("profile", np.asarray(lon, float), _PROFILE_LON),
    )
    out["lat"].attrs["long_name"] = "latitude of the cell centre"
    out["lon"].attrs["long_name"] = "longitude of the cell centre"
    return out


def _grid_axes(ds: xr.Dataset, grid: dict, path: str) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes and longitudes of the grid (column files keep them as lat, lon)."""
    if grid["dims"] == ("lat", "lon"):
        return grid["lat"], grid["lon"]
    if "lat" not in ds.variables or "lon" not in ds.variables or "cols1d_ixy" not in grid:
        raise ValueError(
            f"{path}: a column-form file needs lat, lon, cols1d_ixy and cols1d_jxy to place "
            "profiles on grid cells"
        )
    return np.asarray(ds["lat"].values, float), np.asarray(ds["lon"].values, float)


def _soil_column(grid: dict, i: np.ndarray, j: np.ndarray, ids, path: str) -> np.ndarray:
    """First natural vegetated soil column (landunit type 1) of each profile's grid cell."""
    jxy, ixy = grid["cols1d_jxy"].astype(int) - 1, grid["cols1d_ixy"].astype(int) - 1
    soil = grid.get("cols1d_itype_lunit", np.ones(jxy.size)) == 1
    out, lost = np.zeros(i.size, int), []
    for k in range(i.size):
        hit = np.nonzero(soil & (jxy == i[k]) & (ixy == j[k]))[0]
        if hit.size == 0:
            lost.append(str(ids[k]))
        else:
            out[k] = hit[0]
    if lost:
        raise ValueError(
            f"{len(lost)} profile(s) fall on grid cells without a soil column in {path}: "
            + ", ".join(lost[:10])
        )
    return out
