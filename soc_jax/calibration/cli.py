"""``soc-jax calibrate``: PRODA's adaptive Metropolis, or NUTS, MALA, ChEES, on every profile."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from soc_jax._cli_args import add_command, add_run_options, float_in, int_in, positive_int
from soc_jax._identity import ResumeError, check_run, input_identity
from soc_jax._resources import INT32_MAX

_DEFAULT_CHAINS = {"proda-am": 3, "nuts": 4, "mala": 4, "chees": 8}
# The modes of each model (soc_jax.models.clm5/compas ``MODEL.modes``; kept here so that the
# command line checks --mode without importing JAX; tests/test_cli_prechecks.py compares them).
MODES = {"clm5": ("proda", "default"), "compas": ("proda", "documented")}
_AUTO_CHUNK = 64  # profiles per chunk when --chunk-size is auto (fewer if there are fewer)
_MAX_PARAMS_AND_SLOTS = 40  # generous: 21 CLM5 parameters + 12-20 observation slots

# (flag, type, default, help) of the gradient samplers' run sizes
_GRADIENT_SIZES = (
    ("--warmup", int_in(20, INT32_MAX // 2), 500, "warm-up steps per chain (gradient)"),
    ("--draws", int_in(4, INT32_MAX // 2), 500, "draws per chain (gradient)"),
    (
        "--max-tree-depth",
        int_in(1, 15),
        10,
        "NUTS max trajectory doublings; ChEES max 2^depth leapfrog steps",
    ),
    (
        "--target-accept",
        float_in(0.0, 0.99),
        0.0,
        "target acceptance rate; 0 = the sampler's default (0.8, 0.574, 0.651)",
    ),
)


def add_sampler_option(p: argparse.ArgumentParser, *, help: str) -> None:
    """``--sampler``: the site-level samplers soc_jax runs (one list, for every command)."""
    p.add_argument("--sampler", choices=tuple(_DEFAULT_CHAINS), default="proda-am", help=help)


def register(subparsers) -> None:
    """Add the ``calibrate`` sub-command to the ``soc-jax`` parser."""
    p = add_command(
        subparsers,
        "calibrate",
        run,
        help="calibrate CLM5 or COMPAS on every observed profile (PRODA's AM, NUTS, MALA, ChEES)",
        description=(
            "Site-level Bayesian calibration of every profile in --data (profiles.nc and "
            "forcing.nc as `soc-jax synth` writes them), all profiles x chains batched in one "
            "compiled program, chunk by chunk. Writes posterior.nc, draws.nc, figures and "
            "summary.txt to --out. A killed run continues with --resume (same result). "
            "PRODA's protocol per profile: 3 chains x (20,000 test-run + 50,000 formal-run "
            "steps); use smaller --steps-test/--steps-formal for a quick look. "
            "--sampler nuts|mala|chees samples the same posterior with BlackJAX's gradient-based "
            "kernels on the logit scale (--warmup adaptation steps, then --draws draws per chain). "
            "Counts may be written 1e4-style if exact. Before sampling the command prints its "
            "estimated run time, and refuses sizes that cannot fit in memory."
        ),
        check=_check,
    )
    p.add_argument("--data", required=True, help="folder with profiles.nc and forcing.nc")
    p.add_argument("--model", choices=("clm5", "compas"), default="clm5", help="process model")
    p.add_argument(
        "--mode",
        choices=("proda", "default", "documented"),
        default=None,
        help="model mode: proda or default (clm5), proda or documented (compas) (default: "
        "proda for clm5, documented for compas, as soc-jax synth)",
    )
    add_run_options(
        p, out="results/calibration", resume="continue a killed run in --out", figures=True
    )
    add_sampler_option(
        p, help="sampler: PRODA's adaptive Metropolis, or gradient-based NUTS, MALA, ChEES-HMC"
    )
    p.add_argument(
        "--faithful",
        action="store_true",
        help="keep every quirk of PRODA's MCMC (annealed acceptance, J(p0) at the formal start)",
    )
    p.add_argument(
        "--chunk-size",
        type=chunk_size,
        default="auto",
        help=f"profiles per chunk; auto: {_AUTO_CHUNK}, or the number of profiles if fewer; a "
        "chunk that cannot fit in memory is refused",
    )
    p.add_argument(
        "--steps-test",
        type=int_in(2, INT32_MAX // 2),
        default=20000,
        help="test-run steps per chain (PRODA)",
    )
    p.add_argument(
        "--steps-formal",
        type=int_in(2, INT32_MAX // 2),
        default=50000,
        help="formal-run steps per chain (PRODA; the step counters are int32)",
    )
    p.add_argument(
        "--thin",
        type=positive_int,
        default=None,
        help="keep every N-th sample (default: formal / 500)",
    )
    p.add_argument(
        "--chains",
        type=int_in(2),
        default=None,
        help="chains per profile (default: 3 for proda-am as PRODA, 4 for nuts/mala, 8 for chees)",
    )
    for flag, kind, default, text in _GRADIENT_SIZES:
        p.add_argument(flag, type=kind, default=default, help=text)


def chunk_size(text: str) -> int | str:
    """An argparse ``type=``: ``auto`` or a count of profiles >= 1."""
    if text == "auto":
        return "auto"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"must be auto or {str(err)[len('must be ') :]}") from None


def _check(args: argparse.Namespace) -> None:
    """Checks across options, the input files and the chunk's memory (before JAX is imported)."""
    from soc_jax._resources import calibrate_chunk_bytes, memory_problem

    p = args._parser
    if args.thin is not None and args.thin > args.steps_formal:
        p.error(f"argument --thin: must be in 1..--steps-formal, got {args.thin}")
    if args.mode is not None and args.mode not in MODES[args.model]:
        p.error(
            f"argument --mode: must be {' or '.join(MODES[args.model])} for --model "
            f"{args.model}, got {args.mode!r}"
        )
    for name in ("profiles.nc", "forcing.nc"):
        if not os.path.isfile(os.path.join(args.data, name)):
            p.error(f"argument --data: {os.path.join(args.data, name)} not found")
    if args.chunk_size != "auto":
        chains = args.chains or _DEFAULT_CHAINS[args.sampler]
        need = calibrate_chunk_bytes(args.chunk_size, chains)
        what = f"a chunk of {args.chunk_size:,} profiles x {chains} chains"
        problem = memory_problem(need, "--chunk-size", what)
        if problem:
            p.error(f"argument --chunk-size: {problem}")


