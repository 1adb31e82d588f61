"""Figures of the convergence study (the kinds of Tao et al. 2024, Figs. 2-5 and S9).

Per world: component maps after PRODA (CLM5 and COMPAS rows), components against latitude
(before and after), log SOC of CLM5 against COMPAS before and after PRODA, attribution bars with
the bootstrap 14-86 % intervals plus the marginal-sensitivity curves, and the Michaelis-Menten
constants against their substrates. Conventions of `soc_jax.plots`.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .. import plots

__all__ = ["all_figures"]

_TITLES = {
    "A": ("carbon transfer efficiency", "1"),
    "K": ("baseline decomposition", "yr-1"),
    "xi": ("environmental modifier", "1"),
    "B": ("input allocation (apparent beta)", "1"),
    "V": ("vertical transport", "yr-1"),
    "npp": ("plant carbon input", "gC m-2 yr-1"),
}
_COLORS = {"clm5": "tab:blue", "compas": "tab:orange"}
_LABEL = {"clm5": "CLM5", "compas": "COMPAS"}


def _component_maps(comp, path: str, world: str) -> str:
    plt = plots.pyplot()
    names = list(_TITLES)
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names), 5.2), squeeze=False)
    lat, lon = comp["lat"].values, comp["lon"].values
    for j, k in enumerate(names):
        vals = [comp[f"{m}_after_{k}"].values for m in ("clm5", "compas")]
        finite = np.concatenate([v[np.isfinite(v)] for v in vals])
        lo, hi = np.quantile(finite, [0.02, 0.98]) if finite.size else (0, 1)
        for i, m in enumerate(("clm5", "compas")):
            ax = axes[i, j]
            sc = ax.scatter(lon, lat, c=vals[i], s=14, marker="s", vmin=lo, vmax=hi,
                            cmap=plots.SEQUENTIAL)  # fmt: skip
            plots.map_axes(ax)
            ax.set_xticks([-120, 0, 120])  # fewer ticks: narrow panels
            ax.set_title(f"{_LABEL[m]}: {_TITLES[k][0]}", fontsize=8)
            plots.colorbar(fig, sc, ax, k, _TITLES[k][1])
            if j:
                ax.set_ylabel("")
            if i == 0:
                ax.set_xlabel("")
    fig.suptitle(f"System-level components after PRODA ({world} world; rows CLM5, COMPAS)")
    fig.tight_layout()
    return plots.save(fig, path, dpi=80)  # wide figure: keep the PNG small


def _zonal(lat, v, edges):
    mid, med = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = (lat >= a) & (lat < b) & np.isfinite(v)
        if sel.sum():
            mid.append(0.5 * (a + b))
            med.append(np.median(v[sel]))
    return np.array(mid), np.array(med)


def _component_latitude(comp, path: str, world: str) -> str:
    plt = plots.pyplot()
    names = list(_TITLES)
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.6), sharey=True)
    lat = comp["lat"].values
    step = max(5.0, float(np.min(np.diff(np.unique(lat)))) if np.unique(lat).size > 1 else 10.0)
    edges = np.arange(-60.0, 90.0 + step, step)
    for ax, k in zip(axes, names, strict=True):
        for m in ("clm5", "compas"):
            for s, ls in (("after", "-"), ("before", ":")):
                x, y = _zonal(lat, comp[f"{m}_{s}_{k}"].values, edges)
                ax.plot(y, x, ls, color=_COLORS[m], label=f"{_LABEL[m]} {s} PRODA")
        ax.set_xlabel(plots.label(k, _TITLES[k][1]))
        ax.set_title(_TITLES[k][0], fontsize=9)
    axes[0].set_ylabel("latitude (degrees north)")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"Zonal medians of the components ({world} world; dotted: before PRODA)")
    fig.tight_layout()
    return plots.save(fig, path, dpi=80)  # wide figure: keep the PNG small


def _logsoc_scatter(pc, pm, conv, path: str, world: str) -> str:
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), sharex=True, sharey=True)
    pairs = {
        "before": (pc["default_stocks"][:, 1], pm["homogeneous_stocks"][:, 1]),
        "after": (pc["best_stocks"][:, 1], pm["best_stocks"][:, 1]),
    }
    for ax, (s, (a, b)) in zip(axes, pairs.items(), strict=True):
        good = (a > 0) & (b > 0)  # failed steady states are NaN (False here); log axes need > 0
        ax.scatter(a[good] / 1000, b[good] / 1000, s=8, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if good.any():
            lo = min(a[good].min(), b[good].min()) / 1000
            hi = max(a[good].max(), b[good].max()) / 1000
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="1:1")
        else:
            ax.text(0.5, 0.5, "no cell where both models succeeded", ha="center",
                    transform=ax.transAxes)  # fmt: skip
        r = conv["log_soc"][s]
        paper = conv["log_soc"][f"paper_{s}"]
        ax.set_title(f"{s} PRODA: r(log SOC) = {r:.2f} (paper {paper})", fontsize=9)
        ax.set_xlabel(plots.label("CLM5 SOC 0-100 cm", "kgC m-2", log=True))
        if good.any():
            ax.legend(fontsize=8)
    axes[0].set_ylabel(plots.label("COMPAS SOC 0-100 cm", "kgC m-2", log=True))
    fig.suptitle(f"CLM5 vs COMPAS per grid cell, {world} world")
    fig.tight_layout()
    return plots.save(fig, path)


def _attribution(att: dict, path: str, world: str) -> str:
    plt = plots.pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for i, m in enumerate(("clm5", "compas")):
        a = att[m]
        rows = [r for r in a["control_summary"] if r["group"] != "none"]
        g = [r["group"] for r in rows]
        for j, (v, lab, unit) in enumerate(
            (("abs_d_total_pg", "|change| of global SOC 0-100 cm", "Pg C"),
             ("d_nse", "change of NSE vs observations", "1"))
        ):  # fmt: skip
            ax = axes[i, j]
            med = np.array([r[f"{v}_median"] for r in rows])
            lo = med - np.array([r[f"{v}_q14"] for r in rows])
            hi = np.array([r[f"{v}_q86"] for r in rows]) - med
            ax.bar(g, med, yerr=[np.abs(lo), np.abs(hi)], color=_COLORS[m], capsize=3)
            ax.axhline(0, color="k", lw=0.6)
            ax.set_ylabel(plots.label(lab, unit))
            ax.set_xlabel("process group at its global constant")
            ax.set_title(f"{_LABEL[m]} component control", fontsize=9)
        ax = axes[i, 2]
        sens = a["sensitivity_summary"]
        for k, grp in enumerate(sorted({r["group"] for r in sens})):
            rr = sorted([r for r in sens if r["group"] == grp], key=lambda r: r["delta"])
            d = np.array([r["delta"] for r in rr])
            med = 100 * np.array([r["rel_change_median"] for r in rr])
            ax.plot(d, med, "o-", ms=3, color=plt.get_cmap(plots.CATEGORICAL)(k), label=grp)
            ax.fill_between(
                d,
                100 * np.array([r["rel_change_q14"] for r in rr]),
                100 * np.array([r["rel_change_q86"] for r in rr]),
                color=plt.get_cmap(plots.CATEGORICAL)(k),
                alpha=0.15,
            )
        ax.set_xlabel(plots.label("relative perturbation delta", "1"))
        ax.set_ylabel(plots.label("change of global SOC", "%"))
        ax.set_title(f"{_LABEL[m]} marginal sensitivity", fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    n = len(att["clm5"]["members"])
    fig.suptitle(
        f"Process attribution, {world} world: median and 14-86 % over {n} bootstrap networks"
    )
    fig.tight_layout()
    return plots.save(fig, path)


def _km_figure(mm: dict, path: str, world: str) -> str:
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    for ax, (km, sub, name) in zip(
        axes,
        (("km_decom_xi", "soc_substrate", "decomposition: K_d xi vs mSOC"),
         ("km_assim_xi", "doc_substrate", "assimilation: K_a xi vs DOC")),
        strict=True,
    ):  # fmt: skip
        k = np.asarray(mm[km]).ravel()
        s = np.asarray(mm[sub]).ravel()
        good = np.isfinite(k) & np.isfinite(s) & (k > 0) & (s > 0)
        ax.scatter(s[good], k[good], s=4, alpha=0.4)
        if good.any():
            lim = np.array([s[good].min(), s[good].max()])
            ax.plot(lim, lim, "k--", lw=0.8, label="K = substrate")
            ax.plot(lim, 100 * lim, "k:", lw=0.8, label="K = 100 x substrate")
            frac = float(np.mean(k[good] > 100 * s[good]))
            ax.set_title(
                f"{name}\n{100 * frac:.0f} % of layers with K > 100 x substrate", fontsize=9
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(plots.label("substrate", "gC m-3", log=True))
        ax.set_ylabel(plots.label("Michaelis-Menten constant x xi", "gC m-3", log=True))
        if good.any():
            ax.legend(fontsize=8)
    fig.suptitle(f"COMPAS after site-level calibration ({world} world; all sites x layers)")
    fig.tight_layout()
    return plots.save(fig, path)


def all_figures(runner, out: str) -> dict[str, list[str]]:
    """Draw every figure of every world into ``out``; returns world -> paths."""
    import xarray as xr

    figs: dict[str, list[str]] = {}
    for w in runner.config.worlds:
        s = f"{w}_world"
        comp = xr.load_dataset(runner.path(f"{s}/components", "components.nc"))
        with open(runner.path(f"{s}/convergence", "convergence.json")) as f:
            conv = json.load(f)
        pc = np.load(runner.path(f"{s}/predict_clm5", "prediction.npz"))
        pm = np.load(runner.path(f"{s}/predict_compas", "prediction.npz"))
        att = {}
        for m in ("clm5", "compas"):
            with open(runner.path(f"{s}/attribution_{m}", "attribution.json")) as f:
                att[m] = json.load(f)
        mm = dict(np.load(runner.path(f"{s}/components", "site_mm.npz")))
        figs[w] = [
            _component_maps(comp, os.path.join(out, f"{w}_component_maps.png"), w),
            _component_latitude(comp, os.path.join(out, f"{w}_component_latitude.png"), w),
            _logsoc_scatter(pc, pm, conv, os.path.join(out, f"{w}_logsoc_before_after.png"), w),
            _attribution(att, os.path.join(out, f"{w}_attribution.png"), w),
            _km_figure(mm, os.path.join(out, f"{w}_km_vs_substrate.png"), w),
        ]
    return figs
