"""COMPAS steady state: NumPy oracle in both modes, flags, zero-litter layers, mass balance,
transient convergence, vmap, gradients, bad input."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.baselines import numpy_compas
from soc_jax.forcing import Forcing
from soc_jax.grid import DZ
from soc_jax.models import common, compas
from soc_jax.transport import EPS_FLOOR
from tests.helpers import branch_forcings

SPACE = compas.PARAMETERS
N_DRAWS = 60
WELL_CONDITIONED = 1e-10  # compare numbers where rcond > 1e-10 (cond < 1e10), as for CLM5
# Litter below this density (gC m-3) exists only where it leaks through the 1e-30 diffusivity
# floor of a frozen column; there NumPy keeps gradual underflow and XLA flushes subnormals, so
# relative precision is lost near 1e-300. Such litter entries are compared in absolute terms.
NEGLIGIBLE = 1e-250
TINY = np.finfo(np.float64).tiny  # smallest normal float64: XLA flushes anything below to zero
UNDERFLOW = TINY / EPS_FLOOR  # ~2.2e-278 gC m-3, see _underflow_layers
REFERENCE = json.loads(
    (Path(__file__).parents[1] / "reference/proda_constants_and_priors.json").read_text()
)
DZ20 = DZ[:20]


def _stack(forcings: list[Forcing]) -> Forcing:
    return jax.tree.map(lambda *a: jnp.stack(a), *forcings)


def _draws(n: int, seed: int) -> tuple[np.ndarray, list[Forcing]]:
    """Prior draws p ~ U(0, 1)^23 (valid and invalid steady states) on branch-covering sites."""
    rng = np.random.default_rng(seed)
    params = np.asarray(SPACE.to_physical(rng.uniform(size=(n, len(SPACE)))))
    return params, branch_forcings(n, seed)


_ss = jax.jit(compas.steady_state, static_argnames=("mode", "method"))
_batch = jax.jit(jax.vmap(compas.steady_state, in_axes=(0, None, None)), static_argnums=2)


def _valid_draw(forcing: Forcing, mode: str = "proda", seed: int = 0) -> np.ndarray:
    """The first of 64 draws (p in [0.2, 0.8]) with a valid steady state on ``forcing``."""
    rng = np.random.default_rng(seed)
    params = np.asarray(SPACE.to_physical(rng.uniform(0.2, 0.8, (64, len(SPACE)))))
    ok = np.asarray(_batch(params, forcing, mode).ok)
    assert ok.any(), "no valid draw found"
    return params[np.argmax(ok)]


def _numpy(params: np.ndarray, forcing: Forcing, mode: str = "proda") -> dict:
    return numpy_compas.steady_state(params, forcing.as_numpy(), mode)


def _underflow_layers(ref: dict) -> np.ndarray:
    """Layers where some of NumPy's litter (l1..l3) is positive but below ``UNDERFLOW``.

    Litter reaches such a layer only through products of the 1e-30 day-1 diffusivity floor
    (SPEC 1.7) with litter below 2.2e-278: the product is subnormal, which NumPy keeps and XLA
    flushes to zero. Since the closed form gives O(K_d) carbon for any positive litter, the two
    platforms may then differ by O(K_d) in that layer. This is float64 arithmetic on two
    platforms and the spec's floor, not a soc_jax threshold.
    """
    lit = ref["pools"][1:4]
    return np.any((lit > 0) & (lit < UNDERFLOW), axis=0)


def _temperate(seed: int) -> Forcing:
    return branch_forcings(5, seed)[0]  # bioturbation, bedrock at layer 20: conservative


def _frozen(seed: int) -> Forcing:
    return branch_forcings(5, seed)[2]  # frozen all year: input into layer 1, no transport


def test_parameter_space_matches_spec_table():
    table = REFERENCE["compas_parameters"]
    assert SPACE.names == tuple(row["name"] for row in table)
    np.testing.assert_array_equal(SPACE.lower, [row["lower"] for row in table])
    np.testing.assert_array_equal(SPACE.upper, [row["upper"] for row in table])
    assert SPACE.units == tuple(row["unit"] for row in table)
    groups = {"A": [8, 13, 19, 20, 21], "K": [5, 6, 7, 9, 10, 11, 12, 14], "Xi": [3, 4],
              "I": [23], "V": [1, 2], "E": [15, 16, 17, 18, 22]}  # fmt: skip
    for group, members in groups.items():
        np.testing.assert_array_equal(SPACE.group_indices(group), np.array(members) - 1)
    # tau4s3 is log-uniform on [1e-3, 1] yr: 10**(3 p - 3), as coded (SPEC 3.2)
    p = np.linspace(0, 1, 7)
    full = np.full((7, len(SPACE)), 0.5)
    full[:, 10] = p
    np.testing.assert_allclose(SPACE.to_physical(full)[:, 10], 10.0 ** (3 * p - 3), rtol=1e-14)
    assert SPACE.default()[10] == 0.11


@pytest.fixture(scope="module", params=["proda", "documented"])
def compared(request):
    """JAX (jit+vmap) and NumPy steady states of the same N_DRAWS prior draws in one mode."""
    mode = request.param
    params, forcings = _draws(N_DRAWS, 2024 if mode == "proda" else 77)
    jax_res = jax.jit(jax.vmap(lambda p, f: compas.steady_state(p, f, mode)))(
        params, _stack(forcings)
    )
    np_res = [_numpy(p, f, mode) for p, f in zip(params, forcings, strict=True)]
    return mode, params, forcings, jax_res, np_res


def test_equals_numpy_where_well_conditioned(compared):
    mode, params, forcings, res, ref = compared
    n_compared = n_excluded = 0
    for i, r in enumerate(ref):
        if not (bool(res.ok[i]) and r["ok"] and r["litter_rcond"] > WELL_CONDITIONED):
            continue
        n_compared += 1
        layers = ~_underflow_layers(r)
        n_excluded += int((~layers).sum())
        got, want = np.asarray(res.pools[i])[:, layers], r["pools"][:, layers]
        tol = 1e-9 * np.abs(want)
        tol[:4] += NEGLIGIBLE  # litter: absolute near the underflow
        assert np.all(np.abs(got - want) <= tol), (mode, i, np.max(np.abs(got - want) / tol))
        np.testing.assert_allclose(res.soc[i][layers], r["soc"][layers], rtol=1e-9)
        assert float(res.rcond[i]) == pytest.approx(r["litter_rcond"], rel=1e-6)
    # non-vacuous: a fair share of the draws is valid and compared; few layers excluded
    assert n_compared >= 10, n_compared
    assert n_excluded <= 0.05 * 20 * n_compared, n_excluded


def test_flags_agree_with_numpy(compared):
    """ok, the sign-flip condition and the DA check agree draw by draw, valid or not."""
    mode, _, _, res, ref = compared
    ok = np.array([r["ok"] for r in ref])
    negative = np.array([r["negative"] for r in ref])
    da_failed = np.array([r["da_check_failed"] for r in ref])
    np.testing.assert_array_equal(np.asarray(res.ok), ok)
    np.testing.assert_array_equal(np.asarray(res.negative), negative)
    np.testing.assert_array_equal(np.asarray(res.mic_ratio) < compas.MIC_RATIO_MIN, da_failed)
    # the draws cover every outcome, and invalid pools are NaN (never silently finite)
    assert ok.any() and (~ok).any() and negative.any()
    if mode == "proda":
        assert (da_failed & ~negative).any()
        np.testing.assert_array_equal(np.asarray(res.ok), ~negative & ~da_failed)
    else:  # the DA check is reported but does not invalidate
        assert (da_failed & ok).any()
        np.testing.assert_array_equal(np.asarray(res.ok), ~negative)
    # the flags say which rule failed; pools are finite always
    flags = np.asarray(res.flags)
    np.testing.assert_array_equal((flags & common.NEGATIVE) > 0, negative)
    np.testing.assert_array_equal((flags & common.MIC_RATIO) > 0, da_failed & (mode == "proda"))
    assert np.all(np.isfinite(np.asarray(res.pools)))


def test_litter_free_layers_get_zero_carbon_and_tiny_litter_the_closed_form():
    """Frozen site: zero soil carbon only where the litter is exactly zero (MATLAB's 0/0); any
    positive litter, down to ~1e-290, gets the closed form's O(K_d) carbon, as in NumPy."""
    forcing = _frozen(3)
    params = _valid_draw(forcing, seed=4)
    res = jax.tree.map(np.asarray, _ss(params, forcing))
    ref = _numpy(params, forcing)
    assert bool(res.ok) and ref["ok"]
    litter = res.pools[1:4]
    none = np.all(litter == 0.0, axis=0)
    tiny = ~none & (litter.max(axis=0) < 1e-200)
    # frozen: all input in layer 1, litter leaks through the 1e-30 floor and underflows deeper
    assert not none[0] and 3 <= none.sum() <= 15 and tiny.any(), (none, tiny)
    assert np.all(res.pools[4:, none] == 0.0)
    assert np.all(res.pools[[4, 7]][:, ~none] > 1e-3)  # DOC, SOC: O(K) carbon
    assert np.all(res.pools[[5, 6]][:, ~none] > 0.0)  # MIC, ENZ: scale with the litter
    layers = ~_underflow_layers(ref) & ~none
    np.testing.assert_allclose(res.pools[4:, layers], ref["pools"][4:, layers], rtol=1e-9)
    assert tiny[layers].any()  # litter below 1e-200 compared with NumPy's closed form
    # zero carbon is a fixed point of the soil ODEs where no litter arrives
    dxdt = compas.tendency(res.pools, params, forcing)
    assert np.all(np.asarray(dxdt[4:, none]) == 0.0)


def test_closed_form_is_homogeneous_in_the_litter_flux():
    """SOC*, DOC* depend on the composition of a layer's input, MIC*, ENZ* scale with it: the
    scale-safe evaluation is exact from O(1) down to 1e-300 inputs, where a direct evaluation
    of MATLAB's formula underflows."""
    forcing = _temperate(2)
    params = _valid_draw(forcing, seed=2)
    m = compas.matrices(params, forcing)
    inputs = np.array([0.3, 1.2, 0.1])[:, None] * np.ones((3, 20))
    base = np.asarray(compas.soil_steady_state(m.kinetics, m.xi, *inputs))
    for factor in (1e-100, 1e-250, 1e-300):
        scaled = np.asarray(compas.soil_steady_state(m.kinetics, m.xi, *(inputs * factor)))
        np.testing.assert_allclose(scaled[[0, 3]], base[[0, 3]], rtol=1e-13)
        np.testing.assert_allclose(scaled[[1, 2]], base[[1, 2]] * factor, rtol=1e-13)
    zero = np.asarray(compas.soil_steady_state(m.kinetics, m.xi, *(inputs * 0.0)))
    assert np.all(zero == 0.0)


def test_steady_state_is_continuous_where_the_old_cutoff_jumped():
    """The issue's defect: layers whose litter flux crossed 1e-250 jumped between 0 and O(K_d)
    carbon. Changing a turnover time in 0.1 % steps now moves the column stock smoothly."""
    forcing = _frozen(3)
    params = _valid_draw(forcing, seed=4)
    i = SPACE.index("tau4l1")
    factors = 1.0 + 0.001 * np.arange(-10, 11)
    batch = np.repeat(params[None], len(factors), axis=0)
    batch[:, i] = np.clip(params[i] * factors, SPACE.lower[i], SPACE.upper[i])
    res = _batch(batch, forcing, "proda")
    assert np.all(np.asarray(res.ok))
    stock = np.asarray(res.soc) @ DZ20
    steps = np.abs(np.diff(stock)) / stock[:-1]
    assert steps.max() < 2e-3, steps  # a 0.1 % change moves the stock by far less than a layer


def test_modes_differ_only_in_the_enzyme_turnover():
    forcing = _temperate(5)
    params = _valid_draw(forcing, "documented", seed=6)
    proda = _ss(params, forcing, mode="proda")
    documented = _ss(params, forcing, mode="documented")
    assert not np.allclose(proda.pools[4:], documented.pools[4:], equal_nan=True)
    # proda: tau4s3 = 10**(3 p13 - 3) from the normalized mm_const_assim; parameter 11 inert
    p13 = (params[12] - 300.0) / 2700.0
    swapped = params.copy()
    swapped[10] = 10.0 ** (3 * p13 - 3)
    as_proda = _ss(swapped, forcing, mode="documented")
    np.testing.assert_allclose(as_proda.pools, proda.pools, rtol=1e-13)
    other = params.copy()
    other[10] = 0.5 if params[10] < 0.2 else 0.01
    np.testing.assert_array_equal(_ss(other, forcing, mode="proda").pools, proda.pools)
    changed = _ss(other, forcing, mode="documented").pools
    assert not np.allclose(changed[4:], documented.pools[4:], equal_nan=True)
    np.testing.assert_allclose(changed[:4], documented.pools[:4], rtol=1e-14)  # litter unchanged


@pytest.mark.parametrize("mode", ["proda", "documented"])
def test_mass_balance_and_fixed_point(mode):
    for seed in range(4):
        forcing = branch_forcings(5, 30 + seed)[seed % 2]  # temperate, permafrost
        f_np = forcing.as_numpy()
        f_np["nbedrock"][:] = 20  # the bedrock rule of tri_matrix.m is non-conservative
        forcing = Forcing(**f_np)
        params = _valid_draw(forcing, mode, seed)
        res = _ss(params, forcing, mode=mode)
        m = compas.matrices(params, forcing, mode)
        total_input = float(jnp.sum(m.inputs * DZ20))
        resp = compas.respiration(res.pools, params, forcing, mode)
        assert float(jnp.sum(resp * DZ20)) == pytest.approx(total_input, rel=1e-10)
        ref = numpy_compas.respiration(np.asarray(res.pools), params, f_np, mode)["total"]
        np.testing.assert_allclose(resp, ref, rtol=1e-10, atol=1e-300)
        dxdt = np.asarray(compas.tendency(res.pools, params, forcing, mode))
        scale = np.abs(np.asarray(m.operator.decay * res.pools[:4])).max(axis=1)
        for pool in range(8):  # every flux of the pool is bounded by the largest litter flux
            assert np.abs(dxdt[pool]).max() < 1e-10 * scale.max(), (pool, dxdt[pool])
        np.testing.assert_allclose(
            dxdt,
            numpy_compas.tendency(np.asarray(res.pools), params, f_np, mode),
            atol=1e-12 * scale.max(),
        )


@pytest.mark.slow  # ~15 s of Kvaerno3 compile + ~7 s of solve on an idle core, more when shared
def test_transient_reaches_the_analytic_steady_state():
    import diffrax

    forcing = _temperate(11)
    params = _valid_draw(forcing, seed=0)
    target = np.asarray(_ss(params, forcing).pools)
    start = target * np.random.default_rng(1).uniform(0.5, 2.0, target.shape)
    m = compas.matrices(params, forcing)
    # Solve for u = x / start (all O(1)), time in days. The slowest mode (deep layers, where
    # xi ~ 1e-7) relaxes at ~1e-15 day-1, hence the long horizon; Kvaerno3 is L-stable (Kvaerno5
    # reaches the same state to 1e-15 but compiles for minutes).
    term = diffrax.ODETerm(lambda t, u, scale: compas._tendency(m, u * scale) / scale)
    sol = diffrax.diffeqsolve(
        term,
        diffrax.Kvaerno3(),
        t0=0.0,
        t1=1e18,
        dt0=1e-2,
        y0=jnp.ones_like(start),
        args=jnp.asarray(start),
        saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
        max_steps=100_000,
    )
    final = np.asarray(sol.ys[-1]) * start
    np.testing.assert_allclose(final, target, rtol=1e-6)


def test_vmap_equals_loop():
    params, forcings = _draws(6, 9)
    batched = jax.vmap(compas.steady_state)(params, _stack(forcings))
    for k, (p, f) in enumerate(zip(params, forcings, strict=True)):
        single = _ss(p, f)
        np.testing.assert_array_equal(batched.ok[k], single.ok)
        np.testing.assert_array_equal(batched.negative[k], single.negative)
        np.testing.assert_allclose(batched.pools[k], single.pools, rtol=1e-12, equal_nan=True)


def test_structured_equals_dense():
    params, forcings = _draws(8, 13)
    batch = _stack(forcings)
    fast = jax.vmap(compas.steady_state)(params, batch)
    dense = jax.vmap(lambda p, f: compas.steady_state(p, f, method="dense"))(params, batch)
    np.testing.assert_array_equal(fast.ok, dense.ok)
    # compare layers whose litter both solvers resolve (not within reach of the underflow)
    for f, d in zip(np.asarray(fast.pools), np.asarray(dense.pools), strict=True):
        lit = np.minimum(f[1:4], d[1:4])
        layers = ~np.any((lit < UNDERFLOW) & (np.maximum(f[1:4], d[1:4]) > 0), axis=0)
        np.testing.assert_allclose(f[:4], d[:4], rtol=1e-10, atol=NEGLIGIBLE)
        np.testing.assert_allclose(f[4:, layers], d[4:, layers], rtol=1e-10)


# documented = the PRODA program with one rate constant from another parameter (see
# test_modes_differ_only_in_the_enzyme_turnover): its second compile runs with the slow suite
@pytest.mark.parametrize("mode", ["proda", pytest.param("documented", marks=pytest.mark.slow)])
def test_gradient_equals_central_finite_differences(mode):
    forcing = branch_forcings(5, 21)[3]  # shallow bedrock
    params = _valid_draw(forcing, mode, seed=21)
    obs_depth = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0])
    from soc_jax.grid import ZSOI, pchip_interpolate

    def loss(z):
        res = compas.steady_state(SPACE.from_unconstrained(z), forcing, mode)
        return jnp.sum(jnp.log(pchip_interpolate(ZSOI[:20], res.soc, obs_depth)))

    z = SPACE.to_unconstrained(params)
    g = jax.jit(jax.grad(loss))(z)
    loss = jax.jit(loss)
    assert np.all(np.isfinite(g))
    h = 1e-5
    for i in [0, 2, 3, 5, 7, 8, 10, 11, 12, 13, 17, 20, 21, 22]:
        e = jnp.zeros_like(z).at[i].set(h)
        fd = (loss(z + e) - loss(z - e)) / (2 * h)
        assert float(g[i]) == pytest.approx(float(fd), rel=1e-5, abs=1e-8), SPACE.names[i]
    if mode == "proda":  # parameter 11 is inert in the public code
        assert float(g[10]) == 0.0


