"""Figures as a reader sees them: units in labels, shared axes for comparisons, latitudes as
people write them, failures marked, titles. Checked on the figure objects, not on pixels."""

from types import SimpleNamespace

import numpy as np
import pytest

from soc_jax import plots
from soc_jax.grid import ZSOI
from soc_jax.quickstart import comparison_figure, profiles_figure

plt = plots.pyplot()


@pytest.mark.parametrize(
    ("lat", "text"), [(-45.2, "45 S"), (12.4, "12 N"), (0.2, "0"), (-0.4, "0"), (89.6, "90 N")]
)
def test_lat_label(lat, text):
    assert plots.lat_label(lat) == text


@pytest.mark.parametrize(
    ("lon", "text"), [(-30, "30 W"), (120, "120 E"), (0, "0"), (180, "180"), (300, "60 W")]
)
def test_lon_label(lon, text):
    assert plots.lon_label(lon) == text


def test_labels_carry_units_and_say_log_in_words():
    assert plots.label("SOC density", "gC m-3") == "SOC density (gC m$^{-3}$)"
    assert plots.label("stock", "kgC m-2", log=True) == "stock (kgC m$^{-2}$), log scale"
    assert plots.label("fraction", "1") == "fraction (-)"
    assert plots.unit_of(plots.label("stock", "kgC m-2", log=True)) == "kgC m$^{-2}$"


def test_shared_limits_cover_every_panel():
    a, b = np.array([1e2, 2e4]), np.array([1e3, 1e5, np.nan, -1.0])
    lo, hi = plots.shared_limits([a, b], log=True, pad=0.0)
    assert (lo, hi) == pytest.approx((1e2, 1e5))
    lo, hi = plots.shared_limits([a, b], log=True, pad=0.0, decades=2)
    assert (lo, hi) == pytest.approx((1e3, 1e5))
    lo, hi = plots.shared_limits([np.array([0.0, 10.0])], pad=0.1)
    assert (lo, hi) == pytest.approx((-1.0, 11.0))


def _results(n=12, seed=0):
    """Two CLM5 configurations whose SOC differ by 5x (the difference a shared axis must show)."""
    rng = np.random.default_rng(seed)
    base = 1e4 * np.exp(-ZSOI[:20] / 0.5)[None, :] * rng.uniform(0.5, 2.0, (n, 1))
    ok = np.ones(n, bool)
    return {
        "clm5_default": SimpleNamespace(soc=base, ok=ok),
        "clm5_proda_midpoint": SimpleNamespace(soc=5 * base, ok=ok),
    }


def test_profiles_figure_shares_axes_and_labels_latitudes():
    lat = np.linspace(-45, 68, 12)
    fig = profiles_figure(_results(), lat)
    left, right = fig.axes[:2]
    assert left.get_xlim() == right.get_xlim()  # one SOC axis for both panels
    lo, hi = left.get_xlim()
    assert hi >= 5 * 2.0 * 1e4 * np.exp(-ZSOI[0] / 0.5)  # the larger configuration fits
    assert left.get_ylim() == pytest.approx((8.6, 0.0))  # the whole 8.6 m column, 0 at the top
    assert left.get_ylabel() == "depth (m)"
    assert left.get_xlabel() == "SOC density (gC m$^{-3}$), log scale"
    labels = plots.legend_labels(right)
    assert labels[0] == "45 S" and labels[-1] == "68 N"
    assert not any(t.startswith("-") for t in labels)
    assert "uncalibrated" in fig._suptitle.get_text()
    assert all(ax.get_title() for ax in (left, right))
    plt.close(fig)


def test_comparison_figure_marks_failed_sites():
    rng = np.random.default_rng(1)
    lat = rng.uniform(-50, 70, 40)
    clm5 = rng.uniform(5, 60, 40)
    compas = rng.uniform(3, 40, 40)
    compas[[3, 7, 11]] = np.nan  # three failed COMPAS steady states
    fig = comparison_figure(clm5, compas, lat)
    ax1, ax2 = fig.axes[:2]
    assert "COMPAS failed (3 sites)" in plots.legend_labels(ax1)
    assert "COMPAS failed (3 sites)" in plots.legend_labels(ax2)
    assert ax1.get_xlim() == ax1.get_ylim()  # same scale on both models' axes
    assert ax1.get_ylim() == ax2.get_ylim()
    assert plots.unit_of(ax1.get_xlabel()) == "kgC m$^{-2}$"
    assert plots.unit_of(ax2.get_ylabel()) == "kgC m$^{-2}$"
    assert ax2.get_xlabel() == "site latitude (degrees)"
    assert "uncalibrated" in fig._suptitle.get_text()
    plt.close(fig)


def test_world_figure(tmp_path, monkeypatch):
    """world.png: degree axes, labelled grid cells, stock colour bar with unit, depth in m."""
    from soc_jax.data import make_world

    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=None: figures.append(fig))
    world = make_world(30, seed=2)
    world.figure(tmp_path / "w.png")
    (fig,) = figures
    ax_map, ax_prof, cbar = fig.axes
    assert ax_map.get_xlabel() == "longitude (degrees)"
    assert ax_map.get_ylabel() == "latitude (degrees)"
    assert ax_map.get_xlim() == (-180, 180)
    assert "land grid cell (4 degree)" in plots.legend_labels(ax_map)
    assert cbar.get_ylabel() == "model SOC stock 0-100 cm (kgC m$^{-2}$), log scale"
    assert ax_prof.get_ylabel().startswith("depth (m)")
    assert ax_prof.get_ylim() == pytest.approx((2.5, 0.0))
    labels = plots.legend_labels(ax_prof)
    assert labels[-2:] == ["model", "observed"]
    assert all(t.endswith((" N", " S")) or t == "0" for t in labels[:-2])
    assert ax_map.get_title() and ax_prof.get_title()
    plt.close(fig)


def test_ude_figures_have_units(tmp_path, monkeypatch):
    """The UDE's SOC axes and colour bars say their unit (a.u.: the paper gives none)."""
    import jax
    import jax.random as jr

    jax.config.update("jax_enable_x64", True)
    from soc_jax.ude.cases import CASES, plot_case
    from soc_jax.ude.synthetic import SyntheticConfig, make_dataset

    figures = []
    monkeypatch.setattr(plots, "save", lambda fig, path, dpi=None: figures.append(fig))
    data = make_dataset(SyntheticConfig(nz=8, n_times=6, t_final=5.0, noise=0.07), jr.key(0))
    pred = np.asarray(data.soc_clean) * 1.1
    plot_case(CASES[5], data, {"mse": pred}, str(tmp_path))
    profile, residuals, heatmap = figures
    assert profile.axes[0].get_xlabel() == "SOC at t = 50 yr (a.u.)"
    assert residuals.axes[0].get_xlabel() == "SOC residual at t = 50 yr (a.u.)"
    cbar_labels = [ax.get_ylabel() for ax in heatmap.axes[3:]]
    assert cbar_labels == ["SOC (a.u.)", "SOC residual (a.u.)"]
    for fig in figures:
        assert fig.axes[0].get_ylabel().startswith("depth")
        plt.close(fig)
