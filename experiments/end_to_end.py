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
    """R2 of predicted vs true normalized parameters, per parameter with a varying truth
    (`soc_jax.proda.train.recovery_table`)."""
    from soc_jax.proda.train import recovery_table

    rows = recovery_table(pred, truth, names)
    return {r["parameter"]: r["r2"] for r, v in zip(rows, varying, strict=True) if v}


def _parse(argv) -> argparse.Namespace:
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
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    import jax

    jax.config.update("jax_enable_x64", True)

    s = _setup(args)
    _two_stage(s)  # (a)
    cfg = _e2e_config(args)
    s.tr_e, s.va_e, kinds_e = _member_splits(s, len(s.train))
    assert kinds_e == s.kinds
    ens_b, pb = _e2e_arm(s, "end_to_end", cfg, s.data)  # (b)
    _ensemble_coverage(s, ens_b, pb)
    _e2e_from_two_stage(s, cfg)  # (c)
    if args.with_prior:  # (b')
        _e2e_with_prior(s, cfg)
    v_mean, v_sd = _variational(s)  # (d)
    s.results["times_s"] = s.times
    with open(os.path.join(s.out, "results.json"), "w") as f:
        json.dump(s.results, f, indent=1)
    _figures(
        s,
        v_mean,
        v_sd,
        s.p_two[s.seeds_mask].mean(0),
        pb[s.seeds_mask].mean(0),
    )
    return 0


@dataclasses.dataclass
class _Study:
    """The world, its spatial split and what the arms share (filled in arm by arm)."""

    args: argparse.Namespace
    out: str
    hidden: tuple[int, ...]
    world: object
    names: list
    varying: np.ndarray
    truth: np.ndarray
    train: np.ndarray
    hold: np.ndarray
    X: np.ndarray
    forcing: object
    obs: object
    data: object
    hold_forcing: object
    hold_obs: object
    mode: str
    results: dict
    times: dict
    # filled by the arms: (a)'s calibration and networks, (b)'s member splits
    cal: dict | None = None
    pm: np.ndarray | None = None  # AM posterior means (normalized), training sites
    ps: np.ndarray | None = None  # and sds
    valid: np.ndarray | None = None  # training sites with a posterior
    rows: np.ndarray | None = None  # their rows in the world
    tr: np.ndarray | None = None  # two-stage member splits over ``rows``
    va: np.ndarray | None = None
    kinds: list | None = None
    tcfg: object = None
    seeds_mask: np.ndarray | None = None
    p_two: np.ndarray | None = None  # two-stage parameters, every member and site
    tr_e: np.ndarray | None = None  # end-to-end member splits over ``train``
    va_e: np.ndarray | None = None


def _setup(args) -> _Study:
    """The world, the spatial hold-out, the scaled covariates and the end-to-end data."""
    import jax

    from soc_jax.data import covariate_bounds, make_world, minmax_scale
    from soc_jax.data.covariates import covariate_matrix
    from soc_jax.data.synthetic import truth_table
    from soc_jax.proda import end_to_end as e2e
    from soc_jax.proda.holdout import spatial_holdout

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
    X = minmax_scale(covariate_matrix(world.covariates), vmin, vmax)
    width = int(world.profiles.sizes["layer"])
    obs = world.observations(width)
    forcing = world.forcing_batch()
    data = e2e.make_data(args.model, X, forcing, obs)
    hold_forcing = jax.tree.map(lambda a: a[hold], forcing)
    hold_obs = jax.tree.map(lambda a: np.asarray(a)[hold], obs)
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
    return _Study(
        args, out, hidden, world, names, varying, truth, train, hold, X, forcing, obs, data,
        hold_forcing, hold_obs, e2e.default_mode(args.model), results, times,
    )  # fmt: skip


def _member_splits(s: _Study, n: int):
    """Training / validation rows of the seed and bootstrap members over ``n`` rows."""
    from soc_jax.proda.train import member_splits

    return member_splits(n, s.args.seeds, s.args.bootstrap, seed=s.args.seed)


