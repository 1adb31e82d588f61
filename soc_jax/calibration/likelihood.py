"""From parameters to a misfit for one profile: observation operator, PRODA's costs, log-density.

Everything here works on ONE profile whose observed layers are padded to a fixed width with a
mask (`soc_jax.data.ObservationBatch` rows); batching is ``jax.vmap`` at the call site.

* `observe`: layer SOC at the 20 CLM5 nodes -> observed depths by MATLAB's ``interp1(...,
  'pchip')`` with extrapolation (SPEC 1.11, `soc_jax.grid.pchip_interpolate`). Masked (padding)
  layers are exactly 0 with exactly zero gradient.
* `clm5_weights`, `cost_clm5`: PRODA's CLM5 ``cost_fun.m`` (SPEC 6): rank-weighted squared error
  with a 0.6 o standard deviation, ``J = sum_i w_i (m_i - o_i)^2 / (2 (0.6 o_i)^2)``.
* `cost_compas`: PRODA's COMPAS ``cost_fun.m``: ``J = 5 sum (m - o)^2 / sum (o - mean o)^2``
  ``= 5 (1 - NSE)``.
* `is_failure` (re-exported from `soc_jax.models.registry`, its one definition): whether a model
  evaluation failed. A failed evaluation costs ``J_old + 100`` in the sampler
  (`soc_jax.calibration.am`), never NaN.
* `log_likelihood_gaussian`, `log_likelihood_lognormal`, `log_prior_unconstrained`,
  `log_density`: a proper log-density on the unconstrained scale ``z = logit(p)`` for samplers
  that need one (uniform prior on PRODA's normalized box -> logistic change of variables with its
  log-Jacobian).

Units: SOC in gC m-3, depths in m, costs and log-densities dimensionless.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from ..grid import N_LAYERS, ZSOI, pchip_interpolate
from ..models.registry import get_model, is_failure

__all__ = [
    "OBS_SD_FRACTION",
    "FAILURE_PENALTY",
    "Evaluation",
    "observe",
    "is_failure",
    "clm5_weights",
    "cost_clm5",
    "cost_compas",
    "cost",
    "log_likelihood_gaussian",
    "log_likelihood_lognormal",
    "log_prior_unconstrained",
    "log_density",
    "make_evaluator",
]

OBS_SD_FRACTION: float = 0.6
"""PRODA's observation standard deviation as a fraction of the observed value (SPEC 6)."""

FAILURE_PENALTY: float = 100.0
"""PRODA's cost increment for a failed simulation: ``J_new = J_old + 100`` (SPEC 6)."""


def observe(
    soc20: Float[ArrayLike, " 20"], depth: Float[ArrayLike, " w"], mask: Bool[ArrayLike, " w"]
) -> Float[Array, " w"]:
    """Modelled SOC at the observed depths (SPEC 1.11), zero on masked layers.

    Args:
        soc20: modelled SOC at the 20 nodes ``ZSOI[:20]``, gC m-3. Must be finite (sanitize a
            failed evaluation before, see `make_evaluator`).
        depth: observed node depths, m, shape (w,) (padding: any finite depth).
        mask: True on observed layers, shape (w,).

    Returns:
        (w,) modelled SOC in gC m-3; exactly 0 (value and gradient) where ``mask`` is False.
    """
    mask = jnp.asarray(mask, bool)
    # double where: padded depths are replaced before the interpolation so nothing non-finite
    # can appear there, and the output where selects 0 (zero cotangent flows to soc20).
    safe_depth = jnp.where(mask, jnp.asarray(depth), ZSOI[0])
    m = pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), jnp.asarray(soc20), safe_depth)
    return jnp.where(mask, m, 0.0)


def _descending_rank(values: Array, mask: Array) -> Array:
    """1-based position of each value in a stable descending sort of the masked values.

    rank_i = 1 + #{j valid: v_j > v_i} + #{j valid, j < i: v_j == v_i} (MATLAB's ``sort(...,
    'descend')`` keeps the original order of ties). Masked entries get rank 0.
    """
    vi, vj = values[:, None], values[None, :]
    idx = jnp.arange(values.shape[0])
    before = (vj > vi) | ((vj == vi) & (idx[None, :] < idx[:, None]))
    rank = 1 + jnp.sum(before & mask[None, :], axis=1)
    return jnp.where(mask, rank, 0)


