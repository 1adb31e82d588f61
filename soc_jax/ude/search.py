"""Many UDE configurations trained at once: one batched solve, one program per search.

A hyper-parameter search (seed Table 1 and Tables 2-7: hidden sizes, activations, learning
rates, loss weights, seeds) trains K configurations of the same problem. Here they are one
program:

* **Shape.** Members of one batch share array shapes: each is a
  :class:`~soc_jax.ude.vector_field.NeuralReaction` zero-padded to the batch's largest widths
  (``pad_to``; the default search batches one width pair at a time, so nothing is padded)
  with, where activations differ, the activation chosen by a traced flag
  (``activation="select"``: one tanh per unit for tanh and GELU alike); padded weights stay
  exactly zero (their gradients are masked), so each member computes exactly its own
  unpadded network (checked by a test).
* **Data, not constants.** Learning rates, loss weights, likelihood choice and seeds are arrays
  with a leading member axis; one compilation serves every search with the same K, mode and
  driver setting.
* **One solve for all members.** The K members' profiles are one ODE state ``(K, nz)``
  integrated by one Tsit5 + PID solve. The error norm is the *maximum over members* of each
  member's RMS scaled error, so every member meets its own ``rtol``/``atol`` (the shared step
  is the smallest any member needs). ``vmap`` of ``diffeqsolve`` instead batches K while loops,
  which on CPU cost more per member than K sequential solves (measured: 32 ms per member at
  K = 16 vs 24 ms alone); the shared-step solve pays the loop overhead once. Diffrax stops
  gradients through the step-size controller, so each member's gradient depends on its own
  parameters only (given the shared steps). The shared step is also the limit of batching:
  in noisy cases the members' stiffness differs, so beyond a few members the batch takes
  more steps than its members would alone; :func:`train_batched_threads` therefore trains
  small chunks, two at a time on two cores.
* **Failures.** A member whose rates are non-finite gets a zero tendency (it freezes) and the
  seed's penalty ``1e6 + 0 ||theta||^2``, so one bad member cannot stop the solve of the
  others. If the shared solve itself fails (step budget), every member gets the penalty for
  that iteration.

The search settings follow Raju et al. (2025), Sec 2.2 and Tables 1-8 (full reference in
`soc_jax.ude.synthetic`).
"""

from __future__ import annotations

import dataclasses
import time

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import optax

from soc_jax.ude.column import require_x64
from soc_jax.ude.synthetic import UDEData
from soc_jax.ude.train import (
    ObjectiveSpec,
    TrainConfig,
    Weights,
    filter_spec,
    init_model,
    loss_from_prediction,
)
from soc_jax.ude.vector_field import UDEVectorField, pid_controller, tsit5_solve

#: Widths every search member is padded to (the largest of seed Table 1).
PAD_TO = (64, 32)


def make_member(
    cfg: TrainConfig, nz: int, key, pad_to=PAD_TO, select: bool = True, float32: bool = False
) -> UDEVectorField:
    """A (padded, activation-selectable) vector field for ``cfg``, initialised as ``init_model``."""
    return init_model(cfg, nz, key, pad_to=pad_to, select_activation=select, float32=float32)


def stack(trees):
    """Stack equal-structure PyTrees along a new leading axis (arrays only)."""
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


def unstack(tree, k: int):
    """Member ``k`` of a stacked PyTree."""
    return jax.tree.map(lambda a: a[k] if eqx.is_array(a) else a, tree)


def _member_norm(err):
    # err: scaled error (K, nz); each member's RMS, the worst member decides
    return jnp.max(jnp.sqrt(jnp.mean(err**2, axis=-1)))


