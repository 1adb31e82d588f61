"""``soc-jax predict``: a trained network's global prediction, maps, totals and figures.

`predict_maps` reads ``network.eqx`` (two-stage or end-to-end; the header's ``link`` says how
raw outputs become parameters) and ``grid.nc``, predicts every land cell with usable covariates
(`soc_jax.proda.predict.global_prediction`) and writes ``maps.nc``, ``totals.json``, PNG figures
and ``summary.txt`` to ``--out``; with ``profiles.nc``, ``forcing.nc`` and ``covariates.nc`` in
``--data`` it adds the pooled NSE on the network's held-out profiles. The options are parsed
and checked by `soc_jax.proda.cli`.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from ..data import dataset_to_forcing, minmax_scale, pad_observations, read_profiles
from ..data.covariates import covariate_matrix
from .outputs import bootstrap_cells_line, write_summary
from .predict import AllCellsFailed, figures, global_prediction, heldout_nse, write_maps
from .steps import read_dataset, select_members, usable_members
from .totals import STOCK_NAMES, covers_globe, plausibility_note, reasons_text
from .train import load_checkpoint

__all__ = ["predict_maps"]

_KEY_PARAMETERS = ("q10", "tau4s1", "efolding", "w_scaling", "mic_cue")


def predict_maps(args: argparse.Namespace, net_path: str, grid_path: str) -> int:
    """Predict with the network at ``net_path`` on the cells of ``grid_path``; write ``--out``."""
    parser = args._parser
    ens, _, h = load_checkpoint(net_path)
    model, mode = h["model"], args.mode or h["mode"]
    notes = []  # what was left out, with reasons: terminal, summary.txt and totals.json
    models, kinds, note = usable_members(ens, h["kinds"])
    _note(notes, note)
    if "seed" not in kinds:
        parser.error("--network: no seed member improved during training; nothing to predict")
    grid, X = _grid_cells(parser, grid_path, h, notes)
    res = float(grid.attrs.get("resolution_deg", 0.5))
    try:
        pred = _predict(args, model, mode, models, kinds, grid, X, h, res)
    except AllCellsFailed as err:  # nothing written: no maps of zeros
        parser.error(f"--network: {err}")
    os.makedirs(args.out, exist_ok=True)
    names = h["parameter_names"]
    ds = write_maps(
        pred,
        grid,
        names,
        os.path.join(args.out, "maps.nc"),
        attrs={"model": model, "mode": mode, "network": os.path.abspath(net_path)},
    )
    t = pred.totals
    lines = [
        f"PRODA global prediction ({model}, mode {mode}): {len(X)} land cells at {res} deg",
        *notes,
        *_totals_lines(pred, grid),
    ]
    t["left_out"] = notes
    lines += _heldout_lines(args, h, models, kinds, model, mode, t)
    with open(os.path.join(args.out, "totals.json"), "w") as f:
        json.dump(t, f, indent=1)
    if not args.no_figures:
        figures(pred, ds, grid, args.out, [n for n in _KEY_PARAMETERS if n in names][:3])
    write_summary(args.out, lines, "maps.nc, totals.json, summary.txt and figures")
    return 0


def _predict(args, model, mode, models, kinds, grid, X, h, res):
    """`global_prediction` of the grid's cells with the options of ``args``."""
    return global_prediction(
        model,
        models,
        kinds,
        X,
        dataset_to_forcing(grid, dim="cell"),
        grid["lat"].values,
        res,
        mode=mode,
        homogeneous=np.asarray(h["homogeneous"]),
        default=not args.no_default,
        block=args.block,
        progress=True,
        link=h.get("link", "clip"),
    )


def _note(notes: list[str], note: str) -> None:
    if note:
        notes.append(note)
        print(note)


