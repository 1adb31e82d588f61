"""Experiment: two-stage PRODA vs end-to-end training on equal footing (synthetic world).

Both arms get the same data, the same misfit knowledge, the same network, optimiser, tuning
effort and the same spatial hold-out:

1. ``make_world(n_sites, seed=world_seed, noise=sigma)`` (CLM5 or COMPAS; the observations
   carry multiplicative log-normal noise of sd ``sigma``).
2. **Calibration (two-stage, stage 1)**: every site is calibrated ONCE with BlackJAX ChEES-HMC
   (`soc_jax.calibration.gradient.run_batch`, sampler ``"chees"``) on the log-normal
   likelihood with the world's sigma (`likelihood.log_density(..., likelihood="lognormal",
   sd=sigma)`): the same misfit the end-to-end arm minimises. Diagnostics per site: rank
   R-hat (BlackJAX, all parameters), bulk ESS, rescued chains. A site is *converged* when its
   max rank R-hat over all parameters is < ``--rhat-max`` and no chain was rescued; only
   converged sites are two-stage targets (the others are counted and reported).
3. **Splits** (per seed ``s`` = 0, 1, 2: hold-out draw, validation draw and network init):
   test = whole 30 x 30 degree lat-lon blocks withheld until >= ``--holdout`` of the sites;
   validation = a random ``--val`` share of the remaining sites (disjoint by profile);
   training = the rest. The test sites are never used for training, early stopping or
   learning-rate selection.
4. **Networks** (same for both arms): ``60 -> hidden -> n_par``, sigmoid link to the normalized
   parameters, Adam (global-norm clip 10), batch 32, <= ``--epochs`` epochs, early stopping on
   the validation sites (patience ``--patience``) with restore-best, learning rate picked from
   ``--lrs`` on the validation loss of each arm.
   * two-stage: mean squared error between sigmoid outputs and the posterior means of the
     converged training sites (validation: converged validation sites);
   * end-to-end (`soc_jax.proda.end_to_end`): log-normal misfit with the same sigma through
     the steady state of every training site (validation: all validation sites);
   * for reference, ``two_stage_all_sites`` (posterior means of every training site,
     converged or not) and ``truth_upper_bound`` (the same regression on the TRUE parameters
     of every training site: an upper bound no real pipeline reaches).
5. Metrics on the test sites: pooled NSE of the observed layer SOC, NSE of log SOC, R2 of the
   normalized parameters vs the truth (parameters whose truth varies; mean and per
   parameter); and 0-100 cm Pg C on the world's grid vs the truth.

Writes ``--out/<model>/results.json`` (settings, versions, wall times, per-seed metrics) and a
Markdown table; calibration chunks are cached (``--out/<model>/cal_*.npz``) so a run resumes.

Usage::

    python experiments/e2e_vs_two_stage.py --model clm5 --n-sites 150
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time

import numpy as np
from end_to_end import r2_table  # this folder is on sys.path when a script runs (one R2 table)


def three_way_split(lat, lon, holdout: float, val: float, seed: int):
    """(train, val, test) site indices: test by spatial blocks, val random among the rest."""
    from soc_jax.proda.holdout import spatial_holdout

    _, hold_idx, region = spatial_holdout(lat, lon, holdout, seed)
    hold = np.zeros(len(region), bool)
    hold[hold_idx] = True
    rest = np.flatnonzero(~hold)
    rng = np.random.default_rng(10_000 + seed)
    n_val = max(1, int(round(val * len(rest))))
    v = np.sort(rng.choice(rest, n_val, replace=False))
    tr = np.setdiff1d(rest, v)
    te = np.flatnonzero(hold)
    assert not (set(tr) & set(v)) and not (set(tr) & set(te)) and not (set(v) & set(te))
    return tr, v, te, int(len(np.unique(region[hold])))


# -- stage 1: ChEES calibration with the log-normal likelihood ---------------------------------


def calibrate_sites(world, args, out_dir, log=print) -> dict:
    """ChEES on every site (chunks cached); returns posterior means/sds and diagnostics."""
    import blackjax
    import jax
    import jax.numpy as jnp

    from soc_jax.calibration import gradient
    from soc_jax.models import get_model
    from soc_jax.proda.end_to_end import default_mode

    model, mode = args.model, default_mode(args.model)
    module = get_model(model)
    n_par = len(module.PARAMETERS)
    cfg = gradient.GradientConfig(
        sampler="chees",
        n_warmup=args.warmup,
        n_draws=args.draws,
        max_tree_depth=args.max_tree_depth,
    ).validate()
    lp = _cached_density(model, mode, args.noise)
    obs = world.observations(int(world.profiles.sizes["layer"]))
    forcing = world.forcing_batch()
    n = world.n_sites
    res = {k: np.zeros((n, n_par)) for k in ("mean", "sd", "rhat", "ess_bulk")}
    res["rescued"] = np.zeros(n, bool)
    res["usable"] = np.zeros(n, bool)
    res["divergent_share"] = np.zeros(n)
    res["n_grad_evals"] = np.zeros(n)
    times = []
    for c0 in range(0, n, args.chunk):
        sel = np.arange(c0, min(n, c0 + args.chunk))
        path = os.path.join(out_dir, f"cal_{c0:05d}_{len(sel)}.npz")
        if not os.path.exists(path):
            t0 = time.perf_counter()
            frc = jax.tree.map(functools.partial(_rows, sel=sel), forcing)
            data = {
                "forcing": jax.jit(lambda f: module.prepare(f, mode))(frc),
                "depth": jnp.asarray(obs.depth[sel]),
                "obs": jnp.asarray(obs.soc[sel]),
                "mask": jnp.asarray(obs.mask[sel]),
            }
            keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(args.world_seed), i))(
                jnp.asarray(sel)
            )
            out = gradient.run_batch(keys, data, lp, n_par, args.chains, cfg)
            z = np.asarray(out.z)  # (P, C, D, n)
            p = 1.0 / (1.0 + np.exp(-z))
            rh = np.stack([np.asarray(blackjax.rhat(jnp.asarray(q), 0, 1)) for q in p])
            eb = np.stack([np.asarray(blackjax.ess_bulk(jnp.asarray(q), 0, 1)) for q in p])
            pooled = p.reshape(len(sel), -1, n_par)
            n_grad = np.asarray(out.warmup_steps).sum((1, 2)) + np.asarray(out.n_steps).sum((1, 2))
            np.savez(
                path,
                mean=pooled.mean(1),
                sd=pooled.std(1, ddof=1),
                rhat=rh,
                ess_bulk=eb,
                rescued=np.asarray(out.rescued).any(1),
                usable=np.asarray(out.usable),
                divergent_share=np.asarray(out.divergent).mean((1, 2)),
                n_grad_evals=n_grad,
                seconds=time.perf_counter() - t0,
            )
        f = np.load(path)
        for k in res:
            res[k][sel] = f[k]
        times.append(float(f["seconds"]))
        log(f"  calibrated sites {sel[0]}-{sel[-1]}: {times[-1]:.0f} s")
    res["seconds"] = float(np.sum(times))
    res["chunk_seconds"] = times
    return res


def _rows(a, sel):
    import jax.numpy as jnp

    return jnp.asarray(np.asarray(a)[sel])


@functools.cache
def _cached_density(model: str, mode: str, sigma: float):
    """One log-density object per (model, mode, sigma): jit sees the same static argument."""
    from soc_jax.calibration import likelihood

    def lp(z, data):
        return likelihood.log_density(
            z, data, model=model, mode=mode, likelihood="lognormal", sd=sigma
        )

    return lp


# -- stage 2 / arms: networks with the same recipe ---------------------------------------------


def train_regression(X, Y, tr, va, lr, args, seed):
    """Two-stage network: sigmoid(net(x)) fitted to Y (normalized posterior means) by MSE.

    Adam (clip 10), batch 32, early stopping on ``va`` with restore-best. Returns the stacked
    1-member best model, the best validation MSE and its epoch (0-based).
    """
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from soc_jax.proda.network import make_ensemble

    hidden = tuple(int(h) for h in args.hidden.split(","))
    keys = jax.random.key(seed)[None]
    models = make_ensemble(keys, X.shape[1], Y.shape[1], hidden=hidden, dtype=jnp.float64)
    model = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, models)
    opt = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(lr))
    state = opt.init(eqx.filter(model, eqx.is_array))
    Xj, Yj = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)

    def mse(m, idx, w):
        p = jax.nn.sigmoid(jax.vmap(m)(Xj[idx]))
        e = jnp.mean((p - Yj[idx]) ** 2, axis=1)
        return jnp.sum(w * e) / jnp.maximum(jnp.sum(w), 1.0)

    @eqx.filter_jit
    def epoch(m, s, key):
        order = jnp.asarray(tr)[jax.random.permutation(key, len(tr))]
        nb = -(-len(tr) // 32)
        pad = nb * 32 - len(tr)
        idx = jnp.concatenate([order, jnp.zeros(pad, order.dtype)]).reshape(nb, 32)
        w = jnp.concatenate([jnp.ones(len(tr)), jnp.zeros(pad)]).reshape(nb, 32)

        def step(c, b):
            m, s = c
            g = eqx.filter_grad(mse)(m, *b)
            u, s = opt.update(g, s, eqx.filter(m, eqx.is_array))
            return (eqx.apply_updates(m, u), s), None

        (m, s), _ = jax.lax.scan(step, (m, s), (idx, w))
        return m, s, mse(m, jnp.asarray(va), jnp.ones(len(va)))

    best, best_val, best_epoch, wait = model, np.inf, -1, 0
    for e in range(args.epochs):
        model, state, v = epoch(model, state, jax.random.fold_in(jax.random.key(seed), e))
        v = float(v)
        if v < best_val:
            best, best_val, best_epoch, wait = model, v, e, 0
        else:
            wait += 1
            if wait >= args.patience:
                break
    stacked = jax.tree.map(lambda a: a[None] if eqx.is_array(a) else a, best)
    return stacked, best_val, best_epoch


def train_end_to_end(data, tr, va, lr, args, seed):
    """End-to-end network (log-normal misfit, sigma = the world's noise), same recipe."""
    from soc_jax.proda import end_to_end as e2e

    cfg = e2e.E2EConfig(
        model=args.model,
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        batch_size=32,
        max_epochs=args.epochs,
        patience=args.patience,
        learning_rate=lr,
        sigma=args.noise,
        epochs_per_call=5,
    )
    ens = e2e.new_e2e_ensemble(data.X.shape[1], tr[None], va[None], cfg, seed=seed)
    ens = e2e.train_e2e(ens, data, cfg)
    return ens.best_models, float(ens.state.best_val[0]), int(ens.state.best_epoch[0]), cfg


def predict_p(models, X) -> np.ndarray:
    """(n, n_par) normalized parameters of a 1-member stacked sigmoid network."""
    from soc_jax.proda.predict import apply_link, predict_parameters

    return np.asarray(apply_link(predict_parameters(models, X), "sigmoid"))[0]


# -- evaluation ---------------------------------------------------------------------------------


def soc_metrics(model, mode, p, forcing, obs) -> dict:
    """Pooled NSE of layer SOC and of log SOC of normalized parameters ``p`` on some sites."""
    import jax
    import jax.numpy as jnp

    from soc_jax.calibration.likelihood import observe
    from soc_jax.models import get_model
    from soc_jax.proda.predict import simulate_cells

    space = get_model(model).PARAMETERS
    phys = np.asarray(space.to_physical(jnp.asarray(p, jnp.float64)))
    soc, ok = simulate_cells(model, phys, forcing, mode=mode, block=64)
    pred = np.asarray(
        jax.vmap(observe)(jnp.asarray(soc), jnp.asarray(obs.depth), jnp.asarray(obs.mask))
    )
    msk = np.asarray(obs.mask) & np.asarray(ok)[:, None]
    o, m = np.asarray(obs.soc)[msk], pred[msk]
    lo, lm = np.log(o), np.log(np.maximum(m, 1e-6))
    return {
        "nse": float(1 - np.sum((m - o) ** 2) / np.sum((o - o.mean()) ** 2)),
        "nse_log": float(1 - np.sum((lm - lo) ** 2) / np.sum((lo - lo.mean()) ** 2)),
        "n_failed": int((~np.asarray(ok)).sum()),
    }


def grid_total(model, mode, models, world, Xg, fg) -> tuple[float, float, int]:
    """(predicted, true) 0-100 cm Pg C on the world's grid, and failed cells (excluded)."""
    from soc_jax.proda.predict import global_prediction

    grid = world.grid
    res = float(grid.attrs.get("resolution_deg", 4.0))
    pred = global_prediction(
        model,
        models,
        ["seed"],
        Xg,
        fg,
        grid["lat"].values,
        res,
        mode=mode,
        default=False,
        block=256,
        link="sigmoid",
    )
    true = float(np.sum(grid["stock_100cm"].values * pred.area) / 1e15)
    n_failed = int(sum(v for v in pred.failed.values() if isinstance(v, (int, np.integer))))
    return float(pred.totals["proda_best_guess"]["top_100cm"]), true, n_failed


def _parse(argv) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=("clm5", "compas"), default="clm5")
    ap.add_argument("--n-sites", type=int, default=150)
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--val", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--max-tree-depth", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--rhat-max", type=float, default=1.05)
    ap.add_argument("--lrs", default="1e-3,3e-3")
    ap.add_argument("--epochs", type=int, default=150)
    ap.add_argument("--patience", type=int, default=25)
    ap.add_argument("--hidden", default="128,128")
    ap.add_argument("--calibrate-only", action="store_true")
    ap.add_argument("--out", default="results/e2e_vs_two_stage")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    import jax

    jax.config.update("jax_enable_x64", True)
    from soc_jax.data import make_world
    from soc_jax.data.synthetic import truth_table
    from soc_jax.proda import end_to_end as e2e

    out = os.path.join(args.out, args.model)
    os.makedirs(out, exist_ok=True)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    world = make_world(args.n_sites, seed=args.world_seed, model=args.model, noise=args.noise)
    times["world_s"] = time.perf_counter() - t0
    study = {"args": args, "world": world, "mode": e2e.default_mode(args.model), "times": times}
    study["names"] = list(world.truth["parameter"].values.astype(str))
    table = truth_table(args.model)
    study["varying"] = np.array([table[n][1] > 0 for n in study["names"]])
    study["truth"] = world.true_params()

    print(f"calibrating {world.n_sites} sites (ChEES {args.chains} x {args.warmup}+{args.draws})")
    study["cal"] = cal = calibrate_sites(world, args, out)
    times["calibrate_s"] = cal["seconds"]
    diag, study["converged"] = _calibration_diagnostics(study)
    print("calibration:", json.dumps({k: v for k, v in diag.items() if "r2_post" not in k}))
    results = _results_header(args, diag)
    if args.calibrate_only:
        _write(out, results, times)
        return 0

    study |= _network_inputs(world, args.model)
    for s in range(args.seeds):
        results["seeds"].append(_run_seed(study, s))
        _write(out, results, times)
    results["summary"] = _summary(results["seeds"])
    _write(out, results, times)
    print(_table(results))
    return 0


