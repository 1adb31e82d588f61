"""Post-processing of PRODA's chains (SPEC 6): burn-in, chain fit, optimal chain, GR, R-hat, ESS.

Input: the final `soc_jax.calibration.am.ChainState` of a batch (leading axes profile, chain) and
the padded observations. Everything here is host-side NumPy on small arrays, except the
rank-normalised R-hat and bulk/tail ESS, which come from BlackJAX's diagnostics
(`blackjax.rhat`, `blackjax.ess_bulk`, `blackjax.ess_tail`; Vehtari et al. 2021, the ArviZ
convention).

As coded by PRODA (SPEC 6 and its driver details 5-6):

* burn-in = the first half of each chain's kept samples (PRODA: accepted samples; see
  `AMConfig.faithful`): parameters use samples ``round(n/2)+1 .. n`` (1-based, MATLAB ``round``
  rounds halves away from zero), the modelled profile mean/std use ``round(n/2) .. n``;
* per chain: mean and std of the modelled SOC at the observed depths, the "R2"
  ``1 - SSres/SStot`` whose SStot is taken around the *model* mean (the quirk: here
  ``sum_i (o_i - mean_i(m_i))^2``, the observations' spread about the mean of the chain's mean
  modelled profile), and the RMSE ``sqrt(sum (o - m)^2 / n_layers)``;
* optimal chain = the valid chain with the smallest RMSE; ``para_summary_mean``/``std`` = mean
  and std of its post-burn-in samples (the network's training target, normalized space);
* ``para_es``: mode of a generalised extreme value (GEV) distribution fitted to the same samples,
  ``mu + sigma ((1 + k)^(-k) - 1) / k`` (MATLAB's shape sign; ``mu`` at k = 0). PRODA fits by
  maximum likelihood (``gevfit``), and so does soc_jax (`soc_jax.calibration.gev`: BFGS in JAX,
  vmapped over parameters, started from Hosking's L-moment fit); a mode outside the box [0, 1]
  is clipped to it;
* Gelman-Rubin per parameter over the post-burn-in samples of the m valid chains with one
  ``n`` for every chain (driver detail 5):
  ``B = n/(m-1) sum_k (xbar_k - xbar)^2``, ``W = 1/(m(n-1)) sum_k sum_i (x_ik - xbar_k)^2``,
  ``GR = sqrt(((n-1) W/n + B/n) / W)``. Faithful mode: ``n`` = the *total* kept (accepted)
  count of the last valid chain, burn-in included, as the driver codes it (``valid_num``);
  default mode: ``n`` = the post-burn-in count of the last valid chain;
* RMSE: faithful mode divides by the observed layer count *before* layers whose modelled
  mean is zero or not finite are dropped from the sum (driver detail 6); the default mode sums
  over every observed layer.

Site filter (`FILTER_RULES`; ``filter_pass``): faithful mode ``"proda_gr"`` = PRODA's
``max_chain R2 > 0`` and ``mean_parameters GR < 1.05``; default mode ``"rank_rhat"`` =
``max_chain R2 > 0`` and ``max_parameters rank R-hat < 1.05``. Both also need >= 2 valid chains
and every computed diagnostic (GR, R-hat, ESS) finite: a non-finite one (chains frozen at
different values give W = 0 and GR = inf) sets status bit 1024 and fails the filter.

A chain is *valid* if it finished its formal run (phase DONE) with at least 4 kept samples.
Quantities that cannot be computed are NaN (missing), never a value that looks like a result:
the posterior summaries and modelled SOC of a profile without a valid chain, the diagnostics
of a profile with fewer than 2 valid chains (or fewer than 8 post-burn-in samples, for R-hat
and ESS), the R2/RMSE of an invalid chain; the ``status`` bits say why. GR, its mean and R-hat
keep an honest ``inf`` where the formula gives it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from . import am
from .gev import gev_mode

__all__ = [
    "STATUS_BITS",
    "FILTER_RULES",
    "CONVERGENCE_THRESHOLD",
    "filter_rule",
    "matlab_round_half",
    "gelman_rubin_proda",
    "gev_mode",
    "summarize",
    "status_reasons",
]

STATUS_BITS: dict[int, str] = {
    1: "the starting point p0 = 0.5 failed to simulate",
    2: "a chain was discarded more than max_discards times (PRODA's profile failure)",
    4: "a chain did not finish within the step budget",
    8: "fewer than 2 valid chains: no Gelman-Rubin, R-hat or ESS",
    16: "no valid chain: no posterior summary",
    32: "skipped before sampling (bad input, see reason)",
    64: "fewer than 8 post-burn-in samples in a valid chain: no rank R-hat or ESS",
    128: "a chain found no simulating start among its prior draws (started at another chain's)",
    256: "no prior draw of any chain simulated: the profile was not sampled",
    512: "a chain was stuck after the warm-up and continued from the best chain's state "
    "(a rescued profile never passes the site filter)",
    1024: "a convergence diagnostic (Gelman-Rubin, R-hat or ESS) is not finite (e.g. chains "
    "frozen at different values): the profile fails the site filter",
    2048: "more than 1 % of the post-warm-up transitions diverged: the profile fails the "
    "site filter",
}
"""Bits of the per-profile ``status`` (0 = fine)."""

CONVERGENCE_THRESHOLD: float = 1.05
"""Threshold of both site-filter rules: PRODA's mean GR (faithful) and the max rank R-hat."""

