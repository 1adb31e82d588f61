"""The ``soc-jax`` command line.

Each sub-command lives beside the code it drives and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed ``argparse.Namespace``).
The CLI is an entry point, so it switches JAX to float64 before any computation.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, attribute) pairs; imported lazily so `soc-jax --help` stays fast.
_SUBCOMMANDS: tuple[str, ...] = (
    "soc_jax.quickstart",
    "soc_jax.ude.cli",
    "soc_jax.data.cli",
    "soc_jax.calibration.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="soc-jax",
        description=(
            "Differentiable soil organic carbon modelling in JAX (CLM5, COMPAS, PRODA, UDE)."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
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
    import jax

    jax.config.update("jax_enable_x64", True)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result = args.func(args)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
