"""The output files of a calibration run: one chunk's Dataset, then ``posterior.nc`` and
``draws.nc`` over every profile (`soc_jax.calibration.driver` writes them).

* `chunk_dataset` (PRODA's AM) and `gradient_chunk` (NUTS, MALA, ChEES): the summaries of
  one chunk's profiles (`postprocess.summarize`, `gradient.summarize`), their per-chain counts and
  kept draws, written to ``OUT/chunks/chunk_NNNNN.nc``.
* `assemble`: every profile's row from the chunks; skipped profiles get NaN (floats) or 0,
  status bit 32 and their reason. Each variable carries ``long_name`` and ``units``; NaN marks a
  missing value, never a result (attribute ``missing_values``).
"""

from __future__ import annotations

import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..data import pad_observations
from ..grid import N_LAYERS, ZSOI
from . import am, gradient, postprocess

__all__ = ["atomic_write", "chunk_dataset", "gradient_chunk", "assemble"]


def atomic_write(ds: xr.Dataset, path: str) -> None:
    """Write ``ds`` to ``path`` through a temporary file and ``os.replace`` (never half a file)."""
    tmp = path + ".tmp"
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)


_SUMMARY_DIMS = {
    "para_summary_mean": ("profile", "parameter"),
    "para_summary_std": ("profile", "parameter"),
    "para_es": ("profile", "parameter"),
    "gr": ("profile", "parameter"),
    "rhat": ("profile", "parameter"),
    "ess_bulk": ("profile", "parameter"),
    "ess_tail": ("profile", "parameter"),
    "soc_mod_opt": ("profile", "slot"),
    "soc_std_opt": ("profile", "slot"),
    "r2": ("profile", "chain"),
    "rmse": ("profile", "chain"),
    "acceptance": ("profile", "chain"),
    "valid": ("profile", "chain"),
    "n_kept": ("profile", "chain"),
    "opt_chain": ("profile",),
    "filter_pass": ("profile",),
    "status": ("profile",),
    "gr_mean": ("profile",),
    "rhat_max": ("profile",),
    "r2_max": ("profile",),
}
AM_CHAIN_COUNTS = (
    "n_evals",
    "n_failed_evals",
    "n_acc_failed",
    "n_test_restarts",
    "n_discards",
    "n_out_of_box",
)
"""Per-chain counts of PRODA's AM written to posterior.nc (see `_LONG_NAMES`)."""


def _summary_variables(summary: dict, n: int) -> dict:
    """The `_SUMMARY_DIMS` variables of the first ``n`` profiles of a summary (bool as int8)."""
    post = {}
    for k, dims in _SUMMARY_DIMS.items():
        v = np.asarray(summary[k])[:n]
        post[k] = (dims, v.astype(np.int8) if v.dtype == bool else v)
    return post


def chunk_dataset(ids: np.ndarray, summary: dict, states: am.ChainState) -> xr.Dataset:
    """One chunk of PRODA's AM: summaries (`postprocess.summarize`), chain counts, kept draws.

    ``ids`` are the chunk's profiles; rows beyond them (the chunk's padding) are dropped.
    """
    n = ids.size
    s = jax.tree.map(np.asarray, states)
    post = _summary_variables(summary, n)
    pc = ("profile", "chain")
    post["n_evals"] = (pc, s.n_evals[:n])
    post["n_failed_evals"] = (pc, s.n_failed[:n])
    post["n_acc_failed"] = (pc, s.n_acc_failed[:n])
    post["n_discards"] = (pc, s.n_discards[:n])
    post["n_test_restarts"] = (pc, s.n_test_restarts[:n])
    post["n_out_of_box"] = (pc, s.n_out_of_box[:n])
    post["phase"] = (pc, s.phase[:n])
    post["draws"] = (("profile", "chain", "draw", "parameter"), s.rec_theta[:n])
    post["draws_soc"] = (("profile", "chain", "draw", "slot"), s.rec_pred[:n])
    return xr.Dataset(post, coords={"profile_id": ("profile", ids.astype(object))})


