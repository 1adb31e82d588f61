"""The stages of the pipeline (`soc_jax.analysis.pipeline`), one function per stage.

Per world: the world -> site calibration of each model -> a PRODA network per model -> its
prediction on the grid -> system-level components before and after PRODA -> process attribution
-> convergence between the models; then the report. Each ``_<stage>(r, ...)`` hands its work to
the `_Runner` ``r``, which runs it once into the stage's folder.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from .runner import MODELS, MODES, _read_json, _Runner, _write_json

__all__ = ["run_report", "run_world"]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    good = np.isfinite(a) & np.isfinite(b)
    if good.sum() < 3 or np.std(a[good]) == 0 or np.std(b[good]) == 0:
        return float("nan")
    return float(np.corrcoef(a[good], b[good])[0, 1])


def _log_stock(stock: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok & (stock > 0), np.log(np.where(stock > 0, stock, 1.0)), np.nan)


def _world(r: _Runner, w: str):
    def fn(d):
        from ..data import make_world

        c = r.config
        world = make_world(c.n_sites, c.seed, w, c.noise, c.grid_resolution)
        world.to_netcdf(d)
        _write_json(
            {"summary": world.summary(), "failed": world.failed}, os.path.join(d, "world.json")
        )

    r.run(f"{w}_world/world", fn)


def _load_world(r: _Runner, w: str) -> dict:
    import xarray as xr

    from ..data import read_forcing, read_profiles

    d = r.dir(f"{w}_world/world")
    return {
        "profiles": read_profiles(os.path.join(d, "profiles.nc")),
        "forcing": read_forcing(os.path.join(d, "forcing.nc")),
        "covariates": xr.load_dataset(os.path.join(d, "covariates.nc")),
        "truth": xr.load_dataset(os.path.join(d, "truth.nc")),
        "grid": xr.load_dataset(os.path.join(d, "grid.nc")),
    }


def _calibrate(r: _Runner, w: str, m: str, world: dict):
    def fn(d):
        from ..calibration import Settings, calibrate

        c = r.config
        settings = Settings(
            model=m,
            mode=MODES[m],
            n_test=c.n_test,
            n_formal=c.n_formal,
            thin=c.thin,
            n_chains=c.n_chains,
            seed=c.seed,
            chunk_size=c.chunk_size,
            sampler=c.sampler,
            n_warmup=c.n_warmup,
            n_draws=c.n_draws,
        )
        res = calibrate(
            world["profiles"],
            world["forcing"],
            d,
            settings,
            resume=True,
            progress=False,
            log=lambda s: None,
        )
        post = res["posterior"]
        _write_json(
            {
                "run_seconds": res["run_seconds"],
                "evals": res["evals"],
                "skipped": res["skipped"],
                # diagnostics of the calibrated profiles only (NaN where there is no result)
                "median_r2_max": _result_median(post["r2_max"].values),
                "median_gr_mean": _result_median(post["gr_mean"].values),
                "filter_pass": float(np.mean(post["filter_pass"].values)),
            },
            os.path.join(d, "calibration.json"),
        )
        shutil.rmtree(os.path.join(d, "chunks"), ignore_errors=True)
        os.remove(os.path.join(d, "draws.nc"))

    r.run(f"{w}_world/calibrate_{m}", fn, keep_partial=True)


def _result_median(x) -> float:
    """Median over profiles with a result (NaN marks none; an infinite GR counts); NaN if none."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    return float(np.median(x)) if x.size else float("nan")


def _targets(r: _Runner, w: str, m: str):
    """The calibrated posterior means usable as network targets.

    Every profile with a result (`soc_jax.proda.targets.select_targets`: never skipped, failed
    or chainless profiles, never non-finite rows); with ``site_filter`` only those that pass
    the site filter. Without it, converged or not: the short default chains rarely pass the
    filter, and the report says so beside the numbers that rest on them.
    """
    import xarray as xr

    from ..proda.targets import select_targets

    post = xr.load_dataset(r.path(f"{w}_world/calibrate_{m}", "posterior.nc"))
    sel = select_targets(post, post["para_summary_mean"].values, site_filter=r.config.site_filter)
    return post, sel.use


