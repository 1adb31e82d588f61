"""Parameter recovery on a synthetic world: calibrate every site, compare with the known truth.

For each model (CLM5, COMPAS) a synthetic world with known parameters and the default noise is
calibrated with `soc_jax.calibration` (default = corrected AM; ``--faithful`` for PRODA's
quirks), then per parameter: R2 between the posterior mean (``para_summary_mean``) and the truth
over sites, coverage of the truth by the central 90 % interval of the pooled post-burn-in draws
of the valid chains, the median rank R-hat, and the share of sites passing PRODA's filter.

The defaults are REDUCED for a 2-core CPU: 24 sites and 2,000 test + 5,000 formal steps per
chain (the step counts of PRODA's own recovery experiment, ``recovery_exp.m``, not the
20,000 + 50,000 of the site-level protocol). Say so wherever the numbers are quoted.

Usage::

    python experiments/recovery.py --out results/recovery                   # CLM5 and COMPAS
    python experiments/recovery.py --models clm5 --n-sites 200 --steps-test 20000 \\
        --steps-formal 50000                                                # the full protocol

Writes ``recovery_<model>.json``, ``recovery.md`` (tables) and ``recovery_<model>.png``.
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

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soc_jax.calibration import driver, figures, postprocess  # noqa: E402
from soc_jax.data.synthetic import MODEL_MODES, make_world  # noqa: E402


def interval_coverage(draws, truth: np.ndarray, valid: np.ndarray, level: float = 0.9):
    """Per-parameter share of sites whose truth lies in the central ``level`` interval.

    Uses the second half (burn-in removed, PRODA's rounding) of each valid chain's kept draws.
    Returns (coverage (n_par,), lower (sites, n_par), upper (sites, n_par)).
    """
    p = draws["p"].values  # (site, chain, draw, par)
    n = draws["n_draws"].values
    lo = np.zeros((p.shape[0], p.shape[-1]))
    hi = np.zeros_like(lo)
    for i in range(p.shape[0]):
        pooled = [
            p[i, c, postprocess.matlab_round_half(n[i, c]) : n[i, c]]
            for c in range(p.shape[1])
            if valid[i, c]
        ]
        if pooled:
            x = np.concatenate(pooled)
            lo[i], hi[i] = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=0)
    inside = (truth >= lo) & (truth <= hi)
    return inside.mean(axis=0), lo, hi


def run_model(model: str, args) -> dict:
    t0 = time.perf_counter()
    world = make_world(args.n_sites, seed=args.seed, model=model, noise=args.noise)
    t_world = time.perf_counter() - t0
    settings = driver.Settings(
        model=model,
        mode=MODEL_MODES[model],
        n_test=args.steps_test,
        n_formal=args.steps_formal,
        thin=args.thin,
        faithful=args.faithful,
        seed=args.seed,
        chunk_size=args.chunk_size,
    )
    out = os.path.join(args.out, f"run_{model}")
    t0 = time.perf_counter()
    res = driver.calibrate(world.profiles, world.forcing, out, settings, resume=True, progress=True)
    wall = time.perf_counter() - t0
    post, draws = res["posterior"], res["draws"]
    done = (post["status"].values & 32) == 0
    truth = world.true_params()[done]
    est = post["para_summary_mean"].values[done]
    valid = post["valid"].values[done].astype(bool)
    cov, _, _ = interval_coverage(draws.isel(profile=np.flatnonzero(done)), truth, valid)
    names = list(post["parameter"].values)
    rows = []
    for k, name in enumerate(names):
        t, e = truth[:, k], est[:, k]
        ss = np.sum((t - t.mean()) ** 2)
        rows.append(
            {
                "parameter": name,
                "r2": float(1 - np.sum((e - t) ** 2) / ss) if ss > 1e-12 else None,
                "mae": float(np.mean(np.abs(e - t))),
                "corr": float(np.corrcoef(t, e)[0, 1]) if t.std() > 1e-9 and e.std() > 0 else None,
                "coverage90": float(cov[k]),
                "median_rhat": float(np.median(post["rhat"].values[done][:, k])),
                "truth_sd": float(t.std()),
                "posterior_sd_median": float(
                    np.median(post["para_summary_std"].values[done][:, k])
                ),
            }
        )
    figures.truth_figure(
        post.isel(profile=np.flatnonzero(done)),
        world.truth.isel(profile=np.flatnonzero(done)).assign_coords(
            profile_id=("profile", post["profile_id"].values[done])
        ),
        os.path.join(args.out, f"recovery_{model}.png"),
    )
    acc = post["acceptance"].values[done][valid]
    summary = {
        "model": model,
        "mode": MODEL_MODES[model],
        "sites": int(done.sum()),
        "noise": args.noise,
        "steps_test": args.steps_test,
        "steps_formal": args.steps_formal,
        "faithful": args.faithful,
        "filter_pass": float(post["filter_pass"].values[done].mean()),
        "median_acceptance": float(np.median(acc)) if acc.size else float("nan"),
        "median_r2_fit": float(np.median(post["r2_max"].values[done])),
        "median_gr_mean": float(np.nanmedian(post["gr_mean"].values[done])),
        "world_seconds": t_world,
        "calibration_seconds": wall,
        "model_evaluations": res["evals"],
        "rows": rows,
    }
    with open(os.path.join(args.out, f"recovery_{model}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


def table(summary: dict) -> str:
    lines = [
        f"**{summary['model']}** (mode {summary['mode']}, {summary['sites']} sites, noise "
        f"{summary['noise']}, {summary['steps_test']} + {summary['steps_formal']} steps x 3 "
        f"chains, {'faithful' if summary['faithful'] else 'corrected'} AM; site filter pass "
        f"{100 * summary['filter_pass']:.0f} %, median acceptance "
        f"{summary['median_acceptance']:.2f}, median fit R2 {summary['median_r2_fit']:.2f}, "
        f"median mean-GR {summary['median_gr_mean']:.2f}, {summary['calibration_seconds']:.0f} s)",
        "",
        "| parameter | R2 (mean vs truth) | corr | MAE | 90 % coverage | median R-hat | "
        "truth sd | median posterior sd |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(x):
        return "const" if x is None else f"{x:.2f}"

    for r in summary["rows"]:
        lines.append(
            f"| {r['parameter']} | {f(r['r2'])} | {f(r['corr'])} | {r['mae']:.3f} | "
            f"{r['coverage90']:.2f} | {r['median_rhat']:.2f} | {r['truth_sd']:.3f} | "
            f"{r['posterior_sd_median']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["clm5", "compas"])
    ap.add_argument("--n-sites", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--steps-test", type=int, default=2000)
    ap.add_argument("--steps-formal", type=int, default=5000)
    ap.add_argument("--thin", type=int, default=10)
    ap.add_argument("--chunk-size", type=int, default=24)
    ap.add_argument("--faithful", action="store_true")
    ap.add_argument("--out", default="results/recovery")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    tables = []
    for model in args.models:
        s = run_model(model, args)
        tables.append(table(s))
        print(tables[-1], flush=True)
    Path(args.out, "recovery.md").write_text("\n\n".join(tables) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