def solve_batched(
    models, c0, drivers, ts, *, rtol, atol, max_steps, step_to_knots, checkpoints=None
):
    """One Tsit5 + PID solve of K stacked models: ``(ys (K, nt, nz), ok (K,))``.

    Args:
        models: stacked :class:`UDEVectorField` (leading member axis on every array).
        c0: initial profile ``(nz,)`` (shared).
        drivers: :class:`~soc_jax.ude.vector_field.Drivers` (shared).
        ts: save times (yr).
        rtol, atol: tolerances applied to every member (scalars).
        max_steps: step budget of the shared solve.
        step_to_knots: step to the driver sample times (noisy drivers).
        checkpoints: ``RecursiveCheckpointAdjoint(checkpoints=...)`` (see
            :func:`~soc_jax.ude.vector_field.solve`).
    """
    k = jax.tree.leaves(models)[0].shape[0]

    def field(t, y, args):
        dy = jax.vmap(lambda m, c: m(t, c, args))(models, y)
        good = jnp.all(jnp.isfinite(dy), axis=-1, keepdims=True)
        return jnp.where(good, dy, 0.0)

    controller = pid_controller(rtol, atol, drivers, step_to_knots, norm=_member_norm)
    sol = tsit5_solve(
        field,
        jnp.broadcast_to(c0, (k, c0.shape[0])),
        drivers,
        ts,
        controller,
        dt0=0.05,
        checkpoints=checkpoints,
        max_steps=max_steps,
    )
    ys = jnp.moveaxis(sol.ys, 1, 0)  # (K, nt, nz)
    finite = jnp.all(jnp.isfinite(ys), axis=(1, 2))
    ok = (sol.result == diffrax.RESULTS.successful) & finite
    ys = jnp.where(ok[:, None, None], jnp.where(jnp.isfinite(ys), ys, 0.0), 0.0)
    return ys, ok


def batched_losses(params, static, data: UDEData, weights: Weights, spec: ObjectiveSpec):
    """Per-member training losses ``(K,)`` and terminal MSEs ``(K,)`` of stacked members."""
    models = eqx.combine(params, static)
    ys, ok = solve_batched(
        models,
        data.c0,
        data.drivers_obs,
        data.ts,
        rtol=weights.rtol[0],
        atol=weights.atol[0],
        max_steps=spec.max_steps,
        step_to_knots=spec.step_to_knots,
        checkpoints=spec.checkpoints,
    )
    losses = jax.vmap(
        lambda y, o, p, s, w: loss_from_prediction(y, o, p, s, data, w, spec),
    )(ys, ok, params, static, weights)
    term = jnp.mean((ys[:, -1] - data.soc_obs[-1]) ** 2, axis=-1)
    term = jnp.where(ok, term, jnp.inf)
    return losses, term


_ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)


@eqx.filter_jit
def _batched_adam_step(params, opt_state, best, static, data, weights, spec, masks, active):
    """One Adam step for every member; keeps each member's best iterate (by training loss)."""

    def total(p):
        losses, term = batched_losses(p, static, data, weights, spec)
        return jnp.sum(losses), (losses, term)

    (_, (losses, term)), grads = eqx.filter_value_and_grad(total, has_aux=True)(params)
    grads = jax.tree.map(lambda g, m: jnp.where(jnp.isfinite(g), g, 0.0) * m, grads, masks)
    updates, new_state = jax.vmap(lambda g, s, p: _ADAM.update(g, s, p))(grads, opt_state, params)
    act = active.astype(float)
    updates = jax.tree.map(
        lambda u: u * act.reshape((-1,) + (1,) * (u.ndim - 1)) if u is not None else u, updates
    )
    new_params = eqx.apply_updates(params, updates)
    best_loss, best_term, best_params = best
    better = losses < best_loss * (1 - 1e-4)
    pick = lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
    best_params = jax.tree.map(pick, params, best_params)
    best = (
        jnp.where(better, losses, best_loss),
        jnp.where(better, term, best_term),
        best_params,
    )
    return new_params, new_state, best, losses, better


@dataclasses.dataclass
class BatchState:
    """Everything needed to continue training a batch where it stopped (stacked by member).

    Attributes:
        models: stacked current vector fields (the last Adam iterate).
        opt_state: stacked Adam state (moments, counts, learning rates).
        best_loss, best_term: ``(K,)`` best training loss and its terminal MSE.
        best_models: stacked vector fields at each member's best iterate.
        since: ``(K,)`` iterations since each member last improved (early stopping).
        iterations: ``(K,)`` Adam iterations each member has run.
    """

    models: UDEVectorField
    opt_state: object
    best_loss: jax.Array
    best_term: jax.Array
    best_models: UDEVectorField
    since: np.ndarray
    iterations: np.ndarray

    def take(self, idx) -> BatchState:
        """Members ``idx`` (in that order)."""
        idx = np.asarray(idx)
        sub = lambda t: jax.tree.map(lambda a: a[idx] if eqx.is_array(a) else a, t)
        return BatchState(
            sub(self.models),
            sub(self.opt_state),
            self.best_loss[idx],
            self.best_term[idx],
            sub(self.best_models),
            self.since[idx],
            self.iterations[idx],
        )

    @staticmethod
    def concat(states: list[BatchState]) -> BatchState:
        """Members of several states (of equal member structure), in order."""
        return BatchState(
            _concat([s.models for s in states]),
            _concat([s.opt_state for s in states]),
            jnp.concatenate([s.best_loss for s in states]),
            jnp.concatenate([s.best_term for s in states]),
            _concat([s.best_models for s in states]),
            np.concatenate([s.since for s in states]),
            np.concatenate([s.iterations for s in states]),
        )


