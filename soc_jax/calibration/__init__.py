"""Batched site-level calibration: PRODA's costs, its adaptive Metropolis over profiles x chains
or gradient-based BlackJAX samplers (NUTS, MALA, ChEES; `gradient`),
post-processing (Gelman-Rubin as coded, rank R-hat, ESS, GEV mode, site filter) and a chunked,
resumable driver (``soc-jax calibrate``). See docs/calibration.md.

Sub-modules load on first use, so that ``soc-jax --help`` (which imports ``.cli``) does not
import JAX or xarray.
"""

from __future__ import annotations

import importlib

_SUBMODULES = (
    "am",
    "am_state",
    "cli",
    "driver",
    "figures",
    "gradient",
    "likelihood",
    "posterior_file",
    "postprocess",
)
_EXPORTS = {"AMConfig": "am", "Settings": "driver", "calibrate": "driver"}

__all__ = [
    "AMConfig",
    "Settings",
    "calibrate",
    "am",
    "driver",
    "gradient",
    "likelihood",
    "postprocess",
]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES) | set(_EXPORTS))
