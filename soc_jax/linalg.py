"""Structured linear algebra for compartmental soil-carbon models.

The matrix models of CLM5 and COMPAS share one operator on ``P`` pools x ``L`` layers::

    dX/dt = I - S X,        S = V - A K,        A = -1 + F

with ``K = diag(k)`` the decomposition rates (day-1), ``F`` the transfer fractions (``F[q, p]``
is the fraction of pool ``p``'s decomposition flux that enters pool ``q`` in the same layer) and
``V`` the vertical transport, one tridiagonal matrix shared by the transported pools. The steady
state solves ``S X = I``.

``S`` is 140x140 for CLM5 but far from generic: ``K`` and ``F`` act within a layer, ``V`` within a
pool, and carbon flows one way between groups of pools (CWD -> litter -> soil). `factor` exploits
that: each group's diagonal block is block-tridiagonal over layers, with blocks of the group's size
(1x1 for uncoupled litter pools, 3x3 for the coupled soil pools), and gets a block LU (block
Thomas). `solve` sweeps the groups in order; `solve_transpose` sweeps them in reverse order with
the same factors, so the forward solve, the condition number and the gradient share one
factorization.
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

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float

from .transport import Tridiagonal

__all__ = [
    "CompartmentalOperator",
    "Factorization",
    "factor",
    "solve",
    "solve_transpose",
    "steady_state",
    "guarded_steady_state",
    "condition",
]


def _transfer(fractions: Float[Array, "L Q P"], flux: Float[Array, "P L"]) -> Float[Array, "Q L"]:
    """``sum_p F[l, q, p] flux[p, l]``: carbon received per pool and layer.

    Written as broadcast multiply-adds: under vmap an einsum becomes a batched matrix product
    of tiny matrices, several times slower on a CPU than this fused elementwise form.
    """
    return jnp.sum(fractions * flux.T[:, None, :], axis=-1).T


def _transfer_transpose(
    fractions: Float[Array, "L Q P"], y: Float[Array, "Q L"]
) -> Float[Array, "P L"]:
    """``sum_q F[l, q, p] y[q, l]`` (the transpose of `_transfer`)."""
    return jnp.sum(fractions * y.T[:, :, None], axis=1).T


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
        transfer_in = _transfer(self.fractions, flux)
        return self._mask()[:, None] * self.transport.matvec(x) + flux - transfer_in

    def rmatvec(self, y: Float[Array, "P L"]) -> Float[Array, "P L"]:
        """``S^T @ y`` for y of shape (P, L)."""
        t = self.transport
        vt = Tridiagonal(
            jnp.concatenate([jnp.zeros(1), t.upper[:-1]]),
            t.diag,
            jnp.concatenate([t.lower[1:], jnp.zeros(1)]),
        )
        back = _transfer_transpose(self.fractions, y)
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


def _matvec(M: Array, v: Array) -> Array:
    """``M @ v`` for a small (b, b) block as broadcast multiply-adds (no dot under vmap)."""
    return jnp.sum(M * v[None, :], axis=-1)


class _BlockFactor(NamedTuple):
    """Block LU of one block-tridiagonal system: ``S = L U``.

    ``L`` has pivot blocks ``M_l`` on its diagonal and ``diag(lower[l])`` below it; ``U`` has
    identity blocks on its diagonal and ``C_l = M_l^-1 diag(upper[l])`` above it. Stored:
    ``inv_pivot[l] = M_l^-1`` (L, b, b), ``c`` (L, b, b) and ``lower`` (L, b).
    """

    inv_pivot: Array
    c: Array
    lower: Array


def _block_factor(
    blocks: Float[Array, "L b b"], lower: Float[Array, "L b"], upper: Float[Array, "L b"]
) -> _BlockFactor:
    """Block LU (block Thomas) of the system with rows
    ``diag(lower[l]) x[l-1] + blocks[l] x[l] + diag(upper[l]) x[l+1]``."""
    b = blocks.shape[-1]
    eye = jnp.eye(b, dtype=blocks.dtype)

    def step(c_prev, row):
        blk, lo, up = row
        inv_pivot = _small_solve(blk - lo[:, None] * c_prev, eye)
        c = inv_pivot * up[None, :]
        return c, (inv_pivot, c)

    _, (inv_pivot, c) = jax.lax.scan(
        step, jnp.zeros((b, b), blocks.dtype), (blocks, lower, upper), unroll=4
    )
    return _BlockFactor(inv_pivot, c, lower)


def _block_solve(f: _BlockFactor, rhs: Float[Array, "L b"]) -> Float[Array, "L b"]:
    """Solve ``L U x = rhs``: forward sweep with L, backward sweep with U."""

    def forward(y_prev, row):
        inv_pivot, lo, r = row
        y = _matvec(inv_pivot, r - lo * y_prev)
        return y, y

    _, ys = jax.lax.scan(forward, jnp.zeros_like(rhs[0]), (f.inv_pivot, f.lower, rhs), unroll=4)

    def backward(x_next, row):
        c, y = row
        x = y - _matvec(c, x_next)
        return x, x

    _, xs = jax.lax.scan(backward, ys[-1], (f.c[:-1], ys[:-1]), reverse=True, unroll=4)
    return jnp.concatenate([xs, ys[-1:]], axis=0)


def _block_solve_transpose(f: _BlockFactor, rhs: Float[Array, "L b"]) -> Float[Array, "L b"]:
    """Solve ``(L U)^T x = U^T L^T x = rhs`` with the same factors."""
    c_prev = jnp.concatenate([jnp.zeros_like(f.c[:1]), f.c[:-1]])

    def forward(w_prev, row):  # U^T w = rhs: w[l] = rhs[l] - C[l-1]^T w[l-1]
        c, g = row
        w = g - _matvec(c.T, w_prev)
        return w, w

    _, ws = jax.lax.scan(forward, jnp.zeros_like(rhs[0]), (c_prev, rhs), unroll=4)
    lower_next = jnp.concatenate([f.lower[1:], jnp.zeros_like(f.lower[:1])])

    def backward(x_next, row):  # L^T x = w: x[l] = M[l]^-T (w[l] - lower[l+1] x[l+1])
        inv_pivot, lo, w = row
        x = _matvec(inv_pivot.T, w - lo * x_next)
        return x, x

    _, xs = jax.lax.scan(
        backward, jnp.zeros_like(rhs[0]), (f.inv_pivot, lower_next, ws), reverse=True, unroll=4
    )
    return xs


class _DiagonalFactor(NamedTuple):
    """A group without transport or internal transfers: its block is ``diag(k)``."""

    inverse: Array  # (b, L), 1 / k


Factorization = tuple[_BlockFactor | _DiagonalFactor, ...]
"""Per-group block LU factors of ``S`` (uncoupled groups: a batch of scalar factors)."""


def factor(op: CompartmentalOperator) -> Factorization:
    """Factor the diagonal blocks of ``S``, one per pool group (no gradients flow through)."""
    op = jax.lax.stop_gradient(op)
    t = op.transport
    factors = []
    for pools, coupled in zip(op.groups, op.coupled, strict=True):
        idx = np.array(pools)
        m = op._mask()[idx]  # (b,)
        k = op.decay[idx].T  # (L, b)
        lower = t.lower[:, None] * m
        upper = t.upper[:, None] * m
        diag = t.diag[:, None] * m + k  # (L, b)
        if not coupled and not any(op.transported[p] for p in pools):
            factors.append(_DiagonalFactor(1.0 / op.decay[idx]))  # e.g. CWD: no sweep needed
        elif coupled:
            F = op.fractions[:, idx[:, None], idx[None, :]]  # (L, recv, donor)
            blocks = jax.vmap(jnp.diag)(diag) - F * k[:, None, :]
            factors.append(_block_factor(blocks, lower, upper))
        else:  # b independent scalar systems, factored side by side (pool axis 1)
            factors.append(
                jax.vmap(_block_factor, in_axes=1, out_axes=1)(
                    diag[:, :, None, None], lower[:, :, None], upper[:, :, None]
                )
            )
    return tuple(factors)


def _group_solve(
    f: _BlockFactor | _DiagonalFactor, coupled: bool, rhs: Array, transpose: bool
) -> Array:
    """Solve one group's diagonal block (or its transpose); rhs and result (b, L)."""
    if isinstance(f, _DiagonalFactor):
        return rhs * f.inverse
    fn = _block_solve_transpose if transpose else _block_solve
    if coupled:
        return fn(f, rhs.T).T
    x = jax.vmap(fn, in_axes=(1, 1), out_axes=1)(f, rhs.T[:, :, None])  # (L, b, 1)
    return x[..., 0].T