def _grid_cells(parser, grid_path: str, h: dict, notes: list[str]):
    """The grid's cells with finite covariates and their scaled covariates ``(grid, X)``."""
    grid = read_dataset(grid_path)
    if "i_lat" not in grid or "grid_lat" not in grid.coords:
        parser.error(f"--data: {grid_path} lacks the (i_lat, i_lon, grid_lat, grid_lon) layout")
    X = minmax_scale(covariate_matrix(grid), np.asarray(h["vmin"]), np.asarray(h["vmax"]))
    good = np.all(np.isfinite(X), axis=1)
    if not good.all():
        _note(
            notes,
            f"left out {int((~good).sum())} of {len(good)} grid cells with non-finite "
            "covariates (no prediction, missing in the maps and totals)",
        )
    if not good.any():
        parser.error(f"--data: every grid cell of {grid_path} has non-finite covariates")
    return grid.isel(cell=np.flatnonzero(good)), X[good]


def _band_text(totals: dict) -> str:
    if totals[STOCK_NAMES[0]] is None:
        return "no total (the model failed on every cell)"
    return " / ".join(f"{totals[k]:.1f}" for k in STOCK_NAMES)


def _cover_text(cover: dict) -> str:
    if cover["cells"] == cover["of_cells"]:
        return ""
    return (
        f"  [over the {cover['cells']} of {cover['of_cells']} cells that succeeded, "
        f"{cover['area_fraction']:.1%} of the land area]"
    )


def _totals_lines(pred, grid) -> list[str]:
    """Summary lines of the Pg C totals with the cells they cover, failures with their
    reasons and plausibility notes (on a synthetic world the true total is added to
    ``pred.totals``)."""
    t, cover = pred.totals, pred.totals["coverage"]
    lines = [
        "SOC 0-30 / 0-100 / 0-200 cm / total (Pg C):",
        "  PRODA best guess (seed median): "
        + _band_text(t["proda_best_guess"])
        + _cover_text(cover["proda_best_guess"]),
    ]
    if "proda_bootstrap" in t:
        q = t["proda_bootstrap"]["top_100cm"]
        lines.append(
            f"  PRODA bootstrap 0-100 cm: median {q['median']:.1f} "
            f"[14 % {q['q14']:.1f}, 86 % {q['q86']:.1f}]"
        )
    for name in ("homogeneous", "default"):
        if name in t:
            lines.append(f"  {name}: " + _band_text(t[name]) + _cover_text(cover[name]))
    true = grid["stock_100cm"].values if "stock_100cm" in grid else None
    if true is not None:
        t["truth_top_100cm"] = float(np.sum(true * pred.area) / 1e15)
        lines.append(f"  truth (synthetic world) 0-100 cm: {t['truth_top_100cm']:.1f}")
    lines += _plausibility_lines(t, pred, true)
    lines += failure_lines(pred)
    if "proda_bootstrap_cells" in t:
        lines.append(bootstrap_cells_line(t["proda_bootstrap_cells"]))
        if "proda_bootstrap" not in t:
            lines.append("no cell where every bootstrap member succeeded: no bootstrap band")
    return lines


def _plausibility_lines(t: dict, pred, true_stock) -> list[str]:
    """Notes on the totals against published global stocks (a global grid only) or, for 0-100
    cm on a synthetic world, its truth on the same cells; stored as ``t["plausibility"]``."""
    if not covers_globe(pred.area):
        t["plausibility"] = {}
        return ["plausibility: the grid does not cover the globe; no comparison with global stocks"]
    oks = {"proda_best_guess": pred.best_ok, **{k: o for k, (_, o) in pred.extra.items()}}
    values = {(name, band): t[name][band] for name in oks for band in STOCK_NAMES}
    if "proda_bootstrap" in t:
        oks["proda_bootstrap"] = pred.ok[np.array([k == "bootstrap" for k in pred.kinds])].all(0)
        values["proda_bootstrap", "top_100cm"] = t["proda_bootstrap"]["top_100cm"]["median"]
    notes = {}
    for (name, band), value in values.items():
        truth = None
        if band == "top_100cm" and true_stock is not None:
            truth = float(np.sum(np.where(oks[name], true_stock, 0.0) * pred.area) / 1e15)
        note = "" if value is None else plausibility_note(band, value, truth)
        if note:
            notes[f"{_NAMES.get(name, name)} {_BAND_LABELS[band]}"] = note
    t["plausibility"] = notes
    return [f"  note, {k}: {v}" for k, v in notes.items()]


