r"""Gradient-based samplers (BlackJAX NUTS, MALA, ChEES-HMC) batched over profiles x chains.

The same posterior as the corrected adaptive Metropolis (`soc_jax.calibration.am`, default
mode): density ``exp(-J(p))`` with PRODA's cost J (`likelihood.cost`) and a uniform prior on
the normalized box, sampled on the unconstrained scale ``z = logit(p)`` with the log-Jacobian
(`likelihood.log_prior_unconstrained`):

    log pi(z) = -J(sigmoid(z)) + sum_i [log sigmoid(z_i) + log(1 - sigmoid(z_i))].

A failed steady state gives ``-inf`` (a rejection; in NUTS/HMC a divergence that ends the
trajectory) with an exactly zero, finite gradient, never NaN (`make_log_density`).

**Kernels** (all from BlackJAX 1.7.1; ``logdensity_fn`` is one profile's ``z -> log pi(z)``):

* ``nuts``: `blackjax.nuts` after per-chain `blackjax.window_adaptation` (Stan's windows:
  step size by dual averaging to an acceptance of 0.8, diagonal inverse mass matrix).
* ``mala``: Metropolis-adjusted Langevin = HMC with ONE leapfrog step (identical algorithm:
  one leapfrog step from a fresh Gaussian momentum is the MALA proposal with step
  ``eps^2 / 2`` and preconditioner ``M^-1``, and the HMC acceptance is MALA's; Neal 2011,
  sec. 5.5.3). Written as ``blackjax.hmc(num_integration_steps=1)`` so that BlackJAX's window
  adaptation tunes the step size (target 0.574, Roberts & Rosenthal 1998) AND a diagonal
  preconditioner; `blackjax.mala` itself has no preconditioner, which in 21 dimensions with
  scales differing by 10x costs an order of magnitude in ESS. One gradient per step.
* ``chees``: `blackjax.chees_adaptation` (Hoffman et al. 2021): all chains of a profile share
  one step size and one (Halton-jittered) trajectory length, tuned by maximising the ChEES
  criterion over the chains, diagonal mass matrix estimated from the pooled chains
  (``mass_matrix_estimation="diagonal"``); then `blackjax.dynamic_hmc` with those parameters.
  Chains of a profile take the same number of leapfrog steps at every iteration, so within a
  profile there is no lock-step waste (across profiles there is: vmapped profiles differ).

**Batching.** `run_profile` is one profile (chains vmapped inside); `run_batch` is
``jit(vmap(run_profile))`` over profiles. NUTS under vmap runs in lock-step: every chain of the
batch runs until the longest trajectory of that iteration ends (masked), so the work is
``batch x max(steps)`` per iteration (`lockstep_waste` measures it from the recorded steps).

**Initialisation.** Over-dispersed starts from the prior (``p ~ U(0, 1)``, i.e. ``z`` standard
logistic): ``init_tries`` draws per chain are evaluated (together, lock-step) and a chain starts
at the best of its draws (highest finite log-density; the draws stay independent across
chains, so the starts stay over-dispersed). After the warm-up, a chain stuck far below the
others (`_rescue`; e.g. started in a stiff region where every transition diverges under ChEES's
shared step size) continues from the best chain's state; ``rescued`` records it (status 512)
and the profile never passes the site filter (see `summarize`).
A chain none of whose draws simulates starts at another chain's start (``start_ok`` False;
status bit 128); a profile with no simulating draw at all is not sampled (its log-density is
replaced by the prior so that the compiled batch stays finite; ``usable`` False; status bit
256; its summaries are NaN, missing).

**Evaluation counts** (per chain): ``init_evals`` forward evaluations; ``warmup_grads`` and
``n_steps`` (per draw) log-density-and-gradient evaluations (leapfrog steps; NUTS counts every
state of the trajectory it builds, including a divergent last one).

Units: ``z`` and ``p`` dimensionless; SOC in gC m-3.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from ..models.registry import get_model, is_failure
from . import postprocess
from .likelihood import log_prior_unconstrained, make_evaluator, observe

__all__ = [
    "SAMPLERS",
    "DEFAULT_TARGET_ACCEPT",
    "GradientConfig",
    "SamplerOutput",
    "make_log_density",
    "make_predictor",
    "initial_positions",
    "run_profile",
    "run_batch",
    "lockstep_waste",
    "FILTER_RULE",
    "MAX_DIVERGENT_SHARE",
]

SAMPLERS: tuple[str, ...] = ("nuts", "mala", "chees")
"""The gradient-based samplers of this module (``proda-am`` is `soc_jax.calibration.am`)."""

DEFAULT_TARGET_ACCEPT: dict[str, float] = {"nuts": 0.8, "mala": 0.574, "chees": 0.651}
"""Target acceptance rates: Stan's NUTS default, MALA's optimal 0.574, ChEES's 0.651."""