def _train(r: _Runner, w: str, m: str, world: dict):
    def fn(d):
        import xarray as xr

        from ..proda import (
            TrainConfig,
            member_splits,
            new_ensemble,
            save_checkpoint,
            train_ensemble,
        )
        from ..proda.train import training_data

        c = r.config
        post, usable = _targets(r, w, m)
        r.log(
            f"{w} world, {m}: {int(usable.sum())} of {usable.size} profiles are network targets "
            f"({usable.size - int(usable.sum())} left out: no result"
            + (
                " or not passing the site filter)"
                if r.config.site_filter
                else "; converged or not)"
            )
        )
        t = xr.Dataset(
            {"p": (("profile", "parameter"), post["para_summary_mean"].values[usable])},
            coords={
                "profile_id": ("profile", post["profile_id"].values[usable].astype(str)),
                "parameter": post["parameter"].values,
            },
        )
        data = training_data(world["covariates"], world["grid"], t, "p")
        tr, va, kinds = member_splits(len(data.X), c.n_seeds, c.n_bootstrap, seed=c.seed)
        cfg = TrainConfig(
            loss=m,
            dropout=0.0,
            max_epochs=c.epochs,
            patience=c.patience,
            learning_rate=c.learning_rate,
            hidden=c.hidden,
            epochs_per_call=10,
        )
        ens = new_ensemble(data.X.shape[1], data.Y.shape[1], tr, va, cfg, seed=c.seed)
        ens = train_ensemble(ens, data.X, data.Y, cfg)
        save_checkpoint(os.path.join(d, "network.eqx"), ens, cfg, {"kinds": kinds})
        np.savez(
            os.path.join(d, "training.npz"),
            vmin=data.vmin,
            vmax=data.vmax,
            Y=data.Y,
            constant=data.Y.mean(axis=0),
            kinds=np.asarray(kinds),
            profile_id=data.profile_id.astype(str),
        )

    r.run(f"{w}_world/train_{m}", fn)


def _load_network(r: _Runner, w: str, m: str):
    from ..proda import load_checkpoint

    ens, cfg, header = load_checkpoint(r.path(f"{w}_world/train_{m}", "network.eqx"))
    tr = np.load(r.path(f"{w}_world/train_{m}", "training.npz"))
    return ens, tr


def _scaled_X(cov_matrix: np.ndarray, vmin, vmax) -> np.ndarray:
    from ..data import minmax_scale

    return minmax_scale(cov_matrix, vmin, vmax)


def _predict(r: _Runner, w: str, m: str, world: dict):
    def fn(d):
        from ..data import dataset_to_forcing
        from ..data.covariates import covariate_matrix
        from ..proda.predict import clip_parameters, global_prediction, predict_parameters

        ens, tr = _load_network(r, w, m)
        kinds = [str(k) for k in tr["kinds"]]
        grid = world["grid"]
        Xg = _scaled_X(covariate_matrix(grid), tr["vmin"], tr["vmax"])
        good = np.all(np.isfinite(Xg), axis=1)
        if not good.all():
            raise ValueError(f"{int((~good).sum())} grid cells have NaN covariates")
        fc = dataset_to_forcing(grid, dim="cell")
        pred = global_prediction(
            m,
            ens.best_models,
            kinds,
            Xg,
            fc,
            grid["lat"].values,
            float(grid.attrs["resolution_deg"]),
            mode=MODES[m],
            homogeneous=tr["constant"],
            default=(m == "clm5"),
        )
        Xs = _scaled_X(covariate_matrix(world["covariates"]), tr["vmin"], tr["vmax"])
        ps = np.asarray(clip_parameters(predict_parameters(ens.best_models, Xs)))
        extra = {f"{k}_stocks": v[0] for k, v in pred.extra.items()}
        extra.update({f"{k}_ok": v[1] for k, v in pred.extra.items()})
        np.savez(
            os.path.join(d, "prediction.npz"),
            params=pred.params.astype(np.float64),
            stocks=pred.stocks,
            ok=pred.ok,
            kinds=np.asarray(kinds),
            area=pred.area,
            best_stocks=pred.best_stocks,
            best_ok=pred.best_ok,
            site_params=ps.astype(np.float64),
            **extra,
        )
        _write_json(pred.totals, os.path.join(d, "totals.json"))

    r.run(f"{w}_world/predict_{m}", fn)


