"""Profiles sharded over 4 (forced host) devices give the single-device result, bit for bit."""

import textwrap

import pytest

from tests.helpers import run_on_host_devices

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    assert jax.device_count() == 4, jax.devices()
    import sys; sys.path.insert(0, "tests/calibration")
    from test_am import gaussian_cost, COV
    from soc_jax.calibration import am
    mu = np.random.default_rng(0).uniform(0.3, 0.7, (8, 2))
    data = {"mu": jnp.asarray(mu), "prec": jnp.asarray(np.stack([np.linalg.inv(COV)] * 8))}
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(1), i) for i in range(8)])
    cfg = am.AMConfig(n_test=300, n_formal=600, thin=3, adapt_start=100)
    a = am.run(data, keys, gaussian_cost, cfg, n_params=2, n_chains=3, shard=True)
    assert len(a.theta.sharding.device_set) == 4, a.theta.sharding
    b = am.run(data, keys, gaussian_cost, cfg, n_params=2, n_chains=3, shard=False)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    print("SHARDED_OK")
    """
)


@pytest.mark.slow
def test_sharded_over_four_devices_equals_single_device():
    run_on_host_devices(SCRIPT, 4, "SHARDED_OK")
