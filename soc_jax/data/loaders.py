"""Loaders for real profile formats, stock from content, and PRODA's screening with a report.

Formats:

* **WoSIS-derived NetCDF** (SPEC 9), two numeric 2-D variables:
  ``soc_profile_info`` rows ``[profile_id, country_id, country_name, lon, lat, layer_num, date]``
  (text columns may hold NaN; only id, lon, lat are read) and ``data_soc_integrate`` rows
  ``[profile_id, date, upper_depth (cm), lower_depth (cm), node_depth (cm), soc_weight (g C kg-1),
  soc_stock (gC m-3), bulk_density (g cm-3), is_pedo]``. A transposed layout (columns as rows,
  as MATLAB sometimes writes) is accepted.
* **CSV of layers**, one row per layer, header with columns ``profile_id, lat, lon,
  upper_depth, lower_depth`` and optionally ``node_depth`` (default mid-point), ``soc_stock``
  (gC m-3), ``soc_content`` (g C kg-1), ``bulk_density`` (g cm-3), ``coarse_fragments``
  (% volume). Depths in cm (``depth_unit="m"`` for metres). Empty cells are NaN.

Stock (SPEC 9): ``soc = content [g C kg-1] * BD [g cm-3] * 1000 * (1 - G/100)`` gC m-3, with the
measured BD when present, else the pedotransfer ``BD = 0.32 + 1.30 exp(-0.0089 * 1.724 *
content)`` (content in g C kg-1, exactly as SPEC 9 writes it); G = coarse fragments (% volume,
0 when absent). A given ``soc_stock`` is used as is unless ``stock="content"``.

Each loader parses its file into a layer table and screens it as PRODA does (SPEC 1.11 and 6)
with `soc_jax.data.screening.screen_layers` (re-exported here): every dropped layer and excluded
profile is in the `ScreeningReport`, with its reason; nothing is dropped silently.

Loaders read NetCDF through xarray/netCDF4 and CSV through the ``csv`` module; they never
unpickle or execute code.
"""

from __future__ import annotations

import csv
import os

import numpy as np
import xarray as xr
from jaxtyping import ArrayLike

from .netcdf import open_netcdf, require_file
from .screening import MIN_LAYERS, MIN_MAX_DEPTH, ScreeningReport, screen_layers

__all__ = [
    "ScreeningReport",
    "pedotransfer_bulk_density",
    "coarse_fragment_factor",
    "stock_from_content",
    "screen_layers",
    "load_wosis",
    "load_csv",
    "MIN_LAYERS",
    "MIN_MAX_DEPTH",
]

_INFO_COLUMNS = 7
_LAYER_COLUMNS = 9


def pedotransfer_bulk_density(soc_content: ArrayLike) -> np.ndarray:
    """Pedotransfer bulk density of SPEC 9.

    Args:
        soc_content: SOC content, g C kg-1, any shape.

    Returns:
        ``0.32 + 1.30 exp(-0.0089 * 1.724 * soc_content)``, g cm-3, same shape.
    """
    return 0.32 + 1.30 * np.exp(-0.0089 * 1.724 * np.asarray(soc_content, dtype=float))


def coarse_fragment_factor(coarse_fragments: ArrayLike) -> np.ndarray:
    """Fine-earth volume fraction ``1 - G/100`` (G: coarse fragments, % volume; NaN -> 0 %)."""
    g = np.asarray(coarse_fragments, dtype=float)
    g = np.where(np.isnan(g), 0.0, g)
    if np.any((g < 0) | (g > 100)):
        raise ValueError("coarse_fragments must be within 0..100 % volume")
    return 1.0 - g / 100.0


