"""``soc-jax train`` and ``soc-jax predict``: PRODA's network and global prediction (SPEC 7, 8).

The one CLI module of `soc_jax.proda`: every option, its type and the checks across options.

``train`` fits the seed and bootstrap members as one vmapped program on a table of (profile,
covariates, normalized parameters) and writes ``network.eqx`` (+ ``.json``), a resumable
``checkpoint.eqx``, ``training.nc``, ``recovery.png`` and ``summary.txt`` to ``--out``
(`soc_jax.proda.train_run`); with ``--end-to-end`` it trains through the steady state on the
observed profiles instead (`soc_jax.proda.e2e_run`).
``predict`` reads that network and a data directory with ``grid.nc`` (and, for the held-out
NSE, ``profiles.nc`` + ``forcing.nc`` + ``covariates.nc``) and writes ``maps.nc``,
``totals.json``, PNG figures and ``summary.txt`` to ``--out`` (`soc_jax.proda.predict_run`).
This module imports nothing heavy at import time (``soc-jax --help`` stays light).
"""

from __future__ import annotations

import argparse
import os

from .._cli_args import (
    add_command,
    add_run_options,
    existing_dir,
    existing_file,
    float_in,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)
from .outputs import bootstrap_cells_line
from .steps import holdout_rows, usable_members

__all__ = [
    "bootstrap_cells_line",
    "holdout_fraction",
    "holdout_rows",
    "layer_widths",
    "register",
    "run_predict",
    "run_train",
    "usable_members",
]

_HELP_TRAIN = (
    "Train PRODA's network (60 covariates -> normalized parameters; Keras' Adadelta, batch 32, "
    "early stopping) as seeds + bootstraps in one vmapped program."
)
_HELP_PREDICT = (
    "Predict parameters on the grid with a trained network, run the steady state per cell, "
    "and write SOC maps, Pg C totals with bootstrap uncertainty and figures."
)
_HELP_SIZES = (
    " Counts may be written 1e4-style if exact. Before training the command prints the longest "
    "run time it expects (every epoch run; early stopping usually ends sooner)."
)
_MAX_HOLDOUT = 0.9
# The modes of each model, as `soc_jax.calibration.cli.MODES` (checked without importing JAX).
_MODES = {"clm5": ("proda", "default"), "compas": ("proda", "documented")}
_CELL_BYTES = 3.0e5  # predict: bytes per grid cell of a block (4 x a quickstart site's 7e4)
_HISTORY_BYTES = 64.0  # train: losses kept per member and epoch (training.nc), float64, x 2


def layer_widths(text: str) -> tuple[int, ...]:
    """An argparse ``type=``: comma-separated positive integers (hidden layer widths)."""
    try:
        widths = tuple(int(h) for h in text.split(","))
    except ValueError:
        widths = ()
    if not widths or not all(h > 0 for h in widths):
        raise argparse.ArgumentTypeError(f"must be comma-separated positive integers, got {text!r}")
    return widths


def holdout_fraction(text: str) -> float:
    """An argparse ``type=``: the held-out fraction of profiles, in [0, 0.9)."""
    value = nonneg_float(text)
    if not value < _MAX_HOLDOUT:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 0.9), got {text!r}")
    return value


def register(subparsers) -> None:
    """Add the ``train`` and ``predict`` sub-commands to the ``soc-jax`` parser."""
    t = add_command(
        subparsers,
        "train",
        run_train,
        help=_HELP_TRAIN,
        description=_HELP_TRAIN + _HELP_SIZES,
        check=lambda args: _check_train(args._parser, args),
    )
    _add_target_options(t)
    add_run_options(
        t, out="results/proda", seed="random seed", resume="continue from --out/checkpoint.eqx"
    )
    _add_holdout_options(t)
    _add_network_options(t)
    _add_end_to_end_options(t)

    p = add_command(
        subparsers,
        "predict",
        run_predict,
        help=_HELP_PREDICT,
        description=_HELP_PREDICT,
        check=lambda args: _check_predict(args._parser, args),
    )
    p.add_argument(
        "--network", type=existing_dir, required=True, help="output directory of `soc-jax train`"
    )
    p.add_argument(
        "--data",
        type=existing_dir,
        required=True,
        help="directory with grid.nc (synthetic world layout)",
    )
    add_run_options(p, out="results/proda_maps", seed=None, figures=True)
    p.add_argument(
        "--mode",
        choices=("proda", "default", "documented"),
        default=None,
        help="steady-state mode: proda or default (clm5), proda or documented (compas) "
        "(default: the network's)",
    )
    p.add_argument(
        "--block",
        type=positive_int,
        default=1024,
        help="cells per compiled call; refused if a block cannot fit in memory",
    )
    p.add_argument("--no-default", action="store_true", help="skip CLM5's default parameters")


