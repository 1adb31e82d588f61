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

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from .am_state import DONE, FAILED, FORMAL, START, TEST, AMConfig, ChainState, init_chains

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

BAD_START_COST: float = 1e10
"""Cost given to a failed evaluation of the starting point p0 (finite; any valid move beats it)."""


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
    """One step of one chain: evaluate the proposal (p0 in phase START), accept or reject it,
    keep a thinned sample, apply the phase rules. A DONE or FAILED chain stays as it is (its
    evaluation is computed and ignored, as lock-step vectorisation requires)."""
    active = s.phase <= FORMAL  # START, TEST or FORMAL
    key = jax.random.fold_in(key0, s.t)
    k_prop, k_u = jax.random.split(key)
    prop, inside, cap_hit, n_out = _propose(k_prop, s, cfg, s.theta.shape[0])
    starting = s.phase == START
    p0 = jnp.full_like(s.theta, cfg.start)
    prop = jnp.where(starting, p0, prop)
    inside = inside | starting
    evaluation = _sanitized(evaluate(jnp.clip(prop, 0.0, 1.0), data))
    started = _started(s, p0, evaluation)
    stepped, (rec_theta, rec_pred) = _metropolis_step(
        s, k_u, prop, inside, evaluation, cfg, active & ~starting
    )
    stepped = stepped._replace(
        n_out_of_box=s.n_out_of_box + n_out, n_resample_cap=s.n_resample_cap + cap_hit
    )
    out = _phase_rules(stepped, s.phase == TEST, cfg)
    out = _pick(starting, started, out)
    out = _pick(active, out, s)
    return out._replace(rec_theta=rec_theta, rec_pred=rec_pred)


def _pick(cond, a: ChainState, b: ChainState) -> ChainState:
    """``a`` where ``cond`` else ``b``, field by field."""
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def _started(s: ChainState, p0: Array, evaluation) -> ChainState:
    """Phase START done: J(p0) (`BAD_START_COST` if it fails) is the test run's first state."""
    j_new, pred_new, failed = evaluation
    j_start = jnp.where(failed, BAD_START_COST, j_new)
    return s._replace(
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


def _metropolis_step(s: ChainState, k_u, prop, inside, evaluation, cfg: AMConfig, recordable):
    """A test- or formal-run step on the evaluated proposal: the chain moves or stays, the
    running covariance and (where ``recordable``) the thinned record take the new state.

    Returns:
        (state, (rec_theta, rec_pred)): the record buffers apart, written once per step.
    """
    j_new, pred_new, failed = evaluation
    sim_failed = failed & inside  # a failed simulation of a proposal inside the box
    pred_ok = jnp.where(failed | ~inside, s.pred_ok, pred_new)
    failed = failed | ~inside
    j_new = jnp.where(failed, s.cost + cfg.penalty, j_new)
    is_test = s.phase == TEST
    simu = s.simu + 1  # 1-based index of this step in its phase
    dj, accept = _accept(s, k_u, j_new, failed, inside, is_test, simu, cfg)

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
    record = _thinned_record(s, cfg, theta, pred, n_acc, simu, is_test, accept, recordable)
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
        # logic (a restart only resets n_rec): selecting them would copy C x n per step
        rec_theta=s.rec_theta,
        rec_pred=s.rec_pred,
        n_rec=record[2],
        n_evals=s.n_evals + 1,
        n_failed=s.n_failed + sim_failed,
        pred_ok=pred_ok,
        n_acc_failed=s.n_acc_failed + (accept & sim_failed),
    )
    return stepped, record[:2]


def _accept(s: ChainState, k_u, j_new, failed, inside, is_test, simu, cfg: AMConfig):
    """(dJ, accept): Metropolis on ``exp(-J)`` (default) or PRODA's annealed rule (faithful)."""
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
    return dj, accept