def _components(r: _Runner, w: str, world: dict):
    def fn(d):
        from ..data import dataset_to_forcing

        fc = dataset_to_forcing(world["grid"], dim="cell")
        fs = dataset_to_forcing(world["forcing"])
        n = world["grid"].sizes["cell"]
        data, site = {}, {}
        for m in MODELS:
            names = _after_proda_components(r, w, m, fc, data)
            _before_proda_components(r, w, m, fc, n, names, data)
            _site_components(r, w, m, fs, site)
        _write_components(data, world, w, os.path.join(d, "components.nc"))
        np.savez(os.path.join(d, "site_mm.npz"), **site)

    r.run(f"{w}_world/components", fn)


def _physical(m: str, p: np.ndarray) -> np.ndarray:
    """Physical parameters of model ``m`` from its normalised ones (numpy)."""
    import jax.numpy as jnp

    from ..models.registry import get_model

    return np.asarray(get_model(m).PARAMETERS.to_physical(jnp.asarray(p)))


def _customary_parameters(r: _Runner, w: str, m: str, n: int) -> tuple[np.ndarray, str]:
    """``(params (n, n_par), mode)`` before PRODA: CLM5's customary parameters (mode
    ``"default"``); COMPAS's customary set = the global mean of the site posteriors (PRODA
    GCB-2024)."""
    from ..models import clm5
    from ..models.registry import get_model

    space = get_model(m).PARAMETERS
    if m == "clm5":
        return np.broadcast_to(clm5.default_parameters(), (n, len(space))), "default"
    _, tr = _load_network(r, w, m)
    return _physical(m, np.broadcast_to(tr["constant"], (n, len(space)))), MODES[m]


def _after_proda_components(r: _Runner, w: str, m: str, fc, data: dict) -> list[str]:
    """Add ``<m>_after_<k>`` (median over the best-guess networks) and ``<m>_after_ok`` to
    ``data``; returns the names of the scalar components."""
    from .components import components_batch

    pred = np.load(r.path(f"{w}_world/predict_{m}", "prediction.npz"))
    per = []
    for s in np.flatnonzero(pred["kinds"] == "seed"):
        comps, _, ok = components_batch(m, _physical(m, pred["params"][s]), fc, MODES[m])
        per.append((comps, ok))
    names = [k for k in per[0][0] if np.ndim(per[0][0][k]) == 1]
    oks = np.stack([o for _, o in per])
    for k in names:
        v = np.where(oks, np.stack([c[k] for c, _ in per]), np.nan)
        data[f"{m}_after_{k}"] = np.nanmedian(v, axis=0) if oks.any() else v[0]
    data[f"{m}_after_ok"] = oks.any(axis=0)
    return names


def _before_proda_components(r: _Runner, w: str, m: str, fc, n: int, names, data: dict):
    """Add ``<m>_before_<k>`` and ``<m>_before_ok`` (customary parameters) to ``data``."""
    from .components import components_batch

    xb, mode_b = _customary_parameters(r, w, m, n)
    comps, soc, ok = components_batch(m, np.ascontiguousarray(xb), fc, mode_b)
    for k in names:
        data[f"{m}_before_{k}"] = np.where(ok, comps[k], np.nan)
    data[f"{m}_before_ok"] = ok


def _site_components(r: _Runner, w: str, m: str, fs, site: dict):
    """COMPAS's Michaelis-Menten constants and substrates at the sites with the calibrated
    parameters (the paper's Fig. 5: site-level DA), into ``site``."""
    from .components import components_batch

    post, usable = _targets(r, w, m)
    xs = post["para_mean_physical"].values
    comps_s, soc_s, ok_s = components_batch(m, xs, fs, MODES[m])
    ok_s = ok_s & usable
    if m == "compas":
        for k in ("km_decom_xi", "km_assim_xi", "soc_substrate", "doc_substrate"):
            site[k] = np.where(ok_s[:, None], comps_s[k], np.nan)