def clm5_weights(
    obs: Float[ArrayLike, " w"], depth: Float[ArrayLike, " w"], mask: Bool[ArrayLike, " w"]
) -> Float[Array, " w"]:
    """PRODA's CLM5 layer weights ``w = max(10 exp(-(r - 1)), 1)`` (SPEC 6).

    ``r = (rank_obs + rank_dep) / 2``, ranks of ``|o_i - mean(o)|`` and ``|z_i - mean(z)|`` in
    descending order (1 = farthest from the mean; stable for ties). Masked layers get weight 0.

    Args:
        obs: observed SOC, gC m-3, (w,). depth: node depths, m, (w,). mask: (w,) bool.

    Returns:
        (w,) dimensionless weights in [1, 10] on observed layers, 0 on padding.
    """
    obs, depth = jnp.asarray(obs), jnp.asarray(depth)
    mask = jnp.asarray(mask, bool)
    n = jnp.maximum(jnp.sum(mask), 1)
    mean_o = jnp.sum(jnp.where(mask, obs, 0.0)) / n
    mean_z = jnp.sum(jnp.where(mask, depth, 0.0)) / n
    r_obs = _descending_rank(jnp.abs(obs - mean_o), mask)
    r_dep = _descending_rank(jnp.abs(depth - mean_z), mask)
    r = 0.5 * (r_obs + r_dep)
    w = jnp.maximum(10.0 * jnp.exp(-(r - 1.0)), 1.0)
    return jnp.where(mask, w, 0.0)


def cost_clm5(
    pred: Float[ArrayLike, " w"],
    obs: Float[ArrayLike, " w"],
    weights: Float[ArrayLike, " w"],
    mask: Bool[ArrayLike, " w"],
) -> Float[Array, ""]:
    """PRODA's CLM5 cost ``sum_i w_i (m_i - o_i)^2 / (2 (0.6 o_i)^2)`` over observed layers.

    Args:
        pred: modelled SOC at the observed depths, gC m-3, (w,). obs: observed SOC, gC m-3 (> 0
            on observed layers). weights: `clm5_weights`. mask: (w,) bool.
    """
    mask = jnp.asarray(mask, bool)
    safe_obs = jnp.where(mask, jnp.asarray(obs), 1.0)
    r = jnp.where(mask, (jnp.asarray(pred) - safe_obs) / (OBS_SD_FRACTION * safe_obs), 0.0)
    return 0.5 * jnp.sum(jnp.asarray(weights) * r * r)


def cost_compas(
    pred: Float[ArrayLike, " w"], obs: Float[ArrayLike, " w"], mask: Bool[ArrayLike, " w"]
) -> Float[Array, ""]:
    """PRODA's COMPAS cost ``5 sum (m - o)^2 / sum (o - mean o)^2 = 5 (1 - NSE)``.

    A profile whose observations are all equal has no variance: its denominator is taken as 1
    (gC m-3)^2 instead of 0 (PRODA would divide by zero; such profiles are screened out).
    """
    mask = jnp.asarray(mask, bool)
    obs = jnp.where(mask, jnp.asarray(obs), 0.0)
    n = jnp.maximum(jnp.sum(mask), 1)
    mean_o = jnp.sum(obs) / n
    ss_tot = jnp.sum(jnp.where(mask, (obs - mean_o) ** 2, 0.0))
    ss_res = jnp.sum(jnp.where(mask, (jnp.asarray(pred) - obs) ** 2, 0.0))
    return 5.0 * ss_res / jnp.where(ss_tot > 0, ss_tot, 1.0)


def cost(
    model: str,
    pred: Float[ArrayLike, " w"],
    obs: Float[ArrayLike, " w"],
    depth: Float[ArrayLike, " w"],
    mask: Bool[ArrayLike, " w"],
) -> Float[Array, ""]:
    """PRODA's cost of ``model`` (``"clm5"``: rank-weighted; ``"compas"``: 5 (1 - NSE))."""
    if model == "clm5":
        return cost_clm5(pred, obs, clm5_weights(obs, depth, mask), mask)
    if model == "compas":
        return cost_compas(pred, obs, mask)
    raise ValueError(f"model must be 'clm5' or 'compas', got {model!r}")


def log_likelihood_gaussian(
    pred: Float[ArrayLike, " w"],
    obs: Float[ArrayLike, " w"],
    mask: Bool[ArrayLike, " w"],
    sd_fraction: float = OBS_SD_FRACTION,
) -> Float[Array, ""]:
    """Gaussian log-likelihood ``o_i ~ N(m_i, (sd_fraction o_i)^2)``, normalised, observed layers.

    Equals ``-cost_clm5`` with unit weights minus the normalising constants.
    """
    mask = jnp.asarray(mask, bool)
    safe_obs = jnp.where(mask, jnp.asarray(obs), 1.0)
    sd = sd_fraction * safe_obs
    r = (jnp.asarray(pred) - safe_obs) / sd
    terms = -0.5 * r * r - jnp.log(sd) - 0.5 * math.log(2.0 * math.pi)
    return jnp.sum(jnp.where(mask, terms, 0.0))