def stock_from_content(
    soc_content: ArrayLike,
    bulk_density: ArrayLike | None = None,
    coarse_fragments: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOC density from content (SPEC 9).

    Args:
        soc_content: (m,) g C kg-1.
        bulk_density: (m,) measured bulk density, g cm-3; NaN or None -> pedotransfer.
        coarse_fragments: (m,) % volume; NaN or None -> 0.

    Returns:
        ``(soc, bulk_density_used, is_pedo)``: (m,) gC m-3, (m,) g cm-3, (m,) bool.
    """
    c = np.asarray(soc_content, dtype=float)
    bd = np.full(c.shape, np.nan) if bulk_density is None else np.asarray(bulk_density, float)
    is_pedo = ~np.isfinite(bd)
    bd_used = np.where(is_pedo, pedotransfer_bulk_density(c), bd)
    cf = np.zeros(c.shape) if coarse_fragments is None else np.asarray(coarse_fragments, float)
    return c * bd_used * 1000.0 * coarse_fragment_factor(cf), bd_used, is_pedo


def _id_str(x) -> str:
    if isinstance(x, str):
        return x.strip()
    x = float(x)
    return str(int(x)) if np.isfinite(x) and x == int(x) else repr(x)


def _orient(arr: np.ndarray, ncol: int, name: str) -> np.ndarray:
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 1 and arr.size == ncol:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D table, got shape {arr.shape}")
    if arr.shape[1] == ncol:
        return arr
    if arr.shape[0] == ncol:
        return arr.T
    raise ValueError(f"{name} must have {ncol} columns, got shape {arr.shape}")


def load_wosis(
    path: str | os.PathLike, *, stock: str = "given", **screening
) -> tuple[xr.Dataset, ScreeningReport]:
    """Load the WoSIS-derived NetCDF layout of SPEC 9 and screen it.

    Args:
        path: NetCDF file with ``soc_profile_info`` (n, 7) and ``data_soc_integrate`` (m, 9).
        stock: ``"given"``: use the ``soc_stock`` column, computing from content only where it is
            NaN; ``"content"``: always recompute from ``soc_weight`` and bulk density (measured,
            else pedotransfer).
        **screening: ``min_layers``, ``min_max_depth`` of `screen_layers`.

    Returns:
        ``(profiles, report)``: the profiles Dataset (with ``soc_content`` and
        ``bulk_density``) and the `ScreeningReport`.
    """
    if stock not in ("given", "content"):
        raise ValueError(f"stock must be 'given' or 'content', got {stock!r}")
    f = open_netcdf(path, decode_times=False)
    for name in ("soc_profile_info", "data_soc_integrate"):
        if name not in f:
            raise ValueError(f"{os.fspath(path)}: missing variable {name!r} (SPEC 9 layout)")
    info = _orient(f["soc_profile_info"].values, _INFO_COLUMNS, "soc_profile_info")
    data = _orient(f["data_soc_integrate"].values, _LAYER_COLUMNS, "data_soc_integrate")
    pids = np.asarray([_id_str(x) for x in info[:, 0]], dtype=object)
    content = data[:, 5]
    given = data[:, 6]
    bd = data[:, 7]
    computed, bd_used, _ = stock_from_content(content, bd)
    soc = computed if stock == "content" else np.where(np.isnan(given), computed, given)
    layers = {
        "profile_id": np.asarray([_id_str(x) for x in data[:, 0]], dtype=object),
        "depth_top": data[:, 2] / 100.0,
        "depth_bottom": data[:, 3] / 100.0,
        "depth_node": data[:, 4] / 100.0,
        "soc": soc,
        "soc_content": content,
        "bulk_density": np.where(np.isnan(bd), bd_used, bd),
        "row": np.arange(data.shape[0]),
    }
    screening.setdefault("depth_unit", "cm")
    screening.setdefault("row_label", "data_soc_integrate row {} (0-based)")
    ds, report = screen_layers(pids, info[:, 4], info[:, 3], layers, **screening)
    ds.attrs["source"] = f"WoSIS-derived NetCDF {os.path.basename(os.fspath(path))}"
    return ds, report


_CSV_REQUIRED = ("profile_id", "lat", "lon", "upper_depth", "lower_depth")
_CSV_OPTIONAL = ("node_depth", "soc_stock", "soc_content", "bulk_density", "coarse_fragments")


def load_csv(
    path: str | os.PathLike, *, depth_unit: str = "cm", stock: str = "given", **screening
) -> tuple[xr.Dataset, ScreeningReport]:
    """Load a CSV of layers (one row per layer) and screen it.

    Args:
        path: CSV file with a header (see the module docstring for the columns).
        depth_unit: ``"cm"`` (default) or ``"m"`` for the depth columns.
        stock: ``"given"`` (``soc_stock`` where present, else from content) or ``"content"``.
        **screening: ``min_layers``, ``min_max_depth`` of `screen_layers`.

    Returns:
        ``(profiles, report)``.

    Raises:
        ValueError: missing column, unparseable number (naming row and column), or neither
            ``soc_stock`` nor ``soc_content`` present.
    """
    if depth_unit not in ("cm", "m"):
        raise ValueError(f"depth_unit must be 'cm' or 'm', got {depth_unit!r}")
    if stock not in ("given", "content"):
        raise ValueError(f"stock must be 'given' or 'content', got {stock!r}")
    pid, table = _read_csv_columns(path)
    layers = _csv_layers(pid, table, depth_unit, stock)
    report = ScreeningReport()
    ids, idx = _csv_profile_table(pid, table, report)
    ds, report = screen_layers(
        np.asarray(ids, dtype=object),
        table["lat"][idx],
        table["lon"][idx],
        layers,
        report=report,
        **{"depth_unit": depth_unit, "row_label": "CSV line {}", **screening},
    )
    ds.attrs["source"] = f"CSV {os.path.basename(os.fspath(path))}"
    return ds, report


def _read_csv_columns(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The profile ids (one per row, str) and the numeric columns (NaN where empty) of a CSV."""
    require_file(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [c for c in _CSV_REQUIRED if c not in header]
        if missing:
            raise ValueError(f"{os.fspath(path)}: missing required columns {missing}")
        if "soc_stock" not in header and "soc_content" not in header:
            raise ValueError(f"{os.fspath(path)}: needs a soc_stock or a soc_content column")
        rows = list(reader)
    cols = [c for c in (*_CSV_REQUIRED, *_CSV_OPTIONAL) if c in header and c != "profile_id"]
    table = {c: np.full(len(rows), np.nan) for c in cols}
    pid = np.empty(len(rows), dtype=object)
    for r, row in enumerate(rows):
        pid[r] = (row["profile_id"] or "").strip()
        for c in cols:
            text = (row.get(c) or "").strip()
            if text == "" or text.lower() in ("nan", "na"):
                continue
            try:
                table[c][r] = float(text)
            except ValueError:
                raise ValueError(
                    f"{os.fspath(path)}: row {r + 2}, column {c!r}: cannot read "
                    f"{text!r} as a number"
                ) from None
    return pid, table


def _csv_layers(pid: np.ndarray, table: dict, depth_unit: str, stock: str) -> dict:
    """The layer table of `screen_layers` from the CSV columns (depths in m, soc in gC m-3)."""
    n_rows = len(pid)
    scale = 0.01 if depth_unit == "cm" else 1.0
    top = table["upper_depth"] * scale
    bottom = table["lower_depth"] * scale
    node = table["node_depth"] * scale if "node_depth" in table else 0.5 * (top + bottom)
    nan = np.full(n_rows, np.nan)
    content = table.get("soc_content", nan)
    bd = table.get("bulk_density", nan)
    cf = table.get("coarse_fragments", nan)
    computed, bd_used, _ = stock_from_content(content, bd, cf)
    given = table.get("soc_stock", nan)
    soc = computed if stock == "content" else np.where(np.isnan(given), computed, given)
    layers = {
        "profile_id": pid,
        "depth_top": top,
        "depth_bottom": bottom,
        "depth_node": node,
        "soc": soc,
        "row": np.arange(n_rows) + 2,
    }
    if "soc_content" in table:
        layers["soc_content"] = content
        layers["bulk_density"] = np.where(np.isnan(content), bd, bd_used)
    elif "bulk_density" in table:
        layers["bulk_density"] = bd
    if "coarse_fragments" in table:
        layers["coarse_fragments"] = cf
    return layers


def _csv_profile_table(
    pid: np.ndarray, table: dict, report: ScreeningReport
) -> tuple[list[str], np.ndarray]:
    """Profile table: first row of each id; inconsistent coordinates exclude the profile.

    Returns:
        ``(ids, rows)``: the profile ids kept and the (0-based) row of each one's coordinates.
    """
    first: dict[str, int] = {}
    bad: set[str] = set()
    for r, p in enumerate(pid):
        if p not in first:
            first[p] = r
            continue
        i = first[p]
        same = np.allclose(
            [table["lat"][r], table["lon"][r]], [table["lat"][i], table["lon"][i]], equal_nan=True
        )
        if not same and p not in bad:
            bad.add(p)
            report.excluded.append(
                {
                    "profile_id": p,
                    "reason": "inconsistent lat/lon",
                    "detail": f"rows {i + 2} and {r + 2} differ",
                }
            )
    ids = [p for p in first if p not in bad]
    return ids, np.asarray([first[p] for p in ids], dtype=int)
