"""Chunked batching equals vmap."""

import jax
import numpy as np
import pytest

from soc_jax.batching import map_profiles
from soc_jax.models import clm5
from tests.helpers import branch_forcings


def test_map_profiles_equals_vmap_including_a_partial_chunk():
    forcings = branch_forcings(7, seed=1)
    forcing = jax.tree.map(lambda *a: np.stack(a), *forcings)
    params = np.repeat(np.asarray(clm5.PARAMETERS.midpoint())[None], 7, axis=0)
    chunked = jax.jit(lambda p, f: map_profiles(clm5.steady_state, p, f, chunk_size=3))(
        params, forcing
    )
    batched = jax.jit(jax.vmap(clm5.steady_state))(params, forcing)
    np.testing.assert_array_equal(chunked.ok, batched.ok)
    np.testing.assert_allclose(chunked.pools, batched.pools, rtol=1e-13, equal_nan=True)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        map_profiles(clm5.steady_state, params, forcing, chunk_size=0)
