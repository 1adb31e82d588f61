"""Covariate names, PRODA min-max scaling with clipping, nearest-cell lookup, forcing I/O."""

import numpy as np
import pytest
import xarray as xr

from soc_jax.data import (
    COVARIATE_NAMES,
    covariate_bounds,
    covariate_matrix,
    covariates_dataset,
    dataset_to_forcing,
    forcing_to_dataset,
    minmax_scale,
    nearest_cell,
    read_forcing,
    scale_covariates,
    write_forcing,
)
from soc_jax.examples import example_forcing


def test_sixty_names_in_spec_order():
    assert len(COVARIATE_NAMES) == 60 and len(set(COVARIATE_NAMES)) == 60
    assert COVARIATE_NAMES[:4] == ("Lon", "Lat", "ESA_Land_Cover", "BIO1")
    assert COVARIATE_NAMES[21] == "BIO19"
    assert COVARIATE_NAMES[22:24] == ("Abs_Depth_to_Bedrock", "Bulk_Density_0cm")
    assert COVARIATE_NAMES[-4:] == ("cesm2_npp", "cesm2_npp_std", "cesm2_vegc", "nbedrock")
    assert COVARIATE_NAMES.index("Garde_Acid") == 35


def test_minmax_scaling_and_clipping():
    x = np.array([[0.0, 5.0, 1.0], [10.0, -5.0, np.nan], [20.0, 15.0, 1.0]])
    out = minmax_scale(x, [0.0, 0.0, 1.0], [10.0, 10.0, 1.0])
    np.testing.assert_allclose(out[:, 0], [0.0, 1.0, 1.0])  # 20 clipped to 1
    np.testing.assert_allclose(out[:, 1], [0.5, 0.0, 1.0])  # -5 clipped to 0
    assert out[0, 2] == 0.0 and np.isnan(out[1, 2])  # constant column -> 0, NaN stays
    np.testing.assert_allclose(minmax_scale(x, [0, 0, 1], [10, 10, 1], clip=False)[2, 0], 2.0)


def test_scale_with_grid_bounds():
    rng = np.random.default_rng(0)
    grid = covariates_dataset(rng.normal(size=(50, 60)), dim="cell")
    prof = covariates_dataset(rng.normal(size=(5, 60)) * 3)
    lo, hi = covariate_bounds(grid)
    assert lo.shape == hi.shape == (60,)
    scaled = scale_covariates(prof, grid)
    assert scaled.shape == (5, 60) and scaled.min() >= 0 and scaled.max() <= 1
    np.testing.assert_allclose(scaled, np.clip((prof.covariates.values - lo) / (hi - lo), 0, 1))
    with pytest.raises(ValueError, match=r"covariates missing: \['Lon'\]"):
        scale_covariates(prof.isel(covariate=slice(1, None)), grid)


def test_covariate_matrix_orders_the_columns_as_covariate_names():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(4, 60))
    ds = covariates_dataset(values)
    shuffled = ds.isel(covariate=rng.permutation(60))
    np.testing.assert_array_equal(covariate_matrix(shuffled), values)
    np.testing.assert_array_equal(covariate_matrix(values.tolist()), values)
    with pytest.raises(ValueError, match=r"covariates missing: \['Lon'\]"):
        covariate_matrix(ds.isel(covariate=slice(1, None)))


def test_nearest_cell_separately_in_lat_and_lon_first_index_on_ties():
    glat = np.array([60.0, 50.0, 40.0])  # north -> south
    glon = np.array([0.0, 10.0, 20.0])
    i, j = nearest_cell([52.0, 45.0, 61.0], [14.0, 5.0, 16.0], glat, glon)
    assert i.tolist() == [1, 1, 0]  # 45 ties 50/40 -> first index (50)
    assert j.tolist() == [1, 0, 2]  # 5 ties 0/10 -> first index
    # 0..360 grids accept negative longitudes
    _, j = nearest_cell([0.0], [-10.0], glat, np.array([0.0, 180.0, 350.0]))
    assert j.tolist() == [2]


def test_forcing_dataset_round_trip_exact(tmp_path):
    forcing, lat = example_forcing(4, seed=3)
    ds = forcing_to_dataset(forcing, lat=lat)
    assert ds["tsoi"].dims == ("profile", "month", "layer")
    assert ds["litter_input"].dims == ("profile", "litter_pool", "month", "layer")
    assert ds["litter_input"].attrs["units"] == "gC m-3 month-1"
    write_forcing(ds, tmp_path / "f.nc")
    back = read_forcing(tmp_path / "f.nc")
    xr.testing.assert_identical(back, ds)
    f2 = dataset_to_forcing(back)
    for k, v in forcing.as_numpy().items():
        np.testing.assert_array_equal(getattr(f2, k), v)
    with pytest.raises(ValueError, match="lacks variable 'fpi'"):
        dataset_to_forcing(ds.drop_vars("fpi"))