def solve(
    op: CompartmentalOperator, rhs: Float[Array, "P L"], factors: Factorization | None = None
) -> Float[Array, "P L"]:
    """Solve ``S x = rhs`` by structure (groups in order, block LU within each)."""
    factors = factor(op) if factors is None else factors
    x = jnp.zeros_like(rhs)
    for pools, coupled, f in zip(op.groups, op.coupled, factors, strict=True):
        idx = np.array(pools)
        # carbon arriving from pools solved so far (unsolved pools are still zero)
        inflow = _transfer(op.fractions[:, idx, :], op.decay * x)
        x = x.at[idx].set(_group_solve(f, coupled, rhs[idx] + inflow, transpose=False))
    return x


def solve_transpose(
    op: CompartmentalOperator, rhs: Float[Array, "P L"], factors: Factorization | None = None
) -> Float[Array, "P L"]:
    """Solve ``S^T y = rhs`` by structure (groups in reverse order, same factors)."""
    factors = factor(op) if factors is None else factors
    y = jnp.zeros_like(rhs)
    groups = list(zip(op.groups, op.coupled, factors, strict=True))
    for pools, coupled, f in reversed(groups):
        idx = np.array(pools)
        back = op.decay[idx] * _transfer_transpose(op.fractions[:, :, idx], y)
        y = y.at[idx].set(_group_solve(f, coupled, rhs[idx] + back, transpose=True))
    return y