class GradientConfig(NamedTuple):
    """Settings of a gradient-based sampler.

    Attributes:
        sampler: ``"nuts"``, ``"mala"`` or ``"chees"``.
        n_warmup: adaptation steps per chain (500).
        n_draws: kept draws per chain after the warm-up (500; no thinning).
        max_tree_depth: NUTS maximum number of trajectory doublings (10: up to 1023 leapfrog
            steps); ChEES: at most ``2**max_tree_depth`` leapfrog steps per trajectory.
        target_accept: target acceptance rate; 0 = the sampler's default
            (`DEFAULT_TARGET_ACCEPT`).
        init_tries: prior draws tried per chain to find a start that simulates (4).
        initial_step_size: first step size of the adaptation (0.1, unconstrained units).
        chees_learning_rate: Adam learning rate of ChEES's trajectory-length optimiser (0.025,
            BlackJAX's example).
    """

    sampler: str = "nuts"
    n_warmup: int = 500
    n_draws: int = 500
    max_tree_depth: int = 10
    target_accept: float = 0.0
    init_tries: int = 4
    initial_step_size: float = 0.1
    chees_learning_rate: float = 0.025

    def validate(self) -> GradientConfig:
        """Raise ValueError on an impossible setting; returns self."""
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.n_warmup < 20 or self.n_draws < 4:
            raise ValueError("n_warmup must be >= 20 and n_draws >= 4")
        if not 1 <= self.max_tree_depth <= 15:
            raise ValueError(f"max_tree_depth must be in 1..15, got {self.max_tree_depth}")
        if not 0.0 <= self.target_accept < 1.0:
            raise ValueError(f"target_accept must be in [0, 1), got {self.target_accept}")
        if self.init_tries < 1:
            raise ValueError("init_tries must be >= 1")
        return self

    @property
    def target(self) -> float:
        """The target acceptance rate actually used."""
        return self.target_accept or DEFAULT_TARGET_ACCEPT[self.sampler]


class SamplerOutput(NamedTuple):
    """What one profile's chains return (leading axis chain; `run_batch` adds profile).

    Attributes:
        z: (C, D, n) draws on the unconstrained scale.
        logdensity: (C, D) log pi of the draws.
        n_steps: (C, D) leapfrog steps (= gradient evaluations) of each draw's transition.
        divergent: (C, D) divergent transitions.
        accept: (C, D) the transition's acceptance statistic.
        tree_depth: (C, D) NUTS trajectory doublings (0 for MALA/ChEES).
        warmup_steps: (C, n_warmup) leapfrog steps of each warm-up transition.
        step_size: (C,) adapted step size. inverse_mass_matrix: (C, n) adapted diagonal.
        init_evals: (C,) forward evaluations spent on the start. start_ok: (C,) the chain
            found a simulating start itself. usable: () the profile was sampled.
        rescued: (C,) the chain was stuck after the warm-up and continued from the best
            chain's state (`_rescue`).
    """

    z: Array
    logdensity: Array
    n_steps: Array
    divergent: Array
    accept: Array
    tree_depth: Array
    warmup_steps: Array
    step_size: Array
    inverse_mass_matrix: Array
    init_evals: Array
    start_ok: Array
    usable: Array
    rescued: Array


