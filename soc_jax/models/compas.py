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

**Layers with almost no litter** are evaluated scale-safely (`soc_jax.models.compas_soil`): the
closed form is exact for every positive litter flux, with finite gradients, and gives zero soil
carbon only where the flux is exactly zero.

Units: pools in gC m-3, rates in day-1, inputs and fluxes in gC m-3 day-1, stocks in gC m-2.

References:
    Tao et al. (2024), Global Change Biology 30:e17297 (CLM5 vs COMPAS after PRODA DA).
    Tao et al. (2023), Nature 618, 981-985 (PRODA); public code phxtao/PRODA_MIC,
    ``SRC_DA/src_cesm2_clm5_mic_vr_v22``.
    Jackson et al. (1996), Oecologia 108, 389-411 (beta root profile).
    Allison, Wallenstein & Bradford (2010), Nature Geoscience 3, 336-340 (microbial-enzyme model).
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .. import grid
from ..forcing import DAYS_PER_YEAR, Forcing, water_scalar
from ..grid import DZ, N_LAYERS, ZSOI
from ..linalg import CompartmentalOperator
from ..parameters import ParameterSpace, ParameterSpec
from . import common
from .common import RCOND_MIN as RCOND_MIN
from .common import Method
from .common import decay_rate as _rate
from .common import stocks as stocks
from .compas_soil import Kinetics as Kinetics
from .compas_soil import ratio_or_inf, soil_pools, soil_tendency, uptake
from .compas_soil import soil_steady_state as soil_steady_state

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


POOLS: tuple[str, ...] = ("cwd", "litter1", "litter2", "litter3", "doc", "mic", "enz", "soc")
N_POOLS = len(POOLS)
CWD, L1, L2, L3, DOC, MIC, ENZ, SOC = range(N_POOLS)
N_LITTER = 4
Mode = Literal["proda", "documented"]
Pools = Float[ArrayLike, "8 20"]  # gC m-3, `POOLS` by layer
Params = Float[ArrayLike, "23"]  # physical parameter values in `PARAMETERS` order
PerLayer = Float[Array, "20"]  # one value per layer
EFOLDING: float = 0.5  # m, fixed e-folding depth of COMPAS (SPEC 3.2, not a parameter)
_DEPTH = np.exp(-ZSOI[:N_LAYERS] / EFOLDING)  # the depth scalar, fixed
MIC_RATIO_MIN: float = 10.0  # DA check of matrix_fun.m: total soil C stock / MIC stock >= 10

TAU4S3_LOG_RANGE: tuple[float, float] = (-3.0, 0.0)  # tau4s3 = 10**(3 p - 3) yr (matrix_fun.m)

_S = ParameterSpec
_NO_VALUE = "no value in the code; prior midpoint"  # note of a customary value
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
           _NO_VALUE),
        _S("pl2s1", 0.05, 0.3, "-", "share of cellulose litter decomposition -> DOC", "E", 0.175,
           _NO_VALUE),
        _S("pl3s4", 0.6, 0.95, "-", "share of lignin litter decomposition -> SOC", "E", 0.775,
           _NO_VALUE),
        _S("l1_cue", 0.4, 0.9, "-", "CUE of direct metabolic litter -> MIC uptake", "A", 0.65,
           _NO_VALUE),
        _S("l2l3_cue", 0.0, 0.4, "-", "CUE of direct cellulose/lignin litter -> MIC uptake", "A",
           0.2, _NO_VALUE),
        _S("mic_cue", 0.01, 0.7, "-", "microbial CUE of DOC uptake", "A", 0.355,
           _NO_VALUE),
        _S("pdeath2soc", 0.0, 1.0, "-", "share of dead microbes -> SOC (rest -> DOC)", "E", 0.5),
        _S("beta", 0.5, 0.9999, "-", "Jackson beta of the vertical input profile", "I", 0.95),
    ]
)  # fmt: skip
_IX = {name: i for i, name in enumerate(PARAMETERS.names)}


def default_parameters() -> np.ndarray:
    """COMPAS customary parameter values, shape (23,), physical units (see `PARAMETERS`)."""
    return PARAMETERS.default()


class Prepared(common.PreparedProfile):
    """Forcing-only work of one COMPAS profile, done once by `prepare` (SPEC 3.3-3.4, 1.7-1.8).

    The fields of `soc_jax.models.common.PreparedProfile` and COMPAS's own:

    Attributes:
        o_mean: mean over months of O_SCALAR, (20,).
        xi_n: nitrogen scalar ``mean(FPI)``, (20,).
        mode: the mode it was prepared for.
    """

    o_mean: Float[Array, "20"]
    xi_n: Float[Array, "20"]
    mode: str = eqx.field(static=True, default="proda")


