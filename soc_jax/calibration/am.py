r"""PRODA's adaptive Metropolis (SPEC 6), batched over profiles x chains as one program.

**The algorithm (per chain, as PRODA codes it).** Normalized parameters p in (0, 1)^n start at
``start`` (0.5); ``J0 = J(p0)``.

* *Test run* (``n_test`` steps, 20,000 in PRODA): proposal ``p' = p + (U(0,1)^n - 0.5) / allow``
  (allow = 5). The state is recorded every step. If after ``n_test - 1`` steps there are fewer than
  50 acceptances the test run restarts from p0 with ``allow *= 1.1``; after 3 such tries the
  check is disabled (and stays disabled for this chain).
* *Formal run* (``n_formal`` steps, 50,000): ``p' ~ N(p, s * sd * C)`` with ``sd = 2.4 / n``
  (2.4, not 2.4^2), ``s`` = ``sd_factor`` and ``C`` the covariance of the test record, then, once
  the formal step counter exceeds 4000, the covariance of the whole formal record. At step
  ``n_formal - 1`` the acceptance rate ``coef`` must lie in [0.1, 0.5]; otherwise
  ``sd_factor *= 0.7`` (too low) or ``*= 2`` (too high) and the chain is discarded and re-run
  (test + formal, from p0); more than 5 discards fail the profile.
* A failed simulation costs ``J_old + 100``.

**Two modes, side by side.**

Each rule below as ``faithful=True`` (PRODA as coded) -> default (corrected):

* acceptance: ``(simu + 2)^(-dJ)``, annealed with the phase step counter ``simu`` ->
  ``exp(-dJ)``, plain Metropolis for the density ``exp(-J)``;
* proposals leaving (0, 1): re-drawn until inside (at most ``max_resample`` draws) -> rejected
  (the uniform prior is 0 there), exact Metropolis-Hastings;
* formal-run start: ``J_old = J(p0)`` at the last test state -> ``J_old = J(current state)``;
* failed proposal in the formal run: reuses the previous step's dJ and can be accepted (SPEC 6
  driver detail 1) -> never accepted;
* ``coef`` of the rate check: updated at acceptances only, not reset -> accepted / steps;
* samples kept: every ``thin``-th *accepted* state -> the chain state every ``thin`` formal steps.

The box proposal of the test run is symmetric and, in the default mode, rejection outside the
box keeps detailed balance; the resampled (truncated) proposals of the faithful mode are not
symmetric and PRODA ignores the Hastings correction. Keeping only accepted states (faithful)
weights every visited state equally whatever its dwell time, which biases the sample; the default
keeps the chain itself.

**Batched as one program.** `run_block` is ``jit(vmap_profiles(vmap_chains(scan(step))))``:
every chain of every profile advances one step (one model evaluation) per scan iteration. Each
chain is a small state machine (phase = test / formal / done / failed; step counter within the
phase), so restarts and discards happen *per chain* by resetting that chain's state while the
others go on; a finished chain is frozen by a mask (its evaluations are still computed, as
lock-step vectorisation requires, and counted as wasted in `ChainState.n_evals`). The host calls
`run_block` repeatedly (blocks of ``block`` steps) until every chain is done or failed, or the
step budget is spent: with no restart at all one chain needs exactly ``1 + n_test + n_formal``
steps (the first evaluates the start p0, so there is no separately compiled initialisation).
The random key of a step is ``fold_in(chain_key, t)`` with ``t`` the chain's own count of
active steps, so results do not depend on how the run is cut into blocks or which other
profiles share the batch.

**Memory per chain** (bounded, independent of the run length): the state, the test-run
covariance and the running (Welford) covariance of the current record, ``2 n^2 + O(n)`` floats,
and the thinned record of ``C = n_formal // thin`` samples of p (n floats) and of the modelled SOC
at the observed depths (w floats): for CLM5 (n = 21, w = 10) and PRODA's protocol with thin = 100,
about 900 + 500 x 31 floats = 0.13 MB per chain, 0.4 MB per profile of 3 chains.

**What BlackJAX gives and why the kernel is written here.** BlackJAX has no Haario adaptive
Metropolis; its random-walk kernel (``additive_step_random_walk``) stores the log-density of the
*current position* in its state and accepts on the log-density difference. PRODA's rules break
both: the acceptance is annealed by a step counter, the formal run starts with a cost that is not
the cost of the current position, a failed proposal is judged against ``J_old + 100`` and (in
the formal run) with the previous step's dJ, proposals are re-drawn until inside the box, and the
restarts/discards need a per-chain phase machine. The kernel is therefore a plain ``lax.scan``
step; BlackJAX's diagnostics (rank-normalised R-hat, ESS) are used in post-processing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

__all__ = [
    "AMConfig",
    "ChainState",
    "START",
    "TEST",
    "FORMAL",
    "DONE",
    "FAILED",
    "init_chains",
    "pred_width",
    "run_block",
    "run",
    "chain_keys",
    "profile_sharding",
]

START, TEST, FORMAL, DONE, FAILED = -1, 0, 1, 2, 3
"""Chain phases. START: the next step evaluates p0. FAILED: more than ``max_discards`` discards
(PRODA's profile failure)."""

BAD_START_COST: float = 1e10
"""Cost given to a failed evaluation of the starting point p0 (finite; any valid move beats it)."""


class AMConfig(NamedTuple):
    """Settings of PRODA's adaptive Metropolis (defaults: PRODA's protocol, SPEC 6).

    Attributes:
        n_test: test-run steps (PRODA 20,000).
        n_formal: formal-run steps (PRODA 50,000).
        faithful: keep every quirk of PRODA's driver (see the module docstring).
        thin: keep one sample every ``thin`` formal steps (default mode) or accepted states
            (faithful mode); the record holds ``n_formal // thin`` samples.
        start: starting value of every normalized parameter (PRODA 0.5).
        allow: initial inverse half-width of the test-run box proposal (PRODA 5: step +-0.1).
        allow_growth: factor applied to ``allow`` at a test-run restart (1.1).
        min_accept_test: acceptances needed in a test run (50, absolute).
        max_test_tries: tries with the check enabled before it is disabled (3).
        max_discards: formal runs discarded before the profile fails (5).
        adapt_start: formal step after which the covariance of the formal record is used (4000).
        rate_low, rate_high: accepted range of the formal acceptance rate (0.1, 0.5).
        sd_low, sd_high: ``sd_factor`` multipliers after a too-low / too-high rate (0.7, 2).
        scale: proposal scale numerator (2.4; divided by n, not squared, as coded).
        max_resample: cap on re-draws of an out-of-box proposal (faithful mode); when reached
            the step is a rejection.
        penalty: cost increment of a failed simulation (100).
        jitter: added to the proposal covariance diagonal before the Cholesky factor (1e-12,
            normalized units; PRODA adds 0).
    """

    n_test: int = 20000
    n_formal: int = 50000
    faithful: bool = False
    thin: int = 100
    start: float = 0.5
    allow: float = 5.0
    allow_growth: float = 1.1
    min_accept_test: int = 50
    max_test_tries: int = 3
    max_discards: int = 5
    adapt_start: int = 4000
    rate_low: float = 0.1
    rate_high: float = 0.5
    sd_low: float = 0.7
    sd_high: float = 2.0
    scale: float = 2.4
    max_resample: int = 1000
    penalty: float = 100.0
    jitter: float = 1e-12

    @property
    def capacity(self) -> int:
        """Samples kept per chain (``n_formal // thin``, at least 1)."""
        return max(1, self.n_formal // self.thin)

    def validate(self) -> AMConfig:
        """Raise ``ValueError`` naming the setting that is out of range; return self."""
        if self.n_test < 2:
            raise ValueError(f"n_test must be >= 2, got {self.n_test}")
        if self.n_formal < 2:
            raise ValueError(f"n_formal must be >= 2, got {self.n_formal}")
        if not 1 <= self.thin <= self.n_formal:
            raise ValueError(f"thin must be in 1..n_formal, got {self.thin}")
        if not 0.0 < self.start < 1.0:
            raise ValueError(f"start must be in (0, 1), got {self.start}")
        return self

    def max_steps(self) -> int:
        """Worst-case steps of one chain: every test try and every discard used."""
        per_attempt = (self.max_test_tries + 1) * self.n_test + self.n_formal
        return 1 + (self.max_discards + 1) * per_attempt


class ChainState(NamedTuple):
    """State of one chain (leading axes (profile, chain) when batched).

    Attributes (p: normalized parameters; J: cost; w: observation slots):
        t: active steps taken (int); drives the step keys.
        phase: TEST, FORMAL, DONE or FAILED.
        simu: steps done in the current phase.
        theta: (n,) current p. cost: J of the current state as the sampler sees it.
        pred: (w,) modelled SOC at the observed depths for ``theta``, gC m-3.
        cost0, pred0, failed0: J, prediction and failure of the start p0.
        n_acc: acceptances in the current phase. coef: acceptance rate used by the rate check.
        last_dj: previous step's dJ (faithful quirk).
        allow, test_try, check_off: test-run box width, tries so far, check disabled.
        sd_factor, n_discards: formal-run scale factor and discards so far.
        wn, wmean, wm2: Welford count, mean (n,) and co-moment (n, n) of the current record.
        cov_test: (n, n) covariance of the last completed test record.
        rec_theta: (C, n) kept samples; rec_pred: (C, w) their modelled SOC; n_rec: count.
        pred_ok: (w,) modelled SOC of the last successful simulation (any evaluation, accepted
            or not): the profile PRODA's driver still holds when it accepts a failed solve.
        n_evals: model evaluations of this chain (all phases).
        n_failed: failed simulations of p0 or of a proposal inside the box (out-of-box
            proposals are counted in ``n_out_of_box``, not here).
        n_acc_failed: accepted failed solves (faithful quirk: the formal run reuses the previous
            dJ for a failed proposal; always 0 in the default mode).
        n_out_of_box: proposals drawn outside (0, 1)^n: re-drawn (faithful) or rejected (default).
        n_test_restarts: test-run restarts. n_resample_cap: steps where ``max_resample`` hit.
        acc_formal: acceptances of the final formal run (PRODA's ``upgrade2``).
    """

    t: Array
    phase: Array
    simu: Array
    theta: Array
    cost: Array
    pred: Array
    cost0: Array
    pred0: Array
    failed0: Array
    n_acc: Array
    coef: Array
    last_dj: Array
    allow: Array
    test_try: Array
    check_off: Array
    sd_factor: Array
    n_discards: Array
    wn: Array
    wmean: Array
    wm2: Array
    cov_test: Array
    rec_theta: Array
    rec_pred: Array
    n_rec: Array
    n_evals: Array
    n_failed: Array
    pred_ok: Array
    n_acc_failed: Array
    n_out_of_box: Array
    n_test_restarts: Array
    n_resample_cap: Array
    acc_formal: Array


Evaluator = Callable[[Array, object], tuple]
"""``evaluate(p, data) -> (cost, pred, failed)`` for one profile (`likelihood.make_evaluator`)."""


def chain_keys(profile_key: Array, n_chains: int) -> Array:
    """(n_chains, 2) keys of a profile's chains: ``fold_in(profile_key, chain)``."""
    return jax.vmap(lambda c: jax.random.fold_in(profile_key, c))(jnp.arange(n_chains))


def _sanitized(evaluation) -> tuple[Array, Array, Array]:
    """(cost, pred, failed) with failed |= non-finite cost, and finite cost/pred (0 if failed)."""
    j, pred, failed = evaluation
    failed = jnp.asarray(failed) | ~jnp.isfinite(j)
    j = jnp.where(failed, 0.0, j)
    pred = jnp.where(failed | ~jnp.isfinite(pred), 0.0, pred)
    return j, pred, failed


def _init_one(cfg: AMConfig, n: int, w: int) -> ChainState:
    """Phase START: the first step of a chain evaluates p0 (no separate compiled init)."""
    # not weak-typed: the state's types must equal run_block's outputs (else a recompile)
    p0 = jnp.full((n,), cfg.start, dtype=jnp.zeros(()).dtype)
    c = cfg.capacity
    z = jnp.zeros
    i0 = jnp.asarray(0, jnp.int32)
    f64 = p0.dtype
    return ChainState(
        t=i0,
        phase=jnp.asarray(START, jnp.int32),
        simu=i0,
        theta=p0,
        cost=z((), f64),
        pred=z((w,), f64),
        cost0=z((), f64),
        pred0=z((w,), f64),
        failed0=jnp.asarray(False),
        n_acc=i0,
        coef=z((), f64),
        last_dj=z((), f64),
        allow=jnp.asarray(cfg.allow, f64),
        test_try=i0,
        check_off=jnp.asarray(False),
        sd_factor=jnp.asarray(1.0, f64),
        n_discards=i0,
        wn=i0,
        wmean=z((n,), f64),
        wm2=z((n, n), f64),
        cov_test=z((n, n), f64),
        rec_theta=z((c, n), f64),
        rec_pred=z((c, w), f64),
        n_rec=i0,
        n_evals=i0,
        n_failed=i0,
        pred_ok=z((w,), f64),
        n_acc_failed=i0,
        n_out_of_box=i0,
        n_test_restarts=i0,
        n_resample_cap=i0,
        acc_formal=i0,
    )


def init_chains(cfg: AMConfig, n_profiles: int, n_chains: int, n_params: int, width: int):
    """Initial states (phase START, at p0) with leading axes (n_profiles, n_chains).

    Args:
        width: length of the evaluator's ``pred`` (observation slots).
    """
    one = _init_one(cfg, n_params, width)
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (n_profiles, n_chains) + x.shape), one)
    weak = [f for f, x in zip(ChainState._fields, states, strict=True) if x.weak_type]
    assert not weak, f"weak-typed initial state fields {weak} would trigger a recompile"
    return states