@functools.cache
def make_log_density(model: str, mode: str = "proda") -> Callable[[Array, dict], Array]:
    """``log_pi(z, data)``: the corrected AM's posterior on the unconstrained scale.

    ``-J(sigmoid(z)) + log_prior_unconstrained(z)``, ``-inf`` (zero gradient) where the
    simulation fails. ``data`` as in `likelihood.make_evaluator` (forcing may be prepared).
    """
    evaluate = make_evaluator(model, mode)

    def log_pi(z: Array, data: dict) -> Array:
        ev = evaluate(jax.nn.sigmoid(z), data)
        val = log_prior_unconstrained(z) - ev.cost
        return jnp.where(ev.failed | ~jnp.isfinite(val), -jnp.inf, val)

    return log_pi


@functools.cache
def make_predictor(model: str, mode: str = "proda"):
    """``predict(p, data) -> (soc_nodes (20,), soc_obs (w,), failed)`` for posterior predictive.

    SOC in gC m-3 at the 20 CLM5 nodes and at the observed depths (0 on padding); a failed
    simulation gives zeros and ``failed`` True.
    """
    module = get_model(model)
    space = module.PARAMETERS

    def predict(p: Array, data: dict):
        x = space.to_physical(jnp.clip(p, 0.0, 1.0))
        result = module.steady_state(x, data["forcing"], mode=mode)
        failed = is_failure(result)
        soc = jnp.where(failed | ~jnp.isfinite(result.soc), 1.0, result.soc)
        obs = observe(soc, data["depth"], data["mask"])
        return jnp.where(failed, 0.0, soc), jnp.where(failed, 0.0, obs), failed

    return predict


def initial_positions(key: Array, logdensity_fn: Callable, n_chains: int, n_par: int, tries: int):
    """Over-dispersed starts from the prior (best of ``tries`` draws); see the module docstring.

    Returns:
        (z0 (C, n), start_ok (C,), usable ()). ``usable`` False: no draw of any chain simulates.
    """
    u = jax.random.uniform(key, (tries, n_chains, n_par), minval=1e-6, maxval=1.0 - 1e-6)
    z = jnp.log(u) - jnp.log1p(-u)
    lp = jax.vmap(jax.vmap(logdensity_fn))(z)
    ok = jnp.isfinite(lp)
    best = jnp.argmax(jnp.where(ok, lp, -jnp.inf), axis=0)
    start_ok = ok.any(axis=0)
    z0 = z[best, jnp.arange(n_chains)]
    donor = jnp.argmax(start_ok)
    z0 = jnp.where(start_ok[:, None], z0, z0[donor])
    return z0, start_ok, start_ok.any()


def _info_filter():
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    return get_filter_adapt_info_fn(info_keys={"num_integration_steps"})


FILTER_RULE: str = "rank_rhat"
"""Site-filter rule of the gradient samplers (`postprocess.FILTER_RULES`)."""

MAX_DIVERGENT_SHARE: float = 0.01
"""A profile whose post-warm-up transitions (all chains) diverge more often than this share
fails the site filter (status bit 2048)."""

STUCK_MARGIN: float = 20.0
"""A chain whose log-density after the warm-up is below the best chain's by more than
``STUCK_MARGIN + n_par`` is *stuck* (e.g. started in a stiff region where every transition
diverges); it restarts from the best chain's state (see `_rescue`)."""


def _rescue(logdensity: Array, n_par: int) -> tuple[Array, Array]:
    """(source chain of each chain after the warm-up, stuck flags).

    The log-density of draws from a d-dimensional posterior varies by O(d) around its typical
    value; a chain more than ``STUCK_MARGIN + d`` below the best one has not reached the
    typical set. It continues from the best chain's state (and adapted parameters) with its
    own random key; the warm-up is not part of the sample, so this keeps the draws exact.
    """
    best = jnp.argmax(logdensity)
    stuck = logdensity < logdensity[best] - (STUCK_MARGIN + n_par)
    src = jnp.where(stuck, best, jnp.arange(logdensity.shape[0]))
    return src, stuck


def _draw_record(state, info, depth) -> tuple:
    """What a transition records: (position, log-density, leapfrog steps, divergent,
    acceptance statistic, NUTS tree depth ``depth``)."""
    return (
        state.position,
        state.logdensity,
        info.num_integration_steps,
        info.is_divergent,
        info.acceptance_rate,
        depth,
    )


