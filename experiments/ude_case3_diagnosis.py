"""Case 3 (full record, 35 % noise): where the error against the clean truth comes from.

For each data seed this experiment measures, with Table 4's configuration ((32, 32), tanh, lr
3e-3, lambda_wd 1e-3, lambda_coll 1) retrained as the pipeline retrains a winner (plain MSE plus
the 5-member noise-aware ensemble, float32 networks, 200 Adam iterations):

* the noise itself: the mean relative error of each observed profile (AR(1) along depth, so a
  profile's mean error does not average out over its 30 nodes) and of the 50-yr profile;
* two references that need no network: the known reaction law fed the *noisy* drivers (what
  plugging noisy covariates into the right law gives), and the known law's four parameters
  (p0, z_P, k0, beta) fitted by L-BFGS to the noisy SOC record with the *clean* drivers (what a
  perfectly specified model can recover from this record);
* the split of the noise: networks trained with clean drivers and noisy SOC, and with noisy
  drivers and clean SOC;
* the noise-aware likelihood with Table 4's extra terminal term (``lambda_term = 1``: the 50-yr
  profile weighted 51 times) and without it (``lambda_term = 0``, each profile once, the
  library's default since this experiment), with the ensemble's mean error by time.

Usage::

    python experiments/ude_case3_diagnosis.py --seeds 0 1 2 --out results/ude_case3_diagnosis

Writes ``--out/case3_diagnosis.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time


def main(args: argparse.Namespace) -> int:
    """Run the diagnosis for every seed; print and save the numbers."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    from soc_jax.ude.synthetic import SyntheticConfig, truth_vector_field

    config = _table4_config()
    truth = truth_vector_field(SyntheticConfig(noise=0.35))
    rows = {}
    for seed in args.seeds:
        rows[seed] = _diagnose_seed(seed, config, truth, args.fit_iterations)
        print(f"seed {seed}: " + json.dumps(rows[seed], default=float), flush=True)

    keys = [k for k in rows[args.seeds[0]] if k.endswith("_r2") or k.endswith(":r2")]
    means = {k: float(np.mean([rows[s][k] for s in args.seeds])) for k in keys}
    print("means over seeds: " + json.dumps(means))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "case3_diagnosis.json"), "w") as fh:
        json.dump({"config": config, "seeds": rows, "means": means}, fh, indent=2)
    return 0


def _table4_config() -> dict:
    """Table 4's plain-MSE configuration of case 3, as `retrain_batched` takes it."""
    from soc_jax.ude.cases import CASES

    table = CASES[3].plain
    return {
        "hidden": list(table.hidden),
        "activation": table.activation,
        "lr": table.lr,
        "lambda_coll": table.lambda_coll,
        "lambda_wd": table.lambda_wd,
    }


def _diagnose_seed(seed: int, config: dict, truth, fit_iterations: int) -> dict:
    """Every number of one data seed: the noise, the two references, the retrained networks."""
    from soc_jax.ude.cases import CASES, case_data

    t0 = time.perf_counter()
    case = CASES[3]
    data = case_data(case, seed)
    row = _noise(data)
    row |= _known_law_references(case, data, truth, fit_iterations)
    row |= _retrained_networks(case, data, config, seed)
    row["seconds"] = time.perf_counter() - t0
    return row


def _noise(data) -> dict:
    """The relative noise of the observed profiles' means (AR(1) along depth)."""
    import numpy as np

    rel = np.asarray(data.soc_obs / data.soc_clean - 1.0)
    return {
        "profile_mean_noise_std": float(rel[1:].mean(axis=1).std()),
        "terminal_profile_mean_noise": float(rel[-1].mean()),
        "last5_profile_mean_noise": [float(x) for x in rel[-5:].mean(axis=1)],
    }