def _calibration_diagnostics(study: dict) -> tuple[dict, np.ndarray]:
    """``(diagnostics, converged)``: R-hat / ESS shares and counts, and the converged sites
    (max rank R-hat < ``--rhat-max``, no rescue, usable)."""
    args, cal, world = study["args"], study["cal"], study["world"]
    rmax = cal["rhat"].max(1)
    rmean = cal["rhat"].mean(1)
    finite = np.all(np.isfinite(cal["rhat"]), axis=1)
    converged = finite & (rmax < args.rhat_max) & ~cal["rescued"] & cal["usable"]
    r2 = r2_table(cal["mean"], study["truth"], study["names"], study["varying"])
    diag = {
        "n_sites": int(world.n_sites),
        "share_rhat_mean_lt_1.05": float(np.mean(finite & (rmean < 1.05))),
        "share_rhat_max_lt_1.05": float(np.mean(finite & (rmax < 1.05))),
        "share_rhat_max_lt_1.01": float(np.mean(finite & (rmax < 1.01))),
        "share_ess_bulk_min_ge_400": float(np.mean(cal["ess_bulk"].min(1) >= 400)),
        "median_max_rhat": float(np.median(rmax)),
        "median_min_ess_bulk": float(np.median(cal["ess_bulk"].min(1))),
        "n_rescued": int(cal["rescued"].sum()),
        "n_unusable": int((~cal["usable"]).sum()),
        "n_nonfinite_rhat": int((~finite).sum()),
        "n_converged": int(converged.sum()),
        "converged_rule": f"max rank R-hat over all parameters < {args.rhat_max}, no rescue",
        "median_grad_evals_per_site": float(np.median(cal["n_grad_evals"])),
        "median_divergent_share": float(np.median(cal["divergent_share"])),
        "r2_posterior_mean_all_sites": r2,
    }
    diag["r2_posterior_mean_mean"] = float(
        np.mean(list(diag["r2_posterior_mean_all_sites"].values()))
    )
    return diag, converged


