"""CLM5 steady state: the NumPy oracle, mass balance, fixed point, vmap, gradients, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.baselines import numpy_clm5
from soc_jax.grid import DZ
from soc_jax.models import clm5, common
from tests.helpers import branch_forcings

SPACE = clm5.PARAMETERS
N_DRAWS = 60


def _stack(forcings):
    return jax.tree.map(lambda *a: jnp.stack(a), *forcings)


def prior_draws(n, seed):
    """Random prior draws (normalized p ~ U(0.01, 0.99)) paired with branch-covering forcings."""
    rng = np.random.default_rng(seed)
    draws = np.asarray(SPACE.to_physical(rng.uniform(0.01, 0.99, (n, len(SPACE)))))
    return list(zip(draws, branch_forcings(n, seed), strict=True))


@pytest.fixture(scope="module")
def draws():
    cases = []
    for i, (params, forcing) in enumerate(prior_draws(N_DRAWS, 2024)):
        mode = "proda" if i % 3 else "default"
        if mode == "default":
            params = params.copy()
            params[SPACE.index("efolding")] = np.random.default_rng(i).uniform(0.3, 10.0)
        ref = numpy_clm5.steady_state(np.asarray(params), forcing.as_numpy(), mode=mode)
        cases.append((params, forcing, mode, ref))
    return cases


@pytest.fixture(scope="module")
def batched_results(draws):
    out = {}
    for mode in ("proda", "default"):
        idx = [i for i, c in enumerate(draws) if c[2] == mode]
        params = np.stack([draws[i][0] for i in idx])
        forcing = jax.tree.map(lambda *a: jnp.stack(a), *[draws[i][1] for i in idx])
        fn = jax.jit(jax.vmap(lambda p, f: clm5.steady_state(p, f, mode=mode)))
        res = fn(params, forcing)
        for k, i in enumerate(idx):
            out[i] = jax.tree.map(lambda a: np.asarray(a[k]), res)
    return out


def test_equals_numpy_baseline_where_well_conditioned(draws, batched_results):
    compared = 0
    for i, (params, forcing, mode, ref) in enumerate(draws):
        res = batched_results[i]
        if ref["rcond"] < 1e-10 or not ref["ok"]:
            continue
        compared += 1
        assert bool(res.ok), f"draw {i} ({mode}) not ok although NumPy rcond={ref['rcond']:.2e}"
        scale = np.abs(ref["pools"]).max(axis=1, keepdims=True)  # per pool
        err = np.abs(res.pools - ref["pools"]) / np.maximum(scale, 1e-300)
        assert err.max() < 1e-9, f"draw {i} ({mode}): max relative error {err.max():.2e}"
        np.testing.assert_allclose(res.rcond, ref["rcond"], rtol=0.5)  # LAPACK's is an estimate
    kinds = {i % 5 for i, c in enumerate(draws) if c[3]["ok"] and c[3]["rcond"] >= 1e-10}
    assert compared >= 25 and kinds == set(range(5)), (compared, kinds)
    modes = {c[2] for c in draws if c[3]["ok"] and c[3]["rcond"] >= 1e-10}
    assert modes == {"proda", "default"}


def test_ok_flag_agrees_with_matlab_singularity_warning(draws, batched_results):
    """ok = (rcond >= eps): agree with LAPACK's dgecon except within a factor 10 of eps; a
    failure is the SINGULAR flag, with finite pools, never NaN."""
    eps = np.finfo(float).eps
    n_fail = 0
    for i, (_, _, mode, ref) in enumerate(draws):
        res = batched_results[i]
        assert np.all(np.isfinite(res.pools)) and np.isfinite(res.rcond)
        n_fail += not ref["ok"]
        if 0.1 * eps < ref["rcond"] < 10 * eps:
            continue
        assert bool(res.ok) == bool(ref["ok"]), f"draw {i} ({mode}): rcond {ref['rcond']:.2e}"
        assert int(res.flags) == (0 if ref["ok"] else common.SINGULAR), (i, int(res.flags))
    assert n_fail >= 3, "the draws should include ill-conditioned (failed) simulations"


def test_ill_conditioned_draws_have_small_backward_error(draws, batched_results):
    """Where rcond < 1e-10 (never compared by value), the structured solution still solves the
    system that NumPy assembles independently: backward error ||S x - I|| / (||S|| ||x|| + ||I||)
    near machine precision, for nearly singular (SINGULAR-flagged) draws too."""
    checked = flagged = 0
    for i, (params, forcing, mode, ref) in enumerate(draws):
        res = batched_results[i]
        if ref["rcond"] >= 1e-10 or int(res.flags) not in (0, common.SINGULAR):
            continue
        mats = numpy_clm5.build_matrices(np.asarray(params), forcing.as_numpy(), mode=mode)
        s = mats["V"] - mats["A"] @ mats["K"]  # dX/dt = I - S X
        x = np.asarray(res.pools).reshape(-1)
        b = mats["I"].reshape(-1)
        if np.any(x == 0):  # clipped entries (x < 0 -> 0) are not a solution of S x = I
            continue
        r = np.abs(s @ x - b).max()
        scale = np.abs(s).sum(axis=1).max() * np.abs(x).max() + np.abs(b).max()
        assert r <= 1e-13 * scale, (i, mode, r / scale, ref["rcond"])
        checked += 1
        flagged += int(res.flags) == common.SINGULAR
    assert checked >= 10 and flagged >= 3, (checked, flagged)


def test_mass_balance_and_fixed_point():
    checked = 0
    for params, forcing in prior_draws(15, 5):
        forcing_np = forcing.as_numpy()
        forcing_np["nbedrock"][:] = 20  # the bedrock rule is non-conservative by design
        forcing = type(forcing)(**forcing_np)
        params = params.copy()
        params[SPACE.index("efolding")] = max(params[SPACE.index("efolding")], 0.5)
        res = clm5.steady_state(params, forcing)
        if not res.ok:  # nearly singular (rcond < eps): no meaningful steady state to check
            continue
        checked += 1
        m = jax.jit(clm5.matrices)(params, forcing)
        total_input = float(jnp.sum(m.inputs * DZ[:20]))
        total_resp = float(jnp.sum(jax.jit(clm5.respiration)(res.pools, params, forcing) * DZ[:20]))
        assert total_resp == pytest.approx(total_input, rel=1e-10)
        dxdt = jax.jit(clm5.tendency)(res.pools, params, forcing)
        scale = jnp.abs(m.inputs).max() + jnp.abs(m.operator.decay * res.pools).max()
        assert float(jnp.abs(dxdt).max()) < 1e-10 * float(scale)
    assert checked >= 10


def test_vmap_equals_loop():
    cases = prior_draws(6, 9)
    params = np.stack([c[0] for c in cases])
    forcing = jax.tree.map(lambda *a: jnp.stack(a), *[c[1] for c in cases])
    batched = jax.jit(jax.vmap(clm5.steady_state))(params, forcing)
    for k, (p, f) in enumerate(cases):
        single = clm5.steady_state(p, f)  # jitted inside, one profile
        np.testing.assert_array_equal(batched.ok[k], single.ok)
        np.testing.assert_allclose(batched.pools[k], single.pools, rtol=1e-12, equal_nan=True)


def test_gradient_equals_central_finite_differences():
    params, forcing = prior_draws(3, 21)[0]
    params = params.copy()
    params[SPACE.index("efolding")] = 0.6
    obs_depth = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0])
    from soc_jax.grid import ZSOI, pchip_interpolate

    def loss(z):
        res = clm5.steady_state(SPACE.from_unconstrained(z), forcing)
        model = pchip_interpolate(ZSOI[:20], res.soc, obs_depth)
        return jnp.sum(jnp.log(model))

    loss = jax.jit(loss)
    z = SPACE.to_unconstrained(params)
    g = jax.grad(loss)(z)
    h = 1e-5
    for i in [0, 2, 3, 7, 8, 12, 20]:
        e = jnp.zeros_like(z).at[i].set(h)
        fd = (loss(z + e) - loss(z - e)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-9), SPACE.names[i]


def test_bad_input_raises_outside_jit_and_flags_inside():
    forcing = prior_draws(1, 0)[0][1]
    params = np.asarray(SPACE.midpoint())
    with pytest.raises(ValueError, match=r"one \(21,\) vector of physical values"):
        clm5.steady_state(params[:-1], forcing)
    with pytest.raises(ValueError, match=r"one \(21,\) vector .* got shape \(20,\)"):
        jax.jit(jax.vmap(clm5.steady_state))(np.stack([params[:-1]] * 2), _stack([forcing] * 2))
    with pytest.raises(ValueError, match="to_physical"):  # normalized values given by mistake
        clm5.steady_state(np.full(21, 0.5), forcing)
    bad = params.copy()
    bad[SPACE.index("tau4s2")] = 60.0
    with pytest.raises(ValueError, match="'tau4s2' = 60 yr is outside its prior bounds"):
        clm5.steady_state(bad, forcing)
    f_np = forcing.as_numpy()
    f_np["tsoi"][3, 4] = np.nan
    nan_forcing = type(forcing)(**f_np)
    with pytest.raises(ValueError, match="forcing.tsoi .* non-finite"):
        clm5.steady_state(params, nan_forcing)
    f_np = forcing.as_numpy()
    f_np["litter_input"][2, 0, 0] = -5.0
    neg_forcing = type(forcing)(**f_np)
    with pytest.raises(ValueError, match="litter inputs >= 0"):
        clm5.steady_state(params, neg_forcing)
    with pytest.raises(ValueError, match="mode must be"):
        clm5.steady_state(params, forcing, mode="fast")
    # inside vmap: flags that say why, no exception, no NaN; nothing computed from bad input
    batch_p = np.stack([params, bad, params, params, np.full(21, 0.5)])
    batch_f = _stack([forcing, forcing, nan_forcing, neg_forcing, forcing])
    res = jax.jit(jax.vmap(clm5.steady_state))(batch_p, batch_f)
    np.testing.assert_array_equal(res.ok, [True, False, False, False, False])
    np.testing.assert_array_equal(
        res.flags, [0, common.PRIOR, common.INPUT, common.INPUT, common.PRIOR]
    )
    assert np.all(np.isfinite(res.pools)) and np.all(res.pools[1:] == 0)
    reasons = common.describe_flags(res.flags)
    assert reasons[0] == "ok" and "prior" in reasons[1] and "input rule" in reasons[2]


def test_requires_float64():
    params, forcing = prior_draws(1, 0)[0]
    pools = np.ones((7, 20))
    jax.config.update("jax_enable_x64", False)
    try:
        for call in (
            lambda: clm5.steady_state(params, forcing),
            lambda: clm5.matrices(params, forcing),
            lambda: clm5.tendency(pools, params, forcing),
            lambda: clm5.respiration(pools, params, forcing),
        ):
            with pytest.raises(RuntimeError, match="needs float64"):
                call()
    finally:
        jax.config.update("jax_enable_x64", True)


def test_default_mode_uses_sand_and_cesm_inputs():
    params, forcing = prior_draws(1, 3)[0]
    m = clm5.matrices(clm5.default_parameters(), forcing, mode="default")
    sand = np.clip(np.asarray(forcing.sand).mean(axis=0), 0, 100)
    t = 0.85 - 0.0068 * (100 - sand)
    np.testing.assert_allclose(m.operator.fractions[:, 5, 4], (1 - t) - 0.004, rtol=1e-13)
    np.testing.assert_allclose(
        m.inputs[:4], np.asarray(forcing.litter_input).sum(axis=1) / 365, rtol=1e-13
    )
    res = clm5.steady_state(clm5.default_parameters(), forcing, mode="default")
    assert bool(res.ok) and np.all(res.soc > 0)


def test_residence_time_equals_numpy_and_stock_over_input():
    forcing = prior_draws(1, 0)[0][1]
    params = np.asarray(SPACE.midpoint())
    rt = jax.jit(clm5.residence_time)(params, forcing)
    ref = numpy_clm5.residence_time_diagnostics(params, forcing.as_numpy())
    np.testing.assert_allclose(rt.total, ref["total_res_time"], rtol=1e-9)
    np.testing.assert_allclose(rt.baseline, ref["total_res_time_baseline"], rtol=1e-9)
    np.testing.assert_allclose(rt.temperature_scalar, ref["t_scalar"], rtol=1e-12)
    # sum_j total_j dz_j = column SOC stock / column input (yr)
    res = clm5.steady_state(params, forcing)
    m = jax.jit(clm5.matrices)(params, forcing)
    carbon_input = float(jnp.sum(m.input_totals))
    stock = float(jnp.sum(res.soc * DZ[:20]))
    assert float(jnp.sum(rt.total * DZ[:20])) == pytest.approx(stock / carbon_input, rel=1e-9)
