"""Generalised extreme value (GEV) fits of posterior marginals: PRODA's ``para_es`` (SPEC 6).

PRODA's driver takes, per parameter, the mode of a GEV fitted to the optimal chain's
post-burn-in samples by maximum likelihood (MATLAB ``gevfit``). The fit here is the same
maximum likelihood, in JAX and float64, vmapped over parameters and profiles:

* the samples are standardised (``z = (x - mean) / std``) so every fit is well conditioned;
* the start is Hosking's (1985) L-moment fit (`gev_fit_lmoments`), moved towards the Gumbel
  (``k = 0``) until every sample lies inside its support;
* the negative log-likelihood in ``(mu, log sigma, k)`` is minimised by BFGS with a
  backtracking Armijo search (optimistix); a trial point outside the support
  ``1 + k (x - mu) / sigma > 0`` or with ``k <= -1`` (where the likelihood is unbounded: the
  upper end point on the largest sample gives an infinite density) has an infinite objective
  and is rejected by the line search, so the fit is the local maximum reached from the start,
  as for MATLAB's ``gevfit`` and SciPy's ``genextreme.fit`` (uniform samples on (0, 1):
  ``k ~ -0.55``, mode ~ 0.67);
* ``k > -1`` is enforced (the mode needs it; beyond it the maximum likelihood does not exist):
  a marginal piled up at its upper end (e.g. many samples on the bound 1) reaches the
  supremum on the boundary ``k -> -1``, whose mode is the upper end point ``mu + sigma``
  (SciPy wanders to ``k < -1`` there, where its mode is undefined);
* a fit that ends on a non-finite point falls back to the L-moment fit.

Shapes use MATLAB's sign ``k`` (SciPy's ``genextreme`` shape is ``c = -k``); the mode is
``mu + sigma ((1 + k)^(-k) - 1) / k`` (``mu`` at ``k = 0``, the upper end point
``mu + sigma`` at ``k = -1``). Units are those of the samples (normalised parameters in PRODA).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
from jax.scipy.special import gammaln

from .._checks import require_x64

__all__ = ["gev_fit", "gev_fit_lmoments", "gev_mode", "gev_mode_of", "gev_nll", "gev_params"]

_EULER = 0.5772156649015329
_K_SMALL = 1e-6  # |k| below which the Gumbel limit (series in k) is used
_MAX_STEPS = 256


def gev_fit_lmoments(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Hosking's (1985) L-moment GEV fit of the valid samples of a 1-D ``x``.

    ``c = 2/(3 + t3) - ln2/ln3``, Hosking's shape ``kh = 7.8590 c + 2.9554 c^2`` (``= -k``),
    ``sigma = l2 kh / ((1 - 2^-kh) Gamma(1 + kh))``, ``mu = l1 - sigma (1 - Gamma(1 + kh)) / kh``.

    Args:
        x: (K,) samples (units of the data). valid: (K,) bool, True on real samples.

    Returns:
        ``(mu, sigma, k)`` with MATLAB's shape sign; ``sigma = 0`` for samples without spread.
    """
    n = valid.sum()
    xs = jnp.sort(jnp.where(valid, x, jnp.inf))  # invalid samples sort last
    i = jnp.arange(x.shape[-1], dtype=x.dtype)  # 0-based rank
    xs = jnp.where(i < n, xs, 0.0)
    nn = jnp.maximum(n, 3).astype(x.dtype)
    b0 = xs.sum() / nn
    b1 = (xs * (i / (nn - 1))).sum() / nn
    b2 = (xs * (i * (i - 1) / ((nn - 1) * (nn - 2)))).sum() / nn
    l1, l2, l3 = b0, 2 * b1 - b0, 6 * b2 - 6 * b1 + b0
    flat = jnp.abs(l2) <= 1e-12 * jnp.maximum(jnp.abs(l1), 1e-300)
    t3 = jnp.where(flat, 0.0, l3 / jnp.where(flat, 1.0, l2))
    c = 2.0 / (3.0 + t3) - math.log(2.0) / math.log(3.0)
    kh = 7.8590 * c + 2.9554 * c * c
    small = jnp.abs(kh) < _K_SMALL
    khs = jnp.where(small, _K_SMALL, kh)
    g = jnp.exp(gammaln(1.0 + khs))
    sigma = jnp.where(small, l2 / math.log(2.0), l2 * khs / ((1.0 - 2.0 ** (-khs)) * g))
    mu = jnp.where(small, l1 - _EULER * sigma, l1 - sigma * (1.0 - g) / khs)
    sigma = jnp.where(flat, 0.0, sigma)
    mu = jnp.where(flat, l1, mu)
    return mu, sigma, jnp.where(small, 0.0, -kh)


