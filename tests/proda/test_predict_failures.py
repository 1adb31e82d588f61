"""``soc-jax predict`` never fails silently: all cells failed is an error, some cells failed are
reported (count, reasons, NaN stocks, totals over the rest with their area share, grey map
cells), and every total carries a plausibility note when it is remarkable."""

from __future__ import annotations

import json

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from soc_jax.cli import main
from soc_jax.models import clm5
from soc_jax.models.common import FLAG_NAMES, INPUT, NONFINITE, PRIOR, SINGULAR
from soc_jax.proda.totals import (
    covers_globe,
    failure_reasons,
    masked_quantiles,
    plausibility_note,
    total_pg,
    zonal_totals,
)

# -- plausibility notes (hand-chosen totals, Pg C) -----------------------------------------------


@pytest.mark.parametrize(
    ("band", "total"),
    [("top_100cm", 1450.0), ("top_100cm", 1260.0), ("top_30cm", 700.0), ("total", 3000.0)],
)
def test_no_note_for_a_total_inside_the_published_range(band, total):
    assert plausibility_note(band, total) == ""


def test_an_impossible_total_is_called_implausible_and_its_value_is_kept():
    note = plausibility_note("top_100cm", 124944.9)
    assert note.startswith("implausible:")
    assert "80.7 x the high end" in note  # 124944.9 / 1548 = 80.71
    assert "1,260-1,548 Pg C" in note and "Batjes" in note
    assert "implausible" in plausibility_note("total", 124944.9)
    assert "implausible" in plausibility_note("top_100cm", 500.0)  # < 1260 / 2


def test_a_total_just_outside_the_range_gets_a_mild_note():
    note = plausibility_note("top_200cm", 3000.0)  # 2,376-2,456 Pg C
    assert note and not note.startswith("implausible")
    assert "1.22 x the high end" in note  # 3000 / 2456


def test_on_a_synthetic_world_the_truth_is_the_reference():
    assert plausibility_note("top_100cm", 1100.0, truth=1000.0) == ""  # within 20 %
    note = plausibility_note("top_100cm", 1600.0, truth=1000.0)  # in the published range
    assert "1.6 x this synthetic world's truth 1,000.0 Pg C" in note
    assert plausibility_note("top_100cm", 2500.0, truth=1000.0).startswith("implausible")


def test_covers_globe_by_land_area():
    assert covers_globe([1.2e14])  # about Earth's ice-free land area, m2
    assert not covers_globe([1.0e13])  # a region the size of Europe


# -- failure reasons and NaN-aware sums -----------------------------------------------------------


def test_failure_reasons_decode_the_flags_with_counts():
    reasons = failure_reasons(np.array([[0, SINGULAR, SINGULAR | NONFINITE], [PRIOR, 0, INPUT]]))
    assert reasons == {
        FLAG_NAMES[SINGULAR]: 2,
        FLAG_NAMES[PRIOR]: 1,
        FLAG_NAMES[INPUT]: 1,
        FLAG_NAMES[NONFINITE]: 1,
    }
    assert next(iter(reasons)) == FLAG_NAMES[SINGULAR]  # most frequent first
    assert failure_reasons(np.zeros(3, int)) == {}


def test_failed_cells_are_nan_and_left_out_of_sums():
    stock = np.array([[1000.0, np.nan, 3000.0], [2000.0, np.nan, np.nan]])  # (member, cell)
    ok = np.isfinite(stock)
    area = np.array([1e12, 2e12, 3e12])
    med = masked_quantiles(stock, ok, 0.5)
    np.testing.assert_array_equal(np.isnan(med), [False, True, False])
    assert med[0] == 1500.0 and med[2] == 3000.0
    assert total_pg(stock, ok, area).tolist() == [(1000.0 * 1e12 + 3000.0 * 3e12) / 1e15, 2.0]
    lats, tot = zonal_totals(stock[1], ok[1], area, np.array([0.0, 10.0, 10.0]))
    assert lats.tolist() == [0.0, 10.0] and tot[0] == 2.0 and np.isnan(tot[1])


def test_maps_draw_failed_cells_grey_with_a_legend_entry():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from soc_jax.proda.maps import _show

    ds = xr.Dataset(coords={"lat": [-10.0, 10.0], "lon": [0.0, 20.0, 40.0]})
    arr = np.array([[1.0, -9999.0, 2.0], [-9999.0, 3.0, 4.0]])
    failed = np.array([[False, True, False], [False, False, False]])  # [1, 0]: ocean
    fig, ax = plt.subplots()
    _show(ax, ds, arr, "t", "kgC m-2", failed=failed)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model failed (1 cells)"]
    plt.close(fig)


