"""Independent NumPy/SciPy reference of the CLM5 matrix soil-carbon steady state of PRODA.

What this is
------------
A deliberately literal, loop-based port of the CLM5 vertically resolved matrix model
(``cesm2_clm5_cen_vr_v2``) used by the PRODA data-assimilation code of Tao et al. Two roles:

1. the speed baseline, i.e. "the way the original MATLAB code does it": for every profile it builds
   12 monthly dense 140x140 K_m and V_m matrices, averages them over months, forms the dense
   140x140 system ``A K - V`` and solves it with a dense LU factorisation;
2. the test oracle for the JAX implementation in ``soc_jax``.

Independence
------------
This file was written from the written specification only (``SPEC_PRODA.md`` sections 1.1-1.13
and 2, with the numbers of ``proda_constants_and_priors.json`` copied in below as literals). It
does not import, and was not written by reading, anything under ``soc_jax/``. It has no run-time
dependency on the shared specification folder.

MATLAB files mirrored (phxtao/PRODA_PUBLIC ``SRC_DA/src_cesm2_clm5_cen_vr_v2/``)
-----------------------------------------------------------------------------
- ``matrix_fun.m`` / ``fun_var_decom.m``: parameters, environmental scalars, input vector, solve,
  residence-time diagnostics (SPEC 1.3, 1.4, 1.8, 1.9, 1.12);
- ``kk_matrix.m``: monthly diagonal decomposition matrices K_m (SPEC 1.5);
- ``a_matrix.m``: layer-block-diagonal transfer matrix A (SPEC 1.6);
- ``tri_matrix.m``: CLM5 Patankar vertical-transport matrices V_m, one per month (SPEC 1.7).

MATLAB semantics kept on purpose
--------------------------------
- ``if altmax_lastyear > 0`` on a 12-vector is true only when all 12 months are > 0 (SPEC 1.13.1);
- ``max``/``min`` of MATLAB ignore NaN (``np.fmax``/``np.fmin`` here);
- K and V are NaN-omitting means of the monthly matrices (``np.nanmean`` over months);
- the Patankar floors ``eps = 1e-30`` and the bedrock rule ``Dp = Dm`` (mass is not conserved below
  bedrock when ``nbedrock < 20``: this is the original behaviour);
- ``C = (A K - V) \\ (-I)`` by dense LU, then ``C[C < 0] = 0``; MATLAB's singular /
  nearly-singular warnings (which PRODA's DA treats as failed simulations) are mimicked with the
  LAPACK 1-norm reciprocal condition estimate (``dgecon``) that ``mldivide`` uses.

Indexing: the 25-entry grid arrays are stored 0-based here; the Fortran/MATLAB layer index ``j``
(1-based) maps to Python index ``j - 1``; comments give the 1-based expression they translate.

State layout: state index ``pool * 20 + layer`` (0-based), pools in the order CWD, LITR1 (l1,
metabolic), LITR2 (l2, cellulose), LITR3 (l3, lignin), SOIL1 (s1, fast), SOIL2 (s2, slow),
SOIL3 (s3, passive).

Units
-----
- carbon state C: gC m-3; layer thickness / depths: m; stocks sum_j C_j dz_j: gC m-2;
- K, V, A K - V: day-1 (turnover times tau in yr -> k = 1 / (365 tau); diffusivities m2 yr-1 / 365);
- input vector I: gC m-3 day-1; litter forcing: gC m-3 per month; column input totals: gC m-2 yr-1;
- residence times: yr (per unit depth: yr m-1); NPP: gC m-2 s-1 (diagnostic only).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

# --------------------------------------------------------------------------------------------------
# Grid (SPEC 1.1): 25 entries (CLM nlevgrnd); layers 1..20 are modelled, entry 21 is read by the
# tridiagonal builder. 0-based storage: DZ[j - 1] is the MATLAB/Fortran dz(j).
# --------------------------------------------------------------------------------------------------

N_LAYERS = 20
N_POOLS = 7
N_STATE = N_POOLS * N_LAYERS  # 140
N_MONTHS = 12
DAYS_PER_YEAR = 365.0
EPS_TRI = 1e-30  # Patankar floor of tri_matrix.m
MAX_ALTDEPTH_CRYOTURBATION = 2.0  # m
MAX_DEPTH_CRYOTURB = 3.0  # m
ADV = 0.0  # som_adv_flux, m yr-1 (fixed at 0 in PRODA)
DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=float)

# layer thickness dz(j), m
DZ = np.array(
    [
        0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28, 0.32,
        0.36, 0.4, 0.44, 0.54, 0.64, 0.74, 0.84, 0.94, 1.04, 1.14,
        2.39, 4.67553390593274, 7.63519052838329, 11.14, 15.1154248593737,
    ]
)  # fmt: skip
# bottom interface zisoi(j) of layer j, m (zisoi(0) = 0 is not stored)
ZISOI = np.array(
    [
        0.02, 0.06, 0.12, 0.2, 0.32, 0.48, 0.68, 0.92, 1.2, 1.52,
        1.88, 2.28, 2.72, 3.26, 3.9, 4.64, 5.48, 6.42, 7.46, 8.6,
        10.99, 15.6655339059327, 23.300724434316, 34.440724434316, 49.5561492936897,
    ]
)  # fmt: skip
# node depth zsoi(j), m
ZSOI = np.array(
    [
        0.01, 0.04, 0.09, 0.16, 0.26, 0.4, 0.58, 0.8, 1.06, 1.36,
        1.7, 2.08, 2.5, 2.99, 3.58, 4.27, 5.06, 5.95, 6.94, 8.03,
        9.795, 13.3277669529664, 19.4831291701244, 28.870724434316, 41.9984368640029,
    ]
)  # fmt: skip
# node spacing dz_node(j) = zsoi(j) - zsoi(j-1), zsoi(0) = 0, m
DZ_NODE = np.diff(ZSOI, prepend=0.0)

# --------------------------------------------------------------------------------------------------
# Parameters (SPEC 2): physical value = lower + p (upper - lower), p in (0, 1)
# --------------------------------------------------------------------------------------------------

PARAM_NAMES = (
    "diffus",  # bioturbation diffusivity, m2 yr-1
    "cryo",  # cryoturbation diffusivity, m2 yr-1
    "q10",  # Q10 (also the frozen Q10), -
    "efolding",  # e-folding depth of the depth scalar, m
    "taucwd",  # CWD turnover time, yr
    "taul1",  # metabolic litter turnover time, yr
    "taul2",  # cellulose (= lignin) litter turnover time, yr
    "tau4s1",  # fast SOM turnover time, yr
    "tau4s2",  # slow SOM turnover time, yr
    "tau4s3",  # passive SOM turnover time, yr
    "fl1s1",  # transfer fraction l1 -> s1
    "fl2s1",  # transfer fraction l2 -> s1
    "fl3s2",  # transfer fraction l3 -> s2
    "fs1s2",  # transfer fraction s1 -> s2
    "fs1s3",  # transfer fraction s1 -> s3
    "fs2s1",  # transfer fraction s2 -> s1
    "fs2s3",  # transfer fraction s2 -> s3
    "fs3s1",  # transfer fraction s3 -> s1
    "fcwdl2",  # fraction CWD -> l2 (rest -> l3)
    "w_scaling",  # multiplier on CESM2 W_SCALAR (capped at 1)
    "beta",  # Jackson et al. (1996) beta of the input profile (depth in cm)
)
LOWER = np.array(
    [3e-05, 3e-05, 1.2, 0.0, 1.0, 0.0, 0.1, 0.0, 1.0, 200.0,
     0.1, 0.2, 0.2, 0.0, 0.0, 0.1, 0.0, 0.0, 0.5, 0.0, 0.5]
)  # fmt: skip
UPPER = np.array(
    [0.0005, 0.0016, 3.0, 1.0, 6.0, 0.11, 0.3, 1.0, 50.0, 1000.0,
     0.8, 0.8, 0.8, 0.4, 0.05, 0.74, 0.1, 0.9, 1.0, 5.0, 0.9999]
)  # fmt: skip

POOL_NAMES = ("cwd", "l1", "l2", "l3", "s1", "s2", "s3")
CWD, L1, L2, L3, S1, S2, S3 = range(N_POOLS)
MODES = ("proda", "default")


def to_physical(p_normalized: np.ndarray) -> np.ndarray:
    """Map normalized parameters p in (0, 1) to physical values, ``lower + p (upper - lower)``.

    Args:
        p_normalized: (..., 21) normalized parameters.

    Returns:
        (..., 21) physical parameters in the units of ``PARAM_NAMES``.
    """
    return LOWER + np.asarray(p_normalized, dtype=float) * (UPPER - LOWER)


def _unpack(params: np.ndarray) -> dict[str, float]:
    params = np.asarray(params, dtype=float)
    if params.shape != (len(PARAM_NAMES),):
        raise ValueError(f"params must have shape (21,), got {params.shape}")
    return {name: float(value) for name, value in zip(PARAM_NAMES, params, strict=True)}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _forcing(forcing: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate shapes and return float64 copies of the forcing arrays."""
    shapes = {
        "tsoi": (N_MONTHS, N_LAYERS),
        "w_scalar": (N_MONTHS, N_LAYERS),
        "o_scalar": (N_MONTHS, N_LAYERS),
        "fpi": (N_MONTHS, N_LAYERS),
        "sand": (N_MONTHS, N_LAYERS),
        "nbedrock": (N_MONTHS,),
        "altmax": (N_MONTHS,),
        "altmax_lastyear": (N_MONTHS,),
        "litter_input": (4, N_MONTHS, N_LAYERS),
    }
    out = {}
    for key, shape in shapes.items():
        value = np.asarray(forcing[key], dtype=float)
        if value.shape != shape:
            raise ValueError(f"forcing[{key!r}] must have shape {shape}, got {value.shape}")
        out[key] = value
    nb = out["nbedrock"]
    # nbedrock is used as an index, zisoi(nbedrock + 1), in tri_matrix.m (SPEC 1.13.6)
    if not (np.all(np.isfinite(nb)) and np.all(nb == np.round(nb))):
        raise ValueError("forcing['nbedrock'] must be integer-valued")
    if np.any(nb < 0) or np.any(nb > 24):
        raise ValueError("forcing['nbedrock'] must lie in 0..24 (zisoi(nbedrock + 1) must exist)")
    npp = forcing.get("npp")
    out["npp"] = (
        np.full(N_MONTHS, np.nan) if npp is None else np.asarray(npp, dtype=float).reshape(N_MONTHS)
    )
    return out


