"""Structured linear algebra for compartmental soil-carbon models.

The matrix models of CLM5 and COMPAS share one operator on ``P`` pools x ``L`` layers::

    dX/dt = I - S X,        S = V - A K,        A = -1 + F

with ``K = diag(k)`` the decomposition rates (day-1), ``F`` the transfer fractions (``F[q, p]``
is the fraction of pool ``p``'s decomposition flux that enters pool ``q`` in the same layer) and
``V`` the vertical transport, one tridiagonal matrix shared by the transported pools. The steady
state solves ``S X = I``.

``S`` is 140x140 for CLM5 but far from generic: ``K`` and ``F`` act within a layer, ``V`` within a
pool, and carbon flows one way between groups of pools (CWD -> litter -> soil). `solve` exploits
that: groups are solved in order, each by a block-tridiagonal Thomas sweep over layers with blocks
of the group's size (1x1 for uncoupled litter pools, 3x3 for the coupled soil pools). The
transposed system is solved by the same sweeps in reverse group order (`solve_transpose`).
Gradients come from implicit differentiation: `steady_state` wraps the solves in
``jax.lax.custom_linear_solve``, so reverse mode costs one transposed structured solve and
never differentiates through the elimination itself.

``S`` is a Z-matrix (non-positive off-diagonals) and, with dz weights, column diagonally dominant,
so it is a non-singular M-matrix whenever any carbon can leave the column. Then ``S^-1 >= 0`` and
the 1-norm of the inverse is exact from one transposed solve: ``||S^-1||_1 = max(S^-T 1)``. The
reciprocal condition number ``rcond = 1 / (||S||_1 ||S^-1||_1)`` is what MATLAB's ``\\`` compares
with machine epsilon before it warns "matrix is close to singular", which PRODA treats as a failed
simulation; `condition` reproduces it (LAPACK's estimator gives a lower bound of the same
quantity, equal in practice for these matrices).

The dense path (`to_dense` + ``jnp.linalg.solve``) is the reference for tests.

Elimination is done without pivoting: for a column diagonally dominant matrix Gaussian
elimination needs none (Golub & Van Loan, Matrix Computations, 3.4.10).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .transport import Tridiagonal

__all__ = ["CompartmentalOperator", "solve", "solve_transpose", "steady_state", "condition"]


class CompartmentalOperator(eqx.Module):
    """The operator ``S = V - A K`` of a layered compartmental model (one profile).

    Attributes:
        decay: decomposition rates k, shape (P, L), day-1.
        fractions: transfer fractions F[layer, receiver, donor], shape (L, P, P), zero diagonal.
        transport: tridiagonal vertical transport, diagonals of shape (L,), day-1.
        transported: static, per pool, whether ``transport`` acts on it.
        groups: static, pools in solve order; fractions from a later group into an earlier one
            must be zero.
        coupled: static, per group, whether fractions act within the group (block solve) or not
            (independent scalar solves).
    """

    decay: Float[Array, "P L"]
    fractions: Float[Array, "L P P"]
    transport: Tridiagonal
    transported: tuple[bool, ...] = eqx.field(static=True)
    groups: tuple[tuple[int, ...], ...] = eqx.field(static=True)
    coupled: tuple[bool, ...] = eqx.field(static=True)

    @property
    def shape(self) -> tuple[int, int]:
        """(pools, layers)."""
        return tuple(self.decay.shape[-2:])  # type: ignore[return-value]

    def _mask(self) -> Array:
        return jnp.asarray(np.array(self.transported, dtype=float))

    def matvec(self, x: Float[Array, "P L"]) -> Float[Array, "P L"]:
        """``S @ x`` for x of shape (P, L)."""
        flux = self.decay * x
        transfer_in = jnp.einsum("lqp,pl->ql", self.fractions, flux)
        return self._mask()[:, None] * self.transport.matvec(x) + flux - transfer_in

    def rmatvec(self, y: Float[Array, "P L"]) -> Float[Array, "P L"]:
        """``S^T @ y`` for y of shape (P, L)."""
        t = self.transport
        vt = Tridiagonal(
            jnp.concatenate([jnp.zeros(1), t.upper[:-1]]),
            t.diag,
            jnp.concatenate([t.lower[1:], jnp.zeros(1)]),
        )
        back = jnp.einsum("lqp,ql->pl", self.fractions, y)
        return self._mask()[:, None] * vt.matvec(y) + self.decay * (y - back)

    def to_dense(self) -> Float[Array, "PL PL"]:
        """Dense (P*L, P*L) matrix in pool-major order (index = pool * L + layer)."""
        P, L = self.shape
        eye_l = jnp.eye(L)
        # transfer block (q, p): -diag_l(F[l, q, p] k[p, l]); own block adds diag(k)
        kf = self.fractions * self.decay.T[:, None, :]  # (L, q, p)
        blocks = -jnp.einsum("lqp,lm->qlpm", kf, eye_l)
        blocks = blocks + jnp.einsum("pl,pq,lm->qlpm", self.decay, jnp.eye(P), eye_l)
        v = self.transport.to_dense()
        blocks = blocks + jnp.einsum("p,pq,lm->qlpm", self._mask(), jnp.eye(P), v)
        return blocks.reshape(P * L, P * L)

    def column_abs_sums(self) -> Float[Array, "P L"]:
        """Sums of |S| over each column (the 1-norm is their maximum)."""
        t = self.transport
        off = jnp.abs(jnp.concatenate([t.lower[1:], jnp.zeros(1)])) + jnp.abs(
            jnp.concatenate([jnp.zeros(1), t.upper[:-1]])
        )
        m = self._mask()[:, None]
        diag = jnp.abs(m * t.diag + self.decay)
        transfer = self.decay * jnp.einsum("lqp->pl", jnp.abs(self.fractions))
        return diag + m * off + transfer

    def check_structure(self) -> None:
        """Host-side check that ``fractions`` respect ``groups``/``coupled`` (for tests)."""
        F = np.asarray(self.fractions)
        order = {p: g for g, pools in enumerate(self.groups) for p in pools}
        for q in range(F.shape[1]):
            for p in range(F.shape[2]):
                if q == p or not np.any(F[:, q, p]):
                    continue
                gq, gp = order[q], order[p]
                if gq < gp:
                    raise ValueError(f"pool {p} (group {gp}) feeds pool {q} of an earlier group")
                if gq == gp and not self.coupled[gq]:
                    raise ValueError(f"pools {p} -> {q} coupled within uncoupled group {gq}")


def _small_solve(M: Array, B: Array) -> Array:
    """Solve M X = B by unrolled Gaussian elimination without pivoting.

    M has shape (..., b, b) and B (..., b, c) with static small b; written on scalars so that
    under vmap every operation is an elementwise array op (no batched LAPACK calls).
    """
    b = M.shape[-1]
    m = [[M[..., i, j] for j in range(b)] for i in range(b)]
    r = [B[..., i, :] for i in range(b)]
    for k in range(b):
        inv = 1.0 / m[k][k]
        for i in range(k + 1, b):
            factor = m[i][k] * inv
            for j in range(k + 1, b):
                m[i][j] = m[i][j] - factor * m[k][j]
            r[i] = r[i] - factor[..., None] * r[k]
    x: list[Array] = [r[0]] * b
    for i in reversed(range(b)):
        acc = r[i]
        for j in range(i + 1, b):
            acc = acc - m[i][j][..., None] * x[j]
        x[i] = acc / m[i][i][..., None]
    return jnp.stack(x, axis=-2)


def _block_thomas(
    blocks: Float[Array, "L b b"],
    lower: Float[Array, "L b"],
    upper: Float[Array, "L b"],
    rhs: Float[Array, "L b"],
) -> Float[Array, "L b"]:
    """Block-tridiagonal solve with diagonal off-diagonal blocks.

    Row l reads ``diag(lower[l]) x[l-1] + blocks[l] x[l] + diag(upper[l]) x[l+1] = rhs[l]``.
    """
    b = blocks.shape[-1]

    def forward(carry, row):
        c_prev, y_prev = carry
        blk, lo, up, r = row
        m = blk - lo[:, None] * c_prev
        aug = jnp.concatenate([jnp.diag(up), (r - lo * y_prev)[:, None]], axis=1)
        sol = _small_solve(m, aug)
        c, y = sol[:, :b], sol[:, b]
        return (c, y), (c, y)

    init = (jnp.zeros((b, b), blocks.dtype), jnp.zeros((b,), blocks.dtype))
    _, (cs, ys) = jax.lax.scan(forward, init, (blocks, lower, upper, rhs))

    def backward(x_next, row):
        c, y = row
        x = y - c @ x_next
        return x, x

    _, xs = jax.lax.scan(backward, ys[-1], (cs[:-1], ys[:-1]), reverse=True)
    return jnp.concatenate([xs, ys[-1:]], axis=0)


def _group_solve(
    op: CompartmentalOperator, pools: tuple[int, ...], coupled: bool, rhs: Array, transpose: bool
) -> Array:
    """Solve the diagonal block of ``S`` (or ``S^T``) belonging to ``pools``; rhs (b, L)."""
    idx = np.array(pools)
    t = op.transport
    m = op._mask()[idx]  # (b,)
    k = op.decay[idx].T  # (L, b)
    lower = t.lower[:, None] * m
    upper = t.upper[:, None] * m
    if transpose:
        lower, upper = (
            jnp.concatenate([jnp.zeros_like(upper[:1]), upper[:-1]]),
            jnp.concatenate([lower[1:], jnp.zeros_like(lower[:1])]),
        )
    diag = t.diag[:, None] * m + k  # (L, b)
    r = rhs.T  # (L, b)
    if not coupled:
        # b independent scalar tridiagonal systems, solved side by side.
        x = jax.vmap(_block_thomas, in_axes=(1, 1, 1, 1), out_axes=1)(
            diag[:, :, None, None], lower[:, :, None], upper[:, :, None], r[:, :, None]
        )[..., 0]
        return x.T
    F = op.fractions[:, idx[:, None], idx[None, :]]  # (L, recv, donor)
    if transpose:
        blocks = jax.vmap(jnp.diag)(diag) - k[:, :, None] * jnp.swapaxes(F, 1, 2)
    else:
        blocks = jax.vmap(jnp.diag)(diag) - F * k[:, None, :]
    return _block_thomas(blocks, lower, upper, r).T


def solve(op: CompartmentalOperator, rhs: Float[Array, "P L"]) -> Float[Array, "P L"]:
    """Solve ``S x = rhs`` by structure (groups in order, block Thomas within each)."""
    x = jnp.zeros_like(rhs)
    for pools, coupled in zip(op.groups, op.coupled, strict=True):
        idx = np.array(pools)
        # carbon arriving from pools solved so far (unsolved pools are still zero)
        inflow = jnp.einsum("lqp,pl->ql", op.fractions[:, idx, :], op.decay * x)
        x = x.at[idx].set(_group_solve(op, pools, coupled, rhs[idx] + inflow, transpose=False))
    return x


def solve_transpose(op: CompartmentalOperator, rhs: Float[Array, "P L"]) -> Float[Array, "P L"]:
    """Solve ``S^T y = rhs`` by structure (groups in reverse order)."""
    y = jnp.zeros_like(rhs)
    for pools, coupled in reversed(list(zip(op.groups, op.coupled, strict=True))):
        idx = np.array(pools)
        back = op.decay[idx] * jnp.einsum("lqp,ql->pl", op.fractions[:, :, idx], y)
        y = y.at[idx].set(_group_solve(op, pools, coupled, rhs[idx] + back, transpose=True))
    return y


def steady_state(
    op: CompartmentalOperator, rhs: Float[Array, "P L"], method: str = "structured"
) -> Float[Array, "P L"]:
    """Solve ``S x = rhs`` with implicit-differentiation gradients.

    Args:
        op: the operator.
        rhs: input rates, shape (P, L) (gC m-3 day-1 for the carbon models).
        method: ``"structured"`` (block sweeps, the fast path) or ``"dense"`` (the reference:
            ``jnp.linalg.solve`` on the (P*L)x(P*L) matrix).

    Returns:
        x, shape (P, L).
    """
    if method == "dense":
        P, L = op.shape
        return jnp.linalg.solve(op.to_dense(), rhs.reshape(P * L)).reshape(P, L)
    if method != "structured":
        raise ValueError(f"method must be 'structured' or 'dense', got {method!r}")
    return jax.lax.custom_linear_solve(
        op.matvec,
        rhs,
        solve=lambda _, b: solve(op, b),
        transpose_solve=lambda _, b: solve_transpose(op, b),
    )


def condition(
    op: CompartmentalOperator, method: str = "structured"
) -> tuple[Array, Bool[Array, ""]]:
    """Reciprocal 1-norm condition number of ``S`` (see the module docstring).

    Returns:
        ``(rcond, finite)``: rcond = 1 / (||S||_1 ||S^-1||_1) (0 for a singular matrix) and
        whether the inverse estimate is finite. Not differentiated (stop_gradient).
    """
    op = jax.lax.stop_gradient(op)
    ones = jnp.ones(op.shape, op.decay.dtype)
    if method == "dense":
        P, L = op.shape
        w = jnp.linalg.solve(op.to_dense().T, ones.reshape(P * L))
    else:
        w = solve_transpose(op, ones)
    inv_norm = jnp.max(jnp.abs(w))
    norm = jnp.max(op.column_abs_sums())
    finite = jnp.isfinite(inv_norm) & jnp.isfinite(norm)
    rcond = jnp.where(finite & (inv_norm > 0), 1.0 / (norm * inv_norm), 0.0)
    return rcond, finite
