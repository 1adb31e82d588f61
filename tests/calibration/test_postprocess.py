"""Post-processing: PRODA's Gelman-Rubin vs a direct transcription, burn-in indices, GEV mode,
optimal chain, site filter, rank R-hat (BlackJAX)."""

import jax.numpy as jnp
import numpy as np
from scipy.stats import genextreme

from soc_jax.calibration import am, postprocess


def gr_transcription(chains, n):
    """SPEC 6 written out term by term: chains = list of 1-D arrays, n = last chain's count."""
    m = len(chains)
    means = [sum(c) / len(c) for c in chains]
    grand = sum(means) / m
    b = n / (m - 1) * sum((mk - grand) ** 2 for mk in means)
    w = 1 / (m * (n - 1)) * sum(sum((x - mk) ** 2 for x in c) for c, mk in zip(chains, means))
    return ((n - 1) * w / n + b / n) / w and (((n - 1) * w / n + b / n) / w) ** 0.5


def test_gelman_rubin_as_coded_equals_transcription():
    rng = np.random.default_rng(3)
    lengths = [37, 52, 41]  # unequal: PRODA uses the last chain's count for all
    chains = [rng.normal(0.1 * k, 1 + 0.2 * k, size=(L, 2)) for k, L in enumerate(lengths)]
    x = np.zeros((3, 60, 2))
    valid = np.zeros((3, 60), bool)
    for k, c in enumerate(chains):
        x[k, : len(c)] = c
        valid[k, : len(c)] = True
    got = postprocess.gelman_rubin_proda(x, valid, n_last=41)
    for j in range(2):
        np.testing.assert_allclose(
            got[j], gr_transcription([list(c[:, j]) for c in chains], 41), rtol=1e-12
        )


def test_gev_mode_close_to_maximum_likelihood_fit():
    # MATLAB gevfit shape k = 0.2 <-> scipy c = -0.2; mode = mu + sigma((1+k)^-k - 1)/k
    k, mu, sigma = 0.2, 0.4, 0.05
    x = genextreme.rvs(-k, loc=mu, scale=sigma, size=20000, random_state=1)
    true_mode = mu + sigma * ((1 + k) ** (-k) - 1) / k
    c_ml, loc_ml, sc_ml = genextreme.fit(x)
    ml_mode = loc_ml + sc_ml * ((1 - c_ml) ** c_ml - 1) / (-c_ml)
    got = postprocess.gev_mode(x[:, None], axis=0)[0]
    assert abs(got - true_mode) < 0.1 * sigma
    assert abs(got - ml_mode) < 0.1 * sigma
    # Gumbel limit (k = 0): mode = mu
    g = genextreme.rvs(0.0, loc=0.3, scale=0.02, size=20000, random_state=2)
    assert abs(postprocess.gev_mode(g[:, None], axis=0)[0] - 0.3) < 0.1 * 0.02


