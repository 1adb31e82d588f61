r"""System-level ("bulk") components of CLM5 and COMPAS (SPEC 8; Tao et al. 2024, Eqs. 10-14).

Every function here is a pure function of one profile's (physical parameters, `Prepared`
forcing, steady-state pools); vmap it, or use `components_batch`. Units: rates yr-1, stocks and
fluxes per m2 of ground, NPP gC m-2 yr-1.

**CLM5** (PRODA ``fun_bulk_process.m``), with :math:`\Delta z_j` the layer thickness,
:math:`\xi_j = \overline{\xi_T}\,\overline{\xi_W}\,e^{-z_j/\text{efolding}}` (product of monthly
means, *no* oxygen or nitrogen scalar: `soc_jax.models.clm5.CLM5Matrices.system_xi`) and
:math:`S_p = \sum_j C_{pj}\Delta z_j`:

- ``B`` (apparent input allocation, Jackson's beta): ``cum_j = cumsum(v)_j`` of the vertical
  input profile, layers with ``cum_j >= 1`` dropped, ``B = mean_j exp(ln(1 - cum_j)/(100 z_j))``
  with ``z_j`` the node depth (m). For a beta profile ``1 - cum_j = beta**(100 zi_j)`` (zi the
  bottom interface) wherever ``beta**860`` is negligible, so ``B = mean_j beta**(zi_j / z_j)``,
  a little below beta (the node depth is used, as coded). The paper's Eq. 14
  (fraction of input below 5 cm) is ``B**5``. Layers with ``1 - cum_j < 1e-12`` are dropped as
  ``cum_j >= 1`` (the last layer's ``cum`` is 1 up to rounding); ``B = 0`` if none is left (all
  input in layer 1: frozen sites).
- ``K`` = :math:`\sum_{p\in s1,s2,s3} \tau_p^{-1} S_p / \sum_{p} S_p` (yr-1, baseline rates, no xi).
- ``xi`` = :math:`\sum_j \xi_j SOC_j\Delta z_j / \sum_j SOC_j \Delta z_j`.
- ``A`` (CTE) = :math:`\sum_d f_d F_d / \sum_{p\in l1..s3} F_p` over the donors
  l1->s1, l2->s1, l3->s2, s1->s2, s1->s3, s2->s1, s2->s3, s3->s1, with
  :math:`F_p = \sum_j C_{pj}\tau_p^{-1}\xi_j\Delta z_j` (each donor once in the denominator).
- ``V`` = :math:`\sum_j 365\,V_{jj} SOC_j\Delta z_j / \sum_j SOC_j\Delta z_j` (yr-1), V the annual
  mean transport operator (its diagonal, litter-1 block = every transported pool's block).
- ``npp`` = total column input (gC m-2 yr-1).

**COMPAS** (PRODA_MIC ``fun_bulk_process.m``), with :math:`\xi_j` COMPAS's own environmental
scalar (SPEC 3.3: product of the monthly means of T, W *and O* scalars, times exp(-z/0.5)) and
:math:`\tau` in yr:

- ``rates`` (8, 20) apparent rates (yr-1): CWD :math:`\xi/\tau_{cwd}`, litters :math:`\xi/\tau_l`,
  DOC :math:`(\xi/\tau_{s1}) MIC/(K_a\xi + DOC)`, MIC :math:`(1/\tau_d + 1/\tau_e)\xi`,
  ENZ :math:`1/\tau_{s3}`, SOC :math:`(\xi/\tau_{s4}) ENZ/(K_d\xi + SOC)`.
- ``K`` = baseline rates :math:`[1/\tau_{cwd}, p_{l1s1}/\tau_{l1}, p_{l2s1}/\tau_{l2},
  p_{l3s4}/\tau_{l3}, 1/\tau_d + 1/\tau_e, 1/\tau_{s3}, \partial]` weighted by the stocks of
  [CWD, l1, l2, l3, MIC, ENZ, SOC], with the SOC term per layer,
  :math:`\partial_j = \tau_{s4}^{-1} ENZ_j K_d\, 2\, SOC_j\xi_j / (K_d\xi_j + SOC_j)^3`, entering as
  :math:`\sum_j \partial_j SOC_j \Delta z_j`.
- ``A`` (CTE) = :math:`\sum c_d w_d / \sum w_d` over l1, l2, l3 (CUEs ``l1_cue``, ``l2l3_cue``,
  ``l2l3_cue``, flows :math:`w = (1 - p_l) F_l`, so that :math:`c_d w_d = f_{l,MIC} F_l`) and
  DOC uptake (``mic_cue``, flow :math:`U_{DOC}`), where
  :math:`F_l = \sum_j \tau_l^{-1}\xi_j L_j\Delta z_j` and
  :math:`U_{DOC} = \sum_j (\xi_j/\tau_{s1}) MIC_j DOC_j/(K_a\xi_j + DOC_j)\Delta z_j`.
- ``E`` = the same with fractions [pl1s1, pl2s1, pl3s4, pdeath2soc] over the flows
  :math:`F_{l1}, F_{l2}, F_{l3}` and microbial death :math:`\sum_j (\xi_j/\tau_d) MIC_j\Delta z_j`.
- ``xi`` weighted by total soil carbon DOC+MIC+ENZ+SOC; ``V`` weighted by litter l1+l2+l3
  (soil pools have no transport); ``B`` and ``npp`` as for CLM5.
- Michaelis-Menten diagnostics per layer: ``km_decom_ratio`` :math:`K_d\xi/SOC`,
  ``km_assim_ratio`` :math:`K_a\xi/DOC` (inf where the substrate is 0).

Where a weight sum is zero (no carbon) a component is 0. The interpretation choices (COMPAS's
flows without the nitrogen scalar, litter-weighted V, ``B = 0`` for frozen sites) are stated in
docs/analysis.md.
"""

