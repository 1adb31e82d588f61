"""Structured solves against dense linear algebra: values, transposes, gradients, rcond."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax import linalg
from soc_jax.models import clm5
from tests.helpers import branch_forcings

SPACE = clm5.PARAMETERS


def well_conditioned_cases(n, seed):
    """(params, forcing) pairs with moderate conditioning (efolding >= 0.5 m)."""
    rng = np.random.default_rng(seed)
    cases = []
    for f in branch_forcings(n, seed):
        p = rng.uniform(0.05, 0.95, len(SPACE))
        p[SPACE.index("efolding")] = rng.uniform(0.5, 0.95)
        cases.append((np.asarray(SPACE.to_physical(p)), f))
    return cases


@pytest.mark.parametrize("case", range(10))
def test_structured_solve_equals_dense(case):
    params, forcing = well_conditioned_cases(10, 7)[case]
    op = jax.jit(clm5.matrices)(params, forcing).operator
    op.check_structure()
    S = np.asarray(jax.jit(type(op).to_dense)(op))
    assert np.linalg.cond(S, 1) < 1e10
    rng = np.random.default_rng(case)
    b = rng.uniform(0.1, 1.0, op.shape)
    x = np.asarray(jax.jit(linalg.solve)(op, jnp.asarray(b)))
    ref = np.linalg.solve(S, b.ravel()).reshape(op.shape)
    np.testing.assert_allclose(x, ref, rtol=1e-10)
    y = np.asarray(jax.jit(linalg.solve_transpose)(op, jnp.asarray(b)))
    np.testing.assert_allclose(y, np.linalg.solve(S.T, b.ravel()).reshape(op.shape), rtol=1e-10)
    # matvec / rmatvec agree with the dense matrix
    np.testing.assert_allclose(
        op.matvec(jnp.asarray(b)).ravel(), S @ b.ravel(), rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(
        op.rmatvec(jnp.asarray(b)).ravel(), S.T @ b.ravel(), rtol=1e-12, atol=1e-300
    )
    # rcond is exact (M-matrix: S^-1 >= 0)
    inv = np.linalg.inv(S)
    assert inv.min() >= -1e-12 * np.abs(inv).max()
    exact = 1.0 / (np.linalg.norm(S, 1) * np.linalg.norm(inv, 1))
    rcond, finite = jax.jit(linalg.condition)(op)
    assert bool(finite) and float(rcond) == pytest.approx(exact, rel=1e-9)


def test_structured_gradients_equal_dense_gradients():
    params, forcing = well_conditioned_cases(3, 11)[1]
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.5, (7, 20)))

    def loss(p, method):
        m = clm5.matrices(p, forcing)
        x = linalg.steady_state(m.operator, m.inputs, method=method)
        return jnp.sum(weights * jnp.log(x + 1.0))

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    g_struct = grad(jnp.asarray(params), "structured")
    g_dense = grad(jnp.asarray(params), "dense")
    np.testing.assert_allclose(g_struct, g_dense, rtol=1e-10, atol=1e-10 * np.abs(g_dense).max())
    v_struct, v_dense = loss(params, "structured"), loss(params, "dense")
    assert float(v_struct) == pytest.approx(float(v_dense), rel=1e-12)


def test_small_solve_against_numpy():
    rng = np.random.default_rng(3)
    M = rng.normal(size=(5, 3, 3)) + 4 * np.eye(3)
    B = rng.normal(size=(5, 3, 4))
    np.testing.assert_allclose(
        linalg._small_solve(jnp.asarray(M), jnp.asarray(B)), np.linalg.solve(M, B), rtol=1e-12
    )


def test_check_structure_rejects_backward_flows():
    params, forcing = well_conditioned_cases(1, 0)[0]
    op = jax.jit(clm5.matrices)(params, forcing).operator
    bad = op.__class__(
        op.decay,
        op.fractions.at[:, 1, 5].set(0.1),
        op.transport,
        op.transported,
        op.groups,
        op.coupled,
    )
    with pytest.raises(ValueError, match="feeds pool 1 of an earlier group"):
        bad.check_structure()
