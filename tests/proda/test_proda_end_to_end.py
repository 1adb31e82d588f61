"""End-to-end PRODA (soc_jax.proda.end_to_end): gradients, failed profiles, learning.

* the gradient of the end-to-end loss w.r.t. the network weights equals central finite
  differences (tiny network, three profiles, float64), point and variational objectives;
* a batch with a failing profile (a forcing with a NaN field, flagged by the core) has exactly
  the loss and gradient of the batch without it;
* training on a synthetic world generated from known parameter functions lowers the held-out
  log-SOC misfit of a spatial hold-out that is neither trained nor early-stopped on (the
  validation sites are a third, disjoint set; parameter recovery is measured in
  experiments/end_to_end.py: with 48 training sites and 21 partly non-identifiable
  parameters it is not a reliable test property).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from soc_jax.data.schema import ObservationBatch
from soc_jax.examples import example_forcing
from soc_jax.forcing import Forcing
from soc_jax.grid import N_LAYERS, ZSOI, pchip_interpolate
from soc_jax.models import clm5
from soc_jax.proda import end_to_end as e2e
from soc_jax.proda.network import PRODANet


def _profiles(n: int, seed: int):
    """n CLM5 profiles observed (noise-free) at 4 depths from the midpoint parameters."""
    forcing, _ = example_forcing(n, seed)
    arrays = forcing.as_numpy()
    x = np.asarray(clm5.PARAMETERS.midpoint())
    soc = np.stack(
        [
            np.asarray(clm5.steady_state(x, Forcing(**{k: v[i] for k, v in arrays.items()})).soc)
            for i in range(n)
        ]
    )
    depth = np.tile(np.array([0.05, 0.2, 0.5, 1.0, 0.1]), (n, 1))
    mask = np.tile(np.array([True, True, True, True, False]), (n, 1))
    obs = np.stack(
        [
            np.asarray(pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), soc[i], depth[i]))
            for i in range(n)
        ]
    )
    obs = np.where(
        mask, obs * np.exp(0.1 * np.random.default_rng(seed).standard_normal(obs.shape)), 0
    )
    X = np.random.default_rng(seed + 1).uniform(size=(n, 5))
    return X, forcing, ObservationBatch(depth=depth, soc=obs, mask=mask)


def _with_failure(forcing: Forcing) -> Forcing:
    """The batch plus one profile whose forcing has a NaN field (the core flags it)."""
    arrays = forcing.as_numpy()
    bad = {k: v[:1].copy() for k, v in arrays.items()}
    bad["tsoi"] = np.full_like(bad["tsoi"], np.nan)
    return Forcing(**{k: np.concatenate([arrays[k], bad[k]]) for k in arrays})


def _flat_loss(cfg, model, data, w):
    params, static = eqx.partition(model, eqx.is_array)
    flat, unravel = ravel_pytree(params)
    key = jax.random.key(3)

    def f(theta):
        m = eqx.combine(unravel(theta), static)
        return e2e.batch_loss(m, data, w, key, cfg, training=False)[0]

    return flat, jax.jit(jax.value_and_grad(f))  # one compiled program for values and gradient


@pytest.mark.parametrize(
    "variational",
    [False, pytest.param(True, marks=pytest.mark.slow)],
    ids=["point", "variational"],
)
def test_gradient_matches_finite_differences(variational):
    cfg = e2e.E2EConfig(
        model="clm5", hidden=(3,), variational=variational, n_samples=2, smoothness=0.1
    )
    X, forcing, obs = _profiles(3, seed=11)
    data = e2e.make_data("clm5", X, forcing, obs)
    n_out = 2 * len(clm5.PARAMETERS) if variational else len(clm5.PARAMETERS)
    model = PRODANet(5, n_out, key=jax.random.key(0), hidden=(3,), dtype=jnp.float64)
    theta, vg = _flat_loss(cfg, model, data, jnp.ones(3))
    _, g = vg(theta)
    assert np.all(np.isfinite(np.asarray(g)))
    rng = np.random.default_rng(0)
    for _ in range(2):
        v = jnp.asarray(rng.standard_normal(theta.shape))
        h = 1e-5
        fd = (vg(theta + h * v)[0] - vg(theta - h * v)[0]) / (2 * h)
        ad = jnp.dot(g, v)
        assert abs(float(fd) - float(ad)) <= 1e-6 * max(1.0, abs(float(ad))), (fd, ad)


def test_failing_profile_has_zero_value_and_gradient():
    cfg = e2e.E2EConfig(model="clm5", hidden=(4,))
    X, forcing, obs = _profiles(3, seed=5)
    model = PRODANet(5, len(clm5.PARAMETERS), key=jax.random.key(1), hidden=(4,), dtype=jnp.float64)
    key = jax.random.key(0)
    grad = eqx.filter_jit(
        eqx.filter_value_and_grad(
            lambda m, d, w: e2e.batch_loss(m, d, w, key, cfg, training=False), has_aux=True
        )
    )
    # same shapes (one compiled program): the clean batch repeats profile 3 with weight 0
    X4 = np.concatenate([X, X[-1:]])
    obs4 = ObservationBatch(
        depth=np.concatenate([obs.depth, obs.depth[-1:]]),
        soc=np.concatenate([obs.soc, obs.soc[-1:]]),
        mask=np.concatenate([obs.mask, obs.mask[-1:]]),
    )
    arrays = forcing.as_numpy()
    clean = e2e.make_data(
        "clm5", X4, Forcing(**{k: np.concatenate([v, v[-1:]]) for k, v in arrays.items()}), obs4
    )
    dirty = e2e.make_data("clm5", X4, _with_failure(forcing), obs4)
    # the fourth profile really fails, the others do not
    p = e2e.link_parameters(jax.vmap(model)(dirty.X))
    _, failed = jax.vmap(lambda *a: e2e.profile_nll(*a, cfg))(
        p, dirty.prepared, dirty.depth, dirty.obs, dirty.mask
    )
    assert np.asarray(failed).tolist() == [False, False, False, True]
    (v3, aux3), g3 = grad(model, clean, jnp.array([1.0, 1.0, 1.0, 0.0]))
    (v4, aux4), g4 = grad(model, dirty, jnp.ones(4))
    assert float(aux4[0]) == 1.0 and float(aux3[0]) == 0.0
    np.testing.assert_allclose(float(v4), float(v3), rtol=1e-13)
    for a, b in zip(jax.tree.leaves(g4), jax.tree.leaves(g3), strict=True):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-11, atol=1e-14)


def test_training_on_synthetic_world_lowers_heldout_error():
    from soc_jax.data import covariate_bounds, make_world, minmax_scale
    from soc_jax.data.covariates import covariate_matrix

    world = make_world(60, seed=4, model="clm5", noise=0.05)
    vmin, vmax = covariate_bounds(world.grid)
    X = minmax_scale(covariate_matrix(world.covariates), vmin, vmax)
    data = e2e.make_data("clm5", X, world.forcing_batch(), world.observations(12))
    # three disjoint sets: a spatial held-out test set (the 12 southernmost sites), and the
    # training sites split into training and validation (early stopping, restore-best)
    from soc_jax.proda.train import member_splits

    order = np.argsort(world.lat)
    hold, rest = order[:12], np.sort(order[12:])
    train, val, _ = member_splits(rest, n_seeds=1, val_fraction=0.2, seed=0)
    assert not set(hold) & (set(train[0]) | set(val[0])) and not set(train[0]) & set(val[0])
    cfg = e2e.E2EConfig(
        model="clm5",
        hidden=(16,),
        batch_size=16,
        max_epochs=12,
        patience=12,
        learning_rate=1e-2,
        epochs_per_call=12,
    )
    ens = e2e.new_e2e_ensemble(X.shape[1], train, val, cfg, seed=0)

    def heldout(models):
        p, _ = e2e.predict_normalized(models, X[hold], cfg)
        sub = jax.tree.map(lambda a: a[hold] if eqx.is_array(a) else a, data)
        nll, failed = jax.vmap(lambda *a: e2e.profile_nll(*a, cfg))(
            jnp.asarray(p[0]), sub.prepared, sub.depth, sub.obs, sub.mask
        )
        return float(jnp.sum(nll) / jnp.sum(~failed)), int(jnp.sum(failed))

    before, _ = heldout(ens.state.model)
    ens = e2e.train_e2e(ens, data, cfg)
    after, n_failed = heldout(ens.best_models)
    assert n_failed == 0
    # held-out (southernmost sites, never trained on) log-SOC misfit at least halves
    assert after < 0.5 * before, (before, after)