def _window_chains(keys, z0, lp, cfg: GradientConfig, n_par: int):
    """Chains of one profile: per-chain window adaptation, rescue, ``n_draws`` transitions."""
    import blackjax

    if cfg.sampler == "nuts":
        algorithm, extra = blackjax.nuts, {"max_num_doublings": cfg.max_tree_depth}
    else:  # MALA = HMC with one leapfrog step (module docstring)
        algorithm, extra = blackjax.hmc, {"num_integration_steps": 1}
    warmup = blackjax.window_adaptation(
        algorithm,
        lp,
        initial_step_size=cfg.initial_step_size,
        target_acceptance_rate=cfg.target,
        adaptation_info_fn=_info_filter(),
        **extra,
    )

    def warm(key, z):
        (state, params), winfo = warmup.run(jax.random.split(key)[0], z, num_steps=cfg.n_warmup)
        return state, params["step_size"], params["inverse_mass_matrix"], winfo

    state, step_size, imm, winfo = jax.vmap(warm)(keys, z0)
    src, stuck = _rescue(state.logdensity, n_par)
    state, step_size, imm = jax.tree.map(lambda a: a[src], (state, step_size, imm))

    def sample(key, st, eps, m):
        kernel = algorithm(lp, step_size=eps, inverse_mass_matrix=m, **extra)

        def body(s, k):
            s, info = kernel.step(k, s)
            depth = info.num_trajectory_expansions if cfg.sampler == "nuts" else 0
            return s, _draw_record(s, info, jnp.asarray(depth, jnp.int32))

        k_draw = jax.random.split(key)[1]
        return jax.lax.scan(body, st, jax.random.split(k_draw, cfg.n_draws))[1]

    z, logd, n_steps, div, acc, depth = jax.vmap(sample)(keys, state, step_size, imm)
    wsteps = winfo.info.num_integration_steps
    return z, logd, n_steps, div, acc, depth, wsteps, step_size, imm, stuck


def _chees_profile(key, z0, lp, cfg: GradientConfig, n_par: int):
    """All chains of one profile: ChEES adaptation, rescue, jittered dynamic HMC."""
    import blackjax
    import optax

    n_chains = z0.shape[0]
    k_warm, k_draw = jax.random.split(key)
    warmup = blackjax.chees_adaptation(
        lp,
        n_chains,
        target_acceptance_rate=cfg.target,
        max_leapfrog_steps=2**cfg.max_tree_depth,
        adaptation_info_fn=_info_filter(),
        mass_matrix_estimation="diagonal",
    )
    (states, params), winfo = warmup.run(
        k_warm,
        z0,
        cfg.initial_step_size,
        optax.adam(cfg.chees_learning_rate),
        cfg.n_warmup,
        max_sampling_steps=cfg.n_draws,
    )
    src, stuck = _rescue(states.logdensity, n_par)
    states = jax.tree.map(lambda a: a[src], states)
    step = jax.vmap(blackjax.dynamic_hmc(lp, **params).step)

    def body(s, k):
        s, info = step(jax.random.split(k, n_chains), s)
        return s, _draw_record(s, info, jnp.zeros(n_chains, jnp.int32))

    _, out = jax.lax.scan(body, states, jax.random.split(k_draw, cfg.n_draws))
    z, logd, n_steps, div, acc, depth = (jnp.swapaxes(a, 0, 1) for a in out)
    ones = jnp.ones(n_chains)
    return (
        z,
        logd,
        n_steps,
        div,
        acc,
        depth,
        jnp.swapaxes(winfo.info.num_integration_steps, 0, 1),
        params["step_size"] * ones,
        jnp.broadcast_to(params["inverse_mass_matrix"], z0.shape),
        stuck,
    )