def gev_mode_of(mu: jax.Array, sigma: jax.Array, k: jax.Array) -> jax.Array:
    """GEV mode ``mu + sigma ((1 + k)^(-k) - 1) / k`` (``mu`` at k = 0; end point for k <= -1)."""
    small = jnp.abs(k) < _K_SMALL
    ks = jnp.where(small, 1.0, k)
    base = jnp.maximum(1.0 + ks, 0.0)
    safe = jnp.where(base > 0, base, 1.0)
    term = jnp.where(base > 0, (safe ** (-ks) - 1.0) / ks, -1.0 / ks)
    return jnp.where(small, mu - sigma * k, mu + sigma * term)


def _log1p_over_k(z: jax.Array, k: jax.Array) -> jax.Array:
    """``log(1 + k z) / k``, its Gumbel limit ``z`` at k = 0 (series, exact gradients)."""
    small = jnp.abs(k) < _K_SMALL
    ks = jnp.where(small, 1.0, k)
    t = 1.0 + ks * z
    exact = jnp.log(jnp.where(t > 0, t, 1.0)) / ks
    return jnp.where(small, z - 0.5 * k * z * z + k * k * z**3 / 3.0, exact)


def gev_nll(theta: jax.Array, z: jax.Array, w: jax.Array) -> jax.Array:
    """Mean negative log-likelihood of the GEV ``theta = (mu, log sigma, k)`` at samples ``z``.

    Weighted by ``w`` (0 on masked samples, which must lie inside the support, e.g. at the
    sample mean). ``+inf`` outside the support ``1 + k (z - mu)/sigma > 0`` or for ``k <= -1``.
    """
    mu, log_s, k = theta[0], theta[1], theta[2]
    y = (z - mu) * jnp.exp(-log_s)
    t = 1.0 + k * y
    inside = jnp.all((t > 0) | (w == 0)) & (k > -1.0)
    u = _log1p_over_k(y, k)  # log(t) / k; log(t) = k u
    terms = (1.0 + k) * u + jnp.exp(-u)
    nll = log_s + jnp.sum(w * terms) / jnp.sum(w)
    return jnp.where(inside, nll, jnp.inf)


def _feasible_start(z: jax.Array, w: jax.Array) -> jax.Array:
    """The L-moment fit of ``z`` with its shape halved towards 0 until the support holds."""
    mu, sigma, k = gev_fit_lmoments(z, w > 0)
    sigma = jnp.where(sigma > 0, sigma, math.sqrt(6.0) / math.pi)
    k = jnp.clip(k, -0.9, 5.0)
    scales = 0.5 ** jnp.arange(12.0)
    cands = jnp.concatenate([k * scales, jnp.zeros(1)])
    ok = jax.vmap(lambda kc: jnp.isfinite(gev_nll(jnp.stack([mu, jnp.log(sigma), kc]), z, w)))(
        cands
    )
    kc = cands[jnp.argmax(ok)]
    return jnp.stack([mu, jnp.log(sigma), kc])


