"""``soc-jax train --end-to-end``: PRODA's network trained through the steady state.

Reads ``profiles.nc``, ``forcing.nc``, ``covariates.nc`` and ``grid.nc`` (scaling bounds) from
``--data`` and writes, into ``--out``, the same files as the two-stage ``soc-jax train``:
``network.eqx`` (+ ``.json``; read by ``soc-jax predict``, which applies the stored ``link``),
a resumable ``checkpoint.eqx`` (end-to-end format), ``training.nc``, ``recovery.png`` /
``recovery.json`` (when ``--data`` has the synthetic ``truth.nc``) and ``summary.txt``.
This module imports nothing heavy at import time (``soc-jax --help`` stays light).
"""

from __future__ import annotations

import argparse
import json
import os


def add_arguments(t) -> None:
    """The ``--end-to-end`` options of ``soc-jax train`` (shared options keep their meaning)."""
    g = t.add_argument_group("end-to-end training (--end-to-end)")
    g.add_argument(
        "--end-to-end",
        action="store_true",
        help="train the network through the steady state on the observed profiles of --data "
        "(profiles.nc, forcing.nc, covariates.nc, grid.nc); no calibration stage",
    )
    g.add_argument("--variational", action="store_true", help="amortised posterior (ELBO)")
    g.add_argument("--link", choices=("sigmoid", "clip"), default="sigmoid", help="output link")
    g.add_argument(
        "--misfit", choices=("log", "proda"), default="log", help="log-SOC NLL or PRODA's cost"
    )
    g.add_argument("--sigma", type=float, default=0.2, help="log-SOC noise sd (default 0.2)")
    g.add_argument("--samples", type=int, default=4, help="ELBO draws per profile (default 4)")
    g.add_argument("--smoothness", type=float, default=0.0, help="covariate smoothness weight")
    g.add_argument(
        "--prior",
        default=None,
        help="calibration posterior.nc: pull toward its para_summary_mean/std (--prior-weight)",
    )
    g.add_argument("--prior-weight", type=float, default=1.0, help="weight of the prior pull")
    g.add_argument("--width", type=int, default=12, help="observation slots per profile (12)")


def _truth_recovery(args, ids, pred, names):
    import numpy as np
    import xarray as xr

    path = os.path.join(args.data, "truth.nc")
    if not os.path.exists(path):
        return None, None
    with xr.open_dataset(path) as f:
        truth = f.load()
    t_ids = np.asarray(truth["profile_id"].values).astype(str)
    pos = {p: i for i, p in enumerate(t_ids)}
    rows = [i for i, p in enumerate(ids) if p in pos]
    if len(rows) < len(ids):
        print(f"recovery vs truth: {len(ids) - len(rows)} held-out profiles are not in {path}")
    if not rows:
        return None, None
    tr = truth["p"].transpose(..., "parameter").values[[pos[ids[i]] for i in rows]]
    from .train import recovery_table

    return recovery_table(pred[rows], tr, names), (pred[rows], tr)


def _drop_lines(X, mask, soc) -> list[str]:
    """One line per reason a profile is left out of end-to-end training (none: one line)."""
    import numpy as np

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


