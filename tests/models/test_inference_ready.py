"""The core under inference load: finite gradients in every forcing regime, masked failures
that add exactly zero gradient, flags instead of NaN, prepared profiles, one compile."""

import inspect
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax import forcing as forcing_module
from soc_jax import grid, linalg, transport
from soc_jax.forcing import Forcing
from soc_jax.grid import ZSOI, pchip_interpolate
from soc_jax.models import clm5, common, compas
from tests.helpers import REGIMES, regime_forcings

MODELS = {"clm5": clm5, "compas": compas}
# COMPAS's documented mode is its PRODA program with one rate constant taken from another
# parameter (test_compas.py::test_modes_differ_only_in_the_enzyme_turnover, default suite): a
# second compile that checks nothing new here, so it runs with the slow suite
CASES = [
    ("clm5", "proda"),
    ("clm5", "default"),
    ("compas", "proda"),
    pytest.param("compas", "documented", marks=pytest.mark.slow),
]
N_PER_REGIME = 30  # x 6 regimes = 180 prior draws per model and mode, 720 in all
OBS_DEPTH = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0, 1.5])  # m


def _stack(forcings):
    return jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *forcings)


OBSERVED = jnp.array([2e4, 1.5e4, 1e4, 6e3, 3e3, 1e3])  # gC m-3 at OBS_DEPTH


def _cost(res):
    """PRODA-like cost (finite for any finite SOC), masked where the profile failed: one where."""
    modelled = pchip_interpolate(ZSOI[:20], res.soc, OBS_DEPTH)
    value = jnp.sum((modelled - OBSERVED) ** 2 / (2 * (0.6 * OBSERVED) ** 2))
    return jnp.where(res.ok, value, 0.0)


def _misfit(model, mode):
    """The cost as a function of unconstrained parameters (what a gradient sampler sees)."""
    space = model.PARAMETERS

    def loss(z, prepared):
        res = model.steady_state(space.from_unconstrained(z), prepared)
        return _cost(res), res.flags

    return loss


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_gradients_are_finite_for_prior_draws_in_every_regime(name, mode):
    """Uniform prior draws on sites of every regime: the gradient of the masked misfit is finite
    for every draw, and nonzero for the ok ones (zero exactly for failed ones)."""
    model = MODELS[name]
    space = model.PARAMETERS
    pairs = regime_forcings(N_PER_REGIME * len(REGIMES), seed=len(name) + len(mode))
    regimes = np.array([r for r, _ in pairs])
    prepared = model.prepare(_stack([f for _, f in pairs]), mode)
    rng = np.random.default_rng(7)
    z = space.normalized_to_unconstrained(rng.uniform(0.005, 0.995, (len(pairs), len(space))))
    grad = jax.jit(jax.vmap(jax.grad(_misfit(model, mode), has_aux=True)))
    g, flags = grad(jnp.asarray(z), prepared)
    g, flags = np.asarray(g), np.asarray(flags)
    ok = flags == 0
    assert np.all(np.isfinite(g)), [
        (r, common.describe_flags(f))
        for r, f, gi in zip(regimes, flags, g)
        if not np.isfinite(gi).all()
    ]
    assert np.all(g[~ok] == 0.0)
    for regime in REGIMES:  # non-vacuous: each regime has ok draws with a real gradient
        sel = (regimes == regime) & ok
        assert sel.sum() >= 2, (regime, sel.sum())
        assert np.all(np.any(g[sel] != 0, axis=1)), regime


