"""``soc-jax train`` and ``soc-jax predict``: PRODA's network and global prediction (SPEC 7, 8).

``train`` fits the seed and bootstrap members as one vmapped program on a table of (profile,
covariates, normalized parameters) and writes ``network.eqx`` (+ ``.json`` header), a resumable
``checkpoint.eqx``, ``training.nc``, ``recovery.png`` and ``summary.txt`` to ``--out``.
``predict`` reads that network and a data directory with ``grid.nc`` (and, for the held-out
NSE, ``profiles.nc`` + ``forcing.nc`` + ``covariates.nc``) and writes ``maps.nc``,
``totals.json``, PNG figures and ``summary.txt`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

_HELP_TRAIN = (
    "Train PRODA's network (60 covariates -> normalized parameters; Keras' Adadelta, batch 32, "
    "early stopping) as seeds + bootstraps in one vmapped program."
)
_HELP_PREDICT = (
    "Predict parameters on the grid with a trained network, run the steady state per cell, "
    "and write SOC maps, Pg C totals with bootstrap uncertainty and figures."
)


def register(subparsers) -> None:
    """Add the ``train`` and ``predict`` sub-commands to the ``soc-jax`` parser."""
    t = subparsers.add_parser("train", help=_HELP_TRAIN, description=_HELP_TRAIN)
    t.add_argument(
        "--targets",
        default=None,
        help="NetCDF of normalized target parameters (profile, parameter) with profile_id: "
        "the synthetic world's truth.nc or a calibration posterior.nc (required, except with "
        "--end-to-end, which trains on the observed profiles themselves)",
    )
    t.add_argument(
        "--target-var",
        default=None,
        help="target variable (default: the first of p (truth.nc), p_mean, posterior_mean, "
        "para_summary_mean (posterior.nc))",
    )
    t.add_argument(
        "--no-site-filter",
        action="store_true",
        help="train on every profile with a valid posterior, converged or not (default: only "
        "profiles passing PRODA's site filter, filter_pass of posterior.nc); skipped and "
        "failed profiles are never targets",
    )
    t.add_argument("--data", required=True, help="directory with covariates.nc and grid.nc")
    t.add_argument(
        "--model", choices=("clm5", "compas"), default=None, help="default: targets' attr"
    )
    t.add_argument(
        "--out", default="results/proda", help="output directory (default results/proda)"
    )
    t.add_argument("--ensemble", type=int, default=10, help="best-guess seed members (default 10)")
    t.add_argument("--bootstrap", type=int, default=200, help="bootstrap members (default 200)")
    t.add_argument(
        "--holdout",
        type=float,
        default=0.1,
        help="fraction of profiles held out of training for evaluation (default 0.1; 0: none)",
    )
    t.add_argument(
        "--holdout-kind",
        choices=("spatial", "random"),
        default="spatial",
        help="held-out profiles: whole lat-lon blocks (spatial, default) or a random draw",
    )
    t.add_argument(
        "--holdout-block",
        type=float,
        default=30.0,
        help="block size of the spatial hold-out, degrees (default 30)",
    )
    t.add_argument("--epochs", type=int, default=6000, help="maximum epochs (default 6000)")
    t.add_argument("--patience", type=int, default=1200, help="early-stopping patience (1200)")
    t.add_argument("--learning-rate", type=float, default=1e-3, help="Adadelta lr (Keras 1e-3)")
    t.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    t.add_argument("--dropout", type=float, default=None, help="default 0 (clm5) / 0.2 (compas)")
    t.add_argument(
        "--split",
        choices=("shuffled", "keras"),
        default="shuffled",
        help="validation rows: shuffled 10 %% (default) or Keras' last 10 %%",
    )
    t.add_argument("--hidden", default="256,512,512,256", help="hidden widths (PRODA's default)")
    t.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    t.add_argument("--epochs-per-call", type=int, default=10, help="epochs per compiled call")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.eqx")
    from .e2e_cli import add_arguments as _add_e2e

    _add_e2e(t)
    t.set_defaults(func=run_train, _parser=t)

    p = subparsers.add_parser("predict", help=_HELP_PREDICT, description=_HELP_PREDICT)
    p.add_argument("--network", required=True, help="output directory of `soc-jax train`")
    p.add_argument("--data", required=True, help="directory with grid.nc (synthetic world layout)")
    p.add_argument("--out", default="results/proda_maps", help="output directory")
    p.add_argument("--mode", default=None, help="steady-state mode (default: the network's)")
    p.add_argument("--block", type=int, default=1024, help="cells per compiled call (1024)")
    p.add_argument("--no-default", action="store_true", help="skip CLM5's default parameters")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=run_predict, _parser=p)


def _need(parser, flag: str, path: str) -> str:
    if not os.path.exists(path):
        parser.error(f"{flag}: {path} not found")
    return path


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``soc-jax train`` (``--end-to-end``: `soc_jax.proda.e2e_cli`)."""
    parser = args._parser
    if getattr(args, "end_to_end", False):
        from .e2e_cli import run_train_e2e

        return run_train_e2e(args)
    if args.targets is None:
        parser.error("--targets is required (unless --end-to-end)")
    for flag, v in (("--ensemble", args.ensemble), ("--bootstrap", args.bootstrap)):
        if v < 0:
            parser.error(f"{flag} must be >= 0, got {v}")
    if args.ensemble < 1:
        parser.error("--ensemble must be >= 1 (seed members give the best guess)")
    if not 0.0 <= args.holdout < 0.9:
        parser.error(f"--holdout must be in [0, 0.9), got {args.holdout}")
    for flag, v in (
        ("--epochs", args.epochs),
        ("--patience", args.patience),
        ("--batch-size", args.batch_size),
        ("--epochs-per-call", args.epochs_per_call),
    ):
        if v < 1:
            parser.error(f"{flag} must be >= 1, got {v}")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    try:
        hidden = tuple(int(h) for h in args.hidden.split(","))
        assert all(h > 0 for h in hidden)
    except (ValueError, AssertionError):
        parser.error(f"--hidden must be comma-separated positive integers, got {args.hidden!r}")
    _need(parser, "--targets", args.targets)
    cov_path = _need(parser, "--data", os.path.join(args.data, "covariates.nc"))
    grid_path = _need(parser, "--data", os.path.join(args.data, "grid.nc"))

    import jax
    import numpy as np
    import xarray as xr

    jax.config.update("jax_enable_x64", True)
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

    with xr.open_dataset(args.targets) as f:
        targets = f.load()
    with xr.open_dataset(cov_path) as f:
        cov = f.load()
    with xr.open_dataset(grid_path) as f:
        grid = f[["covariates"]].load()
    model = args.model or targets.attrs.get("model", "clm5")
    if model not in ("clm5", "compas"):
        parser.error(f"--model: unknown model {model!r}")
    mode = targets.attrs.get("mode") or ("proda" if model == "clm5" else "documented")
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
    train_rows, hold, hold_line = _holdout(parser, args, data.profile_id, targets, cov, grid)
    print(hold_line)
    if len(train_rows) < 10:
        parser.error(
            f"--targets: only {len(train_rows)} training profiles (need >= 10; "
            f"{_counts_text(data)}, {len(hold)} held out); {_hint(data)}"
        )
    X, Y = data.X[train_rows], data.Y[train_rows]
    dropout = args.dropout if args.dropout is not None else (0.0 if model == "clm5" else 0.2)
    cfg = TrainConfig(
        loss=model,
        dropout=dropout,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.learning_rate,
        dtype=args.dtype,
        epochs_per_call=args.epochs_per_call,
        hidden=hidden,
    )
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.eqx")
    tr, va, kinds = member_splits(
        len(X), args.ensemble, args.bootstrap, split=args.split, seed=args.seed
    )
    extra = {
        "model": model,
        "mode": mode,
        "kinds": kinds,
        "parameter_names": data.parameter_names,
        "vmin": data.vmin.tolist(),
        "vmax": data.vmax.tolist(),
        "train_profile_id": data.profile_id[train_rows].tolist(),
        "holdout_profile_id": data.profile_id[hold].tolist(),
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
    if args.resume:
        if not os.path.exists(ckpt):
            parser.error(f"--resume: no checkpoint at {ckpt}")
        ens, old_cfg, header = load_checkpoint(ckpt)
        same = dataclasses.replace(old_cfg, max_epochs=cfg.max_epochs) == cfg
        if not same or header.get("kinds") != kinds:
            parser.error(
                "--resume: the checkpoint was made with different settings "
                "(only --epochs may change)"
            )
        # --epochs may grow: members stopped only by the old epoch limit run on
        st = ens.state
        stopped = (st.wait >= cfg.patience) | (st.epoch >= cfg.max_epochs)
        ens = dataclasses.replace(ens, state=dataclasses.replace(st, stopped=stopped))
        print(f"resuming at epoch {header['epochs_done']}")
    else:
        ens = new_ensemble(X.shape[1], Y.shape[1], tr, va, cfg, seed=args.seed)
        save_checkpoint(ckpt, ens, cfg, extra)
    import time

    t0 = time.perf_counter()
    ens = train_ensemble(ens, X, Y, cfg, checkpoint=ckpt, progress=True)
    wall = time.perf_counter() - t0
    extra["train_seconds_this_run"] = wall
    save_checkpoint(os.path.join(args.out, "network.eqx"), ens, cfg, extra)
    save_checkpoint(ckpt, ens, cfg, extra)

    st = ens.state
    n_hold = len(hold)
    lines = [
        f"PRODA network ({model}): {len(kinds)} members ({args.ensemble} seeds, "
        f"{args.bootstrap} bootstraps), {len(train_rows)} training profiles, {n_hold} held out, "
        f"{len(data.dropped)} left out (see below)",
        *report,
        hold_line,
        f"epochs run: median {int(np.median(st.epoch))}, max {int(np.max(st.epoch))}; "
        f"stopped early: {int(np.sum(np.asarray(st.epoch) < args.epochs))}; best validation "
        f"loss median {float(np.median(st.best_val)):.4g}; wall {wall:.1f} s",
        *never_improved_lines(st, kinds),
    ]
    member = xr.Dataset(
        {
            "best_val": (
                "member",
                np.asarray(st.best_val, float),
                {"long_name": "best validation loss", "units": "1"},
            ),
            "best_epoch": (
                "member",
                np.asarray(st.best_epoch),
                {"long_name": "epoch of best validation loss", "units": "1"},
            ),
            "epochs": ("member", np.asarray(st.epoch), {"long_name": "epochs run", "units": "1"}),
        },
        coords={
            "member": np.arange(len(kinds)),
            "kind": ("member", np.asarray(kinds, dtype=object)),
        },
        attrs={"model": model, **_training_attrs(data, args, n_hold)},
    )
    member = _add_excluded(member, data)
    seeds = np.array([k == "seed" for k in kinds]) & ~never_improved(st)
    if n_hold and seeds.any():
        import equinox as eqx

        from .predict import predict_parameters

        seed_models = jax.tree.map(lambda a: a[seeds] if eqx.is_array(a) else a, ens.best_models)
        pred = predict_parameters(seed_models, data.X[hold]).astype(float).mean(axis=0)
        table = recovery_table(pred, data.Y[hold], data.parameter_names)
        member["heldout_pred"] = (
            ("heldout", "parameter"),
            pred,
            {"long_name": "held-out prediction, mean over seeds", "units": "1"},
        )
        member["heldout_target"] = (
            ("heldout", "parameter"),
            data.Y[hold],
            {"long_name": "held-out target", "units": "1"},
        )
        member = member.assign_coords(
            parameter=np.asarray(data.parameter_names, dtype=object),
            heldout_id=("heldout", data.profile_id[hold].astype(object)),
        )
        lines.append("held-out recovery (normalized parameters): name R2 RMSE")
        for r in table:
            r2 = "   -  " if r["r2"] is None else f"{r['r2']:6.3f}"
            lines.append(f"  {r['parameter']:<16} {r2} {r['rmse']:.4f}")
        with open(os.path.join(args.out, "recovery.json"), "w") as f:
            json.dump(table, f, indent=1)
        _recovery_figure(
            pred, data.Y[hold], data.parameter_names, os.path.join(args.out, "recovery.png")
        )
    member.to_netcdf(os.path.join(args.out, "training.nc"), engine="netcdf4")
    text = "\n".join(lines)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote network.eqx, checkpoint.eqx, training.nc, summary.txt to {args.out}")
    return 0


def usable_members(ens, kinds):
    """Members that improved during training: ``(stacked models, kinds, note or '')``.

    A member whose validation loss never improved (non-finite from the first epoch) holds its
    untrained initial weights; it is left out of the prediction, with a note."""
    import equinox as eqx
    import jax
    import numpy as np

    from .train import never_improved

    bad = never_improved(ens.state)
    if not bad.any():
        return ens.best_models, list(kinds), ""
    keep = np.flatnonzero(~bad)
    models = jax.tree.map(lambda a: a[keep] if eqx.is_array(a) else a, ens.best_models)
    k = np.asarray(kinds)[bad]
    note = (
        f"left out {int(bad.sum())} of {len(kinds)} members that never improved during training "
        f"({int(np.sum(k == 'seed'))} seeds, {int(np.sum(k == 'bootstrap'))} bootstraps: "
        "non-finite validation loss, untrained weights)"
    )
    return models, [kinds[i] for i in keep], note


def bootstrap_cells_line(info: dict) -> str:
    """Which cells the bootstrap totals sum over, and what each member lost."""
    f = info["member_failed_cells"]
    return (
        f"bootstrap totals sum over the {info['n_cells_summed']} of {info['n_cells']} cells where "
        f"every bootstrap member succeeded; {info['cells_left_out']} cells "
        f"({info['area_share_left_out']:.2%} of the area) left out of every member's total; "
        f"failed cells per member: min {min(f)}, median {int(sorted(f)[len(f) // 2])}, max "
        f"{max(f)}"
    )


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


def holdout_rows(parser, args, ids, *sources):
    """(train_rows, hold_rows, line) of ``--holdout`` / ``--holdout-kind`` / ``--holdout-block``
    over the profiles ``ids`` (site coordinates from ``sources``, `site_coordinates`)."""
    from .holdout import describe, random_holdout, site_coordinates, spatial_holdout

    n = len(ids)
    if args.holdout_block <= 0:
        parser.error(f"--holdout-block must be > 0 degrees, got {args.holdout_block}")
    if args.holdout == 0 or args.holdout_kind == "random":
        tr, ho = random_holdout(n, args.holdout, args.seed)
        kind = "random" if args.holdout else "none"
        return tr, ho, describe(kind, n, ho, args.holdout, args.holdout_block)
    coords = site_coordinates(ids, *sources)
    if coords is None:
        parser.error(
            "--holdout-kind spatial: no site coordinates (lat, lon) for the profiles in "
            "--targets, --data/profiles.nc or the covariates' grid_cell; use --holdout-kind random"
        )
    tr, ho, region = spatial_holdout(*coords, args.holdout, args.seed, args.holdout_block)
    line = describe("spatial", n, ho, args.holdout, args.holdout_block, region)
    return tr, ho, line


def _holdout(parser, args, ids, targets, cov, grid):
    import xarray as xr

    prof_path = os.path.join(args.data, "profiles.nc")
    prof = None
    if os.path.exists(prof_path):
        with xr.open_dataset(prof_path) as f:
            prof = f[[v for v in ("profile_id", "lat", "lon") if v in f.variables]].load()
    return holdout_rows(parser, args, ids, targets, prof, (cov, grid))


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
    import numpy as np

    ids = np.asarray(list(data.excluded), dtype=object)
    reasons = np.asarray(list(data.excluded.values()), dtype=object)
    return member.assign(
        excluded_profile_id=("excluded", ids, {"long_name": "profiles left out of training"}),
        excluded_reason=("excluded", reasons, {"long_name": "why the profile was left out"}),
    )


def _recovery_figure(pred, target, names, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    var = [j for j in range(len(names)) if np.std(target[:, j]) > 1e-6][:12]
    if not var:
        return
    ncol = min(4, len(var))
    nrow = int(np.ceil(len(var) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.1 * ncol, 2.9 * nrow), constrained_layout=True)
    for ax, j in zip(np.ravel(axes), var, strict=False):
        ax.plot(target[:, j], pred[:, j], ".", ms=3)
        lo, hi = target[:, j].min(), target[:, j].max()
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
        ax.set(title=names[j], xlabel="target p (normalized)", ylabel="predicted p (normalized)")
    for ax in np.ravel(axes)[len(var) :]:
        ax.axis("off")
    fig.suptitle("held-out profiles: predicted vs target parameters")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run_predict(args: argparse.Namespace) -> int:
    """Entry point of ``soc-jax predict``."""
    parser = args._parser
    net_path = _need(parser, "--network", os.path.join(args.network, "network.eqx"))
    _need(parser, "--network", net_path + ".json")
    grid_path = _need(parser, "--data", os.path.join(args.data, "grid.nc"))
    if args.block < 1:
        parser.error(f"--block must be >= 1, got {args.block}")

    import jax
    import numpy as np
    import xarray as xr

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx

    from ..data import dataset_to_forcing, minmax_scale, pad_observations, read_profiles
    from ..data.covariates import _matrix
    from .predict import figures, global_prediction, heldout_nse, write_maps
    from .train import load_checkpoint

    ens, cfg, h = load_checkpoint(net_path)
    model, mode = h["model"], args.mode or h["mode"]
    notes = []  # what was left out, with reasons: terminal, summary.txt and totals.json
    models, kinds, note = usable_members(ens, h["kinds"])
    if note:
        notes.append(note)
        print(note)
    if "seed" not in kinds:
        parser.error("--network: no seed member improved during training; nothing to predict")
    with xr.open_dataset(grid_path) as f:
        grid = f.load()
    if "i_lat" not in grid or "grid_lat" not in grid.coords:
        parser.error(f"--data: {grid_path} lacks the (i_lat, i_lon, grid_lat, grid_lon) layout")
    vmin, vmax = np.asarray(h["vmin"]), np.asarray(h["vmax"])
    X = minmax_scale(_matrix(grid), vmin, vmax)
    good = np.all(np.isfinite(X), axis=1)
    if not good.all():
        note = (
            f"left out {int((~good).sum())} of {len(good)} grid cells with non-finite "
            "covariates (no prediction, missing in the maps and totals)"
        )
        notes.append(note)
        print(note)
    if not good.any():
        parser.error(f"--data: every grid cell of {grid_path} has non-finite covariates")
    grid = grid.isel(cell=np.flatnonzero(good))
    X = X[good]
    forcing = dataset_to_forcing(grid, dim="cell")
    res = float(grid.attrs.get("resolution_deg", 0.5))
    pred = global_prediction(
        model,
        models,
        kinds,
        X,
        forcing,
        grid["lat"].values,
        res,
        mode=mode,
        homogeneous=np.asarray(h["homogeneous"]),
        default=not args.no_default,
        block=args.block,
        progress=True,
        link=h.get("link", "clip"),
    )
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
    ]
    b = t["proda_best_guess"]
    lines.append("SOC 0-30 / 0-100 / 0-200 cm / total (Pg C):")
    lines.append(
        "  PRODA best guess (seed median): "
        + " / ".join(f"{b[k]:.1f}" for k in ("top_30cm", "top_100cm", "top_200cm", "total"))
    )
    if "proda_bootstrap" in t:
        q = t["proda_bootstrap"]["top_100cm"]
        lines.append(
            f"  PRODA bootstrap 0-100 cm: median {q['median']:.1f} "
            f"[14 % {q['q14']:.1f}, 86 % {q['q86']:.1f}]"
        )
    for name in ("homogeneous", "default"):
        if name in t:
            lines.append(
                f"  {name}: "
                + " / ".join(
                    f"{t[name][k]:.1f}" for k in ("top_30cm", "top_100cm", "top_200cm", "total")
                )
            )
    if "stock_100cm" in grid:
        true_total = float(np.sum(grid["stock_100cm"].values * pred.area) / 1e15)
        t["truth_top_100cm"] = true_total
        lines.append(f"  truth (synthetic world) 0-100 cm: {true_total:.1f}")
    lines.append(f"failed steady states (excluded from totals): {json.dumps(pred.failed)}")
    if "proda_bootstrap_cells" in t:
        lines.append(bootstrap_cells_line(t["proda_bootstrap_cells"]))
    t["left_out"] = notes
    # held-out NSE (SPEC 6) when the profiles are there
    hold = h.get("holdout_profile_id") or []
    paths = [os.path.join(args.data, f) for f in ("profiles.nc", "forcing.nc", "covariates.nc")]
    if hold and all(os.path.exists(p) for p in paths):
        prof = read_profiles(paths[0], validate=False)
        with xr.open_dataset(paths[1]) as f:
            frc = f.load()
        with xr.open_dataset(paths[2]) as f:
            cov = f.load()
        ids = prof["profile_id"].values.astype(str)
        pos = {pid: i for i, pid in enumerate(ids)}
        rows = np.array([pos[p] for p in hold if p in pos], dtype=int)
        if rows.size < len(hold):
            lines.append(
                f"held-out NSE: {len(hold) - rows.size} of {len(hold)} held-out profiles are "
                f"not in {paths[0]} (left out)"
            )
        if rows.size:
            seeds = np.array([k == "seed" for k in kinds])
            seed_models = jax.tree.map(lambda a: a[seeds] if eqx.is_array(a) else a, models)
            Xp = minmax_scale(_matrix(cov)[rows], vmin, vmax)
            res_nse = heldout_nse(
                model,
                seed_models,
                Xp,
                dataset_to_forcing(frc.isel(profile=rows)),
                pad_observations(prof.isel(profile=rows)),
                mode=mode,
                link=h.get("link", "clip"),
            )
            t["heldout_nse"] = res_nse
            lines.append(
                f"held-out pooled NSE of layer SOC: {res_nse['nse']:.3f} "
                f"({res_nse['n_profiles']} profiles, {res_nse['n_layers']} layers, "
                f"{res_nse['n_failed_profiles']} failed)"
            )
    with open(os.path.join(args.out, "totals.json"), "w") as f:
        json.dump(t, f, indent=1)
    if not args.no_figures:
        key = [n for n in ("q10", "tau4s1", "efolding", "w_scaling", "mic_cue") if n in names][:3]
        figures(pred, ds, grid, args.out, key)
    text = "\n".join(lines)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote maps.nc, totals.json, summary.txt and figures to {args.out}")
    return 0