def _results_header(args, diag: dict) -> dict:
    """``results.json`` before the seeds: settings, versions, machine, calibration."""
    import blackjax
    import jax

    return {
        "model": args.model,
        "settings": vars(args),
        "versions": {
            "jax": jax.__version__,
            "blackjax": blackjax.__version__,
            "python": platform.python_version(),
        },
        "machine": "2-core CPU shared with other jobs (wall times carry that load)",
        "calibration": diag,
        "seeds": [],
    }


def _network_inputs(world, model: str) -> dict:
    """Scaled covariates ``X`` of the sites, the end-to-end ``data``, the grid's ``Xg`` and
    forcing ``fg`` (cells with NaN covariates dropped) and ``take`` (rows of obs, forcing)."""
    from soc_jax.data import covariate_bounds, dataset_to_forcing, minmax_scale
    from soc_jax.data.covariates import covariate_matrix
    from soc_jax.proda import end_to_end as e2e

    vmin, vmax = covariate_bounds(world.grid)
    X = minmax_scale(covariate_matrix(world.covariates), vmin, vmax)
    forcing = world.forcing_batch()
    obs = world.observations(int(world.profiles.sizes["layer"]))
    data = e2e.make_data(model, X, forcing, obs)
    keep = np.all(np.isfinite(minmax_scale(covariate_matrix(world.grid), vmin, vmax)), axis=1)
    grid_cells = world.grid.isel(cell=np.flatnonzero(keep))
    Xg = minmax_scale(covariate_matrix(grid_cells), vmin, vmax)
    fg = dataset_to_forcing(grid_cells, dim="cell")
    if (~keep).any():
        print(f"grid: dropped {int((~keep).sum())} cells with NaN covariates")
    return {"X": X, "data": data, "Xg": Xg, "fg": fg, "take": _take_rows(obs, forcing)}


