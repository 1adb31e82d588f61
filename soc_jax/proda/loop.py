"""One training loop for PRODA's networks, with two losses (two-stage targets, end-to-end misfit).

Both trainers (`soc_jax.proda.train`: the L2 x L1 / L2 loss on calibrated targets;
`soc_jax.proda.end_to_end`: the SOC misfit through the process model) run seeds and bootstraps
as ONE vmapped program with the same mechanics, which live here once:

* the per-member `TrainState` and the `Ensemble` (states, keys, row indices, epochs run);
* one epoch of one member (`epoch`): randomness ``fold_in(fold_in(member_key, 1), epoch)``
  (``fold_in(member_key, 0)`` initialises the weights), split into the shuffle key and the
  batch keys; shuffled minibatches padded with zero-weight rows (`batches`); an optimizer step
  per batch in ``lax.scan``; the validation loss; Keras' early stopping with restore-best
  (`early_stopping`); and the mask that freezes a member once it has stopped (`mask`);
* chunks of epochs as one compiled call (`train_chunk`, vmapped over members) driven by a
  Python loop with progress bar, checkpoints and callback (`run`);
* checkpoints: Equinox leaves plus a JSON header, written atomically, never pickle
  (`write_checkpoint`, `read_header`, `read_checkpoint`).

A trainer supplies its loss as a `Task`: a hashable (static) object with the configuration
(``batch_size``, ``patience``, ``max_epochs``, ``optimizer()``) and the four functions that
differ: the rows of a batch, the batch loss, the validation loss and the epoch's summary.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, PRNGKeyArray

from .network import PRODANet, make_ensemble

__all__ = [
    "TrainState",
    "Ensemble",
    "Task",
    "member_keys",
    "init_models",
    "fresh_state",
    "fresh_ensemble",
    "batches",
    "early_stopping",
    "mask",
    "epoch",
    "member_chunk",
    "train_chunk",
    "run",
    "checkpoint_header",
    "write_checkpoint",
    "read_header",
    "read_checkpoint",
]


class TrainState(eqx.Module):
    """Per-member training state (leaves carry a leading member axis when stacked).

    Attributes:
        model: current network.
        opt_state: optimizer state (Adadelta or Adam accumulators).
        best_model: network at the best validation loss so far (Keras' restore-best).
        best_val: best validation loss.
        best_epoch: epoch (0-based) of ``best_val``; -1 before the first epoch.
        wait: epochs since the last improvement.
        stopped: early stopping has fired (or ``max_epochs`` was reached).
        epoch: epochs run (while not stopped).
        train_loss, val_loss: losses of the last epoch run.
    """

    model: PRODANet
    opt_state: optax.OptState
    best_model: PRODANet
    best_val: Array
    best_epoch: Array
    wait: Array
    stopped: Array
    epoch: Array
    train_loss: Array
    val_loss: Array


class Ensemble(eqx.Module):
    """Everything a run needs to continue or to predict (array leaves only + static config).

    Attributes:
        state: stacked `TrainState` of the M members.
        keys: (M,) member keys.
        train_idx, val_idx: (M, n_train), (M, n_val) row indices.
        epochs_done: number of epochs run so far (all members; stopped ones masked).
    """

    state: TrainState
    keys: Array
    train_idx: Array
    val_idx: Array
    epochs_done: Array

    @property
    def best_models(self) -> PRODANet:
        """Stacked best-validation networks (what PRODA reloads after training)."""
        return self.state.best_model


class Task(Protocol):
    """What a trainer gives the loop: its configuration and its loss (hashable: static in jit).

    Attributes:
        cfg: settings with ``batch_size``, ``patience``, ``max_epochs`` and ``optimizer()``.
        min_batches: batches per epoch at least (1: an empty index set still gives one
            all-padding batch).
    """

    cfg: Any
    min_batches: int

    def weight_dtype(self, data) -> Any:
        """dtype of the 0/1 row weights."""

    def rows(self, data, idx: Array) -> Any:
        """The data rows ``idx`` (b,) of one batch."""

    def batch_loss(self, model: PRODANet, rows, w: Array, key: PRNGKeyArray) -> tuple:
        """``(loss, aux)`` of a training batch (``w`` (b,) 1 real / 0 padding)."""

    def val_loss(self, model: PRODANet, data, idx: Array) -> Array:
        """Validation loss over the rows ``idx``."""

    def summary(self, losses: Array, aux, n_train: int) -> dict:
        """State fields of the epoch (``train_loss``, ...) from the per-batch ``loss * sum(w)``
        and the stacked auxiliary outputs."""


# -- initialisation -------------------------------------------------------------------------------


def member_keys(seed: int, m: int) -> Array:
    """(m,) member keys: member ``i`` gets ``fold_in(key(seed), i)``."""
    base = jax.random.key(seed)
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(m))


def init_models(keys: PRNGKeyArray, n_in: int, n_out: int, cfg) -> PRODANet:
    """Stacked networks, Glorot-uniform from ``fold_in(key, 0)`` of each member key."""
    return make_ensemble(
        jax.vmap(lambda k: jax.random.fold_in(k, 0))(keys),
        n_in,
        n_out,
        hidden=cfg.hidden,
        dropout=cfg.dropout,
        dtype=cfg.jdtype,
    )


def fresh_state(cls, models: PRODANet, opt, m: int, dtype, **extra) -> TrainState:
    """State ``cls`` of ``m`` members before the first epoch (losses zero, best +inf)."""
    opt_state = eqx.filter_vmap(lambda mod: opt.init(eqx.filter(mod, eqx.is_array)))(models)
    return cls(
        model=models,
        opt_state=opt_state,
        best_model=models,
        best_val=jnp.full(m, jnp.inf, dtype),
        best_epoch=jnp.full(m, -1, jnp.int32),
        wait=jnp.zeros(m, jnp.int32),
        stopped=jnp.zeros(m, bool),
        epoch=jnp.zeros(m, jnp.int32),
        train_loss=jnp.zeros(m, dtype),
        val_loss=jnp.zeros(m, dtype),
        **extra,
    )


def fresh_ensemble(cls, state: TrainState, keys: Array, train_idx, val_idx) -> Ensemble:
    """Ensemble ``cls`` with no epoch run."""
    return cls(
        state=state,
        keys=keys,
        train_idx=jnp.asarray(train_idx, jnp.int32),
        val_idx=jnp.asarray(val_idx, jnp.int32),
        epochs_done=jnp.asarray(0, jnp.int32),
    )


# -- one epoch of one member ----------------------------------------------------------------------


def batches(idx: Array, batch_size: int, dtype, min_batches: int = 0) -> tuple[Array, Array]:
    """Pad ``idx`` (n,) to whole batches: (n_batches, batch) indices and 0/1 row weights."""
    n = idx.shape[0]
    nb = max(min_batches, math.ceil(n / batch_size))
    pad = nb * batch_size - n
    w = jnp.concatenate([jnp.ones(n, dtype), jnp.zeros(pad, dtype)])
    idx = jnp.concatenate([idx, jnp.zeros(pad, idx.dtype)])
    return idx.reshape(nb, batch_size), w.reshape(nb, batch_size)


def early_stopping(state, model, val_loss, epoch, patience: int, max_epochs: int) -> dict:
    """Keras EarlyStopping bookkeeping (min_delta 0, mode min, restore-best) for one member.

    Returns the fields ``best_model, best_val, best_epoch, wait, stopped, epoch`` of the next
    state; shared by the two-stage and the end-to-end training.
    """
    improved = val_loss < state.best_val
    wait = jnp.where(improved, 0, state.wait + 1)
    n_epochs = state.epoch + 1
    return dict(
        best_model=jax.tree.map(
            lambda a, b: jnp.where(improved, a, b),
            eqx.filter(model, eqx.is_array),
            eqx.filter(state.best_model, eqx.is_array),
        ),
        best_val=jnp.where(improved, val_loss, state.best_val),
        best_epoch=jnp.where(improved, epoch, state.best_epoch),
        wait=wait,
        stopped=(wait >= patience) | (n_epochs >= max_epochs),
        epoch=n_epochs,
    )


def mask(stopped: Array, old, new):
    """``old`` where the member has stopped, else ``new`` (array leaves only)."""
    old_a, static = eqx.partition(old, eqx.is_array)
    new_a = eqx.filter(new, eqx.is_array)
    return eqx.combine(jax.tree.map(lambda a, b: jnp.where(stopped, a, b), old_a, new_a), static)


def _shuffled_batches(key, epoch, data, train_idx: Array, task: Task):
    """The epoch's shuffled batches: (n_batches, batch) rows, 0/1 weights and batch keys."""
    k_epoch = jax.random.fold_in(jax.random.fold_in(key, 1), epoch)  # fold_in(key, 0): init
    k_perm, k_batch = jax.random.split(k_epoch)
    order = train_idx[jax.random.permutation(k_perm, train_idx.shape[0])]
    b_idx, b_w = batches(order, task.cfg.batch_size, task.weight_dtype(data), task.min_batches)
    return b_idx, b_w, jax.random.split(k_batch, b_idx.shape[0])


def _descend(model: PRODANet, opt_state, data, schedule, task: Task):
    """One optimizer step per batch of ``schedule`` (``lax.scan``): the trained model, the
    optimizer state, the per-batch ``loss * sum(w)`` and the stacked auxiliary outputs."""
    opt = task.cfg.optimizer()

    def step(carry, batch):
        model, opt_state = carry
        i, w, k = batch
        (loss, aux), grads = eqx.filter_value_and_grad(task.batch_loss, has_aux=True)(
            model, task.rows(data, i), w, k
        )
        updates, opt_state = opt.update(grads, opt_state, eqx.filter(model, eqx.is_array))
        model = eqx.apply_updates(model, updates)
        return (model, opt_state), (loss * jnp.sum(w), aux)

    (model, opt_state), (losses, aux) = jax.lax.scan(step, (model, opt_state), schedule)
    return model, opt_state, losses, aux


def epoch(state: TrainState, key, epoch, data, train_idx, val_idx, task: Task) -> TrainState:
    """One epoch of one member (then masked if the member had already stopped)."""
    schedule = _shuffled_batches(key, epoch, data, train_idx, task)
    model, opt_state, losses, aux = _descend(state.model, state.opt_state, data, schedule, task)
    val_loss = task.val_loss(model, data, val_idx)
    cfg = task.cfg
    new = type(state)(
        model=model,
        opt_state=opt_state,
        **early_stopping(state, model, val_loss, epoch, cfg.patience, cfg.max_epochs),
        val_loss=val_loss,
        **task.summary(losses, aux, train_idx.shape[0]),
    )
    return mask(state.stopped, state, new)


def member_chunk(state, key, epochs, data, train_idx, val_idx, task: Task):
    """Epochs ``epochs`` (k,) of one member in one ``lax.scan``."""

    def body(s, e):
        return epoch(s, key, e, data, train_idx, val_idx, task), None

    state, _ = jax.lax.scan(body, state, epochs)
    return state


@eqx.filter_jit
def train_chunk(state, keys, epochs, data, train_idx, val_idx, task: Task):
    """The epochs ``epochs`` (k,) of every member: vmapped over members, one compiled call."""
    return eqx.filter_vmap(
        lambda s, k, ti, vi: member_chunk(s, k, epochs, data, ti, vi, task),
    )(state, keys, train_idx, val_idx)


# -- the Python loop over compiled chunks ---------------------------------------------------------


def _progress_bar(desc: str | None, total: int, start: int):
    """A tqdm bar over epochs described ``desc`` (None: no bar)."""
    if desc is None:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=desc, unit="epoch")


