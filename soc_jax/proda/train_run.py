"""``soc-jax train`` (two-stage): PRODA's network fitted to calibrated (or true) parameters.

`train_two_stage` reads ``--targets``, ``covariates.nc`` and ``grid.nc``, keeps the profiles that
are targets (`soc_jax.proda.train.training_data`), holds some out (``--holdout``), trains the
seed and bootstrap members as one vmapped program and writes ``network.eqx`` (+ ``.json``), a
resumable ``checkpoint.eqx``, ``training.nc``, ``recovery.json`` / ``recovery.png`` (held-out
recovery) and ``summary.txt`` to ``--out``. The options are parsed and checked by
`soc_jax.proda.cli`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from .outputs import add_heldout, epochs_text, member_dataset, write_recovery, write_summary
from .steps import (
    check_resume,
    holdout_rows,
    loop_options,
    network_header,
    read_dataset,
    resume_ensemble,
)
from .targets import target_report
from .train import (
    TrainConfig,
    load_checkpoint,
    member_splits,
    never_improved,
    never_improved_lines,
    new_ensemble,
    recovery_table,
    save_checkpoint,
    train_ensemble,
    training_data,
)

__all__ = ["train_two_stage"]


def train_two_stage(args: argparse.Namespace, paths: dict[str, str]) -> int:
    """Train PRODA's network on ``--targets`` (``paths``: covariates and grid of ``--data``)."""
    parser = args._parser
    inputs = check_resume(parser, args, _input_files(args, paths))
    targets = read_dataset(args.targets)
    cov = read_dataset(paths["covariates"])
    grid = read_dataset(paths["grid"], ["covariates"])
    model = args.model or targets.attrs.get("model", "clm5")
    if model not in ("clm5", "compas"):
        parser.error(f"--model: unknown model {model!r}")
    mode = targets.attrs.get("mode") or ("proda" if model == "clm5" else "documented")
    data, report = _training_table(parser, args, targets, cov, grid)
    train_rows, hold, hold_line = _split(parser, args, data, targets, cov, grid)
    X, Y = data.X[train_rows], data.Y[train_rows]
    cfg = _train_config(args, model)
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.eqx")
    tr, va, kinds = member_splits(
        len(X), args.ensemble, args.bootstrap, split=args.split, seed=args.seed
    )
    extra = {**_header(args, data, model, mode, kinds, train_rows, hold, Y), "inputs": inputs}
    if args.resume:
        ens = resume_ensemble(parser, ckpt, cfg, kinds, load_checkpoint, extra)
    else:
        ens = new_ensemble(X.shape[1], Y.shape[1], tr, va, cfg, seed=args.seed)
        save_checkpoint(ckpt, ens, cfg, extra)
    t0 = time.perf_counter()
    ens = train_ensemble(ens, X, Y, cfg, checkpoint=ckpt, progress=True)
    wall = time.perf_counter() - t0
    extra["train_seconds_this_run"] = wall
    save_checkpoint(os.path.join(args.out, "network.eqx"), ens, cfg, extra)
    save_checkpoint(ckpt, ens, cfg, extra)

    st = ens.state
    lines = [
        f"PRODA network ({model}): {len(kinds)} members ({args.ensemble} seeds, "
        f"{args.bootstrap} bootstraps), {len(train_rows)} training profiles, {len(hold)} held "
        f"out, {len(data.dropped)} left out (see below)",
        *report,
        hold_line,
        f"{epochs_text(st)}; stopped early: {int(np.sum(np.asarray(st.epoch) < args.epochs))}; "
        f"best validation loss median {float(np.median(st.best_val)):.4g}; wall {wall:.1f} s",
        *never_improved_lines(st, kinds),
    ]
    member = member_dataset(
        st, kinds, what="loss", attrs={"model": model, **_training_attrs(data, args, len(hold))}
    )
    member = _add_excluded(member, data)
    member, recovery = _heldout_recovery(args, ens, kinds, data, hold, member)
    member.to_netcdf(os.path.join(args.out, "training.nc"), engine="netcdf4")
    write_summary(
        args.out, lines + recovery, "network.eqx, checkpoint.eqx, training.nc, summary.txt"
    )
    return 0


def _input_files(args, paths) -> dict:
    """The files this training reads (``{name: (flag, path)}``; profiles.nc, for the site
    coordinates of a spatial hold-out, if ``--data`` has one)."""
    files = {
        "targets": ("--targets", args.targets),
        "covariates.nc": ("--data", paths["covariates"]),
        "grid.nc": ("--data", paths["grid"]),
    }
    prof = os.path.join(args.data, "profiles.nc")
    if os.path.exists(prof):
        files["profiles.nc"] = ("--data", prof)
    return files


