"""Forcing validation and the environmental scalars."""

import jax
import numpy as np
import pytest

from soc_jax.examples import example_forcing
from soc_jax.forcing import Forcing, beta_input_profile, input_totals, temperature_scalar
from soc_jax.grid import DZ, ZISOI


def one():
    batch, _ = example_forcing(3, 0)
    return batch[0]


def modified(**changes):
    f = one().as_numpy()
    for key, fn in changes.items():
        f[key] = fn(f[key])
    return Forcing(**f)


def set_at(index, value):
    def fn(a):
        a = a.copy()
        a[index] = value
        return a

    return fn


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tsoi": lambda a: a[:, :10]}, r"forcing.tsoi \(soil temperature \(TSOI\)\) must have shape"),
        ({"w_scalar": set_at((2, 3), np.nan)}, r"forcing.w_scalar .* 1 non-finite values, first at index \(2, 3\)"),
        ({"litter_input": set_at((1, 0, 4), -1.0)}, r"litter_input breaks the rule 'litter inputs >= 0' at index \(1, 0, 4\)"),
        ({"nbedrock": set_at(5, 7.5)}, r"nbedrock breaks the rule 'nbedrock is an integer layer index in 1..20'"),
        ({"nbedrock": set_at(0, 21.0)}, r"nbedrock breaks the rule"),
        ({"o_scalar": set_at((0, 0), 1.2)}, r"o_scalar breaks the rule '0 <= o_scalar <= 1'"),
        ({"altmax": set_at(3, -0.1)}, r"altmax breaks the rule 'altmax >= 0 m'"),
        ({"tsoi": set_at((0, 0), 20.0)}, r"tsoi breaks the rule '150 K <= tsoi <= 350 K'"),
        ({"sand": set_at((0, 0), 101.0)}, r"sand breaks the rule"),
    ],
)  # fmt: skip
def test_bad_forcing_is_named(changes, message):
    f = modified(**changes)
    with pytest.raises(ValueError, match=message):
        f.validate()
    if "tsoi" not in changes or f.tsoi.shape == (12, 20):
        assert not bool(f.is_valid())


def test_valid_batch_and_indexing():
    batch, lat = example_forcing(40, 3)
    batch.validate()
    assert batch.batch_shape == (40,)
    assert bool(np.all(batch.is_valid()))
    np.testing.assert_array_equal(batch[7].tsoi, batch.tsoi[7])
    assert Forcing.stack([batch[0], batch[1]]).batch_shape == (2,)
    assert lat.shape == (40,)


def test_temperature_scalar_is_continuous_q10():
    t = np.array([250.0, 273.0, 273.15, 273.3, 298.15, 310.0])
    xi = np.asarray(temperature_scalar(t, 2.0))
    np.testing.assert_allclose(xi, 2.0 ** ((t - 298.15) / 10), rtol=1e-14)
    assert xi[4] == pytest.approx(1.0)


def test_beta_profile_and_input_totals():
    thawed = np.full(12, 1.0)
    v = np.asarray(beta_input_profile(0.95, thawed))
    assert v.sum() == pytest.approx(1.0, rel=1e-14)
    zi = np.concatenate([[0.0], ZISOI[:20]])
    np.testing.assert_allclose(
        v, (0.95 ** (100 * zi[:-1]) - 0.95 ** (100 * zi[1:])) / (1 - 0.95**860)
    )
    # one month without last year's active layer: everything into layer 1 (MATLAB `if v > 0`)
    partly = thawed.copy()
    partly[6] = 0.0
    np.testing.assert_array_equal(beta_input_profile(0.95, partly), np.eye(20)[0])
    f = one()
    expected = np.einsum("pmj,j->p", np.asarray(f.litter_input), DZ[:20])
    np.testing.assert_allclose(input_totals(f.litter_input), expected, rtol=1e-13)
    assert jax.jit(beta_input_profile)(0.9, thawed).shape == (20,)