def _run_seed(study: dict, s: int) -> dict:
    """One seed: its three-way split, every arm trained (learning rate picked on validation)
    and evaluated on the test sites."""
    args, world = study["args"], study["world"]
    converged = study["converged"]
    tr, va, te, n_regions = three_way_split(world.lat, world.lon, args.holdout, args.val, s)
    rec = {
        "seed": s,
        "n_train": len(tr),
        "n_val": len(va),
        "n_test": len(te),
        "test_regions": n_regions,
    }
    tr_c, va_c = tr[converged[tr]], va[converged[va]]
    rec["two_stage_n_train_converged"] = len(tr_c)
    rec["two_stage_n_val_converged"] = len(va_c)
    rec["two_stage_n_train_dropped_unconverged"] = int(len(tr) - len(tr_c))
    print(
        f"seed {s}: train {len(tr)} (converged {len(tr_c)}), val {len(va)} "
        f"(converged {len(va_c)}), test {len(te)} in {n_regions} blocks"
    )
    f_te, o_te = study["take"](te)
    arms = _train_arms(study, s, tr, va, tr_c, va_c)
    t0 = time.perf_counter()
    for name, arm in arms.items():
        rec[name] = _evaluate_arm(study, arm, te, f_te, o_te)
        print(s, name, json.dumps({k: v for k, v in rec[name].items() if k != "r2"}))
    study["times"][f"evaluate_s{s}"] = time.perf_counter() - t0
    return rec