def run(
    ens: Ensemble,
    data,
    task: Task,
    *,
    save: Callable[[Ensemble], None] | None = None,
    save_every: int = 1,
    progress: str | None = None,
    postfix: Callable[[TrainState], dict] | None = None,
    max_epochs_now: int | None = None,
    callback: Callable[[Ensemble], None] | None = None,
) -> Ensemble:
    """Train every member until each has stopped (or ``cfg.max_epochs``), a chunk of
    ``cfg.epochs_per_call`` epochs per compiled call.

    Args:
        ens: fresh or resumed `Ensemble` (any subclass).
        data: the task's data (shared by all members; they index their own rows).
        task: the `Task` (configuration and loss).
        save: writes a checkpoint; called every ``save_every`` chunks and at the end.
        progress: tqdm bar over epochs with this description (None: no bar).
        postfix: the bar's fields from the state after each chunk.
        max_epochs_now: stop this call after this many more epochs (to simulate interruption).
        callback: called with the ensemble after each chunk.
    """
    cfg = task.cfg
    start = int(ens.epochs_done)
    stop = cfg.max_epochs if max_epochs_now is None else min(cfg.max_epochs, start + max_epochs_now)
    bar = _progress_bar(progress, cfg.max_epochs, start)
    chunk_no = 0
    e = start
    while e < stop and not bool(jnp.all(ens.state.stopped)):
        k = min(cfg.epochs_per_call, stop - e)
        epochs = jnp.arange(e, e + k, dtype=jnp.int32)
        state = train_chunk(ens.state, ens.keys, epochs, data, ens.train_idx, ens.val_idx, task)
        e += k
        ens = dataclasses.replace(ens, state=state, epochs_done=jnp.asarray(e, jnp.int32))
        chunk_no += 1
        if bar is not None:
            bar.set_postfix(**(postfix(state) if postfix else {}), refresh=False)
            bar.update(k)
        if save is not None and chunk_no % save_every == 0:
            save(ens)
        if callback is not None:
            callback(ens)
    if bar is not None:
        bar.close()
    if save is not None:
        save(ens)
    return ens


