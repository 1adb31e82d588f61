"""soc_jax: differentiable soil organic carbon modelling in JAX.

The public API, re-exported here:

- process models (one profile, pure, vmappable): ``soc_jax.clm5``, ``soc_jax.compas``;
- building blocks: `Forcing`, `ParameterSpace`, `stocks`, `pchip_interpolate`, `map_profiles`;
- sub-packages: ``soc_jax.data`` (profiles, loaders, synthetic world), ``soc_jax.ude``,
  ``soc_jax.proda`` (the PRODA network, ensembles, global prediction).

soc_jax never switches JAX to float64 on import; call
``jax.config.update("jax_enable_x64", True)`` at the start of your program.

The names are imported on first use (`soc_jax._lazy`), so ``import soc_jax`` and
``soc-jax --help`` do not load JAX.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__ as __version__

if TYPE_CHECKING:
    from . import calibration as calibration
    from . import proda as proda
    from .batching import map_profiles as map_profiles
    from .forcing import Forcing as Forcing
    from .grid import pchip_interpolate as pchip_interpolate
    from .grid import stocks as stocks
    from .models import clm5 as clm5
    from .models import compas as compas
    from .parameters import ParameterSpace as ParameterSpace
    from .parameters import ParameterSpec as ParameterSpec

__all__ = [
    "Forcing",
    "ParameterSpace",
    "ParameterSpec",
    "calibration",
    "clm5",
    "compas",
    "map_profiles",
    "pchip_interpolate",
    "proda",
    "stocks",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "map_profiles": ".batching",
        "Forcing": ".forcing",
        "pchip_interpolate": ".grid",
        "stocks": ".grid",
        "clm5": ".models.clm5",
        "compas": ".models.compas",
        "ParameterSpace": ".parameters",
        "ParameterSpec": ".parameters",
        "proda": ".proda",
        "calibration": ".calibration",
    },
)
