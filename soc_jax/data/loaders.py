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

Screening (PRODA, SPEC 1.11 and 6), in this order; nothing is dropped silently:

1. layers: drop SOC == 0 ("soc is zero"), NaN SOC ("soc is NaN"), NaN depth ("depth is NaN")
   and rows whose profile is not in the profile table ("unknown profile_id");
   these go to `ScreeningReport.dropped_layers`;
2. profiles (to `ScreeningReport.excluded`): "duplicate profile_id", "lat/lon out of range",
   "inconsistent lat/lon" (CSV), "no layers", "all layers zero or NaN", "negative soc"
   (non-physical values reject the whole profile), "fewer than 3 layers" (PRODA keeps > 2),
   "maximum depth <= 50 cm" (deepest node depth), and "invalid layers" with the schema rule
   broken (bottom above top, overlapping layers, ...).

Layers are sorted by (top, node) depth within a profile before the checks. Loaders read NetCDF
through xarray/netCDF4 and CSV through the ``csv`` module; they never unpickle or execute code.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable

import numpy as np
import xarray as xr
from jaxtyping import ArrayLike

from .netcdf import open_netcdf, require_file
from .schema import DEPTH_UNITS, _assemble, _name, describe_layer, fmt, profile_problems

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

MIN_LAYERS: int = 3  # PRODA keeps profiles with more than 2 layers
MIN_MAX_DEPTH: float = 0.5  # m; keep profiles whose deepest node is deeper than 50 cm
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


@dataclasses.dataclass
class ScreeningReport:
    """What a loader excluded and why.

    Attributes:
        excluded: one dict per excluded profile: ``profile_id``, ``reason``, ``detail``.
        dropped_layers: one dict per dropped layer: ``profile_id``, ``row`` (0-based row in the
            source), ``depth_node_m``, ``reason``.
        n_profiles_in: profiles in the source; ``n_profiles_kept``: profiles returned.
    """

    excluded: list[dict] = dataclasses.field(default_factory=list)
    dropped_layers: list[dict] = dataclasses.field(default_factory=list)
    n_profiles_in: int = 0
    n_profiles_kept: int = 0

    def reason_of(self, profile_id: str) -> str | None:
        """The exclusion reason of one profile (None if it was kept or unknown)."""
        for row in self.excluded:
            if row["profile_id"] == str(profile_id):
                return row["reason"]
        return None

    def counts(self) -> dict[str, int]:
        """Number of excluded profiles per reason."""
        out: dict[str, int] = {}
        for row in self.excluded:
            out[row["reason"]] = out.get(row["reason"], 0) + 1
        return out

    def to_csv(self, path: str | os.PathLike, layers_path: str | os.PathLike | None = None) -> None:
        """Write the excluded profiles (and optionally the dropped layers) as CSV tables."""
        _write_rows(path, ["profile_id", "reason", "detail"], self.excluded)
        if layers_path is not None:
            _write_rows(
                layers_path, ["profile_id", "row", "depth_node_m", "reason"], self.dropped_layers
            )

    def summary(self) -> str:
        """One line: kept / in, and the exclusion counts by reason."""
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.counts().items()))
        return (
            f"kept {self.n_profiles_kept} of {self.n_profiles_in} profiles; excluded "
            f"{len(self.excluded)} ({parts or 'none'}); dropped {len(self.dropped_layers)} "
            "layers"
        )