from __future__ import annotations

import dataclasses
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from ..batching import map_profiles
from ..forcing import DAYS_PER_YEAR, water_scalar
from ..grid import DZ, N_LAYERS, ZSOI

__all__ = [
    "CLM5Components",
    "COMPASComponents",
    "CLM5_NAMES",
    "COMPAS_NAMES",
    "SHARED_NAMES",
    "apparent_beta",
    "clm5_components",
    "compas_components",
    "components_batch",
]

CLM5_NAMES: tuple[str, ...] = ("B", "K", "xi", "A", "V", "npp")
COMPAS_NAMES: tuple[str, ...] = ("B", "K", "xi", "A", "E", "V", "npp")
SHARED_NAMES: tuple[str, ...] = ("A", "K", "xi", "B", "V", "npp")
"""Components both models define, in the paper's Figure 4 order (CTE, K, xi, B, V, NPP)."""
LONG_NAMES: dict[str, tuple[str, str]] = {
    "B": ("apparent input-allocation beta (SPEC 8 bulk_I)", "1"),
    "K": ("stock-weighted baseline decomposition rate", "yr-1"),
    "xi": ("SOC-weighted environmental modifier", "1"),
    "A": ("system carbon transfer efficiency (CTE)", "1"),
    "E": ("COMPAS litter/necromass fate (non-microbial transfer) efficiency", "1"),
    "V": ("stock-weighted vertical transport rate", "yr-1"),
    "npp": ("plant carbon input", "gC m-2 yr-1"),
}
_B_TOL = 1e-12  # 1 - cum below this counts as cum >= 1 (rounding of the last layer)


def _dz() -> Array:
    return jnp.asarray(DZ[:N_LAYERS])


def _ratio(num: Array, den: Array) -> Array:
    """num / den, 0 where den == 0 (double where: finite gradients)."""
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), 0.0)


def _weighted(values: Array, weights: Array) -> Array:
    """sum(values * weights * dz) / sum(weights * dz) over layers, 0 without weight."""
    w = weights * _dz()
    return _ratio(jnp.sum(values * w), jnp.sum(w))


def apparent_beta(profile: Float[ArrayLike, "20"]) -> Float[Array, ""]:
    """SPEC 8 ``bulk_I``: mean over layers with ``cum < 1`` of ``exp(ln(1 - cum_j)/(100 z_j))``.

    Args:
        profile: fraction of the column input per layer, (20,), summing to 1.

    Returns:
        The apparent Jackson beta (dimensionless); 0 if every layer has ``cum >= 1``.
    """
    cum = jnp.cumsum(jnp.asarray(profile))
    rest = 1.0 - cum
    valid = rest > _B_TOL
    depth_cm = 100.0 * jnp.asarray(ZSOI[:N_LAYERS])
    term = jnp.exp(jnp.log(jnp.where(valid, rest, 1.0)) / depth_cm)
    n = jnp.sum(valid)
    return _ratio(jnp.sum(jnp.where(valid, term, 0.0)), n.astype(term.dtype))


# -- CLM5 ----------------------------------------------------------------------------------------


