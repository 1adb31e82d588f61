"""Independent NumPy/SciPy reference of the COMPAS microbial soil-carbon steady state of PRODA.

What this is
------------
A deliberately literal, profile-by-profile port of the COMPAS model (``cesm2_clm5_mic_vr_v22``) of
the PRODA microbial data-assimilation code (Tao et al., GCB 2024). Two roles:

1. the speed baseline, i.e. "the way the original MATLAB code does it": for every profile it builds
   the 12 monthly CLM5 Patankar transport matrices, averages them, forms the dense 80x80 litter
   system ``A4 K4 - V4`` and solves it with a dense LU factorisation, then evaluates the closed-form
   Michaelis-Menten soil steady state layer by layer;
2. the test oracle for the JAX implementation in ``soc_jax``.

Independence
------------
Written from the written specification only (``SPEC_PRODA.md`` sections 3.1-3.6 and the shared
pieces 1.1 grid, 1.4 scalars, 1.7 transport, 1.8 inputs, 1.13 quirks), with the numbers of
``proda_constants_and_priors.json`` copied in as literals. It does not import, and was not written
by reading, anything under ``soc_jax/``. The shared CLM5 pieces (grid literals, monthly Patankar
transport builder, beta input profile) are imported from the independent CLM5 baseline
``benchmarks/baselines/numpy_clm5.py`` (also written from the SPEC only). No run-time dependency on
the shared specification folder.

MATLAB files mirrored (PRODA ``SRC_DA/src_cesm2_clm5_mic_vr_v22/``)
------------------------------------------------------------------
- ``matrix_fun.m`` (DA) / ``fun_var_decom.m`` (global): parameter transforms, environmental scalar
  (product of monthly means), input vector, litter solve, analytic soil steady state, validity flags
  (SPEC 3.2-3.5);
- ``a_matrix.m`` / ``kk_matrix.m``: the 80x80 litter transfer and decomposition matrices (SPEC 3.4);
- ``tri_matrix.m``: CLM5 Patankar vertical transport, per month then averaged, on the l1..l3 blocks
  only (CWD has none; SPEC 1.7, 3.3).

Pools and layout
----------------
Litter state (80,): index ``pool * 20 + layer`` (0-based), pools CWD, l1 (metabolic),
l2 (cellulose), l3 (lignin). Soil pools per layer (no vertical transport): DOC (s1), MIC (s2),
ENZ (s3), SOC (s4). ``pools`` outputs are (8, 20) in the order CWD, l1, l2, l3, DOC, MIC, ENZ, SOC.
Modelled "SOC" compared to data is DOC + MIC + ENZ + SOC.

Units
-----
- carbon: gC m-3; stocks sum_j C_j dz_j: gC m-2; depths / thicknesses: m;
- rates: day-1 (turnover times tau in yr -> k = 1 / (365 tau)); Vmax-like rates Vd = 1/(365 tau4s1),
  Vs = 1/(365 tau4s4) in day-1; Michaelis constants Ka, Kd in gC m-3 (scaled by xi as coded);
- diffusivities: m2 yr-1 (divided by 365 inside the transport builder);
- input vector I: gC m-3 day-1; litter forcing: gC m-3 per month.

Modes
-----
- ``"proda"``: exactly as coded. The enzyme turnover is ``tau4s3 = 10**(3 p13 - 3)`` yr, driven by
  the NORMALIZED value p13 = (mm_const_assim - 300) / (3000 - 300) of parameter 13 (SPEC 3.6.1);
  parameter 11 is inert. The DA check (total soil C stock / MIC stock < 10) invalidates a profile.
- ``"documented"``: as documented: the enzyme turnover is the physical parameter 11 itself
  (``params[10]`` in [1e-3, 1] yr; ``to_physical`` maps its normalized value log-uniformly,
  ``10**(3 p11 - 3)``). The DA check is computed and reported but does not invalidate.

Deliberate deviations from the MATLAB code: the sign flip of SPEC 3.5 (negate all positive entries
when any pool is negative) is NOT applied; the condition is reported as ``negative`` instead. Layers
that receive no litter at all (F_l1 = F_l2 = F_l3 = 0) give 0/0 in the closed form; their soil
pools are set to 0 (the physical steady state) and reported in ``zero_litter_layers``. By default
subnormal fluxes (< 2.2e-308) count as zero too; see ``steady_state``.

Frozen columns: a completely frozen month has D = U = 0, floored to 1e-30 by ``tri_matrix.m``
(SPEC 1.7), so V is ~1e-27 d-1, not exactly 0. Litter put into layer 1 therefore leaks ~1e-22 of
itself per layer downwards (until it underflows near layer 13-14), and because the closed-form DOC*
and SOC* are invariant to the scale of the inputs, those layers get O(Ka) DOC and O(Kd) SOC. That
is what the MATLAB code computes and what this port reproduces.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

try:  # imported as part of the ``benchmarks.baselines`` package
    from . import numpy_clm5 as _clm5
except ImportError:  # pragma: no cover - run as a loose module
    from benchmarks.baselines import numpy_clm5 as _clm5

# --------------------------------------------------------------------------------------------------
# Grid and constants (SPEC 1.1; COMPAS fixed values of SPEC 3.2)
# --------------------------------------------------------------------------------------------------

N_LAYERS = 20
N_MONTHS = 12
N_LITTER = 4
N_LITTER_STATE = N_LITTER * N_LAYERS  # 80
DAYS_PER_YEAR = 365.0
EFOLDING = 0.5  # m, fixed in COMPAS (not a parameter)
DZ = _clm5.DZ[:N_LAYERS].copy()  # layer thickness, m
ZISOI = _clm5.ZISOI[:N_LAYERS].copy()  # bottom interface, m
ZSOI = _clm5.ZSOI[:N_LAYERS].copy()  # node depth, m
EPS = np.finfo(np.float64).eps
TINY = np.finfo(np.float64).tiny  # smallest normal float64, ~2.2e-308

POOL_NAMES = ("cwd", "l1", "l2", "l3", "doc", "mic", "enz", "soc")
CWD, L1, L2, L3, DOC, MIC, ENZ, SOC = range(8)
MODES = ("proda", "documented")

# --------------------------------------------------------------------------------------------------
# Parameters (SPEC 3.2, 23, physical = lower + p (upper - lower); tau4s3 log-uniform)
# --------------------------------------------------------------------------------------------------

PARAM_NAMES = (
    "bio",  # 1 bioturbation, m2 yr-1
    "cryo",  # 2 cryoturbation, m2 yr-1
    "q10",  # 3 Q10 (= frozen Q10), -
    "w_scaling",  # 4 W_SCALAR multiplier (capped at 1), -
    "tau4cwd",  # 5 CWD turnover, yr
    "tau4l1",  # 6 metabolic litter turnover, yr
    "tau4l2",  # 7 cellulose (= lignin) litter turnover, yr
    "tau4s1",  # 8 1/Vmax of DOC uptake by MIC, yr
    "tau4s2_death",  # 9 microbial death time, yr
    "tau4s2_enz",  # 10 time constant of enzyme production by MIC, yr
    "tau4s3",  # 11 enzyme turnover, yr (inert in proda mode)
    "tau4s4",  # 12 1/Vmax of SOC decomposition by ENZ, yr
    "mm_const_assim",  # 13 Km of DOC uptake, gC m-3 (its normalized value also drives tau4s3)
    "mm_const_decom",  # 14 Km of SOC decomposition, gC m-3
    "fcwdl2",  # 15 CWD -> l2 (rest -> l3), -
    "pl1s1",  # 16 share of l1 decomposition -> DOC, -
    "pl2s1",  # 17 share of l2 decomposition -> DOC, -
    "pl3s4",  # 18 share of l3 decomposition -> SOC, -
    "l1_cue",  # 19 CUE of direct l1 -> MIC, -
    "l2l3_cue",  # 20 CUE of direct l2, l3 -> MIC, -
    "mic_cue",  # 21 microbial CUE on DOC uptake, -
    "pdeath2soc",  # 22 share of dead MIC -> SOC (rest -> DOC), -
    "beta",  # 23 Jackson beta of the input profile (depth in cm), -
)
LOWER = np.array(
    [3e-05, 3e-05, 1.2, 0.0, 1.0, 0.0, 0.1, 0.001, 0.0, 15.0, 0.001, 0.0,
     300.0, 100000.0, 0.5, 0.0, 0.05, 0.6, 0.4, 0.0, 0.01, 0.0, 0.5]
)  # fmt: skip
UPPER = np.array(
    [0.0005, 0.0016, 3.0, 5.0, 6.0, 0.1, 0.3, 0.03, 2.0, 30.0, 1.0, 0.0003,
     3000.0, 1000000.0, 1.0, 0.1, 0.3, 0.95, 0.9, 0.4, 0.7, 1.0, 0.9999]
)  # fmt: skip
I_TAU4S3 = 10  # 0-based index of parameter 11
I_MM_ASSIM = 12  # 0-based index of parameter 13
LOG_PARAMS = (I_TAU4S3,)  # log-uniform in the normalized value


def to_physical(p_normalized: np.ndarray) -> np.ndarray:
    """Map normalized p in (0, 1) to physical values.

    Linear ``lower + p (upper - lower)`` for all parameters except tau4s3 (index 10), which is
    log-uniform on [1e-3, 1] yr: ``10**(3 p - 3)`` (its documented role; inert in proda mode).

    Args:
        p_normalized: (..., 23) normalized parameters.

    Returns:
        (..., 23) physical parameters in the units of ``PARAM_NAMES``.
    """
    p = np.asarray(p_normalized, dtype=float)
    x = LOWER + p * (UPPER - LOWER)
    for i in LOG_PARAMS:
        lo, hi = np.log10(LOWER[i]), np.log10(UPPER[i])
        x[..., i] = 10.0 ** (lo + p[..., i] * (hi - lo))
    return x


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _unpack(params: np.ndarray, mode: str) -> dict[str, float]:
    """Named physical parameters plus the derived quantities of SPEC 3.2 (and the mode's tau4s3)."""
    params = np.asarray(params, dtype=float)
    if params.shape != (len(PARAM_NAMES),):
        raise ValueError(f"params must have shape (23,), got {params.shape}")
    p = {name: float(v) for name, v in zip(PARAM_NAMES, params, strict=True)}
    if mode == "proda":
        # matrix_fun.m: tau4s3 = 10^(3 kp(13) - 3) with kp(13) the NORMALIZED parameter 13
        p13 = (p["mm_const_assim"] - LOWER[I_MM_ASSIM]) / (UPPER[I_MM_ASSIM] - LOWER[I_MM_ASSIM])
        p["tau4s3_used"] = float(10.0 ** (3.0 * p13 - 3.0))
    else:
        p["tau4s3_used"] = p["tau4s3"]
    p["tau4l3"] = p["tau4l2"]
    # derived transfer fractions (SPEC 3.2)
    p["fl1s2"] = (1.0 - p["pl1s1"]) * p["l1_cue"]
    p["fl2s2"] = (1.0 - p["pl2s1"]) * p["l2l3_cue"]
    p["fl3s2"] = (1.0 - p["pl3s4"]) * p["l2l3_cue"]
    p["fs1s2"] = p["mic_cue"]
    return p


def _forcing(forcing: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate shapes and return float64 copies of the forcing arrays used by COMPAS."""
    shapes = {
        "tsoi": (N_MONTHS, N_LAYERS),
        "w_scalar": (N_MONTHS, N_LAYERS),
        "o_scalar": (N_MONTHS, N_LAYERS),
        "fpi": (N_MONTHS, N_LAYERS),
        "nbedrock": (N_MONTHS,),
        "altmax": (N_MONTHS,),
        "altmax_lastyear": (N_MONTHS,),
        "litter_input": (N_LITTER, N_MONTHS, N_LAYERS),
    }
    out = {}
    for key, shape in shapes.items():
        value = np.asarray(forcing[key], dtype=float)
        if value.shape != shape:
            raise ValueError(f"forcing[{key!r}] must have shape {shape}, got {value.shape}")
        out[key] = value
    nb = out["nbedrock"]
    if not (np.all(np.isfinite(nb)) and np.all(nb == np.round(nb))):
        raise ValueError("forcing['nbedrock'] must be integer-valued (SPEC 1.13.6)")
    if np.any(nb < 0) or np.any(nb > 24):
        raise ValueError("forcing['nbedrock'] must lie in 0..24")
    return out


# --------------------------------------------------------------------------------------------------
# Scalars (SPEC 1.4, 3.3): product of monthly means
# --------------------------------------------------------------------------------------------------


def _scalars(p: Mapping[str, float], f: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """xi (20,) = mean_m(xit) mean_m(xiw) mean_m(xio) exp(-zsoi / 0.5); xin (20,) = mean_m(FPI)."""
    q10 = p["q10"]
    fq10 = q10
    tsoi = f["tsoi"]
    with np.errstate(invalid="ignore", over="ignore"):
        xit = np.where(
            tsoi >= 273.15,
            q10 ** ((tsoi - 298.15) / 10.0),
            q10 ** ((273.15 - 298.15) / 10.0) * fq10 ** ((tsoi - 273.15) / 10.0),
        )
        xiw = np.fmin(f["w_scalar"] * p["w_scaling"], 1.0)  # MATLAB min ignores NaN
    xio = f["o_scalar"]
    depth = np.exp(-ZSOI / EFOLDING)
    xi = np.mean(xit, axis=0) * np.mean(xiw, axis=0) * np.mean(xio, axis=0) * depth
    xin = np.mean(f["fpi"], axis=0)
    return xi, xin


# --------------------------------------------------------------------------------------------------
# Litter matrices (SPEC 3.4)
# --------------------------------------------------------------------------------------------------


def _transport_block(p: Mapping[str, float], f: Mapping[str, np.ndarray]) -> np.ndarray:
    """V (20, 20) day-1: NaN-omitting mean over months of the CLM5 Patankar tridiagonal block."""
    blocks = np.empty((N_MONTHS, N_LAYERS, N_LAYERS))
    sl = slice(N_LAYERS, 2 * N_LAYERS)  # pool block 2 of the 140-state CLM5 builder (all identical)
    with np.errstate(all="ignore"):
        for m in range(N_MONTHS):
            v_m = _clm5._tri_matrix_month(
                f["nbedrock"][m], f["altmax"][m], f["altmax_lastyear"][m], p["bio"], p["cryo"]
            )
            blocks[m] = v_m[sl, sl]
        return _clm5._nanmean_months(blocks)


def _litter_system(p: Mapping[str, float], f: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    n = N_LAYERS
    xi, xin = _scalars(p, f)
    taus = (p["tau4cwd"], p["tau4l1"], p["tau4l2"], p["tau4l3"])
    with np.errstate(divide="ignore"):
        k_base = 1.0 / (DAYS_PER_YEAR * np.array(taus))  # day-1
    k_diag = np.empty(N_LITTER_STATE)
    k_diag[CWD * n : (CWD + 1) * n] = k_base[CWD] * xi  # CWD: no xin
    for pool in (L1, L2, L3):
        k_diag[pool * n : (pool + 1) * n] = k_base[pool] * xi * xin
    k4 = np.diag(k_diag)

    a4 = -np.eye(N_LITTER_STATE)
    for j in range(n):
        a4[L2 * n + j, CWD * n + j] = p["fcwdl2"]
        a4[L3 * n + j, CWD * n + j] = 1.0 - p["fcwdl2"]

    v_block = _transport_block(p, f)
    v4 = np.zeros((N_LITTER_STATE, N_LITTER_STATE))
    for pool in (L1, L2, L3):
        v4[pool * n : (pool + 1) * n, pool * n : (pool + 1) * n] = v_block

    # input vector (SPEC 1.8, use_beta = 1): column totals redistributed with the beta profile
    totals = np.sum(np.sum(f["litter_input"], axis=1) * DZ, axis=1)  # (4,) gC m-2 yr-1
    with np.errstate(all="ignore"):
        v_prof = _clm5._beta_profile(p["beta"], f["altmax_lastyear"])
    i_vec = np.zeros(N_LITTER_STATE)
    for pool in range(N_LITTER):
        i_vec[pool * n : (pool + 1) * n] = totals[pool] * v_prof / (DZ * DAYS_PER_YEAR)
    return {"A4": a4, "K4": k4, "V4": v4, "I": i_vec, "xi": xi, "xin": xin}


def build_litter_matrices(
    params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> dict[str, np.ndarray]:
    """Dense litter matrices of one profile as ``matrix_fun.m`` builds them.

    Args:
        params: (23,) physical parameters (``PARAM_NAMES`` order).
        forcing: dict with ``tsoi`` (12, 20) K; ``w_scalar``, ``o_scalar``, ``fpi`` (12, 20);
            ``nbedrock`` (12,) integer-valued 1-based layer index; ``altmax``,
            ``altmax_lastyear`` (12,) m; ``litter_input`` (4, 12, 20) gC m-3 per month for CWD,
            LITR1, LITR2, LITR3. ``sand`` and ``npp`` are ignored.
        mode: ``"proda"`` or ``"documented"`` (the litter system is the same in both).

    Returns:
        dict with ``A4`` (80, 80) [-]; ``K4`` (80, 80) day-1 (diagonal); ``V4`` (80, 80) day-1
        (monthly mean transport on the l1..l3 blocks; dL/dt = I + A4 K4 L - V4 L); ``I`` (80,)
        gC m-3 day-1; ``xi`` (20,) and ``xin`` (20,) [-].
    """
    _check_mode(mode)
    return _litter_system(_unpack(params, mode), _forcing(forcing))


# --------------------------------------------------------------------------------------------------
# Soil subsystem (SPEC 3.5)
# --------------------------------------------------------------------------------------------------


def _soil_rates(p: Mapping[str, float]) -> dict[str, float]:
    with np.errstate(divide="ignore"):
        return {
            "kd": float(np.float64(1.0) / (DAYS_PER_YEAR * p["tau4s2_death"])),
            "ke": float(np.float64(1.0) / (DAYS_PER_YEAR * p["tau4s2_enz"])),
            "kz": float(np.float64(1.0) / (DAYS_PER_YEAR * p["tau4s3_used"])),
            "vd": float(np.float64(1.0) / (DAYS_PER_YEAR * p["tau4s1"])),
            "vs": float(np.float64(1.0) / (DAYS_PER_YEAR * p["tau4s4"])),
        }


def _soil_inputs(
    p: Mapping[str, float], k_diag: np.ndarray, litter: np.ndarray
) -> tuple[np.ndarray, ...]:
    """F_l1, F_l2, F_l3, in_soc, in_doc, in_mic (each (20,), gC m-3 d-1) from litter (4, 20)."""
    kk = k_diag.reshape(N_LITTER, N_LAYERS)
    f_l1, f_l2, f_l3 = kk[L1] * litter[L1], kk[L2] * litter[L2], kk[L3] * litter[L3]
    in_soc = f_l3 * p["pl3s4"]
    in_doc = f_l1 * p["pl1s1"] + f_l2 * p["pl2s1"]
    in_mic = f_l1 * p["fl1s2"] + f_l2 * p["fl2s2"] + f_l3 * p["fl3s2"]
    return f_l1, f_l2, f_l3, in_soc, in_doc, in_mic


def _lu_rcond(s: np.ndarray):
    """Dense LU of s and the LAPACK dgecon 1-norm reciprocal condition estimate (mldivide's)."""
    if not np.all(np.isfinite(s)):
        return None, np.nan
    anorm = np.linalg.norm(s, 1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, piv = scipy.linalg.lu_factor(s, check_finite=False)
    rcond, info = lapack.dgecon(lu, anorm, norm="1")
    return (lu, piv), (float(rcond) if info == 0 else np.nan)


def steady_state(
    params: np.ndarray,
    forcing: Mapping[str, np.ndarray],
    mode: str = "proda",
) -> dict[str, np.ndarray]:
    """COMPAS steady state of one profile: dense litter LU, then the per-layer closed forms.

    The closed forms are MATLAB's (``matrix_fun.m``), evaluated per layer on the litter and then
    the inputs scaled by powers of two (``np.ldexp``, exact in binary floating point) so that
    nothing underflows; MIC and ENZ are scaled back. The closed form is homogeneous (degree one
    for MIC and ENZ, zero for DOC and SOC), so this is MATLAB's result wherever MATLAB's own
    arithmetic does not underflow, and stays exact where the litter reaching a frozen layer is
    ~1e-300. Layers
    whose three litter fluxes are exactly zero (MATLAB's 0/0) get zero soil carbon.

    Args:
        params: (23,) physical parameters (``PARAM_NAMES`` order).
        forcing: forcing dict, see ``build_litter_matrices``.
        mode: ``"proda"`` (as coded) or ``"documented"``; see the module docstring.

    Returns:
        dict with ``pools`` (8, 20) gC m-3 (CWD, l1, l2, l3, DOC, MIC, ENZ, SOC; no sign flip);
        ``soc`` (20,) gC m-3 = DOC + MIC + ENZ + SOC; ``soc_stock`` (5,) gC m-2 column stocks
        [DOC, MIC, ENZ, SOC, total]; ``litter_rcond`` LAPACK 1-norm rcond of A4 K4 - V4;
        ``negative`` any soil pool < 0 (the sign-flip condition); ``da_check_failed`` total / MIC
        stock < 10; ``zero_litter_layers`` (20,) bool, layers whose F_l1, F_l2, F_l3 are all 0
        (soil pools set to 0 there); ``ok`` rcond >= eps,
        all finite, not negative and (proda mode only) DA check passed.
    """
    _check_mode(mode)
    p = _unpack(params, mode)
    f = _forcing(forcing)
    mats = _litter_system(p, f)
    with np.errstate(all="ignore"):
        s = mats["A4"] @ mats["K4"] - mats["V4"]
    lu_piv, rcond = _lu_rcond(s)
    if lu_piv is None:
        lit = np.full(N_LITTER_STATE, np.nan)
    else:
        with np.errstate(all="ignore"):
            lit = scipy.linalg.lu_solve(lu_piv, -mats["I"], check_finite=False)
    lit[lit < 0] = 0.0
    litter = lit.reshape(N_LITTER, N_LAYERS)

    xi = mats["xi"]
    r = _soil_rates(p)
    kd, ke, kz, vd, vs = r["kd"], r["ke"], r["kz"], r["vd"], r["vs"]
    ka, kmd = p["mm_const_assim"], p["mm_const_decom"]
    eps_c, pd = p["mic_cue"], p["pdeath2soc"]
    # litter scaled per layer by a power of two (exact) so that no flux underflows
    largest = litter[1:].max(axis=0)
    _, e_lit = np.frexp(np.where(largest > 0, largest, 1.0))
    f_l1, f_l2, f_l3, in_soc, in_doc, in_mic = _soil_inputs(
        p, np.diag(mats["K4"]), np.ldexp(litter, -e_lit)
    )
    flux = np.abs(np.stack([f_l1, f_l2, f_l3]))
    zero = np.all(flux == 0.0, axis=0)
    total = in_mic + eps_c * (in_soc + in_doc)
    _, e = np.frexp(np.where(total > 0, total, 1.0))  # total = m 2**e, m in [0.5, 1)
    in_soc, in_doc, in_mic = (np.ldexp(v, -e) for v in (in_soc, in_doc, in_mic))
    with np.errstate(all="ignore"):
        mic = (in_mic + eps_c * (in_soc + in_doc)) / ((1.0 - eps_c) * (kd + ke) * xi)
        enz = (ke / kz) * mic
        soc_in = in_soc + pd * kd * xi * mic  # total SOC input: litter + dead MIC
        soc = soc_in * kmd * xi / (vs * xi * enz - pd * kd * xi * mic - in_soc)
        doc = ((kd + ke) * xi * mic * ka * xi - in_mic * ka * xi) / (
            (eps_c * vd * xi - (kd + ke) * xi) * mic + in_mic
        )
        mic, enz = np.ldexp(mic, e + e_lit), np.ldexp(enz, e + e_lit)
    soil = np.stack([doc, mic, enz, soc])
    soil[:, zero] = 0.0
    pools = np.concatenate([litter, soil])
    with np.errstate(all="ignore"):
        stock = np.sum(soil * DZ, axis=1)
        soc_stock = np.append(stock, np.sum(stock))
        ratio = soc_stock[4] / soc_stock[1]
    finite = bool(np.all(np.isfinite(pools)))
    negative = bool(np.any(soil < 0))
    da_failed = bool(ratio < 10)  # NaN compares False, as in MATLAB
    ok = bool(
        np.isfinite(rcond)
        and rcond >= EPS
        and finite
        and not negative
        and (mode != "proda" or not da_failed)
    )
    return {
        "pools": pools,
        "soc": np.sum(soil, axis=0),
        "soc_stock": soc_stock,
        "litter_rcond": rcond,
        "negative": negative,
        "da_check_failed": da_failed,
        "zero_litter_layers": zero,
        "ok": ok,
    }


def tendency(
    pools: np.ndarray, params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> np.ndarray:
    """dX/dt (8, 20) gC m-3 day-1 of the COMPAS ODEs (SPEC 3.4 litter system, SPEC 3.5 soil).

    Litter: dL/dt = I + A4 K4 L - V4 L. Soil (per layer, no transport):
    dDOC = in_doc + (1-p) kd xi MIC + kz xi ENZ + U_soc - U_doc; dMIC = in_mic + eps U_doc -
    (kd + ke) xi MIC; dENZ = ke xi MIC - kz xi ENZ; dSOC = in_soc + p kd xi MIC - U_soc, with
    U_doc = Vd xi MIC DOC / (Ka xi + DOC) and U_soc = Vs xi ENZ SOC / (Kd xi + SOC).
    """
    _check_mode(mode)
    p = _unpack(params, mode)
    f = _forcing(forcing)
    mats = _litter_system(p, f)
    x = np.asarray(pools, dtype=float).reshape(8, N_LAYERS)
    lit = x[:N_LITTER].reshape(-1)
    dlit = mats["I"] + mats["A4"] @ (mats["K4"] @ lit) - mats["V4"] @ lit
    fl = _fluxes(p, mats, x)
    dx = np.empty((8, N_LAYERS))
    dx[:N_LITTER] = dlit.reshape(N_LITTER, N_LAYERS)
    dx[DOC] = fl["in_doc"] + fl["death_doc"] + fl["enz_decay"] + fl["u_soc"] - fl["u_doc"]
    dx[MIC] = fl["in_mic"] + p["mic_cue"] * fl["u_doc"] - fl["death"] - fl["enz_prod"]
    dx[ENZ] = fl["enz_prod"] - fl["enz_decay"]
    dx[SOC] = fl["in_soc"] + fl["death_soc"] - fl["u_soc"]
    return dx


def _fluxes(p: Mapping[str, float], mats: Mapping[str, np.ndarray], x: np.ndarray) -> dict:
    """All per-layer soil fluxes (gC m-3 d-1) at state x (8, 20)."""
    xi = mats["xi"]
    r = _soil_rates(p)
    f_l1, f_l2, f_l3, in_soc, in_doc, in_mic = _soil_inputs(p, np.diag(mats["K4"]), x[:N_LITTER])
    doc, mic, enz, soc = x[DOC], x[MIC], x[ENZ], x[SOC]
    u_doc = r["vd"] * xi * mic * doc / (p["mm_const_assim"] * xi + doc)
    u_soc = r["vs"] * xi * enz * soc / (p["mm_const_decom"] * xi + soc)
    death = r["kd"] * xi * mic
    return {
        "f_l1": f_l1,
        "f_l2": f_l2,
        "f_l3": f_l3,
        "in_soc": in_soc,
        "in_doc": in_doc,
        "in_mic": in_mic,
        "u_doc": u_doc,
        "u_soc": u_soc,
        "death": death,
        "death_doc": (1.0 - p["pdeath2soc"]) * death,
        "death_soc": p["pdeath2soc"] * death,
        "enz_prod": r["ke"] * xi * mic,
        "enz_decay": r["kz"] * xi * enz,
    }


def respiration(
    pools: np.ndarray, params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> dict[str, np.ndarray]:
    """Heterotrophic respiration (20,) gC m-3 d-1 by source at state ``pools`` (8, 20).

    ``litter``: decomposed l1, l2, l3 carbon that reaches neither DOC, MIC nor SOC
    ((1 - pl1s1)(1 - l1_cue) F_l1 + (1 - pl2s1)(1 - l2l3_cue) F_l2 + (1 - pl3s4)(1 - l2l3_cue)
    F_l3); ``doc_uptake``: (1 - mic_cue) U_doc; ``total``. CWD decomposition is not respired
    (fcwdl2 + (1 - fcwdl2) = 1).
    """
    _check_mode(mode)
    p = _unpack(params, mode)
    mats = _litter_system(p, _forcing(forcing))
    x = np.asarray(pools, dtype=float).reshape(8, N_LAYERS)
    fl = _fluxes(p, mats, x)
    litter_resp = (
        fl["f_l1"] * (1.0 - p["pl1s1"] - p["fl1s2"])
        + fl["f_l2"] * (1.0 - p["pl2s1"] - p["fl2s2"])
        + fl["f_l3"] * (1.0 - p["pl3s4"] - p["fl3s2"])
    )
    doc_resp = (1.0 - p["mic_cue"]) * fl["u_doc"]
    return {"litter": litter_resp, "doc_uptake": doc_resp, "total": litter_resp + doc_resp}


def steady_states(
    params_batch: np.ndarray,
    forcing_list: Sequence[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray],
    mode: str = "proda",
) -> dict[str, np.ndarray]:
    """Steady states of many profiles, one after the other (a plain Python loop: the baseline).

    Args:
        params_batch: (n, 23) physical parameters.
        forcing_list: sequence of n forcing dicts, or one forcing dict used for every profile.
        mode: ``"proda"`` or ``"documented"``.

    Returns:
        dict of stacked ``steady_state`` results: ``pools`` (n, 8, 20), ``soc`` (n, 20),
        ``soc_stock`` (n, 5), ``litter_rcond`` (n,), ``negative``, ``da_check_failed``, ``ok``
        (n,) bool, ``zero_litter_layers`` (n, 20) bool.
    """
    params_batch = np.atleast_2d(np.asarray(params_batch, dtype=float))
    n = params_batch.shape[0]
    if isinstance(forcing_list, Mapping):
        forcing_list = [forcing_list] * n
    if len(forcing_list) != n:
        raise ValueError(f"{n} parameter vectors but {len(forcing_list)} forcings")
    results = [steady_state(params_batch[i], forcing_list[i], mode) for i in range(n)]
    return {key: np.stack([np.asarray(r[key]) for r in results]) for key in results[0]}