def steady_state(
    op: CompartmentalOperator,
    rhs: Float[Array, "P L"],
    method: str = "structured",
    factors: Factorization | None = None,
) -> Float[Array, "P L"]:
    """Solve ``S x = rhs`` with implicit-differentiation gradients.

    Args:
        op: the operator.
        rhs: input rates, shape (P, L) (gC m-3 day-1 for the carbon models).
        method: ``"structured"`` (block sweeps, the fast path) or ``"dense"`` (the reference:
            ``jnp.linalg.solve`` on the (P*L)x(P*L) matrix).
        factors: `factor(op)`, if already computed (e.g. shared with `condition`).

    Returns:
        x, shape (P, L).
    """
    if method == "dense":
        P, L = op.shape
        return jnp.linalg.solve(op.to_dense(), rhs.reshape(P * L)).reshape(P, L)
    if method != "structured":
        raise ValueError(f"method must be 'structured' or 'dense', got {method!r}")
    factors = factor(op) if factors is None else jax.lax.stop_gradient(factors)
    # Gradients: d x = S^-1 (d rhs - dS x), reverse mode one transposed solve (same factors).
    return jax.lax.custom_linear_solve(
        op.matvec,
        rhs,
        solve=lambda _, b: solve(op, b, factors),
        transpose_solve=lambda _, b: solve_transpose(op, b, factors),
    )


