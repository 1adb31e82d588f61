"""Shared fixtures of the PRODA tests: one tiny synthetic world per test process."""

import pytest


@pytest.fixture(scope="session")
def small_world():
    """A 20-degree synthetic world (34 land cells, 20 sites); its grid is global."""
    from soc_jax.data import make_world

    return make_world(20, seed=3, grid_resolution=20.0)
