"""Case 3 (full record, 35 % noise) over seeds: which configuration to retrain as an ensemble.

The full pipeline (``soc-jax ude --case 3 --search``) retrains the search's winner, chosen by the
seed's criterion (terminal loss against the *noisy* 50-yr profile). This experiment retrains,
for each data seed, a configuration given on the command line the same way (plain MSE plus a
noise-aware ensemble of :data:`~soc_jax.ude.cases.SEARCH_ENSEMBLE` members, in the search's
batches and threads, full Table 4 Adam budget) and scores both against the clean truth.

The noise-aware members use the library's Case 3 likelihood: since the third round it counts
every observed profile once (``lambda_term = 0``; results before that used Table 4's extra
terminal term, ``lambda_term = 1``, see docs/ude.md).

``--config table`` is the case's own Table 4 configuration ((32, 32), tanh, lr 3e-3,
lambda_wd 1e-3, lambda_coll 1); ``--config winner`` is the search winner of every seed of the
second round ((64, 32), tanh, lr 5e-3, lambda_wd 1e-4, lambda_coll 1). Writes
``--out/case3_ensembles_<config>[_smoothW].json``.

``--smooth-drivers W`` (odd W >= 3) gives the noise-aware members drivers averaged over a
centred window of W annual samples (shrinking at the ends), in training and in prediction: the
drivers are noisy inputs (35 %, independent across years) of smooth fields, an
errors-in-variables problem the likelihood alone does not address. The plain-MSE member keeps
the raw drivers.

Usage::

    python experiments/ude_case3_ensembles.py --config table --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

CONFIGS = {
    "table": {
        "hidden": [32, 32],
        "activation": "tanh",
        "lr": 3e-3,
        "lambda_coll": 1.0,
        "lambda_wd": 1e-3,
    },
    "winner": {
        "hidden": [64, 32],
        "activation": "tanh",
        "lr": 5e-3,
        "lambda_coll": 1.0,
        "lambda_wd": 1e-4,
    },
}


def smooth_drivers(data, window: int):
    """``data`` with each driver averaged over ``window`` annual samples (centred, shrinking)."""
    import equinox as eqx
    import jax.numpy as jnp

    v = data.drivers_obs.values  # (3, nt, nz)
    nt, h = v.shape[1], window // 2
    k = jnp.arange(nt)
    w = (jnp.abs(k[:, None] - k[None, :]) <= h).astype(v.dtype)  # (nt, nt) band
    w = w / jnp.sum(w, axis=1, keepdims=True)
    return eqx.tree_at(lambda d: d.drivers_obs.values, data, jnp.einsum("st,ctz->csz", w, v))


def main(args: argparse.Namespace) -> int:
    """Retrain the chosen configuration for each seed; print and save R2 against the truth."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    jax.config.update("jax_enable_x64", True)
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    from soc_jax.ude.cases import CASES, case_data, retrain_batched, score
    from soc_jax.ude.train import ensemble_predict

    case = CASES[3]
    rows = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        data = case_data(case, seed)
        # noise-aware members see the smoothed drivers (if asked), the plain member the raw ones
        aware_data = smooth_drivers(data, args.smooth_drivers) if args.smooth_drivers else data
        trained, _ = retrain_batched(
            case, CONFIGS[args.config], aware_data, seed=seed, caps={}, log=lambda *a: None
        )
        if args.smooth_drivers:
            raw, _ = retrain_batched(
                case, CONFIGS[args.config], data, seed=seed, caps={}, log=lambda *a: None
            )
            trained["mse"] = raw["mse"]
        rows[seed] = {"seconds": time.perf_counter() - t0}
        for name, (models, _) in trained.items():
            pred, _ = ensemble_predict(models, data if name == "mse" else aware_data)
            rows[seed][name] = score(case, pred, data)["r2_clean"]
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[seed].items()))
    names = [k for k in rows[args.seeds[0]] if k != "seconds"]
    means = {k: sum(rows[s][k] for s in args.seeds) / len(args.seeds) for k in names}
    print(
        f"mean R2 clean over seeds {args.seeds}: "
        + ", ".join(f"{k} {v:.4f}" for k, v in means.items())
    )
    os.makedirs(args.out, exist_ok=True)
    out = {"config": CONFIGS[args.config], "seeds": rows, "mean_r2_clean": means}
    tag = f"_smooth{args.smooth_drivers}" if args.smooth_drivers else ""
    out["smooth_drivers"] = args.smooth_drivers
    with open(os.path.join(args.out, f"case3_ensembles_{args.config}{tag}.json"), "w") as fh:
        json.dump(out, fh, indent=2)
    return 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Case 3: retrained ensembles over seeds")
    p.add_argument("--config", choices=sorted(CONFIGS), default="table")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="results/ude_case3_ensembles")
    p.add_argument("--smooth-drivers", type=int, default=0, metavar="W")
    p.add_argument("--compile-cache", default=None, metavar="DIR")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main(parse_args()))
