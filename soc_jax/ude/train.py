"""Training the SOC UDE: objective, Adam then L-BFGS, early stopping, ensembles.

The objective combines (see :mod:`soc_jax.ude.losses`)

``L = lambda_traj L_traj + lambda_term L_term + lambda_coll L_coll + lambda_wd L_wd``

in ``"trajectory"`` mode (observations at every time, seed Eq 7 plus Eq 16), or
``L = lambda_term L_term + lambda_wd L_wd`` in ``"terminal"`` mode (seed Eq 16 only). A failed
solve returns the seed's penalty ``1e6 + 0 ||theta||^2`` (see
:func:`~soc_jax.ude.vector_field.safe_loss`).

Optimisation follows the seed (Sec 2.2, Tables 2-7): Adam (optax) with early stopping, then
L-BFGS (``optax.lbfgs``, zoom line search) from the best Adam iterate. Everything is seeded.

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Sec 2.2 and Tables 2-7.
"""

from __future__ import annotations

import dataclasses
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import optax

from soc_jax.ude.column import Column, require_x64
from soc_jax.ude.losses import LIKELIHOODS, collocation_residual, data_misfit
from soc_jax.ude.synthetic import UDEData
from soc_jax.ude.vector_field import NeuralReaction, Transport, UDEVectorField, safe_loss, solve


