"""BlackJAX's rank R-hat and bulk ESS (used in `calibration.postprocess`) against NumPyro's.

Independent oracle: NumPyro's ``split_gelman_rubin`` and ``effective_sample_size``. BlackJAX
computes the rank-normalised split R-hat of Vehtari et al. (2021): the larger of the split
R-hat of the rank-normalised draws (bulk) and of the rank-normalised draws folded about their
median (tail); its bulk ESS is the ESS of the rank-normalised split chains. NumPyro computes
the classic split R-hat and ESS of whatever draws it is given, so it is applied to draws
rank-normalised here with SciPy (average ranks, ``z = Phi^-1((r - 3/8) / (S + 1/4))``),
which compares like with like. Both ESS follow Geyer's initial monotone sequence: on raw
draws they agree to rounding; on the short rank-normalised split chains the two truncate the
autocorrelation sum at slightly different lags (< 1 % apart on these cases).
"""

import blackjax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from scipy.special import ndtri
from scipy.stats import rankdata


def _rank_normalise(x):
    """(chains, draws) -> z-scores of the pooled average ranks."""
    r = rankdata(x, method="average").reshape(x.shape)
    return ndtri((r - 3.0 / 8.0) / (x.size + 0.25))


def _split(x):
    n = x.shape[1] // 2
    return np.concatenate([x[:, :n], x[:, n : 2 * n]])


def _oracle(x):
    """Rank R-hat and bulk ESS of (chains, draws) from NumPyro's classic diagnostics."""
    bulk = split_gelman_rubin(_rank_normalise(x))
    folded = np.abs(x - np.median(x))
    tail = split_gelman_rubin(_rank_normalise(folded))
    ess = effective_sample_size(_rank_normalise(_split(x)))
    return max(bulk, tail), ess


def _ar1(rng, chains, draws, rho, shift=0.0):
    x = np.zeros((chains, draws))
    e = rng.normal(size=(chains, draws))
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x + shift * np.arange(chains)[:, None]


CASES = {
    "iid": lambda rng: rng.normal(size=(4, 400)),
    "autocorrelated": lambda rng: _ar1(rng, 4, 400, 0.9),
    "shifted chains": lambda rng: _ar1(rng, 4, 400, 0.5, shift=1.0),
    "different scales": lambda rng: rng.normal(size=(4, 400)) * np.array([[1], [1], [1], [4]]),
    "skewed with ties": lambda rng: np.round(rng.exponential(size=(4, 400)), 1),
}


@jax.jit
def _blackjax(x):  # one compilation for every (4, 400) case
    return blackjax.rhat(x, chain_axis=0, sample_axis=1), blackjax.ess_bulk(x, 0, 1)


@pytest.mark.parametrize("case", list(CASES))
def test_blackjax_rank_rhat_and_bulk_ess_equal_numpyro(case):
    x = CASES[case](np.random.default_rng(7))
    rhat, ess = _oracle(x)
    got_rhat, got_ess = (float(v) for v in _blackjax(jnp.asarray(x)))
    assert got_rhat == pytest.approx(rhat, rel=1e-10)
    assert got_ess == pytest.approx(ess, rel=1e-2)


@pytest.mark.parametrize("rho", [0.0, 0.6, 0.9])
def test_blackjax_ess_equals_numpyro_on_raw_chains(rho):
    x = _ar1(np.random.default_rng(2), 4, 400, rho)
    got = float(blackjax.diagnostics.effective_sample_size(jnp.asarray(x), 0, 1))
    assert got == pytest.approx(effective_sample_size(x), rel=1e-10)


def test_rank_rhat_flags_what_the_classic_one_misses():
    # equal means, one chain 4x wider: the classic split R-hat of the raw draws is ~1; the
    # folded (tail) component of the rank R-hat is not
    x = CASES["different scales"](np.random.default_rng(7))
    assert split_gelman_rubin(x) < 1.01
    assert float(_blackjax(jnp.asarray(x))[0]) > 1.1
