"""Ensemble training: splits, vmapped == alone, early stopping by masking, resume, recovery."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from soc_jax.proda.train import (
    TrainConfig,
    load_checkpoint,
    member_splits,
    new_ensemble,
    train_chunk,
    train_ensemble,
    train_member_chunk,
    training_data,
)

SMALL = (32, 24)  # mechanics tests: a small network (the full one is tested in test_network.py)


def _toy(n=90, n_par=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(size=(n, 60))
    Y = 0.2 + 0.6 / (1 + np.exp(-3 * (X[:, :n_par] - X[:, n_par : 2 * n_par])))
    return X, Y


def test_member_splits_keras_and_bootstrap():
    tr, va, kinds = member_splits(50, n_seeds=2, n_bootstrap=3, split="keras", seed=3)
    assert kinds == ["seed", "seed", "bootstrap", "bootstrap", "bootstrap"]
    assert tr.shape == (5, 45) and va.shape == (5, 5)  # int(50 * 0.9) training rows
    np.testing.assert_array_equal(tr[0], np.arange(45))  # Keras: last 10 % validate
    np.testing.assert_array_equal(va[1], np.arange(45, 50))
    boot = np.concatenate([tr[2], va[2]])
    assert np.all(np.diff(boot) >= 0)  # sorted resample with replacement
    assert len(np.unique(boot)) < 50
    assert va[2].min() >= tr[2].max()  # validation = highest indices of the resample
    tr_s, va_s, _ = member_splits(50, n_seeds=2, seed=3)
    assert not np.array_equal(tr_s[0], tr_s[1])  # shuffled per member
    assert sorted(np.concatenate([tr_s[0], va_s[0]])) == list(range(50))


def _slice(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def test_vmapped_ensemble_equals_members_trained_alone():
    X, Y = _toy()
    tr, va, _ = member_splits(len(X), n_seeds=2, n_bootstrap=1, seed=1)
    cfg = TrainConfig(
        dropout=0.2, dtype="float64", max_epochs=3, patience=10, learning_rate=1.0, hidden=SMALL
    )
    ens = new_ensemble(60, Y.shape[1], tr, va, cfg, seed=4)
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    epochs = jnp.arange(3, dtype=jnp.int32)
    together = train_chunk(ens.state, ens.keys, epochs, Xj, Yj, ens.train_idx, ens.val_idx, cfg)
    for i in range(3):
        alone = train_member_chunk(
            _slice(ens.state, i), ens.keys[i], epochs, Xj, Yj, ens.train_idx[i], ens.val_idx[i], cfg
        )
        for a, b in zip(
            jax.tree.leaves(eqx.filter(alone, eqx.is_array)),
            jax.tree.leaves(eqx.filter(_slice(together, i), eqx.is_array)),
            strict=True,
        ):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # members really differ (different keys and rows) and really trained
    assert not np.allclose(together.model.layers[0].weight[0], together.model.layers[0].weight[1])
    assert np.all(np.asarray(together.val_loss) < np.asarray(together.val_loss).max() * 10)
    assert not np.allclose(together.model.layers[0].weight, ens.state.model.layers[0].weight)


# one configuration shared by the early-stopping and resume tests (one compilation)
STOP_CFG = TrainConfig(
    dtype="float64", max_epochs=40, patience=2, learning_rate=3.0, epochs_per_call=1, hidden=SMALL
)


def test_early_stopping_masks_stopped_members_keras_semantics():
    X, Y = _toy(n=80)
    tr, va, _ = member_splits(len(X), n_seeds=4, seed=2)
    cfg = STOP_CFG
    ens = new_ensemble(60, Y.shape[1], tr, va, cfg, seed=0)
    history = []
    ens = train_ensemble(ens, X, Y, cfg, callback=lambda e: history.append(e.state))
    val = np.stack([np.asarray(s.val_loss) for s in history])  # (epochs run, members)
    assert np.asarray(history[-1].stopped).all()
    assert (np.asarray(ens.state.epoch) < 40).any(), "no member stopped early: nothing checked"
    for m in range(4):
        # Keras EarlyStopping (min_delta 0, patience 2) replayed on this member's val losses
        best, wait, stop_at = np.inf, 0, None
        for e, v in enumerate(val[:, m]):
            if v < best:
                best, wait, best_epoch = v, 0, e
            else:
                wait += 1
            if wait >= 2 or e + 1 >= 40:
                stop_at = e
                break
        assert int(ens.state.epoch[m]) == stop_at + 1
        assert float(ens.state.best_val[m]) == best
        assert int(ens.state.best_epoch[m]) == best_epoch
        # after stopping, the member's state never changed again (masked)
        for s in history[stop_at + 1 :]:
            np.testing.assert_array_equal(
                s.model.layers[2].weight[m], history[stop_at].model.layers[2].weight[m]
            )
            assert float(s.val_loss[m]) == val[stop_at, m]
    # restore-best: the best model's validation loss is best_val
    from soc_jax.proda.train import _eval_loss

    for m in range(4):
        best_m = jax.tree.map(lambda a: a[m], ens.best_models)
        v = _eval_loss(best_m, jnp.asarray(X), jnp.asarray(Y), ens.val_idx[m], cfg)
        np.testing.assert_allclose(float(v), float(ens.state.best_val[m]), rtol=1e-12)


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    X, Y = _toy(n=80)
    tr, va, _ = member_splits(len(X), n_seeds=2, n_bootstrap=2, seed=5)
    cfg = STOP_CFG
    straight = train_ensemble(new_ensemble(60, 3, tr, va, cfg, seed=9), X, Y, cfg, max_epochs_now=6)
    path = tmp_path / "ckpt.eqx"
    first = train_ensemble(
        new_ensemble(60, 3, tr, va, cfg, seed=9), X, Y, cfg, checkpoint=path, max_epochs_now=3
    )
    assert int(first.epochs_done) == 3
    resumed, cfg2, header = load_checkpoint(path)
    assert cfg2 == cfg and header["epochs_done"] == 3
    resumed = train_ensemble(resumed, X, Y, cfg2, max_epochs_now=3)
    assert int(resumed.epochs_done) == 6
    for a, b in zip(
        jax.tree.leaves(eqx.filter(straight.state, eqx.is_array)),
        jax.tree.leaves(eqx.filter(resumed.state, eqx.is_array)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        jax.random.key_data(straight.keys), jax.random.key_data(resumed.keys)
    )
    # a different run really differs (the comparison above can fail)
    other = train_ensemble(new_ensemble(60, 3, tr, va, cfg, seed=8), X, Y, cfg, max_epochs_now=6)
    assert not np.allclose(
        other.state.model.layers[0].weight, straight.state.model.layers[0].weight
    )


def test_training_data_drops_and_reports_nan_rows():
    import xarray as xr

    from soc_jax.data import covariates_dataset

    rng = np.random.default_rng(0)
    cov = rng.uniform(size=(5, 60))
    cov[2, 7] = np.nan
    c = covariates_dataset(cov, profile_id=np.array(["a", "b", "c", "d", "e"], dtype=object))
    g = covariates_dataset(rng.uniform(size=(20, 60)), dim="cell")
    t = xr.Dataset(
        {"p": (("profile", "parameter"), rng.uniform(size=(4, 2)))},
        coords={
            "profile_id": ("profile", np.array(["e", "c", "a", "z"], dtype=object)),
            "parameter": ["x", "y"],
        },
    )
    d = training_data(c, g, t)
    assert list(d.profile_id) == ["e", "a"]
    assert sorted(d.dropped) == ["c", "z"]
    np.testing.assert_array_equal(d.Y, t["p"].values[[0, 2]])
    assert d.X.min() >= 0 and d.X.max() <= 1


def test_ensemble_recovers_true_parameters_on_small_world():
    from soc_jax.data import make_world

    world = make_world(300, seed=2, grid_resolution=10.0)
    d = training_data(world.covariates, world.grid, world.truth)
    n_train = 240
    tr, va, _ = member_splits(n_train, n_seeds=2, seed=0)
    # Adadelta with lr 1 (Zeiler's setting) instead of Keras' 1e-3, so it trains in seconds
    cfg = TrainConfig(max_epochs=80, patience=80, learning_rate=1.0, epochs_per_call=40)
    ens = train_ensemble(
        new_ensemble(60, d.Y.shape[1], tr, va, cfg), d.X[:n_train], d.Y[:n_train], cfg
    )
    x_test = jnp.asarray(d.X[n_train:], jnp.float32)
    pred = eqx.filter_vmap(lambda m: jax.vmap(m)(x_test))(ens.best_models)
    p = np.asarray(pred, float).mean(axis=0)
    y = d.Y[n_train:]
    varying = world.truth["amplitude"].values > 0
    r2 = 1 - ((p - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0).clip(1e-300)
    assert np.all(r2[varying] > 0.8), dict(zip(np.array(d.parameter_names)[varying], r2[varying]))
    assert np.abs(p - y)[:, ~varying].mean() < 0.02
