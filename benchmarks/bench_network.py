"""Benchmark: PRODA ensemble training as ONE vmapped program vs members one by one.

Same run, same data, same Keras recipe (Adadelta 1e-3/0.95/1e-7, batch 32, CLM5 joint loss,
PRODA's 60 -> 256 -> 512 -> 512 -> 256 -> 21 network, float32 like Keras), timing one epoch of
every member:

* ``vmapped``: `soc_jax.proda.train.train_chunk` (``eqx.filter_vmap`` over members of a
  ``lax.scan`` over batches), all M members in one compiled call;
* ``one_by_one``: the same compiled single-member epoch (`train_member_chunk`) called for each
  member in a Python loop (``lax.scan`` over batches inside);
* ``per_step``: one jitted Adadelta step called from Python per batch and member (how Keras'
  ``fit`` drives a model, one batch at a time);
* ``numpy``: a NumPy transcription of the same forward/backward pass and Keras' Adadelta,
  member after member (the baseline).

Compile time is reported apart (first call minus a steady-state call). One-by-one baselines
are timed on ``--sample`` members and scaled to M (every member does identical work), which is
said in the JSON. Results go to ``benchmarks/results/bench_network_<platform>.json``.

Usage::

    python benchmarks/bench_network.py [--members 10,50] [--rows 1000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time


def _numpy_epoch(params, acc, X, Y, idx, rng, lr=1e-3, rho=0.95, eps=1e-7, bs=32):
    """One Keras epoch of one member in NumPy (manual backprop, CLM5 joint loss, Adadelta)."""
    import numpy as np

    order = idx[rng.permutation(len(idx))]
    for s in range(0, len(order), bs):
        i = order[s : s + bs]
        x, y = X[i], Y[i]
        hs = [x]
        h = x
        for k, (W, b) in enumerate(params):
            h = h @ W.T + b
            if k < len(params) - 1:
                h = np.maximum(h, 0.0)
            hs.append(h)
        r = h - y
        n = r.size
        A = 500.0 * np.mean(r * r)
        B = 25.0 * np.mean(np.abs(r / y))
        g = B * 500.0 * 2.0 * r / n + A * 25.0 * np.sign(r) / np.abs(y) / n
        grads = []
        for k in range(len(params) - 1, -1, -1):
            W, _ = params[k]
            grads.append((g.T @ hs[k], g.sum(0)))
            if k:
                g = (g @ W) * (hs[k] > 0)
        grads = grads[::-1]
        for k in range(len(params)):
            for j in range(2):
                gr = grads[k][j]
                a_g, a_x = acc[k][j]
                a_g *= rho
                a_g += (1 - rho) * gr * gr
                upd = np.sqrt(a_x + eps) / np.sqrt(a_g + eps) * gr
                a_x *= rho
                a_x += (1 - rho) * upd * upd
                params[k][j][...] -= lr * upd
    return params


def main(args: argparse.Namespace) -> int:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np

    from soc_jax.proda.train import (
        TrainConfig,
        member_splits,
        new_ensemble,
        train_chunk,
        train_member_chunk,
    )

    rng = np.random.default_rng(0)
    X = rng.uniform(size=(args.rows, 60)).astype(np.float32)
    Y = (0.2 + 0.6 * rng.uniform(size=(args.rows, 21))).astype(np.float32)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    cfg = TrainConfig(dtype="float32", max_epochs=10**6, patience=10**6)
    epochs = jnp.arange(args.epochs, dtype=jnp.int32)
    results = []
    for M in [int(m) for m in args.members.split(",")]:
        n_boot = M - min(M, 10)
        tr, va, _ = member_splits(args.rows, min(M, 10), n_boot, seed=0)
        ens = new_ensemble(60, 21, tr, va, cfg, seed=0)
        nb = int(np.ceil(tr.shape[1] / cfg.batch_size))

        def vm(ens=ens):
            return train_chunk(ens.state, ens.keys, epochs, Xj, Yj, ens.train_idx, ens.val_idx, cfg)

        t0 = time.perf_counter()
        jax.block_until_ready(vm())
        first = time.perf_counter() - t0
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            jax.block_until_ready(vm())
            ts.append(time.perf_counter() - t0)
        t_vm = min(ts) / args.epochs
        compile_vm = first - min(ts)

        sample = min(args.sample, M)
        slices = [jax.tree.map(lambda a, i=i: a[i], ens.state) for i in range(sample)]

        def one(i, ens=ens, slices=slices):
            return train_member_chunk(
                slices[i], ens.keys[i], epochs, Xj, Yj, ens.train_idx[i], ens.val_idx[i], cfg
            )

        t0 = time.perf_counter()
        jax.block_until_ready(one(0))
        first1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(sample):
            jax.block_until_ready(one(i))
        t_one = (time.perf_counter() - t0) / sample / args.epochs  # per member-epoch
        compile_one = first1 - t_one * args.epochs

        # per-step dispatch (Keras-like): one jitted step per batch
        from soc_jax.proda.losses import clm5_loss

        opt = cfg.optimizer()

        @eqx.filter_jit
        def step(model, o, x, y, opt=opt):
            loss, g = eqx.filter_value_and_grad(lambda mm: clm5_loss(y, jax.vmap(mm)(x)))(model)
            u, o = opt.update(g, o)
            return eqx.apply_updates(model, u), o, loss

        m0, o0 = slices[0].model, slices[0].opt_state
        bidx = np.asarray(tr[0][: nb * cfg.batch_size - cfg.batch_size]).reshape(-1, cfg.batch_size)
        jax.block_until_ready(step(m0, o0, Xj[bidx[0]], Yj[bidx[0]]))
        t0 = time.perf_counter()
        m, o = m0, o0
        for b in bidx:
            m, o, _ = step(m, o, Xj[b], Yj[b])
        jax.block_until_ready(m)
        t_step = (time.perf_counter() - t0) / len(bidx) * nb  # per member-epoch

        # NumPy baseline, one member
        params = [
            [np.asarray(layer.weight).copy(), np.asarray(layer.bias).copy()]
            for layer in slices[0].model.layers
        ]
        acc = [[[np.zeros_like(p), np.zeros_like(p)] for p in layer] for layer in params]
        t0 = time.perf_counter()
        _numpy_epoch(params, acc, X, Y, np.asarray(tr[0]), np.random.default_rng(1))
        t_np = time.perf_counter() - t0

        row = {
            "members": M,
            "rows": args.rows,
            "batches_per_epoch": nb,
            "epochs_timed": args.epochs,
            "vmapped_s_per_epoch": t_vm,
            "vmapped_compile_s": compile_vm,
            "one_by_one_s_per_epoch": t_one * M,
            "one_by_one_compile_s": compile_one,
            "per_step_s_per_epoch": t_step * M,
            "numpy_s_per_epoch": t_np * M,
            "one_by_one_members_timed": sample,
            "ratio_vs_one_by_one": t_one * M / t_vm,
            "ratio_vs_per_step": t_step * M / t_vm,
            "ratio_vs_numpy": t_np * M / t_vm,
        }
        results.append(row)
        print(
            f"M={M:4d}: vmapped {t_vm:.3f} s/epoch (compile {compile_vm:.1f} s); one by one "
            f"{t_one * M:.3f} s/epoch -> x{row['ratio_vs_one_by_one']:.2f}; per-step "
            f"{t_step * M:.3f} -> x{row['ratio_vs_per_step']:.2f}; NumPy {t_np * M:.3f} -> "
            f"x{row['ratio_vs_numpy']:.2f}",
            flush=True,
        )
    out = {
        "benchmark": "PRODA ensemble training: vmapped program vs one member at a time",
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "jax": jax.__version__,
        "equinox": eqx.__version__,
        "numpy": np.__version__,
        "precision": "float32 (as Keras)",
        "network": "60-256-512-512-256-21, relu, CLM5 joint loss, Adadelta 1e-3/0.95/1e-7",
        "notes": "one-by-one/per-step/NumPy times measured on one_by_one_members_timed members "
        "(per-step and NumPy on one member) and scaled to M: every member does identical work",
        "results": results,
    }
    path = args.out or os.path.join(
        "benchmarks", "results", f"bench_network_{jax.devices()[0].platform}.json"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--members", default="10,50", help="comma-separated member counts")
    p.add_argument("--rows", type=int, default=1000, help="training table rows (profiles)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per timed call")
    p.add_argument("--repeat", type=int, default=2, help="timed repeats of the vmapped call")
    p.add_argument("--sample", type=int, default=3, help="members timed one by one")
    p.add_argument("--out", default=None)
    raise SystemExit(main(p.parse_args()))
