"""Global prediction (SPEC 8): parameters on the grid, steady states, stocks, Pg C totals, maps.

1. The trained members predict normalized parameters for every grid cell from its scaled
   covariates; PRODA clips them before simulating: ``p > 1 -> 1``, ``p <= 0 -> 1e-4``
   (`clip_parameters`).
2. Each cell's steady state runs with that cell's forcing (``jax.jit`` of
   `soc_jax.batching.map_profiles` over fixed-size blocks of cells, progress bar), giving layer
   SOC (gC m-3) and stocks 0-30, 0-100, 0-200 cm and total (gC m-2, `soc_jax.grid.stocks`).
3. Failed steady states (`soc_jax.models.is_failure`: a flag or a non-finite SOC) have NaN
   stocks (never 0) with ``ok = False`` and their failure flags (``Prediction.flags``); they
   are excluded from medians, quantiles and totals, counted, and their reasons decoded
   (``totals["failure_reasons"]``). If every cell fails for every seed member there is no
   prediction: `AllCellsFailed` (a ``ValueError``) says how many cells, why and what to try.
4. Cell areas by SPEC 8's trapezoid formula (`cell_area`, ``R = 6371008.8`` m) and totals
   ``sum(stock x area)`` in Pg C: best guess = per-cell median over the seed members that
   succeeded, summed over the cells where at least one seed member succeeded (the share of
   cells and area each total covers is ``totals["coverage"]``); uncertainty =
   per-cell and global median and 14 / 86 % quantiles over the bootstrap members. Every
   bootstrap member's total is summed over the SAME cells: those where every bootstrap member
   succeeded (`member_totals`); a cell where any member failed is left out of every member's
   total (never counted as zero), and the cells and land-area share left out, overall and per
   member, are reported (``totals["proda_bootstrap_cells"]``).
   The "homogeneous" configuration (one global parameter vector: the mean of the training
   targets) and, for CLM5, the "default" configuration (customary parameters, mode
   ``"default"``) are computed beside PRODA's; a configuration whose every cell failed has
   totals ``None`` (never 0).
5. Outputs: CF NetCDF on the (lat, lon) grid and PNG figures (`write_maps`, `figures`; their
   home is `soc_jax.proda.maps`; areas, quantiles and totals live in `soc_jax.proda.totals`).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..batching import map_profiles
from ..forcing import Forcing
from ..grid import N_LAYERS
from ..models.common import NONFINITE, PRIOR
from ..models.registry import get_model, is_failure
from .maps import figures, write_maps
from .totals import (
    EARTH_RADIUS,
    QUANTILES,
    STOCK_NAMES,
    Prediction,
    cell_area,
    coverage,
    failure_reasons,
    masked_quantiles,
    member_totals,
    quantile_totals,
    reasons_text,
    stock_array,
    total_pg,
    zonal_totals,
)

__all__ = [
    "AllCellsFailed",
    "EARTH_RADIUS",
    "STOCK_NAMES",
    "cell_area",
    "clip_parameters",
    "all_failed_message",
    "apply_link",
    "is_failure",
    "predict_parameters",
    "simulate_cells",
    "simulate_cells_flags",
    "Prediction",
    "global_prediction",
    "quantile_totals",
    "member_totals",
    "zonal_totals",
    "write_maps",
    "figures",
    "heldout_nse",
    "pooled_nse",
]


def clip_parameters(p):
    """PRODA's clipping before forward simulation: ``p > 1 -> 1``, ``p <= 0 -> 1e-4``."""
    p = jnp.asarray(p)
    return jnp.where(p > 1.0, 1.0, jnp.where(p <= 0.0, 1e-4, p))


def apply_link(raw, link: str = "clip"):
    """Normalized parameters from raw network outputs: ``"clip"`` (PRODA's two-stage network,
    `clip_parameters`) or ``"sigmoid"`` (end-to-end networks, `soc_jax.proda.end_to_end`)."""
    if link == "clip":
        return clip_parameters(raw)
    if link == "sigmoid":
        return clip_parameters(jax.nn.sigmoid(jnp.asarray(raw)))
    raise ValueError(f"link must be 'clip' or 'sigmoid', got {link!r}")


