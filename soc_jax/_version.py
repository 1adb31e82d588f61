"""Provenance shared by every layer: the package version and the command line being run.

It sits below every other module (standard library only, imports nothing from soc_jax), so the
data layer can stamp outputs (`soc_jax.data.netcdf.history_line`) without importing the package
root or the CLI.
"""

from __future__ import annotations

__all__ = ["__version__", "command_line"]

__version__ = "0.1.0"

# The command line being run (``"soc-jax synth --n-sites 300"``), set by `soc_jax.cli.main` for
# the length of a sub-command; output files record it in their ``history`` attribute
# (`soc_jax.data.netcdf.history_line`). None outside the CLI.
command_line: str | None = None
