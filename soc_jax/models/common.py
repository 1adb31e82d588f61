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

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .. import grid
from .._checks import is_concrete, require_x64, validate_profile_inputs
from ..forcing import (
    DAYS_PER_YEAR,
    Forcing,
    beta_profile,
    input_totals,
    temperature_exponent,
    where_valid,
)
from ..grid import DZ, N_LAYERS
from ..linalg import CompartmentalOperator, condition, guarded_steady_state
from ..linalg import steady_state as _solve
from ..parameters import ParameterSpace
from ..transport import TransportBasis, transport_basis

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

Method = Literal["structured", "dense"]  # the solver of `solve_guarded`

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


def prepare_batch(prepare_one: Any, forcing: Any, mode: str) -> Any:
    """Run a model's one-profile ``prepare_one(forcing, mode)`` on a profile or a batch.

    Outside ``jit`` a single profile whose forcing breaks a rule raises ``ValueError`` naming the
    field; a batch (or a traced forcing) is flagged per profile instead.
    """
    if is_concrete(forcing) and forcing.batch_shape == ():
        forcing.validate()
    fn = lambda f: prepare_one(f, mode)  # noqa: E731
    for _ in forcing.batch_shape:
        fn = jax.vmap(fn)
    return fn(forcing)


# -- what both models' prepared profiles, matrix forms and steady states hold ------------------
class PreparedProfile(eqx.Module):
    """Forcing-only work every model does once per profile (SPEC 1.4, 1.7-1.8).

    In data assimilation a profile's forcing is fixed while its parameters change hundreds of
    thousands of times; a model's ``steady_state`` and ``matrices`` accept its ``Prepared``
    (a subclass holding also the model's own fields and the ``mode`` it was prepared for) in
    place of the `Forcing` and return the same result.

    Attributes:
        transport: the 12 monthly Patankar operators reduced to a `TransportBasis`.
        temperature_exponent: ``e`` of ``xi_T = q10**e``, (12, 20).
        w_scalar: W_SCALAR, (12, 20).
        input_totals: annual column inputs to CWD, LITR1-3, (4,), gC m-2 yr-1.
        thawed: ALTMAX_LASTYEAR > 0 in all months (the beta input profile applies).
        valid: the forcing obeys its rules; if not, every field is the
            `soc_jax.forcing.reference_forcing`'s and results carry the ``INPUT`` flag.
    """

    transport: TransportBasis
    temperature_exponent: Float[Array, "12 20"]
    w_scalar: Float[Array, "12 20"]
    input_totals: Float[Array, "4"]
    thawed: Bool[Array, ""]
    valid: Bool[Array, ""]


def prepare_shared(forcing: Forcing) -> tuple[Forcing, dict[str, Any]]:
    """The forcing to use (the reference forcing where it breaks a rule) and the
    `PreparedProfile` fields of one profile, as keyword arguments."""
    forcing, valid = where_valid(forcing)
    return forcing, dict(
        transport=transport_basis(forcing.nbedrock, forcing.altmax, forcing.altmax_lastyear),
        temperature_exponent=temperature_exponent(forcing.tsoi),
        w_scalar=forcing.w_scalar,
        input_totals=input_totals(forcing.litter_input),
        thawed=jnp.all(forcing.altmax_lastyear > 0),
        valid=valid,
    )


class MatrixForm(eqx.Module):
    """The linear system ``S X = I`` of one profile (a model's matrices extend it).

    Attributes:
        operator: ``S = V - A K`` (`soc_jax.linalg.CompartmentalOperator`), rates in day-1.
        inputs: input rates I, (pools, 20), gC m-3 day-1.
        input_profile: vertical distribution of inputs (fraction of column input per layer),
            shape (20,).
        input_totals: annual column inputs to CWD, LITR1, LITR2, LITR3, shape (4,), gC m-2 yr-1.
    """

    operator: CompartmentalOperator
    inputs: Float[Array, "pools 20"]
    input_profile: Float[Array, "20"]
    input_totals: Float[Array, "4"]


