"""Steady-state throughput: soc_jax (structured and dense) against the NumPy baselines.

For 1, 100 and 10,000 profiles it times, in one run on one machine:

- ``numpy``: the independent baseline done the way PRODA's MATLAB code does it (12 monthly dense
  matrices, averaged, dense LU with LAPACK's rcond), profile after profile;
- ``jax-dense``: soc_jax with the dense (P*L)x(P*L) ``jnp.linalg.solve`` reference path, vmapped;
- ``jax-structured``: soc_jax's structured solver, vmapped;
- ``jax-structured-chunked``: the same, vmapped over chunks of 128 profiles inside one compiled
  loop (`soc_jax.batching.map_profiles`), for batches larger than a chunk;
- ``jax-prepared`` / ``jax-prepared-chunked``: the same on prepared profiles
  (``model.prepare(forcing)`` once, timed apart as ``prepare_s``), what calibration and training
  evaluate: the forcing is fixed while the parameters change;
- ``numpy-stacked``: the strongest plain-NumPy way, one stacked ``np.linalg.solve`` of the same
  pre-assembled dense systems (CLM5 140x140, COMPAS's 80x80 litter system; assembly by the
  baseline excluded from the time, so this is the solve alone);

each forward only and forward + gradient (``vmap(grad)`` of a scalar SOC misfit with respect to
all parameters; the NumPy baseline has no gradient). Compiled code is timed after a warm-up
call (the compile time is reported apart) as the best of ``--repeat`` runs with
``block_until_ready``. Ratios are to the NumPy baseline measured in the same run. A breakdown of
the structured forward pass (matrix build, solve, condition number) shows where the time goes.

Usage::

    python benchmarks/bench_steady_state.py                 # CLM5 and COMPAS, 1/100/10000
    python benchmarks/bench_steady_state.py --sizes 1 100 --models clm5 --numpy-max 200

Results are printed and saved as JSON in ``benchmarks/results/`` with device, versions and
precision.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import sys
import time
from pathlib import Path

# The baseline's 140x140 LU is fastest on one BLAS thread (threads only add synchronisation at
# this size, and oversubscribe the cores JAX also uses); give NumPy its best setting.
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from soc_jax import linalg  # noqa: E402
from soc_jax.batching import map_profiles  # noqa: E402
from soc_jax.examples import example_forcing  # noqa: E402
from soc_jax.grid import ZSOI, pchip_interpolate  # noqa: E402

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

OBS_DEPTH = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0])  # m, a typical sampled profile
CHUNK = 128  # profiles per vmapped chunk in the chunked variant (soc_jax.batching)


def model_registry() -> dict:
    """Models that are available: soc_jax module and NumPy baseline module."""
    models = {}
    for name, baseline in (("clm5", "numpy_clm5"), ("compas", "numpy_compas")):
        try:
            module = importlib.import_module(f"soc_jax.models.{name}")
            base = importlib.import_module(f"benchmarks.baselines.{baseline}")
        except ModuleNotFoundError:
            continue
        models[name] = (module, base)
    return models


def best_time(fn, *args, repeat: int) -> tuple[float, float]:
    """(first-call time incl. compile, best steady time) in seconds."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return first, min(times)


def make_inputs(module, n: int, seed: int = 0):
    forcing, _ = example_forcing(n, seed)
    space = module.PARAMETERS
    p = np.random.default_rng(seed).uniform(0.05, 0.95, (n, len(space)))
    params = np.asarray(space.to_physical(p))
    return params, forcing


def numpy_stacked(name, baseline, params, forcing, n: int) -> float:
    """Steady states per second of one stacked ``np.linalg.solve`` of pre-assembled systems.

    The baseline assembles the dense systems of ``n`` profiles (not timed); the solve of all of
    them at once (LAPACK gesv per system, looped in C) is timed, best of three.
    """
    systems, rhs = [], []
    for i in range(n):
        f = forcing[i].as_numpy()
        if name == "clm5":
            m = baseline.build_matrices(params[i], f, mode="proda")
            systems.append(m["V"] - m["A"] @ m["K"])
        else:
            m = baseline.build_litter_matrices(params[i], f, mode="proda")
            systems.append(m["V4"] - m["A4"] @ m["K4"])
        rhs.append(m["I"].reshape(-1, 1))
    S, b = np.stack(systems), np.stack(rhs)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        np.linalg.solve(S, b)
        times.append(time.perf_counter() - t0)
    return n / min(times)