def _thinned_record(s: ChainState, cfg: AMConfig, theta, pred, n_acc, simu, is_test, accept, ok):
    """(rec_theta, rec_pred, n_rec) after keeping every ``thin``-th formal step (default) or
    accepted state (faithful) in its slot; ``ok``: the step may be recorded at all."""
    if cfg.faithful:
        k = n_acc
        keep = ~is_test & accept & (k % cfg.thin == 0)
    else:
        k = simu
        keep = ~is_test & (k % cfg.thin == 0)
    slot = jnp.clip(k // cfg.thin - 1, 0, cfg.capacity - 1)
    keep &= (k // cfg.thin - 1 < cfg.capacity) & ok
    rec_theta = s.rec_theta.at[slot].set(jnp.where(keep, theta, s.rec_theta[slot]))
    rec_pred = s.rec_pred.at[slot].set(jnp.where(keep, pred, s.rec_pred[slot]))
    return rec_theta, rec_pred, s.n_rec + keep


def _phase_rules(stepped: ChainState, is_test, cfg: AMConfig) -> ChainState:
    """End of step: test-run restart, test -> formal, the formal run's rate check (discard and
    re-run, or give up: FAILED), formal run complete (DONE)."""
    simu = stepped.simu
    few = is_test & (simu == cfg.n_test - 1) & (stepped.n_acc < cfg.min_accept_test)
    few &= ~stepped.check_off  # after max_test_tries the check is disabled
    restarted = _restart_wider(stepped, cfg)
    to_formal = is_test & (simu == cfg.n_test)
    formal = _to_formal(stepped, cfg)
    discard, give_up, sd_factor, n_discards, rerun = _rate_check(stepped, is_test, cfg)
    finished = ~is_test & (simu == cfg.n_formal)

    out = stepped
    out = _pick(few, restarted, out)
    out = _pick(to_formal, formal, out)
    # a chain that gives up keeps its last run (records, counters) for the report
    out = _pick(discard & ~give_up, rerun, out)
    out = out._replace(
        sd_factor=jnp.where(give_up, sd_factor, out.sd_factor),
        n_discards=jnp.where(give_up, n_discards, out.n_discards),
    )
    return out._replace(
        phase=jnp.where(give_up, FAILED, jnp.where(finished, DONE, out.phase)).astype(
            stepped.phase.dtype
        ),
        acc_formal=jnp.where(finished, stepped.n_acc, out.acc_formal),
    )


def _restart_test(st: ChainState, cfg: AMConfig, allow, test_try, check_off) -> ChainState:
    """A new test run from p0 (J(p0) as recorded at START) with the box ``allow``."""
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
        wmean=jnp.zeros_like(st.wmean),
        wm2=jnp.zeros_like(st.wm2),
        n_rec=jnp.zeros_like(st.n_rec),
    )


def _restart_wider(stepped: ChainState, cfg: AMConfig) -> ChainState:
    """Too few test-run acceptances: restart with a wider box; the check is disabled after
    ``max_test_tries`` tries."""
    try_next = stepped.test_try + 1
    restarted = _restart_test(
        stepped,
        cfg,
        stepped.allow * cfg.allow_growth,
        try_next,
        stepped.check_off | (try_next >= cfg.max_test_tries),
    )
    return restarted._replace(n_test_restarts=stepped.n_test_restarts + 1)


def _to_formal(stepped: ChainState, cfg: AMConfig) -> ChainState:
    """Test run complete: the formal run starts with the test record's covariance."""
    cov_test = stepped.wm2 / jnp.maximum(stepped.wn - 1, 1)
    return stepped._replace(
        phase=jnp.asarray(FORMAL, stepped.phase.dtype),
        simu=jnp.zeros_like(stepped.simu),
        n_acc=jnp.zeros_like(stepped.n_acc),
        cost=stepped.cost0 if cfg.faithful else stepped.cost,
        cov_test=cov_test,
        wn=jnp.zeros_like(stepped.wn),
        wmean=jnp.zeros_like(stepped.wmean),
        wm2=jnp.zeros_like(stepped.wm2),
        n_rec=jnp.zeros_like(stepped.n_rec),
        coef=stepped.coef if cfg.faithful else jnp.zeros_like(stepped.coef),
    )


def _rate_check(stepped: ChainState, is_test, cfg: AMConfig):
    """The formal run's acceptance-rate check after ``n_formal - 1`` steps.

    Returns:
        (discard, give_up, sd_factor, n_discards, rerun): a rate outside [rate_low, rate_high]
        discards the run (``sd_factor`` scaled) and re-runs test + formal from p0; more than
        ``max_discards`` discards give up.
    """
    check = ~is_test & (stepped.simu == cfg.n_formal - 1)
    low = check & (stepped.coef < cfg.rate_low)
    high = check & (stepped.coef > cfg.rate_high)
    discard = low | high
    sd_factor = stepped.sd_factor * jnp.where(low, cfg.sd_low, jnp.where(high, cfg.sd_high, 1.0))
    n_discards = stepped.n_discards + discard
    rerun = _restart_test(
        stepped._replace(sd_factor=sd_factor, n_discards=n_discards),
        cfg,
        jnp.asarray(cfg.allow, stepped.allow.dtype),
        jnp.zeros_like(stepped.test_try),
        stepped.check_off,
    )
    give_up = discard & (n_discards > cfg.max_discards)
    return discard, give_up, sd_factor, n_discards, rerun


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
