"""COMPAS soil subsystem: DOC, MIC, ENZ and SOC per layer, without transport (SPEC 3.5).

The soil constants of a parameter vector (`Kinetics`), the Michaelis-Menten fluxes, the soil
ODEs and their closed-form steady state; the equations are in `soc_jax.models.compas`, which
builds the `Kinetics` and feeds the litter fluxes in.

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

Units: pools in gC m-3, rates in day-1, inputs and fluxes in gC m-3 day-1.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

__all__ = [
    "Kinetics",
    "soil_steady_state",
    "soil_pools",
    "soil_tendency",
    "uptake",
    "decomposition",
    "ratio_or_inf",
]

Scalar = Float[Array, ""]  # one constant of the soil subsystem
Shares = Float[Array, "3"]  # one share per litter pool l1, l2, l3
PerLayer = Float[ArrayLike, " n"]  # one value per layer


class Kinetics(eqx.Module):
    """Soil-subsystem constants of one parameter vector (scalars unless stated).

    Attributes:
        death: microbial death rate k_d, day-1.
        enzyme_production: enzyme production rate k_e, day-1.
        enzyme_turnover: enzyme decay rate k_z, day-1 (mode-dependent, see `soc_jax.models.compas`).
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

    death: Scalar
    enzyme_production: Scalar
    enzyme_turnover: Scalar
    vmax_assim: Scalar
    vmax_decom: Scalar
    km_assim: Scalar
    km_decom: Scalar
    mic_cue: Scalar
    pdeath2soc: Scalar
    to_doc: Shares
    to_mic: Shares
    to_soc: Shares

    @property
    def litter_respired(self) -> Shares:
        """Respired share of the l1, l2, l3 decomposition fluxes, shape (3,)."""
        return 1.0 - self.to_doc - self.to_mic - self.to_soc


def ratio_or_inf(num: Array, den: Array) -> Array:
    """``num / den``, +-inf where ``den == 0`` (the caller flags it), with finite gradients."""
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), jnp.inf)


def soil_steady_state(
    kinetics: Kinetics, xi: PerLayer, in_doc: PerLayer, in_mic: PerLayer, in_soc: PerLayer
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
    soc = ratio_or_inf(r * k.km_decom * xi, k.vmax_decom * xi * enz - r)
    q = (turnover * mic - a_mic) / eps
    doc = ratio_or_inf(q * k.km_assim * xi, k.vmax_assim * xi * mic - q)
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


def soil_pools(kinetics: Kinetics, xi: Array, decay: Array, lit: Array) -> Float[Array, "4 20"]:
    """Soil closed form of every layer from the litter pools, scale-safe (module docstring).

    Args:
        kinetics: `Kinetics`.
        xi: environmental scalar per layer, (20,).
        decay: decay rates of l1, l2, l3, (3, 20), day-1.
        lit: l1, l2, l3 densities, (3, 20), gC m-3.

    Returns:
        (4, 20) DOC, MIC, ENZ, SOC in gC m-3.
    """
    largest = jnp.max(lit, axis=0)
    scale, unscale, e = _power_of_two_scale(jnp.where(largest > 0, largest, 1.0))
    scaled = lit * scale  # each layer's largest litter pool in [0.5, 1): no flux underflows
    scaled = jnp.where(e < _DEEP_LITTER_EXPONENT, jax.lax.stop_gradient(scaled), scaled)
    flux = decay * scaled
    k = kinetics
    soil = soil_steady_state(k, xi, k.to_doc @ flux, k.to_mic @ flux, k.to_soc @ flux)
    return soil * jnp.stack([jnp.ones_like(unscale), unscale, unscale, jnp.ones_like(unscale)])


def uptake(k: Kinetics, xi: Array, doc: Array, mic: Array) -> Array:
    """U_DOC = V_d xi MIC DOC / (K_a xi + DOC), gC m-3 day-1."""
    return k.vmax_assim * xi * mic * doc / (k.km_assim * xi + doc)


def decomposition(k: Kinetics, xi: Array, enz: Array, soc: Array) -> Array:
    """U_SOC = V_s xi ENZ SOC / (K_d xi + SOC), gC m-3 day-1."""
    return k.vmax_decom * xi * enz * soc / (k.km_decom * xi + soc)


def soil_tendency(
    kinetics: Kinetics, xi: Array, inputs: tuple[Array, Array, Array], soil: Array
) -> Float[Array, "4 20"]:
    """``d(DOC, MIC, ENZ, SOC)/dt`` per layer, (4, 20) gC m-3 day-1 (the soil ODEs).

    Args:
        kinetics: `Kinetics`.
        xi: environmental scalar per layer, (20,).
        inputs: litter-derived inputs to DOC, MIC and SOC, each (20,) gC m-3 day-1.
        soil: DOC, MIC, ENZ, SOC densities, (4, 20), gC m-3.
    """
    k = kinetics
    doc, mic, enz, soc = soil
    in_doc, in_mic, in_soc = inputs
    u_doc = uptake(k, xi, doc, mic)
    u_soc = decomposition(k, xi, enz, soc)
    death = k.death * xi * mic
    d_doc = in_doc + (1.0 - k.pdeath2soc) * death + k.enzyme_turnover * xi * enz + u_soc - u_doc
    d_mic = in_mic + k.mic_cue * u_doc - (k.death + k.enzyme_production) * xi * mic
    d_enz = k.enzyme_production * xi * mic - k.enzyme_turnover * xi * enz
    d_soc = in_soc + k.pdeath2soc * death - u_soc
    return jnp.stack([d_doc, d_mic, d_enz, d_soc])
