"""Global prediction: PRODA clipping, cell areas, steady states per cell, totals, CF maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from soc_jax.proda.predict import (
    EARTH_RADIUS,
    cell_area,
    clip_parameters,
    global_prediction,
    write_maps,
)


def test_clip_parameters_as_proda():
    p = jnp.array([1.5, 1.0, 0.3, 0.0, -0.2, 1e-5])
    np.testing.assert_array_equal(clip_parameters(p), [1.0, 1.0, 0.3, 1e-4, 1e-4, 1e-5])


@pytest.mark.parametrize("res", [0.5, 2.0, 4.0])
def test_cell_areas_sum_to_sphere(res):
    lat = np.arange(-90 + res / 2, 90, res)
    n_lon = round(360 / res)
    sphere = 4 * np.pi * EARTH_RADIUS**2
    exact = cell_area(lat, res, "exact").sum() * n_lon
    assert exact == pytest.approx(sphere, rel=1e-9)
    # SPEC 8's trapezoid: the trapezoid rule of the integral of cos lat, h (h/2) cot(h/2)
    h = np.deg2rad(res)
    proda = cell_area(lat, res, "proda").sum() * n_lon
    assert proda == pytest.approx(sphere * (h / 2) / np.tan(h / 2), rel=1e-12)
    assert abs(proda / sphere - 1) < h**2 / 12 * 1.01


def test_cell_area_spec_formula_one_cell():
    R = 6371008.8
    lat = 45.25  # 0.5 degree cell
    l_top = 2 * np.pi * R * np.cos(np.deg2rad(45.5)) / 360 * 0.5
    l_down = 2 * np.pi * R * np.cos(np.deg2rad(45.0)) / 360 * 0.5
    H = np.pi * R / 180 * 0.5
    assert cell_area(lat) == pytest.approx((l_top + l_down) * H / 2, rel=1e-14)


def test_prediction_stocks_totals_and_failures(small_world, tmp_path):
    from soc_jax.data import covariate_bounds, minmax_scale
    from soc_jax.data.covariates import covariate_matrix
    from soc_jax.forcing import Forcing
    from soc_jax.grid import stocks
    from soc_jax.models import clm5
    from soc_jax.proda.network import make_ensemble

    grid = small_world.grid
    n = grid.sizes["cell"]
    lo, hi = covariate_bounds(grid)
    X = minmax_scale(covariate_matrix(grid), lo, hi)
    import equinox as eqx

    models = make_ensemble(jax.random.split(jax.random.key(0), 3), 60, 21, hidden=(8,))
    # outputs near the prior midpoint (an untrained net would often clip to 1 or 1e-4)
    last = models.layers[-1]
    models = eqx.tree_at(
        lambda m: (m.layers[-1].weight, m.layers[-1].bias),
        models,
        (0.05 * last.weight, jnp.full(last.bias.shape, 0.5, last.bias.dtype)),
    )
    kinds = ["seed", "bootstrap", "bootstrap"]
    # break one cell's forcing so that its steady state fails for every member
    arrays = small_world.grid_forcing_batch().as_numpy()
    arrays["tsoi"] = arrays["tsoi"].copy()
    arrays["tsoi"][0] = np.nan
    forcing = Forcing(**arrays)
    res = float(grid.attrs["resolution_deg"])
    pred = global_prediction(
        "clm5",
        models,
        kinds,
        X,
        forcing,
        grid["lat"].values,
        res,
        mode="proda",
        homogeneous=np.full(21, 0.5),
        block=16,
    )
    assert not pred.ok[:, 0].any() and pred.ok[:, 1:].all()
    assert pred.failed["cells_without_any_seed"] == 1
    assert pred.failed["homogeneous_cells"] == 1
    # a failed cell has no value (NaN, never 0); every other cell is finite
    for arr in (pred.stocks, pred.best_stocks[None], pred.boot_q, pred.soc[None]):
        assert np.all(np.isnan(arr[:, 0])) and np.all(np.isfinite(arr[:, 1:]))
    assert pred.flags[:, 0].tolist() == [1, 1, 1]  # INPUT: the broken forcing
    assert pred.totals["coverage"]["proda_best_guess"]["cells"] == n - 1
    # per-cell stocks equal a direct steady state with the clipped member parameters
    for c in (1, n // 2, n - 1):
        x = clm5.PARAMETERS.to_physical(jnp.asarray(pred.params[0, c], jnp.float64))
        f = jax.tree.map(lambda a: jnp.asarray(a[c]), forcing)
        direct = np.asarray(stocks(clm5.steady_state(x, f, mode="proda").soc).top_100cm)
        np.testing.assert_allclose(pred.stocks[0, c, 1], direct, rtol=1e-10)
    # global total = sum of stock x area over the cells that succeeded, in Pg C (1e15 g)
    area = cell_area(grid["lat"].values, res)
    expected = sum(pred.stocks[0, c, 1] * area[c] for c in range(1, n)) / 1e15
    assert pred.totals["proda_best_guess"]["top_100cm"] == pytest.approx(expected, rel=1e-12)
    boot = [sum(pred.stocks[m, c, 1] * area[c] for c in range(1, n)) / 1e15 for m in (1, 2)]
    assert pred.totals["proda_bootstrap"]["top_100cm"]["median"] == pytest.approx(np.mean(boot))
    assert pred.totals["default"]["top_100cm"] > 0

    # CF NetCDF: units and long names, fill values (no NaN stored), ocean and failed cells masked
    path = tmp_path / "maps.nc"
    write_maps(pred, grid, list(clm5.PARAMETERS.names), path)
    with xr.open_dataset(path, mask_and_scale=False) as raw:
        for name, var in raw.data_vars.items():
            assert "units" in var.attrs and "long_name" in var.attrs, name
            assert not np.isnan(var.values).any(), name
        assert raw["lat"].attrs["units"] == "degrees_north"
    with xr.open_dataset(path) as ds:
        st = ds["soc_stock"].sel(depth_band="top_100cm").values
        i0, j0 = int(grid["i_lat"][0]), int(grid["i_lon"][0])
        assert np.isnan(st[i0, j0])  # the failed cell is missing, not 0
        assert np.isfinite(st).sum() == n - 1  # land cells that succeeded; ocean missing
        area_map = ds["cell_area"].values
        assert np.nansum(area_map * np.nan_to_num(st)) / 1e12 == pytest.approx(expected)