def log_likelihood_lognormal(
    pred: Float[ArrayLike, " w"],
    obs: Float[ArrayLike, " w"],
    mask: Bool[ArrayLike, " w"],
    sigma: float = OBS_SD_FRACTION,
    floor: float = 1e-6,
) -> Float[Array, ""]:
    """Log-normal log-likelihood ``log o_i ~ N(log m_i, sigma^2)`` (density of o, normalised).

    Modelled values below ``floor`` (gC m-3) are floored before the log (a zero layer is then a
    very poor but finite fit, never NaN).
    """
    mask = jnp.asarray(mask, bool)
    safe_obs = jnp.where(mask, jnp.asarray(obs), 1.0)
    safe_pred = jnp.where(mask, jnp.maximum(jnp.asarray(pred), floor), 1.0)
    r = (jnp.log(safe_obs) - jnp.log(safe_pred)) / sigma
    terms = -0.5 * r * r - jnp.log(safe_obs * sigma) - 0.5 * math.log(2.0 * math.pi)
    return jnp.sum(jnp.where(mask, terms, 0.0))


def log_prior_unconstrained(z: Float[ArrayLike, " n"]) -> Float[Array, ""]:
    """Uniform prior on the normalized box (0, 1)^n seen in ``z = logit(p)``.

    ``log p(z) = sum_i log sigmoid(z_i) + log(1 - sigmoid(z_i)) = -sum softplus(-z) + softplus(z)``
    (the log-Jacobian of ``p = sigmoid(z)``; the uniform density is 1).
    """
    z = jnp.asarray(z)
    return -jnp.sum(jax.nn.softplus(-z) + jax.nn.softplus(z))


class Evaluation(NamedTuple):
    """One model evaluation of one profile at one normalized parameter vector.

    Attributes:
        cost: PRODA's cost J (dimensionless), finite; meaningless where ``failed``.
        pred: (w,) modelled SOC at the observed depths, gC m-3 (0 on padding and on failure).
        failed: True if the simulation failed (`is_failure`).
    """

    cost: Array
    pred: Array
    failed: Array


@functools.cache
def make_evaluator(model: str, mode: str = "proda"):
    """``evaluate(p, data) -> Evaluation`` for one profile (pure; vmap it).

    ``data`` is a dict with ``forcing`` (one profile's `soc_jax.forcing.Forcing`), ``depth``,
    ``obs`` and ``mask`` (one `ObservationBatch` row). ``p`` is PRODA's normalized vector in
    (0, 1)^n. A failed steady state gives ``failed=True`` and finite ``cost``/``pred`` (the
    double-where pattern: the failed SOC is replaced by 1 gC m-3 before anything else sees it).
    Cached per (model, mode) so that jitted samplers see the same function and compile once.
    """
    module = get_model(model)
    space = module.PARAMETERS

    def evaluate(p: Array, data: dict) -> Evaluation:
        x = space.to_physical(jnp.clip(p, 0.0, 1.0))
        result = module.steady_state(x, data["forcing"], mode=mode)
        failed = is_failure(result)
        soc = jnp.where(failed | ~jnp.isfinite(result.soc), 1.0, result.soc)
        pred = observe(soc, data["depth"], data["mask"])
        j = cost(model, pred, data["obs"], data["depth"], data["mask"])
        j = jnp.where(failed | ~jnp.isfinite(j), 0.0, j)
        return Evaluation(j, jnp.where(failed, 0.0, pred), failed | ~jnp.isfinite(j))

    return evaluate


def log_density(
    z: Float[ArrayLike, " n"],
    data: dict,
    model: str = "clm5",
    mode: str = "proda",
    likelihood: str = "gaussian",
    sd: float = OBS_SD_FRACTION,
) -> Float[Array, ""]:
    """Log posterior density of one profile on the unconstrained scale ``z = logit(p)``.

    ``log p(z | o) = log L(o | m(sigmoid(z))) + log_prior_unconstrained(z)`` (up to the evidence).
    A failed simulation gives ``-inf`` with a zero gradient (never NaN).

    Args:
        z: unconstrained parameters, (n,).
        data: as in `make_evaluator`.
        model: ``"clm5"`` or ``"compas"``; mode: the model's mode.
        likelihood: ``"gaussian"`` (sd = ``sd`` x o) or ``"lognormal"`` (sigma = ``sd``).
    """
    module = get_model(model)
    z = jnp.asarray(z)
    p = jax.nn.sigmoid(z)
    result = module.steady_state(module.PARAMETERS.to_physical(p), data["forcing"], mode=mode)
    failed = is_failure(result)
    soc = jnp.where(failed | ~jnp.isfinite(result.soc), 1.0, result.soc)
    pred = observe(soc, data["depth"], data["mask"])
    if likelihood == "gaussian":
        ll = log_likelihood_gaussian(pred, data["obs"], data["mask"], sd)
    elif likelihood == "lognormal":
        ll = log_likelihood_lognormal(pred, data["obs"], data["mask"], sd)
    else:
        raise ValueError(f"likelihood must be 'gaussian' or 'lognormal', got {likelihood!r}")
    lp = ll + log_prior_unconstrained(z)
    return jnp.where(failed | ~jnp.isfinite(lp), -jnp.inf, lp)
