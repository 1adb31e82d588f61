"""What the failure flags mean in numbers, and where gradients are finite.

For uniform prior draws on sites of every forcing regime (temperate, tropical, permafrost,
frozen, shallow bedrock, surface input), for CLM5 and COMPAS in both modes:

- how often each flag is set, per regime;
- for CLM5 draws flagged ``SINGULAR`` only (rcond < eps, a failed simulation in PRODA), what the
  values are worth: the backward error of the structured solution in the dense system that the
  independent NumPy baseline assembles, and its difference from NumPy's own dense LU solution;
- the gradient of a PRODA-like cost masked by ``ok``: finite for how many draws, per regime.

Usage::

    python experiments/core_flags.py --n 300 --out results/core_flags

Writes ``core_flags.json`` and prints the tables that README "Failure flags" quotes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.baselines import numpy_clm5  # noqa: E402
from soc_jax.grid import ZSOI, pchip_interpolate  # noqa: E402
from soc_jax.models import clm5, common, compas  # noqa: E402
from tests.helpers import REGIMES, regime_forcings  # noqa: E402

OBS_DEPTH = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0, 1.5])
OBSERVED = jnp.array([2e4, 1.5e4, 1e4, 6e3, 3e3, 1e3])


def _stack(forcings):
    return jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *forcings)


def run_case(model, mode: str, n: int, seed: int) -> dict:
    space = model.PARAMETERS
    pairs = regime_forcings(n, seed)
    regimes = np.array([r for r, _ in pairs])
    prepared = model.prepare(_stack([f for _, f in pairs]), mode)
    p = np.random.default_rng(seed).uniform(0.0, 1.0, (n, len(space)))
    z = jnp.asarray(space.normalized_to_unconstrained(np.clip(p, 1e-9, 1 - 1e-9)))

    def cost(z, prep):
        res = model.steady_state(space.from_unconstrained(z), prep)
        modelled = pchip_interpolate(ZSOI[:20], res.soc, OBS_DEPTH)
        value = jnp.sum((modelled - OBSERVED) ** 2 / (2 * (0.6 * OBSERVED) ** 2))
        return jnp.where(res.ok, value, 0.0), res

    grads, res = jax.jit(jax.vmap(jax.grad(cost, has_aux=True)))(z, prepared)
    flags = np.asarray(res.flags)
    finite = np.all(np.isfinite(np.asarray(grads)), axis=1)
    out = {"n": n, "per_regime": {}}
    for regime in REGIMES:
        sel = regimes == regime
        out["per_regime"][regime] = {
            "draws": int(sel.sum()),
            "ok": int((flags[sel] == 0).sum()),
            "gradient_finite": int(finite[sel].sum()),
            "gradient_finite_ok": int((finite & (flags == 0))[sel].sum()),
            **{
                name: int(((flags[sel] & bit) > 0).sum())
                for bit, name in (
                    (common.INPUT, "INPUT"),
                    (common.PRIOR, "PRIOR"),
                    (common.SINGULAR, "SINGULAR"),
                    (common.NONFINITE, "NONFINITE"),
                    (common.NEGATIVE, "NEGATIVE"),
                    (common.MIC_RATIO, "MIC_RATIO"),
                )
            },
        }
    if model is clm5:
        out["singular_accuracy"] = singular_accuracy(
            space.to_physical(p), pairs, np.asarray(res.pools), flags, mode
        )
    return out


def singular_accuracy(params, pairs, pools, flags, mode: str) -> dict:
    """Backward error and difference from NumPy's dense LU for SINGULAR-only draws."""
    backward, backward_np, difference = [], [], []
    for i in np.flatnonzero(flags == common.SINGULAR):
        forcing = pairs[i][1].as_numpy()
        mats = numpy_clm5.build_matrices(np.asarray(params[i]), forcing, mode=mode)
        s = mats["V"] - mats["A"] @ mats["K"]
        x, b = pools[i].reshape(-1), mats["I"].reshape(-1)
        r = np.abs(s @ x - b).max()
        backward.append(r / (np.abs(s).sum(axis=1).max() * np.abs(x).max() + np.abs(b).max()))
        ref = numpy_clm5.steady_state(np.asarray(params[i]), forcing, mode=mode)["pools"]
        x_np = ref.reshape(-1)
        r_np = np.abs(s @ x_np - b).max()
        backward_np.append(
            r_np / (np.abs(s).sum(axis=1).max() * np.abs(x_np).max() + np.abs(b).max())
        )
        soc, soc_ref = x.reshape(7, 20)[4:].sum(0), ref[4:].sum(0)
        top = slice(0, 10)  # 0-1.1 m, where observations are
        scale = np.maximum(np.abs(soc_ref[top]), 1e-300)
        difference.append(np.max(np.abs(soc[top] - soc_ref[top]) / scale))
    q = lambda a: [float(v) for v in np.quantile(a, [0.5, 0.9, 1.0])] if a else []  # noqa: E731
    return {
        "count": len(backward),
        "backward_error_median_p90_max": q(backward),
        "numpy_dense_lu_backward_error_median_p90_max": q(backward_np),
        "top_1m_soc_rel_diff_vs_numpy_median_p90_max": q(difference),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="prior draws per model and mode")
    parser.add_argument("--out", type=Path, default=Path("results/core_flags"))
    args = parser.parse_args(argv)
    results = {}
    for model, modes in ((clm5, ("proda", "default")), (compas, ("proda", "documented"))):
        for mode in modes:
            key = f"{model.__name__.rsplit('.', 1)[-1]}-{mode}"
            results[key] = run_case(model, mode, args.n, seed=len(key))
            rows = results[key]["per_regime"]
            print(f"\n{key}: regime, draws, ok, gradient finite (all / ok), flags")
            for regime, r in rows.items():
                flagged = {k: v for k, v in r.items() if k.isupper() and v}
                print(
                    f"  {regime:16s} {r['draws']:4d} {r['ok']:4d} "
                    f"{r['gradient_finite']:4d} / {r['gradient_finite_ok']:4d}  {flagged}"
                )
            if "singular_accuracy" in results[key]:
                print("  SINGULAR-only draws:", results[key]["singular_accuracy"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "core_flags.json").write_text(json.dumps(results, indent=1))
    print(f"saved {args.out / 'core_flags.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