def _log_nse(s: _Study, seed_models, link):
    """NSE of log layer SOC and median |log m - log o| on held-out sites (mean over seed
    members of the modelled profile; profiles where a member fails are left out)."""
    import jax
    import jax.numpy as jnp

    from soc_jax.calibration.likelihood import observe
    from soc_jax.models import get_model
    from soc_jax.proda.predict import apply_link, predict_parameters, simulate_cells

    space = get_model(s.args.model).PARAMETERS
    hold_obs = s.hold_obs
    praw = np.asarray(apply_link(predict_parameters(seed_models, s.X[s.hold]), link))
    preds, oks = [], []
    for mm in range(praw.shape[0]):
        phys = np.asarray(space.to_physical(jnp.asarray(praw[mm], jnp.float64)))
        soc, ok = simulate_cells(s.args.model, phys, s.hold_forcing, mode=s.mode, block=64)
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


def _evaluate(s: _Study, label, models, cfg_link, p_hold, member_kinds):
    """Held-out NSE (layer SOC and log SOC) and parameter R2 of one arm into ``s.results``."""
    import equinox as eqx
    import jax

    from soc_jax.proda.predict import heldout_nse

    seeds = np.array([k == "seed" for k in member_kinds])
    sm = jax.tree.map(lambda a: a[seeds] if eqx.is_array(a) else a, models)
    nse = heldout_nse(
        s.args.model, sm, s.X[s.hold], s.hold_forcing, s.hold_obs, mode=s.mode, link=cfg_link
    )
    r2 = r2_table(p_hold, s.truth[s.hold], s.names, s.varying)
    log_nse, rel_err = _log_nse(s, sm, cfg_link)
    s.results[label] = {
        "heldout_nse": nse["nse"],
        "heldout_nse_log": log_nse,
        "heldout_median_abs_log_error": rel_err,
        "n_failed_heldout": nse["n_failed_profiles"],
        "r2_mean": float(np.mean(list(r2.values()))),
        "r2": r2,
    }
    print(label, json.dumps(s.results[label]))


def _calibrate_training_sites(s: _Study) -> None:
    """Short AM chains at the training sites: posterior means ``pm``, sds ``ps``, ``valid``."""
    from soc_jax.calibration.driver import Settings, calibrate

    args = s.args
    t0 = time.perf_counter()
    cal_dir = os.path.join(s.out, "calibration")
    settings = Settings(
        model=args.model,
        mode=s.mode,
        n_test=args.n_test,
        n_formal=args.n_formal,
        thin=10,
        n_chains=2,
        seed=args.seed,
        chunk_size=64,
    )
    prof_train = s.world.profiles.isel(profile=s.train)
    resume = os.path.exists(os.path.join(cal_dir, "settings.json"))
    cal = calibrate(
        prof_train, s.world.forcing, cal_dir, settings, resume=resume, progress=True, log=print
    )
    s.times["calibrate_s"] = time.perf_counter() - t0
    post = cal["posterior"]
    s.cal = cal
    s.pm = post["para_summary_mean"].transpose("profile", "parameter").values
    s.ps = post["para_summary_std"].transpose("profile", "parameter").values
    s.valid = (post["valid"].values > 0).any(axis=1) & (post["status"].values & 32 == 0)
    r2 = r2_table(s.pm[s.valid], s.truth[s.train][s.valid], s.names, s.varying)
    s.results["calibration"] = {
        "n_valid": int(s.valid.sum()),
        "r2_train_sites_posterior_mean": r2,
        "seconds": s.times["calibrate_s"],
    }
    s.results["calibration"]["r2_mean"] = float(
        np.mean(list(s.results["calibration"]["r2_train_sites_posterior_mean"].values()))
    )
    s.rows = s.train[s.valid]  # training sites with a posterior