_GRADIENT_CHAIN_VARS = (
    "divergences",
    "mean_tree_depth",
    "max_tree_depth",
    "step_size",
    "n_grad_evals",
    "n_grad_warmup",
    "n_init_evals",
    "rescued",
)
_GRADIENT_PROFILE_VARS = {
    "divergent_share": ("profile",),
    "soc_q05": ("profile", "slot"),
    "soc_q95": ("profile", "slot"),
    "soc_nodes_mean": ("profile", "node"),
    "soc_nodes_q05": ("profile", "node"),
    "soc_nodes_q95": ("profile", "node"),
}


def _pooled_quantiles(x: np.ndarray, failed: np.ndarray, qs=(0.05, 0.95)) -> list[np.ndarray]:
    """Quantiles over (chain, draw) of x (P, C, D, k) without failed draws (NaN if none left)."""
    flat = np.where(failed[..., None], np.nan, x).reshape(x.shape[0], -1, x.shape[-1])
    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = [np.nanquantile(flat, q, axis=1) for q in qs]
            out.append(np.nanmean(flat, axis=1))
    return out  # NaN where no draw is left (a profile that was not sampled)


def gradient_chunk(ids, gout, data, obs_all, pad, settings) -> xr.Dataset:
    """One chunk of a gradient sampler: summaries, diagnostics, posterior predictive, draws.

    Args:
        ids: the chunk's profile ids. gout: `gradient.run_batch`'s output (padded chunk).
        data: the chunk's data PyTree. obs_all: every profile's padded observations.
        pad: index of the padded chunk's profiles. settings: the run's `driver.Settings`.
    """
    n = ids.size
    p = jax.nn.sigmoid(gout.z)
    soc, pred, failed = gradient.posterior_predictive(p, data, settings.model, settings.mode)
    soc, pred, failed = np.asarray(soc), np.asarray(pred), np.asarray(failed)
    summary = gradient.summarize(gout, pred, failed, obs_all.soc[pad], obs_all.mask[pad])
    usable = np.asarray(gout.usable)[:, None, None]
    failed = failed | ~usable
    q05, q95, _ = _pooled_quantiles(pred, failed)
    n05, n95, nmean = _pooled_quantiles(soc, failed)
    extra = {
        "divergent_share": summary["divergent_share"],
        "soc_q05": q05,
        "soc_q95": q95,
        "soc_nodes_mean": nmean,
        "soc_nodes_q05": n05,
        "soc_nodes_q95": n95,
    }
    post = _summary_variables(summary, n)
    pc = ("profile", "chain")
    for k in _GRADIENT_CHAIN_VARS:
        post[k] = (pc, np.asarray(summary[k])[:n])
    post["n_evals"] = (pc, (summary["n_grad_evals"] + summary["n_init_evals"])[:n])
    for k, dims in _GRADIENT_PROFILE_VARS.items():
        post[k] = (dims, extra[k][:n])
    o = jax.tree.map(np.asarray, gout)
    pcd = ("profile", "chain", "draw")
    post["draws"] = (pcd + ("parameter",), np.asarray(p)[:n])
    post["draws_soc"] = (pcd + ("slot",), pred[:n])
    post["draws_soc_nodes"] = (pcd + ("node",), soc[:n])
    post["draws_logdensity"] = (pcd, np.where(np.isfinite(o.logdensity), o.logdensity, 0.0)[:n])
    post["draws_n_steps"] = (pcd, o.n_steps[:n])
    post["warmup_n_steps"] = (("profile", "chain", "warmup_step"), o.warmup_steps[:n])
    return xr.Dataset(post, coords={"profile_id": ("profile", ids.astype(object))})