@dataclasses.dataclass(frozen=True)
class ObjectiveSpec:
    """Static (compile-time) part of the objective.

    Everything that varies between the methods of one case (loss weights, likelihood choice,
    eta, rho, tolerances) is traced (:class:`Weights`), so plain-MSE and noise-aware training of
    one architecture share one compilation.

    Attributes:
        mode: ``"trajectory"`` or ``"terminal"``.
        huber_delta, student_nu, student_scale: fixed settings of the robust likelihoods.
        max_steps: solver step budget during training (a solve that needs more fails and gets
            the penalty; the cost of ``RecursiveCheckpointAdjoint`` grows with the steps taken,
            so a small budget also bounds the cost of a bad iterate).
        dt_fixed: constant step (yr) instead of PID control (tests only).
        step_to_knots: PID steps to the driver sample times (see :func:`solve`).
    """

    mode: str = "terminal"
    huber_delta: float = 0.02
    student_nu: float = 4.0
    student_scale: float = 0.02
    max_steps: int = 400
    dt_fixed: float | None = None
    step_to_knots: bool = False
    checkpoints: int | None = None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (seed Tables 1-7).

    Attributes:
        hidden: hidden sizes (H1, H2).
        activation: ``"tanh"`` or ``"gelu"``.
        lr: Adam learning rate.
        adam_steps: maximum Adam iterations.
        lbfgs_steps: maximum L-BFGS iterations (0 skips L-BFGS).
        lambda_traj, lambda_term, lambda_coll, lambda_wd: loss weights.
        likelihood: data term.
        rho, eta: assumed depth correlation and relative noise level (noise-aware losses).
        output_scale: network output scale s (yr^-1).
        first_order: respiration form (see :class:`NeuralReaction`).
        learn_physics: also learn log D and log v.
        rtol, atol: training tolerances (1e-5, seed Sec 2.2).
        patience: early-stopping patience (iterations without relative improvement > 1e-4).
        ensemble: number of members (different initialisation seeds), predictions averaged.
        seed: base PRNG seed for initialisation.
        step_to_knots: PID steps to the driver sample times (use with noisy drivers; see
            :func:`~soc_jax.ude.vector_field.solve`).
        holdout_every: trajectory mode only: if > 0, the observation times ``t_k`` with
            ``k % holdout_every == 3`` are left out of the loss and used as a validation set
            (noise is independent across times, so they are an honest check); Adam keeps the
            iterate with the lowest validation MSE (against the noisy observations), checked
            every ``val_every`` iterations, and stops after ``patience`` iterations without
            improvement. 0: no hold-out, early stopping on the training loss.
        val_every: validation interval (Adam iterations).
    """

    hidden: tuple[int, int] = (32, 16)
    activation: str = "tanh"
    lr: float = 3e-3
    adam_steps: int = 200
    lbfgs_steps: int = 400
    lambda_traj: float = 1.0
    lambda_term: float = 1.0
    lambda_coll: float = 0.0
    lambda_wd: float = 1e-4
    likelihood: str = "mse"
    rho: float = 0.0
    eta: float = 0.1
    output_scale: float = 0.05
    first_order: bool = True
    learn_physics: bool = False
    rtol: float = 1e-5
    atol: float = 1e-5
    patience: int = 50
    ensemble: int = 1
    seed: int = 0
    step_to_knots: bool = False
    holdout_every: int = 0
    val_every: int = 5

    def objective_spec(self, mode: str) -> ObjectiveSpec:
        """The static objective for ``mode``."""
        return ObjectiveSpec(mode=mode, step_to_knots=self.step_to_knots)


class Weights(eqx.Module):
    """Traced loss weights, likelihood choice and tolerances (changing them does not recompile).

    ``likelihood`` is a one-hot vector over :data:`~soc_jax.ude.losses.LIKELIHOODS`.
    """

    traj: jax.Array
    term: jax.Array
    coll: jax.Array
    wd: jax.Array
    rtol: jax.Array
    atol: jax.Array
    likelihood: jax.Array
    rho: jax.Array
    eta: jax.Array
    train_rows: jax.Array

    @classmethod
    def from_config(cls, cfg: TrainConfig, nt: int | None = None) -> Weights:
        """Weights of ``cfg``; ``nt`` (number of observation times) is needed for a hold-out."""
        if cfg.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {cfg.likelihood!r}; choose from {LIKELIHOODS}")
        f = lambda x: jnp.asarray(x, dtype=float)
        return cls(
            f(cfg.lambda_traj),
            f(cfg.lambda_term),
            f(cfg.lambda_coll),
            f(cfg.lambda_wd),
            f(cfg.rtol),
            f(cfg.atol),
            f([name == cfg.likelihood for name in LIKELIHOODS]),
            f(cfg.rho),
            f(cfg.eta),
            f(holdout_rows(cfg.holdout_every, nt) == 0.0) if nt else f(1.0),
        )


def holdout_rows(holdout_every: int, nt: int) -> jax.Array:
    """1.0 at the held-out rows ``k >= 1`` with ``k % holdout_every == 3``, else 0.0; ``(nt - 1,)``.

    Rows index ``t_1 .. t_{nt-1}`` (the initial profile is prescribed); the last row (the
    terminal profile) is never held out.
    """
    k = jnp.arange(1, nt)
    if holdout_every <= 0:
        return jnp.zeros(nt - 1)
    return ((k % holdout_every == 3) & (k < nt - 1)).astype(float)


def init_model(cfg: TrainConfig, nz: int, key, **network) -> UDEVectorField:
    """A UDE vector field with fresh networks and the documented physical D, v.

    ``network``: further :class:`NeuralReaction` options (``pad_to``, ``select_activation``,
    ``float32``; see :func:`soc_jax.ude.search.make_member`).
    """
    reaction = NeuralReaction(
        hidden=tuple(cfg.hidden),
        activation=cfg.activation,
        output_scale=cfg.output_scale,
        first_order=cfg.first_order,
        key=key,
        **network,
    )
    return UDEVectorField(Transport(), reaction, Column(nz=nz))


def filter_spec(model: UDEVectorField, learn_physics: bool):
    """Boolean PyTree: which leaves are trained (the networks, plus D and v if asked)."""
    spec = jax.tree.map(lambda _: False, model)
    spec = eqx.tree_at(
        lambda m: m.reaction, spec, replace=jax.tree.map(eqx.is_inexact_array, model.reaction)
    )
    if learn_physics:
        spec = eqx.tree_at(
            lambda m: (m.transport.log_diffusivity, m.transport.log_velocity),
            spec,
            replace=(True, True),
        )
    return spec


def _predict(params, static, data: UDEData, weights: Weights, spec: ObjectiveSpec):
    """Solve the model on the training data: (pred (n_times, Nz), ok)."""
    return solve(
        eqx.combine(params, static),
        data.c0,
        data.drivers_obs,
        data.ts,
        rtol=weights.rtol,
        atol=weights.atol,
        max_steps=spec.max_steps,
        dt_fixed=spec.dt_fixed,
        step_to_knots=spec.step_to_knots,
        checkpoints=spec.checkpoints,
    )


def objective(params, static, data: UDEData, weights: Weights, spec: ObjectiveSpec):
    """Scalar training loss (penalised on solver failure)."""
    pred, ok = _predict(params, static, data, weights, spec)
    return loss_from_prediction(pred, ok, params, static, data, weights, spec)


def loss_from_prediction(pred, ok, params, static, data: UDEData, weights: Weights, spec):
    """The training loss of a solved trajectory ``pred`` (nt, nz); see :func:`objective`.

    Split from :func:`objective` so a batched solve (:mod:`soc_jax.ude.search`) can apply the
    same loss to each member.
    """

    def fit(p, o):
        # every likelihood is evaluated (cheap next to the solve) and the traced one-hot weight
        # picks one, so switching likelihood does not recompile
        terms = [
            data_misfit(
                p,
                o,
                name,
                huber_delta=spec.huber_delta,
                student_nu=spec.student_nu,
                student_scale=spec.student_scale,
                rho=weights.rho,
                eta=weights.eta,
            )
            for name in LIKELIHOODS
        ]
        return jnp.dot(weights.likelihood, jnp.stack(terms))

    loss = weights.term * fit(pred[-1], data.soc_obs[-1])
    if spec.mode == "trajectory":
        rows = jnp.broadcast_to(weights.train_rows, (pred.shape[0] - 1,))
        per_row = jax.vmap(fit)(pred[1:], data.soc_obs[1:])
        loss = loss + weights.traj * jnp.sum(rows * per_row) / jnp.sum(rows)
        loss = loss + weights.coll * collocation_residual(
            eqx.combine(params, static), data.soc_obs, data.ts, data.drivers_obs
        )
    elif spec.mode != "terminal":
        raise ValueError(f"mode must be 'trajectory' or 'terminal', got {spec.mode!r}")
    reaction = eqx.combine(params, static).reaction
    if isinstance(reaction, NeuralReaction):
        loss = loss + weights.wd * reaction.weight_decay()
    return safe_loss(loss, ok, params)


_objective_jit = eqx.filter_jit(objective)


@eqx.filter_jit
def _validation_mse(params, static, data: UDEData, weights: Weights, spec: ObjectiveSpec):
    """MSE against the noisy observations on the held-out rows (inf if the solve fails)."""
    pred, ok = _predict(params, static, data, weights, spec)
    held = 1.0 - jnp.broadcast_to(weights.train_rows, (pred.shape[0] - 1,))
    err = jnp.mean((pred[1:] - data.soc_obs[1:]) ** 2, axis=-1)
    val = jnp.sum(held * err) / jnp.maximum(jnp.sum(held), 1.0)
    return jnp.where(ok, val, jnp.inf)


def _sanitise(grads):
    return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grads)


@eqx.filter_jit
def _adam_step(params, opt_state, static, data, weights, spec, optimiser):
    loss, grads = eqx.filter_value_and_grad(objective)(params, static, data, weights, spec)
    grads = _sanitise(grads)
    updates, opt_state = optimiser.update(grads, opt_state, params)
    return eqx.apply_updates(params, updates), opt_state, loss


@eqx.filter_jit
def _lbfgs_step(params, opt_state, static, data, weights, spec, optimiser):
    fn = lambda p: objective(p, static, data, weights, spec)
    value, grads = optax.value_and_grad_from_state(fn)(params, state=opt_state)
    grads = _sanitise(grads)
    updates, opt_state = optimiser.update(
        grads, opt_state, params, value=value, grad=grads, value_fn=fn
    )
    return optax.apply_updates(params, updates), opt_state, value


@eqx.filter_jit
def predict(model: UDEVectorField, data: UDEData, rtol: float = 1e-6, atol: float = 1e-6):
    """Forward solve on the observed drivers (no gradients): ``(ys (nt, nz), ok)``."""
    return solve(model, data.c0, data.drivers_obs, data.ts, rtol=rtol, atol=atol, max_steps=4096)


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
        models: trained vector fields (one per ensemble member).
        history: per-member list of loss values (Adam then L-BFGS).
        final_loss: best training loss per member.
        seconds: wall time (s), compile included.
    """

    models: list
    history: list
    final_loss: list
    seconds: float


