"""Cost of a log-density gradient relative to a forward evaluation (the gradient samplers' unit).

Times ``jit(vmap(log_pi))`` and ``jit(vmap(value_and_grad(log_pi)))`` of the calibration
log-density (`soc_jax.calibration.gradient.make_log_density`, CLM5, prepared profiles of a
synthetic world) on the same batch, compile time apart, ``--repeat`` calls of each INTERLEAVED
(forward, gradient, forward, ...) so that a shared machine's load hits both alike; reports the
min and median per-call times and the ratio of the medians and of the minima.

Usage::

    python benchmarks/bench_gradient_ratio.py --sizes 12 48 192 --repeat 30

Saved as JSON in ``benchmarks/results/gradient_ratio_<platform>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from benchmarks.bench_steady_state import environment  # noqa: E402
from soc_jax.calibration import gradient  # noqa: E402
from soc_jax.data import pad_observations  # noqa: E402
from soc_jax.data.synthetic import make_world  # noqa: E402
from soc_jax.models import clm5  # noqa: E402


def measure(world, n: int, repeat: int) -> dict:
    idx = np.arange(n) % world.n_sites
    obs = pad_observations(world.profiles.isel(profile=idx))
    forcing = jax.tree.map(lambda a: jnp.asarray(a[idx]), world.forcing_batch())
    data = {
        "forcing": clm5.prepare(forcing, "proda"),
        "depth": jnp.asarray(obs.depth),
        "obs": jnp.asarray(obs.soc),
        "mask": jnp.asarray(obs.mask),
    }
    log_pi = gradient.make_log_density("clm5", "proda")
    z = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (n, len(clm5.PARAMETERS)))
    fns = {
        "forward": jax.jit(jax.vmap(log_pi)),
        "value_and_grad": jax.jit(jax.vmap(jax.value_and_grad(log_pi))),
    }
    res = {"profiles": n}
    for name, f in fns.items():
        t0 = time.perf_counter()
        jax.block_until_ready(f(z, data))
        res[f"{name}_compile_s"] = time.perf_counter() - t0
    times = {k: [] for k in fns}
    for r in range(repeat):
        zz = z + 1e-3 * r
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(zz, data))
            times[name].append(time.perf_counter() - t0)
    for name, t in times.items():
        res[f"{name}_min_s"] = float(np.min(t))
        res[f"{name}_median_s"] = float(np.median(t))
    res["ratio_median"] = res["value_and_grad_median_s"] / res["forward_median_s"]
    res["ratio_min"] = res["value_and_grad_min_s"] / res["forward_min_s"]
    res["forward_us_per_eval_min"] = 1e6 * res["forward_min_s"] / n
    res["uptime"] = os.popen("uptime").read().strip()
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[12, 48, 192])
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--out", default=str(ROOT / "results"))
    args = ap.parse_args(argv)
    world = make_world(24, seed=1, model="clm5")
    rows = []
    for n in args.sizes:
        rows.append(measure(world, n, args.repeat))
        r = rows[-1]
        fw, vg = 1e3 * r["forward_median_s"], 1e3 * r["value_and_grad_median_s"]
        print(
            f"{n:5d} profiles: forward {fw:.2f} ms, value_and_grad {vg:.2f} ms (medians); "
            f"ratio median {r['ratio_median']:.2f}, min {r['ratio_min']:.2f}  [{r['uptime']}]",
            flush=True,
        )
    os.makedirs(args.out, exist_ok=True)
    env = environment()
    path = os.path.join(args.out, f"gradient_ratio_{env.get('platform', 'cpu')}.json")
    with open(path, "w") as f:
        json.dump({"environment": env, "rows": rows}, f, indent=1)
    print("saved", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
