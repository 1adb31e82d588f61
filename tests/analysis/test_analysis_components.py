"""System-level components against a NumPy transcription of SPEC 8 written here.

The oracle uses the independent NumPy baselines (benchmarks/baselines) for the matrices and
steady states, and transcribes SPEC 8's formulas from the SPEC text in plain loops below; it
calls no soc_jax code.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.baselines import numpy_clm5, numpy_compas
from soc_jax.analysis.components import (
    apparent_beta,
    clm5_components,
    compas_components,
    components_batch,
)
from soc_jax.forcing import Forcing
from soc_jax.models import clm5, compas
from tests.helpers import regime_forcings

# SPEC 1.1 grid, typed in from the SPEC (not imported from soc_jax)
DZ = np.array([0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.20, 0.24, 0.28, 0.32, 0.36, 0.40, 0.44,
               0.54, 0.64, 0.74, 0.84, 0.94, 1.04, 1.14])  # fmt: skip
ZSOI = np.array([0.01, 0.04, 0.09, 0.16, 0.26, 0.40, 0.58, 0.80, 1.06, 1.36, 1.70, 2.08, 2.50,
                 2.99, 3.58, 4.27, 5.06, 5.95, 6.94, 8.03])  # fmt: skip
ZISOI = np.cumsum(DZ)

FORCINGS = regime_forcings(6, seed=3)
# compiled once per model: every regime has the same shapes
CLM5_JIT = jax.jit(clm5_components)
COMPAS_JIT = jax.jit(compas_components)


def _spec_B(v):
    cum = np.cumsum(v)
    vals = []
    for j in range(20):
        if cum[j] >= 1.0 or 1.0 - cum[j] < 1e-12:  # NaN in MATLAB (rounding tie at the end)
            continue
        vals.append(np.exp(np.log(1.0 - cum[j]) / (100.0 * ZSOI[j])))
    return np.mean(vals) if vals else 0.0


def _xit(q10, tsoi):
    return np.where(
        tsoi >= 273.15,
        q10 ** ((tsoi - 298.15) / 10.0),
        q10 ** ((273.15 - 298.15) / 10.0) * q10 ** ((tsoi - 273.15) / 10.0),
    )


def spec_clm5(params, f, mode):
    """SPEC 8 CLM5 bulk components, transcribed (pools from the NumPy baseline)."""
    name = dict(zip(numpy_clm5.PARAM_NAMES, params, strict=True))
    mats = numpy_clm5.build_matrices(params, f, mode)
    C = numpy_clm5.steady_state(params, f, mode)["pools"]  # (7, 20)
    tau = [name["taucwd"], name["taul1"], name["taul2"], name["taul2"]]
    tau += [name["tau4s1"], name["tau4s2"], name["tau4s3"]]
    stock = [sum(C[p, j] * DZ[j] for j in range(20)) for p in range(7)]
    K = sum(stock[p] / tau[p] for p in (4, 5, 6)) / sum(stock[p] for p in (4, 5, 6))
    xit = _xit(name["q10"], f["tsoi"]).mean(axis=0)
    w = f["w_scalar"] if mode == "default" else np.minimum(f["w_scalar"] * name["w_scaling"], 1)
    xi = xit * w.mean(axis=0) * np.exp(-ZSOI / name["efolding"])
    soc = C[4] + C[5] + C[6]
    Xi = np.sum(xi * soc * DZ) / np.sum(soc * DZ)
    A = mats["A"]

    def frac(rec, don, j):
        return A[rec * 20 + j, don * 20 + j]

    def F(p):
        return sum(C[p, j] / tau[p] * xi[j] * DZ[j] for j in range(20))

    donors = [(4, 1), (4, 2), (5, 3), (5, 4), (6, 4), (4, 5), (6, 5), (4, 6)]
    num = sum(
        frac(r, d, j) * C[d, j] / tau[d] * xi[j] * DZ[j] for r, d in donors for j in range(20)
    )
    cte = num / sum(F(p) for p in (1, 2, 3, 4, 5, 6))
    Vd = np.array([mats["V"][20 + j, 20 + j] for j in range(20)])
    Vs = np.sum(365 * Vd * soc * DZ) / np.sum(soc * DZ)
    return {
        "B": _spec_B(mats["input_profile"]),
        "K": K,
        "xi": Xi,
        "A": cte,
        "V": Vs,
        "npp": mats["carbon_input"],
        "pools": C,
    }


def spec_compas(params, f, mode):
    """SPEC 8 COMPAS bulk components, transcribed (pools from the NumPy baseline)."""
    n = dict(zip(numpy_compas.PARAM_NAMES, params, strict=True))
    mats = numpy_compas.build_litter_matrices(params, f, mode)
    X = numpy_compas.steady_state(params, f, mode)["pools"]  # (8, 20)
    xi = mats["xi"]
    if mode == "proda":  # SPEC 3.6.1: tau4s3 = 10^(3 p13 - 3), p13 = normalized mm_const_assim
        p13 = (n["mm_const_assim"] - 300.0) / (3000.0 - 300.0)
        t_s3 = 10 ** (3 * p13 - 3)
    else:
        t_s3 = n["tau4s3"]
    cwd, l1, l2, l3, doc, mic, enz, som = X
    ka, kd = n["mm_const_assim"], n["mm_const_decom"]
    t_l3 = n["tau4l2"]
    S = X @ DZ
    deriv = (1 / n["tau4s4"]) * enz * kd * 2 * som * xi / (kd * xi + som) ** 3
    base = [1 / n["tau4cwd"], n["pl1s1"] / n["tau4l1"], n["pl2s1"] / n["tau4l2"]]
    base += [n["pl3s4"] / t_l3, 1 / n["tau4s2_death"] + 1 / n["tau4s2_enz"], 1 / t_s3]
    wst = [S[0], S[1], S[2], S[3], S[5], S[6]]
    K = (sum(b * s for b, s in zip(base, wst, strict=True)) + np.sum(deriv * som * DZ)) / (
        sum(wst) + S[7]
    )
    F1 = np.sum(l1 / n["tau4l1"] * xi * DZ)
    F2 = np.sum(l2 / n["tau4l2"] * xi * DZ)
    F3 = np.sum(l3 / t_l3 * xi * DZ)
    U = np.sum((xi / n["tau4s1"]) * mic * doc / (ka * xi + doc) * DZ)
    fl1s2 = (1 - n["pl1s1"]) * n["l1_cue"]
    fl2s2 = (1 - n["pl2s1"]) * n["l2l3_cue"]
    fl3s2 = (1 - n["pl3s4"]) * n["l2l3_cue"]
    cte = (fl1s2 * F1 + fl2s2 * F2 + fl3s2 * F3 + n["mic_cue"] * U) / (
        (1 - n["pl1s1"]) * F1 + (1 - n["pl2s1"]) * F2 + (1 - n["pl3s4"]) * F3 + U
    )
    D = np.sum(xi / n["tau4s2_death"] * mic * DZ)
    E = (n["pl1s1"] * F1 + n["pl2s1"] * F2 + n["pl3s4"] * F3 + n["pdeath2soc"] * D) / (
        F1 + F2 + F3 + D
    )
    tot = doc + mic + enz + som
    Vd = np.array([mats["V4"][20 + j, 20 + j] for j in range(20)])
    lit = l1 + l2 + l3
    rates = np.stack(
        [
            xi / n["tau4cwd"],
            xi / n["tau4l1"],
            xi / n["tau4l2"],
            xi / t_l3,
            (xi / n["tau4s1"]) * mic / (ka * xi + doc),
            (1 / n["tau4s2_death"] + 1 / n["tau4s2_enz"]) * xi,
            np.full(20, 1 / t_s3),
            (xi / n["tau4s4"]) * enz / (kd * xi + som),
        ]
    )
    totals = np.sum(np.sum(f["litter_input"], axis=1) * DZ, axis=1)
    v = numpy_clm5._beta_profile(n["beta"], f["altmax_lastyear"])
    return {
        "B": _spec_B(v),
        "K": K,
        "xi": np.sum(xi * tot * DZ) / np.sum(tot * DZ),
        "A": cte,
        "E": E,
        "V": np.sum(365 * Vd * lit * DZ) / np.sum(lit * DZ),
        "npp": np.sum(totals),
        "rates": rates,
        "km_decom_ratio": kd * xi / np.where(som > 0, som, np.nan),
        "km_assim_ratio": ka * xi / np.where(doc > 0, doc, np.nan),
        "pools": X,
    }


def _params(space, rng):
    return np.asarray(space.to_physical(jnp.asarray(rng.uniform(0.1, 0.9, len(space)))))


@pytest.mark.parametrize("mode", ["proda", "default"])
def test_clm5_components_equal_spec_transcription(mode):
    rng = np.random.default_rng(0)
    for regime, forcing in FORCINGS:
        params = _params(clm5.PARAMETERS, rng)
        if mode == "default":
            params = clm5.default_parameters()
        f = forcing.as_numpy()
        ref = spec_clm5(params, f, mode)
        got = CLM5_JIT(params, clm5.prepare(forcing, mode), ref["pools"])
        for k in ("B", "K", "xi", "A", "V", "npp"):
            # B: ln(1 - cum) near cum = 1 amplifies the rounding of the two input-profile sums
            # (CESM2's per-layer profile in mode "default") to ~1e-8
            tol = 1e-6 if k == "B" else 1e-9
            np.testing.assert_allclose(float(getattr(got, k)), ref[k], rtol=tol, err_msg=k)


@pytest.mark.parametrize("mode", ["proda", "documented"])
def test_compas_components_equal_spec_transcription(mode):
    rng = np.random.default_rng(1)
    checked = 0
    for regime, forcing in FORCINGS:
        params = _params(compas.PARAMETERS, rng)
        f = forcing.as_numpy()
        ref = spec_compas(params, f, mode)
        if np.any(ref["pools"][4:] <= 0) or not np.all(np.isfinite(ref["pools"])):
            continue  # zero-litter layers / negative closed forms: ratios undefined
        got = COMPAS_JIT(params, compas.prepare(forcing, mode), ref["pools"])
        for k in ("B", "K", "xi", "A", "E", "V", "npp"):
            np.testing.assert_allclose(float(getattr(got, k)), ref[k], rtol=1e-9, err_msg=k)
        for k in ("rates", "km_decom_ratio", "km_assim_ratio"):
            np.testing.assert_allclose(np.asarray(getattr(got, k)), ref[k], rtol=1e-9, err_msg=k)
        checked += 1
    assert checked >= 3


def test_apparent_beta_known_answer():
    # beta profile with beta**860 negligible: 1 - cum_j = beta**(100 zi_j), so B = mean beta**(zi/z)
    for beta in (0.8, 0.9, 0.95):
        v = beta ** (100 * np.r_[0.0, ZISOI[:-1]]) - beta ** (100 * ZISOI)
        v = v / v.sum()
        keep = (1 - np.cumsum(v)) > 1e-12
        expected = np.mean((beta ** (ZISOI / ZSOI))[keep])
        np.testing.assert_allclose(float(apparent_beta(v)), expected, rtol=1e-7)
    surface = np.r_[1.0, np.zeros(19)]  # all input in layer 1 (frozen site): every cum = 1
    assert float(apparent_beta(surface)) == 0.0


def test_clm5_K_equals_respiration_over_stock():
    # With every soil-to-soil transfer fraction at 0, each soil pool respires all it decomposes,
    # and with xi = 1 (T = 25 C, W = O = 1, no depth attenuation) its rate is 1/tau. Then
    # K_system = soil respiration / soil stock for ANY pools (no steady state needed).
    forcing = FORCINGS[0][1].as_numpy()
    forcing["tsoi"][:] = 298.15
    forcing["w_scalar"][:] = 1.0
    forcing["o_scalar"][:] = 1.0
    f = Forcing(**forcing)
    params = clm5.default_parameters().copy()
    names = clm5.PARAMETERS.names
    for k in ("fs1s2", "fs1s3", "fs2s1", "fs2s3", "fs3s1"):
        params[names.index(k)] = 0.0
    params[names.index("efolding")] = 1e30
    params[names.index("w_scaling")] = 1.0
    rng = np.random.default_rng(4)
    pools = np.zeros((7, 20))
    pools[4:] = rng.uniform(10, 1e4, (3, 20))  # litter empty: respiration is the soil's
    resp = np.asarray(clm5.respiration(pools, params, f, mode="proda"))  # gC m-3 day-1
    stock = np.sum(pools[4:] @ DZ)
    comp = clm5_components(params, clm5.prepare(f, "proda"), pools)
    np.testing.assert_allclose(float(comp.K), 365.0 * np.sum(resp * DZ) / stock, rtol=1e-12)
    np.testing.assert_allclose(float(comp.xi), 1.0, rtol=1e-12)


def test_components_gradients_finite_in_every_regime():
    rng = np.random.default_rng(5)
    for model, module, fn, mode in (
        ("clm5", clm5, clm5_components, "proda"),
        ("compas", compas, compas_components, "documented"),
    ):

        def loss(p, prep, module=module, fn=fn):
            x = module.PARAMETERS.to_physical(p)
            st = module.steady_state(x, prep)
            pools = jnp.where(st.ok, st.pools, 0.0)
            c = fn(x, prep, pools)
            return c.K + c.A + c.xi + c.V + c.B

        grad = jax.jit(jax.grad(loss))
        for regime, forcing in FORCINGS:
            p = jnp.asarray(rng.uniform(0.1, 0.9, len(module.PARAMETERS)))
            g = grad(p, module.prepare(forcing, mode))
            assert np.all(np.isfinite(np.asarray(g))), (model, regime)
            assert np.any(np.asarray(g) != 0.0), (model, regime)


@pytest.mark.parametrize(
    ("n", "block", "chunk"),
    [
        (3, 2, 1),  # the last block padded by repeating the last profile
        pytest.param(4, 8, 2, marks=pytest.mark.slow),  # vectorised chunks, one padded block
    ],
)
def test_components_batch_equals_single_profiles(n, block, chunk):
    """`components_batch` (fixed-size compiled blocks, padded, vectorised chunks) gives each
    profile its own steady state and components."""
    forcings = [f for _, f in regime_forcings(n, seed=3)]
    arrays = [f.as_numpy() for f in forcings]
    batch = Forcing(**{k: np.stack([a[k] for a in arrays]) for k in arrays[0]})
    rng = np.random.default_rng(6)
    P = np.stack([_params(clm5.PARAMETERS, rng) for _ in forcings])
    comps, soc, ok = components_batch("clm5", P, batch, "proda", block=block, chunk=chunk)
    assert ok.sum() >= 2
    one_ss = jax.jit(clm5.steady_state)
    for i, f in enumerate(forcings):
        st = one_ss(P[i], f)
        assert bool(st.ok) == bool(ok[i])
        if not ok[i]:  # a failed profile: components and SOC are exactly 0
            assert comps["K"][i] == 0.0 and np.all(soc[i] == 0.0)
            continue
        one = CLM5_JIT(P[i], clm5.prepare(f), st.pools)
        np.testing.assert_allclose(comps["K"][i], float(one.K), rtol=1e-10)
        np.testing.assert_allclose(comps["A"][i], float(one.A), rtol=1e-10)
        np.testing.assert_allclose(soc[i], np.asarray(st.soc), rtol=1e-10, atol=1e-8)
    assert len({float(k) for k in comps["K"][ok]}) == int(ok.sum())  # not one profile repeated