def prepare(forcing: Forcing, mode: Mode = "proda") -> Prepared:
    """Do the forcing-only work of a COMPAS profile once (transport basis, scalars, inputs).

    Args:
        forcing: one profile's `Forcing`, or a batch (fields keep the leading axes).
        mode: ``"proda"`` or ``"documented"``.

    Returns:
        `Prepared`, accepted by `steady_state`, `matrices`, `tendency`, `respiration` and
        `diagnostics` in place of the forcing.

    Raises:
        ValueError: outside ``jit``, for a single profile whose forcing breaks a rule.
    """
    return _MODEL.prepare(forcing, mode)


def _prepare(forcing: Forcing, mode: str) -> Prepared:
    forcing, shared = common.prepare_shared(forcing)
    o_mean = jnp.mean(forcing.o_scalar, axis=0)
    return Prepared(**shared, o_mean=o_mean, xi_n=jnp.mean(forcing.fpi, axis=0), mode=mode)


Profile = Forcing | Prepared  # one profile's forcing, raw or prepared


class COMPASMatrices(common.MatrixForm):
    """The litter matrix system and soil constants of one profile.

    The fields of `soc_jax.models.common.MatrixForm` (the litter operator
    ``S4 = V4 - A4 K4``, 4 pools x 20 layers, day-1; litter inputs (4, 20) gC m-3 day-1; input
    profile; input totals) and:

    Attributes:
        xi: environmental scalar ``mean(xi_T) mean(xi_W) mean(xi_O) exp(-z/0.5)``, shape (20,).
        xi_n: nitrogen scalar ``mean(FPI)`` (litter only), shape (20,).
        kinetics: `Kinetics` of the soil subsystem.
    """

    xi: Float[Array, "20"]
    xi_n: Float[Array, "20"]
    kinetics: Kinetics


class SteadyState(common.SteadyStateCore):
    """Steady state of one profile (`soc_jax.models.common.SteadyStateCore`).

    ``pools`` (8, 20) gC m-3 are CWD, l1, l2, l3, DOC, MIC, ENZ, SOC (zero soil pools in layers
    without any litter); ``soc`` (20,) gC m-3 is DOC + MIC + ENZ + SOC; ``flags`` can be
    ``INPUT``, ``PRIOR``, ``SINGULAR``, ``NONFINITE``, ``NEGATIVE`` and, in mode='proda',
    ``MIC_RATIO``; ``rcond`` is that of the litter system matrix. COMPAS adds:

    Attributes:
        negative: some pool of the closed-form steady state is < 0 (where PRODA negates the
            output).
        mic_ratio: column stock of DOC+MIC+ENZ+SOC over the MIC stock (inf without MIC).
    """

    negative: Bool[Array, ""]
    mic_ratio: Float[Array, ""]


def enzyme_turnover_time(params: Params, mode: Mode = "proda") -> Float[Array, ""]:
    """Enzyme turnover time ``tau4s3 = 10**(3 p - 3)`` yr (SPEC 3.2, 3.6.1).

    Args:
        params: physical parameters, shape (23,).
        mode: ``"proda"`` takes ``p`` from parameter 13 (the normalized ``mm_const_assim``, the
            public code's quirk); ``"documented"`` returns parameter 11 (``tau4s3``, yr), which is
            ``10**(3 p11 - 3)`` of its own normalized value.

    Returns:
        tau4s3 in yr, in [1e-3, 1] for parameters within the prior.
    """
    _MODEL.check_mode(mode)
    params = jnp.asarray(params)
    if mode == "documented":
        return params[_IX["tau4s3"]]
    p13 = PARAMETERS.to_normalized(params)[_IX["mm_const_assim"]]
    lo, hi = TAU4S3_LOG_RANGE
    return 10.0 ** (lo + (hi - lo) * p13)


_TURNOVER = (
    "tau4cwd", "tau4l1", "tau4l2", "tau4s1", "tau4s2_death", "tau4s2_enz", "tau4s3", "tau4s4"
)  # fmt: skip


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


def matrices(params: Params, forcing: Profile, mode: Mode | None = None) -> COMPASMatrices:
    """Build the litter system ``S4 = V4 - A4 K4``, its inputs and the soil constants.

    Args:
        params: physical parameter values in `PARAMETERS` order, shape (23,).
        forcing: one profile's `Forcing` or `Prepared` profile.
        mode: ``"proda"`` (default) or ``"documented"`` (see the module docstring); a
            `Prepared` profile carries its own.

    Returns:
        `COMPASMatrices`.
    """
    return _MODEL.matrices(params, forcing, mode)


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
    profile, inputs = common.beta_inputs(P["beta"], prep)
    kinetics = _kinetics(params, mode)
    return COMPASMatrices(op, inputs, profile, prep.input_totals, xi, xi_n, kinetics)


_MODEL = common.Skeleton(
    name="COMPAS",
    space=PARAMETERS,
    modes=("proda", "documented"),
    prior_modes=("proda", "documented"),
    prepared_type=Prepared,
    prepare_one=_prepare,
    build=_matrices,
    rates_defined=_rates_defined,
)


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


