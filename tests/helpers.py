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


REGIMES = ("temperate", "tropical", "permafrost", "frozen", "shallow bedrock", "surface input")


def regime_forcings(n: int, seed: int) -> list[tuple[str, Forcing]]:
    """``n`` (regime, forcing) pairs cycling through `REGIMES`.

    The five kinds of `branch_forcings` plus a tropical one (warm, wet, thawed, deep bedrock),
    so that every forcing regime the models meet is exercised: both transport regimes, no
    transport, shallow bedrock and both input-profile branches.
    """
    branch = branch_forcings(n, seed)
    rng = np.random.default_rng(seed + 1)
    out = []
    order = (0, None, 1, 2, 3, 4)  # branch_forcings kind per regime (None: tropical)
    for i in range(n):
        kind = order[i % len(order)]
        if kind is None:
            f = branch[i].as_numpy()
            f["tsoi"] = rng.uniform(296.0, 303.0, f["tsoi"].shape)
            f["w_scalar"] = rng.uniform(0.7, 1.0, f["w_scalar"].shape)
            f["nbedrock"][:] = 20
            f["altmax"][:] = f["altmax_lastyear"][:] = 8.6
            forcing = Forcing(**f)
        else:
            forcing = branch_forcings(5, seed + i)[kind]
        out.append((REGIMES[i % len(order)], forcing))
    return out


def run_on_host_devices(script: str, n_devices: int, marker: str) -> None:
    """Run ``script`` in a fresh Python with ``n_devices`` forced host (CPU) devices and check
    that it exits 0 and prints ``marker`` (the device count is fixed when JAX starts, so this
    needs its own process)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}
    env["PYTHONPATH"] = os.getcwd() + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert marker in out.stdout, out.stdout[-3000:]
