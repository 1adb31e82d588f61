"""Scientific checks of the SOC UDE: SciPy agreement, conservation, gradients, noise, failures."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from soc_jax.ude.column import Column, first_derivative, require_x64, second_derivative
from soc_jax.ude.losses import data_misfit
from soc_jax.ude.synthetic import (
    SyntheticConfig,
    ar1_noise,
    driver_fields,
    initial_profile,
    make_dataset,
    multiplicative_noise,
)
from soc_jax.ude.train import TrainConfig, Weights, filter_spec, init_model, objective
from soc_jax.ude.vector_field import (
    FAILURE_PENALTY,
    Drivers,
    KnownReaction,
    Transport,
    UDEVectorField,
    solve,
)

NZ, NT, T_FINAL = 12, 11, 10.0


def _numpy_rhs(D, v, dz, z, ts, drv, reaction):
    """Independent NumPy method of lines (ghost nodes written out by hand)."""

    def rhs(t, c):
        ext = np.empty(c.size + 2)
        ext[1:-1] = c
        ext[0] = c[1]
        ext[-1] = c[-2]
        czz = (ext[2:] - 2 * c + ext[:-2]) / dz**2
        cz = (ext[2:] - ext[:-2]) / (2 * dz)
        out = D * czz - v * cz
        if reaction:
            ph, cec, clay = (
                np.array([np.interp(t, ts, drv[j, :, i]) for i in range(c.size)]) for j in range(3)
            )
            prod = 0.02 * (clay / 25.0) * (cec / 0.5) * np.exp(-z / 0.3)
            resp = 0.02 * np.exp(0.8 * (ph - 6.5)) * c
            out = out + prod - resp
        return out

    return rhs


@pytest.mark.parametrize("reaction", [False, True])
def test_matches_scipy_method_of_lines(reaction):
    """Zero networks (and the known reaction law) agree with SciPy solve_ivp to 1e-6."""
    col = Column(nz=30)
    z = np.asarray(col.z)
    ts = jnp.linspace(0.0, 50.0, 51)
    drv = driver_fields(col.z, ts)
    D, v = 5e-4, 1e-3
    vf = UDEVectorField(Transport(D, v), KnownReaction() if reaction else None, col)
    c0 = initial_profile(col.z)
    ys, ok = eqx.filter_jit(solve)(
        vf, c0, Drivers(ts, drv), ts, rtol=1e-10, atol=1e-10, max_steps=100_000
    )
    assert bool(ok)
    rhs = _numpy_rhs(D, v, col.dz, z, np.asarray(ts), np.asarray(drv), reaction)
    ref = solve_ivp(
        rhs,
        (0.0, 50.0),
        np.asarray(c0),
        t_eval=np.asarray(ts),
        method="DOP853",
        rtol=1e-12,
        atol=1e-12,
    )
    assert ref.success
    err = np.max(np.abs(np.asarray(ys) - ref.y.T))
    assert err <= 1e-6, f"max |JAX - SciPy| = {err:.3e}"
    # the solution actually evolved (the comparison is not trivially between constants)
    assert np.max(np.abs(ref.y[:, -1] - ref.y[:, 0])) > 1e-2


def test_operators_on_polynomials():
    """Central differences are exact on quadratics in the interior; Neumann ghosts at the ends."""
    col = Column(depth=1.0, nz=11)
    z = col.z
    c = 3.0 * z**2 - 2.0 * z + 1.0
    czz = second_derivative(c, col)
    cz = first_derivative(c, col)
    np.testing.assert_allclose(czz[1:-1], 6.0, rtol=1e-10)
    np.testing.assert_allclose(cz[1:-1], 6.0 * z[1:-1] - 2.0, rtol=1e-10, atol=1e-12)
    assert float(cz[0]) == 0.0 and float(cz[-1]) == 0.0
    np.testing.assert_allclose(czz[0], 2 * (c[1] - c[0]) / col.dz**2, rtol=1e-12)


def test_total_carbon_conserved_without_advection():
    """With v = 0 and P = R = 0 the trapezoidal stock is constant (discrete conservation)."""
    col = Column(nz=30)
    ts = jnp.linspace(0.0, 50.0, 11)
    vf = UDEVectorField(Transport(5e-3, 1e-30), None, col)  # v = 1e-30 m/yr: zero in float64
    c0 = initial_profile(col.z)
    ys, ok = eqx.filter_jit(solve)(vf, c0, Drivers(ts, driver_fields(col.z, ts)), ts)
    assert bool(ok)
    stock = ys @ col.trapezoid_weights
    rel = jnp.max(jnp.abs(stock - stock[0])) / stock[0]
    assert rel < 1e-12, f"relative stock drift {float(rel):.2e}"
    # the profile itself changed a lot, so conservation is not trivial
    assert float(jnp.max(jnp.abs(ys[-1] - c0))) > 0.05
    # with advection the zero-gradient boundaries let v C in at the top and out at the bottom:
    # d(stock)/dt = v (C_top - C_bottom) exactly for the discrete scheme
    v = 5e-3
    vf_adv = UDEVectorField(Transport(5e-3, v), None, col)
    ts_fine = jnp.linspace(0.0, 50.0, 501)
    ys_adv, _ = eqx.filter_jit(solve)(
        vf_adv,
        c0,
        Drivers(ts_fine, driver_fields(col.z, ts_fine)),
        ts_fine,
        rtol=1e-10,
        atol=1e-10,
        max_steps=100_000,
    )
    stock_adv = ys_adv @ col.trapezoid_weights
    flux = v * (ys_adv[:, 0] + ys_adv[:, 1] - ys_adv[:, -1] - ys_adv[:, -2]) / 2
    integral = jnp.sum(0.5 * (flux[1:] + flux[:-1]) * jnp.diff(ts_fine))
    np.testing.assert_allclose(stock_adv[-1] - stock_adv[0], integral, rtol=1e-4)


@pytest.fixture(scope="module")
def small_data():
    cfg = SyntheticConfig(nz=NZ, n_times=NT, t_final=T_FINAL, noise=0.07)
    return make_dataset(cfg, jr.key(3))


@pytest.mark.parametrize("mode", ["terminal", "trajectory"])
def test_gradient_matches_finite_differences(small_data, mode):
    """Adjoint (RecursiveCheckpointAdjoint) gradients equal central finite differences.

    Constant steps make the discrete solution a smooth function of the parameters, so central
    differences of it converge to the exact discrete gradient (adaptive step selection adds
    non-smooth jumps of order rtol to the objective that corrupt finite differences).
    """
    import dataclasses

    cfg = TrainConfig(hidden=(8, 8), lambda_coll=0.5, lambda_wd=1e-3, learn_physics=True)
    model = init_model(cfg, NZ, jr.key(0))
    # move the zero-initialised last layers off zero so every parameter has an effect
    model = eqx.tree_at(lambda m: m.reaction.w3, model, replace=0.3 * jr.normal(jr.key(1), (2, 8)))
    params, static = eqx.partition(model, filter_spec(model, True))
    weights = Weights.from_config(cfg)
    spec = dataclasses.replace(cfg.objective_spec(mode), dt_fixed=0.1, max_steps=200)
    f = eqx.filter_jit(lambda p: objective(p, static, small_data, weights, spec))
    grads = eqx.filter_jit(
        eqx.filter_grad(lambda p: objective(p, static, small_data, weights, spec))
    )(params)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    gflat, _ = jax.flatten_util.ravel_pytree(grads)
    # log D, log v, and a few network weights from both nets
    n = flat.shape[0]
    idx = [0, 1, 2, 5, n // 2, n - 3, n - 1]
    h = 1e-5
    for i in idx:
        e = jnp.zeros_like(flat).at[i].set(h)
        fd = (f(unravel(flat + e)) - f(unravel(flat - e))) / (2 * h)
        g = gflat[i]
        assert abs(float(g - fd)) <= 1e-5 * abs(float(fd)) + 1e-10, (i, float(g), float(fd))


def test_ar1_noise_statistics():
    """AR(1) noise has mean 0, unit variance and lag-1 correlation rho along depth."""
    rho = 0.6
    e = np.asarray(ar1_noise(jr.key(0), (4000, 30), rho))
    n = e.size
    assert abs(e.mean()) < 5 * 1 / np.sqrt(n / ((1 + rho) / (1 - rho)))
    assert abs(e.std() - 1.0) < 0.02
    lag1 = np.mean(e[:, 1:] * e[:, :-1]) / np.mean(e**2)
    assert abs(lag1 - rho) < 0.02
    lag2 = np.mean(e[:, 2:] * e[:, :-2]) / np.mean(e**2)
    assert abs(lag2 - rho**2) < 0.02
    # independence across rows (times / variables)
    assert abs(np.mean(e[1:, 0] * e[:-1, 0])) < 0.05
    # rho = 0: white
    w = np.asarray(ar1_noise(jr.key(1), (4000, 30), 0.0))
    assert abs(np.mean(w[:, 1:] * w[:, :-1])) < 0.02
    with pytest.raises(ValueError):
        ar1_noise(jr.key(0), (3, 3), 1.0)


@pytest.mark.parametrize("eta", [0.07, 0.35])
def test_multiplicative_noise_statistics(eta):
    """x (1 + eta eps): unbiased, relative spread eta, spread scales with x."""
    x = jnp.broadcast_to(jnp.linspace(0.5, 2.0, 30), (4000, 30))
    y = np.asarray(multiplicative_noise(jr.key(7), x, eta, rho=0.6))
    rel = y / np.asarray(x) - 1.0
    assert abs(rel.mean()) < 0.01 * eta * 5
    assert abs(rel.std() - eta) < 0.02 * eta
    # absolute spread grows with x (multiplicative, not additive)
    assert y[:, -1].std() > 3.5 * y[:, 0].std()


def test_forced_failure_returns_penalty(small_data):
    """A solve that exhausts its step budget gives the 1e6 penalty and finite (zero) gradients."""
    cfg = TrainConfig(hidden=(8, 8))
    model = init_model(cfg, NZ, jr.key(0))
    params, static = eqx.partition(model, filter_spec(model, False))
    weights = Weights.from_config(cfg)
    spec = cfg.objective_spec("trajectory")
    import dataclasses

    spec = dataclasses.replace(spec, max_steps=2)
    ys, ok = solve(model, small_data.c0, small_data.drivers_obs, small_data.ts, max_steps=2)
    assert not bool(ok)
    assert bool(jnp.all(jnp.isfinite(ys)))
    loss, grads = eqx.filter_jit(
        eqx.filter_value_and_grad(lambda p: objective(p, static, small_data, weights, spec))
    )(params)
    assert float(loss) == FAILURE_PENALTY
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(g == 0.0)) for g in leaves)


def test_multiplicative_likelihood_prefers_truth():
    """The profiled multiplicative likelihood is minimised near the data-generating profile."""
    c = jnp.linspace(1.2, 0.2, 30)
    obs = multiplicative_noise(jr.key(5), jnp.broadcast_to(c, (200, 30)), 0.35, 0.6)
    losses = [
        float(data_misfit(s * c, obs, "multiplicative", rho=0.6, eta=0.35)) for s in (0.8, 1.0, 1.2)
    ]
    assert losses[1] < losses[0] and losses[1] < losses[2]
    with pytest.raises(ValueError):
        data_misfit(c, c, "nope")


# Case 3 runs the same code with another eta (0.35 instead of 0.07): slow set, to keep the default
# suite under 10 minutes on 2 cores
@pytest.mark.parametrize("number", [2, pytest.param(3, marks=pytest.mark.slow)])
def test_noise_aware_loss_counts_every_profile_once(number):
    """The noise-aware data term of a whole-record case is the noise model's NLL, each year once.

    Independent NumPy NLL of seed Eq 13 (relative residual, AR(1)-whitened along depth with the
    known rho, Gaussian with the known eta, plus the log-Jacobian mean log pred), averaged over
    the observed profiles t_1..t_n with equal weights: an extra terminal term would weight the
    50-yr profile more than the others and fail this.
    """
    import dataclasses

    from soc_jax.ude.cases import CASES
    from soc_jax.ude.train import loss_from_prediction

    case = CASES[number]
    cfg = dataclasses.replace(case.noise_aware, lambda_coll=0.0, lambda_wd=0.0)
    data = make_dataset(SyntheticConfig(nz=NZ, n_times=NT, t_final=T_FINAL, noise=0.35), jr.key(4))
    pred = data.soc_clean * (1.0 + 0.05 * jnp.sin(jnp.arange(NZ))[None, :])
    model = init_model(cfg, NZ, jr.key(0))
    params, static = eqx.partition(model, filter_spec(model, False))
    spec = cfg.objective_spec(case.mode)
    loss = loss_from_prediction(
        pred, jnp.asarray(True), params, static, data, Weights.from_config(cfg), spec
    )

    p, o = np.asarray(pred)[1:], np.asarray(data.soc_obs)[1:]
    e = (o - p) / p
    rho, eta = 0.6, case.noise
    w = np.concatenate([e[:, :1], (e[:, 1:] - rho * e[:, :-1]) / np.sqrt(1 - rho**2)], axis=1)
    nll = 0.5 * np.mean(w**2, axis=1) / eta**2 + np.mean(np.log(p), axis=1)
    np.testing.assert_allclose(float(loss), nll.mean(), rtol=1e-12)


def test_require_x64_message():
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match="float64"):
            require_x64("test")
    require_x64("test")