def test_diagnostics_are_consistent_with_the_steady_state():
    forcing = _temperate(8)
    params = _valid_draw(forcing, seed=8)
    res = _ss(params, forcing)
    d = compas.diagnostics(params, forcing, state=res)
    m = compas.matrices(params, forcing)
    k, xi = m.kinetics, np.asarray(m.xi)
    doc, mic, enz, soc = (np.asarray(res.pools[i]) for i in range(4, 8))
    np.testing.assert_allclose(d.km_decom_ratio, params[13] * xi / soc, rtol=1e-12)
    np.testing.assert_allclose(d.km_assim_ratio, params[12] * xi / doc, rtol=1e-12)
    # at steady state SOC decomposition balances SOC input: rate * SOC = in_soc + p kd xi MIC
    _, _, in_soc = compas.soil_inputs(m, res.pools[:4])
    balance = (np.asarray(in_soc) + float(k.pdeath2soc * k.death) * xi * mic) * 365.0
    np.testing.assert_allclose(np.asarray(d.decomposition_rate) * soc, balance, rtol=1e-9)
    np.testing.assert_allclose(d.pool_stocks, np.asarray(res.pools) @ DZ20, rtol=1e-12)
    assert float(d.soc_stocks.total) == pytest.approx(float(res.soc @ DZ20), rel=1e-12)
    assert float(jnp.sum(d.respiration * DZ20)) == pytest.approx(
        365.0 * float(jnp.sum(m.inputs * DZ20)), rel=1e-9
    )


