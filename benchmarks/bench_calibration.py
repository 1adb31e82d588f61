"""Calibration throughput: batched JAX adaptive Metropolis vs PRODA's one-chain NumPy loop.

Measured in one run on one machine (CLM5, profiles of a synthetic world):

- ``jax``: `soc_jax.calibration.am.run_block` on P profiles x 3 chains (one compiled
  ``jit(vmap(vmap(scan)))``), timed over ``--steps`` steps after a warm-up call (the compile time
  is reported apart), best of ``--repeat``. Model evaluations per second = P x 3 x steps / time.
- ``numpy``: `benchmarks.baselines.numpy_proda_am.run_chain` (one profile, one chain, Python loop,
  NumPy CLM5 with a dense LU per evaluation, the formal covariance recomputed from the whole
  record each step as PRODA's MATLAB does), ``--numpy-steps`` test + formal steps, per step; the
  cost of ``cov`` of a 25,000-row record (the average record length of the 46,000 adapted
  formal steps) is timed apart and added for the protocol estimate.

Each JAX size is timed twice: a block of test-run steps and a block of adapted formal-run steps
(Cholesky factor of the proposal covariance and Welford update every step). Extrapolated protocol
cost per profile (3 chains x (1 + 20,000 + 50,000) steps, no restart or discard, which add whole
test/formal runs when they happen): JAX = 20,001 t_test + 50,000 t_formal with t the seconds per
batched step per profile (all 3 chains); NumPy = 3 x (20,000 t_test + 50,000 t_formal + 46,000
t_cov(25,000)) with t per step of one chain.

Usage::

    python benchmarks/bench_calibration.py                   # 10 and 100 profiles
    python benchmarks/bench_calibration.py --sizes 10 100 1000 --steps 200

Saved as JSON in ``benchmarks/results/calibration_<platform>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.baselines import numpy_proda_am  # noqa: E402
from benchmarks.bench_steady_state import environment  # noqa: E402
from soc_jax.calibration import am  # noqa: E402
from soc_jax.calibration.likelihood import make_evaluator  # noqa: E402
from soc_jax.data import pad_observations  # noqa: E402
from soc_jax.data.synthetic import make_world  # noqa: E402
from soc_jax.models import clm5  # noqa: E402

PROTOCOL_STEPS = 1 + 20000 + 50000
N_CHAINS = 3


def jax_rate(world, n_profiles: int, steps: int, repeat: int, phase: str = "test") -> dict:
    """Time ``steps`` AM steps of every chain, all in the test run or all in the adapted formal run.

    ``phase="formal"`` uses a 2-step test run and ``adapt_start=0`` so that the timed steps are
    formal steps with the running covariance (Cholesky factor and Welford update every step).
    """
    idx = np.arange(n_profiles) % world.n_sites
    obs = pad_observations(world.profiles.isel(profile=idx))
    forcing = jax.tree.map(lambda a: jnp.asarray(a[idx]), world.forcing_batch())
    forcing = clm5.prepare(forcing, "proda")  # as the driver does: forcing-only work once
    data = {
        "forcing": forcing,
        "depth": jnp.asarray(obs.depth),
        "obs": jnp.asarray(obs.soc),
        "mask": jnp.asarray(obs.mask),
    }
    ev = make_evaluator("clm5", "proda")
    # the protocol's settings; the timed block sits in the test run (steps < n_test)
    cfg = am.AMConfig() if phase == "test" else am.AMConfig(n_test=2, adapt_start=0)
    keys = jax.vmap(lambda i: am.chain_keys(jax.random.fold_in(jax.random.PRNGKey(0), i), 3))(
        jnp.arange(n_profiles)
    )
    states = am.init_chains(cfg, n_profiles, N_CHAINS, 21, obs.depth.shape[1])
    t0 = time.perf_counter()
    states = jax.block_until_ready(am.run_block(states, data, keys, ev, cfg, steps))
    first = time.perf_counter() - t0
    if phase == "formal":  # leave the start and the test run behind before timing
        assert np.all(np.asarray(states.phase) == am.FORMAL)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        states = jax.block_until_ready(am.run_block(states, data, keys, ev, cfg, steps))
        best = min(best, time.perf_counter() - t0)
    evals = n_profiles * N_CHAINS * steps
    rate = evals / best
    return {
        "impl": "jax",
        "phase": phase,
        "profiles": n_profiles,
        "steps": steps,
        "seconds": best,
        "compile_seconds": first - best,
        "evals_per_s": rate,
        "us_per_step_per_chain": 1e6 * best / (steps * n_profiles * N_CHAINS),
        "s_per_step_per_profile": best / steps / n_profiles,
    }


def numpy_rate(world, steps: int) -> dict:
    forcing = {k: np.asarray(v[0]) for k, v in world.forcing_batch().as_numpy().items()}
    m = world.profiles["mask"].values[0].astype(bool)
    obs = world.profiles["soc"].values[0, m]
    depth = world.profiles["depth_node"].values[0, m]

    def physical(p):
        return np.asarray(clm5.PARAMETERS.to_physical(np.asarray(p)))

    res = numpy_proda_am.run_chain(
        forcing, obs, depth, steps, steps, np.random.default_rng(0), physical, adapt_start=steps
    )
    t_test = res["seconds_test"] / steps
    t_formal = res["seconds_formal"] / steps
    rec = np.random.default_rng(1).random((25000, 21))
    t0 = time.perf_counter()
    for _ in range(5):
        np.cov(rec, rowvar=False)
    t_cov = (time.perf_counter() - t0) / 5
    protocol = N_CHAINS * (20000 * t_test + 50000 * t_formal + 46000 * t_cov)
    return {
        "impl": "numpy",
        "profiles": 1,
        "steps": 2 * steps,
        "s_per_step_test": t_test,
        "s_per_step_formal_without_cov": t_formal,
        "s_cov_25000_rows": t_cov,
        "evals_per_s": 1.0 / (0.5 * (t_test + t_formal)),
        "protocol_s_per_profile": protocol,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--steps", type=int, default=200, help="JAX steps per timed block")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--numpy-steps", type=int, default=150, help="NumPy test + formal steps each")
    ap.add_argument("--out", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    env = environment()
    print("environment:", json.dumps(env), flush=True)
    world = make_world(max(20, min(max(args.sizes), 100)), seed=11, model="clm5")
    rows = []
    base = numpy_rate(world, args.numpy_steps)
    rows.append(base)
    print(json.dumps(base), flush=True)
    for n in args.sizes:
        test = jax_rate(world, n, args.steps, args.repeat, "test")
        formal = jax_rate(world, n, args.steps, args.repeat, "formal")
        # protocol: 1 + 20,000 test steps and 50,000 formal steps per chain (3 chains batched)
        protocol = 20001 * test["s_per_step_per_profile"] + 50000 * formal["s_per_step_per_profile"]
        for row in (test, formal):
            row["speedup_evals_vs_numpy"] = row["evals_per_s"] / base["evals_per_s"]
            row["protocol_s_per_profile"] = protocol
            row["speedup_protocol_vs_numpy"] = base["protocol_s_per_profile"] / protocol
            rows.append(row)
            print(json.dumps(row), flush=True)
    env["load_average_1min_at_end"] = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"calibration_{env['platform']}.json"
    path.write_text(json.dumps({"environment": env, "results": rows}, indent=1))
    print(f"saved {path}")
    head = f"{'impl':<6}{'phase':<8}{'profiles':>9}{'evals/s':>12}{'us/step/chain':>15}"
    print(f"\n{head}{'protocol s/profile':>20}{'x numpy':>9}")
    for r in rows:
        us = r.get("us_per_step_per_chain", 1e6 / r["evals_per_s"])
        print(
            f"{r['impl']:<6}{r.get('phase', 'both'):<8}{r['profiles']:>9}"
            f"{r['evals_per_s']:>12.4g}{us:>15.4g}{r['protocol_s_per_profile']:>20.4g}"
            f"{r.get('speedup_protocol_vs_numpy', 1.0):>9.3g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
