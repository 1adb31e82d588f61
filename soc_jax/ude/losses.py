r"""Losses for training the SOC UDE.

* terminal MSE (seed Eq 16): ``mean_i (C_pred(z_i, T) - C_obs(z_i, T))^2``;
* trajectory MSE (seed Eq 7): ``mean_{k,i} (C_pred(z_i, t_k) - C_obs(z_i, t_k))^2``;
* collocation (PDE-residual) term: the semi-discrete PDE evaluated on the *observed* field,
  ``r_{k} = (C_obs[k+1] - C_obs[k-1]) / (t_{k+1} - t_{k-1}) - f(t_k, C_obs[k])``
  (a solve-free consistency term; it needs interior-time observations);
* weight decay: mean square of the network weight matrices;

and noise-aware data terms (the seed's "future work", Sec 4.3-4.4):

* ``"huber"``: ``2 * huber(r, delta)`` (equals ``r^2`` for ``|r| <= delta``);
* ``"student_t"``: ``nu s^2 log(1 + r^2 / (nu s^2))`` (equals ``r^2`` to first order);
* ``"multiplicative"``: Gaussian likelihood of the multiplicative noise model of seed Eq 13,
  ``obs = pred (1 + eta eps)`` with ``eps`` AR(1) along depth (lag-1 correlation ``rho``).
  With ``e = (obs - pred)/pred`` whitened along depth (``w_0 = e_0``,
  ``w_i = (e_i - rho e_{i-1}) / sqrt(1 - rho^2)``, so ``w ~ N(0, eta^2)`` i.i.d.), the
  per-point negative log-likelihood is ``0.5 mean(w^2) / eta^2 + mean log pred`` (+ const);
* ``"discrepancy"``: the same whitened multiplicative residual with Morozov's discrepancy
  principle as a loss, ``max(mean(w^2) / eta^2, 1)``: fitting below the known noise level earns
  nothing, so the regulariser (weight decay) decides among all fits that explain the data to
  within the noise. (Profiling ``eta`` out instead rewards interpolating the noise: the
  likelihood then diverges as the residual goes to zero.)

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Eqs 7, 13, 16 and Tables 2-7.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

LIKELIHOODS = ("mse", "huber", "student_t", "multiplicative", "discrepancy")


def data_misfit(
    pred: Float[Array, "... nz"],
    obs: Float[Array, "... nz"],
    likelihood: str = "mse",
    *,
    huber_delta: float = 0.02,
    student_nu: float = 4.0,
    student_scale: float = 0.02,
    rho: float = 0.0,
    eta: float = 0.1,
) -> Float[Array, ""]:
    """Mean data misfit between predicted and observed SOC.

    Args:
        pred: predicted SOC, shape ``(..., nz)`` (depth last).
        obs: observed SOC, same shape.
        likelihood: one of :data:`LIKELIHOODS`.
        huber_delta: Huber threshold (SOC units).
        student_nu: Student-t degrees of freedom.
        student_scale: Student-t scale (SOC units).
        rho: assumed lag-1 depth correlation for ``"multiplicative"``/``"discrepancy"``.
        eta: assumed relative noise level for ``"multiplicative"``/``"discrepancy"``.

    Returns:
        Scalar misfit.
    """
    r = pred - obs
    if likelihood == "mse":
        return jnp.mean(r**2)
    if likelihood == "huber":
        return 2.0 * jnp.mean(optax.losses.huber_loss(pred, obs, delta=huber_delta))
    if likelihood == "student_t":
        s2 = student_nu * student_scale**2
        return s2 * jnp.mean(jnp.log1p(r**2 / s2))
    if likelihood in ("multiplicative", "discrepancy"):
        p = jnp.maximum(pred, 1e-8)
        e = (obs - p) / p
        w = jnp.concatenate(
            [e[..., :1], (e[..., 1:] - rho * e[..., :-1]) / jnp.sqrt(1.0 - rho**2)], axis=-1
        )
        chi2 = jnp.mean(w**2) / eta**2
        if likelihood == "discrepancy":
            return jnp.maximum(chi2, 1.0)
        return 0.5 * chi2 + jnp.mean(jnp.log(p))
    raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")


def collocation_residual(vector_field, obs: Float[Array, "nt nz"], ts, drivers) -> Float[Array, ""]:
    """Mean squared semi-discrete PDE residual on the observed field (central differences in t).

    Args:
        vector_field: :class:`~soc_jax.ude.vector_field.UDEVectorField`.
        obs: observed SOC ``(nt, nz)``, ``nt >= 3``.
        ts: observation times (yr), ``(nt,)``.
        drivers: drivers passed as ``args``.

    Returns:
        Scalar mean of ``r^2`` ((SOC units yr^-1)^2).
    """
    dcdt = (obs[2:] - obs[:-2]) / (ts[2:] - ts[:-2])[:, None]
    f = jax.vmap(lambda t, c: vector_field(t, c, drivers))(ts[1:-1], obs[1:-1])
    return jnp.mean((dcdt - f) ** 2)


def weight_decay(params) -> Float[Array, ""]:
    """Mean square of all 2-D weight matrices in ``params`` (biases and scalars excluded)."""
    mats = [x for x in jax.tree.leaves(eqx.filter(params, eqx.is_inexact_array)) if x.ndim == 2]
    if not mats:
        return jnp.zeros(())
    total = sum(jnp.sum(m**2) for m in mats)
    count = sum(m.size for m in mats)
    return total / count


def mse(pred, ref) -> float:
    """Mean squared error (numpy-friendly helper for reporting)."""
    return float(jnp.mean((jnp.asarray(pred) - jnp.asarray(ref)) ** 2))


def r2(pred, ref) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of ``pred`` against ``ref``."""
    pred = jnp.asarray(pred)
    ref = jnp.asarray(ref)
    return float(1.0 - jnp.sum((pred - ref) ** 2) / jnp.sum((ref - jnp.mean(ref)) ** 2))
