"""Maximum-likelihood GEV fit of posterior marginals (PRODA's ``para_es``, MATLAB ``gevfit``).

Oracle: ``scipy.stats.genextreme.fit`` (shape ``c = -k``), refined with a tight Nelder-Mead
from several starts and checked to be converged (a restart from its optimum does not lower
the likelihood). Tolerance for the modes: 1e-4 of the sample range. Both fits converge to
~1e-7 of the range (the objective is smooth in the interior); 1e-4 leaves room for platform
rounding and is 1000x smaller than the L-moment-vs-ML gap the fit exists to close (0.1 on
uniform draws).
"""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
from scipy.stats import genextreme

from soc_jax.calibration import gev, postprocess


def _nll(p, x):
    return genextreme.nnlf((p[0], p[1], np.exp(p[2])), x)


def scipy_ml(x):
    """Converged SciPy ML fit (c, loc, scale) and its mean negative log-likelihood.

    SciPy's default fit (Nelder-Mead from its own start), refined by a tight Nelder-Mead in
    (c, loc, log scale), then restarted from the optimum with a fresh simplex: the restart must
    not lower the objective (the oracle is converged).
    """
    c, loc, scale = genextreme.fit(x)
    opts = {"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 40000}
    best = so.minimize(_nll, [c, loc, np.log(scale)], args=(x,), method="Nelder-Mead", options=opts)
    again = so.minimize(_nll, best.x, args=(x,), method="Nelder-Mead", options=opts)
    assert again.fun >= best.fun - 1e-9 * len(x)
    p = again.x if again.fun < best.fun else best.x
    return (p[0], p[1], np.exp(p[2])), min(again.fun, best.fun) / len(x)


def mode_of(c, loc, scale):
    k = -c
    return loc + scale * ((1 + k) ** (-k) - 1) / k


def marginals():
    rng = np.random.default_rng(23)
    bimodal = np.concatenate([rng.normal(0.3, 0.05, 300), rng.normal(0.7, 0.05, 300)])
    return {
        "uniform": rng.uniform(size=500),
        "beta(2,8)": rng.beta(2, 8, size=800),
        "bimodal": np.clip(bimodal, 1e-3, 1 - 1e-3),
        "gev": genextreme.rvs(-0.2, loc=0.3, scale=0.05, size=250, random_state=1),
        "beta(8,2) 1000": rng.beta(8, 2, size=1000),
    }


@pytest.mark.parametrize("name", list(marginals()))
def test_ml_fit_matches_scipy(name):
    x = marginals()[name]
    (c, loc, scale), nll = scipy_ml(x)
    mu, sigma, k, converged = gev.gev_params(x[:, None], axis=0)
    assert converged[0]
    ours = genextreme.nnlf((-k[0], mu[0], sigma[0]), x) / len(x)
    assert ours <= nll + 1e-10  # at least as likely as SciPy's optimum
    span = np.ptp(x)
    assert abs(gev.gev_mode(x[:, None], axis=0)[0] - mode_of(c, loc, scale)) < 1e-4 * span
    np.testing.assert_allclose([mu[0], sigma[0]], [loc, scale], atol=1e-4 * span)
    assert abs(k[0] + c) < 1e-3


def test_uniform_mode_is_the_ml_mode_not_the_l_moment_mode():
    # the defect: the L-moment mode of uniform draws is far from gevfit's (ML) mode
    x = np.random.default_rng(0).uniform(size=500)
    (c, loc, scale), _ = scipy_ml(x)
    ml = mode_of(c, loc, scale)
    assert 0.6 < ml < 0.75
    mu, sigma, k = gev.gev_fit_lmoments(jnp.asarray(x), jnp.ones(500, bool))
    assert abs(float(gev.gev_mode_of(mu, sigma, k)) - ml) > 0.05
    assert abs(gev.gev_mode(x[:, None], axis=0)[0] - ml) < 1e-4


def test_postprocess_para_es_uses_the_ml_fit():
    x = np.random.default_rng(0).uniform(size=500)
    (c, loc, scale), _ = scipy_ml(x)
    assert abs(postprocess.gev_mode(x[:, None], axis=0)[0] - mode_of(c, loc, scale)) < 1e-4


def test_l_moment_fit_recovers_a_large_gev_sample():
    # Hosking's estimator is consistent: n = 20000, MATLAB k = 0.2 (SciPy c = -0.2)
    x = genextreme.rvs(-0.2, loc=0.4, scale=0.05, size=20000, random_state=5)
    mu, sigma, k = gev.gev_fit_lmoments(jnp.asarray(x), jnp.ones(x.shape, bool))
    assert abs(float(mu) - 0.4) < 0.002 and abs(float(sigma) - 0.05) < 0.002
    assert abs(float(k) - 0.2) < 0.03


def test_mode_formula_by_hand():
    # k = 0.5: (1.5^-0.5 - 1)/0.5 = -0.367007; Gumbel (k = 0): mu; k = -1: upper end mu + sigma
    got = gev.gev_mode_of(jnp.array([1.0, 1.0, 1.0]), jnp.array([2.0] * 3), jnp.array([0.5, 0, -1]))
    np.testing.assert_allclose(np.asarray(got), [1 - 2 * 0.3670068381445481, 1.0, 3.0], rtol=1e-12)


def test_masked_equals_unmasked():
    rng = np.random.default_rng(4)
    x = rng.beta(2, 5, size=(500, 3))
    full = gev.gev_mode(x[:300], axis=0)
    padded = x.copy()
    padded[300:] = np.nan  # garbage in masked slots
    padded[400:, 1] = 1e6
    valid = np.zeros(x.shape, bool)
    valid[:300] = True
    got = gev.gev_mode(padded, valid, axis=0)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, full, atol=1e-9)


