"""Attribution: delta = 0 and a group already at the constant change nothing; CLM5 is linear in
its inputs (known answer for the NPP sensitivity); summaries are medians and 14/86 % quantiles."""

from __future__ import annotations

import numpy as np

from soc_jax.analysis.attribution import (
    Target,
    component_control,
    evaluate,
    group_indices,
    marginal_sensitivity,
    spatial_metrics,
    summarize_members,
)
from soc_jax.forcing import Forcing
from tests.helpers import regime_forcings


def _cells():
    fs = [f for name, f in regime_forcings(6, seed=11) if name != "frozen"]
    a = [f.as_numpy() for f in fs]
    return Forcing(**{k: np.stack([x[k] for x in a]) for k in a[0]})


def test_delta_zero_and_constant_groups_change_nothing_and_npp_is_linear_for_clm5():
    forcing = _cells()
    n = forcing.as_numpy()["tsoi"].shape[0]
    rng = np.random.default_rng(0)
    constant = rng.uniform(0.3, 0.7, 21)
    target = Target(forcing_cells=forcing, area=np.full(n, 1e10))
    p = np.broadcast_to(constant, (1, n, 21)).copy()
    base = evaluate("clm5", "proda", p[0], target)["total_pg"]
    assert base > 0

    control = component_control("clm5", "proda", p, constant, target, npp=False)
    assert {r["group"] for r in control} == {"none", *group_indices("clm5")}
    for r in control:  # every group is already at the constant: nothing may change
        assert r["total_pg"] == base and r["d_total_pg"] == 0.0, r["group"]

    p2 = p.copy()
    p2[0] = np.clip(p2[0] + rng.uniform(-0.2, 0.2, p2[0].shape), 0.05, 0.95)
    sens = marginal_sensitivity("clm5", "proda", p2, target, deltas=np.array([-0.1, 0.0, 0.1]))
    base2 = evaluate("clm5", "proda", p2[0], target)["total_pg"]
    for r in sens:
        if r["delta"] == 0.0:
            assert r["rel_change"] == 0.0 and r["total_pg"] == base2, r["group"]
        if r["group"] == "NPP":  # CLM5's steady state is linear in its inputs
            np.testing.assert_allclose(r["rel_change"], r["delta"], rtol=1e-9)
        elif r["group"] in ("K", "A") and r["delta"] != 0.0:
            assert r["rel_change"] != 0.0, r["group"]  # the perturbation does act


def test_spatial_metrics_known_answers():
    obs = np.array([1000.0, 2000.0, 3000.0, 4000.0])
    m = spatial_metrics(obs, obs)
    assert m.nse == 1.0 and np.isclose(m.r, 1.0) and m.mse == 0.0
    m = spatial_metrics(obs, np.full(4, obs.mean()))  # the mean predictor: NSE 0
    assert np.isclose(m.nse, 0.0) and np.isnan(m.r)
    m = spatial_metrics(obs, 2 * obs)  # perfectly correlated, biased
    assert np.isclose(m.r2, 1.0) and np.isclose(m.mse, np.mean((obs / 1000) ** 2))
    assert np.isclose(m.nse, 1 - np.sum((obs / 1000) ** 2) / np.sum((obs / 1000 - 2.5) ** 2))


def test_summaries_are_median_and_14_86_quantiles():
    recs = [{"group": "A", "x": float(v)} for v in range(101)]
    (row,) = summarize_members(recs, ("group",), ("x",))
    assert row["x_median"] == 50.0 and np.isclose(row["x_q14"], 14.0)
    assert np.isclose(row["x_q86"], 86.0) and row["n_members"] == 101