def steady_state(
    params: Params, forcing: Profile, mode: Mode | None = None, method: Method = "structured"
) -> SteadyState:
    """Steady state of one profile: litter matrix solve, then the soil closed form (SPEC 3.4-3.5).

    Pure and jit/vmap/grad-able, with bad input raised or flagged as in CLM5
    (`soc_jax.models.common.Skeleton.checked_inputs`).

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
        >>> from soc_jax.models import compas
        >>> import jax; jax.config.update("jax_enable_x64", True)
        >>> prepared = compas.prepare(forcing_batch)  # doctest: +SKIP
        >>> batch = jax.vmap(compas.steady_state)(params_batch, prepared)  # doctest: +SKIP
        >>> result = compas.steady_state(compas.PARAMETERS.midpoint(), forcing)  # doctest: +SKIP
    """
    params, mode = _MODEL.checked_inputs(params, forcing, mode)
    return _steady_state(params, forcing, mode, method)


@functools.partial(jax.jit, static_argnames=("mode", "method"))
def _steady_state(params: Array, forcing: Profile, mode: str, method: str) -> SteadyState:
    solved = _MODEL.solve(params, forcing, mode, method)
    m, litter = solved.matrices, solved.x
    soil = soil_pools(m.kinetics, m.xi, m.operator.decay[L1:], litter[L1:N_LITTER])
    x = jnp.where(solved.defined, jnp.concatenate([litter, soil]), jnp.nan)
    negative = jnp.any(x < 0)
    mic_ratio = _mic_ratio(soil)
    extra = [(common.NEGATIVE, negative)]
    if solved.mode == "proda":
        extra.append((common.MIC_RATIO, mic_ratio < MIC_RATIO_MIN))
    flags, pools = solved.finish(x, tuple(extra))
    return SteadyState(
        pools=pools,
        soc=jnp.sum(pools[DOC:], axis=0),
        ok=flags == 0,
        flags=flags,
        rcond=solved.rcond,
        negative=negative,
        mic_ratio=mic_ratio,
    )


def _mic_ratio(soil: Array) -> Array:
    """Column stock of DOC+MIC+ENZ+SOC over the MIC stock (inf without MIC); NaN soil counts 0."""
    finite_soil = jnp.where(jnp.isfinite(soil), soil, 0.0)
    soil_stocks = finite_soil @ jnp.asarray(DZ[:N_LAYERS])  # (4,) gC m-2
    mic_stock = soil_stocks[MIC - DOC]
    return jnp.where(
        mic_stock > 0, jnp.sum(soil_stocks) / jnp.where(mic_stock > 0, mic_stock, 1.0), jnp.inf
    )


def tendency(
    pools: Pools, params: Params, forcing: Profile, mode: Mode | None = None
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
    litter = x[:N_LITTER]
    d_litter = m.inputs - m.operator.matvec(litter)
    d_soil = soil_tendency(m.kinetics, m.xi, soil_inputs(m, litter), x[DOC:])
    return jnp.concatenate([d_litter, d_soil])


def respiration(
    pools: Pools, params: Params, forcing: Profile, mode: Mode | None = None
) -> Float[Array, "20"]:
    """Heterotrophic respiration per layer, gC m-3 day-1.

    The respired part of the litter decomposition fluxes (what does not go to DOC, MIC or SOC;
    CWD passes everything on) plus the ``(1 - mic_cue)`` loss on DOC uptake.
    """
    m = matrices(params, forcing, mode)
    x = jnp.asarray(pools)
    k = m.kinetics
    flux = m.operator.decay[L1:] * x[L1:N_LITTER]
    return k.litter_respired @ flux + (1.0 - k.mic_cue) * uptake(k, m.xi, x[DOC], x[MIC])


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

    km_decom_ratio: PerLayer
    km_assim_ratio: PerLayer
    decomposition_rate: PerLayer
    uptake_rate: PerLayer
    respiration: PerLayer
    pool_stocks: Float[Array, "8"]
    soc_stocks: grid.Stocks


def diagnostics(
    params: Params, forcing: Profile, mode: Mode | None = None, state: SteadyState | None = None
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

    ratio = ratio_or_inf  # inf where the substrate is zero (NaN stays NaN)
    return Diagnostics(
        km_decom_ratio=ratio(k.km_decom * xi, soc),
        km_assim_ratio=ratio(k.km_assim * xi, doc),
        decomposition_rate=DAYS_PER_YEAR * k.vmax_decom * xi * enz / (k.km_decom * xi + soc),
        uptake_rate=DAYS_PER_YEAR * k.vmax_assim * xi * mic / (k.km_assim * xi + doc),
        respiration=DAYS_PER_YEAR * respiration(x, params, forcing, mode),
        pool_stocks=x @ jnp.asarray(DZ[:N_LAYERS]),
        soc_stocks=grid.stocks(state.soc),
    )
