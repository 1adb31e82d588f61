"""The synthetic world: realistic covariates, forcing derived from them, truth, observations equal
to PCHIP of the model times the noise, determinism of files."""

import filecmp
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from soc_jax.data import (
    COVARIATE_NAMES,
    make_world,
    read_profiles,
    true_parameters,
    truth_table,
    validate_profiles,
)
from soc_jax.grid import ZSOI, pchip_interpolate
from soc_jax.models import clm5

N = 40


@pytest.fixture(scope="module")
def world():
    return make_world(N, seed=3, noise=0.0)


@pytest.fixture(scope="module")
def noisy():
    return make_world(N, seed=3, noise=0.3)


def cov(world, name):
    return world.covariates["covariates"].sel(covariate=name).values


def test_shapes_schema_and_api(world):
    validate_profiles(world.profiles)
    assert world.n_sites == N and not world.failed
    assert world.covariates["covariates"].shape == (N, 60)
    assert [str(c) for c in world.covariates["covariate"].values] == list(COVARIATE_NAMES)
    f = world.forcing_batch()
    assert f.batch_shape == (N,)
    f.validate()
    assert world.truth["p"].shape == (N, len(clm5.PARAMETERS))
    assert [str(p) for p in world.truth["parameter"].values] == list(clm5.PARAMETERS.names)
    assert world.lat.shape == world.lon.shape == (N,)
    counts = world.profiles["n_layers"].values
    assert counts.min() >= 3 and counts.max() <= 10
    deepest = np.nanmax(world.profiles["depth_node"].values, axis=1)
    assert np.all(deepest > 0.5)  # PRODA's screening keeps every profile
    assert world.observations(width=12).mask.shape == (N, 12)
    assert world.grid.sizes["cell"] > 100
    world.grid_forcing_batch().validate()


def test_covariates_realistic_and_consistent(world):
    for d in ("0cm", "30cm", "100cm"):
        total = (
            cov(world, f"Sand_Content_{d}")
            + cov(world, f"Silt_Content_{d}")
            + cov(world, f"Clay_Content_{d}")
        )
        np.testing.assert_allclose(total, 100.0, atol=1e-9)
        assert cov(world, f"Bulk_Density_{d}").min() >= 0.7
        assert cov(world, f"Bulk_Density_{d}").max() <= 1.8
        ph = cov(world, f"pH_Water_{d}")
        assert ph.min() >= 3.5 and ph.max() <= 9.5
    lat = cov(world, "Lat")
    assert np.all((lat >= -56) & (lat <= 78))
    t = cov(world, "BIO1")
    assert t.min() > -30 and t.max() < 35
    assert np.all(cov(world, "BIO5") > cov(world, "BIO6"))
    np.testing.assert_allclose(cov(world, "BIO7"), cov(world, "BIO5") - cov(world, "BIO6"))
    assert np.all(cov(world, "BIO13") >= cov(world, "BIO14"))
    p = cov(world, "BIO12")
    assert p.min() > 20 and p.max() < 8000
    npp = cov(world, "cesm2_npp") * 365 * 86400
    assert npp.min() >= 0 and npp.max() < 2000
    assert set(np.unique(cov(world, "Texture_USDA_0cm"))) <= set(range(1, 13))
    nb = cov(world, "nbedrock")
    np.testing.assert_array_equal(nb, world.forcing["nbedrock"].values[:, 0])


def test_world_covers_all_climates():
    w = make_world(400, seed=0, noise=0.0)
    t = w.covariates["covariates"].sel(covariate="BIO1").values
    k = w.covariates["covariates"].sel(covariate="Koppen_Climate_2018").values
    alt = w.forcing["altmax"].values[:, 0]
    assert np.any(alt < 3.0)  # permafrost: shallow active layer
    assert np.any(np.isin(k, (26, 27)))  # boreal
    assert np.any(np.isin(k, (14, 15)))  # temperate
    assert np.any(np.isin(k, (4, 5, 6, 7)))  # dry
    assert np.any(np.isin(k, (1, 2, 3))) and t.max() > 24  # tropical
    soc = w.profiles["soc"].values[w.profiles["mask"].values]
    med = np.median(soc)
    assert 3e3 < med < 1.5e4  # realistic: median about 7e3 gC m-3
    assert np.quantile(soc, 0.01) > 50 and np.quantile(soc, 0.99) < 2e5


