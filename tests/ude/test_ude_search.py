"""Fused networks, padding, float32 networks and the batched (many-configuration) solve."""

import equinox as eqx
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from soc_jax.ude.search import (
    make_member,
    solve_batched,
    stack,
    train_batched,
    train_batched_threads,
    unstack,
)
from soc_jax.ude.synthetic import SyntheticConfig, make_dataset
from soc_jax.ude.train import TrainConfig
from soc_jax.ude.vector_field import NeuralReaction, solve

NZ, NT, T_FINAL = 10, 6, 5.0


def _np_gelu(x):
    # tanh approximation (jax.nn.gelu's default), written out from its definition
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))


def _np_rates(r: NeuralReaction, hidden, act, c, env, z, t):
    """Two separate per-node MLPs in NumPy, from the (unpadded) weight blocks."""
    h1, h2 = hidden
    f = np.tanh if act == "tanh" else _np_gelu
    centre = np.array([6.25, 0.6, 0.5, 25.0, 0.5, 25.0])
    half = np.array([0.25, 0.6, 0.1, 5.0, 0.5, 25.0])
    out = np.zeros((2, c.size))
    for k in range(2):
        w1, b1 = np.asarray(r.w1[k, :h1]), np.asarray(r.b1[k, :h1])
        w2, b2 = np.asarray(r.w2[k, :h2, :h1]), np.asarray(r.b2[k, :h2])
        w3, b3 = np.asarray(r.w3[k, :h2]), float(r.b3[k])
        for i in range(c.size):
            x = (np.array([env[0, i], c[i], env[1, i], env[2, i], z[i], t]) - centre) / half
            a = f(w1 @ x + b1)
            a = f(w2 @ a + b2)
            out[k, i] = w3 @ a + b3
    sp = np.logaddexp(0.0, out) * 0.05
    return sp[0], sp[1] * c


def _inputs(seed=0, n=NZ):
    rng = np.random.default_rng(seed)
    c = 0.6 + 0.3 * rng.random(n)
    env = np.stack([6.0 + 0.5 * rng.random(n), 0.4 + 0.2 * rng.random(n), 20 + 10 * rng.random(n)])
    return c, env, np.linspace(0.0, 1.0, n), 3.7


