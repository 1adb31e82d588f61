"""Lazy package exports (PEP 562), so that ``import soc_jax`` and the CLI's parsing stay light.

A package ``__init__`` that re-exports names from heavy modules (JAX, xarray, Diffrax) writes::

    from soc_jax._lazy import lazy_exports

    __all__ = ["make_world", "load_csv"]
    __getattr__, __dir__ = lazy_exports(__name__, {
        "make_world": ".synthetic",      # name -> module (relative to the package) holding it
        "load_csv": ".loaders",
    })

and keeps the eager imports under ``if TYPE_CHECKING:`` for type checkers. A name is imported on
first access (``from soc_jax.data import make_world`` works as before) and cached; an unknown
name falls back to the sub-module of that name (``soc_jax.data.schema``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` that import each exported name on first use.

    Args:
        package: the package's ``__name__``.
        exports: exported name -> module that defines it, relative (``".grid"``) or absolute.
            The value ``".models.clm5"`` for the name ``"clm5"`` exports that module itself.

    Returns:
        The module-level ``__getattr__`` and ``__dir__`` of PEP 562.
    """

    def __getattr__(name: str) -> object:
        if name in exports:
            module = importlib.import_module(exports[name], package)
            short = exports[name].rsplit(".", 1)[-1]
            value = module if short == name and not hasattr(module, name) else getattr(module, name)
        elif importlib.util.find_spec(f"{package}.{name}") is not None:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
