"""PRODA's costs and the observation operator against hand-computed values (SPEC 6, 1.11)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from soc_jax.calibration import likelihood as lk
from soc_jax.grid import ZSOI

# A three-layer profile. By hand: mean(o) = 566.67, |o - mean| = (433.3, 66.7, 366.7) ->
# descending ranks (1, 3, 2); mean(z) = 0.25, |z - mean| = (0.20, 0.05, 0.25) -> ranks (2, 3, 1);
# r = (1.5, 3, 1.5); w = (10 e^-0.5, 10 e^-2, 10 e^-0.5).
OBS = np.array([1000.0, 500.0, 200.0])
DEPTH = np.array([0.05, 0.20, 0.50])
PRED = np.array([900.0, 600.0, 200.0])
MASK = np.ones(3, bool)
W_HAND = np.array([10 * math.exp(-0.5), 10 * math.exp(-2.0), 10 * math.exp(-0.5)])
# J = w1 100^2 / (2 600^2) + w2 100^2 / (2 300^2) + 0
J_CLM5_HAND = W_HAND[0] * 1e4 / 7.2e5 + W_HAND[1] * 1e4 / 1.8e5
# SStot = 433.33^2 + 66.67^2 + 366.67^2 = 326666.67; SSres = 2e4
J_COMPAS_HAND = 5 * 2e4 / (980000.0 / 3.0)


def _pad(x, fill):
    return np.concatenate([x, [fill, fill]])


def test_clm5_weights_hand_computed():
    np.testing.assert_allclose(lk.clm5_weights(OBS, DEPTH, MASK), W_HAND, rtol=1e-14)


def test_clm5_weights_ties_are_stable():
    # |o - mean| = (66.7, 133.3, 66.7): ranks (2, 1, 3) (first tie first); depths 0.1, 0.2, 0.3:
    # |z - mean| = (0.1, 0, 0.1): ranks (1, 3, 2). r = (1.5, 2, 2.5); the floor 1 applies to none.
    w = lk.clm5_weights(np.array([100.0, 300.0, 100.0]), np.array([0.1, 0.2, 0.3]), MASK)
    np.testing.assert_allclose(w, 10 * np.exp(-np.array([0.5, 1.0, 1.5])), rtol=1e-14)
    # a six-layer profile reaches the floor w = 1 (r - 1 > ln 10)
    w6 = lk.clm5_weights(np.arange(1.0, 7.0) * 100, np.arange(1.0, 7.0) / 10, np.ones(6, bool))
    assert float(jnp.min(w6)) == 1.0


def test_cost_clm5_hand_computed_and_padding_ignored():
    j = lk.cost("clm5", PRED, OBS, DEPTH, MASK)
    np.testing.assert_allclose(j, J_CLM5_HAND, rtol=1e-13)
    jp = lk.cost("clm5", _pad(PRED, 7e5), _pad(OBS, 0.0), _pad(DEPTH, 0.1), _pad(MASK, False))
    np.testing.assert_allclose(jp, J_CLM5_HAND, rtol=1e-13)


def test_cost_compas_hand_computed_and_padding_ignored():
    np.testing.assert_allclose(lk.cost("compas", PRED, OBS, DEPTH, MASK), J_COMPAS_HAND, rtol=1e-13)
    jp = lk.cost("compas", _pad(PRED, -3.0), _pad(OBS, 0.0), _pad(DEPTH, 9.0), _pad(MASK, False))
    np.testing.assert_allclose(jp, J_COMPAS_HAND, rtol=1e-13)


def test_gaussian_and_lognormal_loglik_hand_computed():
    sd = 0.6 * OBS
    expect = np.sum(-0.5 * ((PRED - OBS) / sd) ** 2 - np.log(sd * math.sqrt(2 * math.pi)))
    np.testing.assert_allclose(lk.log_likelihood_gaussian(PRED, OBS, MASK), expect, rtol=1e-13)
    s = 0.3
    expect_ln = np.sum(
        -0.5 * ((np.log(OBS) - np.log(PRED)) / s) ** 2 - np.log(OBS * s * math.sqrt(2 * math.pi))
    )
    np.testing.assert_allclose(
        lk.log_likelihood_lognormal(PRED, OBS, MASK, s), expect_ln, rtol=1e-13
    )
    # a zero model layer is floored, finite
    assert np.isfinite(lk.log_likelihood_lognormal(np.zeros(3), OBS, MASK))


def test_log_prior_is_logistic_jacobian():
    z = np.array([-3.0, 0.0, 2.5])
    p = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(
        lk.log_prior_unconstrained(z), np.sum(np.log(p * (1 - p))), rtol=1e-13
    )


def test_observe_is_matlab_pchip_and_masked_layers_are_exactly_zero_with_zero_gradient():
    soc20 = 3e4 * np.exp(-ZSOI[:20] / 0.7) + 500.0
    depth = np.array([0.05, 0.3, 1.2, 9.0, 0.1])  # 9 m: extrapolation
    mask = np.array([True, True, True, True, False])
    m = lk.observe(soc20, depth, mask)
    ref = PchipInterpolator(ZSOI[:20], soc20, extrapolate=True)(depth[:4])
    np.testing.assert_allclose(m[:4], ref, rtol=1e-12)
    assert float(m[4]) == 0.0

    # gradient of a masked layer's output w.r.t. soc20 and its depth is exactly zero
    g = jax.jacrev(lambda y, d: lk.observe(y, d, mask), argnums=(0, 1))(
        jnp.asarray(soc20), jnp.asarray(depth)
    )
    assert np.all(np.asarray(g[0][4]) == 0.0) and np.all(np.asarray(g[1][:, 4]) == 0.0)
    # a NaN padded depth does not leak into values or gradients
    depth_nan = depth.copy()
    depth_nan[4] = np.nan
    f = lambda y: jnp.sum(lk.observe(y, depth_nan, mask))
    assert np.isfinite(f(soc20)) and np.all(np.isfinite(jax.grad(f)(jnp.asarray(soc20))))
    np.testing.assert_allclose(
        jax.grad(f)(jnp.asarray(soc20)),
        jax.grad(lambda y: jnp.sum(lk.observe(y, depth, mask)))(jnp.asarray(soc20)),
        rtol=0,
        atol=0,
    )


def test_cost_gradient_ignores_padding():
    pred = jnp.asarray(_pad(PRED, 123.0))
    g = jax.grad(lambda m: lk.cost("clm5", m, _pad(OBS, 0.0), _pad(DEPTH, 0.1), _pad(MASK, False)))(
        pred
    )
    assert np.all(np.asarray(g[3:]) == 0.0) and np.all(np.isfinite(g))
    # d/dm_1 of w1 (m1 - o1)^2 / (2 (0.6 o1)^2) = w1 (m1 - o1) / (0.6 o1)^2
    np.testing.assert_allclose(g[0], W_HAND[0] * (-100.0) / 360000.0, rtol=1e-13)


def test_unknown_model_and_likelihood_raise():
    with pytest.raises(ValueError, match="model"):
        lk.cost("foo", PRED, OBS, DEPTH, MASK)


def _profile_data(fail: bool = False):
    from soc_jax.examples import example_forcing

    forcing, _ = example_forcing(1, seed=2)
    f = forcing[0]
    if fail:  # a forcing outside its rules (tsoi 100 K): every evaluation is a failed simulation
        f = type(f)(**{**{k: getattr(f, k) for k in f.field_info()}, "tsoi": f.tsoi * 0 + 100.0})
    depth = np.array([0.05, 0.2, 0.5, 0.1])
    return {
        "forcing": jax.tree.map(jnp.asarray, f),
        "depth": jnp.asarray(depth),
        "obs": jnp.asarray([3000.0, 2000.0, 900.0, 0.0]),
        "mask": jnp.asarray([True, True, True, False]),
    }


def test_evaluator_and_log_density_on_the_real_model():
    from soc_jax.models import clm5

    data = _profile_data()
    ev = lk.make_evaluator("clm5", "proda")
    p = jnp.full(21, 0.5)
    e = jax.jit(ev)(p, data)
    assert not bool(e.failed)
    # the evaluator's cost equals the cost of the model's SOC put through SciPy's PCHIP
    soc = np.asarray(clm5.steady_state(clm5.PARAMETERS.to_physical(p), data["forcing"]).soc)
    m = PchipInterpolator(ZSOI[:20], soc)(np.asarray(data["depth"][:3]))
    np.testing.assert_allclose(e.pred[:3], m, rtol=1e-10)
    assert float(e.pred[3]) == 0.0
    w = lk.clm5_weights(data["obs"], data["depth"], data["mask"])
    np.testing.assert_allclose(
        e.cost, lk.cost_clm5(m, data["obs"][:3], w[:3], np.ones(3, bool)), rtol=1e-10
    )


@pytest.mark.slow
def test_log_density_gradient_matches_finite_difference():
    # log-density on z = logit(p): finite, its gradient matches a central difference
    data = _profile_data()
    z = jnp.full(21, 0.3)
    k, h = 3, 1e-5
    zs = jnp.stack([z, z.at[k].add(h), z.at[k].add(-h)])
    vals, grads = jax.jit(jax.vmap(jax.value_and_grad(lambda z: lk.log_density(z, data))))(zs)
    assert np.all(np.isfinite(vals)) and np.all(np.isfinite(grads))
    fd = (vals[1] - vals[2]) / (2 * h)
    np.testing.assert_allclose(grads[0, k], fd, rtol=1e-5, atol=1e-8)


def test_failed_simulation_is_flagged_finite_and_minus_inf_without_nan():
    data = _profile_data(fail=True)
    # (outside jit the model refuses such forcing with a ValueError; inside it flags it)
    e = jax.jit(lk.make_evaluator("clm5", "proda"))(jnp.full(21, 0.5), data)
    assert bool(e.failed) and np.isfinite(e.cost) and np.all(np.isfinite(e.pred))
    v, g = jax.jit(jax.value_and_grad(lambda z: lk.log_density(z, data)))(jnp.zeros(21))
    assert float(v) == -np.inf
    assert np.all(np.asarray(g) == 0.0)