def test_vmap_over_parameters_and_profiles():
    rng = np.random.default_rng(5)
    x = rng.beta(3, 4, size=(2, 300, 4))  # (profile, sample, parameter), axis -2 by default
    got = gev.gev_mode(x)
    assert got.shape == (2, 4)
    one = [[gev.gev_mode(x[p, :, j][:, None], axis=0)[0] for j in range(4)] for p in range(2)]
    np.testing.assert_allclose(got, one, atol=1e-9)
    fits = gev.gev_params(x[0], axis=0)  # the (mu, sigma, k) behind the modes
    np.testing.assert_allclose(np.asarray(gev.gev_mode_of(*fits[:3])), got[0], atol=1e-12)


def test_degenerate_inputs_are_finite():
    assert gev.gev_mode(np.full((10, 1), 0.3), axis=0)[0] == pytest.approx(0.3, abs=1e-15)
    assert gev.gev_mode(np.array([[0.2], [0.4]]), axis=0)[0] == pytest.approx(0.3)
    assert gev.gev_mode(np.zeros((5, 1)), np.zeros((5, 1), bool), axis=0)[0] == 0.0
    x = np.array([[0.1], [0.5], [0.9], [0.7]])
    v = np.array([[True], [True], [False], [False]])
    assert gev.gev_mode(x, v, axis=0)[0] == pytest.approx(0.3)


def test_pile_on_the_upper_bound_gives_the_end_point():
    # 40 % of the draws on the bound 1: the likelihood's supremum is on k -> -1 (beyond it the
    # ML does not exist; SciPy wanders to k < -1 where the mode is undefined); mode = end point
    rng = np.random.default_rng(3)
    x = np.concatenate([np.ones(200), rng.uniform(0.5, 1.0, 300)])
    mu, sigma, k, _ = gev.gev_params(x[:, None], axis=0)
    assert -1.0 < k[0] < -0.999
    mode = gev.gev_mode(x[:, None], axis=0)[0]
    assert 1.0 <= mode < 1.01