def pred_width(evaluate: Evaluator, data, n_params: int) -> int:
    """Length of ``evaluate``'s prediction for one profile of ``data`` (no computation)."""
    p0 = jnp.zeros((n_params,))
    shapes = jax.eval_shape(lambda d: evaluate(p0, jax.tree.map(lambda x: x[0], d)), data)
    return int(shapes[1].shape[0])


def _inside(p: Array) -> Array:
    return jnp.all((p > 0.0) & (p < 1.0))


def _propose(key, s: ChainState, cfg: AMConfig, n: int):
    """(proposal, inside, cap_hit, n_out). Test: box; formal: Gaussian, adapted covariance.

    ``n_out``: draws that fell outside the box (faithful: each one re-drawn; default: 0 or 1).
    """
    cov_run = s.wm2 / jnp.maximum(s.wn - 1, 1)
    use_run = (s.phase == FORMAL) & (s.simu + 1 > cfg.adapt_start)
    cov = jnp.where(use_run, cov_run, s.cov_test)
    sigma = s.sd_factor * (cfg.scale / n) * cov + cfg.jitter * jnp.eye(n)
    chol = jnp.linalg.cholesky(sigma)
    chol = jnp.where(jnp.all(jnp.isfinite(chol)), chol, 0.0)
    is_test = s.phase == TEST

    def draw(k):
        kb, kg = jax.random.split(k)
        box = s.theta + (jax.random.uniform(kb, (n,)) - 0.5) / s.allow
        gauss = s.theta + chol @ jax.random.normal(kg, (n,))
        return jnp.where(is_test, box, gauss)

    first = draw(jax.random.fold_in(key, 0))
    if not cfg.faithful:
        inside = _inside(first)
        return first, inside, jnp.asarray(False), (~inside).astype(jnp.int32)

    def cond(c):
        i, prop = c
        return (~_inside(prop)) & (i < cfg.max_resample)

    def body(c):
        i, _ = c
        return i + 1, draw(jax.random.fold_in(key, i))

    i, prop = jax.lax.while_loop(cond, body, (jnp.asarray(1), first))
    inside = _inside(prop)
    n_out = (i - 1 + ~inside).astype(jnp.int32)  # i draws: all but an accepted last one outside
    return prop, inside, ~inside, n_out