_LONG_NAMES = {
    "para_summary_mean": ("posterior mean of the normalized parameter (optimal chain)", "1"),
    "para_summary_std": ("posterior std of the normalized parameter (optimal chain)", "1"),
    "para_es": ("GEV-mode estimate of the normalized parameter (maximum-likelihood fit)", "1"),
    "gr": (
        "Gelman-Rubin, PRODA's formula with n = the last valid chain's post-burn-in count "
        "(NaN: fewer than 2 valid chains; inf: chains frozen at different values)",
        "1",
    ),
    "rhat": (
        "rank-normalised split R-hat (BlackJAX; Vehtari et al. 2021; NaN: not computed)",
        "1",
    ),
    "ess_bulk": ("bulk effective sample size of the kept samples", "1"),
    "ess_tail": ("tail effective sample size of the kept samples", "1"),
    "soc_mod_opt": ("posterior mean modelled SOC at the observed depths", "gC m-3"),
    "soc_std_opt": ("posterior std of modelled SOC at the observed depths", "gC m-3"),
    "r2": ("PRODA 'R2' of the chain (SStot around the model mean)", "1"),
    "rmse": ("RMSE of the chain's mean modelled profile", "gC m-3"),
    "acceptance": ("acceptance rate of the final formal run", "1"),
    "valid": ("1 if the chain finished its formal run with >= 4 kept samples", "1"),
    "n_kept": ("number of kept samples of the chain", "1"),
    "opt_chain": ("index of the optimal (min RMSE) chain", "1"),
    "filter_pass": ("site filter (rule: see the filter_rule attribute)", "1"),
    "status": ("status bits (0 = fine; see reason)", "1"),
    "gr_mean": ("mean over parameters of gr (NaN: not computed; inf: W = 0)", "1"),
    "rhat_max": ("max over parameters of the rank R-hat (NaN: not computed)", "1"),
    "r2_max": ("max over chains of PRODA's 'R2'", "1"),
    "n_evals": ("model evaluations of the chain (all phases)", "1"),
    "n_failed_evals": ("failed simulations of p0 or of proposals inside the box", "1"),
    "n_acc_failed": (
        "accepted failed solves (faithful: the formal run reuses the previous dJ; "
        "0 in the default mode)",
        "1",
    ),
    "n_discards": ("formal runs discarded by the acceptance-rate rule", "1"),
    "n_test_restarts": ("test-run restarts (< 50 acceptances)", "1"),
    "n_out_of_box": (
        "proposals drawn outside the box (0, 1)^n (faithful: re-drawn; default: rejected)",
        "1",
    ),
    "phase": ("final chain phase (0 test, 1 formal, 2 done, 3 failed)", "1"),
}
_GRADIENT_LONG_NAMES = {
    "acceptance": ("mean acceptance statistic of the kept transitions", "1"),
    "valid": ("1 if the chain was sampled (its profile had a simulating start)", "1"),
    "para_summary_mean": ("posterior mean of the normalized parameter (all chains)", "1"),
    "para_summary_std": ("posterior std of the normalized parameter (all chains)", "1"),
    "soc_mod_opt": ("posterior mean modelled SOC at the observed depths (all chains)", "gC m-3"),
    "soc_std_opt": ("posterior std of modelled SOC at the observed depths (all chains)", "gC m-3"),
    "gr": ("Gelman-Rubin, PRODA's formula with n = the draws per chain (all draws)", "1"),
    "divergent_share": ("share of the post-warm-up transitions that diverged (all chains)", "1"),
    "ess_bulk": ("bulk effective sample size of the draws (all chains)", "1"),
    "ess_tail": ("tail effective sample size of the draws (all chains)", "1"),
    "n_evals": ("model evaluations of the chain (start + value-and-gradient)", "1"),
    "divergences": ("divergent transitions after the warm-up", "1"),
    "mean_tree_depth": ("mean NUTS tree depth (doublings) after the warm-up (0: not NUTS)", "1"),
    "max_tree_depth": ("max NUTS tree depth after the warm-up (0: not NUTS)", "1"),
    "step_size": ("adapted leapfrog step size (unconstrained scale)", "1"),
    "n_grad_evals": ("log-density-and-gradient evaluations (warm-up + draws + 1)", "1"),
    "n_grad_warmup": ("log-density-and-gradient evaluations of the warm-up", "1"),
    "n_init_evals": ("forward evaluations spent finding a start", "1"),
    "rescued": ("1 if the chain was stuck after the warm-up and restarted from the best", "1"),
    "soc_q05": ("5 % quantile of the modelled SOC at the observed depths", "gC m-3"),
    "soc_q95": ("95 % quantile of the modelled SOC at the observed depths", "gC m-3"),
    "soc_nodes_mean": ("posterior mean modelled SOC at the 20 node depths", "gC m-3"),
    "soc_nodes_q05": ("5 % quantile of the modelled SOC at the 20 node depths", "gC m-3"),
    "soc_nodes_q95": ("95 % quantile of the modelled SOC at the 20 node depths", "gC m-3"),
}


