"""Forcing of one soil profile: monthly climatology of the CESM2 fields PRODA uses (SPEC 4).

A `Forcing` is an Equinox Module (a PyTree of arrays), so a batch of profiles is the same Module
with a leading axis on every field and ``jax.vmap`` maps over it. Validation is host side
(`Forcing.validate`) and names the field and the rule; inside ``jit``/``vmap`` use
`Forcing.is_valid`, a traceable flag.

Environmental response functions (SPEC 1.4), per layer and month:

    xi_T = q10 ** ((T - 298.15) / 10)                            T >= 273.15 K
    xi_T = q10 ** ((273.15 - 298.15) / 10) * fq10 ** ((T - 273.15) / 10)   T < 273.15 K (fq10 = q10)
    xi_W = min(W_SCALAR * w_scaling, 1)
    xi_O = O_SCALAR,   xi_N = FPI_vr (litter pools only),   depth: exp(-zsoi / efolding)
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from .grid import DZ, N_LAYERS, ZISOI

__all__ = [
    "Forcing",
    "N_MONTHS",
    "N_LITTER_INPUTS",
    "DAYS_PER_YEAR",
    "DAYS_IN_MONTH",
    "reference_forcing",
    "where_valid",
    "temperature_exponent",
    "temperature_scalar",
    "water_scalar",
    "depth_scalar",
    "input_totals",
    "beta_input_profile",
    "beta_profile",
]

N_MONTHS: int = 12
N_LITTER_INPUTS: int = 4  # CWD, LITR1 (metabolic), LITR2 (cellulose), LITR3 (lignin)
DAYS_PER_YEAR: float = 365.0  # no leap years anywhere in PRODA (SPEC 1.9)
DAYS_IN_MONTH: np.ndarray = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)
T_REF_K: float = 298.15  # reference temperature of the Q10 function (K)
T_FREEZE_K: float = 273.15  # freezing point (K)

# field name -> (trailing shape, unit, long name)
_FIELDS: dict[str, tuple[tuple[int, ...], str, str]] = {
    "tsoi": ((N_MONTHS, N_LAYERS), "K", "soil temperature (TSOI)"),
    "w_scalar": ((N_MONTHS, N_LAYERS), "1", "CESM2 moisture scalar (W_SCALAR)"),
    "o_scalar": ((N_MONTHS, N_LAYERS), "1", "CESM2 oxygen scalar (O_SCALAR)"),
    "fpi": ((N_MONTHS, N_LAYERS), "1", "fraction of potential N immobilization (FPI_vr)"),
    "sand": ((N_MONTHS, N_LAYERS), "%", "sand content (CELLSAND)"),
    "nbedrock": ((N_MONTHS,), "1", "bedrock layer index (1-based, 1..20)"),
    "altmax": ((N_MONTHS,), "m", "maximum active layer depth, current year (ALTMAX)"),
    "altmax_lastyear": ((N_MONTHS,), "m", "maximum active layer depth, last year"),
    "litter_input": (
        (N_LITTER_INPUTS, N_MONTHS, N_LAYERS),
        "gC m-3 month-1",
        "CWD, LITR1, LITR2, LITR3 inputs (*_INPUT_ACC_VECTOR)",
    ),
    "npp": ((N_MONTHS,), "gC m-2 s-1", "net primary production (diagnostics only)"),
}


MonthByLayer = Float[Array, "*batch 12 20"]  # a field per month and layer
Monthly = Float[Array, "*batch 12"]  # a column field per month


class Forcing(eqx.Module):
    """Monthly forcing of one profile (a batch if every field has the same leading axes).

    Attributes:
        tsoi: soil temperature, (12, 20), K.
        w_scalar: CESM2 moisture scalar W_SCALAR, (12, 20), dimensionless, >= 0.
        o_scalar: CESM2 oxygen scalar O_SCALAR, (12, 20), in [0, 1].
        fpi: nitrogen limitation FPI_vr, (12, 20), in [0, 1].
        sand: sand content CELLSAND, (12, 20), % (only the default CLM5 mode uses it).
        nbedrock: bedrock layer index per month, (12,), integer-valued in 1..20 (1-based).
        altmax: maximum active-layer depth this year, (12,), m (0 = frozen all year).
        altmax_lastyear: the same for last year, (12,), m.
        litter_input: inputs to CWD, LITR1, LITR2, LITR3, (4, 12, 20), gC m-3 per month.
        npp: net primary production, (12,), gC m-2 s-1 (diagnostics only).
    """

    tsoi: MonthByLayer
    w_scalar: MonthByLayer
    o_scalar: MonthByLayer
    fpi: MonthByLayer
    sand: MonthByLayer
    nbedrock: Monthly
    altmax: Monthly
    altmax_lastyear: Monthly
    litter_input: Float[Array, "*batch 4 12 20"]
    npp: Monthly

    @staticmethod
    def field_info() -> dict[str, tuple[tuple[int, ...], str, str]]:
        """Field name -> (shape of one profile, unit, long name)."""
        return dict(_FIELDS)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        """Leading (batch) shape; () for a single profile."""
        return tuple(np.shape(self.tsoi)[:-2])

    def __getitem__(self, index) -> Forcing:
        """Select profiles from a batch: ``forcing[3]``, ``forcing[:10]``."""
        return Forcing(**{k: getattr(self, k)[index] for k in _FIELDS})

    @staticmethod
    def stack(profiles: list[Forcing]) -> Forcing:
        """Stack single-profile forcings into a batch with a leading profile axis."""
        if not profiles:
            raise ValueError("Forcing.stack needs at least one profile")
        return Forcing(
            **{k: np.stack([np.asarray(getattr(f, k)) for f in profiles]) for k in _FIELDS}
        )

    def as_numpy(self) -> dict[str, np.ndarray]:
        """The fields as a dict of float64 numpy arrays (copies: safe to modify)."""
        return {k: np.array(getattr(self, k), dtype=float) for k in _FIELDS}

    def validate(self, name: str = "forcing") -> Forcing:
        """Check shapes, finiteness and ranges; raise ``ValueError`` naming field and profile.

        Returns:
            self, so that ``Forcing(...).validate()`` chains.
        """
        batch = self.batch_shape
        arrays = self.as_numpy()
        for key, (shape, _unit, long_name) in _FIELDS.items():
            arr = arrays[key]
            if arr.shape != batch + shape:
                raise ValueError(
                    f"{name}.{key} ({long_name}) must have shape {batch + shape}, got {arr.shape}"
                )
            bad = ~np.isfinite(arr)
            if np.any(bad):
                raise ValueError(
                    f"{name}.{key} ({long_name}) has {int(bad.sum())} non-finite values, "
                    f"first at index {_first(bad)}"
                )

        def check(key: str, bad: np.ndarray, rule: str) -> None:
            if np.any(bad):
                idx = _first(bad)
                raise ValueError(
                    f"{name}.{key} breaks the rule '{rule}' at index {idx} "
                    f"(value {arrays[key][idx]!r} {_FIELDS[key][1]})"
                )

        check("tsoi", (arrays["tsoi"] < 150.0) | (arrays["tsoi"] > 350.0), "150 K <= tsoi <= 350 K")
        check("w_scalar", arrays["w_scalar"] < 0, "w_scalar >= 0")
        for key in ("o_scalar", "fpi"):
            check(key, (arrays[key] < 0) | (arrays[key] > 1), f"0 <= {key} <= 1")
        check("sand", (arrays["sand"] < 0) | (arrays["sand"] > 100), "0 <= sand <= 100 %")
        nb = arrays["nbedrock"]
        check(
            "nbedrock",
            (nb != np.round(nb)) | (nb < 1) | (nb > N_LAYERS),
            f"nbedrock is an integer layer index in 1..{N_LAYERS}",
        )
        for key in ("altmax", "altmax_lastyear"):
            check(key, arrays[key] < 0, f"{key} >= 0 m")
        check("litter_input", arrays["litter_input"] < 0, "litter inputs >= 0")
        return self

    def is_valid(self) -> Array:
        """Traceable validity flag (the rules of `validate`), shape = batch shape."""

        def all_(x, n):  # reduce the trailing n axes
            return jnp.all(x, axis=tuple(range(-n, 0)))

        ok = jnp.ones(self.batch_shape, bool)
        for key, (shape, _, _) in _FIELDS.items():
            ok &= all_(jnp.isfinite(getattr(self, key)), len(shape))
        ok &= all_((self.tsoi >= 150.0) & (self.tsoi <= 350.0), 2)
        ok &= all_(self.w_scalar >= 0, 2)
        ok &= all_((self.o_scalar >= 0) & (self.o_scalar <= 1), 2)
        ok &= all_((self.fpi >= 0) & (self.fpi <= 1), 2)
        ok &= all_((self.sand >= 0) & (self.sand <= 100), 2)
        nb = self.nbedrock
        ok &= all_((nb == jnp.round(nb)) & (nb >= 1) & (nb <= N_LAYERS), 1)
        ok &= all_((self.altmax >= 0) & (self.altmax_lastyear >= 0), 1)
        ok &= all_(self.litter_input >= 0, 3)
        return ok


def reference_forcing() -> Forcing:
    """A valid single-profile forcing (temperate, thawed, bedrock at layer 20, unit inputs).

    Models evaluate it in place of a forcing that breaks a rule, so that a flagged profile's
    values and gradients stay finite (see `soc_jax.models.common`).
    """
    months, layers = (N_MONTHS, N_LAYERS), (N_MONTHS,)
    return Forcing(
        tsoi=np.full(months, 288.15),
        w_scalar=np.full(months, 0.5),
        o_scalar=np.ones(months),
        fpi=np.full(months, 0.5),
        sand=np.full(months, 40.0),
        nbedrock=np.full(layers, float(N_LAYERS)),
        altmax=np.full(layers, 8.6),
        altmax_lastyear=np.full(layers, 8.6),
        litter_input=np.ones((N_LITTER_INPUTS, N_MONTHS, N_LAYERS)),
        npp=np.full(layers, 1e-8),
    )


def where_valid(forcing: Forcing) -> tuple[Forcing, Array]:
    """``(forcing, True)`` for a valid profile, ``(reference_forcing(), False)`` otherwise.

    Traceable (a ``where`` per field), one profile.
    """
    valid = forcing.is_valid()
    ref = reference_forcing()
    safe = jax.tree.map(
        lambda a, r: jnp.where(valid, jnp.asarray(a, jnp.result_type(float)), r), forcing, ref
    )
    return safe, valid


def _first(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def temperature_exponent(tsoi: Float[ArrayLike, "..."]) -> Float[Array, "..."]:
    """Exponent e of the Q10 modifier ``xi_T = q10**e`` (SPEC 1.4), dimensionless.

    ``(T - 298.15) / 10`` above freezing; below it PRODA multiplies
    ``q10^((273.15 - 298.15)/10)`` by ``fq10^((T - 273.15)/10)``, and with ``fq10 = q10`` that
    is one power of the summed exponents (equal to rounding). Forcing-only: models compute it
    once per profile (`prepare`).

    Args:
        tsoi: soil temperature, K.
    """
    tsoi = jnp.asarray(tsoi)
    frozen_exponent = (T_FREEZE_K - T_REF_K) / 10.0 + (tsoi - T_FREEZE_K) / 10.0
    return jnp.where(tsoi >= T_FREEZE_K, (tsoi - T_REF_K) / 10.0, frozen_exponent)


def temperature_scalar(tsoi: Float[ArrayLike, "..."], q10: ArrayLike) -> Float[Array, "..."]:
    """Q10 temperature modifier of SPEC 1.4 (frozen branch with fq10 = q10).

    Args:
        tsoi: soil temperature, K.
        q10: Q10 (dimensionless), also used as the frozen-soil Q10.

    Returns:
        xi_T, dimensionless, same shape as ``tsoi``.
    """
    return q10 ** temperature_exponent(tsoi)


def water_scalar(
    w_scalar: Float[ArrayLike, "..."], w_scaling: ArrayLike, capped: bool = True
) -> Float[Array, "..."]:
    """Moisture modifier: ``min(W_SCALAR * w_scaling, 1)`` (PRODA) or W_SCALAR as is."""
    xiw = jnp.asarray(w_scalar) * w_scaling
    return jnp.minimum(xiw, 1.0) if capped else xiw


def depth_scalar(zsoi: Float[ArrayLike, " n"], efolding: ArrayLike) -> Float[Array, " n"]:
    """Depth modifier ``exp(-zsoi / efolding)``; zsoi and efolding in m."""
    return jnp.exp(-jnp.asarray(zsoi) / efolding)


def input_totals(litter_input: Float[ArrayLike, "4 12 20"]) -> Float[Array, "4"]:
    """Annual column input per litter pool: sum over months and layers of input * dz.

    Args:
        litter_input: (4, 12, 20) gC m-3 per month for CWD, LITR1, LITR2, LITR3.

    Returns:
        (4,) gC m-2 yr-1.
    """
    return jnp.sum(jnp.asarray(litter_input) * jnp.asarray(DZ[:N_LAYERS]), axis=(-2, -1))


def beta_input_profile(
    beta: ArrayLike, altmax_lastyear: Float[ArrayLike, "12"]
) -> Float[Array, "20"]:
    """Vertical distribution of inputs (Jackson et al. 1996 beta model, SPEC 1.8).

    If ALTMAX_LASTYEAR > 0 in **all** 12 months (MATLAB's ``if vector > 0``), the fraction of the
    column input going to layer j is ``(beta^(100 z_{j-1}) - beta^(100 z_j)) / (1 - beta^860)``
    with interface depths z in m (so depth in cm in the exponent); otherwise everything goes to
    layer 1.

    Args:
        beta: shape parameter in (0, 1).
        altmax_lastyear: (12,) m.

    Returns:
        (20,) fractions summing to 1.
    """
    return beta_profile(beta, jnp.all(jnp.asarray(altmax_lastyear) > 0))


def beta_profile(beta: ArrayLike, thawed: Bool[ArrayLike, ""]) -> Float[Array, "20"]:
    """`beta_input_profile` given the forcing-only condition ``thawed`` (all months > 0)."""
    zi = jnp.asarray(np.concatenate([[0.0], ZISOI[:N_LAYERS]]))
    cum = beta ** (100.0 * zi)
    profile = (cum[:-1] - cum[1:]) / (1.0 - beta ** (100.0 * ZISOI[N_LAYERS - 1]))
    surface = jnp.zeros(N_LAYERS).at[0].set(1.0)
    return jnp.where(thawed, profile, surface)
