"""PRODA network: Keras' Glorot-uniform init, forward pass, exact losses, Keras' Adadelta."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.proda import PRODANet, clm5_loss, compas_loss, keras_adadelta, make_ensemble


def test_architecture_and_glorot_init():
    net = PRODANet(60, 21, key=jax.random.key(0), dtype=jnp.float64)
    shapes = [layer.weight.shape for layer in net.layers]
    assert shapes == [(256, 60), (512, 256), (512, 512), (256, 512), (21, 256)]
    for layer in net.layers:
        fan_out, fan_in = layer.weight.shape
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        w = np.asarray(layer.weight)
        assert np.all(np.abs(w) <= limit)
        assert np.all(np.asarray(layer.bias) == 0.0)
        # U(-l, l) has variance l^2 / 3 (Glorot & Bengio 2010); 15k+ samples per layer
        assert np.var(w) == pytest.approx(limit**2 / 3.0, rel=0.05)
        assert abs(np.mean(w)) < 0.05 * limit


def test_forward_equals_numpy_mlp():
    net = PRODANet(60, 5, key=jax.random.key(1), dtype=jnp.float64)
    x = np.random.default_rng(0).uniform(size=(7, 60))
    h = x
    for i, layer in enumerate(net.layers):
        h = h @ np.asarray(layer.weight).T + np.asarray(layer.bias)
        if i < len(net.layers) - 1:
            h = np.maximum(h, 0.0)
    got = jax.vmap(net)(jnp.asarray(x))
    np.testing.assert_allclose(got, h, rtol=1e-12, atol=1e-14)


def test_dropout_is_inverted_dropout_and_off_in_inference():
    net = PRODANet(4, 3, key=jax.random.key(2), hidden=(2000,), dropout=0.2, dtype=jnp.float64)
    x = jnp.linspace(0.1, 0.9, 4)
    assert np.allclose(net(x), net(x, key=jax.random.key(3), training=False))
    # hidden pre-activations, then a manual dropout with the same mask rule
    h = jax.nn.relu(net.layers[0](x))
    keys = jax.random.split(jax.random.key(3), 2)
    keep = jax.random.bernoulli(keys[0], 0.8, h.shape)
    expected = net.layers[1](jnp.where(keep, h / 0.8, 0.0))
    np.testing.assert_allclose(net(x, key=jax.random.key(3), training=True), expected, rtol=1e-12)
    assert 0.75 < float(jnp.mean(keep)) < 0.85
    with pytest.raises(ValueError, match="key"):
        net(x, training=True)


def test_losses_equal_hand_computed_values():
    y = jnp.array([[0.5, 0.25], [0.2, 0.8]])
    y_hat = jnp.array([[0.4, 0.3], [0.2, 0.6]])
    # residuals 0.1, -0.05, 0, 0.2: mean square 0.013125, mean |r/y| = (0.2+0.2+0+0.25)/4
    assert float(compas_loss(y, y_hat)) == pytest.approx(6.5625, rel=1e-14)
    assert float(clm5_loss(y, y_hat)) == pytest.approx(6.5625 * 4.0625, rel=1e-14)
    # padded rows (weight 0, even with y = 0) change nothing
    yp = jnp.concatenate([y, jnp.zeros((2, 2))])
    yhp = jnp.concatenate([y_hat, jnp.ones((2, 2))])
    w = jnp.array([1.0, 1.0, 0.0, 0.0])
    assert float(clm5_loss(yp, yhp, w)) == pytest.approx(6.5625 * 4.0625, rel=1e-14)
    assert float(compas_loss(yp, yhp, w)) == pytest.approx(6.5625, rel=1e-14)


def _keras_adadelta_numpy(var, grad_fn, steps, lr=0.001, rho=0.95, eps=1e-7):
    """Transcription of TF's ApplyAdadelta kernel (training_ops.cc), used by tf.keras."""
    accum = np.zeros_like(var)
    accum_update = np.zeros_like(var)
    var = var.copy()
    for _ in range(steps):
        grad = grad_fn(var)
        accum = accum * rho + grad * grad * (1.0 - rho)
        update = np.sqrt(accum_update + eps) / np.sqrt(accum + eps) * grad
        var = var - update * lr
        accum_update = accum_update * rho + update * update * (1.0 - rho)
    return var


def test_adadelta_equals_numpy_transcription_of_keras():
    a = np.array([3.0, 0.5, 10.0, 1e-3])
    b = np.array([-1.0, 2.0, 0.0, 0.3])
    x0 = np.array([0.7, -0.2, 1.5, 4.0])

    def grad_np(x):
        return 2 * a * x * np.cos(x) - a * x**2 * np.sin(x) + b  # d/dx (a x^2 cos x + b x)

    opt = keras_adadelta()
    x = jnp.asarray(x0)
    state = opt.init(x)
    f = lambda x: jnp.sum(jnp.asarray(a) * x**2 * jnp.cos(x) + jnp.asarray(b) * x)
    for _ in range(6):
        g = jax.grad(f)(x)
        upd, state = opt.update(g, state)
        x = x + upd
    expected = _keras_adadelta_numpy(x0, grad_np, 6)
    np.testing.assert_allclose(np.asarray(x), expected, rtol=1e-13, atol=0)
    assert not np.allclose(expected, x0)  # the optimizer moved
    assert np.all(np.sign(expected - x0) == -np.sign(grad_np(x0)))  # downhill on step 1 sign


def test_make_ensemble_members_equal_single_networks():
    keys = jax.random.split(jax.random.key(5), 3)
    ens = make_ensemble(keys, 5, 2, hidden=(3,), dtype=jnp.float64)
    one = PRODANet(5, 2, key=keys[1], hidden=(3,), dtype=jnp.float64)
    for layer_e, layer_1 in zip(ens.layers, one.layers, strict=True):
        np.testing.assert_array_equal(layer_e.weight[1], layer_1.weight)