def run_profile(
    key: Array, logdensity_fn: Callable, n_par: int, n_chains: int, cfg: GradientConfig
) -> SamplerOutput:
    """Run ``n_chains`` chains of ``cfg.sampler`` on one target ``logdensity_fn(z) -> scalar``.

    Chain keys are ``fold_in(key, c)``; the start uses ``fold_in(key, n_chains)`` (ChEES: the
    profile's chains share one adaptation key, ``fold_in(key, n_chains + 1)``).
    """
    z0, start_ok, usable = initial_positions(
        jax.random.fold_in(key, n_chains), logdensity_fn, n_chains, n_par, cfg.init_tries
    )

    def lp(z):
        return jnp.where(usable, logdensity_fn(z), log_prior_unconstrained(z))

    if cfg.sampler == "chees":
        out = _chees_profile(jax.random.fold_in(key, n_chains + 1), z0, lp, cfg, n_par)
    else:
        keys = jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(n_chains))
        out = _window_chains(keys, z0, lp, cfg, n_par)
    z, logd, n_steps, div, acc, depth, wsteps, step_size, imm, stuck = out
    init_evals = jnp.full((n_chains,), cfg.init_tries, jnp.int32)
    return SamplerOutput(
        z=z,
        logdensity=logd,
        n_steps=jnp.asarray(n_steps, jnp.int32),
        divergent=div,
        accept=acc,
        tree_depth=depth,
        warmup_steps=jnp.asarray(wsteps, jnp.int32),
        step_size=jnp.asarray(step_size),
        inverse_mass_matrix=imm,
        init_evals=init_evals,
        start_ok=start_ok,
        usable=usable,
        rescued=stuck,
    )


@functools.partial(jax.jit, static_argnames=("log_density", "n_par", "n_chains", "cfg"))
def run_batch(
    keys: Array, data, log_density: Callable, n_par: int, n_chains: int, cfg: GradientConfig
) -> SamplerOutput:
    """``jit(vmap(run_profile))`` over profiles: ``keys`` (P, 2), ``data`` leaves (P, ...).

    ``log_density(z, data_one_profile)`` (e.g. `make_log_density`'s, which is cached so
    repeated calls reuse the compiled program).
    """

    def one(key, d):
        return run_profile(key, lambda z: log_density(z, d), n_par, n_chains, cfg)

    return jax.vmap(one)(keys, data)


def lockstep_waste(steps: np.ndarray) -> dict[str, float]:
    """Wasted share of lock-step leapfrog work of a vmapped batch.

    Args:
        steps: (B, T) leapfrog steps of B chains batched together at each of T iterations
            (flatten profiles x chains into B).

    Returns:
        dict with ``useful`` (sum of own steps), ``computed`` (``B x sum_t max_b steps``, the
        work of a lock-step loop that runs every chain until the longest ends) and
        ``wasted_fraction`` = ``1 - useful / computed``
        (= ``sum_b sum_t (max_t - own) / computed``).
    """
    steps = np.asarray(steps, float)
    useful = float(steps.sum())
    computed = float(steps.shape[0] * steps.max(axis=0).sum())
    return {
        "useful": useful,
        "computed": computed,
        "wasted_fraction": 1.0 - useful / computed if computed > 0 else 0.0,
    }


