"""Parameter spaces: one source of truth for names, bounds, units, groups and transforms.

PRODA calibrates every model in a normalized space ``p in (0, 1)`` with the linear map
``x = lower + p (upper - lower)`` to physical values (SPEC 2, 3.2); a parameter declared with
``transform="log10"`` (COMPAS's enzyme turnover time, coded ``10**(3 p - 3)`` yr) maps
log-uniformly, ``x = 10**(log10 lower + p (log10 upper - log10 lower))``. Gradient-based
samplers and networks want an unconstrained vector, so soc_jax adds ``z = logit(p)``. The three
representations and their conversions live here, once, for every model:

    z  (unconstrained, R^n)  --sigmoid-->  p  (normalized, (0,1)^n)  --affine-->  x  (physical)

``log_abs_det_jacobian(z)`` is ``log |dx/dz|`` summed over parameters, the term a sampler adds to
the log density when it moves in ``z`` while the prior is uniform in ``x``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["ParameterSpec", "ParameterSpace"]


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One calibratable parameter.

    Attributes:
        name: code name (as in the authors' code), e.g. ``"tau4s2"``.
        lower: lower prior bound, physical units.
        upper: upper prior bound, physical units.
        unit: physical unit, e.g. ``"yr"``, ``"m2 yr-1"``, ``"-"``.
        meaning: one-line description.
        group: process group for component attribution: ``"A"`` (carbon transfer efficiency),
            ``"K"`` (baseline turnover), ``"Xi"`` (environmental modifiers), ``"I"`` (input
            allocation), ``"V"`` (vertical transport), ``"E"`` (COMPAS litter fate).
        default: customary (model default) value in physical units; may lie outside the prior.
        note: provenance or caveat of the default.
        transform: ``"linear"`` (PRODA's default) or ``"log10"`` (log-uniform between the
            bounds; needs ``lower > 0``).
    """

    name: str
    lower: float
    upper: float
    unit: str
    meaning: str
    group: str
    default: float
    note: str = ""
    transform: str = "linear"

    def __post_init__(self) -> None:
        if not self.upper > self.lower:
            raise ValueError(f"parameter {self.name!r}: upper ({self.upper}) must exceed lower")
        if self.transform not in ("linear", "log10"):
            raise ValueError(
                f"parameter {self.name!r}: transform must be 'linear' or 'log10', "
                f"got {self.transform!r}"
            )
        if self.transform == "log10" and not self.lower > 0:
            raise ValueError(f"parameter {self.name!r}: a log10 transform needs lower > 0")