def _write_components(data: dict, world: dict, w: str, path: str) -> None:
    """``components.nc``: every ``<model>_<before|after>_<component>`` on the grid cells."""
    import xarray as xr

    from ..data.netcdf import write_netcdf
    from .components import LONG_NAMES

    ds = xr.Dataset(
        coords={
            "cell": np.arange(world["grid"].sizes["cell"]),
            "lat": ("cell", world["grid"]["lat"].values),
            "lon": ("cell", world["grid"]["lon"].values),
        }
    )
    for k, v in data.items():
        comp = k.split("_", 2)[2]
        long_name, units = LONG_NAMES.get(comp, ("steady state succeeded", "1"))
        arr = np.asarray(v, float) if comp != "ok" else np.asarray(v).astype(np.int8)
        ds[k] = (
            "cell",
            arr,
            {
                "long_name": f"{k.split('_')[0].upper()} {k.split('_')[1]} PRODA: {long_name}",
                "units": units,
            },
        )
    write_netcdf(ds, path, title=f"system-level components, {w} world")


def _target(r: _Runner, world: dict, area: np.ndarray):
    from ..data import dataset_to_forcing, pad_observations
    from .attribution import Target

    obs = pad_observations(world["profiles"])
    return Target(
        forcing_cells=dataset_to_forcing(world["grid"], dim="cell"),
        area=area,
        forcing_sites=dataset_to_forcing(world["forcing"]),
        depth=np.where(obs.mask, obs.depth, 0.1),
        obs=np.where(obs.mask, obs.soc, 0.0),
        mask=np.asarray(obs.mask, bool),
    )


def _attribution(r: _Runner, w: str, m: str, world: dict):
    def fn(d):
        from .attribution import component_control, marginal_sensitivity, summarize_members

        c = r.config
        pred = np.load(r.path(f"{w}_world/predict_{m}", "prediction.npz"))
        _, tr = _load_network(r, w, m)
        kinds = pred["kinds"]
        members = np.flatnonzero(kinds == "bootstrap")
        if members.size == 0:
            members = np.flatnonzero(kinds == "seed")
        if c.attribution_members:
            members = members[: c.attribution_members]
        target = _target(r, world, pred["area"])
        pc, ps = pred["params"][members], pred["site_params"][members]
        control = component_control(m, MODES[m], pc, tr["constant"], target, ps)
        sens = marginal_sensitivity(m, MODES[m], pc, target)
        vals = ("total_pg", "d_total_pg", "abs_d_total_pg", "nse", "r", "r2", "mse")
        vals += ("d_nse", "d_r", "d_r2", "d_mse")
        _write_json(
            {
                "members": members.tolist(),
                "control": control,
                "control_summary": summarize_members(control, ("group",), vals),
                "sensitivity": sens,
                "sensitivity_summary": summarize_members(
                    sens, ("group", "delta"), ("total_pg", "rel_change")
                ),
            },
            os.path.join(d, "attribution.json"),
        )

    r.run(f"{w}_world/attribution_{m}", fn)