def summarize(
    out: SamplerOutput, pred: np.ndarray, failed: np.ndarray, obs: np.ndarray, mask: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-profile posterior summary of a batch, the same keys as `postprocess.summarize`.

    Differences from PRODA's AM summary (all chains target the same posterior here and every
    draw is kept after the warm-up, so there is no burn-in half and no "optimal chain"):
    ``para_summary_mean``/``std``, ``para_es`` and ``soc_mod_opt``/``soc_std_opt`` pool all
    draws of the valid chains; ``r2``/``rmse`` are per chain as in PRODA (the "R2" quirk
    included); ``opt_chain`` is still the min-RMSE chain; ``acceptance`` is the mean acceptance
    statistic of the draws. A chain is valid when its profile was sampled (``usable``).

    Args:
        out: `run_batch` output (leading axes profile, chain), as NumPy or JAX arrays.
        pred: (P, C, D, w) modelled SOC at the observed depths per draw, gC m-3.
        failed: (P, C, D) draws whose posterior-predictive simulation failed.
        obs, mask: (P, w) observations (gC m-3) and mask.

    Returns:
        dict of arrays (NaN where missing, see `postprocess.summarize`) plus
        ``divergent_share`` (profile,), ``divergences``, ``mean_tree_depth``,
        ``max_tree_depth``, ``step_size``, ``n_grad_evals``, ``n_grad_warmup``,
        ``n_init_evals``, ``rescued`` (profile, chain) and the extra status bits 128 (a chain
        found no simulating start), 256 (no chain did: not sampled), 512 (a chain was rescued
        after the warm-up) and 2048 (more than `MAX_DIVERGENT_SHARE` of the post-warm-up
        transitions diverged).

    Site filter (``filter_pass``, rule ``"rank_rhat"`` of `postprocess.FILTER_RULES`): max R2
    > 0, max rank R-hat < 1.05, every diagnostic finite, and neither a rescued chain (512)
    nor too many divergences (2048). A rescued chain restarted at the best chain's state after
    the warm-up, so its draws no longer come from a dispersed start and agree with the best
    chain by construction: R-hat after a rescue is no evidence of convergence (a second mode
    would be hidden), so a rescued profile never passes. Divergences mean the sampler could not
    follow the posterior's geometry and its draws may miss part of the mass.
    """
    o = jax.tree.map(np.asarray, out)
    p = 1.0 / (1.0 + np.exp(-o.z))  # (P, C, D, n)
    n_p, n_c, n_d, n_par = p.shape
    usable = np.asarray(o.usable, bool)
    valid = np.broadcast_to(usable[:, None], (n_p, n_c)).copy()
    para_mean, para_std, para_es = _pooled_parameters(p)
    prof_mean, soc_mean, soc_std = _predictive_moments(pred, failed)
    r2, rmse = postprocess.chain_fit(obs, mask, prof_mean, valid, faithful=False)
    opt = np.argmin(np.where(valid, rmse, np.inf), axis=1)
    multi = usable & (n_c >= 2)
    gr, rhat, ess_b, ess_t = _pooled_diagnostics(p, multi)
    gr_mean, rhat_max, r2_max = postprocess.profile_maxima(gr, rhat, r2, valid, multi, usable)
    div_share = o.divergent.sum(axis=(1, 2)) / (n_c * n_d)
    status = _status(o, usable, multi, div_share, (gr, rhat, ess_b, ess_t))
    keep = usable[:, None]
    return {
        "para_summary_mean": np.where(keep, para_mean, np.nan),
        "para_summary_std": np.where(keep, para_std, np.nan),
        "para_es": np.where(keep, para_es, np.nan),
        "gr": gr,
        "rhat": rhat,
        "ess_bulk": ess_b,
        "ess_tail": ess_t,
        "soc_mod_opt": np.where(keep, soc_mean, np.nan),
        "soc_std_opt": np.where(keep, soc_std, np.nan),
        "r2": np.where(valid, r2, np.nan),
        "rmse": np.where(valid, rmse, np.nan),
        "acceptance": np.where(valid, postprocess._finite(o.accept.mean(axis=2)), 0.0),
        "valid": valid,
        "n_kept": np.where(valid, n_d, 0),
        "opt_chain": opt.astype(int),
        "filter_pass": postprocess.site_filter(
            FILTER_RULE, r2_max, gr_mean, rhat_max, status, usable & multi
        ),
        "status": status,
        "gr_mean": gr_mean,
        "rhat_max": rhat_max,
        "r2_max": r2_max,
        "divergent_share": np.where(usable, div_share, np.nan),
        **_sampler_counts(o, n_p, n_c),
    }


def _pooled_parameters(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, std, GEV mode clipped to [0, 1]) (P, n) of the draws p (P, C, D, n), all chains."""
    n_p, n_c, n_d, n_par = p.shape
    pooled = p.reshape(n_p, n_c * n_d, n_par)
    para_mean = pooled.mean(axis=1)
    para_std = pooled.std(axis=1, ddof=1)
    para_es = np.clip(postprocess.gev_mode(pooled, axis=1), 0.0, 1.0)
    return para_mean, para_std, para_es