class CLM5Components(eqx.Module):
    """CLM5 system-level components of one profile (scalars; see the module docstring).

    Attributes:
        B: apparent input-allocation beta, 1. K: baseline decomposition, yr-1.
        xi: environmental modifier, 1. A: carbon transfer efficiency, 1.
        V: vertical transport, yr-1. npp: carbon input, gC m-2 yr-1.
    """

    B: Array
    K: Array
    xi: Array
    A: Array
    V: Array
    npp: Array


# (receiver, donor) pool indices of the donors of SPEC 8's bulk_A (CLM5 pool order)
_CLM5_DONORS = ((4, 1), (4, 2), (5, 3), (5, 4), (6, 4), (4, 5), (6, 5), (4, 6))


def clm5_components(
    params: Float[ArrayLike, "21"],
    forcing,
    pools: Float[ArrayLike, "7 20"],
    mode: str | None = None,
) -> CLM5Components:
    """CLM5 system-level components (SPEC 8) of one profile.

    Args:
        params: (21,) physical parameters (`soc_jax.models.clm5.PARAMETERS` order).
        forcing: the profile's `Forcing` or `soc_jax.models.clm5.Prepared`.
        pools: (7, 20) pools (CWD, l1, l2, l3, s1, s2, s3), gC m-3 (``steady_state().pools``).
        mode: model mode (``"proda"`` / ``"default"``; a `Prepared` carries its own).

    Returns:
        `CLM5Components`.
    """
    from ..models import clm5

    params = jnp.asarray(params)
    x = jnp.asarray(pools)
    m = clm5.matrices(params, forcing, mode)
    names = clm5.PARAMETERS.names
    tau = jnp.stack(
        [params[names.index(n)] for n in ("taucwd", "taul1", "taul2", "taul2")]
        + [params[names.index(n)] for n in ("tau4s1", "tau4s2", "tau4s3")]
    )
    k = 1.0 / tau  # yr-1
    dz = _dz()
    stock = x @ dz  # (7,) gC m-2
    soil = slice(4, 7)
    K = _ratio(jnp.sum(k[soil] * stock[soil]), jnp.sum(stock[soil]))
    soc = jnp.sum(x[soil], axis=0)
    xi = m.system_xi
    Xi = _weighted(xi, soc)
    flux = k[:, None] * x * xi[None, :] * dz[None, :]  # (7, 20) donor flux per layer
    F = m.operator.fractions  # (layer, receiver, donor)
    num = sum(jnp.sum(F[:, q, p] * flux[p]) for q, p in _CLM5_DONORS)
    den = jnp.sum(flux[1:7])  # each donor l1..s3 once
    A = _ratio(num, den)
    V = _weighted(DAYS_PER_YEAR * m.operator.transport.diag, soc)
    return CLM5Components(
        B=apparent_beta(m.input_profile), K=K, xi=Xi, A=A, V=V, npp=jnp.sum(m.input_totals)
    )


# -- COMPAS --------------------------------------------------------------------------------------


class COMPASComponents(eqx.Module):
    """COMPAS system-level components of one profile (see the module docstring).

    Attributes:
        B, K, xi, A, E, V, npp: scalars (units as for CLM5; E dimensionless).
        rates: (8, 20) apparent rates per pool and layer, yr-1.
        km_decom_ratio: (20,) ``K_d xi / SOC`` (inf where SOC = 0).
        km_assim_ratio: (20,) ``K_a xi / DOC`` (inf where DOC = 0).
        km_decom_xi, km_assim_xi: (20,) ``K_d xi`` and ``K_a xi``, gC m-3.
        soc_substrate, doc_substrate: (20,) the substrates SOC and DOC, gC m-3.
    """

    B: Array
    K: Array
    xi: Array
    A: Array
    E: Array
    V: Array
    npp: Array
    rates: Array
    km_decom_ratio: Array
    km_assim_ratio: Array
    km_decom_xi: Array
    km_assim_xi: Array
    soc_substrate: Array
    doc_substrate: Array


def _inf_ratio(num: Array, den: Array) -> Array:
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), jnp.inf)


