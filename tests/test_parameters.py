"""ParameterSpace: transcription, conversions, log-Jacobian, validation."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.models import clm5, compas

REFERENCE = json.loads(
    (Path(__file__).parent / "reference/proda_constants_and_priors.json").read_text()
)
SPACE = clm5.PARAMETERS


def test_clm5_space_matches_spec_table():
    table = REFERENCE["clm5_parameters"]
    assert SPACE.names == tuple(row["name"] for row in table)
    np.testing.assert_array_equal(SPACE.lower, [row["lower"] for row in table])
    np.testing.assert_array_equal(SPACE.upper, [row["upper"] for row in table])
    assert SPACE.units == tuple(row["unit"] for row in table)
    # process groups of SPEC 2 (1-based): A = 11..19, K = 5..10, Xi = 3, 4, 20, I = 21, V = 1, 2
    expected = {"A": range(11, 20), "K": range(5, 11), "Xi": [3, 4, 20], "I": [21], "V": [1, 2]}
    for group, idx in expected.items():
        np.testing.assert_array_equal(SPACE.group_indices(group), np.array(list(idx)) - 1)


def test_round_trips_and_bounds():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.001, 0.999, (50, len(SPACE)))
    x = SPACE.to_physical(p)
    np.testing.assert_allclose(SPACE.to_normalized(x), p, rtol=1e-12, atol=1e-14)
    z = SPACE.to_unconstrained(x)
    np.testing.assert_allclose(SPACE.from_unconstrained(z), x, rtol=1e-10)
    # extreme z stays inside the closed box
    xs = SPACE.from_unconstrained(jnp.full(len(SPACE), 40.0))
    assert np.all(np.asarray(xs) <= SPACE.upper) and np.all(np.asarray(xs) >= SPACE.lower)


@pytest.mark.parametrize("space", [SPACE, compas.PARAMETERS], ids=["clm5", "compas"])
def test_log_abs_det_jacobian_equals_autodiff(space):
    """Including COMPAS's log10 parameter (tau4s3, log-uniform on [1e-3, 1] yr)."""
    assert "log10" in compas.PARAMETERS.transforms
    z = jnp.asarray(np.random.default_rng(1).normal(0, 2, len(space)))
    jac = jax.jacobian(space.from_unconstrained)(z)
    sign, logdet = jnp.linalg.slogdet(jac)
    assert sign == 1
    assert float(space.log_abs_det_jacobian(z)) == pytest.approx(float(logdet), rel=1e-12)
    # batched
    zz = jnp.stack([z, -z])
    np.testing.assert_allclose(
        space.log_abs_det_jacobian(zz),
        [space.log_abs_det_jacobian(z), space.log_abs_det_jacobian(-z)],
    )


def test_validation_messages():
    x = SPACE.midpoint()
    with pytest.raises(ValueError, match="trailing length 21"):
        SPACE.validate_physical(x[:20])
    bad = x.copy()
    bad[SPACE.index("q10")] = 3.5
    with pytest.raises(ValueError, match=r"'q10' = 3.5 - is outside its prior bounds \[1.2, 3\]"):
        SPACE.validate_physical(bad)
    bad[SPACE.index("q10")] = np.nan
    with pytest.raises(ValueError, match="'q10' is not finite"):
        SPACE.validate_physical(bad)
    # customary values are accepted outside the prior when asked
    SPACE.validate_physical(clm5.default_parameters(), within_prior=False)
    with pytest.raises(ValueError, match="'efolding' = 10 m is outside"):
        SPACE.validate_physical(clm5.default_parameters())
    with pytest.raises(ValueError, match="normalized parameter 'diffus' = 1.5"):
        SPACE.validate_normalized(np.full(21, 1.5))
    with pytest.raises(KeyError, match="unknown parameter"):
        SPACE.index("nope")
