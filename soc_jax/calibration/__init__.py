"""Batched site-level calibration: PRODA's costs, its adaptive Metropolis over profiles x chains,
post-processing (Gelman-Rubin as coded, rank R-hat, ESS, GEV mode, site filter) and a chunked,
resumable driver (``soc-jax calibrate``). See docs/calibration.md.
"""

from . import am as am
from . import driver as driver
from . import likelihood as likelihood
from . import postprocess as postprocess
from .am import AMConfig as AMConfig
from .driver import Settings as Settings
from .driver import calibrate as calibrate

__all__ = ["AMConfig", "Settings", "am", "calibrate", "driver", "likelihood", "postprocess"]
