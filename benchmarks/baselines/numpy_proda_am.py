"""PRODA's adaptive Metropolis the way its MATLAB driver does it: one profile, one chain, a Python
loop over steps, the NumPy CLM5 baseline (``numpy_clm5``) for every evaluation (SPEC 6).

This is the baseline of ``benchmarks/bench_calibration.py`` (and an independent transcription of
the sampler): the test run's box proposal re-drawn until inside (0, 1), the annealed acceptance
``(simu + 2)^(-dJ)``, the formal run starting with ``J(p0)``, the failed-simulation penalty
``J_old + 100`` with the stale dJ in the formal run, and the formal covariance recomputed from the
*whole* formal record every step after step 4000 (``cov(parameters_rec2(1:simu, :))``), as the
MATLAB code does. Restarts/discards are not exercised (the timing runs are short).
"""

from __future__ import annotations

import time

import numpy as np
from scipy.interpolate import PchipInterpolator

from . import numpy_clm5

ZSOI20 = np.array(
    [0.01, 0.04, 0.09, 0.16, 0.26, 0.40, 0.58, 0.80, 1.06, 1.36, 1.70, 2.08, 2.50, 2.99, 3.58,
     4.27, 5.06, 5.95, 6.94, 8.03]
)  # fmt: skip


def clm5_cost(mod: np.ndarray, obs: np.ndarray, depth: np.ndarray) -> float:
    """PRODA's ``cost_fun.m`` for CLM5 (rank weights, sd 0.6 o), plain NumPy."""
    r_obs = np.empty(obs.size)
    r_obs[np.argsort(-np.abs(obs - obs.mean()), kind="stable")] = np.arange(1, obs.size + 1)
    r_dep = np.empty(obs.size)
    r_dep[np.argsort(-np.abs(depth - depth.mean()), kind="stable")] = np.arange(1, obs.size + 1)
    w = np.maximum(10 * np.exp(-((r_obs + r_dep) / 2 - 1)), 1.0)
    return float(np.nansum(w * (mod - obs) ** 2 / (2 * (0.6 * obs) ** 2)))


def evaluate(p: np.ndarray, forcing: dict, obs: np.ndarray, depth: np.ndarray, physical):
    """(J, failed) of normalized parameters p for one profile."""
    res = numpy_clm5.steady_state(physical(p), forcing, "proda", exact_rcond=False)
    if not res["ok"]:
        return np.nan, True
    mod = PchipInterpolator(ZSOI20, res["soc"], extrapolate=True)(depth)
    return clm5_cost(mod, obs, depth), False


def run_chain(
    forcing: dict,
    obs: np.ndarray,
    depth: np.ndarray,
    n_test: int,
    n_formal: int,
    rng: np.random.Generator,
    physical=numpy_clm5.to_physical,
    n_params: int = 21,
    adapt_start: int = 4000,
) -> dict:
    """One chain: test run then formal run, MATLAB style. Returns records and timings (s).

    ``physical`` maps normalized to physical parameters (pass the soc_jax ParameterSpace's
    ``to_physical`` wrapped in ``np.asarray`` for log-scaled parameters).
    """
    p0 = np.full(n_params, 0.5)
    j0, _ = evaluate(p0, forcing, obs, depth, physical)
    allow = 5.0
    theta, j_old = p0.copy(), j0
    rec1 = np.zeros((n_test, n_params))
    acc1 = 0
    t0 = time.perf_counter()
    for simu in range(1, n_test + 1):
        while True:  # re-draw until inside the box
            prop = theta + (rng.random(n_params) - 0.5) / allow
            if np.all((prop > 0) & (prop < 1)):
                break
        j_new, failed = evaluate(prop, forcing, obs, depth, physical)
        if failed:
            j_new = j_old + 100.0
        dj = j_new - j_old
        if min(1.0, np.exp(-dj * np.log(simu + 2))) > rng.random():
            theta, j_old = prop, j_new
            acc1 += 1
        rec1[simu - 1] = theta
    t_test = time.perf_counter() - t0

    sd = 2.4 / n_params
    cov = sd * np.cov(rec1, rowvar=False)
    rec2 = np.zeros((n_formal, n_params))
    j_old, dj, acc2 = j0, 0.0, 0
    t0 = time.perf_counter()
    t_cov = 0.0
    for simu in range(1, n_formal + 1):
        if simu > adapt_start:
            tc = time.perf_counter()
            cov = sd * np.cov(rec2[:simu], rowvar=False)  # the whole record, every step
            t_cov += time.perf_counter() - tc
        while True:
            prop = rng.multivariate_normal(theta, cov)
            if np.all((prop > 0) & (prop < 1)):
                break
        j_new, failed = evaluate(prop, forcing, obs, depth, physical)
        if failed:
            j_new = j_old + 100.0  # dJ is not recomputed (SPEC 6 driver detail 1)
        else:
            dj = j_new - j_old
        if min(1.0, np.exp(-dj * np.log(simu + 2))) > rng.random():
            theta, j_old = prop, j_new
            acc2 += 1
        rec2[simu - 1] = theta
    t_formal = time.perf_counter() - t0
    return {
        "rec_test": rec1,
        "rec_formal": rec2,
        "acc_test": acc1,
        "acc_formal": acc2,
        "seconds_test": t_test,
        "seconds_formal": t_formal,
        "seconds_formal_cov": t_cov,
    }