class ParameterSpace:
    """Ordered parameters of one model with the p <-> x <-> z conversions.

    Conversions are pure jnp functions (jit/vmap/grad-able) on the trailing axis, so a batch of
    shape (..., n) works. Validation methods (``validate_*``) are host-side and raise
    ``ValueError`` naming the offending parameter; use them outside ``jit``.
    """

    def __init__(self, specs: Sequence[ParameterSpec]):
        self.specs: tuple[ParameterSpec, ...] = tuple(specs)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        self.names: tuple[str, ...] = tuple(names)
        self.lower: np.ndarray = np.array([s.lower for s in self.specs], dtype=float)
        self.upper: np.ndarray = np.array([s.upper for s in self.specs], dtype=float)
        self.units: tuple[str, ...] = tuple(s.unit for s in self.specs)
        self.groups: tuple[str, ...] = tuple(s.group for s in self.specs)
        self.transforms: tuple[str, ...] = tuple(s.transform for s in self.specs)
        # log10 transform: x = 10**(log_lower + p * log_span) where _is_log (else linear).
        self._is_log = np.array([t == "log10" for t in self.transforms])
        safe_lower = np.where(self._is_log, self.lower, 1.0)
        self._log_lower = np.where(self._is_log, np.log10(safe_lower), 0.0)
        self._log_span = np.where(
            self._is_log, np.log10(np.where(self._is_log, self.upper, 10.0)) - self._log_lower, 0.0
        )

    # -- metadata -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.specs)

    def __repr__(self) -> str:
        return f"ParameterSpace({len(self)} parameters: {', '.join(self.names)})"

    def index(self, name: str) -> int:
        """Position of parameter ``name``."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown parameter {name!r}; known: {self.names}") from None

    def group_indices(self, group: str) -> np.ndarray:
        """Positions of the parameters in process group ``group`` (e.g. ``"K"``)."""
        idx = np.flatnonzero(np.array(self.groups) == group)
        if idx.size == 0:
            raise KeyError(f"no parameters in group {group!r}; groups: {sorted(set(self.groups))}")
        return idx

    def default(self) -> np.ndarray:
        """Customary physical values, shape (n,). Some lie outside the prior (see specs)."""
        return np.array([s.default for s in self.specs], dtype=float)

    def midpoint(self) -> np.ndarray:
        """Physical values at p = 0.5 (PRODA's MCMC start), shape (n,).

        The arithmetic mean of the bounds for linear parameters, the geometric mean for log10.
        """
        return np.where(
            self._is_log, np.sqrt(self.lower * self.upper), 0.5 * (self.lower + self.upper)
        )

    def table(self) -> str:
        """A plain-text table of the space (name, unit, bounds, default, group, meaning)."""
        header = f"{'#':>2} {'name':<16}{'unit':<10}{'lower':>10}{'upper':>10}{'default':>11}"
        rows = [header + "  grp  meaning"]
        for i, s in enumerate(self.specs, 1):
            rows.append(
                f"{i:>2} {s.name:<16}{s.unit:<10}{s.lower:>10.4g}{s.upper:>10.4g}"
                f"{s.default:>11.4g}  {s.group:<4} {s.meaning}"
            )
        return "\n".join(rows)

    # -- conversions (pure jnp) ---------------------------------------------------------------
    def to_physical(self, p: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """Normalized p (SPEC's 0-1 space) -> physical x = lower + p (upper - lower).

        Parameters with ``transform="log10"``: x = 10**(log10 lower + p (log10 upper - log10
        lower)).
        """
        p = jnp.asarray(p)
        linear = jnp.asarray(self.lower) + p * jnp.asarray(self.upper - self.lower)
        if not self._is_log.any():
            return linear
        log = 10.0 ** (jnp.asarray(self._log_lower) + p * jnp.asarray(self._log_span))
        return jnp.where(jnp.asarray(self._is_log), log, linear)

    def to_normalized(self, x: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """Physical x -> normalized p = (x - lower) / (upper - lower) (log10: in log space)."""
        x = jnp.asarray(x)
        linear = (x - jnp.asarray(self.lower)) / jnp.asarray(self.upper - self.lower)
        if not self._is_log.any():
            return linear
        is_log = jnp.asarray(self._is_log)
        span = jnp.asarray(np.where(self._is_log, self._log_span, 1.0))
        log = (jnp.log10(jnp.where(is_log, x, 1.0)) - jnp.asarray(self._log_lower)) / span
        return jnp.where(is_log, log, linear)

    @staticmethod
    def normalized_to_unconstrained(p: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """p -> z = logit(p)."""
        p = jnp.asarray(p)
        return jnp.log(p) - jnp.log1p(-p)

    @staticmethod
    def unconstrained_to_normalized(z: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """z -> p = sigmoid(z)."""
        return jax.nn.sigmoid(jnp.asarray(z))

    def from_unconstrained(self, z: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """Unconstrained z -> physical x (always inside the open prior box)."""
        return self.to_physical(self.unconstrained_to_normalized(z))

    def to_unconstrained(self, x: Float[ArrayLike, "... n"]) -> Float[Array, "... n"]:
        """Physical x (strictly inside the bounds) -> unconstrained z."""
        return self.normalized_to_unconstrained(self.to_normalized(x))

    def log_abs_det_jacobian(self, z: Float[ArrayLike, "... n"]) -> Float[Array, "..."]:
        """log |det dx/dz| of z -> x, summed over the trailing axis.

        dx_i/dz_i = (upper_i - lower_i) p_i (1 - p_i), with log p = -softplus(-z) and
        log(1 - p) = -softplus(z) for stability at large |z|. For a log10 parameter
        dx/dp = x ln(10) (log10 upper - log10 lower).
        """
        z = jnp.asarray(z)
        log_scale = jnp.log(jnp.asarray(self.upper - self.lower))
        if self._is_log.any():
            ln10 = np.log(10.0)
            p = self.unconstrained_to_normalized(z)
            span = np.where(self._is_log, self._log_span, 1.0)
            log_x = ln10 * (jnp.asarray(self._log_lower) + p * jnp.asarray(self._log_span))
            log_scale = jnp.where(
                jnp.asarray(self._is_log), log_x + jnp.log(jnp.asarray(ln10 * span)), log_scale
            )
        return jnp.sum(log_scale - jax.nn.softplus(-z) - jax.nn.softplus(z), axis=-1)

    # -- validation (host side) ---------------------------------------------------------------
    def _check_shape(self, values: np.ndarray, what: str) -> None:
        if values.ndim < 1 or values.shape[-1] != len(self):
            raise ValueError(
                f"{what} must have trailing length {len(self)} ({', '.join(self.names)}), "
                f"got shape {values.shape}"
            )

    def validate_physical(self, x: ArrayLike, *, within_prior: bool = True) -> np.ndarray:
        """Check physical values; return them as a float64 numpy array.

        Args:
            x: physical values, shape (..., n).
            within_prior: if True, every value must lie in [lower, upper]; if False, only
                finiteness and non-negativity are required (customary values may lie outside
                the prior, e.g. CLM5's 10 m e-folding depth).

        Raises:
            ValueError: naming the first offending parameter and the rule it breaks.
        """
        x = np.asarray(x, dtype=float)
        self._check_shape(x, "physical parameter vector")
        flat = x.reshape(-1, len(self))
        for i, s in enumerate(self.specs):
            col = flat[:, i]
            if not np.all(np.isfinite(col)):
                raise ValueError(
                    f"parameter {s.name!r} is not finite: {col[~np.isfinite(col)][:3]}"
                )
            if within_prior:
                bad = (col < s.lower) | (col > s.upper)
                if np.any(bad):
                    hint = ""
                    if np.all((flat >= 0) & (flat <= 1)):
                        hint = (
                            "; physical values are expected, and these look like normalized "
                            "ones in [0, 1]: convert them with PARAMETERS.to_physical(p)"
                        )
                    raise ValueError(
                        f"parameter {s.name!r} = {col[bad][0]:.6g} {s.unit} is outside its prior "
                        f"bounds [{s.lower:g}, {s.upper:g}]{hint}"
                    )
            elif np.any(col < 0):
                raise ValueError(f"parameter {s.name!r} = {col[col < 0][0]:.6g} must be >= 0")
        return x

    def validate_normalized(self, p: ArrayLike) -> np.ndarray:
        """Check normalized values lie in [0, 1]; return them as a float64 numpy array."""
        p = np.asarray(p, dtype=float)
        self._check_shape(p, "normalized parameter vector")
        flat = p.reshape(-1, len(self))
        for i, s in enumerate(self.specs):
            col = flat[:, i]
            bad = ~np.isfinite(col) | (col < 0) | (col > 1)
            if np.any(bad):
                raise ValueError(
                    f"normalized parameter {s.name!r} = {col[bad][0]} is outside [0, 1]"
                )
        return p

    def in_bounds(self, x: Float[ArrayLike, "... n"]) -> Array:
        """Traceable check: all values finite and within [lower, upper] (bool, shape (...))."""
        x = jnp.asarray(x)
        ok = jnp.isfinite(x) & (x >= jnp.asarray(self.lower)) & (x <= jnp.asarray(self.upper))
        return jnp.all(ok, axis=-1)