_FAITHFUL_GR = (
    "Gelman-Rubin as coded by PRODA's driver: n = the last valid chain's total kept "
    "count, burn-in included (NaN: fewer than 2 valid chains; inf: W = 0)",
    "1",
)
_DIMS = {
    **_SUMMARY_DIMS,
    **{k: ("profile", "chain") for k in (*AM_CHAIN_COUNTS, "phase", *_GRADIENT_CHAIN_VARS)},
    **_GRADIENT_PROFILE_VARS,
    "draws": ("profile", "chain", "draw", "parameter"),
    "draws_soc": ("profile", "chain", "draw", "slot"),
    "draws_soc_nodes": ("profile", "chain", "draw", "node"),
    "draws_logdensity": ("profile", "chain", "draw"),
    "draws_n_steps": ("profile", "chain", "draw"),
    "warmup_n_steps": ("profile", "chain", "warmup_step"),
}
"""Dimensions of every variable of a chunk file."""

_GRADIENT_DRAWS = {
    "draws_soc_nodes": ("soc_nodes", "modelled SOC at the 20 nodes per draw", "gC m-3"),
    "draws_logdensity": ("logdensity", "log posterior density (unconstrained z)", "1"),
    "draws_n_steps": ("n_steps", "leapfrog steps of the draw's transition", "1"),
    "warmup_n_steps": ("warmup_n_steps", "leapfrog steps of each warm-up transition", "1"),
}
"""draws.nc variables of the gradient samplers: chunk name -> (name, long_name, units)."""


def assemble(profiles, chunks, keep, skipped, space, settings):
    """posterior.nc and draws.nc over all profiles (skipped: NaN/0, status 32, reason).

    Args:
        profiles: the profiles Dataset of the run. chunks: the chunk Datasets, in order.
        keep: index of the calibrated profiles (the chunks' rows). skipped: {index: reason}.
        space: the model's parameter space. settings: the run's `driver.Settings`.

    Returns:
        (posterior, draws) Datasets.
    """
    use_am = settings.sampler == "proda-am"
    rule = postprocess.filter_rule(settings.faithful) if use_am else gradient.FILTER_RULE
    full = _all_rows(profiles, chunks, keep, len(space), settings)
    names, long_names = _variables(settings, rule)
    data = {}
    for name in names:
        if name == "n_kept":
            continue
        long_name, units = long_names[name]
        data[name] = (_DIMS[name], full(name), {"long_name": long_name, "units": units})
    data.update(_status_and_reason(full("status"), skipped))
    data["para_mean_physical"] = _physical_mean(full("para_summary_mean"), space)
    data.update(_observations(profiles, settings.width))
    coords = {
        "profile_id": ("profile", profiles["profile_id"].values.astype(str).astype(object)),
        "parameter": np.asarray(space.names, dtype=object),
        "unit": ("parameter", np.asarray(space.units, dtype=object)),
    }
    attrs = {k: str(v) for k, v in settings.record().items()}
    attrs.update(filter_rule=rule, filter_rule_text=postprocess.FILTER_RULES[rule])
    attrs["missing_values"] = (
        "NaN in a float variable means missing (skipped profile, no valid chain, diagnostic "
        "not computed; see status and reason); gr, gr_mean and rhat may be inf"
    )
    post = xr.Dataset(data, coords=coords, attrs={"title": "soc_jax posterior summary", **attrs})
    draws = _draws(full, coords, attrs)
    if not use_am:
        for name, (var, long_name, units) in _GRADIENT_DRAWS.items():
            draws[var] = (_DIMS[name], full(name), {"long_name": long_name, "units": units})
        depth_attrs = {"long_name": "depth of the 20 CLM5 nodes", "units": "m"}
        draws["node_depth"] = (("node",), np.asarray(ZSOI[:N_LAYERS]), depth_attrs)
        post["node_depth"] = (("node",), np.asarray(ZSOI[:N_LAYERS]), depth_attrs)
    return post, draws