_NAMES = {"proda_best_guess": "PRODA best guess", "proda_bootstrap": "PRODA bootstrap median"}
_BAND_LABELS = dict(zip(STOCK_NAMES, ("0-30 cm", "0-100 cm", "0-200 cm", "total"), strict=True))


def failure_lines(pred) -> list[str]:
    """Failed steady states per member kind and reference configuration, with the main
    reasons (`soc_jax.proda.totals.failure_reasons`); one line when none failed."""
    reasons = pred.totals["failure_reasons"]
    lines = []
    for kind in ("seed", "bootstrap"):
        members = np.array([k == kind for k in pred.kinds])
        if not members.any():
            continue
        per = (~pred.ok[members]).sum(axis=1)
        if per.sum():
            lines.append(
                f"  {kind} members: {int(per.sum())} of {per.size * pred.ok.shape[1]} "
                f"member-cells (per member {int(per.min())}-{int(per.max())}); reasons: "
                + reasons_text(reasons[f"{kind}_members"])
            )
    lost = ~pred.best_ok
    if lost.any():
        share = pred.area[lost].sum() / pred.area.sum()
        lines.append(
            f"  cells where every seed member failed (no value, grey in the maps): "
            f"{int(lost.sum())} ({share:.1%} of the land area)"
        )
    for name, (_, ok) in pred.extra.items():
        if not ok.all():
            lines.append(
                f"  {name}: {int((~ok).sum())} of {ok.size} cells; reasons: "
                + reasons_text(reasons[name])
            )
    if not lines:
        return ["failed steady states: none"]
    return ["failed steady states (left out of the totals):", *lines]


def _heldout_lines(args, h, models, kinds, model, mode, totals) -> list[str]:
    """Held-out NSE (SPEC 6) when ``--data`` has the profiles; adds ``heldout_nse`` to
    ``totals``. No held-out profile or no profiles file: no line."""
    hold = h.get("holdout_profile_id") or []
    paths = [os.path.join(args.data, f) for f in ("profiles.nc", "forcing.nc", "covariates.nc")]
    if not (hold and all(os.path.exists(p) for p in paths)):
        return []
    prof = read_profiles(paths[0], validate=False)
    frc = read_dataset(paths[1])
    cov = read_dataset(paths[2])
    ids = prof["profile_id"].values.astype(str)
    pos = {pid: i for i, pid in enumerate(ids)}
    rows = np.array([pos[p] for p in hold if p in pos], dtype=int)
    lines = []
    if rows.size < len(hold):
        lines.append(
            f"held-out NSE: {len(hold) - rows.size} of {len(hold)} held-out profiles are "
            f"not in {paths[0]} (left out)"
        )
    if not rows.size:
        return lines
    seeds = np.array([k == "seed" for k in kinds])
    res = heldout_nse(
        model,
        select_members(models, seeds),
        minmax_scale(covariate_matrix(cov)[rows], np.asarray(h["vmin"]), np.asarray(h["vmax"])),
        dataset_to_forcing(frc.isel(profile=rows)),
        pad_observations(prof.isel(profile=rows)),
        mode=mode,
        link=h.get("link", "clip"),
    )
    totals["heldout_nse"] = res
    lines.append(
        f"held-out pooled NSE of layer SOC: {res['nse']:.3f} "
        f"({res['n_profiles']} profiles, {res['n_layers']} layers, "
        f"{res['n_failed_profiles']} failed)"
    )
    return lines