def _predictive_moments(pred: np.ndarray, failed: np.ndarray):
    """Modelled SOC (P, C, D, w) of the draws that simulated: (per-chain mean (P, C, w), pooled
    mean (P, w), pooled std (P, w)), gC m-3."""
    good = ~np.asarray(failed, bool)  # (P, C, D)
    cnt = np.maximum(good.sum(axis=2), 1)[..., None]
    prof_mean = np.where(good[..., None], pred, 0.0).sum(axis=2) / cnt  # (P, C, w)
    pool_cnt = np.maximum(good.sum(axis=(1, 2)), 1)[:, None]
    soc_mean = np.where(good[..., None], pred, 0.0).sum(axis=(1, 2)) / pool_cnt
    soc_var = np.where(good[..., None], (pred - soc_mean[:, None, None]) ** 2, 0.0)
    soc_std = np.sqrt(soc_var.sum(axis=(1, 2)) / np.maximum(pool_cnt - 1, 1))
    return prof_mean, soc_mean, soc_std


def _pooled_diagnostics(p: np.ndarray, multi: np.ndarray):
    """(gr, rhat, ess_bulk, ess_tail) (P, n) over every draw of the chains; NaN where not
    ``multi`` (fewer than 2 chains or not sampled)."""
    n_p, n_c, n_d, n_par = p.shape
    gr, rhat, ess_b, ess_t = (np.full((n_p, n_par), np.nan) for _ in range(4))
    for i in np.flatnonzero(multi):
        gr[i] = postprocess.gelman_rubin_proda(p[i], np.ones((n_c, n_d), bool), n_d)
        rhat[i], ess_b[i], ess_t[i] = postprocess.rank_diagnostics(p[i])
    return gr, rhat, ess_b, ess_t


def _status(o: SamplerOutput, usable, multi, div_share, diagnostics) -> np.ndarray:
    """(P,) status bits of the gradient samplers (see `summarize`)."""
    status = np.zeros(usable.shape[0], int)
    status |= np.where(~o.start_ok.all(axis=1), 128, 0)
    status |= np.where(~usable, 256 | 16 | 8, 0)
    status |= np.where(usable & ~multi, 8, 0)
    status |= np.where(usable & o.rescued.any(axis=1), 512, 0)
    bad = postprocess.non_finite_diagnostics(*diagnostics, status)
    status |= np.where(multi & bad, 1024, 0)
    status |= np.where(usable & (div_share > MAX_DIVERGENT_SHARE), 2048, 0)
    return status


def _sampler_counts(o: SamplerOutput, n_p: int, n_c: int) -> dict[str, np.ndarray]:
    """Per-chain sampler diagnostics and gradient-evaluation counts (profile, chain)."""
    n_grad = o.warmup_steps.sum(axis=2) + o.n_steps.sum(axis=2) + 1  # +1: the initial gradient
    return {
        "divergences": o.divergent.sum(axis=2).astype(int),
        "mean_tree_depth": o.tree_depth.mean(axis=2),
        "max_tree_depth": o.tree_depth.max(axis=2).astype(int),
        "step_size": postprocess._finite(np.broadcast_to(o.step_size, (n_p, n_c))),
        "n_grad_evals": n_grad.astype(int),
        "n_grad_warmup": o.warmup_steps.sum(axis=2).astype(int),
        "n_init_evals": np.broadcast_to(o.init_evals, (n_p, n_c)).astype(int),
        "rescued": o.rescued.astype(np.int8),
    }


@functools.partial(jax.jit, static_argnames=("model", "mode"))
def posterior_predictive(p: Array, data: dict, model: str, mode: str):
    """Modelled SOC of every draw: ``p`` (P, C, D, n) normalized draws, ``data`` leaves (P, ...).

    Returns:
        (soc_nodes (P, C, D, 20), soc_obs (P, C, D, w), failed (P, C, D)); SOC in gC m-3, zeros
        where the simulation failed. Evaluated draw by draw (``lax.map``), each call vmapped
        over profiles x chains, so memory stays that of one P x C batch.
    """
    predict = make_predictor(model, mode)

    def per_draw(pd):  # (P, C, n)
        return jax.vmap(lambda pp, d: jax.vmap(lambda q: predict(q, d))(pp))(pd, data)

    soc, obs, failed = jax.lax.map(per_draw, jnp.moveaxis(p, 2, 0))
    return jnp.moveaxis(soc, 0, 2), jnp.moveaxis(obs, 0, 2), jnp.moveaxis(failed, 0, 2)
