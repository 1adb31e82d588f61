r"""CLM5 vertically resolved soil carbon (CENTURY-type, first order) in matrix form.

Seven pools (coarse woody debris, metabolic, cellulose and lignin litter, fast, slow and passive
soil organic matter) in 20 layers (SPEC 1.2) evolve as

.. math::
    \frac{dX}{dt} = I + A \xi K X - V X ,

with first-order decomposition rates :math:`K\xi` (day-1) modified by temperature, moisture,
oxygen, depth and (litter only) nitrogen (SPEC 1.4-1.5), transfer matrix :math:`A` (SPEC 1.6),
Patankar vertical transport :math:`V` (SPEC 1.7, `soc_jax.transport`) and inputs :math:`I`
distributed over depth by Jackson's beta model (SPEC 1.8). PRODA uses annual means of the
monthly :math:`K` and :math:`V` and solves the steady state :math:`(V - AK) X = I` directly
(SPEC 1.9), then clips negative pools to zero. Modelled SOC is s1 + s2 + s3.

Two modes:

- ``"proda"`` reproduces the authors' data-assimilation code (``is_default = 0``): all 21
  parameters as given, ``xi_W = min(W_SCALAR w_scaling, 1)``, beta input profile with the
  all-months ``ALTMAX_LASTYEAR > 0`` rule.
- ``"default"`` is CLM5's customary configuration (``is_default = 1``): fs1s2 and fs1s3 from the
  layer sand content, CESM2's own per-layer inputs, ``xi_W = W_SCALAR`` (``w_scaling`` and
  ``beta`` unused). Pass `default_parameters()` (or any vector) as ``params``.

Units: pools and SOC in gC m-3, rates in day-1, inputs in gC m-3 day-1, stocks in gC m-2.

References:
    Lawrence et al. (2019), JAMES 11, 4245-4287 (CLM5).
    Lu et al. (2020), JAMES 12 (CLM5 matrix form).
    Tao et al. (2024), Global Change Biology 30:e17297 (PRODA, CLM5 vs COMPAS).
    Jackson et al. (1996), Oecologia 108, 389-411 (beta root profile).
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .._checks import require_x64
from ..forcing import DAYS_PER_YEAR, Forcing, depth_scalar, water_scalar
from ..grid import DZ, N_LAYERS, ZSOI
from ..linalg import CompartmentalOperator
from ..linalg import steady_state as _solve_steady
from ..parameters import ParameterSpace, ParameterSpec
from . import common
from .common import RCOND_MIN as RCOND_MIN
from .common import Method
from .common import decay_rate as _rate
from .common import stocks as stocks

__all__ = [
    "POOLS",
    "PARAMETERS",
    "Mode",
    "Prepared",
    "CLM5Matrices",
    "SteadyState",
    "ResidenceTime",
    "default_parameters",
    "prepare",
    "matrices",
    "steady_state",
    "tendency",
    "respiration",
    "residence_time",
]

Mode = Literal["proda", "default"]
Params = Float[ArrayLike, "21"]  # physical parameter values in `PARAMETERS` order
Pools = Float[ArrayLike, "7 20"]  # gC m-3, `POOLS` by layer
Rates = Float[Array, "7 20"]  # gC m-3 day-1, `POOLS` by layer

POOLS: tuple[str, ...] = ("cwd", "litter1", "litter2", "litter3", "soil1", "soil2", "soil3")
N_POOLS = len(POOLS)
CWD, L1, L2, L3, S1, S2, S3 = range(N_POOLS)
SOIL = (S1, S2, S3)

_S = ParameterSpec
# SPEC 2 (Table S1 equivalent). Bounds from PRODA_PUBLIC matrix_fun.m; customary values from
# SOC_Convergence posterior_dist_analysis.R and MATLAB comments.
PARAMETERS = ParameterSpace(
    [
        _S("diffus", 3e-5, 5e-4, "m2 yr-1", "bioturbation diffusivity (som_diffus)", "V", 1e-4),
        _S("cryo", 3e-5, 1.6e-3, "m2 yr-1", "cryoturbation diffusivity", "V", 5e-4),
        _S("q10", 1.2, 3.0, "-", "Q10 of decomposition (also frozen-soil Q10)", "Xi", 1.5),
        _S("efolding", 0.0, 1.0, "m", "e-folding depth of the decomposition depth scalar", "Xi",
           10.0, "CLM5 default 10 m lies outside the PRODA prior"),
        _S("taucwd", 1.0, 6.0, "yr", "turnover time of coarse woody debris", "K", 3.33),
        _S("taul1", 0.0, 0.11, "yr", "turnover time of metabolic litter", "K", 0.0541),
        _S("taul2", 0.1, 0.3, "yr", "turnover time of cellulose (= lignin) litter", "K", 0.2041),
        _S("tau4s1", 0.0, 1.0, "yr", "turnover time of fast SOM", "K", 0.137),
        _S("tau4s2", 1.0, 50.0, "yr", "turnover time of slow SOM", "K", 5.0),
        _S("tau4s3", 200.0, 1000.0, "yr", "turnover time of passive SOM", "K", 222.222),
        _S("fl1s1", 0.1, 0.8, "-", "transfer fraction metabolic litter -> fast SOM", "A", 0.45,
           "MATLAB comment 0.45; the R plot script lists 0.42"),
        _S("fl2s1", 0.2, 0.8, "-", "transfer fraction cellulose litter -> fast SOM", "A", 0.5),
        _S("fl3s2", 0.2, 0.8, "-", "transfer fraction lignin litter -> slow SOM", "A", 0.5),
        _S("fs1s2", 0.0, 0.4, "-", "transfer fraction fast -> slow SOM", "A", 0.282,
           "sand-dependent in CLM5: (1 - t) - 0.004, t = 0.85 - 0.0068 (100 - sand); "
           "0.282 is the value at 80 % sand; mode='default' computes it per layer"),
        _S("fs1s3", 0.0, 0.05, "-", "transfer fraction fast -> passive SOM", "A", 0.004,
           "sand-dependent formula, constant 0.004"),
        _S("fs2s1", 0.1, 0.74, "-", "transfer fraction slow -> fast SOM", "A", 0.42),
        _S("fs2s3", 0.0, 0.1, "-", "transfer fraction slow -> passive SOM", "A", 0.03),
        _S("fs3s1", 0.0, 0.9, "-", "transfer fraction passive -> fast SOM", "A", 0.45),
        _S("fcwdl2", 0.5, 1.0, "-", "fraction of CWD -> cellulose litter (rest -> lignin)", "A",
           0.76, "MATLAB comment 0.76; the R plot script lists 0.786"),
        _S("w_scaling", 0.0, 5.0, "-", "multiplier of the CESM2 moisture scalar (capped at 1)",
           "Xi", 1.0),
        _S("beta", 0.5, 0.9999, "-", "Jackson beta of the vertical input profile", "I", 0.95,
           "not used by mode='default' (CESM2 per-layer inputs)"),
    ]
)  # fmt: skip
_IX = {name: i for i, name in enumerate(PARAMETERS.names)}


def default_parameters() -> np.ndarray:
    """CLM5 customary parameter values, shape (21,), physical units (for mode='default')."""
    return PARAMETERS.default()


class Prepared(common.PreparedProfile):
    """Forcing-only work of one CLM5 profile, done once by `prepare` (SPEC 1.4-1.8).

    `steady_state` and `matrices` accept a `Prepared` in place of the `Forcing` and return the
    same result. The fields shared with COMPAS are those of
    `soc_jax.models.common.PreparedProfile` (transport basis, temperature exponent, W_SCALAR,
    input totals, thaw rule, validity); CLM5 adds:

    Attributes:
        o_scalar: O_SCALAR, (12, 20).
        fpi: FPI, (12, 20).
        sand: mean sand content per layer, (20,), % (mode ``"default"``).
        annual_inputs: CESM2's own annual inputs per layer, (4, 20), gC m-3 yr-1
            (mode ``"default"``).
        mode: the mode it was prepared for.
    """

    o_scalar: Float[Array, "12 20"]
    fpi: Float[Array, "12 20"]
    sand: Float[Array, "20"]
    annual_inputs: Float[Array, "4 20"]
    mode: str = eqx.field(static=True, default="proda")


Profile = Forcing | Prepared  # one profile's forcing, raw or prepared


def prepare(forcing: Forcing, mode: Mode = "proda") -> Prepared:
    """Do the forcing-only work of a profile once (transport basis, scalars, inputs).

    Args:
        forcing: one profile's `Forcing`, or a batch (then every field of the result has the
            same leading axes).
        mode: ``"proda"`` or ``"default"``.

    Returns:
        `Prepared`, accepted by `steady_state`, `matrices`, `tendency` and `respiration` in
        place of the forcing.

    Raises:
        ValueError: outside ``jit``, for a single profile whose forcing breaks a rule (a batch,
            or a traced forcing, is flagged per profile instead).
    """
    return _MODEL.prepare(forcing, mode)


def _prepare(forcing: Forcing, mode: str) -> Prepared:
    forcing, shared = common.prepare_shared(forcing)
    dz = jnp.asarray(DZ[:N_LAYERS])
    return Prepared(
        **shared,
        o_scalar=forcing.o_scalar,
        fpi=forcing.fpi,
        sand=jnp.clip(jnp.mean(forcing.sand, axis=0), 0.0, 100.0),
        annual_inputs=jnp.sum(forcing.litter_input, axis=1) * jnp.ones_like(dz),
        mode=mode,
    )


class CLM5Matrices(common.MatrixForm):
    """The matrix form of one profile and its environmental modifiers.

    The fields of `soc_jax.models.common.MatrixForm` (``S = V - A K``; inputs (7, 20)
    gC m-3 day-1, zero for soil pools; input profile, CESM2's own profile of total input in
    mode='default'; input totals) and:

    Attributes:
        rate_modifier: the environmental factor of the soil decomposition rates,
            ``mean_m(xi_T xi_W xi_O) exp(-z/efolding)`` per layer (mean of monthly products,
            with oxygen; SPEC 1.5), shape (20,).
        system_xi: the environmental modifier of the system-level components (SPEC 8,
            "bulk_Xi"): ``mean_m(xi_T) mean_m(xi_W) exp(-z/efolding)``, a product of monthly
            means without oxygen, shape (20,). Not the same as ``rate_modifier``.
    """

    rate_modifier: Float[Array, "20"]
    system_xi: Float[Array, "20"]


class SteadyState(common.SteadyStateCore):
    """Steady state of one profile (`soc_jax.models.common.SteadyStateCore`).

    ``pools`` (7, 20) gC m-3 are CWD, l1, l2, l3, s1, s2, s3; ``soc`` (20,) gC m-3 is
    s1 + s2 + s3; ``flags`` can be ``INPUT``, ``PRIOR``, ``SINGULAR`` and ``NONFINITE``
    (`soc_jax.models.common`).
    """


def matrices(params: Params, forcing: Profile, mode: Mode | None = None) -> CLM5Matrices:
    """Build ``S = V - A K`` and the inputs of one profile (SPEC 1.3-1.8).

    Args:
        params: physical parameter values in `PARAMETERS` order, shape (21,).
        forcing: one profile's `Forcing` or `Prepared` profile.
        mode: ``"proda"`` (default) or ``"default"`` (see the module docstring); a `Prepared`
            profile carries its own.

    Returns:
        `CLM5Matrices`.
    """
    return _MODEL.matrices(params, forcing, mode)


_TURNOVER = ("taucwd", "taul1", "taul2", "tau4s1", "tau4s2", "tau4s3")


def _depth(efolding: Array) -> Array:
    """Depth scalar ``exp(-z/efolding)`` (efolding in m); 0 at efolding = 0, finite gradient."""
    pos = efolding > 0
    return jnp.where(pos, depth_scalar(ZSOI[:N_LAYERS], jnp.where(pos, efolding, 1.0)), 0.0)


def _rates_defined(params: Array) -> Bool[Array, ""]:
    """Every turnover time and the e-folding depth is > 0 (else no steady state exists)."""
    return jnp.all(params[jnp.asarray([_IX[n] for n in (*_TURNOVER, "efolding")])] > 0)


def _matrices(params: Array, prep: Prepared, mode: str) -> CLM5Matrices:
    P = {name: params[i] for name, i in _IX.items()}
    proda = mode == "proda"
    xit, xiw, depth, xi_soil, decay = _decay(P, prep, proda)
    V = prep.transport(P["diffus"], P["cryo"])  # SPEC 1.7: shared by every pool but CWD
    op = CompartmentalOperator(
        decay=decay,
        fractions=_fractions(P, prep, proda, decay.dtype),
        transport=V,
        transported=(False, True, True, True, True, True, True),
        groups=((CWD,), (L1, L2, L3), (S1, S2, S3)),
        coupled=(False, False, True),
    )
    inputs, profile = _inputs(P, prep, proda)
    system_xi = jnp.mean(xit, axis=0) * jnp.mean(xiw, axis=0) * depth
    return CLM5Matrices(op, inputs, profile, prep.input_totals, xi_soil, system_xi)


def _decay(P: dict[str, Array], prep: Prepared, proda: bool) -> tuple[Array, ...]:
    """Environmental scalars (SPEC 1.4) and the decay rates K (SPEC 1.5), (7, 20) day-1.

    Returns ``(xi_T, xi_W, depth scalar, soil modifier, decay)``.
    """
    xit = P["q10"] ** prep.temperature_exponent
    xiw = water_scalar(prep.w_scalar, P["w_scaling"], capped=True) if proda else prep.w_scalar
    xi_tw = xit * xiw * prep.o_scalar
    depth = _depth(P["efolding"])
    # K: mean over months of the monthly rates (mean of products).
    xi_soil = jnp.mean(xi_tw, axis=0) * depth
    xi_litter = jnp.mean(xi_tw * prep.fpi, axis=0) * depth
    tau = jnp.stack(
        [P["taucwd"], P["taul1"], P["taul2"], P["taul2"], P["tau4s1"], P["tau4s2"], P["tau4s3"]]
    )
    base = _rate(tau)  # day-1
    modifier = jnp.stack([xi_soil, xi_litter, xi_litter, xi_litter, xi_soil, xi_soil, xi_soil])
    return xit, xiw, depth, xi_soil, base[:, None] * modifier


def _fractions(P: dict[str, Array], prep: Prepared, proda: bool, dtype: jnp.dtype) -> Array:
    """A (SPEC 1.6) as fractions[layer, receiver, donor], (20, 7, 7)."""
    if proda:
        fs1s2 = jnp.full(N_LAYERS, P["fs1s2"])
        fs1s3 = jnp.full(N_LAYERS, P["fs1s3"])
    else:
        t = 0.85 - 0.68 * 0.01 * (100.0 - prep.sand)
        fs1s2 = (1.0 - t) - 0.004
        fs1s3 = jnp.full(N_LAYERS, 0.004)
    ones = jnp.ones(N_LAYERS)
    entries = {
        (L2, CWD): P["fcwdl2"] * ones,
        (L3, CWD): (1.0 - P["fcwdl2"]) * ones,
        (S1, L1): P["fl1s1"] * ones,
        (S1, L2): P["fl2s1"] * ones,
        (S1, S2): P["fs2s1"] * ones,
        (S1, S3): P["fs3s1"] * ones,
        (S2, L3): P["fl3s2"] * ones,
        (S2, S1): fs1s2,
        (S3, S1): fs1s3,
        (S3, S2): P["fs2s3"] * ones,
    }
    # F[l, q, p] assembled by stacking (data movement only: no scatter, no arithmetic)
    zero = jnp.zeros(N_LAYERS, dtype)
    return jnp.stack(
        [
            jnp.stack([entries.get((q, p), zero) for p in range(N_POOLS)], -1)
            for q in range(N_POOLS)
        ],
        -2,
    )


def _inputs(P: dict[str, Array], prep: Prepared, proda: bool) -> tuple[Array, Array]:
    """I (SPEC 1.8), (7, 20) gC m-3 day-1, and the input profile (20,)."""
    if proda:
        profile, litter_rates = common.beta_inputs(P["beta"], prep)
    else:
        dz = jnp.asarray(DZ[:N_LAYERS])
        litter_rates = prep.annual_inputs / DAYS_PER_YEAR
        column = jnp.sum(prep.annual_inputs * dz, axis=0)
        profile = column / jnp.sum(column)
    inputs = jnp.concatenate([litter_rates, jnp.zeros((3, N_LAYERS), litter_rates.dtype)])
    return inputs, profile


_MODEL = common.Skeleton(
    name="CLM5",
    space=PARAMETERS,
    modes=("proda", "default"),
    prior_modes=("proda",),
    prepared_type=Prepared,
    prepare_one=_prepare,
    build=_matrices,
    rates_defined=_rates_defined,
)


def steady_state(
    params: Params, forcing: Profile, mode: Mode | None = None, method: Method = "structured"
) -> SteadyState:
    """Steady state of one profile: solve ``(V - A K) X = I``, clip ``X < 0`` to 0 (SPEC 1.9).

    Pure and jit/vmap/grad-able. Bad input raises ``ValueError`` naming the field or parameter
    outside ``jit`` and comes back as a flag inside, with finite pools and exactly zero gradient
    for a masked loss (`soc_jax.models.common.Skeleton.checked_inputs`).

    Args:
        params: physical parameter values in `PARAMETERS` order, shape (21,).
        forcing: one profile's `Forcing`, or its `Prepared` form (`prepare`), which skips the
            forcing-only work.
        mode: ``"proda"`` (the authors' DA code, the default) or ``"default"`` (CLM5
            customary); a `Prepared` profile carries its own.
        method: ``"structured"`` (fast block sweeps with implicit gradients) or ``"dense"``
            (reference: ``jnp.linalg.solve`` on the 140x140 matrix).

    Returns:
        `SteadyState` with pools (7, 20) and soc (20,) in gC m-3.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from soc_jax.models import clm5
        >>> result = clm5.steady_state(clm5.PARAMETERS.midpoint(), forcing)  # doctest: +SKIP
        >>> prepared = clm5.prepare(forcing_batch)  # once per profile  # doctest: +SKIP
        >>> batch = jax.vmap(clm5.steady_state)(params_batch, prepared)  # doctest: +SKIP
    """
    params, mode = _MODEL.checked_inputs(params, forcing, mode)
    return _steady_state(params, forcing, mode, method)


@functools.partial(jax.jit, static_argnames=("mode", "method"))
def _steady_state(params: Array, forcing: Profile, mode: str, method: str) -> SteadyState:
    solved = _MODEL.solve(params, forcing, mode, method)
    x = jnp.where(solved.defined, solved.x, jnp.nan)
    flags, pools = solved.finish(x)
    soc = pools[S1] + pools[S2] + pools[S3]
    return SteadyState(pools=pools, soc=soc, ok=flags == 0, flags=flags, rcond=solved.rcond)


def tendency(pools: Pools, params: Params, forcing: Profile, mode: Mode | None = None) -> Rates:
    """Rate of change ``dX/dt = I - (V - A K) X`` (annual-mean operator), gC m-3 day-1.

    Args:
        pools: (7, 20) gC m-3.
        params: (21,) physical parameters.
        forcing: one profile's `Forcing` or `Prepared` profile.
        mode: ``"proda"`` (default) or ``"default"``.
    """
    m = matrices(params, forcing, mode)
    return m.inputs - m.operator.matvec(jnp.asarray(pools))


def respiration(
    pools: Pools, params: Params, forcing: Profile, mode: Mode | None = None
) -> Float[Array, "20"]:
    """Heterotrophic respiration per layer, gC m-3 day-1.

    Each pool respires the part of its decomposition flux that no transfer carries on:
    ``sum_p (1 - sum_q F[q, p]) k_p X_p`` (``1 +`` the column sum of ``A``).
    """
    m = matrices(params, forcing, mode)
    op = m.operator
    respired_fraction = 1.0 - jnp.einsum("lqp->pl", op.fractions)
    return jnp.sum(respired_fraction * op.decay * jnp.asarray(pools), axis=0)


class ResidenceTime(eqx.Module):
    """Residence-time diagnostics of SPEC 1.12 (mode='proda' inputs).

    Attributes:
        total: SOC per unit column input, summed over s1..s3, per layer, (20,), yr m-1;
            ``sum(total * dz)`` is the soil-carbon residence time in yr.
        baseline: the same with the environmental scalars removed, (20,), yr m-1.
        temperature_scalar: mean over months of xi_T per layer, (20,).
        water_scalar: mean over months of xi_W per layer, (20,).
    """

    total: Float[Array, "20"]
    baseline: Float[Array, "20"]
    temperature_scalar: Float[Array, "20"]
    water_scalar: Float[Array, "20"]


def residence_time(params: Params, forcing: Profile, mode: Mode | None = None) -> ResidenceTime:
    """Residence times per unit input (SPEC 1.12, ``fun_var_decom.m``)."""
    require_x64("CLM5 residence time")
    params = jnp.asarray(params, dtype=jnp.float64)
    prep, mode = _MODEL.as_prepared(forcing, mode)
    m = _matrices(params, prep, mode)
    dz = jnp.asarray(DZ[:N_LAYERS])
    share = m.input_totals / jnp.sum(m.input_totals)
    unit_input = jnp.concatenate(
        [share[:, None] * m.input_profile[None, :] / dz, jnp.zeros((3, N_LAYERS))]
    )
    x = _solve_steady(m.operator, unit_input) / DAYS_PER_YEAR
    xit = params[_IX["q10"]] ** prep.temperature_exponent
    capped = mode == "proda"
    xiw = water_scalar(prep.w_scalar, params[_IX["w_scaling"]], capped=True)
    if not capped:
        xiw = prep.w_scalar
    scale = jnp.mean(1.0 / (xiw * xit * prep.o_scalar * prep.fpi), axis=0)  # D_j
    total = x[S1] + x[S2] + x[S3]
    return ResidenceTime(
        total=total,
        baseline=total / scale,
        temperature_scalar=jnp.mean(xit, axis=0),
        water_scalar=jnp.mean(xiw, axis=0),
    )