def test_bad_input_raises_outside_jit_and_flags_inside():
    forcing = _temperate(0)
    params = _valid_draw(forcing)
    with pytest.raises(ValueError, match=r"one \(23,\) vector of physical values"):
        compas.steady_state(params[:-1], forcing)
    bad = params.copy()
    bad[SPACE.index("mic_cue")] = 0.9
    with pytest.raises(ValueError, match="'mic_cue' = 0.9 - is outside its prior bounds"):
        compas.steady_state(bad, forcing)
    f_np = forcing.as_numpy()
    f_np["w_scalar"][3, 4] = np.nan
    nan_forcing = Forcing(**f_np)
    with pytest.raises(ValueError, match="forcing.w_scalar .* non-finite"):
        compas.steady_state(params, nan_forcing)
    f_np = forcing.as_numpy()
    f_np["nbedrock"][0] = 2.5
    with pytest.raises(ValueError, match="nbedrock is an integer"):
        compas.steady_state(params, Forcing(**f_np))
    bedrock_forcing = Forcing(**f_np)
    with pytest.raises(ValueError, match="mode must be"):
        compas.steady_state(params, forcing, mode="default")
    with pytest.raises(ValueError, match="one profile"):
        compas.steady_state(params, _stack([forcing, forcing]))
    batch_p = np.stack([params, bad, params, params])
    batch_f = _stack([forcing, forcing, nan_forcing, bedrock_forcing])
    res = jax.jit(jax.vmap(compas.steady_state))(batch_p, batch_f)
    np.testing.assert_array_equal(res.ok, [True, False, False, False])
    np.testing.assert_array_equal(res.flags, [0, common.PRIOR, common.INPUT, common.INPUT])
    assert np.all(np.isfinite(res.pools)) and np.all(res.pools[1:] == 0.0)


def test_requires_float64():
    forcing = _temperate(0)
    params = SPACE.midpoint()
    pools = np.ones((8, 20))
    jax.config.update("jax_enable_x64", False)
    try:
        for call in (
            lambda: compas.steady_state(params, forcing),
            lambda: compas.matrices(params, forcing),
            lambda: compas.tendency(pools, params, forcing),
            lambda: compas.respiration(pools, params, forcing),
        ):
            with pytest.raises(RuntimeError, match="needs float64"):
                call()
    finally:
        jax.config.update("jax_enable_x64", True)
