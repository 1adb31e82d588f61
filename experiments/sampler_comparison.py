"""Sampler comparison on the recovery experiment's synthetic world: PRODA's AM vs NUTS, MALA, ChEES.

Every sampler calibrates the same sites of ``make_world(n_sites, seed, model, noise)`` (the
world of ``experiments/recovery.py``) through the same driver (`soc_jax.calibration.driver`),
and targets the same posterior (``exp(-J)`` with a uniform prior on the normalized box). Per
sampler and per profile:

* max rank R-hat and min bulk ESS over the parameters, over all parameters and over the
  *identifiable* ones (posterior sd < 0.8 x the prior sd 1/sqrt(12) on the normalized scale at
  that profile);
* model evaluations: PRODA's AM counts its forward evaluations (test + formal runs, restarts
  included); a gradient sampler counts its start evaluations, the posterior-predictive
  evaluations of its draws, and each log-density-and-gradient evaluation as ``ratio`` forward
  evaluations, ``ratio`` = the MEASURED time of a batched ``value_and_grad`` over the time of
  a batched forward log-density (same batch, same process);
* ESS per 1,000 evaluations (min bulk ESS over identifiable parameters / evaluations x 1000),
  ESS per second (per profile, wall of the second chunk / profiles, compile excluded);
* recovery: R2 and correlation of the posterior mean vs the truth for parameters that vary in
  the truth, 90 % coverage of the truth by the central interval of the draws;
* lock-step waste of the gradient samplers: from the recorded leapfrog steps of every draw,
  ``1 - useful / computed`` for the batch of a chunk (`gradient.lockstep_waste`), and a
  bootstrap estimate for a batch of 1,000 profiles (chains resampled from the recorded ones).

Goal (issue 10): R-hat < 1.01 and bulk ESS >= 400 for every identifiable parameter on >= 95 %
of profiles, with >= 10x fewer evaluations than PRODA's protocol (3 x 70,001 = 210,003).

Usage::

    python experiments/sampler_comparison.py --n-sites 24 --out results/sampler_comparison

Writes ``comparison.json`` (per sampler and per profile), ``comparison.md`` (table) and
``sampler_comparison.png`` / ``sampler_lockstep.png`` into ``--out``.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soc_jax.calibration import driver, gradient, postprocess  # noqa: E402
from soc_jax.data import pad_observations  # noqa: E402
from soc_jax.data.synthetic import MODEL_MODES, make_world  # noqa: E402

PRODA_PROTOCOL_EVALS = 3 * (1 + 20000 + 50000)
PRIOR_SD = 1.0 / np.sqrt(12.0)


def grad_cost_ratio(world, model: str, n_batch: int, repeat: int = 5) -> dict:
    """Measured time of a batched value_and_grad of the log-density over a batched forward."""
    mode = MODEL_MODES[model]
    idx = np.arange(n_batch) % world.n_sites
    obs = pad_observations(world.profiles.isel(profile=idx))
    from soc_jax.models import get_model

    module = get_model(model)
    forcing = jax.tree.map(lambda a: jnp.asarray(a[idx]), world.forcing_batch())
    data = {
        "forcing": module.prepare(forcing, mode),
        "depth": jnp.asarray(obs.depth),
        "obs": jnp.asarray(obs.soc),
        "mask": jnp.asarray(obs.mask),
    }
    log_pi = gradient.make_log_density(model, mode)
    z = jax.random.normal(jax.random.PRNGKey(0), (n_batch, len(module.PARAMETERS))) * 0.5
    fwd = jax.jit(jax.vmap(log_pi))
    vg = jax.jit(jax.vmap(jax.value_and_grad(log_pi)))
    out = {}
    for name, f in (("forward", fwd), ("value_and_grad", vg)):
        t0 = time.perf_counter()
        jax.block_until_ready(f(z, data))
        out[f"{name}_compile_s"] = time.perf_counter() - t0
        best = np.inf
        for r in range(repeat):
            zz = z + 0.01 * r
            t0 = time.perf_counter()
            jax.block_until_ready(f(zz, data))
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_s"] = best
    out["ratio"] = out["value_and_grad_s"] / out["forward_s"]
    out["batch"] = n_batch
    out["forward_us_per_eval"] = 1e6 * out["forward_s"] / n_batch
    return out


def coverage(p: np.ndarray, n: np.ndarray, truth: np.ndarray, am: bool, level=0.9):
    """Per-profile, per-parameter: truth inside the central interval of the draws."""
    lo = np.zeros(truth.shape)
    hi = np.zeros(truth.shape)
    for i in range(p.shape[0]):
        if am:
            parts = [
                p[i, c, postprocess.matlab_round_half(n[i, c]) : n[i, c]]
                for c in range(p.shape[1])
                if n[i, c] >= 4
            ]
        else:
            parts = [p[i, c, : n[i, c]] for c in range(p.shape[1])]
        if parts:
            x = np.concatenate(parts)
            lo[i], hi[i] = np.quantile(x, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return (truth >= lo) & (truth <= hi)


def run_sampler(world, sampler: str, args, ratio: float) -> dict:
    """Calibrate every site with ``sampler``; its cost, convergence and recovery of the truth
    (written to ``--out/comparison_<sampler>.json``)."""
    settings = _settings(sampler, args)
    res, chunk_s = _calibrate_timed(world, settings, os.path.join(args.out, f"run_{sampler}"))
    post, draws = res["posterior"], res["draws"]
    done = (post["status"].values & 32) == 0
    n_sites = int(done.sum())
    truth = world.true_params()[done]
    conv = _convergence(post, done)
    evals, grads = _evaluations(post, done, sampler, settings, ratio)
    # wall per profile without compilation: chunks after the first (all chunks if only one)
    steady = chunk_s[1:] if len(chunk_s) > 1 else chunk_s
    per_profile_s = float(np.sum(steady) / (len(steady) * args.chunk_size)) if steady else np.nan
    cov = coverage(
        draws["p"].values[done], draws["n_draws"].values[done], truth, sampler == "proda-am"
    )
    est = post["para_summary_mean"].values[done]
    rec = _recovery(list(post["parameter"].values), truth, est, cov, conv["ident"])
    summary = {
        "sampler": sampler,
        "sites": n_sites,
        "chains": settings.n_chains,
        "settings": settings.record(),
        "wall_s": float(sum(chunk_s)),
        "chunk_s": chunk_s,
        "per_profile_s_no_compile": per_profile_s,
        "grad_ratio_used": ratio if sampler != "proda-am" else None,
        "median_evals_per_profile": float(np.median(evals)),
        "median_grads_per_profile": float(np.median(grads)),
        "protocol_evals_per_profile": PRODA_PROTOCOL_EVALS,
    }
    summary |= _convergence_summary(conv, evals, per_profile_s)
    summary["median_r2_fit"] = float(np.median(post["r2_max"].values[done]))
    summary["mean_coverage90_all"] = float(cov.mean())
    summary["recovery"] = rec
    summary["per_profile"] = {
        "max_rhat_ident": conv["rhat_ident"].tolist(),
        "min_ess_bulk_ident": np.nan_to_num(conv["ess_ident"], nan=-1).tolist(),
        "evals": evals.tolist(),
    }
    if sampler != "proda-am":
        _gradient_sampler_summary(summary, post, draws, done, sampler, settings, args)
        cost_computed = evals + (ratio * grads) * (
            1 / max(1 - summary["lockstep_wasted_fraction"], 1e-9) - 1
        )
        summary["median_ess_per_1000_computed_evals"] = float(
            np.nanmedian(1000 * conv["ess_ident"] / cost_computed)
        )
    with open(os.path.join(args.out, f"comparison_{sampler}.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary


_BIG = 1e9  # "no identifiable parameter": the minimum ESS over none


def _settings(sampler: str, args) -> "driver.Settings":
    n_chains = {"proda-am": 3, "nuts": args.chains, "mala": args.chains, "chees": args.chees_chains}
    return driver.Settings(
        model=args.model,
        mode=MODEL_MODES[args.model],
        sampler=sampler,
        n_test=args.steps_test,
        n_formal=args.steps_formal,
        thin=args.thin,
        n_chains=n_chains[sampler],
        seed=args.seed,
        chunk_size=args.chunk_size,
        n_warmup=args.warmup,
        n_draws=args.draws,
        max_tree_depth=args.max_tree_depth,
    )


def _calibrate_timed(world, settings, out: str):
    """``(result, chunk_s)``: `driver.calibrate` (resumed) and the wall time of each chunk (a
    resumed run keeps the first run's timings, from ``chunk_seconds.json``)."""
    stamps = [time.perf_counter()]
    res = driver.calibrate(
        world.profiles,
        world.forcing,
        out,
        settings,
        resume=True,
        progress=False,
        on_chunk=lambda c: stamps.append(time.perf_counter()),
    )
    chunk_s = np.diff(stamps).tolist()
    timing_path = os.path.join(out, "chunk_seconds.json")
    if chunk_s:  # computed in this process (a resumed run keeps the first run's timings)
        with open(timing_path, "w") as f:
            json.dump({"chunk_s": chunk_s, "uptime": os.popen("uptime").read().strip()}, f)
    elif os.path.exists(timing_path):
        with open(timing_path) as f:
            chunk_s = json.load(f)["chunk_s"]
    return res, chunk_s


def _convergence(post, done) -> dict:
    """R-hat and ESS per site, over all parameters and over the identifiable ones (posterior
    sd < 0.8 prior sd)."""
    rhat = post["rhat"].values[done]
    ess = post["ess_bulk"].values[done]
    psd = post["para_summary_std"].values[done]
    ident = psd < 0.8 * PRIOR_SD
    ess_ident = np.where(ident, ess, _BIG).min(axis=1)
    return {
        "rhat": rhat,
        "ess": ess,
        "ess_tail": post["ess_tail"].values[done],
        "ident": ident,
        "rhat_ident": np.where(ident, rhat, 0.0).max(axis=1),
        "ess_ident": np.where(ess_ident >= _BIG, np.nan, ess_ident),
    }


def _evaluations(post, done, sampler: str, settings, ratio: float):
    """``(evals, grads)`` per site: forward-equivalent evaluations (a gradient costs
    ``ratio``) and gradient evaluations."""
    n_evals_fwd = post["n_evals"].values[done].sum(axis=1).astype(float)
    if sampler == "proda-am":
        return n_evals_fwd, np.zeros(int(done.sum()))
    grads = post["n_grad_evals"].values[done].sum(axis=1).astype(float)
    init = post["n_init_evals"].values[done].sum(axis=1).astype(float)
    predictive = float(settings.n_chains * settings.n_draws)
    return init + predictive + ratio * grads, grads


def _recovery(names, truth, est, cov, ident) -> list[dict]:
    """Per parameter: R2 and correlation of the posterior means with the truth, coverage."""
    rec = []
    for k, name in enumerate(names):
        t, e = truth[:, k], est[:, k]
        ss = np.sum((t - t.mean()) ** 2)
        varying = t.std() > 1e-9
        rec.append(
            {
                "parameter": name,
                "varying": bool(varying),
                "r2": float(1 - np.sum((e - t) ** 2) / ss) if varying else None,
                "corr": float(np.corrcoef(t, e)[0, 1]) if varying and e.std() > 0 else None,
                "coverage90": float(cov[:, k].mean()),
                "identifiable_share": float(ident[:, k].mean()),
            }
        )
    return rec


def _convergence_summary(conv: dict, evals, per_profile_s: float) -> dict:
    """Medians and shares of R-hat and ESS, and ESS per evaluation and per second."""
    rhat, rhat_ident, ess_ident = conv["rhat"], conv["rhat_ident"], conv["ess_ident"]
    ess_min_all = conv["ess"].min(axis=1)
    goal = (rhat_ident < 1.01) & (np.nan_to_num(ess_ident, nan=_BIG) >= 400)
    return {
        "median_max_rhat_all": float(np.median(rhat.max(axis=1))),
        "median_max_rhat_ident": float(np.median(rhat_ident)),
        "median_min_ess_bulk_all": float(np.median(ess_min_all)),
        "median_min_ess_bulk_ident": float(np.nanmedian(ess_ident)),
        "median_min_ess_tail_all": float(np.median(conv["ess_tail"].min(axis=1))),
        "share_rhat_lt_1.01_ident": float(np.mean(rhat_ident < 1.01)),
        "share_ess_ge_400_ident": float(np.mean(np.nan_to_num(ess_ident, nan=_BIG) >= 400)),
        "share_goal": float(goal.mean()),
        "median_identifiable_params": float(np.median(conv["ident"].sum(axis=1))),
        "median_ess_per_1000_evals": float(np.nanmedian(1000 * ess_ident / evals)),
        "median_ess_per_1000_evals_all": float(np.median(1000 * ess_min_all / evals)),
        "median_ess_per_s": float(np.nanmedian(ess_ident / per_profile_s)),
    }


def _gradient_sampler_summary(summary, post, draws, done, sampler, settings, args) -> None:
    """Divergences, step sizes, tree depths and the lock-step waste of a gradient sampler."""
    summary["divergences_per_profile_median"] = float(
        np.median(post["divergences"].values[done].sum(axis=1))
    )
    summary["median_step_size"] = float(np.median(post["step_size"].values[done]))
    summary["mean_tree_depth"] = float(np.mean(post["mean_tree_depth"].values[done]))
    steps = draws["n_steps"].values[done]  # (P, C, D)
    wsteps = draws["warmup_n_steps"].values[done]
    waste = []
    for c0 in range(0, int(done.sum()), args.chunk_size):
        s = steps[c0 : c0 + args.chunk_size]
        w = wsteps[c0 : c0 + args.chunk_size]
        both = np.concatenate([w, s], axis=2)
        waste.append(gradient.lockstep_waste(both.reshape(-1, both.shape[-1])))
    summary["lockstep_chunk"] = waste
    summary["lockstep_wasted_fraction"] = float(
        1 - sum(x["useful"] for x in waste) / sum(x["computed"] for x in waste)
    )
    summary["lockstep_wasted_fraction_bootstrap"] = _lockstep_bootstrap(
        steps, wsteps, sampler, settings.n_chains
    )


def _lockstep_bootstrap(steps, wsteps, sampler: str, n_chains: int) -> dict:
    """Lock-step waste of batches of 10, 100, 1000 profiles resampled from the recorded ones."""
    rng = np.random.default_rng(0)
    flat = np.concatenate([wsteps, steps], axis=2).reshape(-1, steps.shape[2] + wsteps.shape[2])
    boot = {}
    for n_prof in (10, 100, 1000):
        b = n_prof * n_chains
        if sampler == "chees":  # chains of a profile share their steps: resample profiles
            prof = np.concatenate([wsteps, steps], axis=2)
            pick = rng.integers(0, prof.shape[0], n_prof)
            batch = prof[pick].reshape(-1, prof.shape[-1])
        else:
            # each iteration draws its chains independently from the recorded ones
            cols = rng.integers(0, flat.shape[0], (b, flat.shape[1]))
            batch = flat[cols, np.arange(flat.shape[1])[None, :]]
        boot[str(n_prof)] = gradient.lockstep_waste(batch)["wasted_fraction"]
    return boot


def table(results: list[dict], ratio: dict) -> str:
    lines = [
        f"Gradient cost ratio (batched value_and_grad / forward, {ratio['batch']} profiles): "
        f"{ratio['ratio']:.2f} (forward {ratio['forward_us_per_eval']:.0f} us per evaluation)",
        "",
        "| sampler | chains x draws | evals/profile (median) | x fewer than PRODA protocol | "
        "median max R-hat (ident.) | median min bulk ESS (ident.) | R-hat<1.01 | ESS>=400 | "
        "goal met (profiles) | ESS / 1000 evals | ESS / s | s / profile | wasted lock-step | "
        "90 % coverage | fit R2 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        s = r["settings"]
        cd = (
            f"{r['chains']} x {s['n_formal'] // s['thin']} (thin {s['thin']})"
            if r["sampler"] == "proda-am"
            else f"{r['chains']} x {s['n_draws']} (+{s['n_warmup']} warm-up)"
        )
        waste = r.get("lockstep_wasted_fraction")
        lines.append(
            f"| {r['sampler']} | {cd} | {r['median_evals_per_profile']:,.0f} | "
            f"{PRODA_PROTOCOL_EVALS / r['median_evals_per_profile']:.1f} | "
            f"{r['median_max_rhat_ident']:.3f} | {r['median_min_ess_bulk_ident']:.0f} | "
            f"{100 * r['share_rhat_lt_1.01_ident']:.0f} % | "
            f"{100 * r['share_ess_ge_400_ident']:.0f} % | {100 * r['share_goal']:.0f} % | "
            f"{r['median_ess_per_1000_evals']:.2f} | {r['median_ess_per_s']:.2f} | "
            f"{r['per_profile_s_no_compile']:.2f} | "
            + ("-" if waste is None else f"{100 * waste:.0f} %")
            + f" | {r['mean_coverage90_all']:.2f} | {r['median_r2_fit']:.2f} |"
        )
    return "\n".join(lines)


def figure(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for k, r in enumerate(results):
        pp = r["per_profile"]
        ev = np.asarray(pp["evals"])
        ess = np.asarray(pp["min_ess_bulk_ident"], float)
        rh = np.asarray(pp["max_rhat_ident"], float)
        axes[0].scatter(ev, np.where(ess > 0, ess, np.nan), s=10, color=f"C{k}", label=r["sampler"])
        axes[1].scatter(ev, rh, s=10, color=f"C{k}", label=r["sampler"])
        axes[2].bar(k, r["median_ess_per_1000_evals"], color=f"C{k}")
    axes[0].axhline(400, color="k", ls="--", lw=0.8)
    axes[0].axvline(PRODA_PROTOCOL_EVALS / 10, color="grey", ls=":", lw=0.8)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="model evaluations per profile (gradient = measured cost ratio)",
        ylabel="min bulk ESS, identifiable parameters",
        title="ESS vs cost per profile",
    )
    axes[1].axhline(1.01, color="k", ls="--", lw=0.8)
    axes[1].set(
        xscale="log",
        yscale="log",
        xlabel="model evaluations per profile",
        ylabel="max rank R-hat, identifiable parameters",
        title="convergence vs cost",
    )
    axes[2].set_xticks(range(len(results)), [r["sampler"] for r in results])
    axes[2].set(ylabel="median ESS per 1,000 evaluations", title="efficiency", yscale="log")
    axes[0].legend(fontsize=7)
    fig.suptitle("Samplers on the synthetic world (same posterior; dashed: goal; dotted: 10x)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="clm5", choices=("clm5", "compas"))
    ap.add_argument("--samplers", nargs="+", default=["proda-am", "mala", "chees", "nuts"])
    ap.add_argument("--n-sites", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--chunk-size", type=int, default=12)
    ap.add_argument("--steps-test", type=int, default=5000)
    ap.add_argument("--steps-formal", type=int, default=15000)
    ap.add_argument("--thin", type=int, default=30)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--chees-chains", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--max-tree-depth", type=int, default=8)
    ap.add_argument("--out", default="results/sampler_comparison")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    world = make_world(args.n_sites, seed=args.seed, model=args.model, noise=args.noise)
    ratio_path = os.path.join(args.out, "grad_ratio.json")
    if os.path.exists(ratio_path):
        with open(ratio_path) as f:
            ratio = json.load(f)
    else:
        ratio = grad_cost_ratio(world, args.model, n_batch=args.chunk_size * args.chains)
        ratio["uptime"] = os.popen("uptime").read().strip()
        with open(ratio_path, "w") as f:
            json.dump(ratio, f, indent=1)
    print("gradient cost ratio", ratio, flush=True)
    results = []
    for s in args.samplers:
        t0 = time.perf_counter()
        r = run_sampler(world, s, args, ratio["ratio"])
        r["uptime"] = os.popen("uptime").read().strip()
        results.append(r)
        print(s, f"{time.perf_counter() - t0:.0f} s", json.dumps(r, default=str)[:600], flush=True)
        Path(args.out, "comparison.md").write_text(table(results, ratio) + "\n")
        figure(results, os.path.join(args.out, "sampler_comparison.png"))
    with open(os.path.join(args.out, "comparison.json"), "w") as f:
        json.dump({"grad_ratio": ratio, "results": results}, f, indent=1)
    print(table(results, ratio))
    return 0


if __name__ == "__main__":
    sys.exit(main())
