"""PRODA's adaptive Metropolis: known-Gaussian recovery, batched == alone, blocks, failures, rules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.calibration import am

COV = np.array([[0.05**2, 0.5 * 0.05 * 0.03], [0.5 * 0.05 * 0.03, 0.03**2]])
MU = np.array([[0.4, 0.6], [0.3, 0.5], [0.55, 0.45]])


def gaussian_cost(p, d):
    """J = -log N(p; mu, COV) + const: the sampler's target exp(-J) is that Gaussian (in the box)."""
    r = p - d["mu"]
    return 0.5 * r @ d["prec"] @ r, 1.0 * p, jnp.asarray(False)


def always_fails(p, d):
    return jnp.asarray(jnp.nan), jnp.full(2, jnp.nan), jnp.asarray(True)


def _data(idx=(0, 1, 2)):
    prec = np.linalg.inv(COV)
    return {"mu": jnp.asarray(MU[list(idx)]), "prec": jnp.asarray(np.stack([prec] * len(idx)))}


def _keys(idx=(0, 1, 2)):
    return jnp.stack([jax.random.fold_in(jax.random.PRNGKey(7), i) for i in idx])


SMALL = am.AMConfig(n_test=1000, n_formal=8000, thin=4, adapt_start=500)


@pytest.fixture(scope="module")
def gaussian_run():
    return am.run(_data(), _keys(), gaussian_cost, SMALL, n_params=2, n_chains=3)


def test_recovers_known_gaussian_mean_and_covariance(gaussian_run):
    st = gaussian_run
    assert np.all(np.asarray(st.phase) == am.DONE)
    x = np.asarray(st.rec_theta)  # (profiles, chains, C, 2), every slot filled in default mode
    assert np.all(np.asarray(st.n_rec) == SMALL.capacity)
    for i in range(3):
        kept = x[i, :, x.shape[2] // 2 :].reshape(-1, 2)
        # Monte-Carlo error of the mean with ~3 x 4000 correlated draws: sd/sqrt(ESS ~ 600)
        np.testing.assert_allclose(kept.mean(0), MU[i], atol=4 * 0.05 / np.sqrt(600))
        np.testing.assert_allclose(np.cov(kept.T), COV, rtol=0.25, atol=0.2 * COV[0, 1])
    rate = np.asarray(st.acc_formal) / SMALL.n_formal
    assert np.all((rate >= 0.1) & (rate <= 0.5))  # PRODA's keep rule held for the kept runs


def test_batched_equals_profile_alone_and_blocks_do_not_matter(gaussian_run):
    # profile 1 run alone, cut into blocks of 3001 steps instead of one 9000-step block:
    # bit-identical to its run inside the batch of three
    alone = am.run(
        _data((1,)), _keys((1,)), gaussian_cost, SMALL, n_params=2, n_chains=3, block=3001
    )
    for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(gaussian_run), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[0], np.asarray(b)[1])


@pytest.mark.parametrize("faithful", [False, True])
def test_profile_whose_every_evaluation_fails_ends_flagged_and_finite(faithful):
    cfg = am.AMConfig(n_test=60, n_formal=60, thin=2, faithful=faithful, adapt_start=20)
    st = am.run(_data(), _keys(), always_fails, cfg, n_params=2, n_chains=3)
    for leaf in jax.tree.leaves(st):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert np.all(np.asarray(st.failed0))
    assert np.all(np.asarray(st.n_failed) == np.asarray(st.n_evals))
    # never reaches a kept formal run: fails after the discards, or still stuck (budget)
    assert not np.any(np.asarray(st.phase) == am.DONE)
    if not faithful:
        np.testing.assert_array_equal(st.theta, 0.5)  # nothing was ever accepted
        assert np.all(np.asarray(st.phase) == am.FAILED)


