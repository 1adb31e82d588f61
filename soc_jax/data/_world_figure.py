"""The summary figure of the synthetic world (``world.png`` of ``soc-jax synth``)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["world_figure"]


def world_figure(world, path: str | os.PathLike, dpi: int | None = None) -> str:
    """Summary figure of a `World`: its sites on a map coloured by 0-100 cm stock, and the
    model profile with the observed layers at five sites.

    Follows `soc_jax.plots` (degree axes, units, depth in m, log scale said in words).

    Args:
        world: a `soc_jax.data.World`.
        path: PNG file to write.
        dpi: resolution; default `soc_jax.plots.DPI`.

    Returns:
        The path written.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    from .. import plots
    from ..grid import N_LAYERS, ZSOI

    plt = plots.pyplot()
    fig = plt.figure(figsize=(12, 4.8), layout="constrained")
    ax, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.3, 1]})
    g = world.grid
    res = float(g.attrs.get("resolution_deg", np.nan))
    ax.scatter(g["lon"], g["lat"], s=6, c="0.85", marker="s", lw=0,
               label=f"land grid cell ({res:g} degree)")  # fmt: skip
    stock = world.profiles["stock_100cm"].values / 1000.0
    order = np.argsort(stock)
    sc = ax.scatter(
        world.lon[order],
        world.lat[order],
        c=stock[order],
        s=5,
        cmap=plots.SEQUENTIAL,
        norm=LogNorm(),
        lw=0,
        label="site (colour: stock)",
    )
    plots.colorbar(fig, sc, ax, "model SOC stock 0-100 cm", "kgC m-2", log=True)
    plots.map_axes(ax)
    ax.legend(loc="lower left", fontsize=8, markerscale=2)
    ax.set_title(
        f"Synthetic world: {world.n_sites} sites (observations from {world.model.upper()}, "
        f"noise sigma {world.noise:g})",
        fontsize=10,
    )
    rng = np.random.default_rng(0)
    picks = rng.choice(world.n_sites, size=min(5, world.n_sites), replace=False)
    picks = picks[np.argsort(world.lat[picks])]
    soc_model = world.profiles["soc_model"].values
    obs = world.profiles["soc"].values
    mask = world.profiles["mask"].values
    lo, hi = plots.shared_limits([soc_model[picks], obs[picks][mask[picks]]], log=True,
                                 decades=4)  # fmt: skip
    colors = plt.get_cmap(plots.CATEGORICAL).colors
    handles = []
    for c, i in zip(colors, picks, strict=False):
        m = mask[i]
        ax2.plot(soc_model[i], ZSOI[:N_LAYERS], color=c, lw=1)
        ax2.plot(obs[i, m], world.profiles["depth_node"].values[i, m], "o", color=c, ms=3)
        handles.append(Line2D([], [], color=c, label=plots.lat_label(world.lat[i])))
    handles += [
        Line2D([], [], color="k", lw=1, label="model"),
        Line2D([], [], color="k", marker="o", ms=3, ls="", label="observed"),
    ]
    ax2.set(xscale="log", xlim=(lo, hi))
    ax2.set_xlabel(plots.label(plots.SOC_DENSITY, "gC m-3", log=True))
    plots.depth_axis(ax2, 2.5)
    ax2.legend(handles=handles, title="site latitude", fontsize=8)
    ax2.set_title("model and observed SOC at 5 sites", fontsize=10)
    return plots.save(fig, path, dpi=dpi or plots.DPI)