def compas_components(
    params: Float[ArrayLike, "23"],
    forcing,
    pools: Float[ArrayLike, "8 20"],
    mode: str | None = None,
) -> COMPASComponents:
    """COMPAS system-level components (SPEC 8) of one profile.

    Args:
        params: (23,) physical parameters (`soc_jax.models.compas.PARAMETERS` order).
        forcing: the profile's `Forcing` or `soc_jax.models.compas.Prepared`.
        pools: (8, 20) pools (CWD, l1, l2, l3, DOC, MIC, ENZ, SOC), gC m-3.
        mode: ``"proda"`` / ``"documented"`` (sets the enzyme turnover time, SPEC 3.6.1).

    Returns:
        `COMPASComponents`.
    """
    from ..models import compas

    params = jnp.asarray(params)
    x = jnp.asarray(pools)
    m = compas.matrices(params, forcing, mode)
    md = mode if mode is not None else getattr(forcing, "mode", "proda")
    p = _compas_constants(params, md)
    xi = m.xi
    rates, rate_doc = _compas_rates(p, xi, x)
    K = _compas_K(p, xi, x)
    A, E = _compas_efficiencies(p, xi, x, rate_doc)
    cwd, l1, l2, l3, doc, mic, enz, som = x
    soil_c = doc + mic + enz + som
    Xi = _weighted(xi, soil_c)
    V = _weighted(DAYS_PER_YEAR * m.operator.transport.diag, l1 + l2 + l3)
    ka, kd = p["ka"], p["kd"]
    return COMPASComponents(
        B=apparent_beta(m.input_profile),
        K=K,
        xi=Xi,
        A=A,
        E=E,
        V=V,
        npp=jnp.sum(m.input_totals),
        rates=rates,
        km_decom_ratio=_inf_ratio(kd * xi, som),
        km_assim_ratio=_inf_ratio(ka * xi, doc),
        km_decom_xi=kd * xi,
        km_assim_xi=ka * xi,
        soc_substrate=som,
        doc_substrate=doc,
    )


def _compas_constants(params: Array, mode: str) -> dict[str, Array]:
    """The turnover times (yr), Michaelis-Menten constants, transfer fractions and CUEs."""
    from ..models import compas

    names = compas.PARAMETERS.names

    def P(n):
        return params[names.index(n)]

    c = {"tau_cwd": P("tau4cwd"), "tau_l1": P("tau4l1"), "tau_l2": P("tau4l2")}
    c |= {"tau_s1": P("tau4s1"), "tau_d": P("tau4s2_death"), "tau_e": P("tau4s2_enz")}
    c["tau_s4"] = P("tau4s4")
    c["tau_s3"] = compas.enzyme_turnover_time(params, mode)
    c |= {"ka": P("mm_const_assim"), "kd": P("mm_const_decom")}
    c |= {"pl1": P("pl1s1"), "pl2": P("pl2s1"), "pl3": P("pl3s4")}
    c |= {"c1": P("l1_cue"), "c2": P("l2l3_cue"), "eps": P("mic_cue"), "pdeath": P("pdeath2soc")}
    return c


def _compas_rates(p: dict, xi: Array, x: Array) -> tuple[Array, Array]:
    """``(rates (8, 20), DOC's apparent rate (20,))``, yr-1 (see the module docstring)."""
    cwd, l1, l2, l3, doc, mic, enz, som = x
    ones = jnp.ones(N_LAYERS)
    rate_doc = (xi / p["tau_s1"]) * _ratio(mic, p["ka"] * xi + doc)
    rate_soc = (xi / p["tau_s4"]) * _ratio(enz, p["kd"] * xi + som)
    rates = jnp.stack(
        [
            xi / p["tau_cwd"],
            xi / p["tau_l1"],
            xi / p["tau_l2"],
            xi / p["tau_l2"],
            rate_doc,
            (1.0 / p["tau_d"] + 1.0 / p["tau_e"]) * xi,
            ones / p["tau_s3"],
            rate_soc,
        ]
    )
    return rates, rate_doc


def _compas_K(p: dict, xi: Array, x: Array) -> Array:
    """Stock-weighted baseline rate, with the Michaelis-Menten SOC derivative, yr-1."""
    dz = _dz()
    cwd, l1, l2, l3, doc, mic, enz, som = x
    ones = jnp.ones(N_LAYERS)
    tau_l1, tau_l2, tau_d, tau_e, tau_s3 = (
        p["tau_l1"],
        p["tau_l2"],
        p["tau_d"],
        p["tau_e"],
        p["tau_s3"],
    )
    kd = p["kd"]
    stock = x @ dz  # (8,)
    deriv = (1.0 / p["tau_s4"]) * enz * kd * 2.0 * som * xi * _ratio(ones, (kd * xi + som) ** 3)
    base = jnp.stack(
        [1.0 / p["tau_cwd"], p["pl1"] / tau_l1, p["pl2"] / tau_l2, p["pl3"] / tau_l2]
        + [1.0 / tau_d + 1.0 / tau_e, 1.0 / tau_s3]
    )
    w_stock = jnp.stack([stock[0], stock[1], stock[2], stock[3], stock[5], stock[6]])
    return _ratio(jnp.sum(base * w_stock) + jnp.sum(deriv * som * dz), jnp.sum(w_stock) + stock[7])


