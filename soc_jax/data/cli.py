"""``soc-jax synth``: generate the synthetic world and write NetCDF files and a summary figure."""

from __future__ import annotations

import argparse
import os
import time

from soc_jax._cli_args import add_command, add_run_options, float_in, nonneg_float, positive_int


def register(subparsers) -> None:
    """Add the ``synth`` sub-command to the ``soc-jax`` parser."""
    p = add_command(
        subparsers,
        "synth",
        run,
        help="generate the synthetic world (sites, covariates, forcing, truth, observed profiles)",
        description=(
            "Generate a deterministic synthetic world with known true parameters and write "
            "profiles.nc, covariates.nc, forcing.nc, truth.nc, grid.nc and world.png to --out, "
            "then print a short summary with timings."
        ),
        check=_check,
    )
    p.add_argument(
        "--n-sites",
        type=positive_int,
        default=300,
        help="number of sites (1e4-style if exact); refused if the world cannot fit in memory",
    )
    p.add_argument(
        "--model",
        choices=("clm5", "compas"),
        default="clm5",
        help="process model generating the observations",
    )
    p.add_argument(
        "--noise",
        type=nonneg_float,
        default=0.2,
        help="sigma of the multiplicative log-normal observation noise (0: no noise)",
    )
    p.add_argument(
        "--grid-resolution",
        type=float_in(0.25, 30),
        default=4.0,
        help="resolution of the global grid of land cells, degrees (0.25-30)",
    )
    add_run_options(p, out="results/world")
    p.add_argument("--no-figure", action="store_true", help="skip the summary figure")


def _check(args: argparse.Namespace) -> None:
    """Refuse a world that cannot fit in memory (before anything is allocated)."""
    from soc_jax._resources import world_problem

    problem = world_problem(args.n_sites, args.grid_resolution)
    if problem:
        args._parser.error(f"argument {problem[0]}: {problem[1]}")


def run(args: argparse.Namespace) -> int:
    """Entry point (the ``soc-jax`` CLI has enabled float64)."""
    from soc_jax.data.synthetic import make_world

    t0 = time.perf_counter()
    world = make_world(
        args.n_sites,
        seed=args.seed,
        model=args.model,
        noise=args.noise,
        grid_resolution=args.grid_resolution,
        progress=True,
    )
    t1 = time.perf_counter()
    paths = world.to_netcdf(args.out)
    if not args.no_figure:
        world.figure(os.path.join(args.out, "world.png"))
    t2 = time.perf_counter()
    print(world.summary())
    pieces = ", ".join(f"{k} {v:.1f} s" for k, v in world.timings.items())
    print(f"timing: generate {t1 - t0:.1f} s ({pieces}); write {t2 - t1:.1f} s")
    print(f"wrote {', '.join(sorted(os.path.basename(p) for p in paths.values()))} to {args.out}")
    return 0
