"""Process attribution (SPEC 8): component control and marginal sensitivity over an ensemble.

**Component control** ("which process explains the spatial pattern"): for each process group G
of the model's parameters (SPEC 2 / 3.2: CLM5 A, K, Xi, I, V; COMPAS A, K, Xi, I, V, E) the
network's normalized parameters of G are replaced, in every cell and at every site, by the global
constant (PRODA: the mean over profiles of the calibrated parameters) and the stocks are
recomputed. Reported per member: the global 0-100 cm stock (Pg C) and its change, and the spatial
agreement of modelled with observed layer SOC at the sites (NSE, Pearson r, OLS R2 = r^2, MSE in
(kgC m-3)^2). The NPP component removes the spatial pattern of the plant input instead: every
cell's and site's litter inputs are scaled to the area-weighted global mean input (PRODA perturbs
inputs by ``1 +- 2 std/mean`` of CESM2's NPP, a statistic the synthetic world does not have).

**Marginal sensitivity**: a group's normalized parameters are multiplied by ``1 + delta``, delta
in -0.1..0.1 in 11 steps (`DELTAS`), clipped to [1e-4, 1] (SPEC 8), and the global stock is
recomputed; for NPP all litter inputs are scaled by ``1 + delta``. delta = 0 is the unperturbed
run exactly.

Summaries over the members (the bootstrap ensemble): median and 14 / 86 % quantiles
(`summarize_members`). All model runs go through `soc_jax.proda.predict.simulate_cells` (failed
steady states: stock 0, excluded from totals and metrics, counted).
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

__all__ = [
    "DELTAS",
    "Target",
    "SpatialMetrics",
    "group_indices",
    "spatial_metrics",
    "evaluate",
    "component_control",
    "marginal_sensitivity",
    "summarize_members",
]

DELTAS: np.ndarray = np.round(np.linspace(-0.1, 0.1, 11), 12)
"""Relative perturbations of the marginal sensitivity (SPEC 8: -0.1:0.02:0.1)."""
CLIP: tuple[float, float] = (1e-4, 1.0)
QUANTILES: tuple[float, float, float] = (0.14, 0.5, 0.86)


def group_indices(model: str) -> dict[str, np.ndarray]:
    """Process group -> parameter indices (SPEC 2 / 3.2 component scripts), in group order."""
    from ..models.registry import get_model

    space = get_model(model).PARAMETERS
    order = [g for g in ("A", "K", "Xi", "I", "V", "E") if g in set(space.groups)]
    return {g: space.group_indices(g) for g in order}


@dataclasses.dataclass(frozen=True)
class Target:
    """Where a scenario is evaluated.

    Attributes:
        forcing_cells: `soc_jax.forcing.Forcing` of the n grid cells (leading axis n).
        area: (n,) cell areas, m2.
        forcing_sites: `Forcing` of the ns sites (or None: no spatial metrics).
        depth, obs, mask: (ns, w) observation depths (m), observed SOC (gC m-3), mask.
    """

    forcing_cells: object
    area: np.ndarray
    forcing_sites: object = None
    depth: np.ndarray | None = None
    obs: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class SpatialMetrics:
    """Agreement of modelled with observed layer SOC (pooled over layers and sites).

    Attributes:
        nse: Nash-Sutcliffe efficiency. r: Pearson correlation. r2: OLS R2 (r^2).
        mse: mean squared error, (kgC m-3)^2. n: layers used.
    """

    nse: float
    r: float
    r2: float
    mse: float
    n: int


def spatial_metrics(obs: np.ndarray, sim: np.ndarray) -> SpatialMetrics:
    """NSE, Pearson r, OLS R2 and MSE of ``sim`` against ``obs`` (1-D, gC m-3 -> kgC m-3)."""
    o = np.asarray(obs, float) / 1000.0
    s = np.asarray(sim, float) / 1000.0
    if o.size < 2:
        return SpatialMetrics(float("nan"), float("nan"), float("nan"), float("nan"), o.size)
    sse = float(np.sum((o - s) ** 2))
    sst = float(np.sum((o - o.mean()) ** 2))
    r = float(np.corrcoef(o, s)[0, 1]) if np.std(s) > 0 and np.std(o) > 0 else float("nan")
    return SpatialMetrics(1.0 - sse / sst, r, r * r, sse / o.size, int(o.size))


@functools.cache
def _pchip_rows():
    import jax

    from ..grid import N_LAYERS, ZSOI, pchip_interpolate

    nodes = jnp.asarray(ZSOI[:N_LAYERS])
    return jax.jit(jax.vmap(lambda y, d: pchip_interpolate(nodes, y, d)))


def _at_depths(soc20, depth):
    """(ns, w) modelled SOC at the observation depths (MATLAB pchip, SPEC 1.11)."""
    return _pchip_rows()(soc20, depth)


def _block(n: int) -> int:
    return int(min(1024, max(16, 1 << int(np.ceil(np.log2(max(n, 1)))))))


def _scaled(forcing, scale):
    """The forcing with litter inputs multiplied by ``scale`` (n,) (None: unchanged)."""
    if scale is None:
        return forcing
    from ..forcing import Forcing

    a = forcing.as_numpy()
    a["litter_input"] = a["litter_input"] * np.asarray(scale, float)[:, None, None, None]
    return Forcing(**a)


def column_input(forcing) -> np.ndarray:
    """(n,) total litter input per cell, gC m-2 yr-1 (sum over pools, months, layers x dz)."""
    from ..grid import DZ, N_LAYERS

    li = np.asarray(forcing.as_numpy()["litter_input"])
    return np.einsum("npml,l->n", li, DZ[:N_LAYERS])


def evaluate(
    model: str,
    mode: str,
    p_cells: np.ndarray,
    target: Target,
    p_sites: np.ndarray | None = None,
    scale_cells: np.ndarray | None = None,
    scale_sites: np.ndarray | None = None,
) -> dict:
    """Global 0-100 cm stock (Pg C) and, with sites, spatial metrics of one parameter set.

    Args:
        model, mode: process model and its mode.
        p_cells: (n, n_par) normalized parameters of the cells.
        target: `Target`.
        p_sites: (ns, n_par) normalized parameters of the sites (None: no metrics).
        scale_cells, scale_sites: optional factors on the litter inputs.

    Returns:
        dict with ``total_pg``, ``failed_cells`` and (with sites) ``nse``, ``r``, ``r2``,
        ``mse``, ``n_layers``, ``failed_sites``.
    """
    from ..grid import stocks
    from ..models.registry import get_model
    from ..proda.predict import simulate_cells

    space = get_model(model).PARAMETERS
    x = np.asarray(space.to_physical(jnp.asarray(p_cells, jnp.float64)))
    soc, ok = simulate_cells(
        model, x, _scaled(target.forcing_cells, scale_cells), mode=mode, block=_block(len(x))
    )
    stock = np.asarray(stocks(soc).top_100cm)
    out = {
        "total_pg": float(np.sum(np.where(ok, stock, 0.0) * target.area) / 1e15),
        "failed_cells": int((~ok).sum()),
    }
    if p_sites is not None and target.forcing_sites is not None:
        xs = np.asarray(space.to_physical(jnp.asarray(p_sites, jnp.float64)))
        ssoc, sok = simulate_cells(
            model, xs, _scaled(target.forcing_sites, scale_sites), mode=mode, block=_block(len(xs))
        )
        depth = np.where(target.mask, target.depth, 0.1)
        sim = np.asarray(_at_depths(jnp.asarray(ssoc), jnp.asarray(depth)))
        use = target.mask & sok[:, None]
        m = spatial_metrics(target.obs[use], sim[use])
        out.update(dataclasses.asdict(m))
        out["n_layers"] = out.pop("n")
        out["failed_sites"] = int((~sok).sum())
    return out


def _npp_scales(target: Target) -> tuple[np.ndarray, np.ndarray | None]:
    """Factors that give every cell and site the area-weighted global mean input."""
    ic = column_input(target.forcing_cells)
    mean = float(np.sum(ic * target.area) / np.sum(target.area))
    sc = np.where(ic > 0, mean / np.where(ic > 0, ic, 1.0), 1.0)
    ss = None
    if target.forcing_sites is not None:
        isite = column_input(target.forcing_sites)
        ss = np.where(isite > 0, mean / np.where(isite > 0, isite, 1.0), 1.0)
    return sc, ss


def component_control(
    model: str,
    mode: str,
    p_cells: np.ndarray,
    constant: np.ndarray,
    target: Target,
    p_sites: np.ndarray | None = None,
    npp: bool = True,
    progress=None,
) -> list[dict]:
    """Component control over members (SPEC 8).

    Args:
        model, mode: process model and mode.
        p_cells: (M, n, n_par) normalized parameters of every member at the cells.
        constant: (n_par,) the global constant (normalized).
        target: `Target`.
        p_sites: (M, ns, n_par) the members' parameters at the sites (for the metrics).
        npp: also the NPP component (inputs at the global mean).
        progress: optional tqdm bar, advanced once per run.

    Returns:
        Records ``{member, group, total_pg, d_total_pg, abs_d_total_pg, nse, r, r2, mse, ...,
        d_nse, d_r, d_r2, d_mse}``; group ``"none"`` is the unperturbed run.
    """
    groups = group_indices(model)
    sc, ss = _npp_scales(target)
    records = []
    for m in range(p_cells.shape[0]):
        ps = None if p_sites is None else p_sites[m]
        base = evaluate(model, mode, p_cells[m], target, ps)
        runs = [("none", base)]
        if progress is not None:
            progress.update(1)
        for g, idx in groups.items():
            pc = p_cells[m].copy()
            pc[:, idx] = constant[idx]
            pss = None
            if ps is not None:
                pss = ps.copy()
                pss[:, idx] = constant[idx]
            runs.append((g, evaluate(model, mode, pc, target, pss)))
            if progress is not None:
                progress.update(1)
        if npp:
            runs.append(("NPP", evaluate(model, mode, p_cells[m], target, ps, sc, ss)))
            if progress is not None:
                progress.update(1)
        for g, r in runs:
            rec = {"member": m, "group": g, **r}
            rec["d_total_pg"] = r["total_pg"] - base["total_pg"]
            rec["abs_d_total_pg"] = abs(rec["d_total_pg"])
            for k in ("nse", "r", "r2", "mse"):
                if k in r:
                    rec[f"d_{k}"] = r[k] - base[k]
            records.append(rec)
    return records


def marginal_sensitivity(
    model: str,
    mode: str,
    p_cells: np.ndarray,
    target: Target,
    deltas: np.ndarray = DELTAS,
    npp: bool = True,
    progress=None,
) -> list[dict]:
    """Marginal sensitivity of the global stock to each group (SPEC 8).

    Args:
        model, mode: process model and mode.
        p_cells: (M, n, n_par) normalized parameters of every member.
        target: `Target` (only the cells are used).
        deltas: relative perturbations (default `DELTAS`).
        npp: also scale all litter inputs by ``1 + delta``.
        progress: optional tqdm bar, advanced once per run.

    Returns:
        Records ``{member, group, delta, total_pg, rel_change}`` with ``rel_change`` the
        relative change of the global 0-100 cm stock against delta = 0 (the clipped,
        unperturbed parameters).
    """
    groups = group_indices(model)
    lo, hi = CLIP
    records = []
    cells_only = dataclasses.replace(target, forcing_sites=None)
    for m in range(p_cells.shape[0]):
        base_p = np.clip(p_cells[m], lo, hi)
        base = evaluate(model, mode, base_p, cells_only)["total_pg"]
        names = list(groups) + (["NPP"] if npp else [])
        for g in names:
            for d in deltas:
                if g == "NPP":
                    scale = np.full(base_p.shape[0], 1.0 + d)
                    tot = evaluate(model, mode, base_p, cells_only, scale_cells=scale)["total_pg"]
                else:
                    p = base_p.copy()
                    p[:, groups[g]] = np.clip(p[:, groups[g]] * (1.0 + d), lo, hi)
                    tot = evaluate(model, mode, p, cells_only)["total_pg"]
                rel = (tot - base) / base if base != 0 else 0.0
                records.append(
                    {"member": m, "group": g, "delta": float(d), "total_pg": tot, "rel_change": rel}
                )
                if progress is not None:
                    progress.update(1)
    return records


def summarize_members(records: list[dict], keys: tuple[str, ...], values: tuple[str, ...]):
    """Median and 14 / 86 % quantiles over members of each ``values`` column per ``keys``.

    Returns:
        list of dicts: the key columns, then ``<value>_median``, ``<value>_q14``,
        ``<value>_q86`` and ``n_members``.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rows in groups.items():
        row = dict(zip(keys, key, strict=True))
        for v in values:
            a = np.array([r[v] for r in rows if v in r], float)
            a = a[np.isfinite(a)]
            q = np.quantile(a, QUANTILES) if a.size else [np.nan] * 3
            row[f"{v}_median"] = float(q[1])
            row[f"{v}_q14"], row[f"{v}_q86"] = float(q[0]), float(q[2])
        row["n_members"] = len(rows)
        out.append(row)
    return out
