"""What CLM5 and COMPAS share: failure flags, the steady-state interface, the solve skeleton.

**Flags.** A steady state is always finite. Instead of NaN it carries ``flags``, an integer bit
set per profile that says what went wrong, and ``ok = (flags == 0)``:

=============  =====  ==========================================================================
flag           bit    meaning
=============  =====  ==========================================================================
``INPUT``      1      the forcing breaks a rule (`soc_jax.forcing.Forcing.validate`)
``PRIOR``      2      parameters outside the prior box (mode ``"proda"``) or not finite and
                      non-negative (other modes)
``SINGULAR``   4      reciprocal condition number below machine epsilon: MATLAB warns "matrix
                      is close to singular" and PRODA's DA counts a failed simulation
``NONFINITE``  8      the system cannot be solved in float64 (a zero decay rate from an
                      underflowed depth scalar, an exactly singular matrix, overflow) or a
                      result is not finite
``NEGATIVE``   16     COMPAS: a closed-form pool is negative (where PRODA negates its output)
``MIC_RATIO``  32     COMPAS, mode ``"proda"``: the DA check, soil carbon < 10 x MIC stock
=============  =====  ==========================================================================

Values under the flags: ``INPUT`` and ``PRIOR`` profiles are evaluated at a harmless stand-in
(valid reference forcing, parameters clipped into the box) and their pools are zero; a
``NONFINITE`` system's pools are zero; ``SINGULAR``, ``NEGATIVE`` and ``MIC_RATIO`` profiles keep
the computed values (for ``SINGULAR`` the structured solve of the M-matrix stays accurate: see
README "Failure flags"). Gradients are finite wherever values are, and a failed profile that a
loss masks with ``jnp.where(result.ok, loss, 0)`` contributes exactly zero gradient.

Which flags count as failure is the caller's choice: PRODA's adaptive Metropolis honours all of
them, as MATLAB did; a gradient sampler may accept ``SINGULAR`` (`ok_ignoring`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..linalg import CompartmentalOperator, condition, guarded_steady_state
from ..linalg import steady_state as _solve
from ..parameters import ParameterSpace

__all__ = [
    "INPUT",
    "PRIOR",
    "SINGULAR",
    "NONFINITE",
    "NEGATIVE",
    "MIC_RATIO",
    "FLAG_NAMES",
    "describe_flags",
    "ok_ignoring",
    "combine_flags",
    "SteadyStateModel",
    "RCOND_MIN",
]

RCOND_MIN: float = float(np.finfo(np.float64).eps)  # MATLAB warns below eps: a failed simulation

INPUT: int = 1
PRIOR: int = 2
SINGULAR: int = 4
NONFINITE: int = 8
NEGATIVE: int = 16
MIC_RATIO: int = 32

FLAG_NAMES: dict[int, str] = {
    INPUT: "forcing breaks an input rule",
    PRIOR: "parameters outside the prior (or not finite and non-negative)",
    SINGULAR: "nearly singular system (rcond < eps, a failed simulation in PRODA)",
    NONFINITE: "system not solvable in float64 or non-finite result",
    NEGATIVE: "negative pool in the COMPAS closed form (PRODA's sign flip)",
    MIC_RATIO: "COMPAS DA check failed (soil carbon < 10 x microbial carbon)",
}


def combine_flags(*conditions: tuple[int, Bool[ArrayLike, ""]]) -> Int[Array, ""]:
    """Bit set from ``(flag, condition)`` pairs: ``sum(flag * condition)`` as int32."""
    out = jnp.zeros((), jnp.int32)
    for flag, cond in conditions:
        out = out | jnp.where(cond, jnp.int32(flag), jnp.int32(0))
    return out


def ok_ignoring(flags: Int[ArrayLike, "..."], ignore: int = 0) -> Bool[Array, "..."]:
    """``True`` where no flag other than those in ``ignore`` is set.

    Example: ``ok_ignoring(result.flags, SINGULAR)`` accepts nearly singular but solved systems.
    """
    return (jnp.asarray(flags) & ~jnp.int32(ignore)) == 0


def describe_flags(flags: Int[ArrayLike, "..."]) -> str | np.ndarray:
    """The reasons behind ``flags`` in words: ``"ok"`` or the set flags joined by ``"; "``.

    Args:
        flags: one profile's flags (returns a str) or an array of them (returns an object
            array of str of the same shape).
    """
    arr = np.asarray(flags)

    def one(value: int) -> str:
        names = [text for bit, text in FLAG_NAMES.items() if value & bit]
        unknown = value & ~sum(FLAG_NAMES)
        if unknown:
            names.append(f"unknown flag bits {unknown}")
        return "; ".join(names) if names else "ok"

    if arr.ndim == 0:
        return one(int(arr))
    return np.vectorize(one, otypes=[object])(arr)


@runtime_checkable
class SteadyStateModel(Protocol):
    """What calibration, the PRODA network and end-to-end training rely on from a model.

    `soc_jax.models.clm5` and `soc_jax.models.compas` (the modules) satisfy it.

    Attributes:
        PARAMETERS: the model's `ParameterSpace` (names, bounds, units, groups, the normalized,
            physical and unconstrained maps).
    """

    PARAMETERS: ParameterSpace

    def prepare(self, forcing: Any, mode: Any = None) -> Any:
        """Forcing-only work of one profile, done once (vmap for batches)."""

    def steady_state(self, params: Any, forcing: Any, mode: Any = None) -> Any:
        """Steady state of one profile from physical parameters and a forcing or prepared profile;
        has ``pools``, ``soc`` (20,) gC m-3, ``ok``, ``flags``, ``rcond``."""

    def tendency(self, pools: Any, params: Any, forcing: Any, mode: Any = None) -> Any:
        """``dX/dt`` at ``pools``, gC m-3 day-1."""


# -- the steady-state skeleton both models run -------------------------------------------------
def parameters_ok(space: ParameterSpace, params: Array, *, within_prior: bool) -> Bool[Array, ""]:
    """Traceable parameter rule: in the prior box, or finite and >= 0 (``within_prior=False``)."""
    if within_prior:
        return space.in_bounds(params)
    return jnp.all(jnp.isfinite(params) & (params >= 0))


def stand_in_parameters(
    space: ParameterSpace, params: Array, ok: Bool[ArrayLike, ""]
) -> Float[Array, " n"]:
    """``params`` where ``ok``, else the prior midpoint: flagged profiles stay finite."""
    return jnp.where(ok, params, jnp.asarray(space.midpoint(), params.dtype))


def solve_guarded(
    op: CompartmentalOperator, rhs: Array, method: str
) -> tuple[Array, Array, Bool[Array, ""]]:
    """``(x, rcond, usable)`` of ``S x = rhs`` (`soc_jax.linalg.guarded_steady_state`).

    ``method="dense"`` is the reference path (dense LU, autodiff through it): values only.
    """
    if method == "structured":
        return guarded_steady_state(op, rhs)
    if method != "dense":
        raise ValueError(f"method must be 'structured' or 'dense', got {method!r}")
    x = _solve(op, rhs, method="dense")
    rcond, finite = condition(op, method="dense")
    usable = finite & jnp.all(jnp.isfinite(x))
    return jnp.where(usable, x, 0.0), rcond, usable


def finish(
    valid: Bool[ArrayLike, ""],
    params_ok: Bool[ArrayLike, ""],
    rcond: Array,
    usable: Bool[ArrayLike, ""],
    x: Array,
    extra: tuple[tuple[int, Bool[ArrayLike, ""]], ...] = (),
) -> tuple[Int[Array, ""], Array]:
    """Flags and finite pools of a solved profile.

    Args:
        valid: the forcing obeys its rules.
        params_ok: `parameters_ok`.
        rcond: reciprocal condition number of the solved system.
        usable: the system could be solved (`soc_jax.linalg.guarded_steady_state`).
        x: the pools as computed.
        extra: model-specific ``(flag, condition)`` pairs, counted only for computed profiles.

    Returns:
        ``(flags, pools)``: pools are ``x`` where finite and computed, 0 elsewhere.
    """
    computed = valid & params_ok
    finite = jnp.isfinite(x)
    flags = combine_flags(
        (INPUT, ~valid),
        (PRIOR, ~params_ok),
        (SINGULAR, computed & (rcond < RCOND_MIN)),
        (NONFINITE, computed & ~(usable & jnp.all(finite))),
        *((flag, computed & cond) for flag, cond in extra),
    )
    return flags, jnp.where(computed & finite, x, 0.0)
