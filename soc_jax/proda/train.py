"""Training PRODA's network: seeds and bootstraps as ONE vmapped program (SPEC 7).

Every ensemble member (the 10 best-guess seeds and the 200 bootstrap resamples of PRODA) trains
with Keras' recipe: Adadelta (learning rate 0.001, rho 0.95, eps 1e-7), batches of 32 shuffled
each epoch with a last partial batch, validation loss after each epoch (batches of 32, averaged
weighted by batch size, dropout off), early stopping with patience (1200 in PRODA) and restore
of the best weights.

The members do not run in a Python loop: one member's epoch is a pure function (`lax.scan` over
batches), `eqx.filter_vmap` stacks it over members, and `lax.scan` runs a chunk of epochs inside
one compiled call. A member that has stopped keeps computing in lock-step but its state is
masked (``where(stopped, old, new)``), so it is exactly the state it stopped with. Every
member's row indices (its training and validation rows) are fixed arrays of the same shape, so
bootstraps (resamples with replacement) and seeds share one program; the data are not copied
per member. Randomness per epoch is ``fold_in(member_key, epoch)``, which makes an interrupted
and resumed run identical to an uninterrupted one.

The loop itself (state, batches, masking, early stopping, checkpoints) is `soc_jax.proda.loop`,
shared with the end-to-end trainer; this module gives it the two-stage loss (`TwoStage`).
Checkpoints (`save_checkpoint` / `load_checkpoint`) use ``eqx.tree_serialise_leaves`` and a
JSON header, never pickle.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from . import loop
from .loop import (
    Ensemble,
    TrainState,
    batches,
    checkpoint_header,
    fresh_ensemble,
    fresh_state,
    init_models,
    member_keys,
    read_checkpoint,
    write_checkpoint,
)
from .losses import get_loss
from .network import HIDDEN, PRODANet

__all__ = [
    "TrainConfig",
    "TrainState",
    "Ensemble",
    "keras_adadelta",
    "member_splits",
    "init_state",
    "train_chunk",
    "train_ensemble",
    "train_member_chunk",
    "new_ensemble",
    "read_header",
    "TrainingData",
    "training_data",
    "recovery_table",
    "never_improved",
    "never_improved_lines",
    "save_checkpoint",
    "load_checkpoint",
]


KERAS_LEARNING_RATE, KERAS_RHO, KERAS_EPS = 1e-3, 0.95, 1e-7
"""tf.keras' Adadelta defaults (learning rate, rho, epsilon): PRODA's optimizer."""


def keras_adadelta(
    learning_rate: float = KERAS_LEARNING_RATE, rho: float = KERAS_RHO, eps: float = KERAS_EPS
) -> optax.GradientTransformation:
    """tf.keras' ``'adadelta'`` (defaults lr 0.001, rho 0.95, epsilon 1e-7) in optax.

    optax's own default learning rate is ``None`` (no sign flip: gradient *ascent*) and its
    defaults rho 0.9, eps 1e-6 differ from Keras'; always go through this function.
    """
    # optax.adadelta adds a (zero) weight decay that needs params at update time; the chain
    # below is the same update without it.
    return optax.chain(
        optax.scale_by_adadelta(rho=rho, eps=eps), optax.scale_by_learning_rate(learning_rate)
    )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training settings (PRODA's Keras values by default).

    Attributes:
        loss: ``"clm5"`` (joint L2 x L1) or ``"compas"`` (L2).
        dropout: dropout rate (0 for CLM5, 0.2 for COMPAS in PRODA).
        batch_size: rows per batch (32).
        max_epochs: epoch limit (6000).
        patience: early-stopping patience in epochs (1200).
        learning_rate, rho, eps: Adadelta settings (Keras: 1e-3, 0.95, 1e-7).
        dtype: ``"float32"`` (Keras) or ``"float64"``.
        epochs_per_call: epochs per compiled call (progress bar and checkpoint granularity).
        hidden: hidden widths (PRODA: 256, 512, 512, 256; smaller only for quick tests).
    """

    loss: str = "clm5"
    dropout: float = 0.0
    batch_size: int = 32
    max_epochs: int = 6000
    patience: int = 1200
    learning_rate: float = KERAS_LEARNING_RATE
    rho: float = KERAS_RHO
    eps: float = KERAS_EPS
    dtype: str = "float32"
    epochs_per_call: int = 10
    hidden: tuple[int, ...] = HIDDEN

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        get_loss(self.loss)
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be >= 1")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")
        if self.epochs_per_call < 1:
            raise ValueError("epochs_per_call must be >= 1")

    def optimizer(self) -> optax.GradientTransformation:
        return keras_adadelta(self.learning_rate, self.rho, self.eps)

    @property
    def jdtype(self):
        return jnp.dtype(self.dtype)


