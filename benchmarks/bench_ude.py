"""Benchmark: SOC UDE forward solve and loss+gradient step vs a SciPy method-of-lines baseline.

Measures, for Nz = 30 and a 50-year horizon (51 annual outputs, rtol = atol = 1e-5, Tsit5 + PID):

* JAX forward solve (jitted; the neural UDE of Case 4's architecture);
* JAX loss + gradient (RecursiveCheckpointAdjoint), i.e. one training step's differentiation;
* the SciPy baseline: ``solve_ivp(method="RK45")`` of the same semi-discrete UDE with the same
  networks evaluated in NumPy, same tolerances (forward only; SciPy has no adjoint);

compile time is reported apart (first call minus steady-state call). Timings are
``min(timeit.repeat(..., number=1, repeat=N))``. Results go to
``benchmarks/results/ude_bench.json`` with device, versions and precision.

Usage::

    python benchmarks/bench_ude.py [--repeat 30] [--out benchmarks/results/ude_bench.json]

References:
    Raju G.V.V. S. et al. (2025), seed ``002_b37d5f09a3b95671``, Sec 2.2 (N_z = 30, Tsit5,
    tolerances 1e-5 / 1e-6).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import time
import timeit


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import diffrax
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import jax.random as jr
    import numpy as np
    from scipy.integrate import solve_ivp

    jax.config.update("jax_enable_x64", True)
    from soc_jax.ude.synthetic import SyntheticConfig, make_dataset
    from soc_jax.ude.train import TrainConfig, Weights, filter_spec, init_model, objective
    from soc_jax.ude.vector_field import solve

    data = make_dataset(SyntheticConfig(noise=0.07), jr.key(0))
    cfg = TrainConfig(hidden=(32, 16), activation="tanh", rtol=args.rtol, atol=args.rtol)
    model = init_model(cfg, 30, jr.key(1))
    # give the zero-initialised last layers non-zero weights so the nets are active
    model = eqx.tree_at(lambda m: m.reaction.w3, model, replace=0.1 * jr.normal(jr.key(2), (2, 16)))
    params, static = eqx.partition(model, filter_spec(model, False))
    weights = Weights.from_config(cfg)
    spec = cfg.objective_spec("terminal")

    @eqx.filter_jit
    def forward(m):
        return solve(m, data.c0, data.drivers_obs, data.ts, rtol=args.rtol, atol=args.rtol)[0]

    grad_fn = eqx.filter_jit(eqx.filter_value_and_grad(objective))

    def timed(fn):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        first = time.perf_counter() - t0
        best = min(timeit.repeat(lambda: jax.block_until_ready(fn()), number=1, repeat=args.repeat))
        return first, best

    load_before = os.getloadavg()
    f_first, f_run = timed(lambda: forward(model))
    g_first, g_run = timed(lambda: grad_fn(params, static, data, weights, spec))

    # the same with the PID controller stepping to the driver knots (the setting of the noisy
    # cases, see soc_jax.ude.vector_field.solve(step_to_knots=True))
    @eqx.filter_jit
    def forward_knots(m):
        kw = dict(rtol=args.rtol, atol=args.rtol, step_to_knots=True)
        return solve(m, data.c0, data.drivers_obs, data.ts, **kw)[0]

    spec_k = dataclasses.replace(spec, step_to_knots=True)
    fk_first, fk_run = timed(lambda: forward_knots(model))
    gk_first, gk_run = timed(lambda: grad_fn(params, static, data, weights, spec_k))

    # step count of the JAX solve, for equal-work comparison
    def solve_stats(controller):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(model),
            diffrax.Tsit5(),
            data.ts[0],
            data.ts[-1],
            0.05,
            data.c0,
            args=data.drivers_obs,
            saveat=diffrax.SaveAt(ts=data.ts),
            stepsize_controller=controller,
        )

    pid = diffrax.PIDController(rtol=args.rtol, atol=args.rtol)
    sol = solve_stats(pid)
    jax_steps = int(sol.stats["num_steps"])
    jax_rejected = int(sol.stats["num_rejected_steps"])
    sol_k = solve_stats(diffrax.ClipStepSizeController(pid, step_ts=data.ts))

    # SciPy baseline: same RHS in NumPy (weights copied out of the Equinox model)
    def np_mlp(k):
        r = model.reaction
        ws = [
            (np.asarray(r.w1[k]), np.asarray(r.b1[k])),
            (np.asarray(r.w2[k]), np.asarray(r.b2[k])),
            (np.asarray(r.w3[k])[None, :], np.asarray(r.b3[k])[None]),
        ]

        def f(x):  # x: (nz, 6)
            for w, b in ws[:-1]:
                x = np.tanh(x @ w.T + b)
            w, b = ws[-1]
            return (x @ w.T + b)[:, 0]

        return f

    rx = model.reaction
    prod, resp = np_mlp(0), np_mlp(1)
    centre = np.asarray(rx.scaling.centre)[None, :]
    half = np.asarray(rx.scaling.half_range)[None, :]
    z = np.asarray(data.z)
    ts = np.asarray(data.ts)
    drv = np.asarray(data.drivers_obs.values)
    dz = z[1] - z[0]
    D, v, s = float(model.transport.diffusivity), float(model.transport.velocity), rx.output_scale

    def softplus(x):
        return np.logaddexp(0.0, x)

    def rhs(t, c):
        k = min(max(np.searchsorted(ts, t, side="right") - 1, 0), ts.size - 2)
        w = (t - ts[k]) / (ts[k + 1] - ts[k])
        env = drv[:, k] * (1 - w) + drv[:, k + 1] * w
        g = np.concatenate([c[1:2], c, c[-2:-1]])
        out = D * (g[2:] - 2 * c + g[:-2]) / dz**2 - v * (g[2:] - g[:-2]) / (2 * dz)
        x = (np.stack([env[0], c, env[1], env[2], z, np.full_like(c, t)], axis=1) - centre) / half
        return out + s * softplus(prod(x)) - s * c * softplus(resp(x))

    def scipy_solve():
        return solve_ivp(
            rhs,
            (ts[0], ts[-1]),
            np.asarray(data.c0),
            t_eval=ts,
            method="RK45",
            rtol=args.rtol,
            atol=args.rtol,
        )

    ref = scipy_solve()
    s_run = min(timeit.repeat(scipy_solve, number=1, repeat=max(3, args.repeat // 5)))
    agree = float(np.max(np.abs(ref.y.T - np.asarray(forward(model)))))

    # many configurations at once (soc_jax.ude.search): loss + gradient of K members of the
    # same architecture in one shared-step solve, float64 and float32 networks
    from soc_jax.ude.search import batched_losses, make_member, stack

    @eqx.filter_jit
    def batched_grad(bp, bs, bw, bspec):
        total = lambda p: jnp.sum(batched_losses(p, bs, data, bw, bspec)[0])
        return eqx.filter_grad(total)(bp)

    def batched_call(k, *, float32, select):
        """Loss + gradient of K stacked (32, 16) members with active last layers."""
        ms = [
            eqx.tree_at(
                lambda m: m.reaction.w3,
                make_member(cfg, 30, jr.key(10 + i), (32, 16), select, float32=float32),
                replace=0.1 * jr.normal(jr.key(20 + i), (2, 16)),
            )
            for i in range(k)
        ]
        bp, bs = eqx.partition(stack(ms), filter_spec(ms[0], False))
        bw = stack([Weights.from_config(cfg)] * k)
        bspec = dataclasses.replace(spec, step_to_knots=True)
        return functools.partial(batched_grad, bp, bs, bw, bspec)

    batched = {}
    for f32 in (False, True):
        for k in args.batch:
            first, run = timed(batched_call(k, float32=f32, select=False))
            key = f"{'float32' if f32 else 'float64'}_nets_K{k}"
            batched[key] = {
                "loss_grad_ms": 1e3 * run,
                "per_config_ms": 1e3 * run / k,
                "compile_s": first - run,
            }
            print(f"batched {key}: {1e3 * run:.1f} ms, {1e3 * run / k:.2f} ms per configuration")

    # two batches at once from two Python threads (each XLA solve keeps one core busy; the
    # search and the retraining run their chunks this way): per-configuration wall time
    from concurrent.futures import ThreadPoolExecutor

    threaded = {}
    for k in args.batch:
        call = batched_call(k, float32=True, select=True)
        jax.block_until_ready(call())
        n_calls = max(4, args.repeat // 2)

        def work(n, call=call):
            for _ in range(n):
                jax.block_until_ready(call())

        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.threads) as pool:
                list(pool.map(work, [n_calls] * args.threads))
            best = min(best, time.perf_counter() - t0)
        per_config = best / (n_calls * args.threads * k)
        threaded[f"float32_nets_select_K{k}_threads{args.threads}"] = {
            "wall_s": best,
            "calls_per_thread": n_calls,
            "per_config_ms": 1e3 * per_config,
        }
        print(f"{args.threads} threads x K={k}: {1e3 * per_config:.2f} ms per configuration")

    out = {
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "equinox": eqx.__version__,
        "precision": "float64",
        "nz": 30,
        "n_times": int(ts.size),
        "rtol": args.rtol,
        "hidden": [32, 16],
        "data_noise": 0.07,
        "load_average_1_5_15_before": list(load_before),
        "load_average_1_5_15_after": list(os.getloadavg()),
        "jax_steps": jax_steps,
        "jax_rejected_steps": jax_rejected,
        "knots_jax_steps": int(sol_k.stats["num_steps"]),
        "knots_jax_rejected_steps": int(sol_k.stats["num_rejected_steps"]),
        "knots_forward_ms": 1e3 * fk_run,
        "knots_forward_compile_s": fk_first - fk_run,
        "knots_loss_grad_ms": 1e3 * gk_run,
        "knots_loss_grad_compile_s": gk_first - gk_run,
        "scipy_rhs_evals": int(ref.nfev),
        "forward_ms": 1e3 * f_run,
        "forward_compile_s": f_first - f_run,
        "loss_grad_ms": 1e3 * g_run,
        "loss_grad_compile_s": g_first - g_run,
        "scipy_forward_ms": 1e3 * s_run,
        "ratio_scipy_over_jax_forward": s_run / f_run,
        "ratio_scipy_forward_over_jax_loss_grad": s_run / g_run,
        "max_abs_diff_jax_vs_scipy": agree,
        "target_loss_grad_ms": 5.0,
        "batched_knots_loss_grad": batched,
        "threaded_knots_loss_grad": threaded,
    }
    print(json.dumps(out, indent=2))
    print(
        f"forward: JAX {out['forward_ms']:.2f} ms vs SciPy {out['scipy_forward_ms']:.2f} ms "
        f"(x{out['ratio_scipy_over_jax_forward']:.1f}); loss+grad {out['loss_grad_ms']:.2f} ms "
        f"(target <= 5 ms); compile fwd {out['forward_compile_s']:.1f} s, "
        f"grad {out['loss_grad_compile_s']:.1f} s"
    )
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="SOC UDE benchmark (JAX vs SciPy solve_ivp)")
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument(
        "--batch", type=int, nargs="+", default=[1, 8], help="configurations per batched step"
    )
    p.add_argument(
        "--threads", type=int, default=2, help="concurrent batches in the threaded measurement"
    )
    p.add_argument("--out", default="benchmarks/results/ude_bench.json")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main(parse_args()))
