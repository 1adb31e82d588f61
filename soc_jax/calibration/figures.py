"""Figures of a calibration run: observed vs posterior profiles, R-hat/acceptance, truth scatter."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def profiles_figure(post: xr.Dataset, path: str, n_sites: int = 6) -> None:
    """Observed SOC and the posterior modelled SOC vs depth for a few sites.

    PRODA's AM: posterior mean +- 1 std at the observed depths (optimal chain). Gradient
    samplers (``soc_q05`` present): posterior mean with its 5-95 % band at the observed depths
    and, as a line with a lighter band, at the 20 node depths (posterior predictive of the
    modelled SOC, no observation noise).
    """
    plt = _plt()
    # profiles with a posterior (skipped ones and those without a valid chain are NaN)
    has = np.all(np.isfinite(post["para_summary_mean"].values), axis=1)
    ok = np.flatnonzero((post["status"].values & 32 == 0) & has)
    picks = ok[np.linspace(0, ok.size - 1, min(n_sites, ok.size)).astype(int)] if ok.size else []
    fig, axes = plt.subplots(1, max(len(picks), 1), figsize=(2.4 * max(len(picks), 1), 3.6))
    axes = np.atleast_1d(axes)
    for ax, i in zip(axes, picks, strict=False):
        m = post["obs_mask"].values[i].astype(bool)
        z = post["depth_obs"].values[i, m]
        mod = post["soc_mod_opt"].values[i, m]
        sd = post["soc_std_opt"].values[i, m]
        ax.plot(post["soc_obs"].values[i, m], z, "ko", ms=4, label="observed", zorder=3)
        if "soc_q05" in post:
            lo, hi = post["soc_q05"].values[i, m], post["soc_q95"].values[i, m]
            ax.errorbar(
                mod, z, xerr=[mod - lo, hi - mod], fmt="C0s", ms=3, lw=1, label="5-95 % (obs.)"
            )
            zn = np.asarray(post["node_depth"].values) if "node_depth" in post else None
            if zn is not None:
                keep = zn <= max(z.max() * 1.3, zn[3])
                nm = post["soc_nodes_mean"].values[i][keep]
                ax.plot(nm, zn[keep], "C1-", lw=1, label="mean (20 nodes)")
                ax.fill_betweenx(
                    zn[keep],
                    post["soc_nodes_q05"].values[i][keep],
                    post["soc_nodes_q95"].values[i][keep],
                    color="C1",
                    alpha=0.25,
                    lw=0,
                    label="5-95 % (20 nodes)",
                )
        else:
            ax.plot(mod, z, "C0-", label="posterior mean")
            ax.fill_betweenx(z, mod - sd, mod + sd, color="C0", alpha=0.3, lw=0)
        ax.invert_yaxis()
        ax.set(xlabel="SOC (gC m-3)", title=str(post["profile_id"].values[i]))
    axes[0].set_ylabel("depth (m)")
    axes[0].legend(fontsize=7)
    sampler = post.attrs.get("sampler", "proda-am")
    fig.suptitle(
        "Observed vs posterior modelled SOC (optimal chain)"
        if sampler == "proda-am"
        else f"Observed vs modelled SOC, posterior predictive ({sampler}, all chains)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def diagnostics_figure(post: xr.Dataset, path: str) -> None:
    """Histograms of the rank R-hat (profiles x parameters) and of the acceptance rates.

    R-hat: computed values only (NaN = not computed is left out); inf is drawn at the clip.
    """
    plt = _plt()
    done = post["status"].values & 32 == 0
    rhat = post["rhat"].values[done].ravel()
    rhat = rhat[~np.isnan(rhat)]
    acc = post["acceptance"].values[done].ravel()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3.2))
    a1.hist(np.clip(rhat, 1.0, 3.0), bins=40, color="C1")
    a1.axvline(1.05, color="k", ls="--", lw=1)
    a1.set(xlabel="rank R-hat (clipped at 3)", ylabel="count", title="R-hat, profiles x parameters")
    a2.hist(acc, bins=30, range=(0, 1), color="C2")
    label = "acceptance rate of the formal run"
    if post.attrs.get("sampler", "proda-am") != "proda-am":
        label = f"mean acceptance statistic ({post.attrs['sampler']})"
    a2.set(xlabel=label, ylabel="count", title="acceptance, chains")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def truth_figure(post: xr.Dataset, truth: xr.Dataset, path: str) -> dict[str, float]:
    """Posterior mean vs true normalized parameter (synthetic world); returns R2 per parameter."""
    plt = _plt()
    tid = truth["profile_id"].values.astype(str)
    where = {pid: j for j, pid in enumerate(tid)}
    pid = post["profile_id"].values.astype(str)
    has = np.all(np.isfinite(post["para_summary_mean"].values), axis=1)
    done = (post["status"].values & 32 == 0) & np.isin(pid, tid) & has
    idx = np.array([where[p] for p in pid[done]], int)
    true = truth["p"].values[idx]
    est = post["para_summary_mean"].values[done]
    names = list(post["parameter"].values)
    r2 = {}
    ncol = 6
    nrow = -(-len(names) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.2 * nrow), squeeze=False)
    for k, name in enumerate(names):
        ax = axes.flat[k]
        t, e = true[:, k], est[:, k]
        ss = np.sum((t - t.mean()) ** 2)
        const = ss <= 1e-12 * max(t.size, 1)  # a parameter the world holds constant
        r2[name] = float("nan") if const else float(1 - np.sum((e - t) ** 2) / ss)
        ax.plot(t, e, ".", ms=3)
        ax.plot([0, 1], [0, 1], "k-", lw=0.5)
        label = "truth constant" if const else f"R2={r2[name]:.2f}"
        ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name} {label}")
        ax.title.set_fontsize(8)
        if k % ncol == 0:
            ax.set_ylabel("posterior mean p")
        if k // ncol == nrow - 1:
            ax.set_xlabel("true p")
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.suptitle("Posterior mean vs truth (normalized parameters, synthetic world)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return r2


def write_all(post: xr.Dataset, out: str, truth_path: str | None = None) -> list[str]:
    """Write every figure into ``out``; returns the paths."""
    paths = [os.path.join(out, "profiles.png"), os.path.join(out, "diagnostics.png")]
    profiles_figure(post, paths[0])
    diagnostics_figure(post, paths[1])
    if truth_path is not None:
        with xr.open_dataset(truth_path) as t:
            truth = t.load()
        if "profile_id" in truth.coords and truth.sizes.get("parameter") == post.sizes["parameter"]:
            paths.append(os.path.join(out, "truth_scatter.png"))
            truth_figure(post, truth, paths[-1])
    return paths