def member_splits(
    n_rows,
    n_seeds: int = 10,
    n_bootstrap: int = 0,
    *,
    val_fraction: float = 0.1,
    split: str = "shuffled",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Training and validation row indices of every member; validation never overlaps training.

    Each member first sets aside its validation rows (early stopping and restore-best), then
    trains on the rest: best-guess (seed) members on all remaining rows, bootstrap members on
    PRODA's resample with replacement ``sort(choice(rest, len(rest)))`` of the remaining rows
    (numpy's generator, seeded; not MATLAB's ``rng(7)`` stream). A row is one profile, so a
    member's validation profiles are never among its training profiles, and a bootstrap
    duplicate can never leak into validation. ``split="shuffled"`` (default): each member's
    validation rows are a random ``val_fraction`` of the rows; ``split="keras"``: the last
    ``val_fraction`` of the rows in order (Keras' ``validation_split``, no shuffle), the same
    for every member.

    Args:
        n_rows: number of rows, or an array of the row indices the members may use (e.g. the
            training rows left after a hold-out, `soc_jax.proda.holdout`): the indices
            returned are then rows of that array's table, and rows outside it (held-out
            profiles) are never in any member's training or validation set.
        n_seeds, n_bootstrap: members of each kind.
        val_fraction: share of the rows each member validates on, in (0, 1).
        split: ``"shuffled"`` or ``"keras"``.
        seed: random seed.

    Returns:
        ``(train_idx (M, n_train), val_idx (M, n_val), kinds)`` with ``M = n_seeds +
        n_bootstrap``, ``n_train = int(n (1 - val_fraction))``, ``n_val = n - n_train`` and kinds
        ``"seed"`` / ``"bootstrap"`` per member.
    """
    if split not in ("keras", "shuffled"):
        raise ValueError(f"split must be 'keras' or 'shuffled', got {split!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if np.ndim(n_rows) == 0:
        pool = np.arange(int(n_rows))
    else:
        pool = np.sort(np.asarray(n_rows, dtype=np.int64))
        if len(np.unique(pool)) != len(pool):
            raise ValueError("the row indices given to member_splits must be distinct")
    n = len(pool)
    n_train = int(n * (1.0 - val_fraction))
    if n_train < 1 or n_train >= n:
        raise ValueError(f"{n} rows leave no training or no validation rows")
    if n_seeds + n_bootstrap < 1:
        raise ValueError("need at least one member (n_seeds + n_bootstrap >= 1)")
    rng = np.random.default_rng(seed)
    boot = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    kinds = ["seed"] * n_seeds + ["bootstrap"] * n_bootstrap
    train, val = [], []
    for kind in kinds:
        order = rng.permutation(n) if split == "shuffled" else np.arange(n)
        rest, v = order[:n_train], order[n_train:]
        if kind == "bootstrap":
            rest = np.sort(boot.choice(rest, n_train, replace=True))
        train.append(pool[rest])
        val.append(pool[v])
    return np.stack(train).astype(np.int32), np.stack(val).astype(np.int32), kinds


def init_state(keys: PRNGKeyArray, n_in: int, n_out: int, cfg: TrainConfig) -> TrainState:
    """Stacked initial state of ``len(keys)`` members (Glorot-uniform init from each key)."""
    models = init_models(keys, n_in, n_out, cfg)
    return fresh_state(TrainState, models, cfg.optimizer(), keys.shape[0], cfg.jdtype)


def _eval_loss(model: PRODANet, X: Array, Y: Array, idx: Array, cfg: TrainConfig) -> Array:
    """Keras' validation loss: batches of ``batch_size`` in order, mean weighted by batch size."""
    loss_fn = get_loss(cfg.loss)
    b_idx, b_w = batches(idx, cfg.batch_size, X.dtype)

    def one(carry, bw):
        i, w = bw
        y_hat = jax.vmap(model)(X[i])
        return carry + loss_fn(Y[i], y_hat, w) * jnp.sum(w), None

    total, _ = jax.lax.scan(one, jnp.zeros((), X.dtype), (b_idx, b_w))
    return total / idx.shape[0]


@dataclasses.dataclass(frozen=True)
class TwoStage:
    """The two-stage loss for `soc_jax.proda.loop`: the network's outputs against calibrated
    targets (``cfg.loss``: CLM5's L2 x L1 or COMPAS' L2), Keras' dropout in training; the data
    are ``(X (n, n_in), Y (n, n_par))``."""

    cfg: TrainConfig
    min_batches: int = 0

    def weight_dtype(self, data):
        return data[0].dtype

    def rows(self, data, idx: Array):
        X, Y = data
        return X[idx], Y[idx]

    def batch_loss(self, model: PRODANet, rows, w: Array, key: PRNGKeyArray):
        x, y = rows
        y_hat = jax.vmap(lambda xi, ki: model(xi, key=ki, training=True))(
            x, jax.random.split(key, x.shape[0])
        )
        return get_loss(self.cfg.loss)(y, y_hat, w), ()

    def val_loss(self, model: PRODANet, data, idx: Array) -> Array:
        X, Y = data
        return _eval_loss(model, X, Y, idx, self.cfg)

    def summary(self, losses: Array, aux, n_train: int) -> dict:
        return {"train_loss": jnp.sum(losses) / n_train}


def train_chunk(
    state: TrainState,
    keys: PRNGKeyArray,
    epochs: Array,
    X: Array,
    Y: Array,
    train_idx: Array,
    val_idx: Array,
    cfg: TrainConfig,
) -> TrainState:
    """Run the epochs ``epochs`` (k,) of every member: vmapped over members, one compiled call.

    Args:
        state: stacked `TrainState` (M members).
        keys: (M,) member keys.
        epochs: (k,) epoch numbers (0-based; they seed each epoch's shuffle and dropout).
        X: (n, 60) scaled covariates; Y: (n, n_par) normalized targets (shared by all members).
        train_idx: (M, n_train) and val_idx: (M, n_val) row indices per member.
        cfg: `TrainConfig` (static).
    """
    return loop.train_chunk(state, keys, epochs, (X, Y), train_idx, val_idx, TwoStage(cfg))


@eqx.filter_jit
def train_member_chunk(state, key, epochs, X, Y, train_idx, val_idx, cfg):
    """The same epochs for ONE member (unbatched state): the one-by-one baseline."""
    return loop.member_chunk(state, key, epochs, (X, Y), train_idx, val_idx, TwoStage(cfg))


def new_ensemble(
    n_in: int,
    n_out: int,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: TrainConfig,
    seed: int = 0,
) -> Ensemble:
    """A fresh ensemble: member ``i`` gets key ``fold_in(key(seed), i)``."""
    keys = member_keys(seed, train_idx.shape[0])
    return fresh_ensemble(Ensemble, init_state(keys, n_in, n_out, cfg), keys, train_idx, val_idx)


def train_ensemble(
    ens: Ensemble,
    X: np.ndarray,
    Y: np.ndarray,
    cfg: TrainConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    progress: bool = False,
    max_epochs_now: int | None = None,
    callback: Callable[[Ensemble], None] | None = None,
) -> Ensemble:
    """Train every member until each has stopped (or ``cfg.max_epochs``).

    Args:
        ens: `Ensemble` (fresh from `new_ensemble` or resumed by `load_checkpoint`).
        X: (n, n_in) scaled covariates in [0, 1] (no NaN).
        Y: (n, n_par) normalized targets.
        cfg: `TrainConfig`.
        checkpoint: path to write the ensemble to every ``checkpoint_every`` chunks.
        progress: tqdm progress bar over epochs.
        max_epochs_now: stop this call after this many more epochs (to simulate interruption).
        callback: called with the ensemble after each chunk.

    Returns:
        The trained `Ensemble`.
    """
    X = jnp.asarray(X, cfg.jdtype)
    Y = jnp.asarray(Y, cfg.jdtype)
    if not (bool(jnp.all(jnp.isfinite(X))) and bool(jnp.all(jnp.isfinite(Y)))):
        raise ValueError("X and Y must be finite (drop rows with NaN covariates first)")
    return loop.run(
        ens,
        (X, Y),
        TwoStage(cfg),
        save=None if checkpoint is None else lambda e: save_checkpoint(checkpoint, e, cfg),
        save_every=checkpoint_every,
        progress="training" if progress else None,
        postfix=lambda state: dict(
            running=int(jnp.sum(~state.stopped)),
            best_val=f"{float(jnp.median(state.best_val)):.4g}",
        ),
        max_epochs_now=max_epochs_now,
        callback=callback,
    )


# -- checkpoints (Equinox serialisation + JSON header; never pickle) -----------------------------

_FORMAT = "soc_jax.proda.ensemble/1"


def save_checkpoint(
    path: str | os.PathLike, ens: Ensemble, cfg: TrainConfig, extra: dict | None = None
) -> None:
    """Write ``path`` (Equinox leaves) and ``path + '.json'`` (header) atomically.

    ``extra`` (JSON-serialisable) is stored in the header (e.g. covariate bounds, names).
    """
    header = {**checkpoint_header(_FORMAT, ens, cfg), **(extra or {})}
    if extra is None and os.path.exists(os.fspath(path) + ".json"):  # keep earlier extra fields
        header = {**read_header(path), **header}
    write_checkpoint(path, ens, header)


def read_header(path: str | os.PathLike) -> dict:
    """The JSON header of a checkpoint."""
    return loop.read_header(path)


def load_checkpoint(path: str | os.PathLike) -> tuple[Ensemble, TrainConfig, dict]:
    """Read an ensemble written by `save_checkpoint`.

    Returns:
        ``(ensemble, config, header)``.
    """
    header = loop.read_header(path, _FORMAT, "PRODA ensemble")
    cfg = TrainConfig(**header["config"])
    m = header["n_members"]
    like = new_ensemble(
        header["n_in"],
        header["n_out"],
        np.zeros((m, header["n_train"]), np.int32),
        np.zeros((m, header["n_val"]), np.int32),
        cfg,
    )
    return read_checkpoint(path, like), cfg, header


# -- training table -----------------------------------------------------------------------------


@dataclasses.dataclass
class TrainingData:
    """The network's (X, Y) table and the account of the profiles left out.

    Attributes:
        X: (n, 60) covariates min-max scaled with the grid's bounds, clipped to [0, 1].
        Y: (n, n_par) normalized target parameters.
        profile_id: (n,) ids of the rows kept.
        parameter_names: names of the Y columns.
        vmin, vmax: (60,) the grid's covariate bounds used for scaling.
        dropped: ids of every profile left out (any reason), reported, never silent.
        excluded: profile id -> reason, for every profile left out.
        counts: ``targets`` (profiles in the targets), ``used``, ``failed`` (skipped, no valid
            chain, failed or non-finite target: never targets), ``filtered`` (site filter),
            ``input`` (no covariates with the id, or non-finite covariates).
        site_filter: ``"on"``, ``"off"`` or ``"not available"`` (`select_targets`).
        target_var: the target variable read.
    """

    X: np.ndarray
    Y: np.ndarray
    profile_id: np.ndarray
    parameter_names: list[str]
    vmin: np.ndarray
    vmax: np.ndarray
    dropped: list[str]
    excluded: dict[str, str] = dataclasses.field(default_factory=dict)
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    site_filter: str = "not available"
    target_var: str = ""

    def reason_counts(self) -> dict[str, int]:
        """Number of profiles left out per reason."""
        out: dict[str, int] = {}
        for r in self.excluded.values():
            out[r] = out.get(r, 0) + 1
        return out


def training_data(
    covariates, grid, targets, target_var: str | None = None, *, site_filter: bool = True
) -> TrainingData:
    """Assemble (X, Y) from covariates, the grid (for the scaling bounds) and targets.

    Only results are targets (`soc_jax.proda.targets.select_targets`): skipped profiles,
    profiles without a valid chain, failed ones and non-finite rows never are; PRODA's site
    filter (``filter_pass``) applies when ``site_filter`` and the targets have it. Profiles
    without covariates (by ``profile_id``) or with non-finite covariates are left out too.
    Every profile left out is in ``excluded`` with its reason.

    Args:
        covariates: covariates Dataset (profile, covariate) with ``profile_id``.
        grid: grid Dataset with ``covariates`` (cell, covariate) (min/max source, SPEC 7).
        targets: Dataset with normalized parameters (profile, parameter) and ``profile_id``:
            variable ``target_var``, else the first of `TARGET_VARIABLES` found (``p`` of
            truth.nc, ``para_summary_mean`` of posterior.nc).
        target_var: name of the target variable (optional).
        site_filter: apply the site filter (default True).

    Returns:
        `TrainingData`; rows are matched by ``profile_id``.
    """
    from ..data import covariate_bounds, minmax_scale
    from ..data.covariates import covariate_matrix
    from .targets import select_targets, target_variable

    target_var = target_variable(targets, target_var)
    t = targets[target_var]
    pdim = [d for d in t.dims if d != "parameter"][0]
    Y = np.asarray(t.transpose(pdim, "parameter").values, dtype=float)
    t_ids = np.asarray(targets["profile_id"].values).astype(str)
    sel = select_targets(targets, Y, site_filter=site_filter)
    category, reason = sel.category.copy(), sel.reason.copy()
    c_ids = np.asarray(covariates["profile_id"].values).astype(str)
    pos = {pid: i for i, pid in enumerate(c_ids)}
    vmin, vmax = covariate_bounds(grid)
    X_all = minmax_scale(covariate_matrix(covariates), vmin, vmax)
    X = np.full((len(t_ids), X_all.shape[1]), np.nan)
    has = np.array([pid in pos for pid in t_ids], dtype=bool)
    X[has] = X_all[[pos[pid] for pid in t_ids[has]]]
    for rows, text in (
        (~has, "no covariates with this profile_id"),
        (has & ~np.all(np.isfinite(X), axis=1), "non-finite covariates"),
    ):
        new = rows & (category == "used")
        category[new], reason[new] = "input", text
    good = category == "used"
    counts = {"targets": len(t_ids)}
    counts.update({c: int(np.sum(category == c)) for c in ("used", "failed", "filtered", "input")})
    excluded = {str(i): str(r) for i, r in zip(t_ids[~good], reason[~good], strict=True)}
    return TrainingData(
        X=X[good],
        Y=Y[good],
        profile_id=t_ids[good],
        parameter_names=[str(n) for n in targets["parameter"].values],
        vmin=vmin,
        vmax=vmax,
        dropped=list(excluded),
        excluded=excluded,
        counts=counts,
        site_filter=sel.site_filter,
        target_var=target_var,
    )


def never_improved(state) -> np.ndarray:
    """(M,) True for members whose validation loss never improved on +inf (non-finite losses
    from the first epoch): their "best" network is the untrained initialisation."""
    return (np.asarray(state.best_epoch) < 0) | ~np.isfinite(np.asarray(state.best_val, float))


def never_improved_lines(state, kinds: list[str]) -> list[str]:
    """A terminal line counting the members that never improved (none: no line)."""
    bad = never_improved(state)
    if not bad.any():
        return []
    k = np.asarray(kinds)[bad]
    return [
        f"members that never improved (non-finite validation loss; untrained weights): "
        f"{int(bad.sum())} ({int(np.sum(k == 'seed'))} seeds, {int(np.sum(k == 'bootstrap'))} "
        "bootstraps); `soc-jax predict` leaves them out"
    ]


def recovery_table(pred: np.ndarray, target: np.ndarray, names: list[str]) -> list[dict]:
    """Per-parameter R2 and RMSE of predictions against targets (normalized units).

    R2 is ``1 - SSE / SST``; for a target with (near) zero variance it is reported as None
    (only the RMSE is meaningful).
    """
    rows = []
    for j, name in enumerate(names):
        err = pred[:, j] - target[:, j]
        sst = np.sum((target[:, j] - target[:, j].mean()) ** 2)
        r2 = float(1.0 - np.sum(err**2) / sst) if sst > 1e-12 * len(err) else None
        rows.append({"parameter": name, "r2": r2, "rmse": float(np.sqrt(np.mean(err**2)))})
    return rows