# --------------------------------------------------------------------------------------------------
# Environmental scalars (SPEC 1.4)
# --------------------------------------------------------------------------------------------------


def _xi_scalars(
    p: Mapping[str, float], f: Mapping[str, np.ndarray], mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Monthly temperature, water, oxygen and nitrogen scalars, each (12, 20)."""
    q10 = p["q10"]
    fq10 = q10  # frozen Q10 equals Q10 in PRODA
    tsoi = f["tsoi"]
    with np.errstate(invalid="ignore", over="ignore"):
        xit = np.where(
            tsoi >= 273.15,
            q10 ** ((tsoi - 298.15) / 10.0),
            q10 ** ((273.15 - 298.15) / 10.0) * fq10 ** ((tsoi - 273.15) / 10.0),
        )
    if mode == "proda":
        # min(W_SCALAR * w_scaling, 1); MATLAB min ignores NaN
        xiw = np.fmin(f["w_scalar"] * p["w_scaling"], 1.0)
    else:
        xiw = f["w_scalar"].copy()  # CLM5 default: unscaled, uncapped
    xio = f["o_scalar"]
    xin = f["fpi"]
    return xit, xiw, xio, xin


def _depth_scalar(efolding: float) -> np.ndarray:
    """ds_j = exp(-zsoi_j / efolding), (20,)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp(-ZSOI[:N_LAYERS] / np.float64(efolding))


# --------------------------------------------------------------------------------------------------
# K: kk_matrix.m (SPEC 1.5)
# --------------------------------------------------------------------------------------------------


def _kk_matrix_month(k_base: np.ndarray, xi_tw: np.ndarray, xin: np.ndarray, ds: np.ndarray):
    """Dense diagonal K_m (140, 140) for one month.

    Args:
        k_base: (7,) base rates 1 / (365 tau), day-1.
        xi_tw: (20,) xit * xiw * xio for the month.
        xin: (20,) nitrogen scalar for the month (litter pools only).
        ds: (20,) depth scalar.
    """
    diag = np.empty(N_STATE)
    for pool in range(N_POOLS):
        rate = k_base[pool] * xi_tw * ds
        if pool in (L1, L2, L3):
            rate = rate * xin
        diag[pool * N_LAYERS : (pool + 1) * N_LAYERS] = rate
    return np.diag(diag)


# --------------------------------------------------------------------------------------------------
# A: a_matrix.m (SPEC 1.6)
# --------------------------------------------------------------------------------------------------


def _a_matrix(p: Mapping[str, float], fs1s2: np.ndarray, fs1s3: np.ndarray) -> np.ndarray:
    """Dense transfer matrix A (140, 140): -1 on the diagonal, fractions at [receiver, donor].

    Args:
        p: physical parameters by name.
        fs1s2, fs1s3: (20,) per-layer s1 -> s2 and s1 -> s3 fractions (constant in proda mode).
    """
    a = -np.eye(N_STATE)
    n = N_LAYERS
    for j in range(n):  # entry [receiver * 20 + j, donor * 20 + j]
        a[L2 * n + j, CWD * n + j] = p["fcwdl2"]
        a[L3 * n + j, CWD * n + j] = 1.0 - p["fcwdl2"]
        a[S1 * n + j, L1 * n + j] = p["fl1s1"]
        a[S1 * n + j, L2 * n + j] = p["fl2s1"]
        a[S1 * n + j, S2 * n + j] = p["fs2s1"]
        a[S1 * n + j, S3 * n + j] = p["fs3s1"]
        a[S2 * n + j, L3 * n + j] = p["fl3s2"]
        a[S2 * n + j, S1 * n + j] = fs1s2[j]
        a[S3 * n + j, S1 * n + j] = fs1s3[j]
        a[S3 * n + j, S2 * n + j] = p["fs2s3"]
    return a


def _s1_fractions(
    p: Mapping[str, float], f: Mapping[str, np.ndarray], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """(20,) fs1s2 and fs1s3: parameters (proda) or CLM5 sand functions (default, SPEC 1.6)."""
    if mode == "proda":
        return np.full(N_LAYERS, p["fs1s2"]), np.full(N_LAYERS, p["fs1s3"])
    # layer sand: mean over the 12 months, then clipped to [0, 100] %
    sand = np.clip(np.mean(f["sand"], axis=0), 0.0, 100.0)
    t = 0.85 - 0.68 * 0.01 * (100.0 - sand)
    # CLM5 form (1 - rf) * pathfrac with rf = t, pathfrac = 1 - 0.004 / (1 - t) and 0.004 / (1 - t)
    fs1s2 = (1.0 - t) * (1.0 - 0.004 / (1.0 - t))
    fs1s3 = (1.0 - t) * (0.004 / (1.0 - t))
    return fs1s2, fs1s3


# --------------------------------------------------------------------------------------------------
# V: tri_matrix.m (SPEC 1.7), CLM5 Patankar scheme, one month
# --------------------------------------------------------------------------------------------------


def _patankar_ap(x: float) -> float:
    """aP(x) = max(0, (1 - 0.1 |x|)^5)."""
    return max(0.0, (1.0 - 0.1 * abs(x)) ** 5)


def _tri_matrix_month(
    nbedrock: float,
    altmax: float,
    altmax_lastyear: float,
    bio: float,
    cryo: float,
    adv: float = ADV,
) -> np.ndarray:
    """Dense vertical-transport matrix V_m (140, 140) for one month, day-1.

    Sign convention: dC/dt = ... - V C; V has a non-negative diagonal. No transport of CWD.

    Args:
        nbedrock: integer-valued bedrock layer index (1-based: bedrock below layer nbedrock).
        altmax, altmax_lastyear: active-layer maximum thickness this / last year, m.
        bio, cryo: bioturbation and cryoturbation diffusivities, m2 yr-1.
        adv: advection velocity, m yr-1 (0 in PRODA).
    """
    nb = int(nbedrock)
    som_diffus = np.float64(bio) / DAYS_PER_YEAR  # m2 day-1
    cryo_k = np.float64(cryo) / DAYS_PER_YEAR
    som_adv = np.float64(adv) / DAYS_PER_YEAR
    amax = float(np.fmax(altmax, altmax_lastyear))  # MATLAB max ignores NaN
    n_int = N_LAYERS + 1  # interfaces j = 1..21 (0-based 0..20)

    # 1. diffusion and advection coefficients D(j), U(j), j = 1..21
    diffus_coef = np.zeros(n_int)
    adv_coef = np.zeros(n_int)
    if 0.0 < amax <= MAX_ALTDEPTH_CRYOTURBATION:
        # cryoturbation: constant through the active layer, linear decrease to 0 at max depth
        z_bottom = min(MAX_DEPTH_CRYOTURB, ZISOI[nb])  # min(3, zisoi(nbedrock + 1))
        for jj in range(n_int):  # Fortran j = jj + 1
            if jj <= nb:  # j <= nbedrock + 1
                if ZISOI[jj] < amax:  # zisoi(j) < amax
                    diffus_coef[jj] = cryo_k
                else:
                    with np.errstate(divide="ignore", invalid="ignore"):
                        value = cryo_k * (
                            1.0 - (np.float64(ZISOI[jj]) - amax) / (np.float64(z_bottom) - amax)
                        )
                    diffus_coef[jj] = np.fmax(value, 0.0)  # MATLAB max: NaN -> 0
                adv_coef[jj] = 0.0
    elif amax > 0.0:
        # constant bioturbation (and advection) down to the bedrock interface
        for jj in range(n_int):
            if jj <= nb:
                adv_coef[jj] = som_adv
                diffus_coef[jj] = som_diffus
    # else: completely frozen, D = U = 0

    # 2. floors
    f = np.where(np.abs(adv_coef) >= EPS_TRI, adv_coef, EPS_TRI)
    d = np.where(np.abs(diffus_coef) >= EPS_TRI, diffus_coef, EPS_TRI)

    # 3. Patankar D / F / Peclet terms, j = 1..21
    d_m = np.zeros(n_int)  # Dm(j) = d_{j-1/2} / dz_node(j)
    d_p = np.zeros(n_int)  # Dp(j) = d_{j+1/2} / dz_node(j+1)
    f_m = np.zeros(n_int)
    f_p = np.zeros(n_int)
    pe_m = np.zeros(n_int)
    pe_p = np.zeros(n_int)
    for jj in range(n_int):  # Fortran j = jj + 1
        if jj == 0:  # j == 1
            w_p = (ZSOI[1] - ZISOI[0]) / DZ_NODE[1]  # (zsoi(2) - zisoi(1)) / dz_node(2)
            dp = 1.0 / ((1.0 - w_p) / d[0] + w_p / d[1])  # harmonic mean (d > 0 always)
            d_p[jj] = dp / DZ_NODE[1]
            d_m[jj] = 0.0
            f_m[jj] = f[0]
            f_p[jj] = f[1]
            pe_m[jj] = 0.0
            pe_p[jj] = f_p[jj] / d_p[jj]
        elif jj >= nb:  # j >= nbedrock + 1: bottom / bedrock rule
            w_m = (ZISOI[jj - 1] - ZSOI[jj - 1]) / DZ_NODE[jj]  # (zisoi(j-1)-zsoi(j-1))/dz_node(j)
            dm = 1.0 / ((1.0 - w_m) / d[jj] + w_m / d[jj - 1])
            d_m[jj] = dm / DZ_NODE[jj]
            d_p[jj] = d_m[jj]  # no gradient of D at the bottom (quirk kept)
            f_m[jj] = f[jj]
            f_p[jj] = 0.0
            pe_m[jj] = f_m[jj] / d_m[jj]
            pe_p[jj] = f_p[jj] / d_p[jj]
        else:
            w_m = (ZISOI[jj - 1] - ZSOI[jj - 1]) / DZ_NODE[jj]
            dm = 1.0 / ((1.0 - w_m) / d[jj] + w_m / d[jj - 1])
            w_p = (ZSOI[jj + 1] - ZISOI[jj]) / DZ_NODE[jj + 1]  # (zsoi(j+1)-zisoi(j))/dz_node(j+1)
            dp = 1.0 / ((1.0 - w_p) / d[jj] + w_p / d[jj + 1])
            # (the arithmetic-mean fallback of the original applies only if some d <= 0: never)
            d_m[jj] = dm / DZ_NODE[jj]
            d_p[jj] = dp / DZ_NODE[jj + 1]
            f_m[jj] = f[jj]
            f_p[jj] = f[jj + 1]
            pe_m[jj] = f_m[jj] / d_m[jj]
            pe_p[jj] = f_p[jj] / d_p[jj]

    # 4. tridiagonal coefficients, layers j = 1..20, divided by dz (day-1)
    a_dz = np.zeros(N_LAYERS)
    b_dz = np.zeros(N_LAYERS)
    c_dz = np.zeros(N_LAYERS)
    for jj in range(N_LAYERS):
        a_tri = -(d_m[jj] * _patankar_ap(pe_m[jj]) + max(f_m[jj], 0.0))
        c_tri = -(d_p[jj] * _patankar_ap(pe_p[jj]) + max(-f_p[jj], 0.0))
        b_tri = -a_tri - c_tri
        a_dz[jj] = a_tri / DZ[jj]
        b_dz[jj] = b_tri / DZ[jj]
        c_dz[jj] = c_tri / DZ[jj]

    # 5. assembly: pools 2..7 get identical tridiagonal blocks; CWD rows / columns stay 0
    v = np.zeros((N_STATE, N_STATE))
    for pool in range(1, N_POOLS):
        off = pool * N_LAYERS
        for jj in range(N_LAYERS):
            if jj == 0:
                v[off + jj, off + jj] = -c_dz[jj]  # top: no exchange with the atmosphere
            elif jj == N_LAYERS - 1:
                v[off + jj, off + jj] = -a_dz[jj]  # bottom: zero flux
            else:
                v[off + jj, off + jj] = b_dz[jj]
            if jj < N_LAYERS - 1:
                v[off + jj, off + jj + 1] = c_dz[jj]
            if jj > 0:
                v[off + jj, off + jj - 1] = a_dz[jj]
    return v


# --------------------------------------------------------------------------------------------------
# Input vector (SPEC 1.8)
# --------------------------------------------------------------------------------------------------


def _beta_profile(beta: float, altmax_lastyear: np.ndarray) -> np.ndarray:
    """v_j (20,): Jackson beta profile if all 12 ALTMAX_LASTYEAR > 0, else all into layer 1."""
    if np.all(altmax_lastyear > 0):  # MATLAB `if vector > 0`: true only if all elements are
        z_top = np.concatenate(([0.0], ZISOI[: N_LAYERS - 1]))  # zisoi(j-1), zisoi(0) = 0
        z_bot = ZISOI[:N_LAYERS]  # zisoi(j)
        return (beta ** (100.0 * z_top) - beta ** (100.0 * z_bot)) / (
            1.0 - beta ** (100.0 * ZISOI[N_LAYERS - 1])
        )
    v = np.zeros(N_LAYERS)
    v[0] = 1.0
    return v


def _input_vector(
    p: Mapping[str, float], f: Mapping[str, np.ndarray], mode: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Input vector I (140,) gC m-3 day-1, column totals (4,) gC m-2 yr-1, profile v (20,)."""
    litter = f["litter_input"]  # (4, 12, 20), gC m-3 per month
    annual = np.sum(litter, axis=1)  # (4, 20), gC m-3 yr-1
    totals = np.sum(annual * DZ[:N_LAYERS], axis=1)  # (4,), gC m-2 yr-1
    i_vec = np.zeros(N_STATE)
    if mode == "proda":
        v = _beta_profile(p["beta"], f["altmax_lastyear"])
        for pool in range(4):
            i_vec[pool * N_LAYERS : (pool + 1) * N_LAYERS] = (
                totals[pool] * v / (DZ[:N_LAYERS] * DAYS_PER_YEAR)
            )
    else:
        # CESM2's own per-layer inputs; beta unused. The reported profile is the effective one.
        for pool in range(4):
            i_vec[pool * N_LAYERS : (pool + 1) * N_LAYERS] = annual[pool] / DAYS_PER_YEAR
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.sum(annual, axis=0) * DZ[:N_LAYERS] / np.sum(totals)
    return i_vec, totals, v


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


def build_matrices(
    params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> dict[str, np.ndarray]:
    """Build the annual-mean CLM5 matrices of one profile the way PRODA's MATLAB code does.

    Args:
        params: (21,) physical parameters in the order of ``PARAM_NAMES``.
        forcing: dict of arrays: ``tsoi`` (12, 20) K; ``w_scalar``, ``o_scalar``, ``fpi``
            (12, 20) [-]; ``sand`` (12, 20) %; ``nbedrock`` (12,) integer-valued layer index
            (1-based); ``altmax``, ``altmax_lastyear`` (12,) m; ``litter_input`` (4, 12, 20)
            gC m-3 per month for CWD, LITR1, LITR2, LITR3; optional ``npp`` (12,) gC m-2 s-1
            (diagnostic only).
        mode: ``"proda"`` (is_default = 0, the DA model) or ``"default"`` (is_default = 1, CLM5
            customary: sand-dependent fs1s2 / fs1s3, CESM2 vertical input profile, unscaled
            W_SCALAR).

    Returns:
        dict with ``A`` (140, 140) [-]; ``K`` (140, 140) day-1 (nanmean of the 12 monthly diagonal
        K_m); ``V`` (140, 140) day-1 (nanmean of the 12 monthly V_m; dC/dt = I + A K C - V C);
        ``I`` (140,) gC m-3 day-1; ``input_profile`` (20,) the v_j of SPEC 1.8 (default mode: the
        effective CESM2 profile, sum_p INPUT_p(j) dz_j / sum_p I_p,tot); ``input_totals`` (4,)
        gC m-2 yr-1; ``carbon_input`` () gC m-2 yr-1; ``site_input_ratio`` () [-] (NaN without NPP).
    """
    _check_mode(mode)
    p = _unpack(params)
    f = _forcing(forcing)

    # K (kk_matrix.m), mean of the 12 monthly diagonal matrices
    taus = np.array(
        [p["taucwd"], p["taul1"], p["taul2"], p["taul2"], p["tau4s1"], p["tau4s2"], p["tau4s3"]]
    )  # tau4l3 = tau4l2
    with np.errstate(divide="ignore"):
        k_base = 1.0 / (DAYS_PER_YEAR * taus)  # day-1
    xit, xiw, xio, xin = _xi_scalars(p, f, mode)
    ds = _depth_scalar(p["efolding"])
    k_months = np.empty((N_MONTHS, N_STATE, N_STATE))
    v_months = np.empty((N_MONTHS, N_STATE, N_STATE))
    with np.errstate(invalid="ignore", over="ignore"):
        for m in range(N_MONTHS):
            xi_tw = xit[m] * xiw[m] * xio[m]
            k_months[m] = _kk_matrix_month(k_base, xi_tw, xin[m], ds)
            v_months[m] = _tri_matrix_month(
                f["nbedrock"][m], f["altmax"][m], f["altmax_lastyear"][m], p["diffus"], p["cryo"]
            )
        k_mean = _nanmean_months(k_months)
        v_mean = _nanmean_months(v_months)

    fs1s2, fs1s3 = _s1_fractions(p, f, mode)
    a = _a_matrix(p, fs1s2, fs1s3)
    i_vec, totals, v_profile = _input_vector(p, f, mode)
    carbon_input = float(np.sum(totals))
    npp_annual = float(np.sum(f["npp"] * DAYS_IN_MONTH * 86400.0))  # gC m-2 yr-1
    with np.errstate(divide="ignore", invalid="ignore"):
        site_input_ratio = float(np.float64(carbon_input) / np.float64(npp_annual))
    return {
        "A": a,
        "K": k_mean,
        "V": v_mean,
        "I": i_vec,
        "input_profile": v_profile,
        "input_totals": totals,
        "carbon_input": carbon_input,
        "site_input_ratio": site_input_ratio,
    }


def _nanmean_months(stack: np.ndarray) -> np.ndarray:
    """NaN-omitting mean over axis 0 (MATLAB mean(..., 'omitnan')); all-NaN entries stay NaN."""
    if not np.isnan(stack).any():
        return np.mean(stack, axis=0)
    count = np.sum(~np.isnan(stack), axis=0)
    total = np.nansum(stack, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _system_matrix(mats: Mapping[str, np.ndarray]) -> np.ndarray:
    """S = A K - V (140, 140), day-1 (dense product, as in matrix_fun.m)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return mats["A"] @ mats["K"] - mats["V"]


def _lu_with_rcond(s: np.ndarray):
    """Dense LU of S and LAPACK dgecon 1-norm reciprocal condition estimate (as mldivide).

    Returns (lu_piv or None, rcond); None / NaN when S is not finite.
    """
    if not np.all(np.isfinite(s)):
        return None, np.nan
    anorm = np.linalg.norm(s, 1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # exactly singular: rcond = 0
        lu, piv = scipy.linalg.lu_factor(s, check_finite=False)
    rcond, info = lapack.dgecon(lu, anorm, norm="1")
    if info != 0:
        rcond = np.nan
    return (lu, piv), float(rcond)


def _rcond_exact(s: np.ndarray) -> float:
    """1 / (||S||_1 ||S^-1||_1) with a dense inverse (diagnostic)."""
    if not np.all(np.isfinite(s)):
        return np.nan
    try:
        with np.errstate(all="ignore"):
            s_inv = np.linalg.inv(s)
    except np.linalg.LinAlgError:
        return 0.0
    with np.errstate(all="ignore"):
        return float(1.0 / (np.linalg.norm(s, 1) * np.linalg.norm(s_inv, 1)))


def _solve(lu_piv, rhs: np.ndarray) -> np.ndarray:
    if lu_piv is None:
        return np.full_like(rhs, np.nan)
    with np.errstate(all="ignore"):
        return scipy.linalg.lu_solve(lu_piv, rhs, check_finite=False)


def steady_state(
    params: np.ndarray,
    forcing: Mapping[str, np.ndarray],
    mode: str = "proda",
    *,
    exact_rcond: bool = True,
    return_unclipped: bool = False,
) -> dict[str, np.ndarray]:
    """Steady state of one profile: C = (A K - V) \\ (-I) by dense LU, then C[C < 0] = 0.

    Args:
        params: (21,) physical parameters (``PARAM_NAMES`` order).
        forcing: forcing dict, see ``build_matrices``.
        mode: ``"proda"`` or ``"default"``.
        exact_rcond: also compute ``rcond_exact`` with a dense inverse (NaN otherwise).
        return_unclipped: also return ``c_unclipped`` (140,) and the system matrix ``S``.

    Returns:
        dict with ``pools`` (7, 20) gC m-3 (CWD, l1, l2, l3, s1, s2, s3); ``soc`` (20,) gC m-3
        (s1 + s2 + s3); ``rcond`` LAPACK 1-norm reciprocal condition estimate of A K - V;
        ``ok`` True iff rcond >= machine eps, rcond > 0 and the solution is finite (MATLAB gives
        no singular / nearly-singular warning); ``rcond_exact`` 1 / (||S||_1 ||S^-1||_1).
    """
    mats = build_matrices(params, forcing, mode)
    s = _system_matrix(mats)
    lu_piv, rcond = _lu_with_rcond(s)
    c = _solve(lu_piv, -mats["I"])
    ok = bool(
        np.isfinite(rcond)
        and rcond >= np.finfo(float).eps
        and rcond > 0.0
        and np.all(np.isfinite(c))
    )
    c_clipped = c.copy()
    c_clipped[c_clipped < 0] = 0.0
    pools = c_clipped.reshape(N_POOLS, N_LAYERS)
    out = {
        "pools": pools,
        "soc": pools[S1] + pools[S2] + pools[S3],
        "rcond": rcond,
        "ok": ok,
        "rcond_exact": _rcond_exact(s) if exact_rcond else np.nan,
    }
    if return_unclipped:
        out["c_unclipped"] = c
        out["S"] = s
    return out


def steady_states(
    params_batch: np.ndarray,
    forcing_list: Sequence[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray],
    mode: str = "proda",
    *,
    exact_rcond: bool = False,
) -> dict[str, np.ndarray]:
    """Steady states of many profiles, one after the other (a plain Python loop: the baseline).

    Args:
        params_batch: (n, 21) physical parameters.
        forcing_list: sequence of n forcing dicts, or one forcing dict used for every profile.
        mode: ``"proda"`` or ``"default"``.
        exact_rcond: compute the dense-inverse ``rcond_exact`` too (off by default: MATLAB's
            ``mldivide`` does not do this, so the timed baseline does not either).

    Returns:
        dict of stacked results: ``pools`` (n, 7, 20), ``soc`` (n, 20), ``rcond`` (n,),
        ``ok`` (n,) bool, ``rcond_exact`` (n,).
    """
    params_batch = np.atleast_2d(np.asarray(params_batch, dtype=float))
    n = params_batch.shape[0]
    if isinstance(forcing_list, Mapping):
        forcing_list = [forcing_list] * n
    if len(forcing_list) != n:
        raise ValueError(f"{n} parameter vectors but {len(forcing_list)} forcings")
    results = [
        steady_state(params_batch[i], forcing_list[i], mode, exact_rcond=exact_rcond)
        for i in range(n)
    ]
    return {
        "pools": np.stack([r["pools"] for r in results]),
        "soc": np.stack([r["soc"] for r in results]),
        "rcond": np.array([r["rcond"] for r in results]),
        "ok": np.array([r["ok"] for r in results], dtype=bool),
        "rcond_exact": np.array([r["rcond_exact"] for r in results]),
    }


def residence_time_diagnostics(
    params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> dict[str, np.ndarray]:
    """Residence-time diagnostics of ``fun_var_decom.m`` (SPEC 1.12).

    B_res = I * 365 / carbon_input is the input vector for a unit column input (1 gC m-2 yr-1); in
    proda mode this is (I_p,tot / carbon_input) v_j / dz_j exactly as SPEC 1.12 writes it.

    Returns:
        dict with ``residence_time`` (140,) yr m-1 = ((A K - V) \\ (-B_res)) / 365;
        ``total_res_time`` (20,) yr m-1 (sum over s1, s2, s3; sum_j total_res_time_j dz_j = SOC /
        input in yr); ``residence_time_baseline`` (140,) and ``total_res_time_baseline`` (20,) with
        S replaced by S D, D = diag(repeat_7(mean_m 1 / (xiw xit xio xin))); ``t_scalar`` (20,) =
        mean_m xit; ``w_scalar`` (20,) = mean_m xiw.
    """
    mats = build_matrices(params, forcing, mode)
    p = _unpack(params)
    f = _forcing(forcing)
    s = _system_matrix(mats)
    with np.errstate(divide="ignore", invalid="ignore"):
        b_res = mats["I"] * DAYS_PER_YEAR / mats["carbon_input"]
    lu_piv, _ = _lu_with_rcond(s)
    res = _solve(lu_piv, -b_res) / DAYS_PER_YEAR

    xit, xiw, xio, xin = _xi_scalars(p, f, mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_xi = np.mean(1.0 / (xiw * xit * xio * xin), axis=0)  # (20,)
        d_mat = np.diag(np.tile(inv_xi, N_POOLS))
        s_base = s @ d_mat
    lu_piv_base, _ = _lu_with_rcond(s_base)
    res_base = _solve(lu_piv_base, -b_res) / DAYS_PER_YEAR

    def soil_sum(x: np.ndarray) -> np.ndarray:
        pools = x.reshape(N_POOLS, N_LAYERS)
        return pools[S1] + pools[S2] + pools[S3]

    return {
        "residence_time": res,
        "total_res_time": soil_sum(res),
        "residence_time_baseline": res_base,
        "total_res_time_baseline": soil_sum(res_base),
        "t_scalar": np.mean(xit, axis=0),
        "w_scalar": np.mean(xiw, axis=0),
    }


def residence_time(
    params: np.ndarray, forcing: Mapping[str, np.ndarray], mode: str = "proda"
) -> np.ndarray:
    """total_res_time_j (20,) in yr m-1 (SPEC 1.12); see ``residence_time_diagnostics``."""
    return residence_time_diagnostics(params, forcing, mode)["total_res_time"]
