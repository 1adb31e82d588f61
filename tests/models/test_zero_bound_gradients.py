"""Parameters on a zero lower bound: finite values AND finite gradients (CLM5 and COMPAS).

A turnover time, e-folding depth or water scaling of exactly 0 (normalized p = 0) has no
steady state: the profile is flagged (pools 0) and its gradient must be finite (zero), not
``0 * inf = NaN`` from ``1/(365 tau)`` or ``exp(-z/efolding)``. Where the value is
differentiable at the bound (the transfer fractions) the gradient equals a one-sided finite
difference, and near the bound (p = 1e-3) the guarded rates leave gradients unchanged.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.grid import ZSOI, pchip_interpolate
from soc_jax.models import clm5, common, compas
from tests.helpers import branch_forcings

OBS_DEPTH = jnp.array([0.05, 0.15, 0.3, 0.6, 1.0])
ZERO_BOUND = {  # parameters whose prior lower bound is 0, and whether p = 0 has a steady state
    clm5: {"efolding": False, "taul1": False, "tau4s1": False, "w_scaling": False,
           "fs1s2": True, "fs1s3": True, "fs2s3": True, "fs3s1": True},
    compas: {"w_scaling": False, "tau4l1": False, "tau4s2_death": False, "tau4s4": False,
             "pl1s1": True, "l2l3_cue": True},
}  # fmt: skip


def _loss_fns(model):
    space = model.PARAMETERS
    forcing = branch_forcings(1, 3)[0]

    def loss(p):  # log SOC at the observed depths, normalized parameters
        res = model.steady_state(space.to_physical(p), forcing)
        soc = pchip_interpolate(ZSOI[:20], res.soc, OBS_DEPTH)
        return jnp.sum(jnp.log(jnp.where(res.ok, soc, 1.0))), res.flags

    vg = jax.jit(jax.vmap(jax.value_and_grad(loss, has_aux=True)))
    value = jax.jit(jax.vmap(lambda p: loss(p)[0]))
    return space, vg, value


def _rows(model):
    space = model.PARAMETERS
    names = list(ZERO_BOUND[model])
    assert all(space.lower[space.index(n)] == 0 for n in names)
    cols = jnp.array([space.index(n) for n in names])
    rows = jnp.arange(len(names))
    at_bound = jnp.full((len(names), len(space)), 0.5).at[rows, cols].set(0.0)
    return names, rows, cols, at_bound


@pytest.mark.parametrize("model", [clm5, compas], ids=["clm5", "compas"])
def test_value_and_gradient_finite_on_zero_bounds(model):
    _, vg, _ = _loss_fns(model)
    names, _, _, at_bound = _rows(model)
    (v, flags), g = vg(at_bound)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(g)), dict(zip(names, np.asarray(g)))
    for i, n in enumerate(names):
        assert (flags[i] == 0) == ZERO_BOUND[model][n], n
        if not ZERO_BOUND[model][n]:  # no steady state: flagged, pools zero, zero gradient
            assert flags[i] & common.NONFINITE, n
            np.testing.assert_array_equal(g[i], 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("model", [clm5, compas], ids=["clm5", "compas"])
def test_gradients_at_and_near_zero_bounds_equal_finite_differences(model):
    space, vg, value = _loss_fns(model)
    names, rows, cols, at_bound = _rows(model)
    near = at_bound.at[rows, cols].set(1e-3)  # near the bound the guards change nothing
    (v, flags), g = vg(jnp.concatenate([at_bound, near]))
    h = 1e-7
    one_sided = value(at_bound.at[rows, cols].set(h))  # O(h) accurate
    plus = value(near.at[rows, cols].add(h))
    minus = value(near.at[rows, cols].add(-h))
    n_checked = 0
    for i, n in enumerate(names):
        j = space.index(n)
        if ZERO_BOUND[model][n]:  # differentiable at the bound
            fd = (one_sided[i] - v[i]) / h
            assert float(g[i, j]) == pytest.approx(float(fd), rel=1e-4, abs=1e-6), n
            n_checked += 1
        k = len(names) + i
        if flags[k] == 0:
            fd = (plus[i] - minus[i]) / (2 * h)
            assert float(g[k, j]) == pytest.approx(float(fd), rel=1e-4, abs=1e-6), n
            n_checked += 1
    assert n_checked > sum(ZERO_BOUND[model].values())  # some near-bound states are ok