@eqx.filter_jit
def _predict_block(models, x):
    return eqx.filter_vmap(lambda m: jax.vmap(m)(x))(models)


def predict_parameters(models, X: np.ndarray, block: int = 4096) -> np.ndarray:
    """Raw network outputs for every member and row: (M, n, n_par), unclipped, network dtype.

    Args:
        models: stacked members (`soc_jax.proda.train.Ensemble.best_models`).
        X: (n, 60) scaled covariates (no NaN).
        block: rows per compiled call (the last block is padded).
    """
    dtype = jax.tree.leaves(eqx.filter(models, eqx.is_array))[0].dtype
    n = X.shape[0]
    out = []
    for s in range(0, n, block):
        idx = np.minimum(np.arange(s, s + block), n - 1)
        out.append(
            np.asarray(_predict_block(models, jnp.asarray(X[idx], dtype)))[:, : min(block, n - s)]
        )
    return np.concatenate(out, axis=1)


class AllCellsFailed(ValueError):
    """The steady state failed on every cell for every seed member: there is no prediction."""


@functools.lru_cache(maxsize=8)
def _cell_solver(model: str, mode: str, chunk: int):
    module = get_model(model)

    def one(x, forcing):
        r = module.steady_state(x, forcing, mode=mode)
        bad = is_failure(r)
        # a non-finite SOC without a flag still fails: give it the NONFINITE flag
        flags = jnp.where(bad & (r.flags == 0), jnp.int32(NONFINITE), r.flags.astype(jnp.int32))
        return jnp.where(bad, jnp.nan, r.soc), flags

    return jax.jit(lambda x, f: map_profiles(one, x, f, chunk_size=chunk))