class SteadyStateCore(eqx.Module):
    """The fields of every model's steady state of one profile.

    Attributes:
        pools: carbon density per pool and layer, (pools, 20), gC m-3. Always finite: zero
            where nothing could be computed (see ``flags``).
        soc: modelled soil organic carbon per layer, (20,), gC m-3.
        ok: no flag set.
        flags: why not ok, a bit set of the flags of this module; `describe_flags` says it in
            words.
        rcond: reciprocal 1-norm condition number of the system matrix (0 if not solvable).
    """

    pools: Float[Array, "pools 20"]
    soc: Float[Array, "20"]
    ok: Bool[Array, ""]
    flags: Int[Array, ""]
    rcond: Float[Array, ""]


# -- science both models share -----------------------------------------------------------------
def decay_rate(tau: Array) -> Array:
    """Decay rate ``1/(365 tau)`` day-1 of turnover times ``tau`` (yr); ``inf`` at tau = 0.

    The double ``where`` keeps the gradient finite (zero) at tau = 0.
    """
    pos = tau > 0
    return jnp.where(pos, 1.0 / (DAYS_PER_YEAR * jnp.where(pos, tau, 1.0)), jnp.inf)


def beta_inputs(beta: Array, prep: PreparedProfile) -> tuple[Array, Array]:
    """PRODA's litter inputs: ``(profile (20,), rates (4, 20) gC m-3 day-1)`` (SPEC 1.8).

    The column inputs are spread over depth by Jackson's beta profile with the all-months
    ``ALTMAX_LASTYEAR > 0`` rule.
    """
    profile = beta_profile(beta, prep.thawed)
    dz = jnp.asarray(DZ[:N_LAYERS])
    return profile, prep.input_totals[:, None] * profile[None, :] / (dz * DAYS_PER_YEAR)


def stocks(soc: Float[ArrayLike, "... 20"]) -> grid.Stocks:
    """Column stocks 0-30, 0-100, 0-200 cm and total of layer SOC (gC m-3) -> gC m-2."""
    return grid.stocks(soc)


# -- the plumbing a model plugs its matrices and solve into -------------------------------------
class Solved(NamedTuple):
    """A guarded solve of a model's linear system (`Skeleton.solve`).

    Attributes:
        prepared: the prepared profile.
        mode: the mode used.
        params_ok: `parameters_ok`.
        defined: every rate is defined (else no steady state exists).
        matrices: the model's matrices at the (stand-in where flagged) parameters.
        x: the solution with negative entries clipped to 0 (PRODA's clip).
        rcond: reciprocal condition number, 0 where not ``defined``.
        usable: the system could be solved.
    """

    prepared: Any
    mode: str
    params_ok: Bool[Array, ""]
    defined: Bool[Array, ""]
    matrices: Any
    x: Array
    rcond: Array
    usable: Bool[Array, ""]

    def finish(
        self, x: Array, extra: tuple[tuple[int, Bool[ArrayLike, ""]], ...] = ()
    ) -> tuple[Int[Array, ""], Array]:
        """`finish` of ``x`` (pools, NaN where not ``defined``): ``(flags, pools)``."""
        return finish(self.prepared.valid, self.params_ok, self.rcond, self.usable, x, extra)