FILTER_RULES: dict[str, str] = {
    "proda_gr": "max R2 > 0 and mean PRODA GR < 1.05 (n = the last valid chain's total kept "
    "count, as the driver), every diagnostic finite",
    "rank_rhat": "max R2 > 0 and max rank-normalised R-hat < 1.05 over the parameters, every "
    "diagnostic finite",
}
"""Site-filter rules by name (``posterior.nc`` attribute ``filter_rule``).

``rank_rhat`` (default) asks every parameter's rank-normalised split R-hat (Vehtari et al. 2021)
to be below 1.05: the network is trained on every parameter, so one unconverged parameter is
enough to drop a site, and rank normalisation sees differences in scale and in the tails that
PRODA's GR (means and variances only) misses. 1.05 rather than Vehtari's 1.01 because with 3
chains of a few hundred kept samples the sampling noise of the maximum over 21 R-hats of
converged chains reaches ~1.02-1.03.
"""


def filter_rule(faithful: bool) -> str:
    """Name of the site-filter rule of PRODA's AM in this mode (a key of `FILTER_RULES`)."""
    return "proda_gr" if faithful else "rank_rhat"


def status_reasons(status: int) -> str:
    """Human-readable reasons of a status bitmask ('' for 0)."""
    return "; ".join(text for bit, text in STATUS_BITS.items() if status & bit)


def matlab_round_half(n: np.ndarray) -> np.ndarray:
    """MATLAB ``round(n / 2)`` for non-negative integers (halves away from zero)."""
    return np.floor(np.asarray(n) / 2.0 + 0.5).astype(int)


