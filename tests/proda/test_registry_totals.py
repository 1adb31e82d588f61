"""One model registry and one failure rule; bootstrap totals over the same cells for every
member; members that never improved are left out of the prediction, with a note."""

import dataclasses
from types import SimpleNamespace

import jax.numpy as jnp
import numpy as np
import pytest

from soc_jax.proda import predict as pr


def test_registry_names_and_unknown_model():
    from soc_jax.models import MODELS, clm5, compas, get_model

    assert MODELS == ("clm5", "compas")
    assert get_model("clm5") is clm5 and get_model("compas") is compas
    with pytest.raises(ValueError, match="unknown model 'century'.*clm5, compas"):
        get_model("century")


def test_one_failure_rule_everywhere():
    from soc_jax.calibration import likelihood
    from soc_jax.models import is_failure
    from soc_jax.proda import end_to_end

    r = SimpleNamespace(
        ok=jnp.array([True, False, True]),
        soc=jnp.array([[1.0, 2.0], [1.0, 2.0], [1.0, jnp.nan]]),
    )
    assert np.asarray(is_failure(r)).tolist() == [False, True, True]
    # predict used ``not ok`` only: a non-finite SOC with ok set is a failure too
    for f in (pr.is_failure, likelihood.is_failure):
        assert f is is_failure
    # one registry: no module keeps a lookup of its own
    from soc_jax.models import get_model

    assert pr.get_model is get_model and end_to_end.get_model is get_model
    assert likelihood.get_model is get_model and not hasattr(likelihood, "model_module")


def test_bootstrap_totals_sum_every_member_over_the_same_cells(monkeypatch):
    n, area_lat, res = 5, np.array([0.0, 10.0, 20.0, 30.0, 40.0]), 10.0
    fail = {1: [3], 2: [0, 3]}  # bootstrap member -> its failed cells (member 0: the seed)
    calls = iter(range(10))

    def fake_simulate(model, x, forcing, *, mode, block, progress):
        m = next(calls)
        soc = np.full((n, 20), 100.0 * (m + 1))
        flags = np.zeros(n, np.int32)
        flags[fail.get(m, [])] = 4  # SINGULAR
        return np.where(flags[:, None] == 0, soc, np.nan), flags

    monkeypatch.setattr(pr, "simulate_cells_flags", fake_simulate)
    monkeypatch.setattr(pr, "predict_parameters", lambda models, X: np.full((3, n, 21), 0.5))
    pred = pr.global_prediction(
        "clm5",
        None,
        ["seed", "bootstrap", "bootstrap"],
        np.zeros((n, 60)),
        None,
        area_lat,
        res,
        mode="proda",
        default=False,
    )
    area = pr.cell_area(area_lat, res)
    s100 = pred.stocks[:, :, 1]  # (member, cell), gC m-2; stock of a uniform profile
    assert s100[1, 0] == pytest.approx(2 * s100[0, 0]) and np.isnan(s100[2, 0])  # failed: NaN
    common = [1, 2, 4]  # every bootstrap member succeeded there
    expected = [sum(s100[m, c] * area[c] for c in common) / 1e15 for m in (1, 2)]
    np.testing.assert_allclose(pred.totals["proda_bootstrap_members"], expected, rtol=1e-12)
    assert pred.totals["proda_bootstrap"]["top_100cm"]["median"] == pytest.approx(np.mean(expected))
    info = pred.totals["proda_bootstrap_cells"]
    assert info["n_cells_summed"] == 3 and info["cells_left_out"] == 2
    assert info["member_failed_cells"] == [1, 2]
    assert info["area_share_left_out"] == pytest.approx((area[0] + area[3]) / area.sum())
    assert info["member_failed_area_share"][1] == pytest.approx((area[0] + area[3]) / area.sum())


def test_members_that_never_improved_are_left_out_with_a_note():
    from soc_jax.proda.cli import usable_members
    from soc_jax.proda.train import TrainConfig, member_splits, new_ensemble

    cfg = TrainConfig(hidden=(4,))
    tr, va, kinds = member_splits(20, n_seeds=2, n_bootstrap=2)
    ens = new_ensemble(60, 3, tr, va, cfg)
    st = ens.state
    st = dataclasses.replace(
        st, best_epoch=jnp.array([3, -1, 5, -1]), best_val=jnp.array([0.1, jnp.inf, 0.2, jnp.nan])
    )
    ens = dataclasses.replace(ens, state=st)
    models, kept, note = usable_members(ens, kinds)
    assert kept == ["seed", "bootstrap"]
    assert models.layers[0].weight.shape[0] == 2
    assert "left out 2 of 4 members" in note and "1 seeds, 1 bootstraps" in note