@dataclasses.dataclass
class BatchResult:
    """Outcome of :func:`train_batched`.

    Attributes:
        models: stacked best vector fields (by each member's training loss).
        best_loss: ``(K,)`` best training loss per member.
        terminal_mse: ``(K,)`` terminal-profile MSE against the observations at that iterate
            (the seed's selection criterion, "terminal loss").
        iterations: Adam iterations run.
        seconds: wall time (s), compile included.
        step_seconds: median wall time of one batched step after the first (s).
        state: the state to continue from (:func:`train_batched` ``resume=``); None for
            results merged from several chunks.
        terminal_history: ``(iterations, K)`` terminal MSE at each member's best iterate after
            every iteration of this call (learning curves of the selection criterion).
    """

    models: UDEVectorField
    best_loss: np.ndarray
    terminal_mse: np.ndarray
    iterations: int
    seconds: float
    step_seconds: float
    state: BatchState | None = None
    terminal_history: np.ndarray | None = None


def train_batched(
    cfgs: list[TrainConfig],
    mode: str,
    data: UDEData,
    *,
    adam_steps: int,
    patience: int = 50,
    max_steps: int = 400,
    log=None,
    log_every: int = 50,
    label: str = "search",
    float32: bool = False,
    select: bool | None = None,
    resume: BatchState | None = None,
) -> BatchResult:
    """Train K configurations at once with Adam (one program; see the module docstring).

    Every member runs until it has gone ``patience`` iterations without a relative improvement
    of 1e-4 (then it is frozen) or ``adam_steps`` are done; the loop ends when all are frozen.
    All members must share ``rtol``, ``atol``, ``step_to_knots`` and ``learn_physics``.

    Args:
        cfgs: configurations (hidden, activation, lr, loss weights, likelihood, seed differ).
        mode: ``"trajectory"`` or ``"terminal"``.
        data: the synthetic experiment.
        adam_steps: maximum Adam iterations.
        patience: early-stopping patience per member.
        max_steps: step budget of the shared solve.
        log: printer (None: silent).
        log_every: print progress every this many iterations.
        label: log prefix.
        float32: evaluate the networks in float32 inside the float64 solve.
        select: choose the activation by a traced flag (``"select"``); ``None``: only if the
            members' activations differ. ``True`` lets single-activation batches reuse the
            compilation of mixed ones (the flag costs a few element-wise operations).
        resume: continue from this state (of the same ``cfgs``, built with the same
            ``float32`` and ``select``) for at most ``adam_steps`` more iterations, as if the
            run had not stopped (successive halving); members already frozen stay frozen.
    """
    require_x64("soc_jax.ude.search")
    t_start = time.perf_counter()
    _check_shared_settings(cfgs)
    members = _members(cfgs, data.z.shape[0], float32, select)
    models = stack(members) if resume is None else resume.models
    fspec = filter_spec(members[0], cfgs[0].learn_physics)
    params, static = eqx.partition(models, fspec)
    masks = _trainable_masks(params, models)
    weights = stack([Weights.from_config(c) for c in cfgs])
    spec = dataclasses.replace(
        cfgs[0].objective_spec(mode), max_steps=max_steps, step_to_knots=cfgs[0].step_to_knots
    )
    run = _start(params, fspec, cfgs, resume)
    fixed = (static, data, weights, spec, masks)
    _adam_loop(
        run,
        fixed,
        adam_steps=adam_steps,
        patience=patience,
        log=log,
        log_every=log_every,
        label=label,
    )
    return _result(run, static, t_start)