def _two_stage(s: _Study) -> None:
    """(a) calibrate the training sites, then PRODA's network on the posterior means."""
    from soc_jax.proda.predict import apply_link, predict_parameters
    from soc_jax.proda.train import TrainConfig, new_ensemble, train_ensemble

    _calibrate_training_sites(s)
    args = s.args
    t0 = time.perf_counter()
    s.tr, s.va, s.kinds = _member_splits(s, len(s.rows))
    s.tcfg = TrainConfig(
        loss="compas",
        learning_rate=1.0,
        max_epochs=args.epochs * 3,
        patience=args.patience * 2,
        hidden=s.hidden,
        dtype="float64",
        epochs_per_call=20,
    )
    ens2 = new_ensemble(s.X.shape[1], s.pm.shape[1], s.tr, s.va, s.tcfg, seed=args.seed)
    ens2 = train_ensemble(ens2, s.X[s.rows], s.pm[s.valid], s.tcfg, progress=True)
    s.times["two_stage_network_s"] = time.perf_counter() - t0
    s.seeds_mask = np.array([k == "seed" for k in s.kinds])
    s.p_two = np.asarray(apply_link(predict_parameters(ens2.best_models, s.X), "clip"))
    _evaluate(
        s, "two_stage", ens2.best_models, "clip", s.p_two[s.seeds_mask].mean(0)[s.hold], s.kinds
    )


def _e2e_config(args, **variant):
    """The end-to-end training settings (sigmoid link, Adam); ``variant`` overrides."""
    from soc_jax.proda import end_to_end as e2e

    return e2e.E2EConfig(
        model=args.model,
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        batch_size=32,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=args.lr,
        epochs_per_call=5,
        **variant,
    )


def _e2e_arm(s: _Study, label: str, cfg, data, init_models=None, t0=None):
    """Train one end-to-end ensemble (validation rows: training sites) and evaluate it as
    ``label``; its time (from ``t0``, default now) is ``times[label + "_s"]``."""
    from soc_jax.proda import end_to_end as e2e

    t0 = time.perf_counter() if t0 is None else t0
    tr, va = s.train[s.tr_e], s.train[s.va_e]
    ens = e2e.new_e2e_ensemble(s.X.shape[1], tr, va, cfg, seed=s.args.seed, init_models=init_models)
    ens = e2e.train_e2e(ens, data, cfg, progress=True)
    s.times[f"{label}_s"] = time.perf_counter() - t0
    p, _ = e2e.predict_normalized(ens.best_models, s.X, cfg)
    _evaluate(s, label, ens.best_models, "sigmoid", p[s.seeds_mask].mean(0)[s.hold], s.kinds)
    return ens, p


def _ensemble_coverage(s: _Study, ens_b, pb) -> None:
    """Epochs of (b) and its ensemble spread (seeds + bootstraps) as uncertainty: coverage of
    the truth on the held-out sites."""
    s.results["end_to_end"]["epochs"] = np.asarray(ens_b.state.epoch).tolist()
    lo, hi = np.quantile(pb[:, s.hold], [0.05, 0.95], axis=0)
    t = s.truth[s.hold]
    cov_ens = ((t >= lo) & (t <= hi))[:, s.varying].mean()
    s.results["end_to_end"]["ensemble_90_coverage_heldout"] = float(cov_ens)


def _e2e_from_two_stage(s: _Study, cfg) -> None:
    """(c) end-to-end initialised from the two-stage recipe fitted on logit(posterior means)."""
    from soc_jax.proda.train import new_ensemble, train_ensemble

    t0 = time.perf_counter()
    pm = s.pm[s.valid]
    z_targets = np.log(np.clip(pm, 0.01, 0.99) / (1 - np.clip(pm, 0.01, 0.99)))
    ens_z = new_ensemble(s.X.shape[1], s.pm.shape[1], s.tr, s.va, s.tcfg, seed=s.args.seed)
    ens_z = train_ensemble(ens_z, s.X[s.rows], z_targets, s.tcfg, progress=True)
    _e2e_arm(s, "end_to_end_init", cfg, s.data, init_models=ens_z.best_models, t0=t0)