def _add_target_options(t) -> None:
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
    t.add_argument(
        "--data", type=existing_dir, required=True, help="directory with covariates.nc and grid.nc"
    )
    t.add_argument(
        "--model", choices=("clm5", "compas"), default=None, help="default: targets' attr"
    )


def _add_holdout_options(t) -> None:
    t.add_argument(
        "--holdout",
        type=holdout_fraction,
        default=0.1,
        help="fraction of profiles held out of training for evaluation, in [0, 0.9) (0: none; "
        "--end-to-end needs > 0)",
    )
    _choice(
        t,
        "--holdout-kind",
        ("spatial", "random"),
        "held-out profiles: whole lat-lon blocks (spatial) or a random draw",
    )
    t.add_argument(
        "--holdout-block",
        type=float_in(0.1, 360),
        default=30.0,
        help="block size of the spatial hold-out, degrees (0.1-360)",
    )


def _add_network_options(t) -> None:
    t.add_argument("--ensemble", type=positive_int, default=10, help="best-guess seed members")
    t.add_argument("--bootstrap", type=nonneg_int, default=200, help="bootstrap members")
    t.add_argument("--epochs", type=positive_int, default=6000, help="maximum epochs")
    t.add_argument("--patience", type=positive_int, default=1200, help="early-stopping patience")
    t.add_argument(
        "--learning-rate", type=positive_float, default=1e-3, help="Adadelta lr (Keras 1e-3)"
    )
    t.add_argument("--batch-size", type=positive_int, default=32, help="batch size")
    t.add_argument(
        "--dropout",
        type=float_in(0.0, 0.95),
        default=None,
        help="dropout rate in 0..0.95 (default 0 (clm5) / 0.2 (compas))",
    )
    _choice(
        t, "--split", ("shuffled", "keras"), "validation rows: shuffled 10 %% or Keras' last 10 %%"
    )
    t.add_argument(
        "--hidden", type=layer_widths, default="256,512,512,256", help="hidden widths (PRODA's)"
    )
    _choice(t, "--dtype", ("float32", "float64"), "network dtype")
    t.add_argument(
        "--epochs-per-call", type=positive_int, default=10, help="epochs per compiled call"
    )


def _add_end_to_end_options(t) -> None:
    """The ``--end-to-end`` options of ``soc-jax train`` (shared options keep their meaning)."""
    g = t.add_argument_group("end-to-end training (--end-to-end)")
    g.add_argument(
        "--end-to-end",
        action="store_true",
        help="train the network through the steady state on the observed profiles of --data "
        "(profiles.nc, forcing.nc, covariates.nc, grid.nc); no calibration stage",
    )
    g.add_argument("--variational", action="store_true", help="amortised posterior (ELBO)")
    _choice(g, "--link", ("sigmoid", "clip"), "output link")
    _choice(g, "--misfit", ("log", "proda"), "log-SOC NLL or PRODA's cost")
    g.add_argument("--sigma", type=positive_float, default=0.2, help="log-SOC noise sd")
    g.add_argument("--samples", type=positive_int, default=4, help="ELBO draws per profile")
    g.add_argument(
        "--smoothness", type=nonneg_float, default=0.0, help="covariate smoothness weight"
    )
    g.add_argument(
        "--prior",
        type=existing_file,
        default=None,
        help="calibration posterior.nc: pull toward its para_summary_mean/std (--prior-weight)",
    )
    g.add_argument(
        "--prior-weight", type=nonneg_float, default=1.0, help="weight of the prior pull"
    )
    g.add_argument("--width", type=positive_int, default=12, help="observation slots per profile")


def _choice(p, flag: str, choices: tuple[str, ...], help: str) -> None:
    """An option taking one of ``choices``; the first is the default."""
    p.add_argument(flag, choices=choices, default=choices[0], help=help)


