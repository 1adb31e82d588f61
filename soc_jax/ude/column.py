r"""Vertical soil column and method-of-lines transport operators for SOC(z, t).

The transport part of the seed's UDE (Eq 1),

.. math::

    \partial_t C = D\,\partial_{zz} C - v\,\partial_z C + P - R,
    \qquad \partial_z C|_{z=0} = \partial_z C|_{z=H} = 0,

is semi-discretised on ``N_z`` uniform nodes ``z_i = i\,\Delta z`` (``i = 0..N_z-1``,
``\Delta z = H/(N_z-1)``) with second-order central differences

.. math::

    C_{zz,i} \approx \frac{C_{i+1} - 2C_i + C_{i-1}}{\Delta z^2},\qquad
    C_{z,i} \approx \frac{C_{i+1} - C_{i-1}}{2\Delta z}.

The zero-gradient (Neumann) boundaries use mirrored ghost nodes ``C_{-1} = C_1`` and
``C_{N_z} = C_{N_z-2}``, so ``C_z = 0`` at both ends and ``C_{zz,0} = 2(C_1 - C_0)/\Delta z^2``.
With these ghosts the discrete diffusion operator conserves the trapezoidal integral
``\sum_i w_i C_i \Delta z`` (``w = [1/2, 1, ..., 1, 1/2]``) exactly, so with ``v = 0`` and no
reaction the column's total carbon is constant. With zero-gradient boundaries the advective
flux ``v C`` is not blocked: it enters at the surface and leaves at the bottom, so with
``v > 0`` the stock changes at rate ``~ v (C_0 - C_{N_z-1})`` (as in the seed's formulation).

References:
    Raju G.V.V. S., Joshi P. D., Dandekar R. A., Dandekar R., Panat S. (2025). A study of universal
    ODE approaches to predicting soil organic carbon. Preprint (seed ``002_b37d5f09a3b95671``),
    Section 2.2 "Discretization and Integration".
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

#: Depth of the column (m), seed Section 2.2.
COLUMN_DEPTH_M = 1.0
#: Number of depth nodes, seed Section 2.2 / Table 2.
DEFAULT_NZ = 30


def require_x64(what: str = "soc_jax.ude") -> None:
    """Fail clearly when JAX runs in float32.

    The library never switches precision itself (DESIGN.md, "Precision"); entry points do.

    Args:
        what: name of the caller, used in the error message.

    Raises:
        RuntimeError: if ``jax_enable_x64`` is off.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs float64: call jax.config.update('jax_enable_x64', True) at start-up "
            "(the soc-jax CLI, experiments, tests and benchmarks do this)."
        )


class Column(eqx.Module):
    """A uniform vertical grid on ``[0, depth]``.

    Attributes:
        depth: column depth H (m).
        nz: number of nodes (including both boundary nodes).
    """

    depth: float = eqx.field(static=True, default=COLUMN_DEPTH_M)
    nz: int = eqx.field(static=True, default=DEFAULT_NZ)

    def __check_init__(self):
        if self.nz < 3:
            raise ValueError(f"Column needs at least 3 nodes, got nz={self.nz}")
        if not self.depth > 0:
            raise ValueError(f"Column depth must be positive, got {self.depth}")

    @property
    def dz(self) -> float:
        """Node spacing (m)."""
        return self.depth / (self.nz - 1)

    @property
    def z(self) -> Float[Array, " nz"]:
        """Node depths (m), shape ``(nz,)``."""
        return jnp.linspace(0.0, self.depth, self.nz)

    @property
    def trapezoid_weights(self) -> Float[Array, " nz"]:
        """Trapezoidal quadrature weights (m), shape ``(nz,)``; ``sum(w * C)`` is the stock."""
        w = jnp.full((self.nz,), self.dz)
        return w.at[0].set(0.5 * self.dz).at[-1].set(0.5 * self.dz)


def _with_ghosts(c: Float[Array, " nz"]) -> Float[Array, " nz+2"]:
    """Pad a profile with mirrored ghost nodes (zero-gradient boundaries)."""
    return jnp.concatenate([c[1:2], c, c[-2:-1]])


def second_derivative(c: Float[Array, " nz"], column: Column) -> Float[Array, " nz"]:
    """Central second difference with mirrored ghost nodes.

    Args:
        c: profile, shape ``(nz,)`` (SOC units).
        column: the grid.

    Returns:
        ``C_zz``, shape ``(nz,)`` (SOC units m^-2).
    """
    g = _with_ghosts(c)
    return (g[2:] - 2.0 * g[1:-1] + g[:-2]) / column.dz**2


def first_derivative(c: Float[Array, " nz"], column: Column) -> Float[Array, " nz"]:
    """Central first difference ``C_z`` with mirrored ghost nodes (zero at both boundaries).

    Arguments as :func:`second_derivative`; returns ``C_z``, shape ``(nz,)`` (SOC units m^-1).
    """
    g = _with_ghosts(c)
    return (g[2:] - g[:-2]) / (2.0 * column.dz)


def transport_rhs(
    c: Float[Array, " nz"], diffusivity, velocity, column: Column
) -> Float[Array, " nz"]:
    """Advection-diffusion tendency ``D C_zz - v C_z``.

    Args:
        c: profile, shape ``(nz,)`` (SOC units).
        diffusivity: D (m^2 yr^-1), scalar.
        velocity: v (m yr^-1, positive downwards), scalar.
        column: the grid.

    Returns:
        ``dC/dt`` from transport, shape ``(nz,)`` (SOC units yr^-1).
    """
    return diffusivity * second_derivative(c, column) - velocity * first_derivative(c, column)
