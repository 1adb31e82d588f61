"""Gradient-based samplers (NUTS, MALA as one-step HMC, ChEES): known Gaussian targets in 5-D,
a profile's result does not depend on its batch, a failing region gives no NaN, hopeless
profiles are flagged, the lock-step waste formula, the real-model log-density, and
``soc-jax calibrate --sampler``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.calibration import gradient

D = 5
_rng = np.random.default_rng(42)
_A = _rng.normal(size=(D, D))
# correlated, scales from ~0.4 to ~2: a wrong preconditioner or a missing MH correction shows
COV = _A @ _A.T / D + np.diag(np.linspace(0.1, 3.0, D))
MU = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
PREC = jnp.asarray(np.linalg.inv(COV))


def gauss(z, data):
    """log N(z; data['mu'], COV) (unnormalised); -inf (a "failed simulation") where
    ``z_0 > data['cut']``, and everywhere if ``data['dead']``."""
    r = z - data["mu"]
    lp = -0.5 * r @ PREC @ r
    return jnp.where(data["dead"] | (z[0] > data["cut"]), -jnp.inf, lp)


def _data(mus, dead=None, cut=None):
    mus = jnp.asarray(np.asarray(mus, float))
    n = mus.shape[0]
    dead = jnp.zeros(n, bool) if dead is None else jnp.asarray(dead)
    cut = jnp.full(n, jnp.inf) if cut is None else jnp.asarray(cut, float)
    return {"mu": mus, "dead": dead, "cut": cut}


CHAINS = {"nuts": 4, "mala": 4, "chees": 16}
DRAWS = {"nuts": 500, "mala": 1500, "chees": 250}


def _cfg(sampler):
    return gradient.GradientConfig(
        sampler=sampler, n_warmup=400, n_draws=DRAWS[sampler], max_tree_depth=6
    )


# NUTS in the default set; MALA and ChEES compile another ~30 s each on the shared CPU: slow
@pytest.fixture(
    scope="module",
    params=[
        "nuts",
        pytest.param("mala", marks=pytest.mark.slow),
        pytest.param("chees", marks=pytest.mark.slow),
    ],
)
def batch_run(request):
    """Two profiles (different means) batched; profile 1 is also run alone."""
    s = request.param
    keys = jnp.stack([jax.random.PRNGKey(1), jax.random.PRNGKey(2)])
    data = _data([MU, MU + 3.0])
    out = gradient.run_batch(keys, data, gauss, D, CHAINS[s], _cfg(s))
    return s, keys, data, jax.tree.map(np.asarray, out)


def test_each_kernel_recovers_a_correlated_5d_gaussian(batch_run):
    import blackjax

    s, _, _, out = batch_run
    for i, mu in enumerate([MU, MU + 3.0]):
        z = out.z[i]  # (C, D, n)
        assert np.all(np.isfinite(z))
        flat = z.reshape(-1, D)
        ess = np.asarray(blackjax.ess(jnp.asarray(z), chain_axis=0, sample_axis=1))
        assert np.all(ess > 100), (s, ess)
        sd = np.sqrt(np.diag(COV))
        # mean within 4 Monte-Carlo standard errors (sd / sqrt(ESS)) per coordinate
        zscore = (flat.mean(0) - mu) / (sd / np.sqrt(ess))
        assert np.all(np.abs(zscore) < 4.0), (s, zscore)
        # variances within 25 % and correlations within 0.12 of the truth
        cov = np.cov(flat.T)
        np.testing.assert_allclose(np.diag(cov), np.diag(COV), rtol=0.25, err_msg=s)
        corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        true_corr = COV / np.outer(sd, sd)
        assert np.max(np.abs(corr - true_corr)) < 0.12, s
    # sampler bookkeeping: MALA = one leapfrog step per transition, NUTS depth within the cap
    assert out.usable.all() and out.start_ok.all()
    if s == "mala":
        assert np.all(out.n_steps == 1) and np.all(out.warmup_steps == 1)
    if s == "nuts":
        assert out.tree_depth.max() <= 6 and np.all(out.n_steps < 2**6)
        assert np.all(out.n_steps >= 1)
    if s == "chees":  # the chains of a profile share the trajectory length and step size
        assert np.all(out.n_steps == out.n_steps[:, :1, :])
        assert np.all(out.step_size == out.step_size[:, :1])


def test_vmapped_profile_does_not_depend_on_its_batch(batch_run):
    s, keys, data, out = batch_run  # (MALA and ChEES: in the slow set, with their fixture)
    # the same profile (key, data) next to a different neighbour in a batch of the same width
    # (what the driver does: chunks are padded to one width): bit-identical
    keys2 = keys.at[0].set(jax.random.PRNGKey(99))
    data2 = dict(data, mu=data["mu"].at[0].set(jnp.asarray(MU) - 5.0))
    other = gradient.run_batch(keys2, data2, gauss, D, CHAINS[s], _cfg(s))
    for a, b in zip(jax.tree.leaves(other), jax.tree.leaves(out), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])
    assert not np.array_equal(np.asarray(other.z[0]), out.z[0])
    if s == "nuts":
        # A batch of ONE profile is another XLA program: its last-bit differences grow over
        # the 900 iterations of chaotic NUTS trajectories into different (equally valid)
        # chains (measured: 9 % of tree sizes differ). MALA and ChEES stay equal to 1e-3.
        return
    alone = gradient.run_batch(
        keys[1:], jax.tree.map(lambda a: a[1:], data), gauss, D, CHAINS[s], _cfg(s)
    )
    np.testing.assert_array_equal(np.asarray(alone.n_steps[0]), out.n_steps[1])
    np.testing.assert_allclose(np.asarray(alone.z[0]), out.z[1], rtol=1e-3, atol=1e-3)


def test_failing_region_gives_no_nan_and_a_truncated_posterior_and_hopeless_profiles_are_flagged():
    # profile 0: N(0, COV) with log-density -inf where z_0 > a (a failing region). The exact
    # posterior is N(0, COV) truncated on z_0: E[z_0] = -s phi(a/s) / Phi(a/s) (s^2 = COV_00)
    # and E[z_j] = COV_j0 / COV_00 E[z_0]. Profile 1 fails everywhere: it cannot start.
    # (Same shapes and config as the NUTS fixture: the compiled program is reused.)
    a = 0.3
    g = jax.grad(lambda z: gauss(z, jax.tree.map(lambda x: x[0], _data([MU], cut=[0.0]))))(
        jnp.full(D, 1.0)
    )
    assert np.all(np.asarray(g) == 0.0)  # finite (zero) gradient where the density is -inf
    keys = jnp.stack([jax.random.PRNGKey(7), jax.random.PRNGKey(8)])
    data = _data([np.zeros(D), np.zeros(D)], dead=[False, True], cut=[a, np.inf])
    out = jax.tree.map(np.asarray, gradient.run_batch(keys, data, gauss, D, 4, _cfg("nuts")))
    for leaf in jax.tree.leaves(out):
        assert not np.any(np.isnan(np.asarray(leaf, float)))
    z = out.z[0].reshape(-1, D)
    assert np.all(z[:, 0] <= a)
    sd0 = math.sqrt(COV[0, 0])
    phi = math.exp(-0.5 * (a / sd0) ** 2) / math.sqrt(2 * math.pi)
    big_phi = 0.5 * (1 + math.erf(a / sd0 / math.sqrt(2)))
    m0 = -sd0 * phi / big_phi
    expect = COV[:, 0] / COV[0, 0] * m0
    tol = 0.15 * np.sqrt(np.diag(COV))
    assert np.all(np.abs(z.mean(0) - expect) < tol), (z.mean(0), expect)
    assert out.divergent[0].sum() > 0  # trajectories entering the region end as divergences
    assert bool(out.usable[0]) and not bool(out.usable[1]) and not out.start_ok[1].any()
    # the summary flags the hopeless profile and stays finite
    pred = np.zeros(out.z.shape[:3] + (3,))
    none = np.zeros(pred.shape[:3], bool)
    summ = gradient.summarize(out, pred, none, np.ones((2, 3)), np.ones((2, 3), bool))
    assert summ["status"][0] & 256 == 0 and summ["status"][1] & 256
    for name in ("para_summary_mean", "para_es", "soc_mod_opt", "rhat", "gr_mean"):
        assert np.all(np.isnan(summ[name][1])), name  # not sampled: missing, not zero
    assert not summ["filter_pass"][1]
    for v in summ.values():
        assert np.all(np.isfinite(np.asarray(v, float))[0])


def test_lockstep_waste_by_hand():
    steps = np.array([[1, 7, 3], [3, 7, 1]])  # two chains, three iterations
    w = gradient.lockstep_waste(steps)
    # lock-step runs max(1,3) + max(7,7) + max(3,1) = 13 steps per chain: 26; useful 22
    assert w["computed"] == 26 and w["useful"] == 22
    assert w["wasted_fraction"] == pytest.approx(4 / 26)


def test_stuck_chains_are_rescued_from_the_best_chain():
    # 5 parameters: a chain more than 20 + 5 below the best is stuck
    lp = jnp.asarray([-50.0, -45.0, -1000.0, -70.9, -70.0])
    src, stuck = gradient._rescue(lp, 5)
    assert np.asarray(stuck).tolist() == [False, False, True, True, False]
    assert np.asarray(src).tolist() == [0, 1, 1, 1, 4]


def test_config_validation():
    with pytest.raises(ValueError, match="sampler"):
        gradient.GradientConfig(sampler="hmc").validate()
    with pytest.raises(ValueError, match="max_tree_depth"):
        gradient.GradientConfig(max_tree_depth=0).validate()
    assert gradient.GradientConfig(sampler="mala").target == 0.574


@pytest.mark.slow
def test_real_model_log_density_fails_to_minus_inf_with_zero_gradient():
    from soc_jax.examples import example_forcing

    forcing, _ = example_forcing(1, seed=2)
    f = forcing[0]
    bad = type(f)(**{**{k: getattr(f, k) for k in f.field_info()}, "tsoi": f.tsoi * 0 + 100.0})
    log_pi = gradient.make_log_density("clm5", "proda")
    for forc, finite in ((f, True), (bad, False)):
        data = {
            "forcing": jax.tree.map(jnp.asarray, forc),
            "depth": jnp.asarray([0.05, 0.2, 0.5, 0.1]),
            "obs": jnp.asarray([3000.0, 2000.0, 900.0, 0.0]),
            "mask": jnp.asarray([True, True, True, False]),
        }
        v, g = jax.jit(jax.value_and_grad(lambda z, d=data: log_pi(z, d)))(jnp.full(21, 0.3))
        assert np.all(np.isfinite(np.asarray(g)))
        assert np.isfinite(float(v)) == finite
        if not finite:
            assert float(v) == -np.inf and np.all(np.asarray(g) == 0.0)


def test_cli_sampler_flag_errors_are_one_line(tmp_path, capsys):
    from soc_jax.cli import main

    for bad, flag in (
        (["--sampler", "hmc"], "--sampler"),
        (["--sampler", "nuts", "--warmup", "5"], "--warmup"),
        (["--sampler", "nuts", "--max-tree-depth", "0"], "--max-tree-depth"),
        (["--sampler", "mala", "--target-accept", "1.5"], "--target-accept"),
        (["--sampler", "chees", "--draws", "x"], "--draws"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["calibrate", "--data", str(tmp_path), "--out", str(tmp_path / "x"), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert flag in err[-1] and "Traceback" not in "".join(err)


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["nuts", "mala", "chees"])
def test_cli_works_for_every_gradient_sampler(sampler, tmp_path):
    import xarray as xr

    from soc_jax.cli import main
    from soc_jax.data.synthetic import make_world

    d = tmp_path / "world"
    make_world(3, seed=3, model="clm5").to_netcdf(d)
    out = tmp_path / sampler
    args = ["calibrate", "--data", str(d), "--out", str(out), "--sampler", sampler]
    args += ["--warmup", "30", "--draws", "12", "--max-tree-depth", "3", "--chains", "2"]
    assert main(args) == 0
    for name in ("posterior.nc", "draws.nc", "summary.txt", "profiles.png", "diagnostics.png"):
        assert (out / name).is_file(), name
    post = xr.load_dataset(out / "posterior.nc")
    draws = xr.load_dataset(out / "draws.nc")
    assert post.attrs["sampler"] == sampler
    diagnostics = ("gr", "gr_mean", "rhat", "rhat_max", "ess_bulk", "ess_tail")
    bad = (post["status"].values & 1024) != 0  # a non-finite diagnostic is flagged
    for v in post.data_vars.values():
        if v.dtype.kind == "f" and "profile" in v.dims:
            rows = ~bad if v.name in diagnostics else slice(None)
            assert np.all(np.isfinite(v.values[rows])), v.name
    assert not np.any(post["filter_pass"].values[bad])
    assert draws["p"].dims == ("profile", "chain", "draw", "parameter")
    assert draws["p"].shape[1:3] == (2, 12) and draws["soc_nodes"].shape[-1] == 20
    q05, q95 = post["soc_nodes_q05"].values, post["soc_nodes_q95"].values
    assert np.all(q05 <= post["soc_nodes_mean"].values + 1e-9)
    assert np.all(post["soc_nodes_mean"].values <= q95 + 1e-9) and np.all(q95 > 0)
    assert np.all(post["n_grad_evals"].values >= 43)  # warm-up + draws + 1, >= 1 step each
    assert main(args + ["--resume"]) == 0  # resuming a finished run is accepted


def _synthetic_output(z, divergent=None, rescued=None):
    """A SamplerOutput of P profiles from given draws z (P, C, D, n); no sampling."""
    P, C, D, n = z.shape
    zeros = np.zeros((P, C, D))
    return gradient.SamplerOutput(
        z=z,
        logdensity=zeros,
        n_steps=np.ones((P, C, D), int),
        divergent=np.zeros((P, C, D), bool) if divergent is None else divergent,
        accept=zeros + 0.8,
        tree_depth=np.zeros((P, C, D), int),
        warmup_steps=np.ones((P, C, 20), int),
        step_size=np.full((P, C), 0.1),
        inverse_mass_matrix=np.ones((P, C, n)),
        init_evals=np.full((P, C), 4),
        start_ok=np.ones((P, C), bool),
        usable=np.ones(P, bool),
        rescued=np.zeros((P, C), bool) if rescued is None else rescued,
    )


def _summary(out):
    P, C, D, _ = out.z.shape
    obs = np.array([[100.0, 50.0]] * P)
    pred = np.broadcast_to(obs[:, None, None, :], (P, C, D, 2))  # perfect fit: R2 = 1
    return gradient.summarize(out, pred, np.zeros((P, C, D), bool), obs, np.ones((P, 2), bool))


def test_rescued_or_divergent_profiles_fail_the_site_filter():
    # five profiles with the same well-mixed iid draws (R-hat ~ 1, R2 = 1); 0: clean; 1: a
    # rescued chain; 2: 2 % of transitions divergent (> 1 %); 3: 0.5 % divergent (<= 1 %);
    # 4: chains frozen at different values (GR = inf, R-hat not finite)
    rng = np.random.default_rng(0)
    P, C, D, n = 5, 4, 500, 2
    z = np.broadcast_to(rng.standard_normal((1, C, D, n)), (P, C, D, n)).copy()
    z[4] = np.arange(C)[:, None, None] * 0.5
    div = np.zeros((P, C, D), bool)
    div[2, :, : D // 50] = True  # 2 %
    div[3, 0, : C * D // 200] = True  # 0.5 %
    resc = np.zeros((P, C), bool)
    resc[1, 2] = True
    s = _summary(_synthetic_output(z, div, resc))
    assert s["rhat_max"][0] < 1.05 and s["filter_pass"][0] and s["status"][0] == 0
    assert s["status"][1] & 512 and not s["filter_pass"][1]
    assert s["status"][2] & 2048 and not s["filter_pass"][2]
    assert s["divergent_share"][2] == pytest.approx(0.02)
    assert s["filter_pass"][3] and s["status"][3] & 2048 == 0
    assert s["gr"][4, 0] == np.inf and s["status"][4] & 1024 and not s["filter_pass"][4]
    assert gradient.MAX_DIVERGENT_SHARE == 0.01
