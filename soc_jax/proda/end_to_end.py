"""End-to-end differentiable PRODA: covariates -> network -> steady state -> SOC misfit.

The two-stage PRODA pipeline calibrates every profile by MCMC, then fits a network to the
posterior means. Here ONE network is trained through the steady state of every profile:

``X (60 scaled covariates) -> network -> raw outputs -> link -> p (normalized, (0, 1)) ->
physical parameters -> steady state of the prepared profile (CLM5 or COMPAS, float64, implicit
gradients of the core) -> PCHIP at the observed node depths (`soc_jax.calibration.observe`) ->
misfit``.

Choices (documented in docs/end_to_end.md):

* **Link** ``"sigmoid"`` (default): ``p = sigmoid(raw)``; the raw output is the unconstrained
  logit, every parameter stays strictly inside the prior box and the gradient never vanishes
  abruptly. ``"clip"`` is PRODA's clipping (``p > 1 -> 1``, ``p <= 0 -> 1e-4``); it has zero
  gradient outside (0, 1], so a member whose output leaves the box stops learning that
  parameter. The link is stored in the network header (``"link"``) and `soc-jax predict`
  applies it (`soc_jax.proda.predict.apply_link`).
* **Misfit** ``"log"`` (default): per profile ``sum_l (log m_l - log o_l)^2 / (2 sigma^2)`` over
  observed layers (the negative log-likelihood of log-normal noise, ``sigma`` = 0.2 = the
  synthetic world's default noise; modelled SOC floored at 1e-6 gC m-3 before the log).
  ``"proda"``: PRODA's cost (`soc_jax.calibration.likelihood.cost`: CLM5 rank-weighted, COMPAS
  ``5 (1 - NSE)``), the same density the AM sampler targets.
* **Failures**: a failed steady state (`soc_jax.models.is_failure`) is removed from the batch:
  its value AND gradient are exactly zero (the double-where pattern: the failed SOC is replaced
  by 1 gC m-3 before the log) and the batch mean runs over the profiles that did not fail, so a
  batch with a failing profile has exactly the gradient of the batch without it.
* **Regularisers** (optional): ``smoothness`` x mean ``||p(x + d) - p(x)||^2 / eps^2`` with a
  random covariate perturbation ``d`` of norm ~``eps`` (smoothness of the parameter fields in
  covariate space); ``prior_weight`` x mean ``((p - m) / s)^2`` toward calibrated posteriors
  ``(m, s)`` where they exist (rows with ``prior_w = 1``).
* **Amortised posterior** (``variational=True``): the network outputs ``(mu, log s)`` (2 n_par)
  of a diagonal Gaussian on the logit scale ``z``; loss = minus the ELBO per profile,
  ``E_q[-nll(sigmoid z) + log prior(z)] + sum log s`` (uniform prior on the normalized box seen
  in ``z``: `soc_jax.calibration.likelihood.log_prior_unconstrained`), estimated with
  ``n_samples`` reparameterised draws (failed draws are left out of the average).

Training: Optax Adam (with global-norm clipping) on shuffled minibatches of profiles; seeds and
bootstraps (`soc_jax.proda.train.member_splits`) as ONE vmapped program (``eqx.filter_vmap``
over members, ``lax.scan`` over batches and epochs); early stopping on each member's held-out
profiles (validation: the misfit at the posterior mean / point estimate) with restore-best;
checkpoints (``eqx.tree_serialise_leaves`` + JSON header, never pickle) and resume (randomness
``fold_in(member_key, epoch)``: a resumed run equals an uninterrupted one). `export_network`
writes the best members in the two-stage network format so `soc-jax predict` runs on either.

Units: SOC in gC m-3, depths in m, losses dimensionless.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, PRNGKeyArray

from ..calibration.likelihood import cost, log_prior_unconstrained, observe
from ..models.registry import get_model, is_failure
from . import loop
from .loop import Ensemble, TrainState
from .network import HIDDEN, PRODANet

__all__ = [
    "E2EConfig",
    "E2EData",
    "E2EState",
    "E2EEnsemble",
    "LINKS",
    "MISFITS",
    "make_data",
    "link_parameters",
    "profile_nll",
    "batch_loss",
    "new_e2e_ensemble",
    "train_e2e",
    "predict_normalized",
    "posterior_samples",
    "save_e2e_checkpoint",
    "load_e2e_checkpoint",
    "export_network",
    "default_mode",
]


LINKS = ("sigmoid", "clip")
MISFITS = ("log", "proda")
_FLOOR = 1e-6  # gC m-3, modelled SOC floor before the log


def default_mode(model: str) -> str:
    """Steady-state mode of the synthetic world for ``model`` (CLM5 proda, COMPAS documented)."""
    return {"clm5": "proda", "compas": "documented"}[model]


@dataclasses.dataclass(frozen=True)
class E2EConfig:
    """Settings of end-to-end training.

    Attributes:
        model: ``"clm5"`` or ``"compas"``. mode: steady-state mode (default: `default_mode`).
        link: ``"sigmoid"`` (default) or ``"clip"`` (PRODA's clipping; point estimates only).
        misfit: ``"log"`` (log-normal NLL with ``sigma``) or ``"proda"`` (PRODA's cost).
        sigma: log-scale observation sd of the ``"log"`` misfit (dimensionless, 0.2).
        variational: train the amortised posterior (network outputs mean and log-scale).
        n_samples: reparameterised draws per profile and step (variational).
        init_log_scale: offset added to the log-scale outputs (initial scale ~exp(-3)).
        smoothness, smooth_eps: covariate-space smoothness penalty weight and step (scaled
            covariate units).
        prior_weight: weight of the pull toward calibrated posteriors.
        batch_size: profiles per step. max_epochs, patience: early stopping.
        learning_rate: Adam step. clip_norm: global gradient-norm clip.
        hidden: hidden widths. dropout: dropout rate. dtype: network dtype.
        epochs_per_call: epochs per compiled call (progress/checkpoint granularity).
    """

    model: str = "clm5"
    mode: str = ""
    link: str = "sigmoid"
    misfit: str = "log"
    sigma: float = 0.2
    variational: bool = False
    n_samples: int = 4
    init_log_scale: float = -3.0
    smoothness: float = 0.0
    smooth_eps: float = 0.05
    prior_weight: float = 0.0
    batch_size: int = 32
    max_epochs: int = 200
    patience: int = 20
    learning_rate: float = 1e-3
    clip_norm: float = 10.0
    hidden: tuple[int, ...] = HIDDEN
    dropout: float = 0.0
    dtype: str = "float64"
    epochs_per_call: int = 1

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        get_model(self.model)
        if not self.mode:
            object.__setattr__(self, "mode", default_mode(self.model))
        if self.link not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {self.link!r}")
        if self.misfit not in MISFITS:
            raise ValueError(f"misfit must be one of {MISFITS}, got {self.misfit!r}")
        if self.variational and self.link != "sigmoid":
            raise ValueError("the variational posterior lives on the logit scale: link='sigmoid'")
        if self.batch_size < 1 or self.max_epochs < 1 or self.patience < 1:
            raise ValueError("batch_size, max_epochs and patience must be >= 1")
        if self.n_samples < 1 or self.sigma <= 0 or self.learning_rate <= 0:
            raise ValueError("n_samples >= 1, sigma > 0 and learning_rate > 0 are required")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

    @property
    def jdtype(self):
        return jnp.dtype(self.dtype)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(self.clip_norm), optax.adam(self.learning_rate)
        )


class E2EData(eqx.Module):
    """Profiles for end-to-end training (leading axis n everywhere).

    Attributes:
        X: (n, n_in) scaled covariates in [0, 1].
        prepared: the model's batched ``Prepared`` profiles (`prepare(forcing, mode)`).
        depth, obs, mask: (n, w) observed node depths (m), SOC (gC m-3, > 0 where observed),
            observed-layer mask.
        prior_mean, prior_sd: (n, n_par) calibrated posterior mean / sd (normalized).
        prior_w: (n,) 1 where a calibrated posterior exists, else 0.
    """

    X: Array
    prepared: Any
    depth: Array
    obs: Array
    mask: Array
    prior_mean: Array
    prior_sd: Array
    prior_w: Array

    @property
    def n(self) -> int:
        return int(self.X.shape[0])


def make_data(
    model: str,
    X: np.ndarray,
    forcing,
    obs,
    *,
    mode: str | None = None,
    prior_mean: np.ndarray | None = None,
    prior_sd: np.ndarray | None = None,
    prior_w: np.ndarray | None = None,
    dtype=jnp.float64,
) -> E2EData:
    """Assemble `E2EData`: prepares every profile once (one compiled call).

    Args:
        model: ``"clm5"`` or ``"compas"``. X: (n, n_in) scaled covariates.
        forcing: `soc_jax.forcing.Forcing` with leading axis n.
        obs: `soc_jax.data.ObservationBatch` (depth, soc, mask), n rows.
        mode: steady-state mode (default `default_mode`).
        prior_mean, prior_sd, prior_w: optional calibrated posteriors (normalized units).
    """
    module = get_model(model)
    mode = mode or default_mode(model)
    prepared = jax.jit(lambda f: module.prepare(f, mode))(jax.tree.map(jnp.asarray, forcing))
    n = X.shape[0]
    n_par = len(module.PARAMETERS)
    pm = np.full((n, n_par), 0.5) if prior_mean is None else np.asarray(prior_mean, float)
    ps = np.ones((n, n_par)) if prior_sd is None else np.maximum(np.asarray(prior_sd, float), 1e-3)
    if prior_w is None:
        prior_w = np.zeros(n) if prior_mean is None else np.ones(n)
    return E2EData(
        X=jnp.asarray(X, dtype),
        prepared=prepared,
        depth=jnp.asarray(obs.depth, jnp.float64),
        obs=jnp.asarray(obs.soc, jnp.float64),
        mask=jnp.asarray(obs.mask, bool),
        prior_mean=jnp.asarray(pm, jnp.float64),
        prior_sd=jnp.asarray(ps, jnp.float64),
        prior_w=jnp.asarray(prior_w, jnp.float64),
    )


def _take(data: E2EData, idx: Array) -> E2EData:
    return jax.tree.map(lambda a: a[idx] if eqx.is_array(a) else a, data)


def link_parameters(raw: Array, link: str = "sigmoid") -> Array:
    """Normalized parameters from raw network outputs: sigmoid or PRODA's clipping."""
    if link == "sigmoid":
        return jax.nn.sigmoid(raw)
    if link == "clip":
        return jnp.where(raw > 1.0, 1.0, jnp.where(raw <= 0.0, 1e-4, raw))
    raise ValueError(f"link must be one of {LINKS}, got {link!r}")


def profile_nll(p: Array, prepared, depth: Array, obs: Array, mask: Array, cfg: E2EConfig):
    """Misfit of ONE profile at normalized parameters ``p`` and whether its steady state failed.

    Returns:
        ``(nll, failed)``: nll is finite always and exactly 0 (value and gradient) if failed.
    """
    module = get_model(cfg.model)
    x = module.PARAMETERS.to_physical(jnp.asarray(p, jnp.float64))
    r = module.steady_state(x, prepared)
    failed = is_failure(r)
    soc = jnp.where(failed, 1.0, r.soc)
    pred = observe(soc, depth, mask)
    if cfg.misfit == "log":
        safe_obs = jnp.where(mask, obs, 1.0)
        safe_pred = jnp.where(mask, jnp.maximum(pred, _FLOOR), 1.0)
        e = jnp.where(mask, jnp.log(safe_pred) - jnp.log(safe_obs), 0.0)
        nll = jnp.sum(e * e) / (2.0 * cfg.sigma**2)
    else:
        nll = cost(cfg.model, pred, jnp.where(mask, obs, 1.0), depth, mask)
    failed = failed | ~jnp.isfinite(nll)
    return jnp.where(failed, 0.0, nll), failed


def _raw(model: PRODANet, X: Array, key, training: bool) -> Array:
    if training and model.dropout > 0:
        keys = jax.random.split(key, X.shape[0])
        return jax.vmap(lambda x, k: model(x, key=k, training=True))(X, keys)
    return jax.vmap(model)(X)


def batch_loss(
    model: PRODANet, data: E2EData, w: Array, key: PRNGKeyArray, cfg: E2EConfig, training=True
):
    """Loss of a batch (``data`` holds the batch rows; ``w`` (b,) 1 real / 0 padding).

    Point estimate: mean NLL over rows that did not fail + regularisers. Variational: minus the
    mean ELBO. Returns ``(loss, (n_failed, n_real))``; failed weights are counted per draw
    (variational) or per profile.
    """
    n_par = len(get_model(cfg.model).PARAMETERS)
    k_drop, k_eps, k_smooth = jax.random.split(key, 3)
    raw = _raw(model, data.X, k_drop, training).astype(jnp.float64)
    vm = jax.vmap(lambda p, pr, d, o, m: profile_nll(p, pr, d, o, m, cfg))
    if not cfg.variational:
        p = link_parameters(raw, cfg.link)
        nll, failed = vm(p, data.prepared, data.depth, data.obs, data.mask)
        okw = w * (~failed)
        loss = jnp.sum(okw * nll) / jnp.maximum(jnp.sum(okw), 1.0)
        n_failed = jnp.sum(w * failed)
    else:
        mu, logs = raw[:, :n_par], raw[:, n_par:] + cfg.init_log_scale
        eps = jax.random.normal(k_eps, (cfg.n_samples, *mu.shape), jnp.float64)
        z = mu[None] + jnp.exp(logs)[None] * eps  # (S, b, P)
        nll, failed = jax.vmap(
            lambda zz: vm(jax.nn.sigmoid(zz), data.prepared, data.depth, data.obs, data.mask)
        )(z)
        lp = jax.vmap(jax.vmap(log_prior_unconstrained))(z)  # (S, b)
        ok = ~failed
        n_ok = jnp.sum(ok, axis=0)
        e_term = jnp.sum(jnp.where(ok, -nll + lp, 0.0), axis=0) / jnp.maximum(n_ok, 1)
        elbo = e_term + jnp.sum(logs, axis=1)
        rw = w * (n_ok > 0)
        loss = -jnp.sum(rw * elbo) / jnp.maximum(jnp.sum(rw), 1.0)
        p = jax.nn.sigmoid(mu)
        n_failed = jnp.sum(w[None] * failed) / cfg.n_samples
    if cfg.prior_weight > 0:
        pw = w * data.prior_w
        r = (p - data.prior_mean) / data.prior_sd
        loss = loss + cfg.prior_weight * jnp.sum(pw * jnp.mean(r * r, axis=1)) / jnp.maximum(
            jnp.sum(pw), 1.0
        )
    if cfg.smoothness > 0:
        d = jax.random.normal(k_smooth, data.X.shape, data.X.dtype)
        d = cfg.smooth_eps * d / math.sqrt(data.X.shape[1])
        raw2 = _raw(model, data.X + d, k_drop, training).astype(jnp.float64)[:, :n_par]
        p2 = link_parameters(raw2, cfg.link)
        p1 = link_parameters(raw[:, :n_par], cfg.link)
        sm = jnp.sum((p2 - p1) ** 2, axis=1) / cfg.smooth_eps**2
        loss = loss + cfg.smoothness * jnp.sum(w * sm) / jnp.maximum(jnp.sum(w), 1.0)
    return loss, (n_failed, jnp.sum(w))


def _val_loss(model, data: E2EData, idx: Array, cfg: E2EConfig):
    """Validation misfit: mean NLL at the point estimate / posterior mean over held-out rows
    that did not fail (batches of ``batch_size``), and the failed count."""
    n_par = len(get_model(cfg.model).PARAMETERS)
    b_idx, b_w = loop.batches(idx, cfg.batch_size, jnp.float64, min_batches=1)

    def one(carry, bw):
        i, w = bw
        d = _take(data, i)
        raw = jax.vmap(model)(d.X).astype(jnp.float64)[:, :n_par]
        p = link_parameters(raw, cfg.link)
        nll, failed = jax.vmap(lambda *a: profile_nll(*a, cfg))(
            p, d.prepared, d.depth, d.obs, d.mask
        )
        okw = w * (~failed)
        s, c, f = carry
        return (s + jnp.sum(okw * nll), c + jnp.sum(okw), f + jnp.sum(w * failed)), None

    z = jnp.zeros((), jnp.float64)
    (s, c, f), _ = jax.lax.scan(one, (z, z, z), (b_idx, b_w))
    return s / jnp.maximum(c, 1.0), f


class E2EState(TrainState):
    """Per-member training state (leading member axis when stacked).

    Attributes:
        model, opt_state, best_model, best_val, best_epoch, wait, stopped, epoch: as in
            `soc_jax.proda.loop.TrainState` (validation = held-out misfit).
        train_loss, val_loss: last epoch's losses. failed_fraction: last epoch's fraction of
            failed steady states in training.
    """

    failed_fraction: Array


class E2EEnsemble(Ensemble):
    """Stacked members (`E2EState`), their keys and row indices, and the epochs run."""


def _n_out(cfg: E2EConfig) -> int:
    n = len(get_model(cfg.model).PARAMETERS)
    return 2 * n if cfg.variational else n


def _init_state(keys, n_in: int, cfg: E2EConfig, init_models: PRODANet | None = None):
    models = loop.init_models(keys, n_in, _n_out(cfg), cfg) if init_models is None else init_models
    m = keys.shape[0]
    z = jnp.zeros(m, jnp.float64)
    return loop.fresh_state(E2EState, models, cfg.optimizer(), m, jnp.float64, failed_fraction=z)


def new_e2e_ensemble(
    n_in: int,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    cfg: E2EConfig,
    seed: int = 0,
    init_models: PRODANet | None = None,
) -> E2EEnsemble:
    """A fresh ensemble (member ``i``: key ``fold_in(key(seed), i)``).

    ``init_models`` (stacked, M members, ``n_par`` outputs, e.g. two-stage networks) start the
    members from trained weights; their outputs are read through ``cfg.link`` (a two-stage
    network fitted to logit targets suits ``"sigmoid"``).
    """
    keys = loop.member_keys(seed, train_idx.shape[0])
    state = _init_state(keys, n_in, cfg, init_models)
    return loop.fresh_ensemble(E2EEnsemble, state, keys, train_idx, val_idx)


@dataclasses.dataclass(frozen=True)
class EndToEnd:
    """The end-to-end loss for `soc_jax.proda.loop`: `batch_loss` (the misfit through the
    process model) on `E2EData` rows, validation by `_val_loss`; failed steady states are
    counted (``failed_fraction``)."""

    cfg: E2EConfig
    min_batches: int = 1

    def weight_dtype(self, data):
        return jnp.float64

    def rows(self, data: E2EData, idx: Array) -> E2EData:
        return _take(data, idx)

    def batch_loss(self, model: PRODANet, rows: E2EData, w: Array, key: PRNGKeyArray):
        return batch_loss(model, rows, w, key, self.cfg)

    def val_loss(self, model: PRODANet, data: E2EData, idx: Array) -> Array:
        return _val_loss(model, data, idx, self.cfg)[0]

    def summary(self, losses: Array, aux, n_train: int) -> dict:
        nfs, nrs = aux
        return dict(
            train_loss=jnp.sum(losses) / jnp.maximum(jnp.sum(nrs), 1.0),
            failed_fraction=jnp.sum(nfs) / jnp.maximum(jnp.sum(nrs), 1.0),
        )


def train_e2e(
    ens: E2EEnsemble,
    data: E2EData,
    cfg: E2EConfig,
    *,
    checkpoint: str | os.PathLike | None = None,
    extra: dict | None = None,
    progress: bool = False,
    max_epochs_now: int | None = None,
    callback: Callable[[E2EEnsemble], None] | None = None,
) -> E2EEnsemble:
    """Train every member until each has stopped (early stopping) or ``cfg.max_epochs``.

    Args:
        ens: fresh (`new_e2e_ensemble`) or resumed (`load_e2e_checkpoint`) ensemble.
        data: `E2EData` of all profiles (members index their own rows).
        cfg: `E2EConfig`.
        checkpoint: path written after every compiled call (resumable).
        extra: JSON-serialisable fields stored in the checkpoint header.
        progress: tqdm bar over epochs with train/validation loss and failed fraction.
        max_epochs_now: stop this call after this many more epochs (interruption in tests).
        callback: called with the ensemble after each compiled call.
    """
    if not bool(jnp.all(jnp.isfinite(data.X))):
        raise ValueError("covariates must be finite (drop rows with NaN covariates first)")
    return loop.run(
        ens,
        data,
        EndToEnd(cfg),
        save=None
        if checkpoint is None
        else lambda e: save_e2e_checkpoint(checkpoint, e, cfg, extra),
        progress="end-to-end" if progress else None,
        postfix=lambda state: dict(
            loss=f"{float(jnp.median(state.train_loss)):.4g}",
            val=f"{float(jnp.median(state.val_loss)):.4g}",
            failed=f"{float(jnp.mean(state.failed_fraction)):.3f}",
            running=int(jnp.sum(~state.stopped)),
        ),
        max_epochs_now=max_epochs_now,
        callback=callback,
    )


# -- prediction ---------------------------------------------------------------------------------


@eqx.filter_jit
def _raw_all(models, X):
    return eqx.filter_vmap(lambda m: jax.vmap(m)(X))(models)


def predict_normalized(models, X, cfg: E2EConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """(M, n, n_par) normalized parameters (posterior median for the variational network) and,
    if variational, the (M, n, n_par) logit-scale sds."""
    n_par = len(get_model(cfg.model).PARAMETERS)
    raw = np.asarray(_raw_all(models, jnp.asarray(X, cfg.jdtype)), float)
    p = np.asarray(link_parameters(jnp.asarray(raw[..., :n_par]), cfg.link))
    if cfg.variational:
        return p, np.exp(raw[..., n_par:] + cfg.init_log_scale)
    return p, None


def posterior_samples(model: PRODANet, X, cfg: E2EConfig, n: int, seed: int = 0) -> np.ndarray:
    """(n, rows, n_par) draws of normalized parameters from ONE variational member."""
    if not cfg.variational:
        raise ValueError("posterior_samples needs a variational network")
    n_par = len(get_model(cfg.model).PARAMETERS)
    raw = np.asarray(jax.vmap(model)(jnp.asarray(X, cfg.jdtype)), float)
    mu, s = raw[:, :n_par], np.exp(raw[:, n_par:] + cfg.init_log_scale)
    eps = np.random.default_rng(seed).standard_normal((n, *mu.shape))
    return 1.0 / (1.0 + np.exp(-(mu[None] + s[None] * eps)))


# -- checkpoints ------------------------------------------------------------------------------

_FORMAT = "soc_jax.proda.end_to_end/1"


def save_e2e_checkpoint(path, ens: E2EEnsemble, cfg: E2EConfig, extra: dict | None = None):
    """Write ``path`` (Equinox leaves) and ``path.json`` (header) atomically; never pickle."""
    header = {**loop.checkpoint_header(_FORMAT, ens, cfg, n_out=False), **(extra or {})}
    loop.write_checkpoint(path, ens, header)


def load_e2e_checkpoint(path) -> tuple[E2EEnsemble, E2EConfig, dict]:
    """Read an ensemble written by `save_e2e_checkpoint`: ``(ensemble, config, header)``."""
    header = loop.read_header(path, _FORMAT, "end-to-end")
    cfg = E2EConfig(**header["config"])
    m = header["n_members"]
    like = new_e2e_ensemble(
        header["n_in"],
        np.zeros((m, header["n_train"]), np.int32),
        np.zeros((m, header["n_val"]), np.int32),
        cfg,
    )
    return loop.read_checkpoint(path, like), cfg, header


def export_network(path, ens: E2EEnsemble, cfg: E2EConfig, extra: dict | None = None) -> None:
    """Write the best members in the two-stage network format (`soc_jax.proda.train`), so that
    `soc-jax predict` and `load_checkpoint` read them; the header records ``link`` (the
    variational network exports its mean head: the posterior median of p)."""
    from .train import Ensemble, TrainConfig, TrainState, keras_adadelta, save_checkpoint

    n_par = len(get_model(cfg.model).PARAMETERS)
    best = ens.state.best_model
    if cfg.variational:
        last = best.layers[-1]
        m = last.weight.shape[0]
        fresh = eqx.filter_vmap(
            lambda k: eqx.nn.Linear(last.in_features, n_par, key=k, dtype=cfg.jdtype)
        )(jax.random.split(jax.random.key(0), m))
        last = eqx.tree_at(
            lambda lin: (lin.weight, lin.bias),
            fresh,
            (last.weight[:, :n_par], last.bias[:, :n_par]),
        )
        best = eqx.tree_at(lambda m: m.layers[-1], best, last)
    tcfg = TrainConfig(
        loss=cfg.model,
        dropout=cfg.dropout,
        batch_size=cfg.batch_size,
        max_epochs=cfg.max_epochs,
        patience=cfg.patience,
        dtype=cfg.dtype,
        hidden=cfg.hidden,
    )
    opt = keras_adadelta()
    opt_state = eqx.filter_vmap(lambda m: opt.init(eqx.filter(m, eqx.is_array)))(best)
    st = ens.state
    state = TrainState(
        model=best,
        opt_state=opt_state,
        best_model=best,
        best_val=st.best_val.astype(cfg.jdtype),
        best_epoch=st.best_epoch,
        wait=st.wait,
        stopped=st.stopped,
        epoch=st.epoch,
        train_loss=st.train_loss.astype(cfg.jdtype),
        val_loss=st.val_loss.astype(cfg.jdtype),
    )
    out = Ensemble(
        state=state,
        keys=ens.keys,
        train_idx=ens.train_idx,
        val_idx=ens.val_idx,
        epochs_done=ens.epochs_done,
    )
    save_checkpoint(path, out, tcfg, {**(extra or {}), "link": cfg.link, "end_to_end": True})