def simulate_cells_flags(
    model: str,
    params_physical: np.ndarray,
    forcing: Forcing,
    *,
    mode: str,
    block: int = 1024,
    chunk: int = 128,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Steady states of n cells: layer SOC (n, 20) gC m-3 (NaN where failed) and the failure
    flags (n,) int (`soc_jax.models.common`; 0: succeeded).

    Args:
        model: ``"clm5"`` or ``"compas"``.
        params_physical: (n, n_par) physical parameters, one row per cell.
        forcing: `Forcing` with a leading cell axis (n).
        mode: the model's ``steady_state`` mode.
        block: cells per compiled call (fixed shape; the last block is padded).
        chunk: cells per vectorised chunk inside a call (`map_profiles`).
        progress: optional tqdm bar, advanced by the cells done.
    """
    solve = _cell_solver(model, mode, chunk)
    arrays = forcing.as_numpy()
    n = params_physical.shape[0]
    soc = np.full((n, N_LAYERS), np.nan)
    flags = np.zeros(n, np.int32)
    for s in range(0, n, block):
        e = min(s + block, n)
        idx = np.minimum(np.arange(s, s + block), e - 1)
        f = Forcing(**{k: jnp.asarray(v[idx]) for k, v in arrays.items()})
        out_soc, out_flags = solve(jnp.asarray(params_physical[idx], jnp.float64), f)
        soc[s:e] = np.asarray(out_soc)[: e - s]
        flags[s:e] = np.asarray(out_flags)[: e - s]
        if progress is not None:
            progress.update(e - s)
    return soc, flags


def simulate_cells(
    model: str,
    params_physical: np.ndarray,
    forcing: Forcing,
    *,
    mode: str,
    block: int = 1024,
    chunk: int = 128,
    progress=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Steady states of n cells: layer SOC (n, 20) gC m-3 (0 where failed) and ok (n,).

    The arguments are those of `simulate_cells_flags`, which keeps the failure flags and NaN.
    """
    soc, flags = simulate_cells_flags(
        model, params_physical, forcing, mode=mode, block=block, chunk=chunk, progress=progress
    )
    ok = flags == 0
    return np.where(ok[:, None], soc, 0.0), ok


def global_prediction(
    model: str,
    models,
    kinds: list[str],
    X: np.ndarray,
    forcing: Forcing,
    lat: np.ndarray,
    resolution: float,
    *,
    mode: str,
    homogeneous: np.ndarray | None = None,
    default: bool = True,
    block: int = 1024,
    progress: bool = False,
    link: str = "clip",
) -> Prediction:
    """Parameters, steady states, stocks and Pg C totals on every grid cell.

    Args:
        model: ``"clm5"`` or ``"compas"``.
        models: stacked trained members (M).
        kinds: (M,) ``"seed"`` or ``"bootstrap"`` per member.
        X: (n, 60) scaled covariates of the cells (no NaN; drop such cells first).
        forcing: the cells' `Forcing` (leading axis n).
        lat: (n,) cell-centre latitudes, degrees north.
        resolution: grid resolution, degrees (for `cell_area`).
        mode: ``steady_state`` mode for the members and the homogeneous configuration.
        homogeneous: one normalized parameter vector for all cells (e.g. the mean target).
        default: also run CLM5's customary parameters in mode ``"default"`` (CLM5 only).
        block: cells per compiled steady-state call.
        progress: tqdm progress bar over steady states.
        link: how raw outputs become normalized parameters (`apply_link`; ``"clip"``:
            PRODA's two-stage network, ``"sigmoid"``: end-to-end networks).
    """
    kinds = list(kinds)
    seeds = np.array([k == "seed" for k in kinds])
    boots = np.array([k == "bootstrap" for k in kinds])
    if not seeds.any():
        raise ValueError("need at least one seed (best-guess) member")
    params = np.asarray(apply_link(predict_parameters(models, X), link))  # network's dtype
    M, n, _ = params.shape
    if not np.isfinite(params[seeds]).all(axis=-1).any():  # known before any steady state
        raise AllCellsFailed(all_failed_message(np.full((int(seeds.sum()), n), PRIOR), mode))
    n_runs = M + int(homogeneous is not None) + int(default and model == "clm5")
    bar = _progress_bar(n_runs * n) if progress else None
    run = functools.partial(simulate_cells_flags, model, forcing=forcing, block=block, progress=bar)
    try:
        st, flags, seed_soc = _member_steady_states(model, params, seeds, run, mode)
        extra, extra_flags = _reference_runs(
            model, n, run, mode=mode, homogeneous=homogeneous, default=default
        )
    finally:
        if bar is not None:
            bar.close()
    ok = flags == 0
    area = cell_area(lat, resolution)
    best = masked_quantiles(st[seeds], ok[seeds][..., None], 0.5)
    best_soc = masked_quantiles(seed_soc, ok[seeds][..., None], 0.5)
    best_ok = ok[seeds].any(axis=0)
    totals: dict = {"proda_best_guess": _band_totals(best, best_ok, area)}
    cover = {"proda_best_guess": coverage(best_ok, area)}
    boot_q = None
    if boots.any():
        boot_q = masked_quantiles(st[boots], ok[boots][..., None], list(QUANTILES))
        totals.update(_bootstrap_totals(st[boots], ok[boots], best, best_ok, area))
    totals.update({name: _band_totals(sk, o, area) for name, (sk, o) in extra.items()})
    cover.update({name: coverage(o, area) for name, (_, o) in extra.items()})
    failed = _failure_counts(ok, seeds, boots, best_ok, extra)
    totals.update(failed=failed, coverage=cover)
    totals["failure_reasons"] = {
        "seed_members": failure_reasons(flags[seeds]),
        "bootstrap_members": failure_reasons(flags[boots]),
        **{k: failure_reasons(f) for k, f in extra_flags.items()},
    }
    return Prediction(
        params, st, best_soc, ok, kinds, area, best, best_ok, boot_q, totals, extra, failed, flags
    )


def _failure_counts(ok, seeds, boots, best_ok, extra) -> dict[str, int]:
    """Failed (member, cell) steady states per kind, cells without any seed member, and failed
    cells per reference configuration."""
    return {
        "seed_member_cells": int((~ok[seeds]).sum()),
        "bootstrap_member_cells": int((~ok[boots]).sum()),
        "cells_without_any_seed": int((~best_ok).sum()),
        **{f"{k}_cells": int((~o).sum()) for k, (_, o) in extra.items()},
    }


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="steady states", unit="cell")