def _check_shared_settings(cfgs: list[TrainConfig]) -> None:
    """Raise unless all members share ``rtol``, ``atol``, ``step_to_knots``, ``learn_physics``."""
    base = cfgs[0]
    for c in cfgs:
        if (c.rtol, c.atol, c.step_to_knots, c.learn_physics) != (
            base.rtol,
            base.atol,
            base.step_to_knots,
            base.learn_physics,
        ):
            raise ValueError("batched members must share rtol, atol, step_to_knots, learn_physics")


def _members(cfgs: list[TrainConfig], nz: int, float32: bool, select: bool | None) -> list:
    """Fresh members of a batch, padded to its widest and, where needed, activation-selectable.

    Pads only as far as this batch needs; selects the activation by a flag only if the members'
    activations differ (``select=None``).
    """
    pad_to = tuple(max(c.hidden[i] for c in cfgs) for i in range(2))
    if select is None:
        select = len({c.activation for c in cfgs}) > 1
    return [make_member(c, nz, jr.key(c.seed), pad_to, select, float32=float32) for c in cfgs]


def _trainable_masks(params, models):
    """1 where a parameter is trained, 0 at the networks' padding (its gradient is masked)."""
    masks = jax.tree.map(
        lambda a: jnp.ones_like(a) if eqx.is_inexact_array(a) else None,
        params,
    )
    mask_r = jax.vmap(lambda m: m.reaction.mask())(models)
    return eqx.tree_at(
        lambda m: (m.reaction.w1, m.reaction.b1, m.reaction.w2, m.reaction.b2, m.reaction.w3),
        masks,
        (mask_r.w1, mask_r.b1, mask_r.w2, mask_r.b2, mask_r.w3),
    )


@dataclasses.dataclass
class _Run:
    """The state of :func:`train_batched`'s Adam loop (stacked by member where arrays).

    Attributes:
        params: current trained leaves.
        opt_state: Adam state.
        best: ``(best loss (K,), its terminal MSE (K,), best params)``.
        since: iterations since each member last improved.
        done: Adam iterations each member has run (over resumed calls too).
        iterations: iterations of this call.
        step_times: wall time of each step (s).
        history: terminal MSE at each member's best iterate after each step.
    """

    params: object
    opt_state: object
    best: tuple
    since: np.ndarray
    done: np.ndarray
    iterations: int = 0
    step_times: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)


def _start(params, fspec, cfgs: list[TrainConfig], resume: BatchState | None) -> _Run:
    """A fresh loop state for ``cfgs`` (each its learning rate), or ``resume``'s."""
    k = len(cfgs)
    if resume is None:
        opt_state = jax.vmap(_ADAM.init)(eqx.filter(params, eqx.is_inexact_array))
        opt_state.hyperparams["learning_rate"] = jnp.asarray([c.lr for c in cfgs], dtype=float)
        # strong float64 (a weak-typed inf would change type after the first step: a recompile)
        inf = jnp.full(k, jnp.inf, dtype=jnp.float64)
        return _Run(
            params, opt_state, (inf, inf, params), np.zeros(k, dtype=int), np.zeros(k, dtype=int)
        )
    if resume.best_loss.shape != (k,):
        raise ValueError(f"resume state has {resume.best_loss.shape[0]} members, cfgs {k}")
    best_params = eqx.filter(resume.best_models, fspec)
    return _Run(
        params,
        resume.opt_state,
        (resume.best_loss, resume.best_term, best_params),
        np.asarray(resume.since).copy(),
        np.asarray(resume.iterations).copy(),
    )


def _adam_loop(run: _Run, fixed, *, adam_steps, patience, log, log_every, label) -> None:
    """Adam steps on ``run`` until ``adam_steps`` are done or every member is frozen."""
    static, data, weights, spec, masks = fixed
    active = jnp.asarray(run.since < patience)
    it = 0
    for it in range(1, adam_steps + 1):
        if not bool(jnp.any(active)):
            it -= 1
            break
        t0 = time.perf_counter()
        run.params, run.opt_state, run.best, losses, better = _batched_adam_step(
            run.params, run.opt_state, run.best, static, data, weights, spec, masks, active
        )
        better = np.asarray(better)
        run.step_times.append(time.perf_counter() - t0)
        run.history.append(np.asarray(run.best[1]))
        run.done = run.done + np.asarray(active)
        run.since = np.where(better, 0, run.since + 1)
        active = jnp.asarray(run.since < patience)
        if log is not None and (it % log_every == 0 or it == 1):
            b = np.asarray(run.best[0])
            log(
                f"  [{label}] iter {it:4d} K={len(run.since)} best loss min {b.min():.3e} median "
                f"{np.median(b):.3e}, active {int(np.sum(run.since < patience))}, "
                f"{run.step_times[-1] * 1e3:.0f} ms/step"
            )
    run.iterations = it


