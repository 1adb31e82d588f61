"""Shared test utilities: forcings that exercise every branch of the models."""

from __future__ import annotations

import numpy as np

from soc_jax.examples import example_forcing
from soc_jax.forcing import Forcing


def branch_forcings(n: int, seed: int) -> list[Forcing]:
    """``n`` single-profile forcings that cycle through the model branches.

    Kinds, in turn: temperate (bioturbation, bedrock at 20), permafrost with cryoturbation,
    frozen all year (no transport, all input into layer 1), shallow bedrock, and permafrost
    with ALTMAX_LASTYEAR = 0 in some months (surface-input branch with transport).
    """
    batch, _ = example_forcing(8 * n, seed)
    arrays = batch.as_numpy()
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = {k: v[i].copy() for k, v in arrays.items()}
        kind = i % 5
        if kind == 0:
            f["nbedrock"][:] = 20
            f["altmax"][:] = f["altmax_lastyear"][:] = 8.6
        elif kind == 1:
            amax = rng.uniform(0.3, 1.9)
            f["altmax"][:] = amax
            f["altmax_lastyear"][:] = amax * rng.uniform(0.8, 1.0)
            f["nbedrock"][:] = rng.choice([20, 12, 7])
        elif kind == 2:
            f["altmax"][:] = f["altmax_lastyear"][:] = 0.0
            f["tsoi"] = np.minimum(f["tsoi"], 270.0)
        elif kind == 3:
            f["nbedrock"][:] = rng.integers(3, 19)
            f["altmax"][:] = f["altmax_lastyear"][:] = 8.6
        else:
            f["altmax"][:] = rng.uniform(0.5, 1.5)
            f["altmax_lastyear"][:] = f["altmax"]
            f["altmax_lastyear"][:3] = 0.0
            f["nbedrock"][:] = 20
        out.append(Forcing(**f))
    return out