def _all_rows(profiles, chunks, keep, n_par: int, settings):
    """``full(name)``: the variable over all profiles, calibrated rows from the chunks, skipped
    rows NaN (floats, draws 0) or 0."""
    use_am = settings.sampler == "proda-am"
    cap = settings.am_config().capacity if use_am else settings.n_draws
    cat = xr.concat(chunks, dim="profile") if chunks else None
    sizes = {"profile": int(profiles.sizes["profile"]), "parameter": n_par}
    sizes.update({"chain": settings.n_chains, "slot": settings.width, "draw": cap})
    sizes.update({"node": N_LAYERS, "warmup_step": settings.n_warmup})

    def full(name):
        have = cat is not None and name in cat  # chunks of an older version lack new variables
        dtype = cat[name].dtype if have else np.dtype(float)
        missing = np.nan if dtype.kind == "f" and not name.startswith("draws") else 0
        a = np.full(tuple(sizes[d] for d in _DIMS[name]), missing, dtype)
        if have:
            a[keep] = cat[name].values
        return a

    return full


def _variables(settings, rule: str) -> tuple[list[str], dict]:
    """(posterior.nc's summary variables, {name: (long_name, units)}) of the run's sampler."""
    long_names = dict(_LONG_NAMES)
    long_names["filter_pass"] = (f"site filter: {postprocess.FILTER_RULES[rule]}", "1")
    if settings.sampler == "proda-am":
        names = list(_SUMMARY_DIMS) + list(AM_CHAIN_COUNTS)
        if settings.faithful:
            long_names["gr"] = _FAITHFUL_GR
    else:
        long_names.update(_GRADIENT_LONG_NAMES)
        names = list(_SUMMARY_DIMS) + ["n_evals", *_GRADIENT_CHAIN_VARS, *_GRADIENT_PROFILE_VARS]
    return names, long_names


def _status_and_reason(status: np.ndarray, skipped: dict) -> dict:
    """``status`` (bit 32 added for skipped profiles) and ``reason`` (the skip message, or the
    status bits in words) of every profile."""
    status = status.astype(int)
    for i in skipped:
        status[i] |= 32
    reason = np.array(
        [skipped.get(i, postprocess.status_reasons(int(status[i]))) for i in range(status.size)],
        dtype=object,
    )
    return {
        "status": (("profile",), status, {"long_name": _LONG_NAMES["status"][0], "units": "1"}),
        "reason": (("profile",), reason, {"long_name": "why a profile is skipped or flagged"}),
    }


def _physical_mean(mean: np.ndarray, space) -> tuple:
    """``para_mean_physical``: the posterior mean in physical units (NaN where missing)."""
    physical = np.asarray(space.to_physical(jnp.asarray(np.clip(np.nan_to_num(mean), 0, 1))))
    return (
        ("profile", "parameter"),
        np.where(np.isfinite(mean), physical, np.nan),
        {
            "long_name": "posterior mean in physical units (NaN: missing)",
            "units": "see unit coordinate",
        },
    )


def _observations(profiles, width: int) -> dict:
    """``soc_obs``, ``depth_obs``, ``obs_mask``: the observations on the run's slots."""
    obs = pad_observations(profiles, width)
    return {
        "soc_obs": (
            ("profile", "slot"),
            np.where(np.isfinite(obs.soc), obs.soc, 0.0),
            {
                "long_name": "observed SOC (0 on padding and where the input is NaN)",
                "units": "gC m-3",
            },
        ),
        "depth_obs": (
            ("profile", "slot"),
            np.where(np.isfinite(obs.depth), obs.depth, 0.0),
            {"long_name": "observed node depth (0 where the input is NaN)", "units": "m"},
        ),
        "obs_mask": (
            ("profile", "slot"),
            obs.mask.astype(np.int8),
            {"long_name": "1 on observed layers", "units": "1"},
        ),
    }


def _draws(full, coords: dict, attrs: dict) -> xr.Dataset:
    """draws.nc: the kept draws per profile in ArviZ's (chain, draw) layout."""
    return xr.Dataset(
        {
            "p": (
                ("profile", "chain", "draw", "parameter"),
                full("draws"),
                {"long_name": "kept normalized parameters (0 beyond n_draws)", "units": "1"},
            ),
            "soc_pred": (
                ("profile", "chain", "draw", "slot"),
                full("draws_soc"),
                {"long_name": "modelled SOC at the observed depths per draw", "units": "gC m-3"},
            ),
            "n_draws": (
                ("profile", "chain"),
                full("n_kept").astype(int),
                {"long_name": "kept draws (the first n_draws entries of draw)", "units": "1"},
            ),
        },
        coords=coords,
        attrs={"title": "soc_jax calibration draws, ArviZ (chain, draw) layout", **attrs},
    )