def _fake_states(theta, n_rec, pred, phase):
    """A ChainState of (P, C) chains with the given records (other fields from init)."""
    P, C, K, n = theta.shape
    w = pred.shape[-1]
    cfg = am.AMConfig(n_test=10, n_formal=K, thin=1)
    st = am.init_chains(cfg, P, C, n, w)
    return st._replace(
        rec_theta=jnp.asarray(theta),
        rec_pred=jnp.asarray(pred),
        n_rec=jnp.asarray(n_rec, jnp.int32),
        phase=jnp.asarray(phase, jnp.int32),
        acc_formal=jnp.full((P, C), K // 4, jnp.int32),
    ), cfg


def test_summary_burn_in_optimal_chain_r2_and_filter():
    rng = np.random.default_rng(0)
    P, C, K, n, w = 3, 3, 400, 3, 2
    theta = 0.5 + 0.05 * rng.standard_normal((P, C, K, n))
    theta[1, 2] += 0.3  # profile 1: one chain elsewhere -> not converged
    n_rec = np.full((P, C), K)
    n_rec[0, 1] = 7  # odd count: round(3.5) = 4 -> params use 1-based 5..7, profile 4..7
    obs = np.array([[100.0, 50.0]] * 3)
    mask = np.ones((P, w), bool)
    pred = np.zeros((P, C, K, w))
    pred[..., 0], pred[..., 1] = 100.0, 40.0  # every chain's mean profile (100, 40)
    pred[0, 0, :, 1] = 50.0  # chain 0 of profile 0 fits exactly -> optimal
    pred[0, 1, :7, 1] = np.arange(7) * 10.0  # profile mean over 0-based 3..6 = 45
    phase = np.full((P, C), am.DONE)
    st, cfg = _fake_states(theta, n_rec, pred, phase)
    out = postprocess.summarize(st, obs, mask, cfg)

    assert out["opt_chain"][0] == 0
    np.testing.assert_allclose(out["para_summary_mean"][0], theta[0, 0, 200:].mean(0), rtol=1e-12)
    np.testing.assert_allclose(
        out["para_summary_std"][0], theta[0, 0, 200:].std(0, ddof=1), rtol=1e-12
    )
    # chain 1 (n = 7): RMSE from its profile mean (100, 45): sqrt((0 + 25)/2)
    np.testing.assert_allclose(out["rmse"][0, 1], np.sqrt(25 / 2), rtol=1e-12)
    # R2 quirk: 1 - SSres / sum (o - mean(model))^2, model mean (100, 40) -> mean 70
    np.testing.assert_allclose(out["r2"][0, 2], 1 - 100 / (30**2 + 20**2), rtol=1e-12)
    assert out["r2"][0, 0] == 1.0
    np.testing.assert_allclose(out["soc_mod_opt"][0], [100.0, 50.0])
    # GR: as coded with the last chain's n (post-burn-in count 200)
    post = np.zeros((C, K), bool)
    post[0, 200:] = post[2, 200:] = True
    post[1, 4:7] = True
    np.testing.assert_allclose(
        out["gr"][0], postprocess.gelman_rubin_proda(theta[0], post, 200), rtol=1e-12
    )
    # profile 2 converged and fits (R2 > 0) -> passes; profile 1 has a stray chain -> fails
    assert out["filter_pass"][2] and not out["filter_pass"][1]
    assert np.all(out["rhat"][2] < 1.02) and out["gr_mean"][2] < 1.01
    assert out["status"][0] == 64 and out["status"][2] == 0  # 3 post-burn-in samples in chain 1
    assert np.all(out["rhat"][1] > 1.5) and out["gr_mean"][1] > 1.05
    assert np.all(out["ess_bulk"][1] > 0)
    # profile 0 (status 64): R-hat and ESS not computed -> NaN (missing), everything else finite
    for name in ("rhat", "ess_bulk", "ess_tail", "rhat_max"):
        assert np.all(np.isnan(out[name][0])) and np.all(np.isfinite(out[name][1:])), name
    for name, v in out.items():
        if name not in ("rhat", "ess_bulk", "ess_tail", "rhat_max"):
            assert np.all(np.isfinite(np.asarray(v, float))), name


def test_summary_of_failed_chains_is_flagged_and_missing_not_zero():
    P, C, K, n, w = 1, 3, 20, 2, 2
    st, cfg = _fake_states(
        np.zeros((P, C, K, n)), np.zeros((P, C)), np.zeros((P, C, K, w)), np.full((P, C), am.FAILED)
    )
    out = postprocess.summarize(st, np.ones((P, w)), np.ones((P, w), bool), cfg)
    assert out["status"][0] & 2 and out["status"][0] & 8 and out["status"][0] & 16
    assert not out["filter_pass"][0]
    assert "discarded" in postprocess.status_reasons(int(out["status"][0]))
    # no valid chain: no result, NaN (missing) rather than zeros that look like one
    for name in ("para_summary_mean", "para_summary_std", "para_es", "soc_mod_opt", "gr_mean"):
        assert np.all(np.isnan(out[name][0])), name
    assert not np.any(out["valid"])


def _tiny_chains(values, faithful=False, pred_value=None):
    """One profile, chains with the given kept samples (1 parameter); obs fitted exactly."""
    values = [np.asarray(v, float) for v in values]
    C, K = len(values), max(len(v) for v in values)
    theta = np.zeros((1, C, K, 1))
    for c, v in enumerate(values):
        theta[0, c, : len(v), 0] = v
    n_rec = np.array([[len(v) for v in values]])
    obs = np.array([[100.0, 50.0]])
    pred = np.broadcast_to(
        obs[:, None, None, :] if pred_value is None else pred_value, (1, C, K, 2)
    ).copy()
    st, cfg = _fake_states(theta, n_rec, pred, np.full((1, C), am.DONE))
    return st, cfg._replace(faithful=faithful), obs, np.ones((1, 2), bool)


def test_gr_with_the_drivers_n_by_hand():
    # 3 chains of 4 kept samples: round(4/2) = 2 burn-in, post-burn-in samples (3rd, 4th):
    # (1, 3), (2, 4), (6, 8): means 2, 3, 7, grand mean 4; sum (xbar_k - 4)^2 = 14;
    # within-chain squared deviations 2 per chain, 6 in all.
    # driver's n = 4 (total kept): B = 4/2 * 14 = 28, W = 6/(3*3) = 2/3,
    #   GR = sqrt((3/4 * 2/3 + 28/4) / (2/3)) = sqrt(11.25)
    # post-burn-in n = 2 (default mode): B = 14, W = 6/3 = 2, GR = sqrt((1/2*2 + 7)/2) = 2
    chains = [[9, 9, 1, 3], [9, 9, 2, 4], [9, 9, 6, 8]]
    st, cfg, obs, mask = _tiny_chains(chains, faithful=True)
    out = postprocess.summarize(st, obs, mask, cfg)
    np.testing.assert_allclose(out["gr"][0, 0], np.sqrt(11.25), rtol=1e-12)
    st, cfg, obs, mask = _tiny_chains(chains, faithful=False)
    np.testing.assert_allclose(postprocess.summarize(st, obs, mask, cfg)["gr"][0, 0], 2.0)


def test_faithful_gr_uses_the_last_chains_total_kept_count():
    rng = np.random.default_rng(5)
    lengths = [400, 380, 420]
    chains = [0.5 + 0.01 * k + 0.05 * rng.standard_normal(L) for k, L in enumerate(lengths)]
    st, cfg, obs, mask = _tiny_chains(chains, faithful=True)
    out = postprocess.summarize(st, obs, mask, cfg)
    halves = [list(c[int(np.floor(len(c) / 2 + 0.5)) :]) for c in chains]
    np.testing.assert_allclose(out["gr"][0, 0], gr_transcription(halves, 420), rtol=1e-12)
    assert out["filter_pass"][0] == (out["gr_mean"][0] < 1.05)


def test_frozen_chains_give_inf_gr_that_fails_every_filter():
    # three chains frozen at different values: W = 0, B > 0 -> GR = inf (not 0); frozen at one
    # value: W = B = 0 -> NaN. The fit is perfect (R2 = 1): only the diagnostics can fail it.
    for faithful in (True, False):
        for values, expect in (((0.2, 0.5, 0.8), np.inf), ((0.5, 0.5, 0.5), None)):
            chains = [np.full(40, v) for v in values]
            st, cfg, obs, mask = _tiny_chains(chains, faithful=faithful)
            out = postprocess.summarize(st, obs, mask, cfg)
            if expect is None:
                assert np.isnan(out["gr"][0, 0])
            else:
                assert out["gr"][0, 0] == expect and out["gr_mean"][0] == expect
            assert out["r2_max"][0] == 1.0
            assert not out["filter_pass"][0]
            assert out["status"][0] & 1024
            assert "not finite" in postprocess.status_reasons(int(out["status"][0]))


def test_default_filter_uses_rank_rhat_and_faithful_uses_proda_gr():
    assert postprocess.filter_rule(True) == "proda_gr"
    assert postprocess.filter_rule(False) == "rank_rhat"
    # 10 parameters, converged except parameter 0 of chain 2, shifted by one posterior sd:
    # PRODA's mean GR over the parameters (1.015) hides it, its rank R-hat (1.12) does not
    rng = np.random.default_rng(1)
    x = 0.5 + 0.05 * rng.standard_normal((1, 3, 800, 10))
    x[0, 2, :, 0] += 0.05
    pred = np.broadcast_to(np.array([100.0, 50.0]), (1, 3, 800, 2)).copy()
    st, cfg = _fake_states(x, np.full((1, 3), 800), pred, np.full((1, 3), am.DONE))
    obs, mask = np.array([[100.0, 50.0]]), np.ones((1, 2), bool)
    out = postprocess.summarize(st, obs, mask, cfg)
    post = np.zeros((3, 800), bool)
    post[:, 400:] = True
    gr = [gr_transcription([list(x[0, c, 400:, j]) for c in range(3)], 400) for j in range(10)]
    assert np.mean(gr) < 1.05 and out["gr_mean"][0] < 1.05  # PRODA's rule would pass
    assert out["rhat_max"][0] == np.max(out["rhat"][0]) > 1.05
    assert out["r2_max"][0] == 1.0 and out["status"][0] == 0
    assert not out["filter_pass"][0]


def test_faithful_rmse_divides_by_the_layer_count_before_dropping_zero_layers():
    # obs (100, 50, 80); every kept modelled profile (90, 40, 0): the third layer is zero.
    # faithful (driver): sqrt((10^2 + 10^2) / 3); default: sqrt((10^2 + 10^2 + 80^2) / 3)
    obs = np.array([[100.0, 50.0, 80.0]])
    pred = np.broadcast_to(np.array([90.0, 40.0, 0.0]), (1, 3, 10, 3)).copy()
    theta = 0.5 + 0.01 * np.random.default_rng(0).standard_normal((1, 3, 10, 1))
    st, cfg = _fake_states(theta, np.full((1, 3), 10), pred, np.full((1, 3), am.DONE))
    mask = np.ones((1, 3), bool)
    f = postprocess.summarize(st, obs, mask, cfg._replace(faithful=True))
    d = postprocess.summarize(st, obs, mask, cfg)
    np.testing.assert_allclose(f["rmse"][0], np.sqrt(200 / 3), rtol=1e-12)
    np.testing.assert_allclose(d["rmse"][0], np.sqrt(6600 / 3), rtol=1e-12)