def test_test_run_restart_rule():
    # A needle: any move away from p0 costs 1e6, so no test run reaches 50 acceptances:
    # 3 restarts with allow *= 1.1, then the check is off and the chain proceeds.
    def needle(p, d):
        return jnp.where(jnp.all(p == 0.5), 0.0, 1e6), p, jnp.asarray(False)

    cfg = am.AMConfig(n_test=100, n_formal=50, thin=5, max_discards=0)
    st = am.run(_data((0,)), _keys((0,)), needle, cfg, n_params=2, n_chains=1)
    assert int(st.n_test_restarts[0, 0]) == 3
    np.testing.assert_allclose(st.allow[0, 0], 5.0 * 1.1**3)  # kept: the chain gave up
    assert bool(st.check_off[0, 0])
    # then the formal run never accepts (rate 0 < 0.1): discarded once, > max_discards=0 -> failed
    assert int(st.phase[0, 0]) == am.FAILED
    assert int(st.n_discards[0, 0]) == 1
    assert float(st.sd_factor[0, 0]) == pytest.approx(0.7)
    # steps: the start (evaluates p0), 3 x (n_test - 1) restarts, n_test, n_formal - 1 to the check
    assert int(st.t[0, 0]) == 1 + 3 * 99 + 100 + 49


def test_default_samples_exp_minus_j():
    # J = a p_1 on the unit box: exp(-J) is a truncated exponential in p_1 (mean 1/a - 1/(e^a - 1)
    # = 0.3435 for a = 2) and uniform in p_2 (mean 0.5).
    def slope(p, d):
        return 2.0 * p[0] + 0.0 * d["mu"][0], 1.0 * p, jnp.asarray(False)

    a = 2.0
    exact = 1 / a - 1 / np.expm1(a)
    cfg = am.AMConfig(n_test=1000, n_formal=8000, thin=4, adapt_start=500, rate_high=1.0)
    st = am.run(_data(), _keys(), slope, cfg, n_params=2, n_chains=3)
    kept = np.asarray(st.rec_theta)[:, :, cfg.capacity // 2 :].reshape(-1, 2)
    np.testing.assert_allclose(kept.mean(0), [exact, 0.5], atol=0.03)
    np.testing.assert_allclose(
        kept[:, 0].std(), np.sqrt(1 / a**2 - np.exp(a) / np.expm1(a) ** 2), rtol=0.1
    )


@pytest.mark.slow
def test_faithful_mode_anneals():
    def slope(p, d):
        return 2.0 * p[0] + 0.0 * d["mu"][0], 1.0 * p, jnp.asarray(False)

    cfg = am.AMConfig(n_test=1000, n_formal=8000, thin=4, adapt_start=500, rate_high=1.0)
    # PRODA's annealed rule samples exp(-J ln(simu + 2)) instead: by formal step ~4000 that is
    # exp(-17 p_1), mean ~ 1/17 (the default mode gives 0.34, test above).
    st_f = am.run(_data(), _keys(), slope, cfg._replace(faithful=True), n_params=2, n_chains=3)
    n_rec = np.asarray(st_f.n_rec)
    rec = np.asarray(st_f.rec_theta)
    late = np.concatenate(
        [rec[i, c, n_rec[i, c] // 2 : n_rec[i, c]] for i in range(3) for c in range(3)]
    )
    assert late[:, 0].mean() < 0.12


def test_failed_proposals_accepted_only_in_faithful_formal_run():
    # Flat cost, failures where p_1 > 0.6. PRODA's formal run reuses the previous dJ (0 here)
    # for a failed proposal, so it accepts it and the chain's cost jumps by exactly 100 (SPEC 6
    # driver detail 1); the corrected mode never accepts a failure, its cost stays 0 and the
    # chain never sits in the failing region.
    def flat_with_hole(p, d):
        return 0.0 * p[0] + 0.0 * d["mu"][0], 1.0 * p, p[0] > 0.6

    cfg = am.AMConfig(n_test=200, n_formal=400, thin=1, adapt_start=100, rate_high=1.0)
    kw = dict(n_params=2, n_chains=3)
    st = am.run(_data(), _keys(), flat_with_hole, cfg, **kw)
    assert np.all(np.asarray(st.cost) == 0.0)
    assert np.all(np.asarray(st.rec_theta)[..., 0] <= 0.6)
    st_f = am.run(_data(), _keys(), flat_with_hole, cfg._replace(faithful=True), **kw)
    cost = np.asarray(st_f.cost)
    assert np.allclose(cost / 100.0, np.round(cost / 100.0))  # 0 + k x 100
    rec = np.asarray(st_f.rec_theta)
    kept = np.arange(rec.shape[2]) < np.asarray(st_f.n_rec)[..., None]
    assert np.any((rec[..., 0] > 0.6) & kept)  # accepted states inside the failing region


def _steps(st, data, keys, f, cfg, n):
    """States after each of n single steps (an independent view of every step)."""
    out = [st]
    for _ in range(n):
        st = am.run_block(st, data, keys, f, cfg, 1)
        out.append(jax.tree.map(np.asarray, st))
    return out


def flat_with_hole(p, d):
    """Flat cost; the simulation fails where p_1 > 0.6; the 'profile' is p itself."""
    return 0.0 * p[0] + 0.0 * d["mu"][0], 1.0 * p, p[0] > 0.6


def test_faithful_accepted_failed_solve_keeps_the_stale_profile_and_is_counted():
    # With a flat cost every successful proposal is accepted (dJ <= 0), so the last successful
    # simulation is the previous state. An accepted failed solve (faithful formal run) must keep
    # that profile (the driver never recomputes it), not record zeros; the counter must equal
    # the accepted failed solves seen step by step; the default mode never accepts one.
    cfg = am.AMConfig(
        n_test=20, n_formal=200, thin=1, adapt_start=10, rate_high=1.0, min_accept_test=0
    )
    data, keys = _data(), jax.vmap(lambda k: am.chain_keys(k, 3))(_keys())
    for faithful in (True, False):
        c = cfg._replace(faithful=faithful)
        st0 = am.init_chains(c, 3, 3, 2, 2)
        hist = _steps(st0, data, keys, flat_with_hole, c, 1 + 20 + 200)
        seen = np.zeros((3, 3), int)
        for a, b in zip(hist[:-1], hist[1:], strict=True):
            moved = np.any(np.asarray(a.theta) != b.theta, axis=-1)
            into_hole = moved & (b.theta[..., 0] > 0.6) & (np.asarray(a.phase) == am.FORMAL)
            seen += into_hole
            stale = np.asarray(a.pred)[into_hole]
            np.testing.assert_array_equal(b.pred[into_hole], stale)
            assert np.all(stale[:, 0] > 0) and np.all(stale[:, 0] <= 0.6)
        last = hist[-1]
        np.testing.assert_array_equal(last.n_acc_failed, seen)
        if faithful:
            assert seen.sum() > 0
        else:
            assert seen.sum() == 0
        # failed simulations: at least the accepted ones; out-of-box draws are counted apart
        assert np.all(last.n_failed >= seen)


@pytest.mark.parametrize("faithful", [False, True])
def test_out_of_box_proposals_are_counted_apart_from_failures(faithful):
    # One test step from p0 = 0.95 with the box proposal p0 + U(-0.1, 0.1): outside with
    # probability 1/4. Default: one draw, rejected if outside -> mean 1/4 out-of-box draws.
    # Faithful: re-drawn until inside -> geometric, mean (1/4)/(3/4) = 1/3. Nothing fails.
    cfg = am.AMConfig(n_test=50, n_formal=50, start=0.95, faithful=faithful)
    n_chains = 4000
    data = {"mu": jnp.zeros((1, 1))}
    keys = am.chain_keys(jax.random.PRNGKey(3), n_chains)[None]
    st = am.init_chains(cfg, 1, n_chains, 1, 1)

    def flat(p, d):
        return 0.0 * p[0] + d["mu"][0], 1.0 * p, jnp.asarray(False)

    st = jax.tree.map(np.asarray, am.run_block(st, data, keys, flat, cfg, 2))
    expect = 1 / 3 if faithful else 1 / 4
    assert abs(st.n_out_of_box.mean() - expect) < 0.04
    assert np.all(st.n_failed == 0)
    if not faithful:  # every out-of-box proposal is the one rejection of the flat cost
        np.testing.assert_array_equal(st.n_out_of_box, 1 - st.n_acc)
