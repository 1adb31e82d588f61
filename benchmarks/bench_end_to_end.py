"""Benchmark: one end-to-end epoch (forward + gradient w.r.t. the network) over BINN's data size.

``--n`` synthetic CLM5 profiles (default 25,925, BINN's number of profiles) from
`soc_jax.data.make_world`, PRODA's network (60 -> 256 -> 512 -> 512 -> 256 -> 21):

* ``soc_jax``: `soc_jax.proda.end_to_end.batch_loss` gradient w.r.t. the network weights over
  all profiles, in chunks of ``--chunk`` profiles inside ONE compiled call (``lax.scan`` over
  chunks, vmapped float64 steady states of prepared profiles, structured solver with implicit
  gradients): the work of one epoch (the optimizer update itself is negligible and left out);
* ``binn_loop``: BINN's way written in JAX for a like-for-like ratio: the network runs batched,
  then a Python loop over profiles calls a jitted per-profile function that builds the DENSE
  140 x 140 system (`CompartmentalOperator.to_dense`), solves it with ``jnp.linalg.solve`` and
  returns the misfit and its gradient w.r.t. that profile's parameters; the network backward
  pass is one batched VJP. Timed on ``--loop-sample`` profiles and EXTRAPOLATED linearly to
  ``--n`` (every profile costs the same; said in the JSON), in float32 (BINN) and float64.

Compile time is reported apart (first call minus a steady-state call). The JSON in
``benchmarks/results/end_to_end_<platform>.json`` records device, versions, precision, load.

Usage::

    python benchmarks/bench_end_to_end.py [--n 25925] [--chunk 1024] [--loop-sample 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def _load() -> float:
    return os.getloadavg()[0]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=25925)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--loop-sample", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from soc_jax.data import covariate_bounds, make_world, minmax_scale
    from soc_jax.data.covariates import covariate_matrix
    from soc_jax.grid import N_LAYERS, ZSOI
    from soc_jax.models import clm5
    from soc_jax.proda import end_to_end as e2e
    from soc_jax.proda.network import PRODANet

    env = {
        "platform": jax.devices()[0].platform,
        "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "equinox": eqx.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "load_average_1min_at_start": _load(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "machine shared with other jobs; see load averages",
    }
    t0 = time.perf_counter()
    world = make_world(args.n, seed=0, model="clm5", grid_resolution=15.0)
    t_world = time.perf_counter() - t0
    vmin, vmax = covariate_bounds(world.grid)
    X = minmax_scale(covariate_matrix(world.covariates), vmin, vmax)
    n = world.n_sites
    n_pad = -(-n // args.chunk) * args.chunk
    obs = world.observations(12)
    t0 = time.perf_counter()
    data = e2e.make_data("clm5", X, world.forcing_batch(), obs)
    jax.block_until_ready(data.prepared)
    t_prep = time.perf_counter() - t0
    print(f"{n} profiles; world {t_world:.0f} s, prepare {t_prep:.1f} s")
    cfg = e2e.E2EConfig(model="clm5")
    net = PRODANet(60, len(clm5.PARAMETERS), key=jax.random.key(0), dtype=jnp.float64)
    idx = jnp.asarray(np.minimum(np.arange(n_pad), n - 1).reshape(-1, args.chunk))
    w = jnp.asarray((np.arange(n_pad) < n).astype(float).reshape(-1, args.chunk))
    key = jax.random.key(1)

    @eqx.filter_jit
    def epoch_grad(model, data):
        def body(acc, iw):
            i, ww = iw
            d = jax.tree.map(lambda a: a[i] if eqx.is_array(a) else a, data)
            (loss, (nf, _)), g = eqx.filter_value_and_grad(e2e.batch_loss, has_aux=True)(
                model, d, ww, key, cfg, False
            )
            acc = jax.tree.map(lambda a, b: a + b, acc, (g, loss, nf))
            return acc, None

        zero = jax.tree.map(jnp.zeros_like, eqx.filter(model, eqx.is_array))
        acc0 = (zero, jnp.zeros(()), jnp.zeros(()))
        return jax.lax.scan(body, acc0, (idx, w))[0]

    rows = []
    t0 = time.perf_counter()
    out = epoch_grad(net, data)
    jax.block_until_ready(out)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = epoch_grad(net, data)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t0)
    t_epoch = min(times)
    rows.append(
        {
            "impl": "soc_jax (vmapped structured steady states, implicit gradients)",
            "precision": "float64",
            "epoch_s": t_epoch,
            "compile_s": first - t_epoch,
            "profiles_per_s": n / t_epoch,
            "measured_profiles": n,
            "failed_profiles": float(out[2]),
            "load_average_1min": _load(),
        }
    )
    print(json.dumps(rows[-1]))

    # BINN's way: per-profile loop of dense solves (jitted per-profile function)
    m = args.loop_sample
    Xs = jnp.asarray(X[:m])
    prep_s = jax.tree.map(lambda a: a[:m] if eqx.is_array(a) else a, data.prepared)
    soil = jnp.asarray([clm5.S1, clm5.S2, clm5.S3])

    def dense_loss(p, prep, depth, o, mask, dtype):
        x = clm5.PARAMETERS.to_physical(jax.nn.sigmoid(p.astype(jnp.float64)))
        mats = clm5.matrices(x, prep)
        A = mats.operator.to_dense().astype(dtype)
        b = mats.inputs.reshape(-1).astype(dtype)
        pools = jnp.linalg.solve(A, b).reshape(clm5.N_POOLS, N_LAYERS)
        soc = jnp.sum(pools[soil], axis=0)
        from soc_jax.grid import pchip_interpolate

        pred = pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS], dtype), soc, depth.astype(dtype))
        safe = jnp.where(mask, jnp.maximum(pred, 1e-6), 1.0)
        e = jnp.where(mask, jnp.log(safe) - jnp.log(jnp.where(mask, o, 1.0)).astype(dtype), 0)
        return jnp.sum(e * e)

    def make_run(dtype):
        per = jax.jit(
            jax.value_and_grad(lambda p, pr, d, o, mk: dense_loss(p, pr, d, o, mk, dtype))
        )
        fwd = eqx.filter_jit(lambda mdl, x: jax.vmap(mdl)(x))
        netd = jax.tree.map(lambda a: a.astype(dtype) if eqx.is_array(a) else a, net)
        Xd = Xs.astype(dtype)

        def run(count):
            # the network forward / backward are batched over all m rows (same shapes in the
            # warm-up and the timed call); the loop solves `count` profiles one by one
            raw, vjp = eqx.filter_vjp(lambda mdl: fwd(mdl, Xd), netd)
            gs = []
            for i in range(count):
                pi = jax.tree.map(lambda a, i=i: a[i], prep_s)
                _, g = per(raw[i], pi, data.depth[i], data.obs[i], data.mask[i])
                gs.append(g)
            cot = jnp.zeros_like(raw).at[:count].set(jnp.stack(gs).astype(raw.dtype))
            grads = vjp(cot)
            jax.block_until_ready(grads)

        return run

    for dtype in (jnp.float32, jnp.float64):
        run = make_run(dtype)
        t0 = time.perf_counter()
        run(2)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        run(m)
        t_m = time.perf_counter() - t0
        per_profile = t_m / m
        rows.append(
            {
                "impl": "BINN-style loop: per-profile jitted dense 140x140 jnp.linalg.solve",
                "precision": jnp.dtype(dtype).name,
                "epoch_s": per_profile * n,
                "extrapolated": True,
                "measured_profiles": m,
                "measured_s": t_m,
                "compile_s": first,
                "profiles_per_s": 1.0 / per_profile,
                "ratio_loop_over_soc_jax": per_profile * n / t_epoch,
                "load_average_1min": _load(),
            }
        )
        print(json.dumps(rows[-1]))
    env["load_average_1min_at_end"] = _load()
    result = {
        "environment": env,
        "n_profiles": n,
        "chunk": args.chunk,
        "network": "60-256-512-512-256-21 (PRODA), float64 in soc_jax, loop dtype in the loop",
        "world_s": t_world,
        "prepare_s": t_prep,
        "results": rows,
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"end_to_end_{env['platform']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