def bench_model(name, module, baseline, sizes, repeat, numpy_max, dense_max, stack_max):
    rows = []

    def misfit(params, forcing, method):
        res = module.steady_state(params, forcing, method=method)
        model = pchip_interpolate(ZSOI[:20], res.soc, OBS_DEPTH)
        return jnp.sum(jnp.where(res.ok, jnp.log1p(jnp.abs(model)), 0.0))

    for n in sizes:
        params, forcing = make_inputs(module, n)
        forcing_j = jax.tree.map(jnp.asarray, forcing)
        # NumPy baseline, profile by profile (capped; its cost is linear in n)
        n_np = min(n, numpy_max)
        forcing_np = [forcing[i].as_numpy() for i in range(n_np)]
        t0 = time.perf_counter()
        baseline.steady_states(params[:n_np], forcing_np, mode="proda")
        t_np = (time.perf_counter() - t0) / n_np  # s per profile
        np_rate = 1.0 / t_np
        rows.append(
            dict(
                model=name,
                n=n,
                impl="numpy",
                kind="forward",
                rate=np_rate,
                compile_s=0.0,
                measured_profiles=n_np,
            )
        )
        print(
            f"{name:7s} n={n:6d} numpy            forward   {np_rate:12.1f} /s  "
            f"(loop over {n_np} profiles)",
            flush=True,
        )
        stacked_rate = numpy_stacked(name, baseline, params, forcing, min(n, stack_max))
        rows.append(
            dict(model=name, n=n, impl="numpy-stacked", kind="forward", rate=stacked_rate,
                 compile_s=0.0, measured_profiles=min(n, stack_max))
        )  # fmt: skip
        print(
            f"{name:7s} n={n:6d} numpy-stacked    solve     {stacked_rate:12.1f} /s  "
            f"(np.linalg.solve of {min(n, stack_max)} pre-assembled systems)",
            flush=True,
        )
        t0 = time.perf_counter()
        prepared = jax.block_until_ready(jax.jit(module.prepare)(forcing_j))
        prepare_s = time.perf_counter() - t0
        methods = ("dense", "structured", "structured-chunked", "prepared", "prepared-chunked")
        for method in methods:
            if method.endswith("chunked") and n <= CHUNK:
                continue
            if method == "dense" and n > dense_max:
                print(
                    f"{name:7s} n={n:6d} jax-dense        skipped (n > --dense-max {dense_max}: "
                    "see --help)",
                    flush=True,
                )
                continue
            solver = "dense" if method == "dense" else "structured"
            chunked = method.endswith("chunked")
            profiles = prepared if method.startswith("prepared") else forcing_j
            best_fwd = None
            for kind, one in (
                ("forward", functools.partial(module.steady_state, method=solver)),
                ("forward+gradient", jax.grad(functools.partial(misfit, method=solver))),
            ):
                if chunked:
                    fn = jax.jit(lambda p, f, one=one: map_profiles(one, p, f, chunk_size=CHUNK))
                else:
                    fn = jax.jit(jax.vmap(one))
                first, best = best_time(fn, params, profiles, repeat=repeat)
                row = dict(
                    model=name,
                    n=n,
                    impl=f"jax-{method}",
                    kind=kind,
                    rate=n / best,
                    compile_s=first - best,
                    ratio=(n / best) / np_rate,
                    ratio_numpy_stacked=(n / best) / stacked_rate,
                )
                if method.startswith("prepared"):
                    row["prepare_s"] = prepare_s
                label = "forward " if kind == "forward" else "fwd+grad"
                extra = ""
                if best_fwd is None:
                    best_fwd = best
                else:
                    row["cost_vs_forward"] = best / best_fwd
                    extra = f"  grad/fwd {best / best_fwd:4.2f}"
                rows.append(row)
                print(
                    f"{name:7s} n={n:6d} jax-{method:18s} {label}  {n / best:12.1f} /s  "
                    f"x{(n / best) / np_rate:8.1f} numpy  x{(n / best) / stacked_rate:6.1f} "
                    f"stacked  compile {first - best:6.1f} s{extra}",
                    flush=True,
                )
    return rows