# -- checkpoints (Equinox serialisation + JSON header; never pickle) -----------------------------


def checkpoint_header(fmt: str, ens: Ensemble, cfg, *, n_out: bool = True) -> dict:
    """The JSON header of a checkpoint: format, config, sizes, epochs run and time."""
    layers = ens.state.model.layers
    sizes = {"n_in": int(layers[0].weight.shape[-1])}
    if n_out:
        sizes["n_out"] = int(layers[-1].weight.shape[-2])
    return {
        "format": fmt,
        "config": dataclasses.asdict(cfg),
        "n_members": int(ens.train_idx.shape[0]),
        "n_train": int(ens.train_idx.shape[1]),
        "n_val": int(ens.val_idx.shape[1]),
        **sizes,
        "epochs_done": int(ens.epochs_done),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_checkpoint(path: str | os.PathLike, ens: Ensemble, header: dict) -> None:
    """Write ``path`` (Equinox leaves, keys as key data) and ``path + '.json'`` atomically."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tree = dataclasses.replace(ens, keys=jax.random.key_data(ens.keys))
    eqx.tree_serialise_leaves(path + ".tmp", tree)
    with open(path + ".json.tmp", "w") as f:
        json.dump(header, f, indent=1)
    os.replace(path + ".tmp", path)
    os.replace(path + ".json.tmp", path + ".json")


def read_header(path: str | os.PathLike, fmt: str | None = None, what: str = "") -> dict:
    """The JSON header of a checkpoint (checked to be of format ``fmt`` if given)."""
    with open(os.fspath(path) + ".json") as f:
        header = json.load(f)
    if fmt is not None and header.get("format") != fmt:
        raise ValueError(f"{path}: not a soc_jax {what} checkpoint")
    return header


def read_checkpoint(path: str | os.PathLike, like: Ensemble) -> Ensemble:
    """The ensemble stored at ``path``, of the structure of ``like`` (fresh, same sizes)."""
    like = dataclasses.replace(like, keys=jax.random.key_data(like.keys))
    ens = eqx.tree_deserialise_leaves(os.fspath(path), like)
    return dataclasses.replace(ens, keys=jax.random.wrap_key_data(ens.keys))