def _write_rows(path: str | os.PathLike, fields: list[str], rows: Iterable[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for row in rows:
            w.writerow({k: row.get(k, "") for k in fields})


def _id_str(x) -> str:
    if isinstance(x, str):
        return x.strip()
    x = float(x)
    return str(int(x)) if np.isfinite(x) and x == int(x) else repr(x)


def screen_layers(
    profile_id: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    layers: dict[str, np.ndarray],
    *,
    report: ScreeningReport | None = None,
    min_layers: int = MIN_LAYERS,
    min_max_depth: float = MIN_MAX_DEPTH,
    depth_unit: str = "m",
    row_label: str = "row {}",
) -> tuple[xr.Dataset, ScreeningReport]:
    """PRODA's screening of a layer table, then the profiles Dataset.

    An excluded profile's ``detail`` names the layer that broke the rule, counted from the
    surface (1 = top, after sorting by depth and dropping zero/NaN layers), with its depths in
    ``depth_unit`` and its source row (``row_label``).

    Args:
        profile_id: (n,) profile ids (str) of the profile table.
        lat: (n,) degrees north. ``lon``: (n,) degrees east.
        layers: layer table, each (m,): ``profile_id`` (str), ``depth_top``, ``depth_bottom``,
            ``depth_node`` (m), ``soc`` (gC m-3), and optionally ``soc_content`` (g C kg-1),
            ``bulk_density`` (g cm-3), ``coarse_fragments`` (%), ``row`` (source row number).
        report: a report to append to (e.g. with rows already excluded while parsing).
        min_layers: keep profiles with at least this many layers (PRODA: 3).
        min_max_depth: keep profiles whose deepest node is deeper than this, m (PRODA: 0.5).
        depth_unit: ``"m"`` or ``"cm"``: the unit of the source, used in messages (values are
            in m); recorded as the Dataset's ``source_depth_unit`` attribute.
        row_label: how a source row is named in messages, e.g. ``"CSV line {}"`` (formatted
            with ``layers["row"]``).

    Returns:
        ``(profiles, report)``: the valid profiles Dataset and the `ScreeningReport`.
    """
    report = report if report is not None else ScreeningReport()
    if depth_unit not in DEPTH_UNITS:
        raise ValueError(f"depth_unit must be 'm' or 'cm', got {depth_unit!r}")
    scale = DEPTH_UNITS[depth_unit]
    pids = np.asarray(profile_id).astype(str)
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    report.n_profiles_in = len(set(pids.tolist()) | {r["profile_id"] for r in report.excluded})
    lpid = np.asarray(layers["profile_id"]).astype(str)
    m = lpid.size
    rows = np.asarray(layers.get("row", np.arange(m)))
    soc = np.asarray(layers["soc"], float)
    depth = np.stack(
        [np.asarray(layers[k], float) for k in ("depth_top", "depth_bottom", "depth_node")]
    )
    optional = [k for k in ("soc_content", "bulk_density", "coarse_fragments") if k in layers]
    excluded_ids = {r["profile_id"] for r in report.excluded}

    def exclude(pid: str, reason: str, detail: str = "") -> None:
        pid = str(pid)  # a plain str, never np.str_ (its repr would leak into messages)
        excluded_ids.add(pid)
        report.excluded.append({"profile_id": pid, "reason": reason, "detail": detail})

    # Profile table rules.
    uniq, first, counts = np.unique(pids, return_index=True, return_counts=True)
    for pid in uniq[counts > 1]:
        exclude(
            str(pid),
            "duplicate profile_id",
            f"{int((pids == pid).sum())} rows in the profile table",
        )
    known = {}
    for i in np.sort(first):
        pid = pids[i]
        if pid in excluded_ids:
            continue
        if not (
            np.isfinite(lat[i])
            and np.isfinite(lon[i])
            and -90 <= lat[i] <= 90
            and -180 <= lon[i] <= 360
        ):
            exclude(pid, "lat/lon out of range", f"lat {fmt(lat[i])}, lon {fmt(lon[i])} degrees")
            continue
        known[pid] = i

    # Layer rules.
    keep = np.ones(m, bool)
    for j in range(m):
        reason = None
        if lpid[j] not in known and lpid[j] not in excluded_ids:
            reason = "unknown profile_id"
        elif soc[j] == 0:
            reason = "soc is zero"
        elif np.isnan(soc[j]):
            reason = "soc is NaN"
        elif np.any(np.isnan(depth[:, j])):
            reason = "depth is NaN"
        if reason is not None:
            keep[j] = False
            report.dropped_layers.append(
                {
                    "profile_id": str(lpid[j]),
                    "row": int(rows[j]),
                    "depth_node_m": float(depth[2, j]),
                    "reason": reason,
                }
            )

    # Profile rules on the kept layers.
    order = np.lexsort((depth[2], depth[0], lpid))  # by profile, then top, then node depth
    by_pid: dict[str, list[int]] = {}
    had_layers: set[str] = set()
    for j in order:
        had_layers.add(str(lpid[j]))
        if keep[j]:
            by_pid.setdefault(str(lpid[j]), []).append(int(j))
    candidates: list[str] = []
    for pid in known:
        idx = by_pid.get(pid, [])
        if pid in excluded_ids:
            continue
        if not idx:
            if pid in had_layers:
                exclude(pid, "all layers zero or NaN")
            else:
                exclude(pid, "no layers")
            continue
        s = soc[idx]
        if np.any(s < 0):
            j = int(np.flatnonzero(s < 0)[0])
            where = describe_layer(
                j,
                len(idx),
                depth[0, idx[j]],
                depth[1, idx[j]],
                depth_unit,
                row_label.format(rows[idx[j]]),
            )
            exclude(pid, "negative soc", f"soc {fmt(s[j])} gC m-3 ({where})")
            continue
        if len(idx) < min_layers:
            exclude(
                pid,
                "fewer than 3 layers" if min_layers == 3 else f"fewer than {min_layers} layers",
                f"{len(idx)} layers",
            )
            continue
        deepest = float(depth[2, idx].max())
        if not deepest > min_max_depth:
            exclude(
                pid,
                f"maximum depth <= {100 * min_max_depth:g} cm",
                f"deepest node {fmt(deepest * scale)} {depth_unit}",
            )
            continue
        candidates.append(pid)

    width = max((len(by_pid[p]) for p in candidates), default=0)
    n = len(candidates)
    mask = np.zeros((n, width), bool)
    names = ["depth_top", "depth_bottom", "depth_node", "soc", *optional]
    arrays = {k: np.full((n, width), np.nan) for k in names}
    source = {
        "depth_top": depth[0],
        "depth_bottom": depth[1],
        "depth_node": depth[2],
        "soc": soc,
        **{k: np.asarray(layers[k], float) for k in optional},
    }
    for i, pid in enumerate(candidates):
        idx = by_pid[pid]
        mask[i, : len(idx)] = True
        for k in names:
            arrays[k][i, : len(idx)] = source[k][idx]
    ii = np.asarray([known[p] for p in candidates], dtype=int)
    ds = _assemble(
        np.asarray(candidates, dtype=object),
        lat[ii],
        lon[ii],
        mask,
        arrays,
        validate=False,
        attrs={"source_depth_unit": depth_unit},
    )
    labels = np.full((n, width), "", dtype=object)
    for i, pid in enumerate(candidates):
        labels[i, : len(by_pid[pid])] = [row_label.format(rows[j]) for j in by_pid[pid]]
    bad: dict[int, str] = {}
    for i, message in profile_problems(ds, rows=labels):
        bad.setdefault(i, message)
    for i, message in sorted(bad.items()):
        prefix = f"{_name(ds, i)}: "  # the report's row names the profile already
        exclude(candidates[i], "invalid layers", message.removeprefix(prefix))
    if bad:
        ds = ds.isel(profile=[i for i in range(n) if i not in bad])
        ds = ds.assign_coords(profile=np.arange(ds.sizes["profile"]))
        width = int(ds["n_layers"].max()) if ds.sizes["profile"] else 0
        ds = ds.isel(layer=slice(0, width))
    report.n_profiles_kept = int(ds.sizes["profile"])
    return ds, report


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
    scale = 0.01 if depth_unit == "cm" else 1.0
    top = table["upper_depth"] * scale
    bottom = table["lower_depth"] * scale
    node = table["node_depth"] * scale if "node_depth" in table else 0.5 * (top + bottom)
    nan = np.full(len(rows), np.nan)
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
        "row": np.arange(len(rows)) + 2,
    }
    if "soc_content" in table:
        layers["soc_content"] = content
        layers["bulk_density"] = np.where(np.isnan(content), bd, bd_used)
    elif "bulk_density" in table:
        layers["bulk_density"] = bd
    if "coarse_fragments" in table:
        layers["coarse_fragments"] = cf

    # Profile table: first row of each id; inconsistent coordinates exclude the profile.
    report = ScreeningReport()
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
    idx = np.asarray([first[p] for p in ids], dtype=int)
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
