"""Batched site-level calibration: PRODA's costs, its adaptive Metropolis over profiles x chains,
post-processing (Gelman-Rubin as coded, rank R-hat, ESS, GEV mode, site filter) and a chunked,
resumable driver (``soc-jax calibrate``).
"""

from . import likelihood as likelihood

__all__ = ["likelihood"]