def _check_sizes(args, settings, n_profiles: int) -> None:
    """Refuse draws that cannot fit in memory; print the estimated run time."""
    from soc_jax._resources import (
        calibrate_draws_bytes,
        calibrate_seconds,
        format_seconds,
        memory_problem,
    )

    am = settings.sampler == "proda-am"
    kept = settings.am_config().capacity if am else settings.n_draws
    flag = "--steps-formal" if am else "--draws"
    need = calibrate_draws_bytes(n_profiles, settings.n_chains, kept, _MAX_PARAMS_AND_SLOTS, 0)
    what = f"{kept:,} kept draws x {settings.n_chains} chains x {n_profiles:,} profiles"
    problem = memory_problem(need, flag + " (or a larger --thin)" if am else flag, what)
    if problem:
        args._parser.error(f"argument {flag}: {problem}")
    steps = settings.n_test + settings.n_formal if am else settings.n_warmup + settings.n_draws
    seconds = calibrate_seconds(
        n_profiles, settings.n_chains, steps, not am, settings.max_tree_depth
    )
    print(
        f"estimated run time: about {format_seconds(seconds)} ({n_profiles:,} profiles x "
        f"{settings.n_chains} chains x {steps:,} steps on a 2-core CPU; a GPU is faster)",
        flush=True,
    )


def _resume_inputs(args: argparse.Namespace) -> dict:
    """The input files' identity (recorded in settings.json); with ``--resume``, first checks
    that ``--out`` holds a run made from the same files (before anything is read)."""
    files = {n: ("--data", os.path.join(args.data, n)) for n in ("profiles.nc", "forcing.nc")}
    inputs = input_identity(files)
    if args.resume:
        try:
            warning = check_run(args.out, ["settings.json"], "settings.json", inputs)
        except ResumeError as err:
            args._parser.error(str(err))
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    return inputs