# One optimiser object per process: filter_jit treats an optax transformation (a tuple of
# closures) as static, so a fresh ``optax.adam(...)`` per run would recompile the training step
# for every method, ensemble member and grid point. The learning rate is an injected (traced)
# hyperparameter.
_ADAM = optax.inject_hyperparams(optax.adam)(learning_rate=1e-3)
_LBFGS = optax.lbfgs()


def _train_one(cfg, mode, data, key, log_every, label):
    t_start = time.perf_counter()
    model = init_model(cfg, data.z.shape[0], key)
    params, static = eqx.partition(model, filter_spec(model, cfg.learn_physics))
    use_val = mode == "trajectory" and cfg.holdout_every > 0
    weights = Weights.from_config(cfg, data.ts.shape[0] if use_val else None)
    spec = cfg.objective_spec(mode)
    history: list[float] = []
    best, best_params, since = jnp.inf, params, 0
    best_val, val_since = jnp.inf, 0

    adam = _ADAM
    opt_state = adam.init(eqx.filter(params, eqx.is_inexact_array))
    opt_state.hyperparams["learning_rate"] = jnp.asarray(cfg.lr, dtype=float)
    for i in range(cfg.adam_steps):
        new_params, opt_state, loss = _adam_step(
            params, opt_state, static, data, weights, spec, adam
        )
        loss = float(loss)
        history.append(loss)
        if use_val:
            if i % cfg.val_every == 0:
                val = float(_validation_mse(params, static, data, weights, spec))
                if val < best_val:
                    best_val, best, best_params, val_since = val, loss, params, 0
                else:
                    val_since += cfg.val_every
            since = val_since
        elif _improved(loss, best):
            best, best_params, since = loss, params, 0
        else:
            since += 1
        params = new_params
        extra = f" val_mse={best_val:.4e}" if use_val else ""
        _log_iteration(label, "adam", i, loss, cfg.adam_steps, log_every, extra)
        if since >= cfg.patience:
            _log_stop(label, "adam", i, log_every)
            break
    params = best_params
    t_adam = time.perf_counter()
    if cfg.lbfgs_steps > 0 and not use_val:
        best, best_params = _lbfgs_phase(
            params, static, data, weights, spec, cfg, best, best_params, history, log_every, label
        )
    if log_every:
        print(
            f"  [{label}] {len(history)} iterations, adam {t_adam - t_start:.1f} s, "
            f"lbfgs {time.perf_counter() - t_adam:.1f} s (compile included)",
            flush=True,
        )
    return eqx.combine(best_params, static), history, float(best)


