r"""COMPAS: microbial Michaelis-Menten soil carbon in 20 layers (PRODA_MIC, SPEC 3).

Eight pools per layer: coarse woody debris (CWD), metabolic, cellulose and lignin litter (l1, l2,
l3), dissolved organic carbon (DOC), microbial biomass (MIC), enzymes (ENZ) and mineral-associated
soil organic carbon (SOC). Modelled soil carbon, the quantity compared with observed profiles, is
DOC + MIC + ENZ + SOC (SPEC 3.1).

**Litter subsystem** (SPEC 3.4; 80 states, a first-order matrix model like CLM5): with
:math:`\xi_j = \overline{\xi_T}\,\overline{\xi_W}\,\overline{\xi_O}\,e^{-z_j/0.5}` (the *product of
monthly means*, SPEC 3.3, unlike CLM5's mean of products) and :math:`\xi_{N,j} = \overline{FPI}`,

.. math::
    \frac{dL}{dt} = I + A_4 K_4 L - V_4 L ,\qquad
    K_4 = \mathrm{diag}(k_{cwd}\xi,\ k_{l1}\xi\xi_N,\ k_{l2}\xi\xi_N,\ k_{l3}\xi\xi_N),

where CWD splits into l2 (``fcwdl2``) and l3, only l1-l3 are transported (Patankar ``V``, SPEC
1.7) and inputs follow Jackson's beta profile (SPEC 1.8). The steady state solves
:math:`(V_4 - A_4K_4) L = I` with the structured solver of `soc_jax.linalg` (implicit gradients),
then clips ``L < 0`` to 0 as PRODA does.

**Soil subsystem** (SPEC 3.5; per layer, no transport). The litter decomposition fluxes
:math:`F_i = k_i \xi \xi_N L_i` feed :math:`\mathrm{in}_{DOC} = p_{l1s1}F_1 + p_{l2s1}F_2`,
:math:`\mathrm{in}_{MIC} = (1-p_{l1s1})c_1F_1 + (1-p_{l2s1})c_2F_2 + (1-p_{l3s4})c_2F_3` and
:math:`\mathrm{in}_{SOC} = p_{l3s4}F_3` (:math:`c_1` = ``l1_cue``, :math:`c_2` = ``l2l3_cue``; the
rest of every litter flux is respired), and

.. math::
    \dot{DOC} &= \mathrm{in}_{DOC} + (1-p)k_d\xi MIC + k_z\xi ENZ + U_{SOC} - U_{DOC} \\
    \dot{MIC} &= \mathrm{in}_{MIC} + \varepsilon U_{DOC} - (k_d + k_e)\xi MIC \\
    \dot{ENZ} &= k_e\xi MIC - k_z\xi ENZ \\
    \dot{SOC} &= \mathrm{in}_{SOC} + p k_d\xi MIC - U_{SOC} \\
    U_{DOC} &= V_d\xi\,MIC\,\frac{DOC}{K_a\xi + DOC},\qquad
    U_{SOC} = V_s\xi\,ENZ\,\frac{SOC}{K_d\xi + SOC},

with rates :math:`k = 1/(365\,\tau)` day-1, :math:`\varepsilon` = ``mic_cue`` (the other
:math:`1-\varepsilon` of the uptake is respired) and :math:`p` = ``pdeath2soc``. Its steady state
is the closed form of PRODA_MIC (``matrix_fun.m``), with :math:`T = \mathrm{in}_{MIC} +
\varepsilon(\mathrm{in}_{DOC} + \mathrm{in}_{SOC})`:

.. math::
    MIC^* = \frac{T}{(1-\varepsilon)(k_d+k_e)\xi},\quad ENZ^* = \frac{k_e}{k_z}MIC^*,\quad
    SOC^* = \frac{R\,K_d\xi}{V_s\xi ENZ^* - R},\ R = \mathrm{in}_{SOC} + p k_d\xi MIC^*,\quad
    DOC^* = \frac{Q\,K_a\xi}{V_d\xi MIC^* - Q},\ Q = \frac{(k_d+k_e)\xi MIC^* - \mathrm{in}_{MIC}}
    {\varepsilon}.

MIC* and ENZ* scale with the layer's input while SOC* and DOC* depend only on its composition, so
the code evaluates the closed form on inputs normalized by T and rescales MIC* and ENZ* (the same
formula, exact also where litter reaching a deep layer is ~1e-300 gC m-3 day-1).

**Modes.** ``"proda"`` reproduces the public code, including its parameter-13 quirk (SPEC 3.6.1):
the enzyme turnover time is ``tau4s3 = 10**(3 p13 - 3)`` yr with ``p13`` the normalized value of
``mm_const_assim`` (which therefore drives both Km of assimilation and enzyme turnover), and
parameter 11 (``tau4s3``) has no effect. ``"documented"`` gives every parameter its documented
role: the enzyme turnover time is parameter 11 itself, in yr, whose prior is log-uniform on
[1e-3, 1] yr (`PARAMETERS` maps its normalized value as ``10**(3 p11 - 3)``, the same log scale),
and ``mm_const_assim`` is only Km. Everything else is identical (the DA check enters ``ok`` in
mode ``"proda"`` only, see below).

**Invalid steady states -> flags.** Where a denominator of the closed form is negative PRODA
returns the pools with their positive entries negated (a sign flag); its DA driver also rejects a
profile whose column stock of DOC+MIC+ENZ+SOC is less than 10 times its MIC stock. soc_jax keeps
the computed (negative) values and sets the ``NEGATIVE`` flag exactly where PRODA flips signs,
and the ``MIC_RATIO`` flag for the DA check in mode ``"proda"`` only (it is a DA acceptance rule,
not part of the documented model); ``mic_ratio`` is returned in both modes. Flags are those of
`soc_jax.models.common`.

**Layers with almost no litter.** MIC* and ENZ* scale with a layer's litter flux while SOC*
and DOC* depend only on its composition (the closed form is homogeneous of degree one and zero),
so any positive flux, however small, gives O(K_d) SOC and O(K_a) DOC, as in the authors' code.
At frozen sites all input enters layer 1 and litter reaches deeper layers only through the 1e-30
diffusivity floor, ~1e-25 times less per layer, down to ~1e-300 gC m-3. soc_jax evaluates the
closed form scale-safely: each layer's inputs are divided by a power of two near their total
(exact in binary arithmetic, held out of the gradient) and MIC* and ENZ* are scaled back, so
values and gradients are those of the exact formula for every positive flux, and continuous in
the parameters. Only where the flux is exactly zero (the authors' code returns 0/0 there) do the
soil pools get zero carbon, the steady state reached from zero carbon. XLA flushes subnormal
numbers (below 2.2e-308) to zero where NumPy and MATLAB keep them, so in a layer whose litter
flux is subnormal the platforms can differ (zero vs O(K_d) carbon); such a flux is 1e-290 times
that of the surface layer.

Units: pools in gC m-3, rates in day-1, inputs and fluxes in gC m-3 day-1, stocks in gC m-2.

References:
    Tao et al. (2024), Global Change Biology 30:e17297 (CLM5 vs COMPAS after PRODA DA).
    Tao et al. (2023), Nature 618, 981-985 (PRODA); public code phxtao/PRODA_MIC,
    ``SRC_DA/src_cesm2_clm5_mic_vr_v22``.
    Allison, Wallenstein & Bradford (2010), Nature Geoscience 3, 336-340 (microbial-enzyme model).
    Jackson et al. (1996), Oecologia 108, 389-411 (beta root profile).
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from .. import grid
from .._checks import require_x64, validate_profile_inputs
from ..forcing import (
    DAYS_PER_YEAR,
    Forcing,
    beta_profile,
    input_totals,
    temperature_exponent,
    water_scalar,
    where_valid,
)
from ..grid import DZ, N_LAYERS, ZSOI
from ..linalg import CompartmentalOperator
from ..parameters import ParameterSpace, ParameterSpec
from ..transport import TransportBasis, transport_basis
from .common import (
    MIC_RATIO,
    NEGATIVE,
    as_prepared,
    finish,
    parameters_ok,
    prepare_batch,
    solve_guarded,
    stand_in_parameters,
)
from .common import RCOND_MIN as RCOND_MIN

__all__ = [
    "POOLS",
    "PARAMETERS",
    "EFOLDING",
    "MIC_RATIO_MIN",
    "Mode",
    "Kinetics",
    "Prepared",
    "prepare",
    "COMPASMatrices",
    "SteadyState",
    "Diagnostics",
    "default_parameters",
    "enzyme_turnover_time",
    "matrices",
    "litter_fluxes",
    "soil_inputs",
    "soil_steady_state",
    "steady_state",
    "tendency",
    "respiration",
    "diagnostics",
    "stocks",
]

Mode = Literal["proda", "documented"]

POOLS: tuple[str, ...] = ("cwd", "litter1", "litter2", "litter3", "doc", "mic", "enz", "soc")
N_POOLS = len(POOLS)
CWD, L1, L2, L3, DOC, MIC, ENZ, SOC = range(N_POOLS)
N_LITTER = 4
EFOLDING: float = 0.5  # m, fixed e-folding depth of COMPAS (SPEC 3.2, not a parameter)
_DEPTH = np.exp(-ZSOI[:N_LAYERS] / EFOLDING)  # the depth scalar, fixed
MIC_RATIO_MIN: float = 10.0  # DA check of matrix_fun.m: total soil C stock / MIC stock >= 10
# A layer "receives no litter" when F_l1, F_l2, F_l3 are all below this (gC m-3 day-1): physically
# nothing, and far above the underflow band (< 1e-292) where float64 results depend on the platform
# (XLA flushes subnormals to zero, NumPy/MATLAB underflow gradually). See the module docstring.

TAU4S3_LOG_RANGE: tuple[float, float] = (-3.0, 0.0)  # tau4s3 = 10**(3 p - 3) yr (matrix_fun.m)

_S = ParameterSpec
# SPEC 3.2 (Table S2 equivalent). Bounds from PRODA_MIC matrix_fun.m; customary values are the
# values in the code comments where there is one (GCB-2024's own customary set, the mean of the
# site posteriors, is not public), else the prior midpoint.
PARAMETERS = ParameterSpace(
    [
        _S("bio", 3e-5, 5e-4, "m2 yr-1", "bioturbation diffusivity", "V", 1e-4),
        _S("cryo", 3e-5, 1.6e-3, "m2 yr-1", "cryoturbation diffusivity", "V", 5e-4),
        _S("q10", 1.2, 3.0, "-", "Q10 of decomposition (also frozen-soil Q10)", "Xi", 1.5),
        _S("w_scaling", 0.0, 5.0, "-", "multiplier of the CESM2 moisture scalar (capped at 1)",
           "Xi", 1.0),
        _S("tau4cwd", 1.0, 6.0, "yr", "turnover time of coarse woody debris", "K", 3.3333),
        _S("tau4l1", 0.0, 0.1, "yr", "turnover time of metabolic litter", "K", 0.0541),
        _S("tau4l2", 0.1, 0.3, "yr", "turnover time of cellulose (= lignin) litter", "K", 0.2041),
        _S("tau4s1", 0.001, 0.03, "yr", "1/Vmax of DOC uptake by microbes", "A", 1.1e-2),
        _S("tau4s2_death", 0.0, 2.0, "yr", "microbial death time", "K", 0.57),
        _S("tau4s2_enz", 15.0, 30.0, "yr", "time constant of enzyme production by microbes", "K",
           22.0),
        _S("tau4s3", 0.001, 1.0, "yr", "enzyme turnover time (log-uniform prior)", "K", 0.11,
           "used by mode='documented' only; mode='proda' takes the turnover from parameter 13",
           transform="log10"),
        _S("tau4s4", 0.0, 3e-4, "yr", "1/Vmax of SOC decomposition by enzymes", "K", 1.1e-4,
           "the code comment gives 4.6e-5..1.1e-4"),
        _S("mm_const_assim", 300.0, 3000.0, "gC m-3", "Km of DOC uptake", "A", 400.0,
           "mode='proda' also sets the enzyme turnover from it (SPEC 3.6.1)"),
        _S("mm_const_decom", 1e5, 1e6, "gC m-3", "Km of SOC decomposition", "K", 6e5,
           "the code comment gives 5e4..6e5 (5e4 is outside the prior)"),
        _S("fcwdl2", 0.5, 1.0, "-", "fraction of CWD -> cellulose litter (rest -> lignin)", "E",
           0.75),
        _S("pl1s1", 0.0, 0.1, "-", "share of metabolic litter decomposition -> DOC", "E", 0.05,
           "no value in the code; prior midpoint"),
        _S("pl2s1", 0.05, 0.3, "-", "share of cellulose litter decomposition -> DOC", "E", 0.175,
           "no value in the code; prior midpoint"),
        _S("pl3s4", 0.6, 0.95, "-", "share of lignin litter decomposition -> SOC", "E", 0.775,
           "no value in the code; prior midpoint"),
        _S("l1_cue", 0.4, 0.9, "-", "CUE of direct metabolic litter -> MIC uptake", "A", 0.65,
           "no value in the code; prior midpoint"),
        _S("l2l3_cue", 0.0, 0.4, "-", "CUE of direct cellulose/lignin litter -> MIC uptake", "A",
           0.2, "no value in the code; prior midpoint"),
        _S("mic_cue", 0.01, 0.7, "-", "microbial CUE of DOC uptake", "A", 0.355,
           "no value in the code; prior midpoint"),
        _S("pdeath2soc", 0.0, 1.0, "-", "share of dead microbes -> SOC (rest -> DOC)", "E", 0.5),
        _S("beta", 0.5, 0.9999, "-", "Jackson beta of the vertical input profile", "I", 0.95),
    ]
)  # fmt: skip
_IX = {name: i for i, name in enumerate(PARAMETERS.names)}


def default_parameters() -> np.ndarray:
    """COMPAS customary parameter values, shape (23,), physical units (see `PARAMETERS`)."""
    return PARAMETERS.default()


class Kinetics(eqx.Module):
    """Soil-subsystem constants of one parameter vector (scalars unless stated).

    Attributes:
        death: microbial death rate k_d, day-1.
        enzyme_production: enzyme production rate k_e, day-1.
        enzyme_turnover: enzyme decay rate k_z, day-1 (mode-dependent, see module docstring).
        vmax_assim: maximum DOC uptake rate V_d per unit MIC, day-1.
        vmax_decom: maximum SOC decomposition rate V_s per unit ENZ, day-1.
        km_assim: half-saturation K_a of DOC uptake, gC m-3 (multiplied by xi in the model).
        km_decom: half-saturation K_d of SOC decomposition, gC m-3 (multiplied by xi).
        mic_cue: microbial carbon-use efficiency of DOC uptake (epsilon).
        pdeath2soc: share of dead microbes that becomes SOC (p).
        to_doc: share of the l1, l2, l3 decomposition fluxes -> DOC, shape (3,).
        to_mic: share of the l1, l2, l3 decomposition fluxes -> MIC (after CUE), shape (3,).
        to_soc: share of the l1, l2, l3 decomposition fluxes -> SOC, shape (3,).
    """

    death: Float[Array, ""]
    enzyme_production: Float[Array, ""]
    enzyme_turnover: Float[Array, ""]
    vmax_assim: Float[Array, ""]
    vmax_decom: Float[Array, ""]
    km_assim: Float[Array, ""]
    km_decom: Float[Array, ""]
    mic_cue: Float[Array, ""]
    pdeath2soc: Float[Array, ""]
    to_doc: Float[Array, "3"]
    to_mic: Float[Array, "3"]
    to_soc: Float[Array, "3"]

    @property
    def litter_respired(self) -> Float[Array, "3"]:
        """Respired share of the l1, l2, l3 decomposition fluxes, shape (3,)."""
        return 1.0 - self.to_doc - self.to_mic - self.to_soc


class Prepared(eqx.Module):
    """Forcing-only work of one COMPAS profile, done once by `prepare` (SPEC 3.3-3.4, 1.7-1.8).

    Attributes:
        transport: the 12 monthly Patankar operators reduced to a `TransportBasis`.
        temperature_exponent: ``e`` of ``xi_T = q10**e``, (12, 20).
        w_scalar: W_SCALAR, (12, 20).
        o_mean: mean over months of O_SCALAR, (20,).
        xi_n: nitrogen scalar ``mean(FPI)``, (20,).
        input_totals: annual column inputs to CWD, LITR1-3, (4,), gC m-2 yr-1.
        thawed: ALTMAX_LASTYEAR > 0 in all months (the beta input profile applies).
        valid: the forcing obeys its rules (else the fields are the reference forcing's and
            results carry the ``INPUT`` flag).
        mode: the mode it was prepared for.
    """

    transport: TransportBasis
    temperature_exponent: Float[Array, "12 20"]
    w_scalar: Float[Array, "12 20"]
    o_mean: Float[Array, "20"]
    xi_n: Float[Array, "20"]
    input_totals: Float[Array, "4"]
    thawed: Bool[Array, ""]
    valid: Bool[Array, ""]
    mode: str = eqx.field(static=True, default="proda")


def prepare(forcing: Forcing, mode: Mode = "proda") -> Prepared:
    """Do the forcing-only work of a profile once (transport basis, scalars, inputs).

    Args:
        forcing: one profile's `Forcing`, or a batch (fields keep the leading axes).
        mode: ``"proda"`` or ``"documented"``.

    Returns:
        `Prepared`, accepted by `steady_state`, `matrices`, `tendency`, `respiration` and
        `diagnostics` in place of the forcing.

    Raises:
        ValueError: outside ``jit``, for a single profile whose forcing breaks a rule.
    """
    _check_mode(mode)
    return prepare_batch(_prepare, forcing, mode)


def _prepare(forcing: Forcing, mode: str) -> Prepared:
    forcing, valid = where_valid(forcing)
    return Prepared(
        transport=transport_basis(forcing.nbedrock, forcing.altmax, forcing.altmax_lastyear),
        temperature_exponent=temperature_exponent(forcing.tsoi),
        w_scalar=forcing.w_scalar,
        o_mean=jnp.mean(forcing.o_scalar, axis=0),
        xi_n=jnp.mean(forcing.fpi, axis=0),
        input_totals=input_totals(forcing.litter_input),
        thawed=jnp.all(forcing.altmax_lastyear > 0),
        valid=valid,
        mode=mode,
    )


def _as_prepared(forcing: Forcing | Prepared, mode: str | None) -> tuple[Prepared, str]:
    return as_prepared(forcing, mode, Prepared, _prepare, _check_mode)


class COMPASMatrices(eqx.Module):
    """The litter matrix system and soil constants of one profile.

    Attributes:
        operator: litter operator ``S4 = V4 - A4 K4`` (4 pools x 20 layers), day-1.
        inputs: litter input rates I, shape (4, 20), gC m-3 day-1.
        input_profile: fraction of column input per layer, shape (20,).
        input_totals: annual column inputs to CWD, LITR1, LITR2, LITR3, shape (4,), gC m-2 yr-1.
        xi: environmental scalar ``mean(xi_T) mean(xi_W) mean(xi_O) exp(-z/0.5)``, shape (20,).
        xi_n: nitrogen scalar ``mean(FPI)`` (litter only), shape (20,).
        kinetics: `Kinetics` of the soil subsystem.
    """

    operator: CompartmentalOperator
    inputs: Float[Array, "4 20"]
    input_profile: Float[Array, "20"]
    input_totals: Float[Array, "4"]
    xi: Float[Array, "20"]
    xi_n: Float[Array, "20"]
    kinetics: Kinetics


class SteadyState(eqx.Module):
    """Steady state of one profile (same core fields as `soc_jax.models.clm5.SteadyState`).

    Attributes:
        pools: carbon density per pool (CWD, l1, l2, l3, DOC, MIC, ENZ, SOC) and layer, (8, 20),
            gC m-3. Always finite (zero where nothing could be computed, see ``flags``); zero
            soil pools in layers without any litter.
        soc: modelled soil carbon DOC + MIC + ENZ + SOC per layer, (20,), gC m-3.
        ok: no flag set.
        flags: why not ok: ``INPUT``, ``PRIOR``, ``SINGULAR``, ``NONFINITE``, ``NEGATIVE`` and,
            in mode='proda', ``MIC_RATIO`` (`soc_jax.models.common`).
        rcond: reciprocal 1-norm condition number of the litter system matrix.
        negative: some pool of the closed-form steady state is < 0 (where PRODA negates the
            output).
        mic_ratio: column stock of DOC+MIC+ENZ+SOC over the MIC stock (inf without MIC).
    """

    pools: Float[Array, "8 20"]
    soc: Float[Array, "20"]
    ok: Bool[Array, ""]
    flags: Int[Array, ""]
    rcond: Float[Array, ""]
    negative: Bool[Array, ""]
    mic_ratio: Float[Array, ""]


def _check_mode(mode: str) -> None:
    if mode not in ("proda", "documented"):
        raise ValueError(f"mode must be 'proda' or 'documented', got {mode!r}")


def enzyme_turnover_time(params: Float[ArrayLike, "23"], mode: Mode = "proda") -> Float[Array, ""]:
    """Enzyme turnover time ``tau4s3 = 10**(3 p - 3)`` yr (SPEC 3.2, 3.6.1).

    Args:
        params: physical parameters, shape (23,).
        mode: ``"proda"`` takes ``p`` from parameter 13 (the normalized ``mm_const_assim``, the
            public code's quirk); ``"documented"`` returns parameter 11 (``tau4s3``, yr), which is
            ``10**(3 p11 - 3)`` of its own normalized value.

    Returns:
        tau4s3 in yr, in [1e-3, 1] for parameters within the prior.
    """
    _check_mode(mode)
    params = jnp.asarray(params)
    if mode == "documented":
        return params[_IX["tau4s3"]]
    p13 = PARAMETERS.to_normalized(params)[_IX["mm_const_assim"]]
    lo, hi = TAU4S3_LOG_RANGE
    return 10.0 ** (lo + (hi - lo) * p13)


_TURNOVER = (
    "tau4cwd", "tau4l1", "tau4l2", "tau4s1", "tau4s2_death", "tau4s2_enz", "tau4s3", "tau4s4"
)  # fmt: skip


def _rate(tau: Array) -> Array:
    """Rate ``1/(365 tau)`` day-1 of a time ``tau`` (yr); ``inf`` at tau = 0, finite gradient."""
    pos = tau > 0
    return jnp.where(pos, 1.0 / (DAYS_PER_YEAR * jnp.where(pos, tau, 1.0)), jnp.inf)


def _rates_defined(params: Array) -> Bool[Array, ""]:
    """Every turnover time and the water scaling is > 0 (else no steady state exists)."""
    return jnp.all(params[jnp.asarray([_IX[n] for n in (*_TURNOVER, "w_scaling")])] > 0)


def _kinetics(params: Array, mode: str) -> Kinetics:
    P = {name: params[i] for name, i in _IX.items()}

    l2_cue = P["l2l3_cue"]  # l3 uses the l2 CUE (SPEC 3.2)
    zero = jnp.zeros_like(P["pl1s1"])
    rate = _rate
    return Kinetics(
        death=rate(P["tau4s2_death"]),
        enzyme_production=rate(P["tau4s2_enz"]),
        enzyme_turnover=rate(enzyme_turnover_time(params, mode)),
        vmax_assim=rate(P["tau4s1"]),
        vmax_decom=rate(P["tau4s4"]),
        km_assim=P["mm_const_assim"],
        km_decom=P["mm_const_decom"],
        mic_cue=P["mic_cue"],
        pdeath2soc=P["pdeath2soc"],
        to_doc=jnp.stack([P["pl1s1"], P["pl2s1"], zero]),
        to_mic=jnp.stack(
            [
                (1.0 - P["pl1s1"]) * P["l1_cue"],
                (1.0 - P["pl2s1"]) * l2_cue,
                (1.0 - P["pl3s4"]) * l2_cue,
            ]
        ),
        to_soc=jnp.stack([zero, zero, P["pl3s4"]]),
    )


def matrices(
    params: Float[ArrayLike, "23"], forcing: Forcing | Prepared, mode: Mode | None = None
) -> COMPASMatrices:
    """Build the litter system ``S4 = V4 - A4 K4``, its inputs and the soil constants.

    Args:
        params: physical parameter values in `PARAMETERS` order, shape (23,).
        forcing: one profile's `Forcing` or `Prepared` profile.
        mode: ``"proda"`` (default) or ``"documented"`` (see the module docstring); a
            `Prepared` profile carries its own.

    Returns:
        `COMPASMatrices`.
    """
    require_x64("COMPAS matrices")
    prepared, mode = _as_prepared(forcing, mode)
    return _matrices(jnp.asarray(params), prepared, mode)


def _matrices(params: Array, prep: Prepared, mode: str) -> COMPASMatrices:
    P = {name: params[i] for name, i in _IX.items()}

    # xi (SPEC 3.3): product of the monthly means of the T, W and O scalars, times depth.
    xit = jnp.mean(P["q10"] ** prep.temperature_exponent, axis=0)
    xiw = jnp.mean(water_scalar(prep.w_scalar, P["w_scaling"], capped=True), axis=0)
    xi = xit * xiw * prep.o_mean * _DEPTH
    xi_n = prep.xi_n

    # K4 (SPEC 3.4): CWD without the N scalar; l3 turns over like l2.
    tau = jnp.stack([P["tau4cwd"], P["tau4l1"], P["tau4l2"], P["tau4l2"]])
    base = _rate(tau)  # day-1
    decay = base[:, None] * jnp.stack([xi, xi * xi_n, xi * xi_n, xi * xi_n])

    # A4: CWD -> l2 (fcwdl2) and l3 (the rest); fractions[layer, receiver, donor].
    F = jnp.zeros((N_LAYERS, N_LITTER, N_LITTER), params.dtype)
    F = F.at[:, L2, CWD].set(P["fcwdl2"]).at[:, L3, CWD].set(1.0 - P["fcwdl2"])

    op = CompartmentalOperator(
        decay=decay,
        fractions=F,
        transport=prep.transport(P["bio"], P["cryo"]),
        transported=(False, True, True, True),
        groups=((CWD,), (L1, L2, L3)),
        coupled=(False, False),
    )

    # I (SPEC 1.8, beta profile with the all-months ALTMAX_LASTYEAR > 0 rule).
    totals = prep.input_totals  # gC m-2 yr-1
    profile = beta_profile(P["beta"], prep.thawed)
    dz = jnp.asarray(DZ[:N_LAYERS])
    inputs = totals[:, None] * profile[None, :] / (dz * DAYS_PER_YEAR)
    return COMPASMatrices(op, inputs, profile, totals, xi, xi_n, _kinetics(params, mode))


def litter_fluxes(m: COMPASMatrices, litter: Float[ArrayLike, "4 20"]) -> Float[Array, "3 20"]:
    """Decomposition fluxes F_l1, F_l2, F_l3 of the litter pools, (3, 20), gC m-3 day-1.

    Args:
        m: the profile's `COMPASMatrices`.
        litter: CWD, l1, l2, l3 densities, (4, 20), gC m-3.
    """
    return m.operator.decay[L1:] * jnp.asarray(litter)[L1:N_LITTER]


def soil_inputs(
    m: COMPASMatrices, litter: Float[ArrayLike, "4 20"]
) -> tuple[Float[Array, "20"], Float[Array, "20"], Float[Array, "20"]]:
    """Litter-derived inputs to DOC, MIC and SOC, each (20,) gC m-3 day-1 (SPEC 3.5).

    Args:
        m: the profile's `COMPASMatrices`.
        litter: CWD, l1, l2, l3 densities, (4, 20), gC m-3.
    """
    flux = litter_fluxes(m, litter)
    k = m.kinetics
    return k.to_doc @ flux, k.to_mic @ flux, k.to_soc @ flux


def _closed_form_ratio(num: Array, den: Array) -> Array:
    """num / den of the closed form: +-inf where den == 0 (flagged later), finite gradients."""
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), jnp.inf)


def soil_steady_state(
    kinetics: Kinetics,
    xi: Float[ArrayLike, " n"],
    in_doc: Float[ArrayLike, " n"],
    in_mic: Float[ArrayLike, " n"],
    in_soc: Float[ArrayLike, " n"],
) -> Float[Array, "4 n"]:
    """Closed-form steady state of DOC, MIC, ENZ, SOC per layer (SPEC 3.5), scale-safe.

    Each layer's inputs are divided by a power of two near their total ``T`` (exact, held out of
    the gradient), the closed form is evaluated on O(1) numbers and MIC and ENZ are scaled back
    (see the module docstring): exact for every positive flux, with finite gradients. Layers
    whose inputs are exactly zero get zeros. Negative DOC or SOC (a negative denominator) are
    returned as computed; a zero denominator gives inf. `steady_state` flags both.

    Args:
        kinetics: `Kinetics`.
        xi: environmental scalar per layer, (n,).
        in_doc, in_mic, in_soc: inputs per layer, (n,), gC m-3 day-1, >= 0.

    Returns:
        (4, n) DOC, MIC, ENZ, SOC in gC m-3.
    """
    k = kinetics
    xi = jnp.asarray(xi)
    eps = k.mic_cue
    in_doc, in_mic, in_soc = (jnp.asarray(x) for x in (in_doc, in_mic, in_soc))
    total = in_mic + eps * (in_doc + in_soc)  # T
    empty = total <= 0
    # scale = 2**-e with T = m 2**e, m in [0.5, 1): multiplying by it is exact and keeps T scale
    # in [0.5, 1); it is held out of the gradient (the closed form is homogeneous)
    scale, unscale, _ = _power_of_two_scale(jnp.where(empty, 1.0, total))
    a_doc, a_mic, a_soc = (jnp.where(empty, 0.0, x * scale) for x in (in_doc, in_mic, in_soc))
    a_mic = jnp.where(empty, 1.0, a_mic)  # a harmless composition where nothing arrives
    turnover = (k.death + k.enzyme_production) * xi
    mic = (a_mic + eps * (a_doc + a_soc)) / ((1.0 - eps) * turnover)  # MIC* scale
    enz = k.enzyme_production / k.enzyme_turnover * mic
    r = a_soc + k.pdeath2soc * k.death * xi * mic
    soc = _closed_form_ratio(r * k.km_decom * xi, k.vmax_decom * xi * enz - r)
    q = (turnover * mic - a_mic) / eps
    doc = _closed_form_ratio(q * k.km_assim * xi, k.vmax_assim * xi * mic - q)
    out = jnp.stack([doc, mic * unscale, enz * unscale, soc])
    return jnp.where(empty, 0.0, out)


def _power_of_two_scale(x: Array) -> tuple[Array, Array, Array]:
    """``(2**-e, 2**e, e)`` with ``x = m 2**e``, m in [0.5, 1), for positive normal x; no gradient.

    Both factors are normal floats for any normal x, and multiplying by them is exact.
    """
    _, e = jnp.frexp(jax.lax.stop_gradient(x))
    one = jnp.ones_like(x)
    return jax.lax.stop_gradient(jnp.ldexp(one, -e)), jax.lax.stop_gradient(jnp.ldexp(one, e)), e


# Litter below 2**-600 (~2e-181 gC m-3; it reaches a layer only through the 1e-30 diffusivity
# floor of a frozen column) keeps its value but not the gradient of the soil pools through its
# composition: that gradient is ~SOC / litter, and carried back through the litter solve it
# would leave float64's range (~1e308). See the module docstring.
_DEEP_LITTER_EXPONENT = -600


def _soil_pools(m: COMPASMatrices, litter: Array) -> Array:
    """Soil closed form of every layer from the litter pools, scale-safe (module docstring)."""
    lit = litter[L1:N_LITTER]  # (3, 20)
    largest = jnp.max(lit, axis=0)
    scale, unscale, e = _power_of_two_scale(jnp.where(largest > 0, largest, 1.0))
    scaled = lit * scale  # each layer's largest litter pool in [0.5, 1): no flux underflows
    scaled = jnp.where(e < _DEEP_LITTER_EXPONENT, jax.lax.stop_gradient(scaled), scaled)
    flux = m.operator.decay[L1:] * scaled
    k = m.kinetics
    soil = soil_steady_state(k, m.xi, k.to_doc @ flux, k.to_mic @ flux, k.to_soc @ flux)
    return soil * jnp.stack([jnp.ones_like(unscale), unscale, unscale, jnp.ones_like(unscale)])


def steady_state(
    params: Float[ArrayLike, "23"],
    forcing: Forcing | Prepared,
    mode: Mode | None = None,
    method: Literal["structured", "dense"] = "structured",
) -> SteadyState:
    """Steady state of one profile: litter matrix solve, then the soil closed form (SPEC 3.4-3.5).

    Pure and jit/vmap/grad-able. Outside ``jit`` bad input raises ``ValueError`` naming the
    field or parameter; inside ``jit``/``vmap`` it comes back as a flag (``ok = False``), with
    finite pools and exactly zero gradient for a masked loss (`soc_jax.models.common`).

    Args:
        params: physical parameter values in `PARAMETERS` order, shape (23,).
        forcing: one profile's `Forcing`, or its `Prepared` form (`prepare`).
        mode: ``"proda"`` (the public code, parameter-13 quirk, DA check flagged; the default)
            or ``"documented"`` (every parameter its documented role); a `Prepared` profile
            carries its own.
        method: litter solver, ``"structured"`` (block sweeps with implicit gradients) or
            ``"dense"`` (reference: ``jnp.linalg.solve`` on the 80x80 matrix).

    Returns:
        `SteadyState` with pools (8, 20) and soc (20,) in gC m-3.

    Example:
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> from soc_jax.models import compas
        >>> result = compas.steady_state(compas.PARAMETERS.midpoint(), forcing)  # doctest: +SKIP
        >>> prepared = compas.prepare(forcing_batch)  # doctest: +SKIP
        >>> batch = jax.vmap(compas.steady_state)(params_batch, prepared)  # doctest: +SKIP
    """
    require_x64("COMPAS steady state")
    if not isinstance(forcing, Prepared):
        _check_mode("proda" if mode is None else mode)
    validate_profile_inputs(PARAMETERS, params, forcing, within_prior=True)
    return _steady_state(jnp.asarray(params, dtype=jnp.float64), forcing, mode, method)


@functools.partial(jax.jit, static_argnames=("mode", "method"))
def _steady_state(
    params: Array, forcing: Forcing | Prepared, mode: str | None, method: str
) -> SteadyState:
    prep, mode = _as_prepared(forcing, mode)
    params_ok = parameters_ok(PARAMETERS, params, within_prior=True)
    # a zero turnover time or water scaling has no steady state (flagged NONFINITE, pools 0);
    # the stand-in parameters keep its gradient finite (zero), as for a flagged profile
    defined = _rates_defined(params)
    params = stand_in_parameters(PARAMETERS, params, params_ok & defined)
    m = _matrices(params, prep, mode)
    litter, rcond, usable = solve_guarded(m.operator, m.inputs, method)
    litter = jnp.where(litter < 0, 0.0, litter)
    soil = _soil_pools(m, litter)
    x = jnp.where(defined, jnp.concatenate([litter, soil]), jnp.nan)
    rcond = jnp.where(defined, rcond, 0.0)
    negative = jnp.any(x < 0)
    finite_soil = jnp.where(jnp.isfinite(soil), soil, 0.0)
    soil_stocks = finite_soil @ jnp.asarray(DZ[:N_LAYERS])  # (4,) gC m-2
    mic_stock = soil_stocks[MIC - DOC]
    mic_ratio = jnp.where(
        mic_stock > 0, jnp.sum(soil_stocks) / jnp.where(mic_stock > 0, mic_stock, 1.0), jnp.inf
    )
    extra = [(NEGATIVE, negative)]
    if mode == "proda":
        extra.append((MIC_RATIO, mic_ratio < MIC_RATIO_MIN))
    flags, pools = finish(prep.valid, params_ok, rcond, usable, x, tuple(extra))
    return SteadyState(
        pools=pools,
        soc=jnp.sum(pools[DOC:], axis=0),
        ok=flags == 0,
        flags=flags,
        rcond=rcond,
        negative=negative,
        mic_ratio=mic_ratio,
    )


def _uptake(k: Kinetics, xi: Array, doc: Array, mic: Array) -> Array:
    """U_DOC = V_d xi MIC DOC / (K_a xi + DOC), gC m-3 day-1."""
    return k.vmax_assim * xi * mic * doc / (k.km_assim * xi + doc)


def _decomposition(k: Kinetics, xi: Array, enz: Array, soc: Array) -> Array:
    """U_SOC = V_s xi ENZ SOC / (K_d xi + SOC), gC m-3 day-1."""
    return k.vmax_decom * xi * enz * soc / (k.km_decom * xi + soc)


def tendency(
    pools: Float[ArrayLike, "8 20"],
    params: Float[ArrayLike, "23"],
    forcing: Forcing | Prepared,
    mode: Mode | None = None,
) -> Float[Array, "8 20"]:
    """Rate of change of all 160 states, gC m-3 day-1 (time in days).

    Litter: ``I - (V4 - A4 K4) L``; soil: the ODEs of the module docstring. At the (valid)
    `steady_state` this is zero. For a diffrax solve use ``lambda t, y, args: tendency(y, ...)``
    with t in days (multiply by 365 for time in years).

    Args:
        pools: (8, 20) gC m-3 in `POOLS` order.
        params: (23,) physical parameters.
        forcing: one profile's `Forcing`.
        mode: ``"proda"`` or ``"documented"``.
    """
    m = matrices(params, forcing, mode)
    return _tendency(m, jnp.asarray(pools))


def _tendency(m: COMPASMatrices, x: Array) -> Array:
    k, xi = m.kinetics, m.xi
    litter = x[:N_LITTER]
    doc, mic, enz, soc = x[DOC], x[MIC], x[ENZ], x[SOC]
    in_doc, in_mic, in_soc = soil_inputs(m, litter)
    u_doc = _uptake(k, xi, doc, mic)
    u_soc = _decomposition(k, xi, enz, soc)
    death = k.death * xi * mic
    d_litter = m.inputs - m.operator.matvec(litter)
    d_doc = in_doc + (1.0 - k.pdeath2soc) * death + k.enzyme_turnover * xi * enz + u_soc - u_doc
    d_mic = in_mic + k.mic_cue * u_doc - (k.death + k.enzyme_production) * xi * mic
    d_enz = k.enzyme_production * xi * mic - k.enzyme_turnover * xi * enz
    d_soc = in_soc + k.pdeath2soc * death - u_soc
    return jnp.concatenate([d_litter, jnp.stack([d_doc, d_mic, d_enz, d_soc])])


def respiration(
    pools: Float[ArrayLike, "8 20"],
    params: Float[ArrayLike, "23"],
    forcing: Forcing | Prepared,
    mode: Mode | None = None,
) -> Float[Array, "20"]:
    """Heterotrophic respiration per layer, gC m-3 day-1.

    The respired part of the litter decomposition fluxes (what does not go to DOC, MIC or SOC;
    CWD passes everything on) plus the ``(1 - mic_cue)`` loss on DOC uptake.
    """
    m = matrices(params, forcing, mode)
    x = jnp.asarray(pools)
    k = m.kinetics
    flux = m.operator.decay[L1:] * x[L1:N_LITTER]
    return k.litter_respired @ flux + (1.0 - k.mic_cue) * _uptake(k, m.xi, x[DOC], x[MIC])


class Diagnostics(eqx.Module):
    """Per-layer Michaelis-Menten diagnostics of a steady state (Tao et al. 2024, Fig. 5).

    ``km_decom_ratio >> 1`` means SOC decomposition is effectively first order in SOC (rate
    ``V_s xi ENZ / (K_d xi)``); ``km_assim_ratio >> 1`` the same for DOC uptake.

    Attributes:
        km_decom_ratio: ``K_d xi / SOC`` per layer, (20,) (inf where SOC = 0).
        km_assim_ratio: ``K_a xi / DOC`` per layer, (20,) (inf where DOC = 0).
        decomposition_rate: apparent first-order SOC decomposition rate ``U_SOC / SOC``, (20,),
            yr-1.
        uptake_rate: apparent first-order DOC uptake rate ``U_DOC / DOC``, (20,), yr-1.
        respiration: heterotrophic respiration per layer, (20,), gC m-3 yr-1.
        pool_stocks: column stock of each pool, (8,), gC m-2.
        soc_stocks: `soc_jax.grid.Stocks` of DOC+MIC+ENZ+SOC (0-30, 0-100, 0-200 cm, total),
            gC m-2.
    """

    km_decom_ratio: Float[Array, "20"]
    km_assim_ratio: Float[Array, "20"]
    decomposition_rate: Float[Array, "20"]
    uptake_rate: Float[Array, "20"]
    respiration: Float[Array, "20"]
    pool_stocks: Float[Array, "8"]
    soc_stocks: grid.Stocks


def diagnostics(
    params: Float[ArrayLike, "23"],
    forcing: Forcing | Prepared,
    mode: Mode | None = None,
    state: SteadyState | None = None,
) -> Diagnostics:
    """Michaelis-Menten ratios, apparent rates and stocks at the steady state.

    Args:
        params: (23,) physical parameters.
        forcing: one profile's `Forcing`.
        mode: ``"proda"`` or ``"documented"``.
        state: a precomputed `steady_state` of the same inputs (computed if None).

    Returns:
        `Diagnostics` (meaningful where ``state.ok``).
    """
    if state is None:
        state = steady_state(params, forcing, mode)
    m = matrices(jnp.asarray(params, dtype=jnp.float64), forcing, mode)
    k, xi, x = m.kinetics, m.xi, state.pools  # pools: zero where flagged (see state.flags)
    doc, mic, enz, soc = x[DOC], x[MIC], x[ENZ], x[SOC]

    def ratio(num, den):  # inf where the substrate is zero (NaN stays NaN)
        nz = den != 0
        return jnp.where(nz, num / jnp.where(nz, den, 1.0), jnp.inf)

    return Diagnostics(
        km_decom_ratio=ratio(k.km_decom * xi, soc),
        km_assim_ratio=ratio(k.km_assim * xi, doc),
        decomposition_rate=DAYS_PER_YEAR * k.vmax_decom * xi * enz / (k.km_decom * xi + soc),
        uptake_rate=DAYS_PER_YEAR * k.vmax_assim * xi * mic / (k.km_assim * xi + doc),
        respiration=DAYS_PER_YEAR * respiration(x, params, forcing, mode),
        pool_stocks=x @ jnp.asarray(DZ[:N_LAYERS]),
        soc_stocks=grid.stocks(state.soc),
    )


def stocks(soc: Float[ArrayLike, "... 20"]) -> grid.Stocks:
    """Column stocks 0-30, 0-100, 0-200 cm and total of layer SOC (gC m-3) -> gC m-2."""
    return grid.stocks(soc)