def run(args: argparse.Namespace) -> int:
    """Entry point (the ``soc-jax`` CLI has run `_check` and enabled float64)."""
    inputs = _resume_inputs(args)
    from soc_jax.data import read_forcing, read_profiles
    from soc_jax.data.synthetic import MODEL_MODES

    from . import driver, figures

    mode = args.mode or MODEL_MODES[args.model]
    thin = args.thin or max(1, args.steps_formal // 500)
    settings = driver.Settings(
        model=args.model,
        mode=mode,
        sampler=args.sampler,
        n_test=args.steps_test,
        n_formal=args.steps_formal,
        thin=thin,
        faithful=args.faithful,
        n_chains=args.chains or _DEFAULT_CHAINS[args.sampler],
        n_warmup=args.warmup,
        n_draws=args.draws,
        max_tree_depth=args.max_tree_depth,
        target_accept=args.target_accept,
        seed=args.seed,
        chunk_size=_AUTO_CHUNK if args.chunk_size == "auto" else args.chunk_size,
    )
    try:
        profiles = read_profiles(os.path.join(args.data, "profiles.nc"), validate=False)
        forcing = read_forcing(os.path.join(args.data, "forcing.nc"))
    except (OSError, ValueError, KeyError) as err:
        args._parser.error(f"argument --data: cannot read the inputs: {err}")
    n_profiles = int(profiles.sizes["profile"])
    if args.chunk_size == "auto":  # the same data gives the same chunks (--resume)
        settings = dataclasses.replace(settings, chunk_size=max(1, min(_AUTO_CHUNK, n_profiles)))
    _check_sizes(args, settings, n_profiles)
    t0 = time.perf_counter()
    try:
        result = driver.calibrate(
            profiles, forcing, args.out, settings, resume=args.resume, inputs=inputs
        )
    except driver.InputError as err:
        name = "forcing.nc" if err.source == "forcing" else "profiles.nc"
        args._parser.error(f"argument --data: {os.path.join(args.data, name)} {err}")
    except ResumeError as err:  # different settings or input files
        args._parser.error(str(err))
    except FileExistsError as err:
        args._parser.error(f"argument --out: {err}")
    wall = time.perf_counter() - t0
    post = result["posterior"]
    truth_path = os.path.join(args.data, "truth.nc")
    if not args.no_figures:
        figures.write_all(post, args.out, truth_path if os.path.isfile(truth_path) else None)
    text = summary_text(result, wall)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    return 0


def _median(x: np.ndarray, fmt: str = ".3f") -> str:
    x = x[np.isfinite(x)]
    return format(float(np.median(x)), fmt) if x.size else "n/a"


def summary_text(result: dict, wall: float) -> str:
    """Short summary: profiles done/skipped/filtered (and why), R-hat, acceptance, counts."""
    from . import driver, postprocess
    from .posterior_file import AM_CHAIN_COUNTS

    post = result["posterior"]
    status = post["status"].values
    done = status & 32 == 0
    n_done = int(done.sum())
    passed = int(post["filter_pass"].values[done].astype(bool).sum())
    rule = post.attrs.get("filter_rule", "proda_gr")
    rhat = post["rhat"].values[done]
    n_nonfinite = int(np.sum((status & 1024) != 0))
    acc = post["acceptance"].values[done].ravel()
    valid = post["valid"].values[done].astype(bool).ravel()
    acc = acc[valid]
    evals = result["evals"]
    rate = evals / result["run_seconds"] if result["run_seconds"] > 0 else float("nan")
    skipped = result["skipped"]
    lines = [
        f"calibrated {n_done} profiles ({len(skipped)} skipped), "
        f"{result['n_chunks']} chunks ({result['chunks_resumed']} resumed), wall {wall:.1f} s",
        f"site filter [{rule}] ({postprocess.FILTER_RULES[rule]}): {passed} of {n_done} pass"
        + (f"; {n_nonfinite} with a non-finite diagnostic fail" if n_nonfinite else ""),
        "median rank R-hat over profiles x parameters: " + _median(rhat),
        "acceptance rate of kept chains: "
        + (
            f"median {np.median(acc):.3f} (5-95 %: {np.quantile(acc, 0.05):.3f}-"
            f"{np.quantile(acc, 0.95):.3f})"
            if acc.size
            else "n/a"
        ),
        f"model evaluations: {evals} in {result['run_seconds']:.1f} s "
        f"(this session, incl. compilation): {rate:.3g} per s",
        f"flagged profiles (status != 0): {int(np.sum(status != 0))}",
    ]
    if "n_acc_failed" in post:
        counts = {k: int(post[k].values[done].sum()) for k in AM_CHAIN_COUNTS}
        lines.append(
            f"chain counts (all chains): {counts['n_failed_evals']} failed simulations, "
            f"{counts['n_acc_failed']} accepted failed solves, "
            f"{counts['n_test_restarts']} test-run restarts, {counts['n_discards']} formal-run "
            f"discards, {counts['n_out_of_box']} out-of-box proposals"
        )
    if "n_grad_evals" in post:
        ess = post["ess_bulk"].values[done]
        grads = post["n_grad_evals"].values[done].sum(axis=1)
        lines += [
            f"sampler {post.attrs.get('sampler')}: median bulk ESS "
            + _median(ess, ".0f")
            + ", gradient evaluations per profile: median "
            + (f"{np.median(grads):.0f}" if grads.size else "n/a")
            + f", divergences: {int(post['divergences'].values[done].sum())}"
            + f", rescued profiles: {int(np.sum((status & 512) != 0))}",
        ]
    if skipped:
        lines.append(f"skipped {len(skipped)} profiles: {driver.skip_counts(skipped)}")
    for pid, reason in list(skipped.items())[:10]:
        lines.append(f"  skipped {pid}: {reason}")
    return "\n".join(lines)