def gelman_rubin_proda(x: np.ndarray, valid: np.ndarray, n_last: int) -> np.ndarray:
    """PRODA's Gelman-Rubin statistic as coded (SPEC 6), one profile.

    Args:
        x: (m, K, n_par) post-burn-in samples of m chains, padded along K.
        valid: (m, K) bool, True on real samples.
        n_last: the sample count ``n`` used for every chain (the last chain's count).

    Returns:
        (n_par,) GR values (``sqrt(((n-1)W/n + B/n)/W)``).
    """
    m = x.shape[0]
    cnt = valid.sum(axis=1)[:, None]
    # deviations from each chain's first sample: a chain frozen at one value has exactly zero
    # spread (W = 0 exactly, not rounding noise), whatever that value
    first = np.take_along_axis(x, np.argmax(valid, axis=1)[:, None, None], axis=1)
    d = np.where(valid[..., None], x - first, 0.0)
    dbar_k = d.sum(axis=1) / np.maximum(cnt, 1)
    xbar_k = first[:, 0] + dbar_k
    xbar = xbar_k.mean(axis=0)
    n = float(n_last)
    b = n / (m - 1) * np.sum((xbar_k - xbar) ** 2, axis=0)
    dev = np.where(valid[..., None], d - dbar_k[:, None, :], 0.0)
    w = np.sum(dev**2, axis=(0, 1)) / (m * (n - 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        gr = np.sqrt(((n - 1) * w / n + b / n) / w)
    return gr


@jax.jit
def _diagnostics(x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(rank R-hat, bulk ESS, tail ESS) per parameter of (chains, draws, n_par) samples."""
    import blackjax

    return (
        blackjax.rhat(x, chain_axis=0, sample_axis=1),
        blackjax.ess_bulk(x, chain_axis=0, sample_axis=1),
        blackjax.ess_tail(x, chain_axis=0, sample_axis=1),
    )


def _finite(a: Any, fill: float = 0.0) -> np.ndarray:
    a = np.asarray(a, float)
    return np.where(np.isfinite(a), a, fill)


def _rmse(resid: np.ndarray, prof_mean: np.ndarray, mask: np.ndarray, faithful: bool):
    """(P, C) RMSE, gC m-3: ``sqrt(sum_layers resid^2 / n_observed_layers)``.

    Faithful (driver detail 6): layers whose modelled mean is 0 or not finite leave the sum
    but not the count. Default: every observed layer is in both.
    """
    n_lay = np.maximum(mask.sum(axis=1), 1)[:, None]
    keep = mask[:, None, :]
    if faithful:
        keep = keep & np.isfinite(prof_mean) & (prof_mean != 0)
    return np.sqrt(np.sum(np.where(keep, resid, 0.0) ** 2, axis=2) / n_lay)


def summarize(
    states: am.ChainState, obs: np.ndarray, mask: np.ndarray, cfg: am.AMConfig
) -> dict[str, np.ndarray]:
    """Per-profile posterior summary (SPEC 6) of a finished batch.

    Args:
        states: final `am.ChainState`, leading axes (profiles, chains).
        obs: (profiles, w) observed SOC, gC m-3 (0 on padding). mask: (profiles, w) bool.
        cfg: the `am.AMConfig` of the run.

    Returns:
        dict of numpy arrays (NaN where missing, see the module docstring):
        ``para_summary_mean``, ``para_summary_std``, ``para_es``, ``gr``, ``rhat``,
        ``ess_bulk``, ``ess_tail`` (profiles, n_par, normalized units or 1); ``soc_mod_opt``,
        ``soc_std_opt`` (profiles, w; gC m-3); ``r2``, ``rmse`` (gC m-3), ``acceptance``,
        ``valid``, ``n_kept`` (profiles, chains); ``opt_chain``, ``filter_pass``, ``status``,
        ``gr_mean``, ``rhat_max``, ``r2_max`` (profiles,).
    """
    s = jax.tree.map(np.asarray, states)
    theta, pred = s.rec_theta, s.rec_pred  # (P, C, K, n), (P, C, K, w)
    n_p = theta.shape[0]
    n_rec = s.n_rec
    post, post_prof = _post_burn_in(n_rec, theta.shape[2])
    valid = (s.phase == am.DONE) & (n_rec >= 4)
    par_mean, par_std = _masked_stats(theta, post)  # (P, C, n)
    prof_mean, prof_std = _masked_stats(pred, post_prof)  # (P, C, w)
    r2, rmse = chain_fit(obs, mask, prof_mean, valid, cfg.faithful)

    any_valid = valid.any(axis=1)
    opt = np.argmin(np.where(valid, rmse, np.inf), axis=1)
    pick = (np.arange(n_p), opt)
    para_es = gev_mode(
        theta[pick], np.broadcast_to(post[pick][..., None], theta[pick].shape), axis=1
    )
    multi = valid.sum(axis=1) >= 2
    gr, rhat, ess_b, ess_t, status = _chain_diagnostics(theta, post, n_rec, valid, multi, cfg)
    status |= np.where(s.failed0.any(axis=1), 1, 0)
    status |= np.where((s.phase == am.FAILED).any(axis=1), 2, 0)
    status |= np.where((s.phase <= am.FORMAL).any(axis=1), 4, 0)
    status |= np.where(~multi, 8, 0)
    status |= np.where(~any_valid, 16, 0)
    status |= np.where(multi & non_finite_diagnostics(gr, rhat, ess_b, ess_t, status), 1024, 0)

    gr_mean, rhat_max, r2_max = profile_maxima(gr, rhat, r2, valid, multi, any_valid)
    rule = filter_rule(cfg.faithful)
    filter_pass = site_filter(rule, r2_max, gr_mean, rhat_max, status, any_valid & multi)
    acceptance = s.acc_formal / cfg.n_formal
    yes = any_valid[:, None]
    return {
        "para_summary_mean": np.where(yes, par_mean[pick], np.nan),
        "para_summary_std": np.where(yes, par_std[pick], np.nan),
        "para_es": np.where(yes, np.clip(para_es, 0.0, 1.0), np.nan),
        "gr": gr,
        "rhat": rhat,
        "ess_bulk": ess_b,
        "ess_tail": ess_t,
        "soc_mod_opt": np.where(yes, prof_mean[pick], np.nan),
        "soc_std_opt": np.where(yes, prof_std[pick], np.nan),
        "r2": np.where(valid, r2, np.nan),
        "rmse": np.where(valid, rmse, np.nan),
        "acceptance": _finite(acceptance),
        "valid": valid,
        "n_kept": n_rec,
        "opt_chain": opt.astype(int),
        "filter_pass": filter_pass,
        "status": status,
        "gr_mean": gr_mean,
        "rhat_max": rhat_max,
        "r2_max": r2_max,
    }


def _post_burn_in(n_rec: np.ndarray, n_k: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, C, K) masks of the kept samples after burn-in: parameters use ``round(n/2)+1 .. n``,
    the modelled profiles ``round(n/2) .. n`` (1-based, MATLAB ``round``)."""
    k = np.arange(n_k)
    half = matlab_round_half(n_rec)[..., None]  # (P, C, 1)
    filled = k < n_rec[..., None]
    post = filled & (k >= half)  # parameters: round(n/2)+1 .. n (1-based)
    post_prof = filled & (k >= np.maximum(half - 1, 0))  # profiles: round(n/2) .. n
    return post, post_prof


def _masked_stats(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked mean and std (ddof=1, MATLAB std) of x (P, C, K, k) along K where m (P, C, K)."""
    cnt = np.maximum(m.sum(axis=2), 1)[..., None]
    mean = np.where(m[..., None], x, 0.0).sum(axis=2) / cnt
    var = np.where(m[..., None], (x - mean[:, :, None]) ** 2, 0.0).sum(axis=2)
    return mean, np.sqrt(var / np.maximum(cnt - 1, 1))


def chain_fit(
    obs: np.ndarray, mask: np.ndarray, prof_mean: np.ndarray, valid: np.ndarray, faithful: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(r2, rmse) (P, C) of each chain's mean modelled profile against the observations.

    ``r2`` is PRODA's "R2" ``1 - SSres/SStot`` with SStot around the *model* mean (0 for an
    invalid chain or SStot = 0); ``rmse`` in gC m-3 (`_rmse`; ``faithful``: driver detail 6).

    Args:
        obs: (P, w) observed SOC, gC m-3. mask: (P, w) observed layers.
        prof_mean: (P, C, w) each chain's mean modelled SOC, gC m-3. valid: (P, C).
    """
    obs = np.asarray(obs, float)
    mask = np.asarray(mask, bool)
    n_lay = np.maximum(mask.sum(axis=1), 1)[:, None]  # (P, 1)
    resid = np.where(mask[:, None, :], obs[:, None, :] - prof_mean, 0.0)
    ss_res = np.sum(resid**2, axis=2)
    model_mean = np.sum(np.where(mask[:, None, :], prof_mean, 0.0), axis=2) / n_lay
    ss_tot = np.sum(
        np.where(mask[:, None, :], (obs[:, None, :] - model_mean[..., None]) ** 2, 0.0), 2
    )
    r2 = np.where(valid & (ss_tot > 0), 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), 0.0)
    return r2, _rmse(resid, prof_mean, mask, faithful)


def rank_diagnostics(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rank R-hat, bulk ESS, tail ESS) per parameter of (chains, draws, n_par) samples."""
    r, eb, et = _diagnostics(jnp.asarray(draws))
    return np.asarray(r), np.asarray(eb), np.asarray(et)


def _chain_diagnostics(theta, post, n_rec, valid, multi, cfg: am.AMConfig):
    """(gr, rhat, ess_bulk, ess_tail, status) of profiles with >= 2 valid chains (NaN else).

    ``status`` has bit 64 where a valid chain has fewer than 8 post-burn-in samples (no R-hat
    or ESS: they need equal lengths, the last L post-burn-in samples of each chain).
    """
    n_p, n_par = theta.shape[0], theta.shape[3]
    gr, rhat, ess_b, ess_t = (np.full((n_p, n_par), np.nan) for _ in range(4))
    status = np.zeros(n_p, int)
    for i in np.flatnonzero(multi):
        chains = np.flatnonzero(valid[i])
        # faithful: the driver's n = the last chain's total kept count (burn-in included)
        n_last = int(n_rec[i, chains[-1]] if cfg.faithful else post[i, chains[-1]].sum())
        gr[i] = gelman_rubin_proda(theta[i, chains], post[i, chains], n_last)
        length = int(min(post[i, c].sum() for c in chains))
        if length < 8:
            status[i] |= 64
            continue
        draws = np.stack([theta[i, c, n_rec[i, c] - length : n_rec[i, c]] for c in chains])
        rhat[i], ess_b[i], ess_t[i] = rank_diagnostics(draws)
    return gr, rhat, ess_b, ess_t, status


def profile_maxima(gr, rhat, r2, valid, multi, sampled):
    """(gr_mean, rhat_max, r2_max) per profile: the mean GR where >= 2 valid chains (``multi``),
    the max rank R-hat (NaN where any is missing), the max R2 of the valid chains where
    ``sampled`` (NaN elsewhere)."""
    gr_mean = np.where(multi, gr.mean(axis=1), np.nan)
    rhat_max = rhat.max(axis=1)  # NaN where any parameter's R-hat is missing
    r2_max = np.where(sampled, np.max(np.where(valid, r2, -np.inf), axis=1), np.nan)
    return gr_mean, rhat_max, r2_max


def non_finite_diagnostics(gr, rhat, ess_b, ess_t, status) -> np.ndarray:
    """(P,) True where a computed diagnostic is not finite (status bit 1024).

    GR is computed for every profile with >= 2 valid chains; R-hat and ESS unless status bit 64
    (too few samples) says they were not computed.
    """
    bad = ~np.all(np.isfinite(gr), axis=1)
    rank = np.concatenate([rhat, ess_b, ess_t], axis=1)
    return bad | ((np.asarray(status) & 64 == 0) & ~np.all(np.isfinite(rank), axis=1))


def site_filter(rule, r2_max, gr_mean, rhat_max, status, sampled) -> np.ndarray:
    """(P,) bool: the site filter ``rule`` (`FILTER_RULES`) on per-profile summaries.

    Non-finite values never pass (NaN and inf compare False); status bits 512 (rescued chain),
    1024 (non-finite diagnostic) and 2048 (too many divergences) fail the filter.
    """
    stat = gr_mean if rule == "proda_gr" else rhat_max
    with np.errstate(invalid="ignore"):
        ok = sampled & (r2_max > 0) & (stat < CONVERGENCE_THRESHOLD)
    return ok & (np.asarray(status) & (512 | 1024 | 2048) == 0)