def _known_law_references(case, data, truth, fit_iterations: int) -> dict:
    """The known law with the noisy drivers, and its four parameters fitted to the record."""
    import numpy as np

    from soc_jax.ude.cases import score
    from soc_jax.ude.vector_field import solve

    row = {}
    law_noisy, ok = solve(
        truth, data.c0, data.drivers_obs, data.ts, rtol=1e-8, atol=1e-8, max_steps=100_000
    )
    if not bool(ok):
        raise RuntimeError("the known-law solve with noisy drivers failed")
    row["known_law_noisy_drivers_r2"] = score(case, law_noisy, data)["r2_clean"]
    fitted, th = _known_law_fit(data, truth, fit_iterations)
    row["known_law_fitted_r2"] = score(case, fitted, data)["r2_clean"]
    row["known_law_fitted_params"] = [float(x) for x in np.exp(th[:3])] + [float(th[3])]
    return row


def _known_law_fit(data, truth, fit_iterations: int):
    """Known law, four parameters fitted by L-BFGS (MSE, clean drivers, noisy SOC)."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from soc_jax.ude.vector_field import KnownReaction, solve

    def predict(th):
        law = KnownReaction(jnp.exp(th[0]), jnp.exp(th[1]), jnp.exp(th[2]), th[3])
        field = eqx.tree_at(lambda f: f.reaction, truth, law)
        return solve(field, data.c0, data.drivers_clean, data.ts, rtol=1e-7, atol=1e-7)[0]

    def loss(th):
        return jnp.mean((predict(th)[1:] - data.soc_obs[1:]) ** 2)

    opt = optax.lbfgs()

    @jax.jit
    def step(th, state):
        value, grad = optax.value_and_grad_from_state(loss)(th, state=state)
        updates, state = opt.update(grad, state, th, value=value, grad=grad, value_fn=loss)
        return optax.apply_updates(th, updates), state

    # start from a law twice too slow and depth-uniform-ish, not from the truth
    th = jnp.array([np.log(0.01), np.log(0.5), np.log(0.04), 0.0])
    state = opt.init(th)
    for _ in range(fit_iterations):
        th, state = step(th, state)
    return predict(th), th


def _retrain(case, config: dict, data, seed: int) -> dict:
    """Retrain Table 4's configuration as the pipeline retrains a winner: name -> prediction."""
    from soc_jax.ude.cases import retrain_batched
    from soc_jax.ude.train import ensemble_predict

    trained, _ = retrain_batched(case, config, data, seed=seed, caps={}, log=lambda *a: None)
    return {name: ensemble_predict(models, data)[0] for name, (models, _) in trained.items()}


def _retrained_networks(case, data, config: dict, seed: int) -> dict:
    """The noise-aware likelihood with the terminal term (``term1``) and without (``once``),
    and, with it, the split of the noise (clean drivers, clean SOC)."""
    import equinox as eqx
    import numpy as np

    from soc_jax.ude.cases import score

    row = {}
    clean_drv = eqx.tree_at(lambda d: d.drivers_obs, data, data.drivers_clean)
    clean_soc = eqx.tree_at(lambda d: d.soc_obs, data, data.soc_clean)
    once = case.noise_aware.lambda_term
    for label, lam in (("term1", 1.0), ("once", once)):
        c = dataclasses.replace(
            case, noise_aware=dataclasses.replace(case.noise_aware, lambda_term=lam)
        )
        preds = _retrain(c, config, data, seed)
        for name, pred in preds.items():
            row[f"{label}:{name}:r2"] = score(case, pred, data)["r2_clean"]
            err = np.asarray(pred - data.soc_clean).mean(axis=1)
            row[f"{label}:{name}:mean_error_every_10yr"] = [float(x) for x in err[::10]]
        if label == "term1":
            for split, d in (("clean_drivers", clean_drv), ("clean_soc", clean_soc)):
                for name, pred in _retrain(c, config, d, seed).items():
                    row[f"{label}:{split}:{name}:r2"] = score(case, pred, data)["r2_clean"]
    return row


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Case 3: where the error against the truth comes from")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", default="results/ude_case3_diagnosis")
    p.add_argument("--fit-iterations", type=int, default=60)
    p.add_argument("--compile-cache", default=None, metavar="DIR")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main(parse_args()))
