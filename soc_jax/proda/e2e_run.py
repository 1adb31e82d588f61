"""``soc-jax train --end-to-end``: PRODA's network trained through the steady state.

`train_end_to_end` reads ``profiles.nc``, ``forcing.nc``, ``covariates.nc`` and ``grid.nc``
(scaling bounds) from ``--data`` and writes, into ``--out``, the same files as the two-stage
``soc-jax train`` (`soc_jax.proda.train_run`): ``network.eqx`` (+ ``.json``; read by ``soc-jax
predict``, which applies the stored ``link``), a resumable ``checkpoint.eqx`` (end-to-end
format), ``training.nc``, ``recovery.png`` / ``recovery.json`` (when ``--data`` has the
synthetic ``truth.nc``) and ``summary.txt``. The options are parsed and checked by
`soc_jax.proda.cli`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import time

import numpy as np
import xarray as xr

from ..data import (
    covariate_bounds,
    dataset_to_forcing,
    minmax_scale,
    pad_observations,
    read_profiles,
)
from ..data.covariates import covariate_matrix
from . import end_to_end as e2e
from .outputs import add_heldout, epochs_text, member_dataset, write_recovery, write_summary
from .steps import (
    check_resume,
    holdout_rows,
    loop_options,
    network_header,
    read_dataset,
    resume_ensemble,
    select_members,
)
from .train import member_splits, recovery_table

__all__ = ["train_end_to_end"]


@dataclasses.dataclass
class _Profiles:
    """The observed profiles of ``--data`` and which of them training can use."""

    prof: xr.Dataset  # profiles Dataset (profile, layer)
    frc: xr.Dataset  # forcing Dataset (profile, ...)
    cov: xr.Dataset  # covariates Dataset (profile, covariate)
    grid: xr.Dataset  # grid Dataset with ``covariates`` (scaling bounds)
    model: str
    ids: np.ndarray  # (n,) profile ids
    vmin: np.ndarray
    vmax: np.ndarray
    X: np.ndarray  # (n, 60) scaled covariates
    keep: np.ndarray  # rows usable for training
    dropped: list[str]  # ids left out
    lines: list[str]  # why they were left out (and the prior pull)


def train_end_to_end(args: argparse.Namespace, paths: dict[str, str]) -> int:
    """Train PRODA's network through the steady state on the observed profiles of ``--data``
    (``paths``: its profiles, forcing, covariates and grid files)."""
    parser = args._parser
    files = {f"{k}.nc": ("--data", paths[k]) for k in ("profiles", "forcing", "covariates", "grid")}
    if args.prior is not None:
        files["prior"] = ("--prior", args.prior)
    inputs = check_resume(parser, args, files)
    d = _read_profiles(parser, args, paths)
    train_rows, hold, hold_line = _split(parser, args, d)
    from ..models import get_model

    names = [str(x) for x in get_model(d.model).PARAMETERS.names]
    cfg = _e2e_config(args, d.model, e2e.default_mode(d.model))
    data = _training_data(parser, args, d, names, cfg)
    # members see the training rows only; their validation rows are drawn from them and are
    # disjoint from their own training rows (three disjoint sets: train, validation, held out)
    tr, va, kinds = member_splits(
        train_rows, args.ensemble, args.bootstrap, split=args.split, seed=args.seed
    )
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.eqx")
    extra = {
        **network_header(
            d.model,
            cfg.mode,
            kinds,
            names,
            d.vmin,
            d.vmax,
            d.ids[d.keep][train_rows],
            d.ids[d.keep][hold],
        ),
        "dropped_profile_id": d.dropped,
        "holdout_kind": args.holdout_kind if len(hold) else "none",
        "holdout_block_deg": args.holdout_block,
        "seed": args.seed,
        "inputs": inputs,
    }
    if args.resume:
        ens = resume_ensemble(parser, ckpt, cfg, kinds, e2e.load_e2e_checkpoint, extra)
    else:
        ens = e2e.new_e2e_ensemble(d.X.shape[1], tr, va, cfg, seed=args.seed)
    t0 = time.perf_counter()
    ens = e2e.train_e2e(ens, data, cfg, checkpoint=ckpt, extra=extra, progress=True)
    wall = time.perf_counter() - t0
    extra["train_seconds_this_run"] = wall
    # homogeneous configuration for `soc-jax predict`: mean prediction on the training rows
    p_all, sd_all = e2e.predict_normalized(ens.best_models, np.asarray(data.X), cfg)
    seeds = np.array([k == "seed" for k in kinds])
    p_seed = p_all[seeds].mean(axis=0)
    extra["homogeneous"] = p_seed[train_rows].mean(axis=0).tolist()
    e2e.export_network(os.path.join(args.out, "network.eqx"), ens, cfg, extra)
    nse = _heldout_nse(args, d, ens, cfg, seeds, data, hold)
    lines = _summary_lines(args, d, cfg, ens.state, kinds, (train_rows, hold, hold_line), wall)
    lines.append(
        f"held-out pooled NSE of layer SOC: {nse['nse']:.3f} ({nse['n_profiles']} "
        f"profiles, {nse['n_failed_profiles']} failed)"
    )
    hold_ids = d.ids[d.keep][hold]
    lines += _truth_recovery(args, list(hold_ids), p_seed[hold], names)
    heldout = {}
    if sd_all is not None:
        sd = sd_all[seeds].mean(axis=0)[hold]
        heldout["heldout_logit_sd"] = (sd, "posterior sd of logit(p), mean over seeds")
    heldout["heldout_pred"] = (p_seed[hold], "held-out normalized parameters, mean over seeds")
    member = _member_record(args, d, ens.state, kinds, nse, len(hold))
    member = add_heldout(member, names, hold_ids, heldout)
    member.to_netcdf(os.path.join(args.out, "training.nc"), engine="netcdf4")
    write_summary(args.out, lines, "network.eqx, checkpoint.eqx, training.nc, summary.txt")
    return 0


def _split(parser, args, d: _Profiles):
    """``--holdout`` rows of the usable profiles (spatial: their lat, lon in profiles.nc)."""
    coords = d.prof[["profile_id", "lat", "lon"]] if "lat" in d.prof and "lon" in d.prof else None
    train_rows, hold, hold_line = holdout_rows(parser, args, d.ids[d.keep], coords, (d.cov, d.grid))
    print(hold_line)
    if len(train_rows) < 10:
        parser.error(f"--data: only {len(train_rows)} training profiles (need >= 10)")
    return train_rows, hold, hold_line


def _training_data(parser, args, d: _Profiles, names: list[str], cfg) -> e2e.E2EData:
    """Covariates, forcing, observations (and ``--prior``'s pull) of the usable profiles."""
    prior = _prior_pull(parser, args, d, names)
    return e2e.make_data(
        d.model,
        d.X[d.keep],
        dataset_to_forcing(d.frc.isel(profile=d.keep)),
        pad_observations(d.prof.isel(profile=d.keep), args.width),
        mode=cfg.mode,
        **prior,
        dtype=cfg.jdtype,
    )


def _read_profiles(parser, args, paths) -> _Profiles:
    """Read ``--data``, check that its files list the same profiles, and keep the usable ones."""
    prof = read_profiles(paths["profiles"], validate=False)
    frc = read_dataset(paths["forcing"])
    cov = read_dataset(paths["covariates"])
    grid = read_dataset(paths["grid"], ["covariates"])
    found = re.search(r"model (clm5|compas)\b", str(prof.attrs.get("source", "")))
    model = args.model or prof.attrs.get("model") or (found.group(1) if found else "clm5")
    if model not in ("clm5", "compas"):
        parser.error(f"--model: unknown model {model!r}")
    ids = prof["profile_id"].values.astype(str)
    f_ids = frc["profile_id"].values.astype(str)
    c_ids = cov["profile_id"].values.astype(str)
    if list(f_ids) != list(ids) or list(c_ids) != list(ids):
        parser.error("--data: profiles, forcing and covariates must list the same profile_id")
    vmin, vmax = covariate_bounds(grid)
    X_all = minmax_scale(covariate_matrix(cov), vmin, vmax)
    mask = prof["mask"].values.astype(bool)
    soc = np.where(mask, prof["soc"].values, 1.0)
    good = np.all(np.isfinite(X_all), 1) & (mask.sum(1) >= 1) & np.all(soc > 0, 1)
    if mask.sum(1).max() > args.width:
        parser.error(f"--width: profiles have up to {mask.sum(1).max()} layers")
    lines = _drop_lines(X_all, mask, soc)
    print("\n".join(lines))
    keep = np.flatnonzero(good)
    if len(keep) == 0:
        parser.error(f"--data: no usable profile ({len(ids)} read, all left out, see above)")
    dropped = ids[~good].tolist()
    return _Profiles(prof, frc, cov, grid, model, ids, vmin, vmax, X_all, keep, dropped, lines)


def _drop_lines(X, mask, soc) -> list[str]:
    """One line per reason a profile is left out of end-to-end training (none: one line)."""
    n = len(X)
    reasons = (
        ("non-finite covariates", ~np.all(np.isfinite(X), 1)),
        ("no observed layer", mask.sum(1) < 1),
        ("observed SOC not positive or not finite", ~np.all(soc > 0, 1)),
    )
    used = ~np.any([r for _, r in reasons], axis=0)
    lines = [f"profiles: {int(used.sum())} of {n} usable"]
    lines += [f"  left out: {int(r.sum())} profiles: {t}" for t, r in reasons if r.any()]
    return lines


def _prior_pull(parser, args, d: _Profiles, names: list[str]) -> dict:
    """``prior_mean``, ``prior_sd``, ``prior_w`` of the training rows from ``--prior``'s
    usable posteriors (None without ``--prior``); its line goes to ``d.lines``."""
    if args.prior is None:
        return {"prior_mean": None, "prior_sd": None, "prior_w": None}
    from .targets import select_targets

    post = read_dataset(args.prior)
    if "para_summary_mean" not in post:
        parser.error(f"--prior: {args.prior} has no para_summary_mean")
    p_ids = post["profile_id"].values.astype(str)
    pos = {p: i for i, p in enumerate(p_ids)}
    prior_mean = np.full((len(d.ids), len(names)), 0.5)
    prior_sd = np.ones((len(d.ids), len(names)))
    prior_w = np.zeros(len(d.ids))
    pm = post["para_summary_mean"].transpose("profile", "parameter").values
    ps = post["para_summary_std"].transpose("profile", "parameter").values
    usable = select_targets(post, pm, site_filter=not args.no_site_filter).use
    for i, pid in enumerate(d.ids):
        j = pos.get(pid)
        if j is not None and usable[j] and np.all(np.isfinite(ps[j])) and np.all(ps[j] > 0):
            prior_mean[i], prior_sd[i], prior_w[i] = pm[j], ps[j], 1.0
    keep = d.keep
    line = (
        f"prior pull: {int(prior_w[keep].sum())} of {len(keep)} profiles have a usable posterior "
        f"in --prior (skipped, failed and, with the site filter, unconverged ones have none)"
    )
    d.lines.append(line)
    print(line)
    return {"prior_mean": prior_mean[keep], "prior_sd": prior_sd[keep], "prior_w": prior_w[keep]}


def _e2e_config(args, model: str, mode: str) -> e2e.E2EConfig:
    return e2e.E2EConfig(
        model=model,
        mode=mode,
        link=args.link,
        misfit=args.misfit,
        sigma=args.sigma,
        variational=args.variational,
        n_samples=args.samples,
        smoothness=args.smoothness,
        prior_weight=args.prior_weight if args.prior is not None else 0.0,
        dropout=args.dropout or 0.0,
        **loop_options(args),
    )


def _heldout_nse(args, d: _Profiles, ens, cfg, seeds, data, hold) -> dict:
    """Pooled NSE of layer SOC on the held-out profiles, mean over the seed members (with
    ``--variational``: at the posterior median, the exported mean head)."""
    from .predict import heldout_nse

    seed_models = select_members(ens.best_models, seeds)
    if cfg.variational:
        from .train import load_checkpoint

        exported, _, _ = load_checkpoint(os.path.join(args.out, "network.eqx"))
        seed_models = select_members(exported.best_models, seeds)
    rows = d.keep[hold]
    return heldout_nse(
        d.model,
        seed_models,
        np.asarray(data.X)[hold],
        dataset_to_forcing(d.frc.isel(profile=rows)),
        pad_observations(d.prof.isel(profile=d.keep).isel(profile=hold), args.width),
        mode=cfg.mode,
        link=cfg.link,
    )


def _summary_lines(args, d, cfg, st, kinds, split, wall) -> list[str]:
    train_rows, hold, hold_line = split
    return [
        f"end-to-end PRODA ({d.model}, {'variational' if cfg.variational else 'point'}, link "
        f"{cfg.link}, misfit {cfg.misfit}): {len(kinds)} members ({args.ensemble} seeds, "
        f"{args.bootstrap} bootstraps), {len(train_rows)} training profiles, {len(hold)} held "
        f"out, {len(d.dropped)} left out (see below)",
        *d.lines,
        hold_line,
        f"{epochs_text(st)}; best validation misfit median {float(np.median(st.best_val)):.4g}; "
        f"failed fraction (last epoch) {float(np.mean(st.failed_fraction)):.4f}; "
        f"wall {wall:.1f} s",
    ]


def _member_record(args, d: _Profiles, st, kinds, nse: dict, n_hold: int):
    """``training.nc``'s per-member record, with the end-to-end run's attributes."""
    attrs = {
        "model": d.model,
        "end_to_end": 1,
        "heldout_nse": nse["nse"],
        "holdout_kind": args.holdout_kind,
        "holdout_block_deg": float(args.holdout_block),
        "n_heldout": n_hold,
        "n_left_out": len(d.dropped),
        "left_out_reasons": "; ".join(d.lines),
    }
    return member_dataset(st, kinds, what="misfit", attrs=attrs, failed=True)


def _truth_recovery(args, ids, pred, names) -> list[str]:
    """Held-out recovery against the synthetic world's ``truth.nc`` (``recovery.json``,
    ``recovery.png``, summary lines); no such file or no held-out profile in it: nothing."""
    path = os.path.join(args.data, "truth.nc")
    if not os.path.exists(path):
        return []
    truth = read_dataset(path)
    t_ids = np.asarray(truth["profile_id"].values).astype(str)
    pos = {p: i for i, p in enumerate(t_ids)}
    rows = [i for i, p in enumerate(ids) if p in pos]
    if len(rows) < len(ids):
        print(f"recovery vs truth: {len(ids) - len(rows)} held-out profiles are not in {path}")
    if not rows:
        return []
    tr = truth["p"].transpose(..., "parameter").values[[pos[ids[i]] for i in rows]]
    table = recovery_table(pred[rows], tr, names)
    title = "held-out recovery vs truth (normalized parameters)"
    return write_recovery(args.out, table, pred[rows], tr, names, title)
