"""Reporting one UDE case: the results dictionary, its JSON, the summary line and figures."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import numpy as np

from soc_jax.ude.case_specs import NOISE_RHO, SEED_TABLE8, CaseSpec, score
from soc_jax.ude.synthetic import UDEData
from soc_jax.ude.train import ensemble_predict


class CaseReport:
    """The results of one case: each method's scores, then summary, JSON and figures.

    :meth:`record` adds a method (scores and prediction); :meth:`conclude` writes the summary,
    ``out/ude_case{N}.json`` and the figures.

    Attributes:
        case, data: the case and its synthetic data.
        result: the results dictionary (keys in the order they are written to the JSON).
        preds: each method's mean prediction ``(nt, nz)``, for the figures.
    """

    def __init__(
        self,
        case: CaseSpec,
        data: UDEData,
        *,
        truth: str,
        seed: int,
        quick: bool,
        caps: dict,
        out: str,
        figures: bool,
        t0: float,
        log=print,
    ):
        self.case, self.data, self.out, self.figures, self.log = case, data, out, figures, log
        self.t0 = t0  # the case's start (perf_counter), for its ``seconds``
        self.preds: dict = {}
        self.result: dict = {
            "case": case.number,
            "mode": case.mode,
            "noise": case.noise,
            "noise_rho": NOISE_RHO,
            "truth": truth,
            "data_seed": seed,
            "quick": quick,
            "jax": jax.__version__,
            "precision": "float64",
        }
        self.result["iteration_caps"] = caps
        self.result["methods"] = {}

    def record(self, name: str, cfg, models, final_loss, seconds: float) -> None:
        """Score method ``name`` (its members' mean prediction) and keep its prediction."""
        pred, ok = ensemble_predict(models, self.data)
        self.preds[name] = np.asarray(pred)
        scores = score(self.case, pred, self.data)
        self.result["methods"][name] = {
            "config": {
                k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(cfg).items()
            },
            "members": len(models),
            "final_loss": final_loss,
            "train_seconds": seconds,
            "solve_ok": ok,
            **scores,
        }
        self.log(
            f"case {self.case.number} [{name}]: "
            + " ".join(f"{k}={v:.4g}" for k, v in scores.items())
        )

    def conclude(self, methods) -> dict:
        """Summary (the last of ``methods`` is the default), JSON and figures; the results."""
        result, number = self.result, self.case.number
        default = list(methods)[-1]
        result["default_method"] = default
        result["summary"] = {
            k: result["methods"][default][k]
            for k in ("mse_noisy", "r2_noisy", "mse_clean", "r2_clean")
        }
        result["seed_table8"] = SEED_TABLE8.get(number)
        result["seconds"] = time.perf_counter() - self.t0
        os.makedirs(self.out, exist_ok=True)
        with open(os.path.join(self.out, f"ude_case{number}.json"), "w") as fh:
            json.dump(result, fh, indent=2, default=float)
        if self.figures:
            plot_case(self.case, self.data, self.preds, self.out)
        return result


def summary_line(result: dict) -> str:
    """``case N: mse_noisy=... r2_noisy=... mse_clean=... r2_clean=...``"""
    s = result["summary"]
    return (
        f"case {result['case']}: mse_noisy={s['mse_noisy']:.4g} r2_noisy={s['r2_noisy']:.6g} "
        f"mse_clean={s['mse_clean']:.4g} r2_clean={s['r2_clean']:.6g}"
    )


# Raju et al. (2025) give SOC concentrations without a unit (C(z=0, t=0) = 1.2): "a.u."
UDE_SOC_UNIT = "a.u."


def plot_case(case: CaseSpec, data: UDEData, preds: dict, out: str, dpi: int = 80) -> list[str]:
    """Figures: profile true vs predicted at 50 yr, residuals vs depth, [True | Pred | Residual].

    Returns:
        Paths written (``out/ude_case{N}_{profile,residuals,heatmap}.png``).
    """
    from soc_jax import plots

    plt = plots.pyplot()
    unit = UDE_SOC_UNIT
    z = np.asarray(data.z)
    ts = np.asarray(data.ts)
    clean = np.asarray(data.soc_clean)
    obs = np.asarray(data.soc_obs)
    n = case.number
    paths = []

    fig, ax = plt.subplots(figsize=(4, 4.2))
    ax.plot(clean[-1], z, "k-", lw=2, label="clean truth")
    ax.plot(obs[-1], z, "k.", ms=5, label="noisy target" if case.noise else "target")
    ax.plot(np.asarray(data.c0), z, color="0.6", ls=":", label="initial (t=0)")
    for name, p in preds.items():
        ax.plot(p[-1], z, "--", lw=1.5, label=f"UDE ({name})")
    path = os.path.join(out, f"ude_case{n}_profile.png")
    paths.append(_save_profile(fig, ax, z, "SOC at t = 50 yr", f"Case {n}: true vs UDE", path, dpi))

    fig, ax = plt.subplots(figsize=(4, 4.2))
    for name, p in preds.items():
        ax.plot(p[-1] - clean[-1], z, "o-", ms=3, label=f"{name} - clean")
        ax.plot(p[-1] - obs[-1], z, "x:", ms=3, label=f"{name} - noisy")
    ax.axvline(0, color="k", lw=0.8)
    path = os.path.join(out, f"ude_case{n}_residuals.png")
    title = f"Case {n}: residuals vs depth"
    paths.append(_save_profile(fig, ax, z, "SOC residual at t = 50 yr", title, path, dpi))

    p = list(preds.values())[-1]
    fig, axs = plt.subplots(1, 3, figsize=(10, 3.6), sharey=True)
    fig.subplots_adjust(bottom=0.15, top=0.82)
    ext = [ts[0], ts[-1], z[-1], z[0]]
    vmin, vmax = clean.min(), clean.max()
    for ax, arr, title in ((axs[0], clean, "True (clean)"), (axs[1], p, "UDE prediction")):
        im = ax.imshow(
            arr.T, aspect="auto", extent=ext, vmin=vmin, vmax=vmax, cmap=plots.SEQUENTIAL
        )
        ax.set_title(title)
        ax.set_xlabel("time t (yr)")
    plots.colorbar(fig, im, axs[:2].tolist(), "SOC", unit, shrink=0.8)
    res = p - clean
    lim = float(np.max(np.abs(res))) or 1.0
    im = axs[2].imshow(res.T, aspect="auto", extent=ext, vmin=-lim, vmax=lim, cmap=plots.DIVERGING)
    axs[2].set_title("Residual (pred - true)")
    axs[2].set_xlabel("time t (yr)")
    plots.colorbar(fig, im, axs[2], "SOC residual", unit, shrink=0.8)
    axs[0].set_ylabel("depth z (m)")
    fig.suptitle(f"Case {n}: [True | Pred | Residual] ({list(preds)[-1]})")
    paths.append(os.path.join(out, f"ude_case{n}_heatmap.png"))
    plots.save(fig, paths[-1], dpi=dpi)
    return paths


def _save_profile(fig, ax, z, quantity: str, title: str, path: str, dpi: int) -> str:
    """Label a profile plot (``quantity`` in :data:`UDE_SOC_UNIT` against depth), save it."""
    from soc_jax import plots

    ax.set_xlabel(plots.label(quantity, UDE_SOC_UNIT))
    plots.depth_axis(ax, float(z[-1]), grid_m=None)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    plots.save(fig, path, dpi=dpi)
    return path


__all__ = ["CaseReport", "UDE_SOC_UNIT", "plot_case", "summary_line"]