def _physical(space, p: np.ndarray) -> np.ndarray:
    """Physical parameters (float64 NumPy) of normalized ones."""
    return np.asarray(space.to_physical(jnp.asarray(p, jnp.float64)))


def _member_steady_states(model: str, params: np.ndarray, seeds: np.ndarray, run, mode: str):
    """Stocks (M, n, 4) (NaN where failed), flags (M, n) of every member; layer SOC (S, n, 20)
    of the seeds.

    Per member only the four stocks are kept (a 0.5-degree grid has ~60k cells x 210
    members); layer SOC is kept for the seed members (their per-cell median). The seed
    members run first: if every cell failed for all of them, `AllCellsFailed` is raised before
    the bootstrap members run.
    """
    space = get_model(model).PARAMETERS
    M, n, _ = params.shape
    rows = np.flatnonzero(seeds)
    st = np.full((M, n, len(STOCK_NAMES)), np.nan)
    flags = np.zeros((M, n), np.int32)
    seed_soc = np.full((rows.size, n, N_LAYERS), np.nan)
    for k, m in enumerate([*rows, *np.flatnonzero(~seeds)]):
        soc, flags[m] = run(_physical(space, params[m]), mode=mode)
        st[m] = stock_array(soc)
        if k < rows.size:
            seed_soc[k] = soc
        if k == rows.size - 1 and np.all(flags[rows] != 0):
            raise AllCellsFailed(all_failed_message(flags[rows], mode))
    return st, flags, seed_soc


_HINTS = {
    "parameters outside": "the network predicts non-finite or out-of-prior parameters (a "
    "diverged or untrained network): retrain it and check its training.nc",
    "forcing breaks": "the grid's forcing breaks an input rule: check grid.nc in --data",
}
_HINT_DEFAULT = (
    "the predicted parameters make the steady state unsolvable: the network is probably "
    "under-trained (train longer, check recovery.json) or --mode does not match it"
)


def all_failed_message(flags: np.ndarray, mode: str) -> str:
    """One line: every one of the n cells failed for all S seed members ``flags`` (S, n), the
    main reasons with counts and what to try."""
    S, n = flags.shape
    reasons = failure_reasons(flags)
    top = next(iter(reasons), "")
    hint = next((h for key, h in _HINTS.items() if top.startswith(key)), _HINT_DEFAULT)
    return (
        f"the steady state (mode {mode}) failed on all {n} grid cells for every one of the {S} "
        f"seed members, so there is no prediction; reasons ({S * n} member-cells): "
        f"{reasons_text(reasons)}; try: {hint}"
    )


def _band_totals(stock: np.ndarray, ok: np.ndarray, area: np.ndarray) -> dict:
    """Pg C per depth band of (n, 4) stocks over the ``ok`` cells; None when no cell is ok
    (no total, never 0)."""
    if not np.any(ok):
        return dict.fromkeys(STOCK_NAMES)
    return {b: float(total_pg(stock[:, i], ok, area)) for i, b in enumerate(STOCK_NAMES)}


def _bootstrap_totals(st, ok, best, best_ok, area) -> dict:
    """Bootstrap band of totals, every member over the same cells, and the best guess there.

    Args:
        st: (B, n, 4) stocks of the bootstrap members; ok: (B, n).
        best: (n, 4) best-guess stocks; best_ok: (n,); area: (n,) m2.
    """
    per_member, info = member_totals(np.moveaxis(st, -1, 0), ok, area)  # (4, B)
    if not info["n_cells_summed"]:  # no cell where every bootstrap member succeeded: no band
        return {"proda_bootstrap_cells": info}
    # the best guess on the same cells, for a like-for-like comparison with the band
    common = ok.all(axis=0) & best_ok
    return {
        "proda_bootstrap": {b: quantile_totals(per_member[i]) for i, b in enumerate(STOCK_NAMES)},
        "proda_bootstrap_members": per_member[1].tolist(),  # 0-100 cm per member
        "proda_bootstrap_cells": info,
        "proda_best_guess_on_bootstrap_cells": _band_totals(best, common, area),
    }