def _e2e_with_prior(s: _Study, cfg) -> None:
    """(b') end-to-end with a pull toward the AM posteriors of the training sites."""
    from soc_jax.proda import end_to_end as e2e

    rows, valid = s.rows, s.valid
    prior_mean = np.full_like(s.truth, 0.5)
    prior_sd = np.ones_like(s.truth)
    prior_w = np.zeros(len(s.truth))
    prior_mean[rows], prior_sd[rows], prior_w[rows] = s.pm[valid], s.ps[valid], 1.0
    data_p = e2e.make_data(
        s.args.model, s.X, s.forcing, s.obs,
        prior_mean=prior_mean, prior_sd=prior_sd, prior_w=prior_w,
    )  # fmt: skip
    _e2e_arm(s, "end_to_end_prior", dataclasses.replace(cfg, prior_weight=1.0), data_p)


def _variational(s: _Study):
    """(d) amortised posterior with PRODA's cost (the AM target density); returns its mean and
    sd (n, P) and compares them with the AM posteriors."""
    import equinox as eqx
    import jax

    from soc_jax.proda import end_to_end as e2e
    from soc_jax.proda.train import load_checkpoint

    vcfg = _e2e_config(s.args, variational=True, misfit="proda", n_samples=4)
    t0 = time.perf_counter()
    tr, va = s.train[s.tr_e][:1], s.train[s.va_e][:1]
    ens_v = e2e.new_e2e_ensemble(s.X.shape[1], tr, va, vcfg, seed=s.args.seed)
    ens_v = e2e.train_e2e(ens_v, s.data, vcfg, progress=True)
    s.times["variational_s"] = time.perf_counter() - t0
    member = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, ens_v.best_models)
    draws = e2e.posterior_samples(member, s.X, vcfg, 400, seed=1)  # (S, n, P)
    v_mean, v_sd = draws.mean(0), draws.std(0)
    e2e.export_network(os.path.join(s.out, "variational.eqx"), ens_v, vcfg)  # mean head
    mean_head = load_checkpoint(os.path.join(s.out, "variational.eqx"))[0].best_models
    _evaluate(s, "variational", mean_head, "sigmoid", np.median(draws, 0)[s.hold], ["seed"])
    comp = _vi_vs_am(s, draws, v_mean, v_sd)
    s.results["variational"]["vs_mcmc"] = comp
    print("VI vs AM", json.dumps(comp))
    return v_mean, v_sd


def _am_intervals(s: _Study):
    """90 % intervals (5 %, 95 %) of the AM draws per training site (0 where none)."""
    d = s.cal["draws"]
    nd = d["n_draws"].values  # (profile, chain)
    am_draws = d["p"].transpose("profile", "chain", "draw", "parameter").values
    am_lo = np.zeros_like(s.pm)
    am_hi = np.zeros_like(s.pm)
    for i in range(len(s.train)):
        x = np.concatenate([am_draws[i, c, : nd[i, c]] for c in range(nd.shape[1])])
        if len(x):
            am_lo[i], am_hi[i] = np.quantile(x, [0.05, 0.95], axis=0)
    return am_lo, am_hi


def _vi_vs_am(s: _Study, draws, v_mean, v_sd) -> dict:
    """The amortised posterior against the AM at the training sites with a posterior, and its
    coverage of the truth (training and held-out sites)."""
    am_lo, am_hi = _am_intervals(s)
    truth, hold, valid, pm, ps, var = s.truth, s.hold, s.valid, s.pm, s.ps, s.varying
    vt = s.train[valid]
    v_lo, v_hi = np.quantile(draws, [0.05, 0.95], axis=0)
    return {
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


def _figures(s: _Study, v_mean, v_sd, p_two, p_e2e):
    """Held-out parameters (two-stage, end-to-end) and the amortised posterior vs the AM."""
    args, out, train, hold, names = s.args, s.out, s.train, s.hold, s.names
    varying, truth, pm, ps, valid, results = s.varying, s.truth, s.pm, s.ps, s.valid, s.results
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