def _welford(s: ChainState, x: Array) -> tuple:
    wn = s.wn + 1
    delta = x - s.wmean
    mean = s.wmean + delta / wn
    m2 = s.wm2 + jnp.outer(delta, x - mean)
    return wn, mean, m2


def _step_one(s: ChainState, data, key0, evaluate: Evaluator, cfg: AMConfig) -> ChainState:
    n = s.theta.shape[0]
    active = s.phase <= FORMAL  # START, TEST or FORMAL
    key = jax.random.fold_in(key0, s.t)
    k_prop, k_u = jax.random.split(key)
    prop, inside, cap_hit, n_out = _propose(k_prop, s, cfg, n)
    starting = s.phase == START
    p0 = jnp.full_like(s.theta, cfg.start)
    prop = jnp.where(starting, p0, prop)
    inside = inside | starting
    j_new, pred_new, failed = _sanitized(evaluate(jnp.clip(prop, 0.0, 1.0), data))
    j_start = jnp.where(failed, BAD_START_COST, j_new)
    started = s._replace(
        t=s.t + 1,
        phase=jnp.asarray(TEST, s.phase.dtype),
        theta=p0,
        cost=j_start,
        cost0=j_start,
        pred=pred_new,
        pred0=pred_new,
        failed0=failed,
        n_evals=s.n_evals + 1,
        n_failed=s.n_failed + failed,
        pred_ok=jnp.where(failed, s.pred_ok, pred_new),
    )
    sim_failed = failed & inside  # a failed simulation of a proposal inside the box
    pred_ok = jnp.where(failed | ~inside, s.pred_ok, pred_new)
    failed = failed | ~inside
    j_new = jnp.where(failed, s.cost + cfg.penalty, j_new)
    is_test = s.phase == TEST
    simu = s.simu + 1  # 1-based index of this step in its phase
    dj = j_new - s.cost
    if cfg.faithful:
        # formal run: a failed proposal leaves delta_cost as it was (SPEC 6 driver detail 1)
        dj = jnp.where(failed & ~is_test, s.last_dj, dj)
        log_factor = jnp.log(simu.astype(dj.dtype) + 2.0)
    else:
        log_factor = 1.0
    log_u = jnp.log(jax.random.uniform(k_u, (), dj.dtype, minval=1e-300))
    accept = log_u < -dj * log_factor
    if not cfg.faithful:
        accept &= ~failed
    accept &= inside

    theta = jnp.where(accept, prop, s.theta)
    cost = jnp.where(accept, j_new, s.cost)
    # an accepted failed solve (faithful only) keeps the last successful simulation's profile,
    # as the driver does (it never recomputes the profile in its failed branch)
    pred = jnp.where(accept, jnp.where(sim_failed, s.pred_ok, pred_new), s.pred)
    n_acc = s.n_acc + accept
    rate = n_acc / simu
    if cfg.faithful:
        coef = jnp.where(accept & ~is_test, rate, s.coef)
    else:
        coef = jnp.where(is_test, s.coef, rate)
    wn, wmean, wm2 = _welford(s, theta)

    # thinned record of the formal run
    if cfg.faithful:
        k = n_acc
        keep = ~is_test & accept & (k % cfg.thin == 0)
    else:
        k = simu
        keep = ~is_test & (k % cfg.thin == 0)
    slot = jnp.clip(k // cfg.thin - 1, 0, cfg.capacity - 1)
    keep &= (k // cfg.thin - 1 < cfg.capacity) & active & ~starting
    rec_theta = s.rec_theta.at[slot].set(jnp.where(keep, theta, s.rec_theta[slot]))
    rec_pred = s.rec_pred.at[slot].set(jnp.where(keep, pred, s.rec_pred[slot]))
    n_rec = s.n_rec + keep

    stepped = s._replace(
        t=s.t + 1,
        simu=simu,
        theta=theta,
        cost=cost,
        pred=pred,
        n_acc=n_acc,
        coef=coef,
        last_dj=dj,
        wn=wn,
        wmean=wmean,
        wm2=wm2,
        # the record buffers are written once, at the end, and never selected by the phase
        # logic below (a restart only resets n_rec): selecting them would copy C x n per step
        rec_theta=s.rec_theta,
        rec_pred=s.rec_pred,
        n_rec=n_rec,
        n_evals=s.n_evals + 1,
        n_failed=s.n_failed + sim_failed,
        pred_ok=pred_ok,
        n_acc_failed=s.n_acc_failed + (accept & sim_failed),
        n_out_of_box=s.n_out_of_box + n_out,
        n_resample_cap=s.n_resample_cap + cap_hit,
    )

    # --- phase transitions (end of step) ---------------------------------------------------
    zeros_n = jnp.zeros_like(s.wmean)
    zeros_nn = jnp.zeros_like(s.wm2)

    def restart_test(st: ChainState, allow, test_try, check_off) -> ChainState:
        return st._replace(
            phase=jnp.asarray(TEST, st.phase.dtype),
            simu=jnp.zeros_like(st.simu),
            theta=jnp.full_like(st.theta, cfg.start),
            cost=st.cost0,
            pred=st.pred0,
            n_acc=jnp.zeros_like(st.n_acc),
            allow=allow,
            test_try=test_try,
            check_off=check_off,
            wn=jnp.zeros_like(st.wn),
            wmean=zeros_n,
            wm2=zeros_nn,
            n_rec=jnp.zeros_like(st.n_rec),
        )

    # test run: too few acceptances after n_test - 1 steps -> restart with a wider... box
    few = is_test & (simu == cfg.n_test - 1) & (n_acc < cfg.min_accept_test) & ~stepped.check_off
    try_next = stepped.test_try + 1
    restarted = restart_test(
        stepped,
        stepped.allow * cfg.allow_growth,
        try_next,
        stepped.check_off | (try_next >= cfg.max_test_tries),
    )
    restarted = restarted._replace(n_test_restarts=stepped.n_test_restarts + 1)
    # test run complete -> formal run
    to_formal = is_test & (simu == cfg.n_test)
    cov_test = wm2 / jnp.maximum(wn - 1, 1)
    formal = stepped._replace(
        phase=jnp.asarray(FORMAL, s.phase.dtype),
        simu=jnp.zeros_like(simu),
        n_acc=jnp.zeros_like(n_acc),
        cost=stepped.cost0 if cfg.faithful else stepped.cost,
        cov_test=cov_test,
        wn=jnp.zeros_like(wn),
        wmean=zeros_n,
        wm2=zeros_nn,
        n_rec=jnp.zeros_like(n_rec),
        coef=stepped.coef if cfg.faithful else jnp.zeros_like(coef),
    )
    # formal run: rate check after n_formal - 1 steps
    check = ~is_test & (simu == cfg.n_formal - 1)
    low = check & (coef < cfg.rate_low)
    high = check & (coef > cfg.rate_high)
    discard = low | high
    sd_factor = stepped.sd_factor * jnp.where(low, cfg.sd_low, jnp.where(high, cfg.sd_high, 1.0))
    n_discards = stepped.n_discards + discard
    rerun = restart_test(
        stepped._replace(sd_factor=sd_factor, n_discards=n_discards),
        jnp.asarray(cfg.allow, s.allow.dtype),
        jnp.zeros_like(s.test_try),
        stepped.check_off,
    )
    give_up = discard & (n_discards > cfg.max_discards)
    finished = ~is_test & (simu == cfg.n_formal)

    def pick(cond, a: ChainState, b: ChainState) -> ChainState:
        return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)

    out = stepped
    out = pick(few, restarted, out)
    out = pick(to_formal, formal, out)
    # a chain that gives up keeps its last run (records, counters) for the report
    out = pick(discard & ~give_up, rerun, out)
    out = out._replace(
        sd_factor=jnp.where(give_up, sd_factor, out.sd_factor),
        n_discards=jnp.where(give_up, n_discards, out.n_discards),
    )
    out = out._replace(
        phase=jnp.where(give_up, FAILED, jnp.where(finished, DONE, out.phase)).astype(
            s.phase.dtype
        ),
        acc_formal=jnp.where(finished, n_acc, out.acc_formal),
    )
    out = pick(starting, started, out)
    out = pick(active, out, s)
    return out._replace(rec_theta=rec_theta, rec_pred=rec_pred)


@functools.partial(jax.jit, static_argnames=("evaluate", "cfg", "n_steps"))
def run_block(states: ChainState, data, keys: Array, evaluate: Evaluator, cfg: AMConfig, n_steps):
    """Advance every chain of every profile by ``n_steps`` steps (one compiled program).

    Args:
        states: `ChainState` with leading axes (profiles, chains).
        data: per-profile data PyTree with a leading profile axis (closed over by ``evaluate``).
        keys: (profiles, chains, 2) chain keys (`chain_keys`).
        evaluate: one-profile evaluator ``(p, data) -> (cost, pred, failed)`` (static: hashable).
        cfg: `AMConfig` (static).
        n_steps: scan length (static).
    """

    def one_chain(s, d, k):
        def body(st, _):
            return _step_one(st, d, k, evaluate, cfg), None

        return jax.lax.scan(body, s, None, length=n_steps)[0]

    per_profile = jax.vmap(one_chain, in_axes=(0, None, 0))
    return jax.vmap(per_profile, in_axes=(0, 0, 0))(states, data, keys)


def profile_sharding() -> jax.sharding.NamedSharding:
    """Sharding of arrays along their leading (profile) axis over all visible devices."""
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("profile",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("profile"))


def run(
    data,
    profile_keys: Array,
    evaluate: Evaluator,
    cfg: AMConfig,
    n_params: int,
    n_chains: int = 3,
    block: int | None = None,
    callback: Callable[[ChainState], None] | None = None,
    shard: bool | None = None,
) -> ChainState:
    """Run PRODA's AM to completion for a batch of profiles (host loop over compiled blocks).

    Args:
        data: per-profile data PyTree with a leading profile axis.
        profile_keys: (profiles, 2) keys, one per profile (derive them from (seed, profile id)).
        evaluate, cfg: as in `run_block`.
        n_params: number of parameters n.
        n_chains: chains per profile (PRODA 3).
        block: steps per compiled block (default ``1 + n_test + n_formal``, i.e. one pass when
            no chain restarts).
        callback: called with the states after every block (progress reporting).
        shard: split the profile axis over all visible devices (``jax.sharding.NamedSharding``
            on a one-axis ``Mesh`` named ``"profile"``); default: when there is more than one
            device and the number of profiles is a multiple of the device count. Profiles are
            independent, so the compiled program needs no communication and every profile's
            result equals the single-device one.

    Returns:
        Final `ChainState`, leading axes (profiles, chains). Chains still running when the
        worst-case budget (`AMConfig.max_steps`) is spent keep phase TEST/FORMAL.
    """
    cfg.validate()
    block = int(block or 1 + cfg.n_test + cfg.n_formal)
    keys = jax.vmap(lambda k: chain_keys(k, n_chains))(jnp.asarray(profile_keys))
    n_profiles = int(jax.tree.leaves(data)[0].shape[0])
    width = pred_width(evaluate, data, n_params)
    states = init_chains(cfg, n_profiles, n_chains, n_params, width)
    n_dev = jax.device_count()
    if shard is None:
        shard = n_dev > 1 and n_profiles % n_dev == 0
    if shard:
        if n_profiles % n_dev:
            raise ValueError(f"{n_profiles} profiles cannot be split over {n_dev} devices")
        sharding = profile_sharding()
        data, keys, states = jax.device_put((data, keys, states), sharding)
    done_steps = 0
    while done_steps < cfg.max_steps():
        if not np.any(np.asarray(states.phase) <= FORMAL):  # every chain DONE or FAILED
            break
        states = run_block(states, data, keys, evaluate, cfg, block)
        done_steps += block
        if callback is not None:
            callback(states)
    return states