def _result(run: _Run, static, t_start: float) -> BatchResult:
    """The :class:`BatchResult` of a finished loop (with the state to resume from)."""
    best_loss, best_term, best_params = run.best
    best_models = eqx.combine(best_params, static)
    step_times, k = run.step_times, len(run.since)
    # members that never improved (first iterate failed) keep their initial parameters
    return BatchResult(
        models=best_models,
        best_loss=np.asarray(best_loss),
        terminal_mse=np.asarray(best_term),
        iterations=run.iterations,
        seconds=time.perf_counter() - t_start,
        step_seconds=float(np.median(step_times[1:])) if len(step_times) > 1 else float("nan"),
        state=BatchState(
            eqx.combine(run.params, static),
            run.opt_state,
            best_loss,
            best_term,
            best_models,
            run.since,
            run.done,
        ),
        terminal_history=np.stack(run.history) if run.history else np.zeros((0, k)),
    )


def _concat(trees):
    """Concatenate stacked PyTrees along the member axis (arrays only)."""
    return jax.tree.map(lambda *a: jnp.concatenate(a) if eqx.is_array(a[0]) else a[0], *trees)


def train_batched_threads(
    cfgs: list[TrainConfig],
    mode: str,
    data: UDEData,
    *,
    threads: int = 2,
    chunk: int | None = None,
    **kw,
) -> BatchResult:
    """:func:`train_batched` over chunks of the members, ``threads`` chunks at a time.

    Two reasons to split a batch. (1) The members of a batch share one adaptive step size, the
    smallest any member needs, so large batches take more solver steps than their members
    would alone (Case 3, 35 % noise, (32, 16) networks, float32: per member and Adam step
    30 ms alone, 18-22 ms in chunks of 3, 22 ms of 6, 39 ms of 9, 47 ms of 18).
    (2) XLA on CPU runs one 30-node solve on one core (the ops are too small for intra-op
    threads), but computations launched from different Python threads run on different
    cores. Each chunk is an independent :func:`train_batched` run, so its members' results do
    not depend on the other chunks; the members are returned in input order.

    Args:
        cfgs: configurations, as for :func:`train_batched`.
        mode: ``"trajectory"`` or ``"terminal"``.
        data: the synthetic experiment.
        threads: chunks trained concurrently.
        chunk: members per chunk (equal sizes share one compilation); ``None``: ``threads``
            chunks of (nearly) equal size.
        **kw: passed to :func:`train_batched`.
    """
    from concurrent.futures import ThreadPoolExecutor

    threads = max(1, int(threads))
    if chunk is None:
        chunk = -(-len(cfgs) // threads)
    chunks = [cfgs[i : i + chunk] for i in range(0, len(cfgs), chunk)]
    if len(chunks) == 1:
        return train_batched(cfgs, mode, data, **kw)
    label = kw.pop("label", "search")
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
        futures = [
            pool.submit(train_batched, c, mode, data, label=f"{label}/{i}", **kw)
            for i, c in enumerate(chunks)
        ]
        parts = [f.result() for f in futures]
    return BatchResult(
        models=_concat([p.models for p in parts]),
        best_loss=np.concatenate([p.best_loss for p in parts]),
        terminal_mse=np.concatenate([p.terminal_mse for p in parts]),
        iterations=max(p.iterations for p in parts),
        seconds=time.perf_counter() - t0,
        step_seconds=float(np.nanmedian([p.step_seconds for p in parts])),
    )


@eqx.filter_jit
def predict_batched(models, data: UDEData, rtol: float = 1e-6, atol: float = 1e-6):
    """Forward solve of stacked members (final-evaluation tolerance): ``(ys (K, nt, nz), ok)``."""
    return solve_batched(
        models,
        data.c0,
        data.drivers_obs,
        data.ts,
        rtol=rtol,
        atol=atol,
        max_steps=8192,
        step_to_knots=False,
    )


__all__ = [
    "BatchResult",
    "BatchState",
    "PAD_TO",
    "make_member",
    "predict_batched",
    "solve_batched",
    "stack",
    "train_batched",
    "train_batched_threads",
    "unstack",
]
