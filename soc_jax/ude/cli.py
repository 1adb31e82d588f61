"""``soc-jax ude``: run the seed's six UDE cases (see :mod:`soc_jax.ude.cases`)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``ude`` sub-command to the ``soc-jax`` parser."""
    p = subparsers.add_parser(
        "ude",
        help="universal differential equation for SOC(z, t): the six cases of seed 002",
        description=(
            "Train the SOC UDE (advection-diffusion + neural production/respiration, Diffrax "
            "Tsit5, adjoint gradients) on one of the six synthetic cases, write results JSON "
            "and figures to --out, and print 'case N: mse_noisy=... r2_noisy=... mse_clean=... "
            "r2_clean=...'."
        ),
    )
    p.add_argument("--case", type=int, choices=range(1, 7), metavar="N", help="case 1-6")
    p.add_argument("--all", action="store_true", help="run all six cases")
    p.add_argument(
        "--quick", action="store_true", help="train only the case's configuration (no grid search)"
    )
    p.add_argument("--out", default="results/ude", help="output directory (default results/ude)")
    p.add_argument("--seed", type=int, default=0, help="noise and initialisation seed")
    p.add_argument(
        "--truth",
        choices=("reaction", "seed"),
        default="reaction",
        help="data-generating law: known reaction (default) or seed's P=R=0",
    )
    p.add_argument(
        "--max-iters",
        type=int,
        default=None,
        metavar="K",
        help="cap Adam and L-BFGS at K iterations each (smoke tests; results are not converged)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point; enables float64 before any computation."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from soc_jax.ude.cases import run_cases, summary_line

    if args.all:
        numbers = list(range(1, 7))
    elif args.case is not None:
        numbers = [args.case]
    else:
        raise SystemExit("soc-jax ude: give --case N (1-6) or --all")
    results = run_cases(
        numbers,
        quick=args.quick,
        seed=args.seed,
        out=args.out,
        truth=args.truth,
        max_iters=args.max_iters,
        figures=not args.no_figures,
    )
    for r in results[:-1]:
        print(summary_line(r))
    last = results[-1]
    print(f"(method: {last['default_method']}, seed {last['data_seed']}, out {args.out})")
    print(summary_line(last))
    return 0
