"""Experiment: end-to-end variants and the amortised posterior on a spatial hold-out.

NOT the equal-footing comparison with two-stage PRODA: its two-stage arm (a) is a short-chain
baseline (2 AM chains x 4,000 steps, not converged; PRODA's COMPAS L2 loss with Adadelta lr 1.0
for either model) and its end-to-end arms know the world's noise sigma while the AM does not.
The comparison on equal footing (converged ChEES calibration with the same log-normal misfit,
the same network recipe and learning-rate grid, train / validation / test splits, 3 seeds) is
``experiments/e2e_vs_two_stage.py``. This script is kept for the variants (c), (b'), (d).

For one process model (``--model clm5`` or ``compas``; default noise 0.2):

1. ``make_world(n_sites)``; sites are grouped into 30 x 30 degree lat-lon blocks and whole
   blocks are withheld (seeded) until >= ``--holdout`` of the sites are out: a SPATIAL hold-out.
2. (a) **two-stage**: short AM chains (`soc_jax.calibration.calibrate`, ``--n-test`` /
   ``--n-formal`` steps, 2 chains) on the training sites, then PRODA's network
   (`train_ensemble`, Adadelta lr 1.0, L2 loss) on the posterior means;
   (b) **end-to-end** (`soc_jax.proda.end_to_end`, sigmoid link, log-SOC misfit, Adam);
   (c) **end-to-end initialised from two-stage**: a network first fitted to logit(posterior
   means) (the two-stage recipe on the logit scale), then trained end to end;
   (b') with ``--with-prior``: end-to-end with a pull toward the AM posteriors of the training
   sites (``prior_weight`` 1);
   (d) **amortised posterior** (variational end-to-end with PRODA's cost as likelihood, the
   density the AM sampler targets) checked against the AM posteriors of the training sites
   (means, sds) and for coverage of the true parameters (90 % intervals) on held-out sites.
3. Metrics on held-out sites: pooled NSE of observed layer SOC (noisy observations; mean over
   seed members of the modelled profile, `heldout_nse`) and R2 of the normalized parameters vs
   the truth (parameters with a varying truth only), mean and per parameter.

Writes ``--out/<model>/results.json`` and figures; ``--docs`` copies the figures to
docs/figures/e2e_<model>_*.png. Usage::

    python experiments/end_to_end.py --model clm5 [--n-sites 240] [--docs]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np


def r2_table(pred, truth, names, varying):
    rows = {}
    for j, name in enumerate(names):
        if not varying[j]:
            continue
        sst = np.sum((truth[:, j] - truth[:, j].mean()) ** 2)
        rows[name] = float(1 - np.sum((pred[:, j] - truth[:, j]) ** 2) / sst)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("clm5", "compas"), default="clm5")
    ap.add_argument("--n-sites", type=int, default=240)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--n-formal", type=int, default=3000)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--bootstrap", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=120)
    ap.add_argument("--patience", type=int, default=25)
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam step of end-to-end training")
    ap.add_argument("--hidden", default="128,128")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/end_to_end")
    ap.add_argument("--docs", action="store_true")
    ap.add_argument("--tag", default="", help="suffix of the docs figure names")
    ap.add_argument(
        "--with-prior", action="store_true", help="also end-to-end with a pull toward AM posteriors"
    )
    args = ap.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp

    from soc_jax.calibration.driver import Settings, calibrate
    from soc_jax.data import covariate_bounds, make_world, minmax_scale
    from soc_jax.data.covariates import _matrix
    from soc_jax.data.synthetic import truth_table
    from soc_jax.models import get_model
    from soc_jax.proda import end_to_end as e2e
    from soc_jax.proda.holdout import spatial_holdout
    from soc_jax.proda.predict import heldout_nse
    from soc_jax.proda.train import TrainConfig, member_splits, new_ensemble, train_ensemble

    out = os.path.join(args.out, args.model)
    os.makedirs(out, exist_ok=True)
    hidden = tuple(int(h) for h in args.hidden.split(","))
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    world = make_world(args.n_sites, seed=args.seed, model=args.model, noise=args.noise)
    times["world_s"] = time.perf_counter() - t0
    names = list(world.truth["parameter"].values.astype(str))
    table = truth_table(args.model)
    varying = np.array([table[n][1] > 0 for n in names])
    truth = world.true_params()
    train, hold, region = spatial_holdout(world.lat, world.lon, args.holdout, args.seed)
    vmin, vmax = covariate_bounds(world.grid)
    X = minmax_scale(_matrix(world.covariates), vmin, vmax)
    width = int(world.profiles.sizes["layer"])
    obs = world.observations(width)
    forcing = world.forcing_batch()
    data = e2e.make_data(args.model, X, forcing, obs)
    hold_forcing = jax.tree.map(lambda a: a[hold], forcing)
    hold_obs = jax.tree.map(lambda a: np.asarray(a)[hold], obs)
    mode = e2e.default_mode(args.model)
    results: dict = {
        "model": args.model,
        "n_sites": world.n_sites,
        "n_train": len(train),
        "n_holdout": len(hold),
        "holdout_regions": int(len(np.unique(region[hold]))),
        "noise": args.noise,
        "settings": vars(args),
    }
    print(f"{args.model}: {world.n_sites} sites, {len(train)} train, {len(hold)} held out")

    from soc_jax.calibration.likelihood import observe
    from soc_jax.proda.predict import apply_link, predict_parameters, simulate_cells

    space = get_model(args.model).PARAMETERS

    def _log_nse(seed_models, link, member_kinds):
        """NSE of log layer SOC and median |log m - log o| on held-out sites (mean over seed
        members of the modelled profile; profiles where a member fails are left out)."""
        praw = np.asarray(apply_link(predict_parameters(seed_models, X[hold]), link))
        preds, oks = [], []
        for mm in range(praw.shape[0]):
            phys = np.asarray(space.to_physical(jnp.asarray(praw[mm], jnp.float64)))
            soc, ok = simulate_cells(args.model, phys, hold_forcing, mode=mode, block=64)
            preds.append(
                np.asarray(
                    jax.vmap(observe)(
                        jnp.asarray(soc), jnp.asarray(hold_obs.depth), jnp.asarray(hold_obs.mask)
                    )
                )
            )
            oks.append(ok)
        pred = np.mean(preds, axis=0)
        ok = np.all(oks, axis=0)
        msk = np.asarray(hold_obs.mask) & ok[:, None]
        lo = np.log(np.asarray(hold_obs.soc)[msk])
        lm = np.log(np.maximum(pred[msk], 1e-6))
        nse_log = 1 - np.sum((lm - lo) ** 2) / np.sum((lo - lo.mean()) ** 2)
        return float(nse_log), float(np.median(np.abs(lm - lo)))

    def evaluate(label, models, cfg_link, p_hold, member_kinds):
        seeds = np.array([k == "seed" for k in member_kinds])
        sm = jax.tree.map(lambda a: a[seeds] if eqx.is_array(a) else a, models)
        nse = heldout_nse(args.model, sm, X[hold], hold_forcing, hold_obs, mode=mode, link=cfg_link)
        r2 = r2_table(p_hold, truth[hold], names, varying)
        log_nse, rel_err = _log_nse(sm, cfg_link, member_kinds)
        results[label] = {
            "heldout_nse": nse["nse"],
            "heldout_nse_log": log_nse,
            "heldout_median_abs_log_error": rel_err,
            "n_failed_heldout": nse["n_failed_profiles"],
            "r2_mean": float(np.mean(list(r2.values()))),
            "r2": r2,
        }
        print(label, json.dumps(results[label]))

    # (a) two-stage: calibrate the training sites, then the network on posterior means
    t0 = time.perf_counter()
    cal_dir = os.path.join(out, "calibration")
    settings = Settings(
        model=args.model,
        mode=mode,
        n_test=args.n_test,
        n_formal=args.n_formal,
        thin=10,
        n_chains=2,
        seed=args.seed,
        chunk_size=64,
    )
    prof_train = world.profiles.isel(profile=train)
    resume = os.path.exists(os.path.join(cal_dir, "settings.json"))
    cal = calibrate(
        prof_train, world.forcing, cal_dir, settings, resume=resume, progress=True, log=print
    )
    times["calibrate_s"] = time.perf_counter() - t0
    post = cal["posterior"]
    pm = post["para_summary_mean"].transpose("profile", "parameter").values
    ps = post["para_summary_std"].transpose("profile", "parameter").values
    valid = (post["valid"].values > 0).any(axis=1) & (post["status"].values & 32 == 0)
    results["calibration"] = {
        "n_valid": int(valid.sum()),
        "r2_train_sites_posterior_mean": r2_table(pm[valid], truth[train][valid], names, varying),
        "seconds": times["calibrate_s"],
    }
    results["calibration"]["r2_mean"] = float(
        np.mean(list(results["calibration"]["r2_train_sites_posterior_mean"].values()))
    )
    rows = train[valid]  # training sites with a posterior
    t0 = time.perf_counter()
    tr, va, kinds = member_splits(len(rows), args.seeds, args.bootstrap, seed=args.seed)
    tcfg = TrainConfig(
        loss="compas",
        learning_rate=1.0,
        max_epochs=args.epochs * 3,
        patience=args.patience * 2,
        hidden=hidden,
        dtype="float64",
        epochs_per_call=20,
    )
    ens2 = new_ensemble(X.shape[1], pm.shape[1], tr, va, tcfg, seed=args.seed)
    ens2 = train_ensemble(ens2, X[rows], pm[valid], tcfg, progress=True)
    times["two_stage_network_s"] = time.perf_counter() - t0
    seeds_mask = np.array([k == "seed" for k in kinds])
    p2 = np.asarray(apply_link(predict_parameters(ens2.best_models, X), "clip"))
    evaluate("two_stage", ens2.best_models, "clip", p2[seeds_mask].mean(0)[hold], kinds)

    # (b) end-to-end from scratch; validation rows are training sites (random 10 %)
    cfg = e2e.E2EConfig(
        model=args.model,
        hidden=hidden,
        batch_size=32,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.lr,
        epochs_per_call=5,
    )
    tr_e, va_e, kinds_e = member_splits(len(train), args.seeds, args.bootstrap, seed=args.seed)
    assert kinds_e == kinds
    t0 = time.perf_counter()
    ens_b = e2e.new_e2e_ensemble(X.shape[1], train[tr_e], train[va_e], cfg, seed=args.seed)
    ens_b = e2e.train_e2e(ens_b, data, cfg, progress=True)
    times["end_to_end_s"] = time.perf_counter() - t0
    pb, _ = e2e.predict_normalized(ens_b.best_models, X, cfg)
    evaluate("end_to_end", ens_b.best_models, "sigmoid", pb[seeds_mask].mean(0)[hold], kinds)
    results["end_to_end"]["epochs"] = np.asarray(ens_b.state.epoch).tolist()
    # ensemble spread (seeds + bootstraps) as uncertainty: coverage of the truth, held out
    lo, hi = np.quantile(pb[:, hold], [0.05, 0.95], axis=0)
    cov_ens = ((truth[hold] >= lo) & (truth[hold] <= hi))[:, varying].mean()
    results["end_to_end"]["ensemble_90_coverage_heldout"] = float(cov_ens)

    # (c) end-to-end initialised from the two-stage recipe fitted on logit(posterior means)
    t0 = time.perf_counter()
    z_targets = np.log(np.clip(pm[valid], 0.01, 0.99) / (1 - np.clip(pm[valid], 0.01, 0.99)))
    ens_z = new_ensemble(X.shape[1], pm.shape[1], tr, va, tcfg, seed=args.seed)
    ens_z = train_ensemble(ens_z, X[rows], z_targets, tcfg, progress=True)
    ens_c = e2e.new_e2e_ensemble(
        X.shape[1], train[tr_e], train[va_e], cfg, seed=args.seed, init_models=ens_z.best_models
    )
    ens_c = e2e.train_e2e(ens_c, data, cfg, progress=True)
    times["end_to_end_init_s"] = time.perf_counter() - t0
    pc, _ = e2e.predict_normalized(ens_c.best_models, X, cfg)
    evaluate("end_to_end_init", ens_c.best_models, "sigmoid", pc[seeds_mask].mean(0)[hold], kinds)

    if args.with_prior:  # (b') end-to-end with a pull toward the AM posteriors (training sites)
        prior_mean = np.full_like(truth, 0.5)
        prior_sd = np.ones_like(truth)
        prior_w = np.zeros(len(truth))
        prior_mean[rows], prior_sd[rows], prior_w[rows] = pm[valid], ps[valid], 1.0
        data_p = e2e.make_data(
            args.model, X, forcing, obs, prior_mean=prior_mean, prior_sd=prior_sd, prior_w=prior_w
        )
        pcfg = dataclasses.replace(cfg, prior_weight=1.0)
        t0 = time.perf_counter()
        ens_p = e2e.new_e2e_ensemble(X.shape[1], train[tr_e], train[va_e], pcfg, seed=args.seed)
        ens_p = e2e.train_e2e(ens_p, data_p, pcfg, progress=True)
        times["end_to_end_prior_s"] = time.perf_counter() - t0
        pp, _ = e2e.predict_normalized(ens_p.best_models, X, pcfg)
        evaluate(
            "end_to_end_prior", ens_p.best_models, "sigmoid", pp[seeds_mask].mean(0)[hold], kinds
        )

    # (d) amortised posterior with PRODA's cost (the AM target density)
    vcfg = e2e.E2EConfig(
        model=args.model,
        hidden=hidden,
        batch_size=32,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.lr,
        epochs_per_call=5,
        variational=True,
        misfit="proda",
        n_samples=4,
    )
    t0 = time.perf_counter()
    ens_v = e2e.new_e2e_ensemble(X.shape[1], train[tr_e][:1], train[va_e][:1], vcfg, seed=args.seed)
    ens_v = e2e.train_e2e(ens_v, data, vcfg, progress=True)
    times["variational_s"] = time.perf_counter() - t0
    member = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, ens_v.best_models)
    draws = e2e.posterior_samples(member, X, vcfg, 400, seed=1)  # (S, n, P)
    v_mean, v_sd = draws.mean(0), draws.std(0)
    from soc_jax.proda.train import load_checkpoint

    e2e.export_network(os.path.join(out, "variational.eqx"), ens_v, vcfg)  # mean head
    mean_head = load_checkpoint(os.path.join(out, "variational.eqx"))[0].best_models
    evaluate("variational", mean_head, "sigmoid", np.median(draws, 0)[hold], ["seed"])
    # vs AM at the training sites with a posterior
    d = cal["draws"]
    nd = d["n_draws"].values  # (profile, chain)
    am_draws = d["p"].transpose("profile", "chain", "draw", "parameter").values
    am_lo = np.zeros_like(pm)
    am_hi = np.zeros_like(pm)
    for i in range(len(train)):
        s = np.concatenate([am_draws[i, c, : nd[i, c]] for c in range(nd.shape[1])])
        if len(s):
            am_lo[i], am_hi[i] = np.quantile(s, [0.05, 0.95], axis=0)
    vt = train[valid]
    v_lo, v_hi = np.quantile(draws, [0.05, 0.95], axis=0)
    var = varying
    comp = {
        "n_sites": int(valid.sum()),
        "corr_mean_vs_am": float(
            np.corrcoef(v_mean[vt][:, var].ravel(), pm[valid][:, var].ravel())[0, 1]
        ),
        "mean_abs_diff_mean": float(np.mean(np.abs(v_mean[vt] - pm[valid])[:, var])),
        "median_sd_vi": float(np.median(v_sd[vt][:, var])),
        "median_sd_am": float(np.median(ps[valid][:, var])),
        "median_sd_ratio_vi_over_am": float(
            np.median(v_sd[vt][:, var] / np.maximum(ps[valid][:, var], 1e-6))
        ),
        "coverage90_truth_train_vi": float(
            ((truth[vt] >= v_lo[vt]) & (truth[vt] <= v_hi[vt]))[:, var].mean()
        ),
        "coverage90_truth_train_am": float(
            ((truth[vt] >= am_lo[valid]) & (truth[vt] <= am_hi[valid]))[:, var].mean()
        ),
        "coverage90_truth_heldout_vi": float(
            ((truth[hold] >= v_lo[hold]) & (truth[hold] <= v_hi[hold]))[:, var].mean()
        ),
    }
    results["variational"]["vs_mcmc"] = comp
    print("VI vs AM", json.dumps(comp))
    results["times_s"] = times
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    _figures(
        args,
        out,
        world,
        train,
        hold,
        names,
        varying,
        truth,
        pm,
        ps,
        valid,
        v_mean,
        v_sd,
        p2[seeds_mask].mean(0),
        pb[seeds_mask].mean(0),
        results,
    )
    return 0


def _figures(
    args,
    out,
    world,
    train,
    hold,
    names,
    varying,
    truth,
    pm,
    ps,
    valid,
    v_mean,
    v_sd,
    p_two,
    p_e2e,
    results,
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    var = [j for j in range(len(names)) if varying[j]][:4]
    fig, axes = plt.subplots(2, len(var), figsize=(3.0 * len(var), 5.6), constrained_layout=True)
    for k, j in enumerate(var):
        for row, (p, lab) in enumerate(((p_two, "two-stage"), (p_e2e, "end-to-end"))):
            ax = axes[row, k]
            ax.plot(truth[hold, j], p[hold, j], ".", ms=3)
            ax.plot([0, 1], [0, 1], "k-", lw=0.7)
            r2 = results["two_stage" if row == 0 else "end_to_end"]["r2"].get(names[j])
            ax.set(
                title=f"{lab}: {names[j]} (R2 {r2:.2f})",
                xlabel="true p (normalized)",
                ylabel="predicted p (normalized)",
                xlim=(0, 1),
                ylim=(0, 1),
            )
            ax.title.set_fontsize(8)
    fig.suptitle(f"{args.model}: held-out regions, predicted vs true parameters")
    fig.savefig(os.path.join(out, "heldout_parameters.png"), dpi=70)
    plt.close(fig)

    vt = train[valid]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), constrained_layout=True)
    v = np.array(varying)
    axes[0].plot(pm[valid][:, v].ravel(), v_mean[vt][:, v].ravel(), ".", ms=2)
    axes[0].plot([0, 1], [0, 1], "k-", lw=0.7)
    axes[0].set(
        title="posterior means",
        xlabel="AM posterior mean (normalized)",
        ylabel="amortised VI mean (normalized)",
    )
    axes[1].loglog(ps[valid][:, v].ravel(), v_sd[vt][:, v].ravel(), ".", ms=2)
    axes[1].plot([1e-3, 0.5], [1e-3, 0.5], "k-", lw=0.7)
    axes[1].set(
        title="posterior sds", xlabel="AM posterior sd (normalized)", ylabel="VI sd (normalized)"
    )
    fig.suptitle(f"{args.model}: amortised posterior vs site-level AM (training sites)")
    fig.savefig(os.path.join(out, "vi_vs_mcmc.png"), dpi=70)
    plt.close(fig)
    if args.docs:
        import shutil

        os.makedirs("docs/figures", exist_ok=True)
        for name in ("heldout_parameters", "vi_vs_mcmc"):
            shutil.copy(
                os.path.join(out, f"{name}.png"),
                f"docs/figures/e2e_{args.model}{args.tag}_{name}.png",
            )


if __name__ == "__main__":
    raise SystemExit(main())