def _need(parser, flag: str, path: str) -> str:
    if not os.path.exists(path):
        parser.error(f"{flag}: {path} not found")
    return path


def _data_files(parser, data: str, names: tuple[str, ...]) -> dict[str, str]:
    """``{name: data/name.nc}``, each checked to exist (else an error naming ``--data``)."""
    return {name: _need(parser, "--data", os.path.join(data, f"{name}.nc")) for name in names}


def _check_train(parser, args) -> dict[str, str]:
    """The checks across ``soc-jax train``'s options and its input files; returns the paths of
    the ``--data`` files the chosen training reads."""
    from .._resources import BASE_BYTES, memory_problem

    members = args.ensemble + args.bootstrap
    need = BASE_BYTES + _HISTORY_BYTES * members * args.epochs
    what = f"the training history of {members:,} members x {args.epochs:,} epochs"
    problem = memory_problem(need, "--epochs", what)
    if problem:
        parser.error(f"argument --epochs: {problem}")
    if args.end_to_end:
        if args.holdout == 0:
            parser.error("--holdout must be in (0, 0.9) with --end-to-end, got 0")
        if args.variational and args.link != "sigmoid":
            parser.error("--link: the variational posterior needs --link sigmoid")
        return _data_files(parser, args.data, ("profiles", "forcing", "covariates", "grid"))
    if args.targets is None:
        parser.error("--targets is required (unless --end-to-end)")
    _need(parser, "--targets", args.targets)
    if not os.path.isfile(args.targets):
        parser.error(f"--targets: {args.targets} is not a file")
    return _data_files(parser, args.data, ("covariates", "grid"))


def _check_predict(parser, args) -> tuple[str, str]:
    """The checks of ``soc-jax predict`` before any work: the network's files, ``--mode`` for
    the network's model, ``grid.nc`` and the memory of a ``--block``; returns the paths of the
    network and of ``grid.nc``."""
    import json

    from .._resources import BASE_BYTES, memory_problem

    net_path = _need(parser, "--network", os.path.join(args.network, "network.eqx"))
    _need(parser, "--network", net_path + ".json")
    grid_path = _data_files(parser, args.data, ("grid",))["grid"]
    try:
        with open(net_path + ".json") as f:
            model = json.load(f).get("model")
    except (OSError, ValueError, AttributeError) as err:
        parser.error(f"--network: cannot read {net_path}.json: {err}")
    if args.mode is not None and model in _MODES and args.mode not in _MODES[model]:
        parser.error(
            f"argument --mode: must be {' or '.join(_MODES[model])} for the network's model "
            f"{model}, got {args.mode!r}"
        )
    need = BASE_BYTES + _CELL_BYTES * args.block
    problem = memory_problem(need, "--block", f"a block of {args.block:,} cells")
    if problem:
        parser.error(f"argument --block: {problem}")
    return net_path, grid_path


def _print_train_estimate(args, paths: dict[str, str]) -> None:
    """The longest run time of the training (rows from the targets or the profiles)."""
    import xarray as xr

    from .._resources import format_seconds, train_seconds

    source = paths["profiles"] if args.end_to_end else args.targets
    try:
        with xr.open_dataset(source) as ds:
            rows = int(ds.sizes.get("profile", 0))
    except (OSError, ValueError):
        return  # the training reports an unreadable file itself
    members = args.ensemble + args.bootstrap
    seconds = train_seconds(members, rows, args.epochs)
    print(
        f"estimated run time: at most about {format_seconds(seconds)} ({members} members x "
        f"{rows:,} profiles x {args.epochs:,} epochs on a 2-core CPU; early stopping usually "
        "ends sooner)",
        flush=True,
    )


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``soc-jax train`` (two-stage, or ``--end-to-end``)."""
    paths = _check_train(args._parser, args)
    import jax

    jax.config.update("jax_enable_x64", True)
    _print_train_estimate(args, paths)
    if args.end_to_end:
        from .e2e_run import train_end_to_end

        return train_end_to_end(args, paths)
    from .train_run import train_two_stage

    return train_two_stage(args, paths)


def run_predict(args: argparse.Namespace) -> int:
    """Entry point of ``soc-jax predict``."""
    net_path, grid_path = _check_predict(args._parser, args)
    import jax

    jax.config.update("jax_enable_x64", True)
    from .predict_run import predict_maps

    return predict_maps(args, net_path, grid_path)
