"""Fast forms of the calibration contracts whose full-size checks are in the slow suite.

Each test checks the same property as its slow original at a tiny size (few profiles, chains
and steps, two dimensions), so that the default suite checks every contract:

* profiles sharded over forced host devices give the single-device result, bit for bit
  (slow: test_sharding.py, four devices, 900 steps);
* the real-model log-densities fail to ``-inf`` with a zero gradient, and their gradient
  matches a central difference where finite (slow: test_gradient_samplers.py and
  test_likelihood.py, one program each);
* MALA and ChEES recover a known Gaussian and a profile's result does not depend on its
  neighbour in the batch (slow: the 5-D fixture of test_gradient_samplers.py);
* faithful-mode AM anneals (slow: test_am.py, 9000 steps).
"""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.calibration import am, gradient
from soc_jax.calibration import likelihood as lk
from tests.helpers import run_on_host_devices

SHARD_SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 2, jax.devices()
    from soc_jax.calibration import am

    def cost(p, d):
        r = p - d["mu"]
        return 0.5 * r @ d["prec"] @ r, 1.0 * p, jnp.asarray(False)

    cov = np.array([[0.05**2, 0.5 * 0.05 * 0.03], [0.5 * 0.05 * 0.03, 0.03**2]])
    mu = np.random.default_rng(0).uniform(0.3, 0.7, (4, 2))
    data = {"mu": jnp.asarray(mu), "prec": jnp.asarray(np.stack([np.linalg.inv(cov)] * 4))}
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(1), i) for i in range(4)])
    cfg = am.AMConfig(n_test=60, n_formal=120, thin=2, adapt_start=40)
    a = am.run(data, keys, cost, cfg, n_params=2, n_chains=2, shard=True)
    assert len(a.theta.sharding.device_set) == 2, a.theta.sharding
    b = am.run(data, keys, cost, cfg, n_params=2, n_chains=2, shard=False)
    assert len(b.theta.sharding.device_set) == 1, b.theta.sharding
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(np.asarray(a.n_evals).min()) > 100  # the chains really ran
    print("SHARDED_OK")
    """
)


def test_sharded_over_two_devices_equals_single_device():
    # catches: per-device keys or state, a cross-profile reduction, a lost shard
    run_on_host_devices(SHARD_SCRIPT, 2, "SHARDED_OK")


def _real_profile(tsoi=None):
    from soc_jax.examples import example_forcing

    forcing, _ = example_forcing(1, seed=2)
    f = forcing[0]
    if tsoi is not None:  # tsoi 100 K: outside the model's rules, every simulation fails
        f = type(f)(**{**{k: getattr(f, k) for k in f.field_info()}, "tsoi": f.tsoi * 0 + tsoi})
    return {
        "forcing": jax.tree.map(jnp.asarray, f),
        "depth": jnp.asarray([0.05, 0.2, 0.5, 0.1]),
        "obs": jnp.asarray([3000.0, 2000.0, 900.0, 0.0]),
        "mask": jnp.asarray([True, True, True, False]),
    }


def test_real_model_log_densities_gradient_and_failure_in_one_program():
    # rows: z, z + h e_k, z - h e_k on a good profile; z on a profile that fails
    good, bad = _real_profile(), _real_profile(tsoi=100.0)
    data = jax.tree.map(lambda a, b: jnp.stack([a, a, a, b]), good, bad)
    z, k, h = jnp.full(21, 0.3), 3, 1e-5
    zs = jnp.stack([z, z.at[k].add(h), z.at[k].add(-h), z])
    log_pi = gradient.make_log_density("clm5", "proda")

    def both(z, d):
        return jax.value_and_grad(lk.log_density)(z, d), jax.value_and_grad(log_pi)(z, d)

    for vals, grads in jax.jit(jax.vmap(both))(zs, data):
        vals, grads = np.asarray(vals), np.asarray(grads)
        assert np.all(np.isfinite(grads))  # never NaN, also where the density is -inf
        assert np.all(np.isfinite(vals[:3]))
        assert vals[3] == -np.inf and np.all(grads[3] == 0.0)
        fd = (vals[1] - vals[2]) / (2 * h)
        np.testing.assert_allclose(grads[0, k], fd, rtol=1e-5, atol=1e-8)
        assert grads[0, k] != 0.0  # a live gradient: the finite difference checks something


D = 2
COV = np.array([[1.0, 0.6], [0.6, 2.0]])
MU = np.array([-1.0, 1.0])
PREC = jnp.asarray(np.linalg.inv(COV))


def gauss(z, data):
    """log N(z; data['mu'], COV), unnormalised."""
    r = z - data["mu"]
    return -0.5 * r @ PREC @ r


SIZES = {"mala": (4, 100, 400), "chees": (8, 100, 100)}  # chains, warm-up, draws


@pytest.mark.parametrize("sampler", ["mala", "chees"])
def test_mala_and_chees_recover_a_gaussian_and_ignore_their_neighbour(sampler):
    import blackjax

    chains, warmup, draws = SIZES[sampler]
    cfg = gradient.GradientConfig(sampler=sampler, n_warmup=warmup, n_draws=draws, max_tree_depth=4)
    keys = jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)])
    mus = jnp.asarray(np.stack([MU, MU + 3.0]))
    out = jax.tree.map(np.asarray, gradient.run_batch(keys, {"mu": mus}, gauss, D, chains, cfg))
    sd = np.sqrt(np.diag(COV))
    for i, mu in enumerate([MU, MU + 3.0]):
        z = out.z[i]  # (C, draws, D)
        flat = z.reshape(-1, D)
        ess = np.asarray(blackjax.ess(jnp.asarray(z), chain_axis=0, sample_axis=1))
        assert np.all(ess > 50), (sampler, ess)
        zscore = (flat.mean(0) - mu) / (sd / np.sqrt(ess))
        assert np.all(np.abs(zscore) < 4.0), (sampler, zscore)
        cov = np.cov(flat.T)
        np.testing.assert_allclose(np.diag(cov), np.diag(COV), rtol=0.3, err_msg=sampler)
        assert abs(cov[0, 1] / np.sqrt(cov[0, 0] * cov[1, 1]) - 0.6 / np.sqrt(2.0)) < 0.15
    assert out.usable.all() and out.start_ok.all()
    if sampler == "mala":  # one leapfrog step per transition, in warm-up too
        assert np.all(out.n_steps == 1) and np.all(out.warmup_steps == 1)
    else:  # the chains of a profile share the trajectory length and step size
        assert np.all(out.n_steps == out.n_steps[:, :1, :])
        assert np.all(out.step_size == out.step_size[:, :1])
    # the same profile next to another neighbour (same width, same program): bit-identical
    keys2 = keys.at[0].set(jax.random.PRNGKey(99))
    other = gradient.run_batch(keys2, {"mu": mus.at[0].set(mus[0] - 5.0)}, gauss, D, chains, cfg)
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])
    assert not np.array_equal(np.asarray(other.z[0]), out.z[0])


def _am_data():
    prec = np.linalg.inv(np.array([[0.05**2, 0.5 * 0.05 * 0.03], [0.5 * 0.05 * 0.03, 0.03**2]]))
    mu = np.array([[0.4, 0.6], [0.3, 0.5], [0.55, 0.45]])
    return {"mu": jnp.asarray(mu), "prec": jnp.asarray(np.stack([prec] * 3))}


def _am_keys():
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(7), i) for i in range(3)])


def _late_mean_p1(st):
    n_rec, rec = np.asarray(st.n_rec), np.asarray(st.rec_theta)
    late = np.concatenate(
        [rec[i, c, n_rec[i, c] // 2 : n_rec[i, c]] for i in range(3) for c in range(3)]
    )
    return late[:, 0].mean()


def test_faithful_mode_anneals():
    # J = 2 p_1 on the unit box. The default mode samples exp(-J) (mean of p_1: 0.34); PRODA's
    # annealed rule samples exp(-J ln(simu + 2)): by formal step ~400 about exp(-12 p_1),
    # mean ~0.08. Measured at this size: faithful 0.11, default 0.32.
    def slope(p, d):
        return 2.0 * p[0] + 0.0 * d["mu"][0], 1.0 * p, jnp.asarray(False)

    cfg = am.AMConfig(n_test=200, n_formal=800, thin=2, adapt_start=100, rate_high=1.0)
    st = am.run(_am_data(), _am_keys(), slope, cfg._replace(faithful=True), n_params=2, n_chains=3)
    assert np.all(np.asarray(st.n_rec) > 100)
    assert _late_mean_p1(st) < 0.2
