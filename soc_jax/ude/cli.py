"""``soc-jax ude``: the six synthetic UDE cases of Raju et al. (2025), see `soc_jax.ude.cases`."""

from __future__ import annotations

import argparse
import os
import sys

from soc_jax._cli_args import add_command, add_run_options, int_in, positive_int
from soc_jax._resources import INT32_MAX


def register(subparsers) -> None:
    """Add the ``ude`` sub-command to the ``soc-jax`` parser."""
    p = add_command(
        subparsers,
        "ude",
        run,
        help="universal differential equation for SOC(z, t): the six synthetic cases",
        description=(
            "Train the SOC UDE (advection-diffusion + neural production/respiration, Diffrax "
            "Tsit5, adjoint gradients) on one of the six synthetic cases of Raju et al. (2025), "
            "write results JSON and figures to --out, and print 'case N: mse_noisy=... "
            "r2_noisy=... mse_clean=... r2_clean=...'.\n\n"
            "Cases 1-3 observe the full record from t = 0, cases 4-6 only the 50-year profile; "
            "the noise is 0 %, 7 % and 35 % (multiplicative, depth-correlated) in each group. "
            "The estimated run time is printed before training."
        ),
        outputs=("--out", "--compile-cache"),
        check=_check,
    )
    _add_case_options(p)
    add_run_options(p, out="results/ude", seed="noise and initialisation seed", figures=True)
    _add_search_options(p)
    p.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR",
        help=(
            "keep XLA compilations in DIR (JAX's persistent compilation cache) so a rerun skips "
            "most compile time; sets EQX_ON_ERROR=nan unless set (JAX does not cache programs "
            "with Equinox's raising runtime checks)"
        ),
    )


def _add_case_options(p: argparse.ArgumentParser) -> None:
    """Which cases, how (``--quick`` or ``--search``), the truth and the iteration cap."""
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--case", type=int, choices=range(1, 7), metavar="N", help="run case N (1-6)"
    )
    which.add_argument("--all", action="store_true", help="run all six cases")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--quick", action="store_true", help="train only the case's configuration (no grid search)"
    )
    how.add_argument(
        "--search",
        action="store_true",
        help=(
            "the paper's hyper-parameter search (144 trials for case 3, 16 otherwise) as one "
            "batched program, then full-length retraining of the best (the default without "
            "--quick)"
        ),
    )
    p.add_argument(
        "--truth",
        choices=("reaction", "seed"),
        default="reaction",
        help=(
            "data-generating law: 'reaction', a known reaction term the networks can learn; "
            "'seed', P = R = 0 as in the paper"
        ),
    )
    p.add_argument(
        "--max-iters",
        type=positive_int,
        default=None,
        metavar="K",
        help="cap Adam and L-BFGS at K iterations each (smoke tests; results are not converged)",
    )


def _add_search_options(p: argparse.ArgumentParser) -> None:
    """How the search is batched, budgeted, threaded and timed."""
    p.add_argument(
        "--compare-sequential",
        type=int_in(0, 144),
        default=0,
        metavar="N",
        help="also time N search trials (0-144) trained one at a time (speed-up of the batched "
        "search)",
    )
    p.add_argument(
        "--search-groups",
        choices=("one", "width", "architecture"),
        default="width",
        help=(
            "search batches: 'width', one per pair of hidden widths (tanh and GELU together); "
            "'architecture', one per widths and activation; 'one', all trials in one "
            "zero-padded batch"
        ),
    )
    p.add_argument(
        "--search-schedule",
        choices=("halving", "full"),
        default="halving",
        help=(
            "trial budgets: 'halving', successive halving (all trials to 25 Adam iterations, "
            "the best to 50, about 4 to 100); 'full', every trial to 100"
        ),
    )
    p.add_argument(
        "--threads",
        type=positive_int,
        metavar="N",
        help="batches trained concurrently (default: CPU count, at most 2)",
    )


def _check(args: argparse.Namespace) -> None:
    """Before any work: the iteration cap within the int32 step counters of the optimisers."""
    if args.max_iters is not None and args.max_iters > INT32_MAX:
        args._parser.error(f"argument --max-iters: must be <= {INT32_MAX}, got {args.max_iters}")


def run(args: argparse.Namespace) -> int:
    """Entry point; enables float64 before any computation."""
    from soc_jax._resources import format_seconds, ude_seconds

    n_cases = 6 if args.all else 1
    seconds = ude_seconds(n_cases, args.quick, args.max_iters)
    print(
        f"estimated run time: about {format_seconds(seconds)} ({n_cases} case(s), "
        f"{'--quick' if args.quick else 'grid search'}, on a 2-core CPU)",
        flush=True,
    )
    if args.compile_cache:
        _prepare_compile_cache()
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    import json
    import time

    from soc_jax.ude.cases import run_cases

    t0 = time.perf_counter()
    load0 = os.getloadavg()
    results = run_cases(
        list(range(1, 7)) if args.all else [args.case],
        quick=args.quick,
        seed=args.seed,
        out=args.out,
        truth=args.truth,
        max_iters=args.max_iters,
        figures=not args.no_figures,
        compare_sequential=args.compare_sequential,
        groups=args.search_groups,
        threads=args.threads,
        schedule=args.search_schedule,
    )
    wall = time.perf_counter() - t0
    with open(os.path.join(args.out, "ude_run.json"), "w") as fh:
        json.dump(_run_record(args, results, wall, load0), fh, indent=2)
    _print_summary(args, results, wall, load0)
    return 0


def _prepare_compile_cache() -> None:
    """Set ``EQX_ON_ERROR=nan`` (unless set) so the solver programs can be cached.

    JAX's persistent cache skips any program with a host callback, and Equinox's runtime checks
    (eqx.error_if, inside Diffrax's loops) are host callbacks when they raise: with them no
    solver program was ever cached. As NaN instead (Equinox's documented EQX_ON_ERROR=nan), a
    tripped check shows up as a non-finite loss or gradient, which the training loops already
    treat as a failed solve. Read when Equinox is imported.
    """
    if "equinox" in sys.modules and os.environ.get("EQX_ON_ERROR") != "nan":
        print(
            "soc-jax ude: --compile-cache: Equinox was imported before EQX_ON_ERROR=nan "
            "could be set; solver programs will not be cached",
            file=sys.stderr,
        )
    os.environ.setdefault("EQX_ON_ERROR", "nan")


def _run_record(args: argparse.Namespace, results: list[dict], wall: float, load0) -> dict:
    """``out/ude_run.json``: the command, its settings, wall time, load and each case's summary."""
    return {
        "command": "soc-jax ude " + ("--all" if args.all else f"--case {args.case}"),
        "quick": args.quick,
        "truth": args.truth,
        "seed": args.seed,
        "wall_seconds": wall,
        "load_average_before": list(load0),
        "load_average_after": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "threads": args.threads,
        "search_groups": args.search_groups,
        "search_schedule": args.search_schedule,
        "compile_cache": args.compile_cache,
        "cases": {r["case"]: {**r["summary"], "seconds": r["seconds"]} for r in results},
    }


def _print_summary(args: argparse.Namespace, results: list[dict], wall: float, load0) -> None:
    """Wall time and load, then one summary line per case (the last one last)."""
    from soc_jax.ude.case_report import summary_line

    print(
        f"total wall time {wall:.1f} s ({wall / 60:.1f} min), load average "
        f"{load0[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for r in results[:-1]:
        print(summary_line(r))
    last = results[-1]
    print(f"(method: {last['default_method']}, seed {last['data_seed']}, out {args.out})")
    print(summary_line(last))