def _compas_efficiencies(p: dict, xi: Array, x: Array, rate_doc: Array) -> tuple[Array, Array]:
    """``(A, E)``: carbon transfer efficiency and litter/necromass fate efficiency, 1."""
    dz = _dz()
    cwd, l1, l2, l3, doc, mic, enz, som = x
    pl1, pl2, pl3 = p["pl1"], p["pl2"], p["pl3"]
    F1 = jnp.sum(xi * l1 * dz) / p["tau_l1"]
    F2 = jnp.sum(xi * l2 * dz) / p["tau_l2"]
    F3 = jnp.sum(xi * l3 * dz) / p["tau_l2"]
    U = jnp.sum(rate_doc * doc * dz)
    flows = jnp.stack([(1.0 - pl1) * F1, (1.0 - pl2) * F2, (1.0 - pl3) * F3, U])
    cues = jnp.stack([p["c1"], p["c2"], p["c2"], p["eps"]])
    A = _ratio(jnp.sum(cues * flows), jnp.sum(flows))
    death = jnp.sum(xi * mic * dz) / p["tau_d"]
    e_flows = jnp.stack([F1, F2, F3, death])
    E = _ratio(jnp.sum(jnp.stack([pl1, pl2, pl3, p["pdeath"]]) * e_flows), jnp.sum(e_flows))
    return A, E


def system_xi_compas_paper(params, prepared) -> Array:
    """COMPAS's xi without the oxygen scalar (the paper's Eq. 13 form), (20,); for comparison."""
    from ..models import compas

    names = compas.PARAMETERS.names
    xit = jnp.mean(params[names.index("q10")] ** prepared.temperature_exponent, axis=0)
    xiw = jnp.mean(water_scalar(prepared.w_scalar, params[names.index("w_scaling")], True), 0)
    return xit * xiw * np.exp(-ZSOI[:N_LAYERS] / compas.EFOLDING)


# -- batches -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _batch_fn(model: str, mode: str, chunk: int):
    from ..models.registry import get_model, is_failure

    module = get_model(model)
    comp = {"clm5": clm5_components, "compas": compas_components}[model]

    def one(params, forcing):
        prep = module.prepare(forcing, mode)
        state = module.steady_state(params, prep)
        # failure as everywhere, plus finite litter pools (the components read every pool)
        ok = ~is_failure(state) & jnp.all(jnp.isfinite(state.pools))
        pools = jnp.where(ok, state.pools, 0.0)
        c = comp(params, prep, pools)
        return c, state.soc, ok

    return jax.jit(lambda p, f: map_profiles(one, p, f, chunk_size=chunk))


def components_batch(
    model: str, params_physical: np.ndarray, forcing, mode: str, block: int = 512, chunk: int = 64
):
    """Steady states and components of n profiles (or cells), in fixed-size compiled blocks.

    Args:
        model: ``"clm5"`` or ``"compas"``.
        params_physical: (n, n_par) physical parameters.
        forcing: `soc_jax.forcing.Forcing` with a leading axis n (numpy or JAX leaves).
        mode: the model's mode.
        block: profiles per compiled call (the last block padded).
        chunk: profiles per vectorised chunk inside a call.

    Returns:
        ``(components, soc, ok)``: a dict name -> (n,) or (n, ...) numpy arrays (0 where not ok;
        the MM ratios are inf where the substrate is 0), layer SOC (n, 20) gC m-3, ok (n,).
    """
    from ..forcing import Forcing

    fn = _batch_fn(model, mode, chunk)
    arrays = {k: np.asarray(v) for k, v in forcing.as_numpy().items()}
    n = params_physical.shape[0]
    parts, socs, oks = [], [], []
    for s in range(0, n, block):
        e = min(s + block, n)
        idx = np.minimum(np.arange(s, s + block), e - 1)
        fb = Forcing(**{k: jnp.asarray(v[idx]) for k, v in arrays.items()})
        c, soc, ok = fn(jnp.asarray(params_physical[idx], jnp.float64), fb)
        parts.append(
            {f.name: np.asarray(getattr(c, f.name))[: e - s] for f in dataclasses.fields(c)}
        )
        socs.append(np.asarray(soc)[: e - s])
        oks.append(np.asarray(ok)[: e - s])
    comps = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ok = np.concatenate(oks)
    for k, v in comps.items():
        if not k.endswith("_ratio"):
            comps[k] = np.where(ok.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0.0)
    return comps, np.where(ok[:, None], np.concatenate(socs), 0.0), ok
