"""The ``soc-jax`` command line.

Each sub-command lives beside the code it drives and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed ``argparse.Namespace``).

Conventions every sub-command follows (see `soc_jax._cli_args`):

- options get a checking ``type=`` (``positive_int``, ``nonneg_float``, ``existing_file``, ...) and
  ``formatter_class=HelpFormatter`` (defaults shown), so a bad value is one line naming the flag,
  exit 2;
- before any work `main` runs `soc_jax._cli_args.preflight`: the command's own checks (across
  options, input files, sizes against the memory available) and a write probe of ``--out``,
  before JAX is imported; nothing is written or compiled before a refusal;
- at run time `main` passes every command through `soc_jax._cli_args.run_command`: a missing file
  or a ``ValueError`` from data validation is one line, exit 2 (``SOC_JAX_TRACEBACK=1`` shows the
  traceback);
- parsing stays light: a sub-command module, and its package's ``__init__``, import JAX, xarray and
  matplotlib inside functions, not at module level (`soc_jax._lazy` makes a package ``__init__``
  lazy), so ``soc-jax --help`` answers at once;
- the CLI is an entry point: `main` switches JAX to float64 before any computation.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys

from soc_jax import _version
from soc_jax._cli_args import ArgumentParser, preflight, run_command

# Modules that expose register(subparsers); imported when the parser is built, so keep them light.
_SUBCOMMANDS: tuple[str, ...] = (
    "soc_jax.quickstart",
    "soc_jax.ude.cli",
    "soc_jax.data.cli",
    "soc_jax.data.import_cli",
    "soc_jax.calibration.cli",
    "soc_jax.proda.cli",
    "soc_jax.analysis.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="soc-jax",
        description=(
            "Differentiable soil organic carbon modelling in JAX (CLM5, COMPAS, PRODA, UDE)."
        ),
        epilog=(
            "Run 'soc-jax COMMAND --help' for a command's options. Outputs go to --out; a bad "
            "argument or input file stops with one line and exit status 2 (set "
            "SOC_JAX_TRACEBACK=1 to see the traceback)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for module_name in _SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:  # a sub-command whose module is not there yet
            if err.name != module_name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, switch JAX to float64, run the sub-command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    preflight(args)  # every check before any work: one line naming the flag, exit 2
    import jax

    jax.config.update("jax_enable_x64", True)
    words = sys.argv[1:] if argv is None else argv
    _version.command_line = shlex.join([parser.prog, *words])
    try:
        return run_command(args.func, args, prog=f"{parser.prog} {args.command}")
    finally:
        _version.command_line = None


if __name__ == "__main__":
    sys.exit(main())