@dataclasses.dataclass(frozen=True)
class Skeleton:
    """The steady-state plumbing shared by the models: modes, prepared profiles, checks, solve.

    A model module builds one and plugs in its science: its ``Prepared`` type and one-profile
    prepare, its matrix assembly and the rule that its rates are defined.

    Attributes:
        name: the model's name in messages (``"CLM5"``).
        space: the model's `ParameterSpace`.
        modes: the modes it knows; the first (``"proda"``) is the default.
        prior_modes: the modes whose parameters must lie in the prior box (in the others they
            must be finite and >= 0).
        prepared_type: the model's ``Prepared`` class.
        prepare_one: one-profile prepare ``(forcing, mode) -> Prepared``.
        build: matrix assembly ``(params, prepared, mode) -> matrices`` with ``operator`` and
            ``inputs``.
        rates_defined: ``params -> bool``, every rate the solve needs is defined.
    """

    name: str
    space: ParameterSpace
    modes: tuple[str, ...]
    prior_modes: tuple[str, ...]
    prepared_type: type
    prepare_one: Callable[[Any, str], Any]
    build: Callable[[Array, Any, str], Any]
    rates_defined: Callable[[Array], Bool[Array, ""]]

    def check_mode(self, mode: str) -> None:
        """Raise ``ValueError`` unless ``mode`` is one of `modes`."""
        if mode not in self.modes:
            raise ValueError(f"mode must be {' or '.join(map(repr, self.modes))}, got {mode!r}")

    def prepare(self, forcing: Any, mode: str) -> Any:
        """The model's ``prepare``: `prepare_batch` of `prepare_one` after checking ``mode``."""
        self.check_mode(mode)
        return prepare_batch(self.prepare_one, forcing, mode)

    def as_prepared(self, forcing: Any, mode: str | None) -> tuple[Any, str]:
        """The prepared profile and the mode to use (a prepared profile fixes its mode).

        Args:
            forcing: a `Forcing` (prepared here, traceably) or the model's ``Prepared``.
            mode: the mode asked for, or None for the prepared profile's (else ``"proda"``).
        """
        if isinstance(forcing, self.prepared_type):
            if mode is not None and mode != forcing.mode:
                raise ValueError(
                    f"profile was prepared for mode={forcing.mode!r}, not {mode!r}: call "
                    f"prepare(forcing, mode={mode!r})"
                )
            return forcing, forcing.mode
        mode = self.modes[0] if mode is None else mode
        self.check_mode(mode)
        return self.prepare_one(forcing, mode), mode

    def matrices(self, params: ArrayLike, forcing: Any, mode: str | None) -> Any:
        """The model's ``matrices``: `build` on the prepared profile."""
        require_x64(f"{self.name} matrices")
        prepared, mode = self.as_prepared(forcing, mode)
        return self.build(jnp.asarray(params), prepared, mode)

    def checked_inputs(
        self, params: ArrayLike, forcing: Any, mode: str | None
    ) -> tuple[Array, str]:
        """Entry checks of a model's ``steady_state``: ``(float64 params, mode)``.

        Pure and jit/vmap/grad-able: outside ``jit`` bad input raises ``ValueError`` naming the
        field or parameter; inside ``jit``/``vmap`` it comes back as a flag (``ok = False``),
        with finite pools and exactly zero gradient for a masked loss.
        """
        require_x64(f"{self.name} steady state")
        prepared = isinstance(forcing, self.prepared_type)
        if not prepared:
            self.check_mode(self.modes[0] if mode is None else mode)
        mode = forcing.mode if prepared and mode is None else mode
        mode = self.modes[0] if mode is None else mode
        validate_profile_inputs(self.space, params, forcing, within_prior=mode in self.prior_modes)
        return jnp.asarray(params, dtype=jnp.float64), mode

    def solve(self, params: Array, forcing: Any, mode: str, method: str) -> Solved:
        """Flag the parameters, build the matrices at safe parameters and solve ``S x = I``.

        A zero turnover time (or another undefined rate) has no steady state (flagged
        ``NONFINITE`` by `Solved.finish`, pools 0); the stand-in parameters keep its gradient
        finite (zero), as for a flagged profile.
        """
        prepared, mode = self.as_prepared(forcing, mode)
        params_ok = parameters_ok(self.space, params, within_prior=mode in self.prior_modes)
        defined = self.rates_defined(params)
        params = stand_in_parameters(self.space, params, params_ok & defined)
        m = self.build(params, prepared, mode)
        x, rcond, usable = solve_guarded(m.operator, m.inputs, method)
        x = jnp.where(x < 0, 0.0, x)
        rcond = jnp.where(defined, rcond, 0.0)
        return Solved(prepared, mode, params_ok, defined, m, x, rcond, usable)