def _improved(loss: float, best: float) -> bool:
    """A relative improvement of more than 1e-4 (early stopping's criterion)."""
    return loss < best * (1 - 1e-4)


def _log_iteration(label, phase, i, loss, steps, log_every, extra=""):
    """Print iteration ``i`` of ``steps`` every ``log_every`` iterations and the last (0: never)."""
    if log_every and (i % log_every == 0 or i == steps - 1):
        print(f"  [{label}] {phase} {i:4d} loss={loss:.4e}{extra}", flush=True)


def _log_stop(label, phase, i, log_every):
    """Print that ``phase`` stopped early at iteration ``i`` (``log_every`` 0: silent)."""
    if log_every:
        print(f"  [{label}] {phase} early stop at {i}", flush=True)


def _lbfgs_phase(
    params, static, data, weights, spec, cfg, best, best_params, history, log_every, label
):
    """L-BFGS from ``params``; returns the best ``(loss, params)`` (appends to ``history``)."""
    lbfgs = _LBFGS
    # strong-typed state: optax initialises some line-search counters as weak-typed
    # scalars, which would force a second compilation after the first step
    opt_state = jax.tree.map(
        lambda x: jnp.array(x, dtype=x.dtype) if eqx.is_array(x) else x,
        lbfgs.init(eqx.filter(params, eqx.is_inexact_array)),
    )
    since = 0
    for i in range(cfg.lbfgs_steps):
        new_params, opt_state, loss = _lbfgs_step(
            params, opt_state, static, data, weights, spec, lbfgs
        )
        loss = float(loss)
        history.append(loss)
        if _improved(loss, best):
            best, best_params, since = loss, params, 0
        else:
            since += 1
        params = new_params
        _log_iteration(label, "lbfgs", i, loss, cfg.lbfgs_steps, log_every)
        if since >= max(cfg.patience // 2, 10) or not jnp.isfinite(loss):
            _log_stop(label, "lbfgs", i, log_every)
            break
    # the last L-BFGS iterate may be better than any recorded one
    last = float(_objective_jit(params, static, data, weights, spec))
    if last < best:
        best, best_params = last, params
    return best, best_params


def refine_lbfgs(
    model: UDEVectorField,
    cfg: TrainConfig,
    mode: str,
    data: UDEData,
    *,
    log_every: int = 0,
    label: str = "ude",
):
    """L-BFGS (``cfg.lbfgs_steps``) from a trained model: ``(model, best loss, history)``."""
    require_x64("soc_jax.ude.train")
    params, static = eqx.partition(model, filter_spec(model, cfg.learn_physics))
    weights = Weights.from_config(cfg)
    spec = cfg.objective_spec(mode)
    best = float(_objective_jit(params, static, data, weights, spec))
    history: list[float] = [best]
    if cfg.lbfgs_steps > 0:
        best, params = _lbfgs_phase(
            params, static, data, weights, spec, cfg, best, params, history, log_every, label
        )
    return eqx.combine(params, static), float(best), history


def train(
    cfg: TrainConfig, mode: str, data: UDEData, *, log_every: int = 0, label: str = "ude"
) -> TrainResult:
    """Train ``cfg.ensemble`` UDE members on ``data``.

    Args:
        cfg: hyperparameters.
        mode: ``"trajectory"`` (observations at all times) or ``"terminal"`` (final profile only).
        data: synthetic experiment (networks see ``data.drivers_obs`` and fit ``data.soc_obs``).
        log_every: print the loss every this many iterations (0: silent).
        label: prefix for log lines.

    Returns:
        A :class:`TrainResult`.
    """
    require_x64("soc_jax.ude.train")
    t0 = time.perf_counter()
    keys = jr.split(jr.key(cfg.seed), cfg.ensemble)
    models, histories, finals = [], [], []
    for m in range(cfg.ensemble):
        model, hist, final = _train_one(cfg, mode, data, keys[m], log_every, f"{label}#{m}")
        models.append(model)
        histories.append(hist)
        finals.append(final)
    return TrainResult(models, histories, finals, time.perf_counter() - t0)


def ensemble_predict(models, data: UDEData, rtol: float = 1e-6, atol: float = 1e-6):
    """Mean trajectory of the members (final-evaluation tolerance 1e-6): ``(ys, all_ok)``."""
    preds, oks = zip(*(predict(m, data, rtol, atol) for m in models), strict=True)
    return jnp.mean(jnp.stack(preds), axis=0), bool(jnp.all(jnp.stack(oks)))