def gev_fit(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Maximum-likelihood GEV fit of the valid samples of a 1-D ``x`` (jit- and vmap-able).

    Args:
        x: (K,) samples. valid: (K,) bool, True on real samples.

    Returns:
        ``(mu, sigma, k, converged)``: location and scale in the units of ``x``, MATLAB's shape
        ``k``, and ``converged`` True where BFGS met its tolerance. Without convergence the last
        (finite) BFGS point is returned, or the L-moment fit if none. Fewer than 3 samples or
        zero spread: ``(mean, 0, 0, False)``.
    """
    x = jnp.where(valid, x, 0.0)  # masked slots may hold anything, NaN included
    w = valid.astype(x.dtype)
    n = w.sum()
    mean = jnp.sum(w * x) / jnp.maximum(n, 1.0)
    sd = jnp.sqrt(jnp.sum(w * (x - mean) ** 2) / jnp.maximum(n - 1.0, 1.0))
    degenerate = (n < 3) | (sd <= 1e-12 * jnp.maximum(jnp.abs(mean), 1e-300))
    scale = jnp.where(degenerate, 1.0, sd)
    z = jnp.where(valid, (x - mean) / scale, 0.0)
    # a degenerate row is replaced by Gumbel quantiles: a well-posed fit whose result is unused,
    # so that a vmapped batch (padding rows included) never waits on an ill-posed one
    q = (jnp.arange(x.shape[-1], dtype=x.dtype) + 0.5) / x.shape[-1]
    z = jnp.where(degenerate, -jnp.log(-jnp.log(q)), z)
    w = jnp.where(degenerate, jnp.ones_like(w), w)
    theta0 = _feasible_start(z, w)
    solver = optx.BFGS(rtol=1e-10, atol=1e-10)
    sol = optx.minimise(
        lambda th, _: gev_nll(th, z, w), solver, theta0, max_steps=_MAX_STEPS, throw=False
    )
    th = sol.value
    # every accepted BFGS step lowers the objective: a finite end point is kept even when the
    # step budget ran out (a supremum on the k -> -1 boundary is approached slowly)
    use = jnp.isfinite(gev_nll(th, z, w)) & jnp.all(jnp.isfinite(th)) & ~degenerate
    lm = gev_fit_lmoments(x, valid)
    mu = jnp.where(use, mean + scale * th[0], lm[0])
    sigma = jnp.where(use, scale * jnp.exp(th[1]), lm[1])
    k = jnp.where(use, th[2], lm[2])
    mu = jnp.where(degenerate, mean, mu)
    sigma = jnp.where(degenerate, 0.0, sigma)
    k = jnp.where(degenerate, 0.0, k)
    converged = use & (sol.result == optx.RESULTS.successful)
    return mu, sigma, k, converged


@jax.jit
def _fit_rows(x: jax.Array, valid: jax.Array) -> tuple[jax.Array, ...]:
    return jax.vmap(gev_fit)(x, valid)


def _bucket(n: int, floor: int) -> int:
    """Padded size: the next power of 2 (at least ``floor``), then multiples of 256."""
    p = max(floor, 1 << max(n - 1, 0).bit_length())
    return p if p <= 256 else -(-n // 256) * 256


def gev_params(
    x: np.ndarray, valid: np.ndarray | None = None, axis: int = -2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood GEV fits (`gev_fit`) along ``axis``, vmapped over all other axes.

    Rows and samples are padded to a few bucket sizes (masked), so repeated calls compile
    once per bucket.

    Args:
        x: samples, any shape (units of the data); ``axis`` is the sample axis.
        valid: bool mask of real samples (same shape as ``x``), default all.

    Returns:
        NumPy ``(mu, sigma, k, converged)``, each of the shape of ``x`` without ``axis``.
    """
    require_x64("the GEV fit")
    x = np.moveaxis(np.asarray(x, float), axis, -1)
    valid = np.ones(x.shape, bool) if valid is None else np.moveaxis(np.asarray(valid), axis, -1)
    valid = np.broadcast_to(valid, x.shape)
    lead, n_s = x.shape[:-1], x.shape[-1]
    rows = int(np.prod(lead))
    if rows == 0:
        return tuple(np.zeros(lead, dt) for dt in (float, float, float, bool))
    pr, ps = _bucket(rows, 1), _bucket(n_s, 16)
    xp = np.zeros((pr, ps))
    vp = np.zeros((pr, ps), bool)
    xp[:rows, :n_s] = x.reshape(rows, n_s)
    vp[:rows, :n_s] = valid.reshape(rows, n_s)
    out = _fit_rows(jnp.asarray(xp), jnp.asarray(vp))
    return tuple(np.asarray(a)[:rows].reshape(lead) for a in out)


def gev_mode(x: np.ndarray, valid: np.ndarray | None = None, axis: int = -2) -> np.ndarray:
    """Mode of a GEV fitted by maximum likelihood (`gev_fit`) along ``axis``.

    Args:
        x: samples, any shape (units of the data); ``axis`` is the sample axis.
        valid: bool mask of real samples (same shape as ``x``), default all.

    Returns:
        The GEV mode, ``x`` without ``axis`` (NumPy, float64). Samples without spread give
        their value; fewer than 3 valid samples give their mean (0 for none).
    """
    mu, sigma, k, _ = gev_params(x, valid, axis)
    return np.asarray(gev_mode_of(jnp.asarray(mu), jnp.asarray(sigma), jnp.asarray(k)))
