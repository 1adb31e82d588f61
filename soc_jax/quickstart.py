"""``soc-jax quickstart``: steady-state SOC on the embedded synthetic world.

Builds a small synthetic world (`soc_jax.data.make_world`: sites with covariates, forcing and
known true parameters), computes CLM5 steady states with the CLM5 customary configuration
(``mode="default"``) and with PRODA's prior midpoint (``mode="proda"``, p = 0.5 for every
parameter, the MCMC start), and COMPAS steady states at its prior midpoint, then writes

- ``steady_states.nc``: layer SOC (gC m-3) and stocks 0-30/100/200 cm and total (kgC m-2) per
  site and configuration, with ``ok`` flags, latitude and longitude;
- ``profiles.png``: SOC against depth at example sites (CLM5 default vs PRODA midpoint);
- ``clm5_vs_compas.png``: the two models side by side at the same sites;

into ``--out`` and prints a short summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ._cli_args import HelpFormatter, nonneg_int, output_dir, positive_int

__all__ = ["register", "run", "quickstart"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "quickstart",
        help="steady-state SOC with CLM5 and COMPAS on the embedded synthetic world",
        description=__doc__,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--n-sites", type=positive_int, default=300, help="number of synthetic sites")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the synthetic world")
    p.add_argument(
        "--out", type=output_dir, default=Path("results/quickstart"), help="output folder"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    quickstart(n_sites=args.n_sites, seed=args.seed, out=args.out)
    return 0


class _Steps:
    """Numbered progress lines with elapsed time."""

    def __init__(self, total: int):
        self.total, self.k, self.t0 = total, 0, time.perf_counter()

    def __call__(self, message: str) -> None:
        self.k += 1
        print(
            f"[{self.k}/{self.total}] {message} (t = {time.perf_counter() - self.t0:.1f} s)",
            flush=True,
        )


def quickstart(n_sites: int = 300, seed: int = 0, out: Path | str = "results/quickstart") -> dict:
    """Run the quickstart; returns the summary numbers (also printed).

    Args:
        n_sites: number of synthetic sites (>= 1).
        seed: seed of the synthetic world.
        out: output folder (created).

    Returns:
        dict with ``n_sites``, mean 0-100 cm stocks (kgC m-2) per configuration, valid counts and
        the wall time in s.
    """
    import jax
    import jax.numpy as jnp
    import xarray as xr

    from .data import make_world
    from .grid import ZSOI, stocks
    from .models import clm5

    if not jax.config.jax_enable_x64:
        raise RuntimeError("quickstart needs float64: jax.config.update('jax_enable_x64', True)")
    try:
        from .models import compas
    except ImportError:  # pragma: no cover - COMPAS is part of the package
        compas = None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps(6 if compas is not None else 5)
    t0 = time.perf_counter()

    step(f"building the synthetic world ({n_sites} sites, seed {seed})")
    world = make_world(n_sites, seed=seed, progress=True)
    forcing = jax.tree.map(jnp.asarray, world.forcing_batch())

    configs: dict[str, tuple] = {
        "clm5_default": (clm5, clm5.default_parameters(), "default"),
        "clm5_proda_midpoint": (clm5, np.asarray(clm5.PARAMETERS.midpoint()), "proda"),
    }
    if compas is not None:
        configs["compas_midpoint"] = (compas, np.asarray(compas.PARAMETERS.midpoint()), "proda")

    results = {}
    for name, (model, params, mode) in configs.items():
        step(f"steady states: {name} (mode={mode}; first call compiles)")
        fn = jax.jit(jax.vmap(lambda f, m=model, p=params, md=mode: m.steady_state(p, f, mode=md)))
        results[name] = jax.tree.map(np.asarray, fn(forcing))

    step("writing steady_states.nc")
    data_vars = {}
    for name, res in results.items():
        st = stocks(np.where(res.ok[:, None], res.soc, np.nan))
        data_vars[f"soc_{name}"] = (
            ("profile", "layer"),
            res.soc,
            {"units": "gC m-3", "long_name": f"soil organic carbon, {name}"},
        )
        data_vars[f"ok_{name}"] = (
            ("profile",),
            res.ok.astype(np.int8),
            {"long_name": f"valid steady state (1) or failed (0), {name}"},
        )
        for label, value in zip(("0_30cm", "0_100cm", "0_200cm", "total"), st, strict=True):
            data_vars[f"stock_{label}_{name}"] = (
                ("profile",),
                np.asarray(value) / 1000.0,
                {"units": "kgC m-2", "long_name": f"SOC stock {label.replace('_', '-')}, {name}"},
            )
    ds = xr.Dataset(
        data_vars,
        coords={
            "profile": np.arange(n_sites),
            "layer": np.arange(1, 21),
            "depth_node": ("layer", ZSOI[:20], {"units": "m", "long_name": "layer node depth"}),
            "lat": ("profile", world.lat, {"units": "degrees_north"}),
            "lon": ("profile", world.lon, {"units": "degrees_east"}),
        },
        attrs={
            "title": "soc_jax quickstart: steady-state SOC on the synthetic world",
            "world_seed": seed,
        },
    )
    ds.to_netcdf(out / "steady_states.nc")

    step("drawing profiles.png and clm5_vs_compas.png")
    _figures(results, world, out)

    elapsed = time.perf_counter() - t0
    summary = {"n_sites": n_sites, "seconds": elapsed}
    print(f"\nsoc_jax quickstart: {n_sites} synthetic sites, outputs in {out}/")
    for name, res in results.items():
        mean_stock = float(np.nanmean(ds[f"stock_0_100cm_{name}"].values))
        summary[f"{name}_mean_0_100cm_kgC_m2"] = mean_stock
        summary[f"{name}_valid"] = int(res.ok.sum())
        print(
            f"  {name:22s} valid {int(res.ok.sum()):5d}/{n_sites}  "
            f"mean 0-100 cm stock {mean_stock:7.2f} kgC m-2"
        )
    print(f"  total time {elapsed:.1f} s")
    return summary


def _figures(results: dict, world, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .grid import ZSOI

    shown = ZSOI[:20] <= 2.5  # the top 2.5 m; deeper layers hold little carbon
    z = ZSOI[:20][shown] * 100.0  # cm
    ok_all = np.all([r.ok for r in results.values()], axis=0)
    candidates = np.flatnonzero(ok_all)
    if candidates.size == 0:
        candidates = np.arange(len(world.lat))
    # example sites spread over latitude
    order = candidates[np.argsort(world.lat[candidates])]
    picks = order[np.linspace(0, order.size - 1, min(6, order.size)).astype(int)]
    colors = plt.cm.viridis(np.linspace(0, 0.9, picks.size))

    def panels(names: tuple[str, str], titles: tuple[str, str], filename: str) -> None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 4.5), sharey=True, dpi=90)
        for ax, name, title in zip(axes, names, titles, strict=True):
            for c, i in zip(colors, picks, strict=True):
                label = f"{world.lat[i]:.0f} N"
                ax.plot(results[name].soc[i][shown], z, "-o", ms=2.5, color=c, label=label)
            ax.set_xscale("log")
            ax.set_title(title)
            ax.set_xlabel("SOC (gC m$^{-3}$)")
            ax.set_ylim(250, 0)
        axes[0].set_ylabel("depth (cm)")
        axes[1].legend(title="site latitude", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)

    panels(("clm5_default", "clm5_proda_midpoint"),
           ("CLM5, customary parameters (default mode)", "CLM5, PRODA prior midpoint"),
           "profiles.png")  # fmt: skip
    if "compas_midpoint" in results:
        panels(("clm5_proda_midpoint", "compas_midpoint"),
               ("CLM5 (first order), prior midpoint", "COMPAS (Michaelis-Menten), prior midpoint"),
               "clm5_vs_compas.png")  # fmt: skip