def test_truth_is_documented_function_of_covariates(world):
    covd = {n: cov(world, n) for n in COVARIATE_NAMES}
    p = true_parameters(covd)
    redrawn = world.truth["redraws"].values > 0
    np.testing.assert_allclose(world.truth["p"].values[~redrawn], p[~redrawn])
    table = truth_table()
    assert list(table) == list(clm5.PARAMETERS.names)
    np.testing.assert_allclose(world.truth["centre"].values, [v[0] for v in table.values()])
    assert np.all((p > 0) & (p < 1))
    varying = [n for n, (c, a, w) in table.items() if a > 0]
    assert {"q10", "efolding", "tau4s3", "beta"} <= set(varying)
    np.testing.assert_allclose(
        world.truth["physical"].values,
        np.asarray(clm5.PARAMETERS.to_physical(world.truth["p"].values)),
    )


def test_observations_equal_pchip_of_model(world, noisy):
    # noise = 0: exactly the model's steady state, interpolated to the node depths
    f = world.forcing_batch()
    x = clm5.PARAMETERS.to_physical(jnp.asarray(world.truth["p"].values))
    res = jax.jit(jax.vmap(clm5.steady_state))(x, f)
    np.testing.assert_allclose(world.profiles["soc_model"].values, np.asarray(res.soc), rtol=1e-10)
    m = world.profiles["mask"].values
    depth = world.profiles["depth_node"].values
    for i in (0, 7, N - 1):
        expected = pchip_interpolate(ZSOI[:20], np.asarray(res.soc[i]), depth[i, m[i]])
        np.testing.assert_allclose(world.profiles["soc"].values[i, m[i]], expected, rtol=1e-12)
    # noise = 0.3: same sites and depths, log-ratio ~ N(0, 0.3^2)
    np.testing.assert_array_equal(noisy.profiles["depth_node"].values, depth)
    ratio = np.log(noisy.profiles["soc"].values[m] / world.profiles["soc"].values[m])
    assert 0.22 < ratio.std() < 0.38 and abs(ratio.mean()) < 0.08
    np.testing.assert_allclose(
        noisy.profiles["soc_model_at_obs"].values[m], world.profiles["soc"].values[m], rtol=1e-12
    )
    # soc_content is the stock divided by BD x 1000 x (1 - CF/100)
    p = noisy.profiles
    back = p["soc_content"] * p["bulk_density"] * 1000 * (1 - p["coarse_fragments"] / 100)
    np.testing.assert_allclose(back.values[m], p["soc"].values[m], rtol=1e-12)


def test_determinism_same_seed_identical_files(tmp_path, world, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # the history attribute's time: fixed
    a = world.to_netcdf(tmp_path / "a")
    again = make_world(N, seed=3, noise=0.0)
    b = again.to_netcdf(tmp_path / "b")
    for key in a:
        xr.testing.assert_identical(xr.load_dataset(a[key]), xr.load_dataset(b[key]))
        assert filecmp.cmp(a[key], b[key], shallow=False), key
    back = read_profiles(a["profiles"])
    xr.testing.assert_identical(back, world.profiles)
    other = make_world(N, seed=4, noise=0.0)
    assert not np.array_equal(other.lat, world.lat)


def test_figure_and_summary(tmp_path, world):
    world.figure(tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 10_000
    text = world.summary()
    assert "40 sites" in text and "quantiles" in text


def test_bad_arguments():
    with pytest.raises(ValueError, match="model must be one of"):
        make_world(5, model="century")
    with pytest.raises(ValueError, match="n_sites"):
        make_world(0)
    with pytest.raises(ValueError, match="noise"):
        make_world(5, noise=-1)


def test_requires_float64():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(RuntimeError, match="float64"):
            make_world(5)
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("soc_jax.models.compas") is None, reason="COMPAS model not available"
)
def test_compas_world():
    from soc_jax.models import compas

    w = make_world(30, seed=1, model="compas", noise=0.0)
    validate_profiles(w.profiles)
    assert w.truth["p"].shape[1] == len(compas.PARAMETERS)
    soc = w.profiles["soc"].values[w.profiles["mask"].values]
    assert np.all(np.isfinite(soc)) and np.all(soc >= 0)