@pytest.mark.parametrize("name", ["clm5", "compas"])
def test_masked_failures_add_exactly_zero_gradient_to_a_shared_parameter(name):
    """Shared weights (the network, end-to-end training): one parameter vector theta shifts
    every profile's unconstrained parameters. Failed profiles in the batch (bad forcing, outside
    the prior, an underflowed depth scalar or a negative COMPAS pool) add exactly zero: the
    batch gradient equals the gradient of the batch without them, and is finite."""
    model = MODELS[name]
    space = model.PARAMETERS
    pairs = regime_forcings(12, seed=3)
    forcings = [f for _, f in pairs]
    rng = np.random.default_rng(11)
    p = rng.uniform(0.3, 0.7, (len(forcings), len(space)))
    params = np.array(space.to_physical(p))
    if name == "clm5":
        params[1, space.index("efolding")] = 0.003  # depth scalar underflows: 1/k = inf
    else:  # a negative closed-form pool, found among prior draws on the same site
        draws = np.asarray(space.to_physical(rng.uniform(0.01, 0.99, (256, len(space)))))
        res = jax.jit(jax.vmap(compas.steady_state, in_axes=(0, None)))(draws, forcings[1])
        neg = np.flatnonzero(np.asarray(res.flags) & common.NEGATIVE)
        assert neg.size, "no negative draw found"
        params[1] = draws[neg[0]]
    params[4, 0] = space.upper[0] * 1.5  # outside the prior
    params = jnp.asarray(params)
    bad = forcings[7].as_numpy()
    bad["tsoi"][2, 3] = np.nan  # breaks an input rule
    forcings[7] = Forcing(**bad)
    prepared = model.prepare(_stack(forcings))

    def per_profile(theta, p, prep):  # theta scales every profile's parameters
        res = model.steady_state(p * jnp.exp(theta), prep)
        return _cost(res), res.flags

    def loss(theta, keep):
        values, flags = jax.vmap(per_profile, in_axes=(None, 0, 0))(theta, params, prepared)
        return jnp.sum(jnp.where(keep, values, 0.0)), flags

    theta = jnp.zeros(len(space))
    grad = jax.jit(jax.grad(loss, has_aux=True))  # one compile: `keep` is data
    g_all, flags = grad(theta, jnp.ones(len(forcings), bool))
    flags = np.asarray(flags)
    failed = flags != 0
    assert failed[[1, 4, 7]].all(), common.describe_flags(flags)
    assert (flags[1] & (common.NONFINITE if name == "clm5" else common.NEGATIVE)) > 0
    assert flags[7] & common.INPUT and flags[4] & common.PRIOR
    g_ok, _ = grad(theta, jnp.asarray(~failed))
    assert np.all(np.isfinite(g_all)) and np.any(np.asarray(g_all) != 0)
    np.testing.assert_allclose(g_all, g_ok, rtol=1e-13, atol=0)
    # and each failed profile alone contributes exactly zero
    for i in np.flatnonzero(failed):
        g_i, _ = grad(theta, jnp.arange(len(forcings)) == i)
        assert np.all(np.asarray(g_i) == 0.0), i


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_prepared_profiles_give_the_same_result(name, mode):
    model = MODELS[name]
    pairs = regime_forcings(12, seed=5)
    batch = _stack([f for _, f in pairs])
    rng = np.random.default_rng(2)
    params = np.asarray(
        model.PARAMETERS.to_physical(rng.uniform(0.1, 0.9, (12, len(model.PARAMETERS))))
    )
    prepared = model.prepare(batch, mode)
    one_by_one = jax.vmap(lambda f: model.prepare(f, mode))(batch)
    for a, b in zip(jax.tree.leaves(prepared), jax.tree.leaves(one_by_one), strict=True):
        np.testing.assert_array_equal(a, b)
    fn = jax.jit(jax.vmap(lambda p, f: model.steady_state(p, f, mode)))
    from_forcing, from_prepared = fn(params, batch), jax.vmap(model.steady_state)(params, prepared)
    for a, b in zip(jax.tree.leaves(from_forcing), jax.tree.leaves(from_prepared), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    other = "proda" if mode != "proda" else ("default" if name == "clm5" else "documented")
    with pytest.raises(ValueError, match="prepared for mode"):
        model.steady_state(params[0], jax.tree.map(lambda a: a[0], prepared), other)


def test_transport_basis_equals_the_monthly_operators():
    """The prepared transport (three tridiagonals) equals the mean of the 12 monthly Patankar
    operators of tri_matrix.m, in every regime and across the prior of both diffusivities."""
    rng = np.random.default_rng(0)
    worst = 0.0
    for _, f in regime_forcings(30, seed=9):
        basis = transport.transport_basis(f.nbedrock, f.altmax, f.altmax_lastyear)
        for bio, cryo in zip(rng.uniform(3e-5, 5e-4, 4), rng.uniform(3e-5, 1.6e-3, 4), strict=True):
            ref = transport.transport_operator(bio, cryo, f.nbedrock, f.altmax, f.altmax_lastyear)
            for want, got in zip(ref, basis(bio, cryo), strict=True):
                want, got = np.asarray(want), np.asarray(got)
                err = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
                worst = max(worst, float(err.max()))
    assert worst < 1e-12, worst


@pytest.mark.slow  # a compile-count property (speed), not a result; ~12 s per model
@pytest.mark.parametrize("name", ["clm5", "compas"])
def test_one_compile_for_a_batch_whatever_the_values(name):
    model = MODELS[name]
    space = model.PARAMETERS
    pairs = regime_forcings(6, seed=1)
    prepared = model.prepare(_stack([f for _, f in pairs]))
    fn = jax.jit(jax.vmap(model.steady_state))
    rng = np.random.default_rng(0)
    for lo, hi in ((0.1, 0.9), (0.0, 1.0), (0.0, 0.01)):  # ok, failing, out-of-prior values
        params = np.array(space.to_physical(rng.uniform(lo, hi, (6, len(space)))))
        params[0, 0] *= 10 if lo == 0.0 and hi == 0.01 else 1
        jax.block_until_ready(fn(params, prepared))
    assert fn._cache_size() == 1


def test_pchip_gradient_is_finite_with_tiny_node_values():
    """Deep inert layers hold 1e-165..1e-290 gC m-3 (or exact zeros): the interpolation's
    gradient stays finite everywhere and equals central differences where the values are O(1)."""
    y = np.concatenate(
        [np.geomspace(1e4, 1e2, 10), [1e-165, 1e-200, 1e-250, 1e-290, 0, 0, 0, 0, 0, 0]]
    )
    f = jax.jit(lambda y: jnp.sum(jnp.log(pchip_interpolate(ZSOI[:20], y, OBS_DEPTH[:5]))))
    g = np.asarray(jax.grad(f)(jnp.asarray(y)))
    assert np.all(np.isfinite(g))
    h = 1e-6
    for i in range(10):
        e = np.zeros(20)
        e[i] = h * y[i]
        fd = (f(y + e) - f(y - e)) / (2 * h * y[i])
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-6, abs=1e-12), i


def test_flags_are_readable_and_models_share_one_interface():
    assert common.describe_flags(0) == "ok"
    both = common.describe_flags(common.SINGULAR | common.NEGATIVE)
    assert "nearly singular" in both and "negative pool" in both
    arr = common.describe_flags(np.array([0, common.INPUT]))
    assert arr.shape == (2,) and "input rule" in arr[1]
    assert bool(common.ok_ignoring(common.SINGULAR, common.SINGULAR))
    assert not bool(common.ok_ignoring(common.SINGULAR | common.PRIOR, common.SINGULAR))
    for model in (clm5, compas):
        assert isinstance(model, common.SteadyStateModel)


def test_type_hints_resolve():
    """jaxtyping shapes are strings, so typing.get_type_hints works on the public API."""
    modules = (clm5, compas, common, grid, linalg, transport, forcing_module)
    checked = 0
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj) and hasattr(obj, "__annotations__"):
                typing.get_type_hints(obj)
                checked += 1
    assert checked >= 30, checked
