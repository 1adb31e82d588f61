"""Fast form of the COMPAS transient contract (slow original: test_compas.py, a Diffrax
Kvaerno3 solve that compiles for ~15 s): integrating the public `compas.tendency` from a
perturbed start reaches the closed-form steady state. Here SciPy's BDF integrates the jitted
tendency with its jitted Jacobian, so only two small programs compile."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.integrate import solve_ivp

from soc_jax.models import compas
from tests.helpers import branch_forcings


def test_transient_reaches_the_closed_form_steady_state():
    forcing = branch_forcings(5, 11)[0]  # temperate: bioturbation, bedrock at layer 20
    ss = jax.jit(compas.steady_state)
    rng = np.random.default_rng(0)
    for _ in range(64):  # the first valid draw in [0.2, 0.8]
        params = np.asarray(compas.PARAMETERS.to_physical(rng.uniform(0.2, 0.8, 23)))
        res = ss(params, forcing)
        if bool(res.ok):
            break
    assert bool(res.ok), "no valid draw found"
    target = np.asarray(res.pools)
    start = target * np.random.default_rng(1).uniform(0.5, 2.0, target.shape)
    scale = jnp.asarray(start)
    shape = target.shape

    # u = x / start (all O(1)), time in days; the slowest mode relaxes at ~1e-15 day-1
    def rhs(u):
        return (compas.tendency(u.reshape(shape) * scale, params, forcing) / scale).ravel()

    f = jax.jit(rhs)
    jac = jax.jit(jax.jacfwd(rhs))
    sol = solve_ivp(
        lambda t, u: np.asarray(f(jnp.asarray(u))),
        (0.0, 1e18),
        np.ones(target.size),
        method="BDF",
        jac=lambda t, u: np.asarray(jac(jnp.asarray(u))),
        rtol=1e-8,
        atol=1e-8,
        first_step=1e-2,
    )
    assert sol.success, sol.message
    final = sol.y[:, -1].reshape(shape) * start
    assert np.max(np.abs(start / target - 1.0)) > 0.4  # it did start away from the target
    np.testing.assert_allclose(final, target, rtol=1e-6)