def condition(
    op: CompartmentalOperator, method: str = "structured", factors: Factorization | None = None
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
        w = solve_transpose(op, ones, factors)
    inv_norm = jnp.max(jnp.abs(w))
    norm = jnp.max(op.column_abs_sums())
    finite = jnp.isfinite(inv_norm) & jnp.isfinite(norm)
    rcond = jnp.where(finite & (inv_norm > 0), 1.0 / (norm * inv_norm), 0.0)
    return rcond, finite


def _identity_like(op: CompartmentalOperator) -> CompartmentalOperator:
    """The identity operator with ``op``'s structure (k = 1, no transfers, no transport)."""
    t = op.transport
    zero = jnp.zeros_like(t.diag)
    return eqx.tree_at(
        lambda o: (o.decay, o.fractions, o.transport),
        op,
        (jnp.ones_like(op.decay), jnp.zeros_like(op.fractions), Tridiagonal(zero, zero, zero)),
    )


def _identity_factors(factors: Factorization) -> Factorization:
    """The factorization of the identity operator, with the structure of ``factors``."""
    out = []
    for f in factors:
        if isinstance(f, _DiagonalFactor):
            out.append(_DiagonalFactor(jnp.ones_like(f.inverse)))
        else:
            b = f.inv_pivot.shape[-1]
            eye = jnp.broadcast_to(jnp.eye(b, dtype=f.inv_pivot.dtype), f.inv_pivot.shape)
            out.append(_BlockFactor(eye, jnp.zeros_like(f.c), jnp.zeros_like(f.lower)))
    return tuple(out)


# A solution whose carbon sum exceeds this (gC m-3 summed over pools and layers) is treated as
# overflowed: x would not be finite in float64 arithmetic downstream.
_MAX_TOTAL = 1e300


def guarded_steady_state(
    op: CompartmentalOperator, rhs: Float[Array, "P L"]
) -> tuple[Float[Array, "P L"], Float[Array, ""], Bool[Array, ""]]:
    """Structured `steady_state` whose failures are finite and have exactly zero gradient.

    One factorization serves the solve, the condition number and the gradient. Before solving,
    the transposed solve ``w = S^-T 1`` gives ``rcond`` (`condition`) and, because ``S^-1 >= 0``
    for these M-matrices, the exact carbon total ``sum(x) = w . rhs`` of the solution. The
    system is *usable* when ``w`` is finite and positive and that total is below 1e300. An
    unusable system (zero decay rates from an underflowed depth scalar, so ``1/k = inf``; a
    singular matrix) is replaced, operator, factors and inputs, by the identity and zero inputs:
    its solution is 0, and since the replacement is a ``where`` on the inputs, its gradient with
    respect to every input is exactly zero (no ``0 * inf``). A loss that masks failed profiles
    therefore gets exactly the gradient of the batch without them.

    Args:
        op: the operator.
        rhs: input rates (P, L), gC m-3 day-1, non-negative.

    Returns:
        ``(x, rcond, usable)``: x (P, L) (zeros where not usable), the reciprocal 1-norm
        condition number (0 where not usable) and the usable flag.
    """
    factors = factor(op)
    ones = jnp.ones(op.shape, op.decay.dtype)
    w = solve_transpose(jax.lax.stop_gradient(op), ones, factors)
    total = jnp.sum(w * jax.lax.stop_gradient(rhs))
    inv_norm = jnp.max(jnp.abs(w))
    norm = jnp.max(jax.lax.stop_gradient(op).column_abs_sums())
    usable = (
        jnp.all(jnp.isfinite(w))
        & (inv_norm > 0)
        & jnp.isfinite(norm)
        & (jnp.abs(total) < _MAX_TOTAL)
    )
    rcond = jnp.where(usable, 1.0 / (norm * jnp.where(usable, inv_norm, 1.0)), 0.0)

    def pick(a, b):
        return jnp.where(usable, a, b)

    op_safe = jax.tree.map(pick, op, _identity_like(op))
    factors_safe = jax.tree.map(pick, factors, _identity_factors(factors))
    rhs_safe = jnp.where(usable, rhs, 0.0)
    x = steady_state(op_safe, rhs_safe, factors=factors_safe)
    return x, rcond, usable
