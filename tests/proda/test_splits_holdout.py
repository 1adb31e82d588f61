"""Validation never overlaps training (by profile) for any member; spatial hold-out blocks."""

import numpy as np
import pytest

from soc_jax.proda.holdout import block_ids, random_holdout, spatial_holdout
from soc_jax.proda.train import member_splits


@pytest.mark.parametrize("split", ["shuffled", "keras"])
def test_every_member_validates_on_profiles_it_never_trains_on(split):
    ids = np.array([f"p{i}" for i in range(200)])
    tr, va, kinds = member_splits(200, n_seeds=3, n_bootstrap=20, split=split, seed=4)
    assert kinds.count("bootstrap") == 20 and tr.shape == (23, 180) and va.shape == (23, 20)
    for m in range(23):
        assert not set(ids[tr[m]]) & set(ids[va[m]]), m
        assert len(np.unique(va[m])) == 20
    # a bootstrap member resamples with replacement within its training profiles
    assert all(len(np.unique(tr[m])) < 180 for m in range(3, 23))
    assert all(len(np.unique(tr[m])) == 180 for m in range(3))


def test_member_splits_over_given_rows_never_touch_the_held_out_rows():
    rows = np.arange(0, 300, 3)  # e.g. the training rows left after a hold-out
    tr, va, _ = member_splits(rows, n_seeds=2, n_bootstrap=5, seed=1)
    allowed = set(rows.tolist())
    for m in range(7):
        assert set(tr[m].tolist()) <= allowed and set(va[m].tolist()) <= allowed
        assert not set(tr[m].tolist()) & set(va[m].tolist())


def _sites(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-60, 80, n), rng.uniform(-180, 180, n)


@pytest.mark.parametrize("frac", [0.1, 0.25])
def test_spatial_holdout_withholds_whole_blocks_and_reaches_the_fraction(frac):
    lat, lon = _sites()
    train, hold, region = spatial_holdout(lat, lon, frac, seed=3)
    assert len(hold) >= frac * len(lat)
    assert sorted(np.concatenate([train, hold])) == list(range(len(lat)))
    # no 30 x 30 degree block has sites on both sides (independent block arithmetic)
    blk = [(int((la + 90) // 30), int((lo + 180) // 30)) for la, lo in zip(lat, lon, strict=True)]
    held = {blk[i] for i in hold}
    assert not held & {blk[i] for i in train}
    assert len(held) == len(np.unique(region[hold]))
    _, again_hold, _ = spatial_holdout(lat, lon, frac, seed=3)
    np.testing.assert_array_equal(again_hold, hold)  # deterministic with the seed
    assert not np.array_equal(spatial_holdout(lat, lon, frac, seed=4)[1], hold)


def test_block_ids_and_random_holdout():
    assert (
        block_ids([0.0, 29.9, 30.0], [0.0, 0.0, 0.0])[:2].tolist()
        == [block_ids([0.0], [10.0])[0]] * 2
    )
    assert block_ids([0.0], [190.0])[0] == block_ids([0.0], [-170.0])[0]  # 0..360 longitudes
    train, hold = random_holdout(50, 0.2, seed=0)
    assert len(hold) == 10 and not set(train) & set(hold)
    assert len(spatial_holdout(*_sites(20), 0.0, seed=0)[1]) == 0


def test_end_to_end_reports_each_reason_a_profile_is_left_out():
    from soc_jax.proda.e2e_run import _drop_lines

    X = np.ones((5, 3))
    X[0, 1] = np.nan
    mask = np.ones((5, 2), bool)
    mask[1] = False
    soc = np.ones((5, 2))
    soc[2, 0] = -1.0
    soc[1] = 1.0  # padding of the profile without observations
    assert _drop_lines(X, mask, soc) == [
        "profiles: 2 of 5 usable",
        "  left out: 1 profiles: non-finite covariates",
        "  left out: 1 profiles: no observed layer",
        "  left out: 1 profiles: observed SOC not positive or not finite",
    ]
