"""The settings and the state of PRODA's adaptive Metropolis (`soc_jax.calibration.am`).

`AMConfig` holds the protocol's numbers (PRODA's defaults, SPEC 6), `ChainState` the per-chain
state machine (phase, step counter, current point, running covariance, thinned record, counts)
and `init_chains` the batched initial states. The algorithm itself is `am`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["AMConfig", "ChainState", "START", "TEST", "FORMAL", "DONE", "FAILED", "init_chains"]


START, TEST, FORMAL, DONE, FAILED = -1, 0, 1, 2, 3
"""Chain phases. START: the next step evaluates p0. FAILED: more than ``max_discards`` discards
(PRODA's profile failure)."""


class AMConfig(NamedTuple):
    """Settings of PRODA's adaptive Metropolis (defaults: PRODA's protocol, SPEC 6).

    Attributes:
        n_test: test-run steps (PRODA 20,000).
        n_formal: formal-run steps (PRODA 50,000).
        faithful: keep every quirk of PRODA's driver (see `soc_jax.calibration.am`).
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
