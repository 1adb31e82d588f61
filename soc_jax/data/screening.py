"""PRODA's screening of a layer table, with a report of everything dropped (`screen_layers`).

Screening (PRODA, SPEC 1.11 and 6), in this order; nothing is dropped silently:

1. layers: drop SOC == 0 ("soc is zero"), NaN SOC ("soc is NaN"), NaN depth ("depth is NaN")
   and rows whose profile is not in the profile table ("unknown profile_id");
   these go to `ScreeningReport.dropped_layers`;
2. profiles (to `ScreeningReport.excluded`): "duplicate profile_id", "lat/lon out of range",
   "inconsistent lat/lon" (CSV), "no layers", "all layers zero or NaN", "negative soc"
   (non-physical values reject the whole profile), "fewer than 3 layers" (PRODA keeps > 2),
   "maximum depth <= 50 cm" (deepest node depth), and "invalid layers" with the schema rule
   broken (bottom above top, overlapping layers, ...).

Layers are sorted by (top, node) depth within a profile before the checks. The loaders of
`soc_jax.data.loaders` parse a file into a layer table and call `screen_layers`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Iterable

import numpy as np
import xarray as xr

from .schema import DEPTH_UNITS, _assemble, _name, describe_layer, fmt, profile_problems

__all__ = ["ScreeningReport", "screen_layers", "MIN_LAYERS", "MIN_MAX_DEPTH"]

MIN_LAYERS: int = 3  # PRODA keeps profiles with more than 2 layers
MIN_MAX_DEPTH: float = 0.5  # m; keep profiles whose deepest node is deeper than 50 cm


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
    pids = np.asarray(profile_id).astype(str)
    lat = np.asarray(lat, float)
    lon = np.asarray(lon, float)
    report.n_profiles_in = len(set(pids.tolist()) | {r["profile_id"] for r in report.excluded})
    table = _LayerTable.of(layers, row_label, depth_unit)
    screen = _Exclusions(report)
    known = _screen_profile_table(pids, lat, lon, screen)
    keep = _drop_layers(table, known, screen)
    by_pid, had_layers = _layers_by_profile(table, keep)
    candidates = [
        pid
        for pid in known
        if pid not in screen.ids
        and _profile_passes(
            table, pid, by_pid.get(pid, []), pid in had_layers, screen, min_layers, min_max_depth
        )
    ]
    ds = _candidate_profiles(table, by_pid, candidates, lat, lon, known)
    ds = _drop_invalid_profiles(ds, table, by_pid, candidates, screen)
    report.n_profiles_kept = int(ds.sizes["profile"])
    return ds, report


@dataclasses.dataclass
class _LayerTable:
    """The layer table of `screen_layers`, as arrays (depths in m, soc in gC m-3)."""

    profile_id: np.ndarray  # (m,) str
    rows: np.ndarray  # (m,) source row numbers
    soc: np.ndarray  # (m,) gC m-3
    depth: np.ndarray  # (3, m) top, bottom, node, m
    optional: dict[str, np.ndarray]  # soc_content, bulk_density, coarse_fragments when given
    row_label: str  # how messages name a source row, e.g. "CSV line {}"
    depth_unit: str  # "m" or "cm": the source's unit, for messages (values are in m)

    @classmethod
    def of(cls, layers: dict[str, np.ndarray], row_label: str, depth_unit: str) -> _LayerTable:
        lpid = np.asarray(layers["profile_id"]).astype(str)
        depth = np.stack(
            [np.asarray(layers[k], float) for k in ("depth_top", "depth_bottom", "depth_node")]
        )
        optional = [k for k in ("soc_content", "bulk_density", "coarse_fragments") if k in layers]
        return cls(
            profile_id=lpid,
            rows=np.asarray(layers.get("row", np.arange(lpid.size))),
            soc=np.asarray(layers["soc"], float),
            depth=depth,
            optional={k: np.asarray(layers[k], float) for k in optional},
            row_label=row_label,
            depth_unit=depth_unit,
        )

    def label(self, j: int) -> str:
        """The source row of layer ``j`` as messages name it."""
        return self.row_label.format(self.rows[j])


class _Exclusions:
    """Records excluded profiles in the report and remembers their ids."""

    def __init__(self, report: ScreeningReport):
        self.report = report
        self.ids = {r["profile_id"] for r in report.excluded}

    def __call__(self, pid: str, reason: str, detail: str = "") -> None:
        pid = str(pid)  # a plain str, never np.str_ (its repr would leak into messages)
        self.ids.add(pid)
        self.report.excluded.append({"profile_id": pid, "reason": reason, "detail": detail})


def _screen_profile_table(pids, lat, lon, exclude: _Exclusions) -> dict[str, int]:
    """Profile table rules (duplicate id, lat/lon out of range): id -> row of the kept ones."""
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
        if pid in exclude.ids:
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
    return known


def _drop_layers(table: _LayerTable, known: dict, exclude: _Exclusions) -> np.ndarray:
    """Layer rules (unknown profile, zero or NaN soc, NaN depth): (m,) bool, the kept layers."""
    lpid, soc, depth = table.profile_id, table.soc, table.depth
    keep = np.ones(lpid.size, bool)
    for j in range(lpid.size):
        reason = None
        if lpid[j] not in known and lpid[j] not in exclude.ids:
            reason = "unknown profile_id"
        elif soc[j] == 0:
            reason = "soc is zero"
        elif np.isnan(soc[j]):
            reason = "soc is NaN"
        elif np.any(np.isnan(depth[:, j])):
            reason = "depth is NaN"
        if reason is not None:
            keep[j] = False
            exclude.report.dropped_layers.append(
                {
                    "profile_id": str(lpid[j]),
                    "row": int(table.rows[j]),
                    "depth_node_m": float(depth[2, j]),
                    "reason": reason,
                }
            )
    return keep


def _layers_by_profile(table: _LayerTable, keep: np.ndarray) -> tuple[dict, set[str]]:
    """Kept layers of each profile sorted by (top, node) depth, and the ids with any layer."""
    lpid, depth = table.profile_id, table.depth
    order = np.lexsort((depth[2], depth[0], lpid))  # by profile, then top, then node depth
    by_pid: dict[str, list[int]] = {}
    had_layers: set[str] = set()
    for j in order:
        had_layers.add(str(lpid[j]))
        if keep[j]:
            by_pid.setdefault(str(lpid[j]), []).append(int(j))
    return by_pid, had_layers


def _profile_passes(
    table: _LayerTable,
    pid: str,
    idx: list[int],
    had_layers: bool,
    exclude: _Exclusions,
    min_layers: int,
    min_max_depth: float,
) -> bool:
    """Profile rules on the kept layers ``idx`` (none left, negative soc, too few, too shallow)."""
    if not idx:
        exclude(pid, "all layers zero or NaN" if had_layers else "no layers")
        return False
    depth = table.depth
    s = table.soc[idx]
    if np.any(s < 0):
        j = int(np.flatnonzero(s < 0)[0])
        where = describe_layer(
            j,
            len(idx),
            depth[0, idx[j]],
            depth[1, idx[j]],
            table.depth_unit,
            table.label(idx[j]),
        )
        exclude(pid, "negative soc", f"soc {fmt(s[j])} gC m-3 ({where})")
        return False
    if len(idx) < min_layers:
        exclude(
            pid,
            "fewer than 3 layers" if min_layers == 3 else f"fewer than {min_layers} layers",
            f"{len(idx)} layers",
        )
        return False
    deepest = float(depth[2, idx].max())
    if not deepest > min_max_depth:
        exclude(
            pid,
            f"maximum depth <= {100 * min_max_depth:g} cm",
            f"deepest node {fmt(deepest * DEPTH_UNITS[table.depth_unit])} {table.depth_unit}",
        )
        return False
    return True


def _candidate_profiles(
    table: _LayerTable, by_pid, candidates: list[str], lat, lon, known
) -> xr.Dataset:
    """The profiles Dataset of the candidates (not yet checked by the schema rules)."""
    width = max((len(by_pid[p]) for p in candidates), default=0)
    n = len(candidates)
    mask = np.zeros((n, width), bool)
    names = ["depth_top", "depth_bottom", "depth_node", "soc", *table.optional]
    arrays = {k: np.full((n, width), np.nan) for k in names}
    source = {
        "depth_top": table.depth[0],
        "depth_bottom": table.depth[1],
        "depth_node": table.depth[2],
        "soc": table.soc,
        **table.optional,
    }
    for i, pid in enumerate(candidates):
        idx = by_pid[pid]
        mask[i, : len(idx)] = True
        for k in names:
            arrays[k][i, : len(idx)] = source[k][idx]
    ii = np.asarray([known[p] for p in candidates], dtype=int)
    return _assemble(
        np.asarray(candidates, dtype=object),
        lat[ii],
        lon[ii],
        mask,
        arrays,
        validate=False,
        attrs={"source_depth_unit": table.depth_unit},
    )


def _drop_invalid_profiles(
    ds: xr.Dataset, table: _LayerTable, by_pid, candidates: list[str], exclude: _Exclusions
) -> xr.Dataset:
    """Exclude the candidates that break a schema rule ("invalid layers") and drop them."""
    n = len(candidates)
    labels = np.full((n, ds.sizes["layer"]), "", dtype=object)
    for i, pid in enumerate(candidates):
        labels[i, : len(by_pid[pid])] = [table.label(j) for j in by_pid[pid]]
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
    return ds