# -- the command -----------------------------------------------------------------------------------


def _network(path, grid, bias: float, kinds=("seed", "bootstrap")):
    """An untrained network whose outputs are ``bias`` everywhere (weights scaled to 0)."""
    from soc_jax.data import covariate_bounds
    from soc_jax.proda.steps import network_header
    from soc_jax.proda.train import TrainConfig, new_ensemble, save_checkpoint

    cfg = TrainConfig(hidden=(4,))
    m = len(kinds)
    ens = new_ensemble(60, 21, np.zeros((m, 4), np.int32), np.zeros((m, 2), np.int32), cfg)
    st = ens.state
    last = st.best_model.layers[-1]
    st = eqx.tree_at(
        lambda s: (s.best_model.layers[-1].weight, s.best_model.layers[-1].bias, s.best_val),
        st,
        (0.0 * last.weight, jnp.full_like(last.bias, bias), jnp.zeros_like(st.best_val)),
    )
    st = eqx.tree_at(lambda s: s.best_epoch, st, jnp.zeros_like(st.best_epoch))
    lo, hi = covariate_bounds(grid)
    none = np.array([], str)
    extra = network_header(
        "clm5", "proda", list(kinds), list(clm5.PARAMETERS.names), lo, hi, none, none
    )
    extra["homogeneous"] = [0.5] * 21
    path.mkdir()
    save_checkpoint(path / "network.eqx", eqx.tree_at(lambda e: e.state, ens, st), cfg, extra)
    return path


def _predict(capsys, net, data, out, *more):
    argv = ["predict", "--network", str(net), "--data", str(data), "--out", str(out)]
    try:
        rc = main([*argv, "--block", "16", *more])
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr()


def _write_world(world, path, broken_cells=()):
    """``path/grid.nc`` of ``world`` (all ``--data`` that ``predict`` needs without held-out
    profiles); soil temperature NaN in ``broken_cells`` (the INPUT flag for every member)."""
    from soc_jax.data.netcdf import write_netcdf

    grid = world.grid.copy()
    grid.attrs.update(title="synthetic world: grid", source="soc_jax synthetic world")
    if broken_cells:
        tsoi = grid["tsoi"].values.copy()
        tsoi[list(broken_cells)] = np.nan
        grid["tsoi"] = (grid["tsoi"].dims, tsoi, grid["tsoi"].attrs)
    path.mkdir()
    write_netcdf(grid, path / "grid.nc")
    return path


def test_a_diverged_network_is_refused_before_any_steady_state(small_world, tmp_path, capsys):
    data = _write_world(small_world, tmp_path / "w")
    net = _network(tmp_path / "net", small_world.grid, np.nan)
    out = tmp_path / "maps"
    rc, cap = _predict(capsys, net, data, out)
    assert rc == 2
    err = cap.err.strip()
    assert "\n" not in err and "--network" in err
    n = small_world.grid.sizes["cell"]
    assert f"failed on all {n} grid cells" in err
    assert f"{FLAG_NAMES[PRIOR]} {n}" in err and "try: " in err
    assert not (out / "maps.nc").exists() and not (out / "totals.json").exists()


def test_some_cells_failed_are_counted_nan_and_left_out_of_the_totals(
    small_world, tmp_path, capsys
):
    from soc_jax.proda.totals import cell_area

    broken = (0, 5)
    data = _write_world(small_world, tmp_path / "w", broken)
    net = _network(tmp_path / "net", small_world.grid, 0.5)
    out = tmp_path / "maps"
    rc, cap = _predict(capsys, net, data, out, "--no-default")
    assert rc == 0, cap.err
    grid = small_world.grid
    n = grid.sizes["cell"]
    assert f"seed members: 2 of {n} member-cells" in cap.out
    assert f"bootstrap members: 2 of {n} member-cells" in cap.out
    assert FLAG_NAMES[INPUT] in cap.out
    area = cell_area(grid["lat"].values, float(grid.attrs["resolution_deg"]))
    share = 1 - area[list(broken)].sum() / area.sum()
    assert f"[over the {n - 2} of {n} cells that succeeded, {share:.1%} of the land area]" in (
        cap.out
    )
    totals = json.loads((out / "totals.json").read_text())
    assert totals["coverage"]["proda_best_guess"]["area_fraction"] == pytest.approx(share)
    with xr.open_dataset(out / "maps.nc") as ds:
        st = ds["soc_stock"].sel(depth_band="top_100cm").values  # kgC m-2
        cell = ds["cell_area"].values  # m2
    il, jl = grid["i_lat"].values, grid["i_lon"].values
    assert np.isnan(st[il[list(broken)], jl[list(broken)]]).all()  # failed: missing, not 0
    assert np.isfinite(st).sum() == n - 2
    ours = np.nansum(st * cell) / 1e12  # kgC -> Pg C over the cells that succeeded
    assert totals["proda_best_guess"]["top_100cm"] == pytest.approx(ours, rel=1e-9)
    assert (out / "stock_maps.png").exists()