def _reference_runs(model: str, n: int, run, *, mode: str, homogeneous, default: bool) -> dict:
    """Stocks (n, 4) (NaN where failed) and ok (n,) of the homogeneous and (CLM5) default
    configurations, and their failure flags (n,): ``(extra, flags)``, keyed by name."""
    space = get_model(model).PARAMETERS
    runs = []
    if homogeneous is not None:
        x = np.asarray(
            space.to_physical(jnp.asarray(np.broadcast_to(homogeneous, (n, len(space)))))
        )
        runs.append(("homogeneous", x, mode))
    if default and model == "clm5":
        from ..models import clm5

        runs.append(
            ("default", np.broadcast_to(clm5.default_parameters(), (n, len(space))), "default")
        )
    extra, flags = {}, {}
    for name, x, md in runs:
        s, flags[name] = run(np.ascontiguousarray(x), mode=md)
        extra[name] = (stock_array(s), flags[name] == 0)
    return extra, flags


# -- explained variation on held-out profiles (SPEC 6) -------------------------------------------


def pooled_nse(obs: np.ndarray, sim: np.ndarray) -> float:
    """Pooled Nash-Sutcliffe efficiency ``1 - sum (o - s)^2 / sum (o - mean o)^2`` over layers."""
    obs, sim = np.asarray(obs, float), np.asarray(sim, float)
    return float(1.0 - np.sum((obs - sim) ** 2) / np.sum((obs - obs.mean()) ** 2))


@jax.jit
def _pchip_rows(soc20, depth):
    from ..grid import ZSOI, pchip_interpolate

    return jax.vmap(lambda y, q: pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), y, q))(
        soc20, depth
    )


def heldout_nse(
    model: str,
    seed_models,
    X: np.ndarray,
    forcing: Forcing,
    obs,
    *,
    mode: str,
    block: int = 256,
    link: str = "clip",
) -> dict:
    """Pooled NSE of layer SOC on held-out profiles (SPEC 6 / issue: mean over seed members).

    The modelled SOC of a layer is the mean over seed members of the PCHIP-interpolated
    steady-state profile at the layer's node depth; profiles where any seed member fails are
    excluded and counted.

    Args:
        model: ``"clm5"`` or ``"compas"``.
        seed_models: stacked seed members.
        X: (n, 60) scaled covariates of the held-out profiles.
        forcing: their `Forcing` (leading axis n).
        obs: `soc_jax.data.ObservationBatch` of the n profiles.
        mode: steady-state mode.

    Returns:
        ``{"nse": ..., "n_profiles": ..., "n_layers": ..., "n_failed_profiles": ...}``.
    """
    space = get_model(model).PARAMETERS
    params = np.asarray(apply_link(predict_parameters(seed_models, X), link))
    sims, oks = [], []
    for m in range(params.shape[0]):
        soc, ok = simulate_cells(
            model, _physical(space, params[m]), forcing, mode=mode, block=block
        )
        sims.append(np.asarray(_pchip_rows(jnp.asarray(soc), jnp.asarray(obs.depth))))
        oks.append(ok)
    ok = np.all(oks, axis=0)
    sim = np.mean(sims, axis=0)
    mask = np.asarray(obs.mask) & ok[:, None]
    return {
        "nse": pooled_nse(np.asarray(obs.soc)[mask], sim[mask]),
        "n_profiles": int(ok.sum()),
        "n_layers": int(mask.sum()),
        "n_failed_profiles": int((~ok).sum()),
    }