def breakdown(name, module, n, repeat):
    """Where the time of the structured forward pass goes, at n profiles."""
    params, forcing = make_inputs(module, n)
    forcing = jax.tree.map(jnp.asarray, forcing)
    mats = jax.jit(jax.vmap(module.matrices))
    m = mats(params, forcing)
    op = m.operator if hasattr(m, "operator") else None
    parts = {"matrices": (mats, (params, forcing))}
    if op is not None:
        rhs = m.inputs
        parts["solve"] = (jax.jit(jax.vmap(linalg.solve)), (op, rhs))
        parts["condition"] = (jax.jit(jax.vmap(linalg.condition)), (op,))
    parts["steady_state"] = (jax.jit(jax.vmap(module.steady_state)), (params, forcing))
    prepared = jax.jit(module.prepare)(forcing)
    parts["prepared_steady_state"] = (jax.jit(jax.vmap(module.steady_state)), (params, prepared))
    if op is not None:
        parts["guarded_solve"] = (jax.jit(jax.vmap(linalg.guarded_steady_state)), (op, rhs))
    out = {}
    for part, (fn, args) in parts.items():
        _, best = best_time(fn, *args, repeat=repeat)
        out[part] = best / n * 1e6  # microseconds per profile
        print(f"{name:7s} n={n:6d} breakdown {part:13s} {out[part]:8.2f} us/profile", flush=True)
    return out


def figure(rows: list[dict], env: dict, path: Path) -> None:
    """Throughput against batch size, one panel per model (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(
        1,
        len(models),
        figsize=(5 * len(models) + 3, 4),
        dpi=90,
        squeeze=False,
        layout="constrained",
    )
    styles = {
        "numpy": ("k", "o"),
        "jax-dense": ("tab:blue", "s"),
        "jax-structured": ("tab:red", "D"),
        "jax-structured-chunked": ("tab:orange", "^"),
        "jax-prepared": ("tab:green", "v"),
        "jax-prepared-chunked": ("tab:olive", "P"),
        "numpy-stacked": ("tab:gray", "x"),
    }
    for ax, model in zip(axes[0], models, strict=True):
        for impl, (color, marker) in styles.items():
            for kind, line in (("forward", "-"), ("forward+gradient", ":")):
                pts = sorted(
                    (r["n"], r["rate"])
                    for r in rows
                    if r["model"] == model and r["impl"] == impl and r["kind"] == kind
                )
                if pts:
                    n, rate = zip(*pts, strict=True)
                    ax.plot(n, rate, line, color=color, marker=marker, label=f"{impl} {kind}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("profiles per batch")
        ax.set_ylabel("steady states per second")
        ax.set_title(
            f"{model.upper()} steady state, {env['device']} ({env['cpu_count']} cores), float64"
        )
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right center")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def environment() -> dict:
    dev = jax.devices()[0]
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import scipy

    return dict(
        platform=dev.platform,
        device=getattr(dev, "device_kind", str(dev)),
        n_devices=jax.device_count(),
        cpu=cpu,
        cpu_count=os.cpu_count(),
        jax=jax.__version__,
        jaxlib=jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        numpy=np.__version__,
        scipy=scipy.__version__,
        python=platform.python_version(),
        precision="float64",
        load_average_1min_at_start=os.getloadavg()[0],
        numpy_blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
        date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--models", nargs="+", default=None, help="default: all available")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--numpy-max",
        type=int,
        default=500,
        help="profiles timed for the NumPy loop (its cost is linear in n)",
    )
    parser.add_argument(
        "--dense-max",
        type=int,
        default=1,
        help="largest batch for the dense reference path: with jax 0.10.2 on CPU the vmapped "
        "dense path (batched LU) intermittently stalls at 100 profiles and more, so it is timed "
        "on single profiles by default",
    )
    parser.add_argument(
        "--stack-max",
        type=int,
        default=2000,
        help="profiles whose dense systems are assembled for the stacked NumPy solve (its "
        "cost per profile does not depend on the batch)",
    )
    parser.add_argument("--breakdown-n", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument(
        "--figure", type=Path, default=ROOT.parent / "docs/figures/bench_steady_state.png"
    )
    args = parser.parse_args(argv)

    env = environment()
    print("environment:", json.dumps(env), flush=True)
    registry = model_registry()
    names = args.models or list(registry)
    rows, parts = [], {}
    for name in names:
        module, base = registry[name]
        rows += bench_model(
            name,
            module,
            base,
            args.sizes,
            args.repeat,
            args.numpy_max,
            args.dense_max,
            args.stack_max,
        )
        if args.breakdown_n:
            parts[name] = breakdown(name, module, args.breakdown_n, args.repeat)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"steady_state_{env['platform']}.json"
    env["load_average_1min_at_end"] = os.getloadavg()[0]
    path.write_text(json.dumps(dict(environment=env, results=rows, breakdown_us=parts), indent=1))
    print(f"saved {path}")
    if args.figure:
        figure(rows, env, args.figure)
        print(f"saved {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