def _train_arms(study: dict, s: int, tr, va, tr_c, va_c) -> dict:
    """The two-stage regressions (converged sites, all sites, the truth) and end-to-end."""
    args, X, cal, times = study["args"], study["X"], study["cal"], study["times"]
    lrs = [float(v) for v in args.lrs.split(",")]
    arms = {}
    t0 = time.perf_counter()
    arms["two_stage"] = _pick(
        [train_regression(X, cal["mean"], tr_c, va_c, lr, args, s) for lr in lrs], lrs
    )
    arms["two_stage_all_sites"] = _pick(
        [train_regression(X, cal["mean"], tr, va, lr, args, s) for lr in lrs], lrs
    )
    arms["truth_upper_bound"] = _pick(
        [train_regression(X, study["truth"], tr, va, lr, args, s) for lr in lrs], lrs
    )
    times[f"two_stage_networks_s{s}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fits = [train_end_to_end(study["data"], tr, va, lr, args, s) for lr in lrs]
    arms["end_to_end"] = _pick([f[:3] for f in fits], lrs)
    times[f"end_to_end_s{s}"] = time.perf_counter() - t0
    return arms


def _evaluate_arm(study: dict, arm: dict, te, f_te, o_te) -> dict:
    """An arm's test-site NSE, parameter R2 and 0-100 cm Pg C on the grid."""
    model, mode, truth = study["args"].model, study["mode"], study["truth"]
    p = predict_p(arm["models"], study["X"])
    m = soc_metrics(model, mode, p[te], f_te, o_te)
    r2 = r2_table(p[te], truth[te], study["names"], study["varying"])
    pg, pg_true, n_fail = grid_total(
        model, mode, arm["models"], study["world"], study["Xg"], study["fg"]
    )
    return {
        "lr": arm["lr"],
        "val_loss_per_lr": arm["val_losses"],
        "best_epoch": arm["epochs"],
        "heldout_nse": m["nse"],
        "heldout_nse_log": m["nse_log"],
        "n_failed_heldout": m["n_failed"],
        "r2_mean": float(np.mean(list(r2.values()))),
        "r2_median": float(np.median(list(r2.values()))),
        "r2": r2,
        "pg_c_100cm": pg,
        "pg_c_100cm_truth": pg_true,
        "grid_failed_cells": n_fail,
    }


def _take_rows(obs, forcing):
    import jax

    from soc_jax.data import ObservationBatch

    def take(idx):
        f = jax.tree.map(lambda a: np.asarray(a)[idx], forcing)
        o = ObservationBatch(
            depth=np.asarray(obs.depth)[idx],
            soc=np.asarray(obs.soc)[idx],
            mask=np.asarray(obs.mask)[idx],
        )
        return f, o

    return take


def _pick(fits, lrs) -> dict:
    """The fit with the lowest validation loss (never the test set)."""
    vals = [f[1] for f in fits]
    k = int(np.argmin(vals))
    return {"models": fits[k][0], "lr": lrs[k], "val_losses": vals, "epochs": fits[k][2]}


def _summary(seeds) -> dict:
    arms = [k for k in seeds[0] if isinstance(seeds[0][k], dict)]
    keys = ("heldout_nse", "heldout_nse_log", "r2_mean", "r2_median", "pg_c_100cm")
    out = {}
    for a in arms:
        out[a] = {}
        for k in keys:
            v = np.array([s[a][k] for s in seeds])
            out[a][k] = {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0}
    out["pg_c_100cm_truth"] = seeds[0]["two_stage"]["pg_c_100cm_truth"]
    return out


def _table(results) -> str:
    s = results["summary"]
    lines = [
        "| arm | held-out NSE (SOC) | NSE (log SOC) | parameter R2 (mean) | R2 (median) "
        "| 0-100 cm Pg C |",
        "|---|---|---|---|---|---|",
    ]
    for a in ("two_stage", "two_stage_all_sites", "end_to_end", "truth_upper_bound"):
        r = s[a]
        cells = [
            f"{r[k]['mean']:.3f} ± {r[k]['sd']:.3f}"
            for k in ("heldout_nse", "heldout_nse_log", "r2_mean", "r2_median")
        ]
        pg = r["pg_c_100cm"]
        cells.append(f"{pg['mean']:.0f} ± {pg['sd']:.0f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    lines.append(f"| truth | | | | | {s['pg_c_100cm_truth']:.0f} |")
    return "\n".join(lines)


def _write(out, results, times):
    results["times_s"] = times
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    raise SystemExit(main())
