"""``soc-jax import``: convert PRODA's input tree once into soc_jax's own NetCDF files."""

from __future__ import annotations

import argparse
import os

from soc_jax._cli_args import add_command, add_run_options, existing_dir, nonneg_int

_MAX_LINES = 10  # skipped-profile / dropped-layer lines shown on the terminal
OUTPUTS = ("profiles.nc", "forcing.nc", "covariates.nc", "import_report.txt")


def register(subparsers) -> None:
    """Add the ``import`` sub-command to the ``soc-jax`` parser."""
    p = add_command(
        subparsers,
        "import",
        run,
        help="convert PRODA's input tree (WoSIS NetCDF + CESM2 .mat files) to soc_jax files",
        description=(
            "Read PRODA's data folder as the authors' DA driver does (wosis_2019_snap_shot/ and "
            "cesm2_simu/spinup_ss/, see docs/data.md) and write profiles.nc, forcing.nc and, "
            "with an EnvInfo table, covariates.nc to --out, ready for "
            "'soc-jax calibrate --data OUT'. Prints and writes import_report.txt: profiles "
            "read, kept, skipped and layers dropped, grouped by reason, then one line each."
        ),
        check=_check,
    )
    p.add_argument("--proda-tree", type=existing_dir, required=True, help="PRODA's data folder")
    add_run_options(p, out=None, seed=None)
    p.add_argument(
        "--case", default=None, help="CESM2 case of the .mat files (default: the only one there)"
    )
    p.add_argument(
        "--years",
        nargs=2,
        type=nonneg_int,
        default=None,
        metavar=("FIRST", "LAST"),
        help="years of the climatology in the file names, e.g. 661 680 (default: the only ones)",
    )
    p.add_argument(
        "--profiles",
        type=profile_ids,
        default=None,
        help="comma-separated profile ids (default: all)",
    )
    p.add_argument("--force", action="store_true", help="overwrite files already in --out")


def profile_ids(text: str) -> list[str]:
    """An argparse ``type=``: comma-separated profile ids, none empty."""
    ids = [s.strip() for s in text.split(",")]
    if not all(ids):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated profile ids without empty entries, got {text!r}"
        )
    return ids


def _check(args: argparse.Namespace) -> None:
    """Before any work: the years in order, outputs not overwritten without --force."""
    p = args._parser
    if args.years is not None and args.years[0] > args.years[1]:
        p.error(f"argument --years: FIRST must be <= LAST, got {args.years[0]} {args.years[1]}")
    there = [n for n in OUTPUTS if os.path.exists(os.path.join(args.out, n))]
    if there and not args.force:
        p.error(f"argument --out: {os.path.join(args.out, there[0])} exists (use --force)")


def report_text(tree) -> str:
    """The summary, then every skipped profile and dropped layer with its detail."""
    lines = [tree.summary()]
    for row in tree.report.excluded:
        detail = f" ({row['detail']})" if row.get("detail") else ""
        lines.append(f"skipped profile {row['profile_id']}: {row['reason']}{detail}")
    for row in tree.report.dropped_layers:
        lines.append(
            f"dropped layer of profile {row['profile_id']} (data_soc_integrate row {row['row']}, "
            f"node {row['depth_node_m']:g} m): {row['reason']}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point: check the tree (one line, exit 2, before any work), read, write, report."""
    from .forcing_io import write_forcing
    from .netcdf import write_netcdf
    from .proda_tree import check_proda_tree, load_proda_tree
    from .schema import write_profiles

    years = tuple(args.years) if args.years else None
    check_proda_tree(args.proda_tree, case=args.case, years=years)  # TreeError: one line, exit 2
    tree = load_proda_tree(args.proda_tree, case=args.case, years=years, profiles=args.profiles)
    os.makedirs(args.out, exist_ok=True)
    write_profiles(tree.profiles, os.path.join(args.out, "profiles.nc"))
    write_forcing(tree.forcing, os.path.join(args.out, "forcing.nc"))
    written = ["profiles.nc", "forcing.nc"]
    if tree.covariates is not None:
        write_netcdf(tree.covariates, os.path.join(args.out, "covariates.nc"))
        written.append("covariates.nc")
    elif os.path.exists(os.path.join(args.out, "covariates.nc")):
        os.remove(os.path.join(args.out, "covariates.nc"))  # --force: not this tree's
    text = report_text(tree)
    with open(os.path.join(args.out, "import_report.txt"), "w") as f:
        f.write(text + "\n")
    lines = text.splitlines()
    n_summary = len(tree.summary().splitlines())
    print("\n".join(lines[: n_summary + _MAX_LINES]))
    if len(lines) > n_summary + _MAX_LINES:
        print(f"... {len(lines) - n_summary - _MAX_LINES} more lines in import_report.txt")
    print(f"wrote {', '.join(written)}, import_report.txt to {args.out}")
    return 0