def _activate(r: NeuralReaction, key) -> NeuralReaction:
    """Give the zero-initialised last layers real (non-padded) values."""
    w3 = 0.5 * jr.normal(key, r.w3.shape) * r.mask().w3
    return eqx.tree_at(lambda m: (m.w3, m.b3), r, (w3, jnp.array([0.1, -0.2])))


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_fused_networks_equal_two_numpy_mlps(act):
    """The stacked one-chain evaluation equals two separate per-node MLPs (NumPy)."""
    hidden = (7, 5)
    r = _activate(NeuralReaction(hidden, act, key=jr.key(0)), jr.key(1))
    c, env, z, t = _inputs()
    p, q = r(jnp.asarray(c), jnp.asarray(env), jnp.asarray(z), t)
    p_ref, q_ref = _np_rates(r, hidden, act, c, env, z, t)
    np.testing.assert_allclose(np.asarray(p), p_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(np.asarray(q), q_ref, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_padding_and_activation_switch_are_exact(act):
    """Zero-padded widths with the traced activation flag give the unpadded network's rates."""
    hidden, pad = (7, 5), (12, 9)
    base = _activate(NeuralReaction(hidden, act, key=jr.key(0)), jr.key(1))
    padded = NeuralReaction(hidden, act, key=jr.key(0), pad_to=pad, select_activation=True)
    # same real weights (the padded init embeds the same draws), padded last layer set alike
    w3 = jnp.zeros((2, pad[1])).at[:, : hidden[1]].set(base.w3)
    padded = eqx.tree_at(lambda m: (m.w3, m.b3), padded, (w3, base.b3))
    assert float(jnp.sum(padded.w1[:, hidden[0] :] ** 2)) == 0.0
    assert float(jnp.sum(padded.w2[:, hidden[1] :] ** 2)) == 0.0
    c, env, z, t = (jnp.asarray(a) for a in _inputs(1))
    for a, b in zip(base(c, env, z, t), padded(c, env, z, t), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-14, atol=1e-16)
    assert float(padded.weight_decay()) == pytest.approx(float(base.weight_decay()), rel=1e-14)
    # the mask marks exactly the real weights
    m = padded.mask()
    assert float(jnp.sum(m.w1)) == 2 * hidden[0] * 6
    assert float(jnp.sum(m.w2)) == 2 * hidden[0] * hidden[1]
    assert float(jnp.sum(m.w3)) == 2 * hidden[1]


@pytest.mark.parametrize("act", ["tanh", "gelu"])
def test_one_formula_activation_equals_tanh_and_gelu(act):
    """The traced-flag activation is tanh (exactly) or GELU's tanh form, over a wide range."""
    r = NeuralReaction((4, 3), act, key=jr.key(0), select_activation=True)
    x = np.linspace(-12.0, 12.0, 4001)
    got = np.asarray(r._act(jnp.asarray(x)))
    if act == "tanh":
        # the flagged formula reduces to the very tanh of the unflagged network
        np.testing.assert_array_equal(got, np.asarray(jnp.tanh(jnp.asarray(x))))
        np.testing.assert_allclose(got, np.tanh(x), rtol=1e-14, atol=1e-15)
    else:
        # (absolute 1e-14: XLA's tanh stops short of -1 by an ulp where NumPy's reaches it)
        np.testing.assert_allclose(got, _np_gelu(x), rtol=1e-12, atol=1e-14)


def test_float32_networks_close_to_float64():
    """float32 networks inside the float64 model change the rates by float32 round-off only."""
    r64 = _activate(NeuralReaction((16, 8), "tanh", key=jr.key(2)), jr.key(3))
    r32 = NeuralReaction((16, 8), "tanh", key=jr.key(2), float32=True)
    r32 = eqx.tree_at(lambda m: (m.w3, m.b3), r32, (r64.w3, r64.b3))
    c, env, z, t = (jnp.asarray(a) for a in _inputs(2))
    for a, b in zip(r64(c, env, z, t), r32(c, env, z, t), strict=True):
        assert b.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-9)


@pytest.fixture(scope="module")
def tiny_data():
    return make_dataset(SyntheticConfig(nz=NZ, n_times=NT, t_final=T_FINAL, noise=0.07), jr.key(4))


def _members():
    cfgs = [
        TrainConfig(hidden=(8, 4), activation="tanh", seed=0),
        TrainConfig(hidden=(6, 6), activation="gelu", seed=1),
        TrainConfig(hidden=(8, 6), activation="tanh", seed=2),
    ]
    ms = []
    for i, c in enumerate(cfgs):
        m = make_member(c, NZ, jr.key(c.seed), pad_to=(8, 6), select=True)
        ms.append(eqx.tree_at(lambda v: v.reaction, m, _activate(m.reaction, jr.key(10 + i))))
    return ms


def test_batched_solve_equals_separate_solves(tiny_data):
    """K members in one shared-step solve = K separate solves (vmap == loop, to tolerance)."""
    d = tiny_data
    ms = _members()
    tol = 1e-9
    ys, ok = solve_batched(
        stack(ms), d.c0, d.drivers_obs, d.ts, rtol=tol, atol=tol, max_steps=4096, step_to_knots=True
    )
    assert bool(jnp.all(ok))
    for k, m in enumerate(ms):
        ref, ok1 = solve(
            m, d.c0, d.drivers_obs, d.ts, rtol=tol, atol=tol, max_steps=4096, step_to_knots=True
        )
        assert bool(ok1)
        # different step sequences: agreement to the solvers' global error (~100 x tol)
        np.testing.assert_allclose(np.asarray(ys[k]), np.asarray(ref), rtol=1e-6, atol=1e-8)
        # and the unstacked member is the member
        np.testing.assert_array_equal(np.asarray(unstack(stack(ms), k).reaction.w2), m.reaction.w2)


def test_train_batched_keeps_padding_zero_and_lowers_loss(tiny_data):
    """Batched Adam: padded weights stay exactly zero; every member's loss goes down."""
    cfgs = [
        TrainConfig(hidden=(8, 4), activation="tanh", lr=1e-2, seed=0, lambda_coll=0.0),
        TrainConfig(hidden=(6, 6), activation="gelu", lr=5e-3, seed=1, lambda_coll=0.0),
    ]
    res = train_batched(cfgs, "trajectory", tiny_data, adam_steps=6, patience=50)
    r = res.models.reaction
    assert float(jnp.sum(r.w1[0, :, 8:] ** 2)) == 0.0  # nothing padded in H1 for member 0
    assert float(jnp.sum(r.w2[0, :, 4:] ** 2)) == 0.0 and float(jnp.sum(r.w3[0, :, 4:] ** 2)) == 0
    assert (
        float(jnp.sum(r.w1[1, :, 6:] ** 2)) == 0.0 and float(jnp.sum(r.w2[1, :, :, 6:] ** 2)) == 0
    )
    assert np.all(np.isfinite(res.best_loss))
    # the first iterate is the initial model: its loss is what training has to beat
    init = train_batched(cfgs, "trajectory", tiny_data, adam_steps=1, patience=50)
    assert np.all(res.best_loss < init.best_loss)
    assert np.all(np.isfinite(res.terminal_mse))
    # two chunks trained in two threads at once: each chunk is the batch trained alone
    two = train_batched_threads(
        cfgs + cfgs, "trajectory", tiny_data, threads=2, chunk=2, adam_steps=6, patience=50
    )
    for half in (slice(0, 2), slice(2, 4)):
        np.testing.assert_array_equal(two.best_loss[half], res.best_loss)
        np.testing.assert_array_equal(np.asarray(two.models.reaction.w2[half]), np.asarray(r.w2))


def test_resume_continues_as_if_uninterrupted(tiny_data):
    """2 Adam iterations, then 4 more from the returned state, equal 6 in one go.

    Also with the members taken apart and put back in the other order (how successive
    halving regroups survivors): each member's losses, best weights and iteration count are
    those of the uninterrupted run.
    """
    from soc_jax.ude.search import BatchState

    cfgs = [
        TrainConfig(hidden=(8, 4), activation="tanh", lr=1e-2, seed=0, lambda_coll=0.0),
        TrainConfig(hidden=(8, 4), activation="gelu", lr=5e-3, seed=1, lambda_coll=0.0),
    ]
    kw = dict(patience=50, select=True)
    whole = train_batched(cfgs, "trajectory", tiny_data, adam_steps=6, **kw)
    first = train_batched(cfgs, "trajectory", tiny_data, adam_steps=2, **kw)
    assert list(first.state.iterations) == [2, 2]
    rest = train_batched(cfgs, "trajectory", tiny_data, adam_steps=4, resume=first.state, **kw)
    swapped = BatchState.concat([first.state.take([1]), first.state.take([0])])
    back = train_batched(cfgs[::-1], "trajectory", tiny_data, adam_steps=4, resume=swapped, **kw)
    for res, order in ((rest, [0, 1]), (back, [1, 0])):
        assert list(res.state.iterations) == [6, 6]
        np.testing.assert_allclose(res.best_loss[order], whole.best_loss, rtol=1e-12)
        np.testing.assert_allclose(res.terminal_mse[order], whole.terminal_mse, rtol=1e-12)
        np.testing.assert_allclose(
            np.asarray(res.models.reaction.w2)[order],
            np.asarray(whole.models.reaction.w2),
            rtol=1e-12,
            atol=1e-15,
        )
    with pytest.raises(ValueError, match="members"):
        train_batched(cfgs[:1], "trajectory", tiny_data, adam_steps=1, resume=first.state, **kw)


def test_halving_budgets_and_survivors():
    """Rungs at 1/4, 1/2 and all of the budget; about 4 trials reach the last; survivors
    chosen by hand below."""
    from soc_jax.ude.cases import halving_budgets, halving_eta, halving_survivors

    assert halving_budgets(100) == [25, 50, 100]
    assert halving_budgets(8) == [2, 4, 8]
    assert halving_budgets(100, rungs=2) == [50, 100]
    assert halving_budgets(2) == [1, 2] and halving_budgets(1) == [1]
    assert halving_eta(16) == 2.0 and halving_eta(144) == 6.0  # 16/8/4 and 144/24/4
    assert halving_eta(8) == 2.0  # never less than halving
    groups = ["a"] * 4 + ["b"] * 4
    scores = [5.0, 1.0, 7.0, 3.0, 2.0, 8.0, 4.0, 6.0]
    # best 3: trials 1 (1.0), 4 (2.0), 3 (3.0); group b has one, its next best (6: 4.0) joins
    assert halving_survivors(scores, range(8), groups, keep=3, chunk=2) == [1, 3, 4, 6]
    # failed trials (inf or NaN) rank last
    scores_nan = [np.nan, 1.0, np.inf, 3.0, 2.0, 8.0, 4.0, 6.0]
    assert halving_survivors(scores_nan, range(8), groups, keep=4, chunk=2) == [1, 3, 4, 6]
    # a group with one survivor and no spare trial drops it (no half-empty batch)
    assert halving_survivors([1.0, 3.0, 0, 0, 2.0], [0, 1, 4], groups + ["b"], 2, 2) == [0, 1]
    # chunk 1: exactly the best `keep`
    assert halving_survivors(scores, range(8), groups, keep=3, chunk=1) == [1, 3, 4]


@pytest.mark.slow
def test_halving_search_ends_where_full_training_ends(tiny_data):
    """Successive halving on Case 5's 16-trial grid (tiny data, 8 iterations: rungs 2/4/8).

    Trials that reach the last rung were stopped twice and resumed, in other batches: their
    terminal losses equal those of the same trials trained 8 iterations straight (the full
    schedule), to the solver's tolerance (batch-mates share adaptive steps). Pruned trials ran
    exactly their rung's budget, and the winner comes from the last rung.
    """
    from soc_jax.ude.cases import CASES, halving_budgets, vmapped_search

    case = CASES[5]
    quiet = lambda *a: None
    key = lambda r: (tuple(r["hidden"]), r["activation"], r["lr"])
    half, timing = vmapped_search(case, tiny_data, adam_steps=8, log=quiet)
    full, _ = vmapped_search(case, tiny_data, adam_steps=8, schedule="full", curves=True, log=quiet)
    budgets = halving_budgets(8)
    assert budgets == [2, 4, 8] and timing["schedule"] == "halving"
    counts = [r["trials"] for r in timing["rungs"]]  # 16 / 8 / 4, groups rounded up to pairs
    assert counts[0] == 16 and counts[1] >= 8 and counts[1] >= counts[2] >= 4
    assert all(n % 2 == 0 for n in counts)
    assert timing["trial_iterations"] == sum(r["iterations"] for r in half) < 16 * 8
    by_key = {key(r): r for r in full}
    assert half[0]["rung"] == 3
    for r in half:
        assert len(r["terminal_loss_by_rung"]) == r["rung"]
        if r["rung"] < 3:
            assert r["iterations"] == budgets[r["rung"] - 1]
        else:
            assert r["iterations"] == 8 == by_key[key(r)]["iterations"]
            np.testing.assert_allclose(r["terminal_loss"], by_key[key(r)]["terminal_loss"], 1e-4)
    # the scores each rung ranked by are the full run's learning curve at the rung budgets
    for r in half:
        curve = by_key[key(r)]["curve"]
        at_rungs = [curve[min(b, len(curve)) - 1] for b in budgets[: r["rung"]]]
        np.testing.assert_allclose(r["terminal_loss_by_rung"], at_rungs, rtol=1e-4)


@pytest.mark.slow
def test_overlapped_tails_change_no_number(tmp_path, monkeypatch):
    """``run_cases`` runs Case 4's L-BFGS tail while Case 5 trains: same numbers as one by one.

    The overlap is a scheduling change only, so every score and loss equals that of
    ``run_case`` called case after case (2 Adam and 2 L-BFGS iterations); a tail that fails
    stops the run with its own error.
    """
    import soc_jax.ude.cases as cases_mod

    kw = dict(quick=False, seed=0, max_iters=2, figures=False, log=lambda *a: None)
    one_by_one = [cases_mod.run_case(n, out=str(tmp_path / "a"), **kw) for n in (4, 5)]
    overlapped = cases_mod.run_cases([4, 5], out=str(tmp_path / "b"), **kw)
    assert "lbfgs_seconds" in overlapped[0]  # Case 4 is clean: its tail ran L-BFGS
    for a, b in zip(one_by_one, overlapped, strict=True):
        assert a["case"] == b["case"] and a["methods"].keys() == b["methods"].keys()
        for name in a["methods"]:
            for k in ("final_loss", "mse_noisy", "mse_clean", "r2_clean"):
                np.testing.assert_array_equal(a["methods"][name][k], b["methods"][name][k])

    def broken(*args, **kwargs):
        raise RuntimeError("tail failed")

    monkeypatch.setattr(cases_mod, "refine_clean", broken)
    with pytest.raises(RuntimeError, match="tail failed"):
        cases_mod.run_cases([4, 5], out=str(tmp_path / "c"), **kw)