@pytest.mark.slow
def test_an_unsolvable_network_fails_every_cell_and_is_refused(small_world, tmp_path, capsys):
    data = _write_world(small_world, tmp_path / "w")
    net = _network(tmp_path / "net", small_world.grid, -1e3)  # every parameter clipped to 1e-4
    out = tmp_path / "maps"
    rc, cap = _predict(capsys, net, data, out, "--no-figures")
    assert rc == 2
    (err,) = [line for line in cap.err.splitlines() if "error:" in line]  # after the bar
    assert "--network" in err and FLAG_NAMES[SINGULAR] in err
    assert "under-trained" in err
    assert not (out / "maps.nc").exists()


# -- global_prediction with a stand-in model (no compilation) ------------------------------------


def _fake_prediction(monkeypatch, fail: dict, kinds, homogeneous=None, runs=None):
    """`global_prediction` on 4 cells where run ``i`` (members in the order run, then the
    references) fails on the cells ``fail[i]`` (SINGULAR); returns (prediction, runs done)."""
    from soc_jax.proda import predict as pr

    n, runs = 4, [] if runs is None else runs

    def fake(model, x, forcing, *, mode, block, progress):
        i = len(runs)
        runs.append(i)
        flags = np.zeros(n, np.int32)
        flags[fail.get(i, [])] = SINGULAR
        return np.where(flags[:, None] == 0, 1000.0 * (i + 1), np.nan) * np.ones((n, 20)), flags

    monkeypatch.setattr(pr, "simulate_cells_flags", fake)
    monkeypatch.setattr(pr, "predict_parameters", lambda m, X: np.full((len(kinds), n, 21), 0.5))
    lat = np.array([0.0, 10.0, 20.0, 30.0])
    pred = pr.global_prediction(
        "clm5", None, kinds, np.zeros((n, 60)), None, lat, 10.0, mode="proda",
        homogeneous=homogeneous, default=False,
    )  # fmt: skip
    return pred, runs


def test_every_seed_member_failing_everywhere_stops_before_the_bootstraps(monkeypatch):
    from soc_jax.proda.predict import AllCellsFailed

    kinds = ["bootstrap", "seed", "seed"]  # the seeds run first
    runs = []
    with pytest.raises(AllCellsFailed, match="failed on all 4 grid cells for every one of the 2"):
        _fake_prediction(monkeypatch, {0: [0, 1, 2, 3], 1: [0, 1, 2, 3]}, kinds, runs=runs)
    assert runs == [0, 1]  # the bootstrap member never ran


def test_a_band_or_reference_without_any_cell_is_missing_never_zero(monkeypatch):
    everywhere = [0, 1, 2, 3]
    # run 0: the seed (cell 3 failed); 1, 2: bootstraps failing on disjoint halves; 3: homogeneous
    fail = {0: [3], 1: [0, 1], 2: [2, 3], 3: everywhere}
    pred, runs = _fake_prediction(
        monkeypatch, fail, ["seed", "bootstrap", "bootstrap"], homogeneous=np.full(21, 0.5)
    )
    assert runs == [0, 1, 2, 3]
    t = pred.totals
    assert "proda_bootstrap" not in t and t["proda_bootstrap_cells"]["n_cells_summed"] == 0
    assert t["homogeneous"] == dict.fromkeys(("top_30cm", "top_100cm", "top_200cm", "total"))
    assert t["coverage"]["proda_best_guess"]["cells"] == 3
    assert t["failure_reasons"]["homogeneous"] == {FLAG_NAMES[SINGULAR]: 4}
    assert np.isnan(pred.best_stocks[3]).all() and np.isfinite(pred.best_stocks[:3]).all()
    assert np.isfinite(pred.boot_q).all()  # every cell has at least one bootstrap member