def _convergence(r: _Runner, w: str, world: dict):
    def fn(d):
        import xarray as xr

        from .components import SHARED_NAMES

        comp = xr.load_dataset(r.path(f"{w}_world/components", "components.nc"))
        pc = np.load(r.path(f"{w}_world/predict_clm5", "prediction.npz"))
        pm = np.load(r.path(f"{w}_world/predict_compas", "prediction.npz"))
        i100 = 1  # stocks: 0-30, 0-100, 0-200 cm, total
        before_c = _log_stock(pc["default_stocks"][:, i100], pc["default_ok"])
        before_m = _log_stock(pm["homogeneous_stocks"][:, i100], pm["homogeneous_ok"])
        after_c = _log_stock(pc["best_stocks"][:, i100], pc["best_ok"])
        after_m = _log_stock(pm["best_stocks"][:, i100], pm["best_ok"])
        truth = _log_stock(world["grid"]["stock_100cm"].values, np.ones(len(after_c), bool))
        res = {
            "world": w,
            "n_cells": len(after_c),
            "log_soc": {
                "before": _pearson(before_c, before_m),
                "after": _pearson(after_c, after_m),
                "paper_before": -0.026,
                "paper_after": 0.51,
            },
            "vs_truth": {
                "clm5_before": _pearson(before_c, truth),
                "compas_before": _pearson(before_m, truth),
                "clm5_after": _pearson(after_c, truth),
                "compas_after": _pearson(after_m, truth),
            },
            "components": {},
            "paper_components_after": {"A": 0.52, "K": 0.55, "xi": 0.80},
            "totals_pg_100cm": {},
        }
        for k in SHARED_NAMES:
            res["components"][k] = {
                s: _pearson(comp[f"clm5_{s}_{k}"].values, comp[f"compas_{s}_{k}"].values)
                for s in ("before", "after")
            }
        for m in ("clm5", "compas"):
            t = _read_json(r.path(f"{w}_world/predict_{m}", "totals.json"))
            res["totals_pg_100cm"][m] = {
                "proda_best_guess": t["proda_best_guess"]["top_100cm"],
                "before": t["default" if m == "clm5" else "homogeneous"]["top_100cm"],
                "bootstrap": t.get("proda_bootstrap", {}).get("top_100cm"),
            }
        res["log_soc_sites"] = _site_log_soc(r, w, world, pc, pm)
        area = pc["area"]
        res["totals_pg_100cm"]["truth"] = float(
            np.sum(world["grid"]["stock_100cm"].values * area) / 1e15
        )
        _write_json(res, os.path.join(d, "convergence.json"))

    r.run(f"{w}_world/convergence", fn)


def _site_log_soc(r: _Runner, w: str, world: dict, pc, pm) -> dict:
    """Pearson r of log SOC 0-100 cm between the models across the sites (before / after)."""
    from ..data import dataset_to_forcing
    from ..grid import stocks
    from ..proda.predict import simulate_cells
    from .attribution import _block

    fs = dataset_to_forcing(world["forcing"])
    n = world["profiles"].sizes["profile"]
    logs = {}
    for m, pred in (("clm5", pc), ("compas", pm)):
        xb, mode_b = _customary_parameters(r, w, m, n)
        soc, ok = simulate_cells(m, np.ascontiguousarray(xb), fs, mode=mode_b, block=_block(n))
        logs[(m, "before")] = _log_stock(np.asarray(stocks(soc).top_100cm), ok)
        per = []
        for s in np.flatnonzero(pred["kinds"] == "seed"):
            x = _physical(m, pred["site_params"][s])
            soc, ok = simulate_cells(m, x, fs, mode=MODES[m], block=_block(n))
            per.append(_log_stock(np.asarray(stocks(soc).top_100cm), ok))
        logs[(m, "after")] = np.nanmedian(np.stack(per), axis=0)  # median of logs = log median
    obs = _log_stock(world["profiles"]["stock_100cm"].values, np.ones(n, bool))
    return {
        "n_sites": int(n),
        "before": _pearson(logs[("clm5", "before")], logs[("compas", "before")]),
        "after": _pearson(logs[("clm5", "after")], logs[("compas", "after")]),
        "clm5_after_vs_truth": _pearson(logs[("clm5", "after")], obs),
        "compas_after_vs_truth": _pearson(logs[("compas", "after")], obs),
    }


def run_world(r: _Runner, w: str) -> None:
    """Every stage of the world generated by model ``w``, in order."""
    _world(r, w)
    world = _load_world(r, w)
    for m in MODELS:
        _calibrate(r, w, m, world)
    for m in MODELS:
        _train(r, w, m, world)
    for m in MODELS:
        _predict(r, w, m, world)
    _components(r, w, world)
    for m in MODELS:
        _attribution(r, w, m, world)
    _convergence(r, w, world)


def run_report(r: _Runner) -> None:
    """The ``report`` stage: figures and ``report.md``."""

    def fn(d):
        from .figures import all_figures
        from .report import write_report

        figs = all_figures(r, d)
        write_report(r, d, figs)

    r.run("report", fn)
