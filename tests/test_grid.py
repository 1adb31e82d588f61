"""The vertical grid, depth integration and PCHIP interpolation."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from soc_jax import grid

REFERENCE = json.loads(
    (Path(__file__).parent / "reference/proda_constants_and_priors.json").read_text()
)


def test_grid_matches_transcribed_tables():
    g = REFERENCE["grid"]
    np.testing.assert_array_equal(grid.DZ, g["dz_m"])
    np.testing.assert_array_equal(grid.ZISOI, g["zisoi_m_bottom_interfaces"])
    np.testing.assert_array_equal(grid.ZSOI, g["zsoi_m_nodes"])
    np.testing.assert_allclose(grid.DZ_NODE, g["dz_node_m"], rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.cumsum(grid.DZ), grid.ZISOI, rtol=1e-13)
    # nodes are the layer mid-points in the 20 model layers
    top = np.concatenate([[0.0], grid.ZISOI[:19]])
    np.testing.assert_allclose(grid.ZSOI[:20], 0.5 * (top + grid.ZISOI[:20]), atol=1e-12)


def test_depth_integration_follows_the_post_da_scripts():
    soc = np.random.default_rng(0).uniform(1e2, 1e5, 20)
    dz, zi = grid.DZ, grid.ZISOI
    # SPEC 1.10, written out term by term
    s30 = np.sum(soc[:4] * dz[:4]) + soc[4] * dz[4] * (0.3 - zi[3]) / (zi[4] - zi[3])
    s100 = np.sum(soc[:8] * dz[:8]) + soc[8] * dz[8] * (1.0 - zi[7]) / (zi[8] - zi[7])
    s200 = np.sum(soc[:11] * dz[:11]) + soc[11] * dz[11] * (2.0 - zi[10]) / (zi[11] - zi[10])
    total = np.sum(soc * dz[:20])
    st = grid.stocks(soc)
    np.testing.assert_allclose([st.top_30cm, st.top_100cm, st.top_200cm, st.total],
                               [s30, s100, s200, total], rtol=1e-13)  # fmt: skip
    assert soc[4] * 0.10 == pytest.approx(s30 - np.sum(soc[:4] * dz[:4]), rel=1e-12)
    # uniform density: stock = density * depth
    assert float(grid.integrate_to_depth(np.full(20, 7.0), 0.55)) == pytest.approx(7.0 * 0.55)
    with pytest.raises(ValueError, match="depth must be in"):
        grid.depth_weights(9.0)


@pytest.mark.parametrize("seed", range(6))
def test_pchip_equals_scipy_with_extrapolation(seed):
    rng = np.random.default_rng(seed)
    x = grid.ZSOI[:20]
    kind = seed % 3
    if kind == 0:  # monotone decreasing profile (typical SOC)
        y = 3e4 * np.exp(-x / rng.uniform(0.2, 2.0)) + rng.uniform(0, 100)
    elif kind == 1:  # non-monotone with flat parts and sign changes
        y = rng.uniform(0, 1e4, 20)
        y[5:8] = y[5]
    else:  # bulge
        y = 1e4 * np.exp(-((x - 1.0) ** 2)) + rng.normal(0, 10, 20)
    xq = np.concatenate([rng.uniform(0.0, 9.5, 40), [0.0, 0.005, 0.01, 8.03, 8.5, x[7]]])
    expected = PchipInterpolator(x, y, extrapolate=True)(xq)
    got = jax.jit(grid.pchip_interpolate)(x, y, xq)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9 * np.abs(y).max())


def test_pchip_gradient_matches_finite_differences():
    x = grid.ZSOI[:20]
    y = 2e4 * np.exp(-x / 0.8) + 50.0
    xq = jnp.array([0.05, 0.25, 0.7, 1.4, 9.0])
    w = jnp.arange(1.0, 6.0)
    f = lambda yy: jnp.sum(w * grid.pchip_interpolate(x, yy, xq))
    g = jax.grad(f)(jnp.asarray(y))
    rng = np.random.default_rng(1)
    for _ in range(3):
        v = rng.normal(size=20)
        h = 1e-3
        fd = (f(y + h * v) - f(y - h * v)) / (2 * h)
        assert float(g @ v) == pytest.approx(float(fd), rel=1e-7)