def run_train_e2e(args: argparse.Namespace) -> int:
    """Entry point of ``soc-jax train --end-to-end``."""
    parser = args._parser
    if args.ensemble < 1:
        parser.error("--ensemble must be >= 1 (seed members give the best guess)")
    if args.bootstrap < 0:
        parser.error(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0.0 < args.holdout < 0.9:
        parser.error(f"--holdout must be in (0, 0.9) with --end-to-end, got {args.holdout}")
    for flag, v in (
        ("--epochs", args.epochs),
        ("--patience", args.patience),
        ("--batch-size", args.batch_size),
        ("--epochs-per-call", args.epochs_per_call),
        ("--samples", args.samples),
        ("--width", args.width),
    ):
        if v < 1:
            parser.error(f"{flag} must be >= 1, got {v}")
    for flag, v in (("--learning-rate", args.learning_rate), ("--sigma", args.sigma)):
        if v <= 0:
            parser.error(f"{flag} must be > 0, got {v}")
    if args.smoothness < 0 or args.prior_weight < 0:
        parser.error("--smoothness and --prior-weight must be >= 0")
    if args.variational and args.link != "sigmoid":
        parser.error("--link: the variational posterior needs --link sigmoid")
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
        assert all(h > 0 for h in hidden)
    except (ValueError, AssertionError):
        parser.error(f"--hidden must be comma-separated positive integers, got {args.hidden!r}")
    paths = {}
    for name in ("profiles", "forcing", "covariates", "grid"):
        paths[name] = os.path.join(args.data, f"{name}.nc")
        if not os.path.exists(paths[name]):
            parser.error(f"--data: {paths[name]} not found")
    if args.prior is not None and not os.path.exists(args.prior):
        parser.error(f"--prior: {args.prior} not found")

    import time

    import jax
    import numpy as np
    import xarray as xr

    jax.config.update("jax_enable_x64", True)
    from ..data import (
        covariate_bounds,
        dataset_to_forcing,
        minmax_scale,
        pad_observations,
        read_profiles,
    )
    from ..data.covariates import _matrix
    from . import end_to_end as e2e
    from .predict import heldout_nse
    from .train import member_splits

    prof = read_profiles(paths["profiles"], validate=False)
    with xr.open_dataset(paths["forcing"]) as f:
        frc = f.load()
    with xr.open_dataset(paths["covariates"]) as f:
        cov = f.load()
    with xr.open_dataset(paths["grid"]) as f:
        grid = f[["covariates"]].load()
    import re

    found = re.search(r"model (clm5|compas)\b", str(prof.attrs.get("source", "")))
    model = args.model or prof.attrs.get("model") or (found.group(1) if found else "clm5")
    if model not in ("clm5", "compas"):
        parser.error(f"--model: unknown model {model!r}")
    mode = e2e.default_mode(model)
    ids = prof["profile_id"].values.astype(str)
    f_ids = frc["profile_id"].values.astype(str)
    c_ids = cov["profile_id"].values.astype(str)
    if list(f_ids) != list(ids) or list(c_ids) != list(ids):
        parser.error("--data: profiles, forcing and covariates must list the same profile_id")
    vmin, vmax = covariate_bounds(grid)
    X_all = minmax_scale(_matrix(cov), vmin, vmax)
    mask = prof["mask"].values.astype(bool)
    soc = np.where(mask, prof["soc"].values, 1.0)
    good = np.all(np.isfinite(X_all), 1) & (mask.sum(1) >= 1) & np.all(soc > 0, 1)
    if mask.sum(1).max() > args.width:
        parser.error(f"--width: profiles have up to {mask.sum(1).max()} layers")
    keep = np.flatnonzero(good)
    dropped = ids[~good].tolist()
    drop_lines = _drop_lines(X_all, mask, soc)
    print("\n".join(drop_lines))
    n = len(keep)
    if n == 0:
        parser.error(f"--data: no usable profile ({len(ids)} read, all left out, see above)")
    from .cli import holdout_rows

    coords = prof[["profile_id", "lat", "lon"]] if "lat" in prof and "lon" in prof else None
    train_rows, hold, hold_line = holdout_rows(parser, args, ids[keep], coords, (cov, grid))
    n_hold = len(hold)
    print(hold_line)
    if len(train_rows) < 10:
        parser.error(f"--data: only {len(train_rows)} training profiles (need >= 10)")
    from ..models import get_model

    names = [str(x) for x in get_model(model).PARAMETERS.names]
    prior_mean = prior_sd = None
    prior_w = None
    if args.prior is not None:
        with xr.open_dataset(args.prior) as f:
            post = f.load()
        if "para_summary_mean" not in post:
            parser.error(f"--prior: {args.prior} has no para_summary_mean")
        p_ids = post["profile_id"].values.astype(str)
        pos = {p: i for i, p in enumerate(p_ids)}
        prior_mean = np.full((len(ids), len(names)), 0.5)
        prior_sd = np.ones((len(ids), len(names)))
        prior_w = np.zeros(len(ids))
        pm = post["para_summary_mean"].transpose("profile", "parameter").values
        ps = post["para_summary_std"].transpose("profile", "parameter").values
        from .targets import select_targets

        usable = select_targets(post, pm, site_filter=not args.no_site_filter).use
        for i, pid in enumerate(ids):
            j = pos.get(pid)
            if j is not None and usable[j] and np.all(np.isfinite(ps[j])) and np.all(ps[j] > 0):
                prior_mean[i], prior_sd[i], prior_w[i] = pm[j], ps[j], 1.0
        prior_mean, prior_sd, prior_w = prior_mean[keep], prior_sd[keep], prior_w[keep]
        prior_line = (
            f"prior pull: {int(prior_w.sum())} of {n} profiles have a usable posterior in "
            f"--prior (skipped, failed and, with the site filter, unconverged ones have none)"
        )
        drop_lines.append(prior_line)
        print(prior_line)
    sub = prof.isel(profile=keep)
    obs = pad_observations(sub, args.width)
    dtype = args.dtype
    cfg = e2e.E2EConfig(
        model=model,
        mode=mode,
        link=args.link,
        misfit=args.misfit,
        sigma=args.sigma,
        variational=args.variational,
        n_samples=args.samples,
        smoothness=args.smoothness,
        prior_weight=args.prior_weight if args.prior is not None else 0.0,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        hidden=hidden,
        dropout=args.dropout or 0.0,
        dtype=dtype,
        epochs_per_call=args.epochs_per_call,
    )
    data = e2e.make_data(
        model,
        X_all[keep],
        dataset_to_forcing(frc.isel(profile=keep)),
        obs,
        mode=mode,
        prior_mean=prior_mean,
        prior_sd=prior_sd,
        prior_w=prior_w,
        dtype=cfg.jdtype,
    )
    # members see the training rows only; their validation rows are drawn from them and are
    # disjoint from their own training rows (three disjoint sets: train, validation, held out)
    tr, va, kinds = member_splits(
        train_rows, args.ensemble, args.bootstrap, split=args.split, seed=args.seed
    )
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.eqx")
    extra = {
        "model": model,
        "mode": mode,
        "kinds": kinds,
        "parameter_names": names,
        "vmin": vmin.tolist(),
        "vmax": vmax.tolist(),
        "train_profile_id": ids[keep][train_rows].tolist(),
        "holdout_profile_id": ids[keep][hold].tolist(),
        "dropped_profile_id": dropped,
        "holdout_kind": args.holdout_kind if n_hold else "none",
        "holdout_block_deg": args.holdout_block,
        "seed": args.seed,
    }
    if args.resume:
        if not os.path.exists(ckpt):
            parser.error(f"--resume: no checkpoint at {ckpt}")
        try:
            ens, old_cfg, header = e2e.load_e2e_checkpoint(ckpt)
        except ValueError as err:
            parser.error(f"--resume: {err}")
        import dataclasses

        if (
            dataclasses.replace(old_cfg, max_epochs=cfg.max_epochs) != cfg
            or header.get("kinds") != kinds
        ):
            parser.error(
                "--resume: the checkpoint was made with different settings (only --epochs may "
                "change)"
            )
        st = ens.state
        stopped = (st.wait >= cfg.patience) | (st.epoch >= cfg.max_epochs)
        ens = dataclasses.replace(ens, state=dataclasses.replace(st, stopped=stopped))
        print(f"resuming at epoch {header['epochs_done']}")
    else:
        ens = e2e.new_e2e_ensemble(X_all.shape[1], tr, va, cfg, seed=args.seed)
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
    st = ens.state
    lines = [
        f"end-to-end PRODA ({model}, {'variational' if cfg.variational else 'point'}, link "
        f"{cfg.link}, misfit {cfg.misfit}): {len(kinds)} members ({args.ensemble} seeds, "
        f"{args.bootstrap} bootstraps), {len(train_rows)} training profiles, {n_hold} held "
        f"out, {len(dropped)} left out (see below)",
        *drop_lines,
        hold_line,
        f"epochs run: median {int(np.median(st.epoch))}, max {int(np.max(st.epoch))}; best "
        f"validation misfit median {float(np.median(st.best_val)):.4g}; failed fraction (last "
        f"epoch) {float(np.mean(st.failed_fraction)):.4f}; wall {wall:.1f} s",
    ]
    import equinox as eqx

    seed_models = jax.tree.map(lambda a: a[seeds] if eqx.is_array(a) else a, ens.best_models)
    if cfg.variational:  # NSE at the posterior median: the exported mean head
        from .train import load_checkpoint

        exported, _, _ = load_checkpoint(os.path.join(args.out, "network.eqx"))
        seed_models = jax.tree.map(
            lambda a: a[seeds] if eqx.is_array(a) else a, exported.best_models
        )
    res_nse = heldout_nse(
        model,
        seed_models,
        np.asarray(data.X)[hold],
        dataset_to_forcing(frc.isel(profile=keep[hold])),
        pad_observations(sub.isel(profile=hold), args.width),
        mode=mode,
        link=cfg.link,
    )
    lines.append(
        f"held-out pooled NSE of layer SOC: {res_nse['nse']:.3f} ({res_nse['n_profiles']} "
        f"profiles, {res_nse['n_failed_profiles']} failed)"
    )
    member = xr.Dataset(
        {
            "best_val": (
                "member",
                np.asarray(st.best_val, float),
                {"long_name": "best validation misfit", "units": "1"},
            ),
            "best_epoch": (
                "member",
                np.asarray(st.best_epoch),
                {"long_name": "epoch of best validation misfit", "units": "1"},
            ),
            "epochs": ("member", np.asarray(st.epoch), {"long_name": "epochs run", "units": "1"}),
            "failed_fraction": (
                "member",
                np.asarray(st.failed_fraction, float),
                {"long_name": "failed steady states, last epoch", "units": "1"},
            ),
        },
        coords={"member": np.arange(len(kinds)), "kind": ("member", np.asarray(kinds, object))},
        attrs={
            "model": model,
            "end_to_end": 1,
            "heldout_nse": res_nse["nse"],
            "holdout_kind": args.holdout_kind,
            "holdout_block_deg": float(args.holdout_block),
            "n_heldout": n_hold,
            "n_left_out": len(dropped),
            "left_out_reasons": "; ".join(drop_lines),
        },
    )
    hold_ids = ids[keep][hold]
    table, pair = _truth_recovery(args, list(hold_ids), p_seed[hold], names)
    if table is not None:
        lines.append("held-out recovery vs truth (normalized parameters): name R2 RMSE")
        for r in table:
            r2 = "   -  " if r["r2"] is None else f"{r['r2']:6.3f}"
            lines.append(f"  {r['parameter']:<16} {r2} {r['rmse']:.4f}")
        with open(os.path.join(args.out, "recovery.json"), "w") as f:
            json.dump(table, f, indent=1)
        from .cli import _recovery_figure

        _recovery_figure(pair[0], pair[1], names, os.path.join(args.out, "recovery.png"))
    if sd_all is not None:
        member["heldout_logit_sd"] = (
            ("heldout", "parameter"),
            sd_all[seeds].mean(axis=0)[hold],
            {"long_name": "posterior sd of logit(p), mean over seeds", "units": "1"},
        )
    member["heldout_pred"] = (
        ("heldout", "parameter"),
        p_seed[hold],
        {"long_name": "held-out normalized parameters, mean over seeds", "units": "1"},
    )
    member = member.assign_coords(
        parameter=np.asarray(names, dtype=object),
        heldout_id=("heldout", hold_ids.astype(object)),
    )
    member.to_netcdf(os.path.join(args.out, "training.nc"), engine="netcdf4")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote network.eqx, checkpoint.eqx, training.nc, summary.txt to {args.out}")
    return 0