def _training_table(parser, args, targets, cov, grid):
    """The (covariates, targets) table of the profiles that are targets, and its report."""
    try:
        data = training_data(
            cov, grid, targets, args.target_var, site_filter=not args.no_site_filter
        )
    except ValueError as err:
        parser.error(f"--targets: {err}")
    report = target_report(data)
    print("\n".join(report))
    if len(data.X) == 0:
        parser.error(
            f"--targets: no profile left to train on ({_counts_text(data)}); {_hint(data)}"
        )
    return data, report


def _split(parser, args, data, targets, cov, grid):
    """``--holdout`` rows of the table (coordinates from the targets, profiles.nc or the grid)."""
    import xarray as xr

    prof_path = os.path.join(args.data, "profiles.nc")
    prof = None
    if os.path.exists(prof_path):
        with xr.open_dataset(prof_path) as f:
            prof = f[[v for v in ("profile_id", "lat", "lon") if v in f.variables]].load()
    train_rows, hold, hold_line = holdout_rows(
        parser, args, data.profile_id, targets, prof, (cov, grid)
    )
    print(hold_line)
    if len(train_rows) < 10:
        parser.error(
            f"--targets: only {len(train_rows)} training profiles (need >= 10; "
            f"{_counts_text(data)}, {len(hold)} held out); {_hint(data)}"
        )
    return train_rows, hold, hold_line


def _train_config(args, model: str) -> TrainConfig:
    dropout = args.dropout if args.dropout is not None else (0.0 if model == "clm5" else 0.2)
    return TrainConfig(loss=model, dropout=dropout, **loop_options(args))


def _header(args, data, model, mode, kinds, train_rows, hold, Y) -> dict:
    """The network's header: what `soc-jax predict` needs and where the targets came from."""
    return {
        **network_header(
            model,
            mode,
            kinds,
            data.parameter_names,
            data.vmin,
            data.vmax,
            data.profile_id[train_rows],
            data.profile_id[hold],
        ),
        "homogeneous": Y.mean(axis=0).tolist(),
        "dropped_profile_id": data.dropped,
        "excluded": data.excluded,
        "target_counts": data.counts,
        "site_filter": data.site_filter,
        "target_var": data.target_var,
        "holdout_kind": args.holdout_kind,
        "holdout_block_deg": args.holdout_block,
        "targets": os.path.abspath(args.targets),
        "seed": args.seed,
    }


def _heldout_recovery(args, ens, kinds, data, hold, member):
    """Seed-mean prediction on the held-out profiles against their targets: variables of
    ``training.nc``, ``recovery.json`` / ``recovery.png`` and summary lines (none held out or
    no seed improved: nothing)."""
    seeds = np.array([k == "seed" for k in kinds]) & ~never_improved(ens.state)
    if not (len(hold) and seeds.any()):
        return member, []
    from .predict import predict_parameters
    from .steps import select_members

    seed_models = select_members(ens.best_models, seeds)
    pred = predict_parameters(seed_models, data.X[hold]).astype(float).mean(axis=0)
    table = recovery_table(pred, data.Y[hold], data.parameter_names)
    member = add_heldout(
        member,
        data.parameter_names,
        data.profile_id[hold],
        {
            "heldout_pred": (pred, "held-out prediction, mean over seeds"),
            "heldout_target": (data.Y[hold], "held-out target"),
        },
    )
    title = "held-out recovery (normalized parameters)"
    lines = write_recovery(args.out, table, pred, data.Y[hold], data.parameter_names, title)
    return member, lines


def _counts_text(data) -> str:
    c = data.counts
    return (
        f"{c['targets']} in the targets: {c['failed']} skipped or failed, {c['filtered']} "
        f"not converged (site filter {data.site_filter}), {c['input']} without covariates"
    )


def _hint(data) -> str:
    if data.site_filter == "on":
        return "--no-site-filter trains on every profile with a valid posterior, converged or not"
    return "check --targets (skipped and failed profiles are never targets)"


def _training_attrs(data, args, n_hold: int) -> dict:
    c = data.counts
    return {
        "target_var": data.target_var,
        "site_filter": data.site_filter,
        "n_target_profiles": c["targets"],
        "n_used": c["used"],
        "n_failed_or_skipped": c["failed"],
        "n_filtered_not_converged": c["filtered"],
        "n_without_covariates": c["input"],
        "left_out_reasons": json.dumps(data.reason_counts()),
        "holdout_kind": args.holdout_kind if n_hold else "none",
        "holdout_block_deg": float(args.holdout_block),
        "n_heldout": n_hold,
    }


def _add_excluded(member, data):
    """Per left-out profile: its id and reason (variables on an ``excluded`` axis)."""
    ids = np.asarray(list(data.excluded), dtype=object)
    reasons = np.asarray(list(data.excluded.values()), dtype=object)
    return member.assign(
        excluded_profile_id=("excluded", ids, {"long_name": "profiles left out of training"}),
        excluded_reason=("excluded", reasons, {"long_name": "why the profile was left out"}),
    )
