"""Profile schema: every validation rule names the profile and the rule; NetCDF round trip;
padding."""

import numpy as np
import pytest
import xarray as xr

from soc_jax.data import (
    make_profiles,
    pad_observations,
    profile_problems,
    read_profiles,
    validate_profiles,
    write_profiles,
)


def _two(**over):
    args = dict(
        profile_id=["A", "B"],
        lat=[10.0, -20.0],
        lon=[5.0, 100.0],
        depth_top=[[0.0, 0.1, 0.3], [0.0, 0.2]],
        depth_bottom=[[0.1, 0.3, 0.6], [0.2, 0.5]],
        soc=[[9000.0, 5000.0, 2000.0], [8000.0, 3000.0]],
    )
    args.update(over)
    return args


def test_make_profiles_layout_and_attributes():
    ds = make_profiles(**_two(), bulk_density=[[1.2, 1.3, 1.4], [1.1, 1.5]])
    assert ds.sizes == {"profile": 2, "layer": 3}
    assert ds["mask"].values.tolist() == [[True, True, True], [True, True, False]]
    assert ds["n_layers"].values.tolist() == [3, 2]
    np.testing.assert_allclose(ds["depth_node"].values[0], [0.05, 0.2, 0.45])
    assert np.isnan(ds["soc"].values[1, 2])
    assert ds["soc"].attrs["units"] == "gC m-3"
    assert ds["depth_top"].attrs["units"] == "m"
    assert ds["bulk_density"].attrs["units"] == "g cm-3"
    assert "long_name" in ds["lat"].attrs


# Each rule's whole message, written out by hand: the profile, the rule, the offending values in
# the user's units (m here) and the offending layer counted from the surface (1 = top).
RULE_MESSAGES = [
    (
        dict(soc=[[9000.0, np.nan, 2000.0], [8000.0, 3000.0]]),
        "profile 'A' (index 0): soc is NaN: soc nan (layer 2 of 3 counted from the surface, "
        "0.1-0.3 m)",
    ),
    (
        dict(soc=[[9000.0, 5000.0, 2000.0], [8000.0, -3.0]]),
        "profile 'B' (index 1): soc is negative: soc -3 gC m-3 (layer 2 of 2 counted from the "
        "surface, 0.2-0.5 m)",
    ),
    (dict(profile_id=["A", "A"]), "profile 'A' (index 1): duplicate profile_id (first at index 0)"),
    (dict(lat=[10.0, 95.0]), "profile 'B' (index 1): lat 95 outside [-90, 90] degrees"),
    (dict(lon=[-190.0, 100.0]), "profile 'A' (index 0): lon -190 outside [-180, 360] degrees"),
    (
        dict(depth_bottom=[[0.1, 0.05, 0.6], [0.2, 0.5]]),
        "profile 'A' (index 0): bottom above top (depth_bottom <= depth_top): depth_bottom "
        "0.05 m <= depth_top 0.1 m (layer 2 of 3 counted from the surface, 0.1-0.05 m)",
    ),
    (
        dict(depth_top=[[0.0, 0.05, 0.3], [0.0, 0.2]]),
        "profile 'A' (index 0): overlapping layers (depth_top < previous bottom): depth_top "
        "0.05 m is above depth_bottom 0.1 m of layer 1 (layer 2 of 3 counted from the surface, "
        "0.05-0.3 m)",
    ),
    (
        dict(depth_top=[[0.0, 0.1, 0.25], [0.0, 0.2]]),
        "profile 'A' (index 0): overlapping layers (depth_top < previous bottom): depth_top "
        "0.25 m is above depth_bottom 0.3 m of layer 2 (layer 3 of 3 counted from the surface, "
        "0.25-0.6 m)",
    ),
    (
        dict(depth_top=[[-0.1, 0.1, 0.3], [0.0, 0.2]]),
        "profile 'A' (index 0): depth_top is negative: depth_top -0.1 m (layer 1 of 3 counted "
        "from the surface, -0.1-0.1 m)",
    ),
    (
        dict(depth_node=[[0.05, 0.2, 0.7], [0.1, 0.3]]),
        "profile 'A' (index 0): depth_node outside its layer: depth_node 0.7 m (layer 3 of 3 "
        "counted from the surface, 0.3-0.6 m)",
    ),
]


@pytest.mark.parametrize(("over", "message"), RULE_MESSAGES)
def test_each_validation_rule_names_profile_rule_and_layer(over, message):
    with pytest.raises(ValueError) as err:
        make_profiles(**_two(**over))
    assert str(err.value).startswith(message)
    assert str(err.value)[len(message) :] in ("", " (and 1 more problems)")
    assert profile_problems(make_profiles(**_two(**over), validate=False))[0][1] == message


def test_pair_rules_name_the_deeper_layer():
    """Node depths not increasing between layers 2 and 3: layer 3 is named (not layer 2)."""
    ds = make_profiles(
        **_two(
            depth_node=[[0.05, 0.25, 0.22], [0.1, 0.3]], depth_top=[[0.0, 0.1, 0.2], [0.0, 0.2]]
        ),
        validate=False,
    )
    problems = [m for _, m in profile_problems(ds)]
    assert (
        "profile 'A' (index 0): depths not increasing (depth_node): depth_node 0.22 m is not "
        "below 0.25 m of layer 2 (layer 3 of 3 counted from the surface, 0.2-0.6 m)"
    ) in problems


def test_messages_use_the_source_depth_unit():
    """Data that came in cm (the loaders record it) are reported in cm."""
    ds = make_profiles(**_two(depth_top=[[0.0, 0.05, 0.3], [0.0, 0.2]]), validate=False)
    ds.attrs["source_depth_unit"] = "cm"
    with pytest.raises(ValueError) as err:
        validate_profiles(ds)
    assert str(err.value) == (
        "profile 'A' (index 0): overlapping layers (depth_top < previous bottom): depth_top 5 cm "
        "is above depth_bottom 10 cm of layer 1 (layer 2 of 3 counted from the surface, 5-30 cm)"
    )
    assert "0.05 m" in str(profile_problems(ds, depth_unit="m")[0][1])


def test_depths_not_increasing_and_node_outside_layer():
    kw = _two(depth_node=[[0.05, 0.2, 0.15], [0.1, 0.3]])
    with pytest.raises(ValueError) as err:
        make_profiles(**kw)
    assert "profile 'A' (index 0)" in str(err.value)
    assert "depth_node outside its layer" in str(err.value)
    problems = [m for _, m in profile_problems(make_profiles(**kw, validate=False))]
    assert any("depths not increasing (depth_node)" in m for m in problems)


def test_problem_list_counts_all_problems():
    ds = make_profiles(**_two(soc=[[-1.0, 5000.0, 2000.0], [np.nan, 3000.0]]), validate=False)
    problems = profile_problems(ds)
    assert [i for i, _ in problems] == [0, 1]
    with pytest.raises(ValueError, match=r"and 1 more problems"):
        validate_profiles(ds)


def test_netcdf_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    soc = [rng.uniform(100, 1e5, 3).tolist(), rng.uniform(100, 1e5, 2).tolist()]
    ds = make_profiles(**_two(soc=soc), soc_content=[[1.0, 2.0, 3.0], [4.0, 5.0]])
    ds.attrs["source"] = "test"
    path = tmp_path / "p.nc"
    write_profiles(ds, path)
    back = read_profiles(path)
    xr.testing.assert_identical(back, ds)
    assert back["mask"].dtype == bool
    np.testing.assert_array_equal(back["soc"].values, ds["soc"].values)  # bit-exact, NaN pads


def test_pad_observations_fixed_width_and_mask():
    ds = make_profiles(**_two())
    batch = pad_observations(ds, width=6)
    assert batch.depth.shape == batch.soc.shape == batch.mask.shape == (2, 6)
    assert batch.mask.sum(1).tolist() == [3, 2]
    np.testing.assert_allclose(batch.depth[1, :2], [0.1, 0.35])
    assert np.all(batch.depth[~batch.mask] == 0.1) and np.all(batch.soc[~batch.mask] == 0)
    np.testing.assert_allclose(batch.soc[0, :3], [9000.0, 5000.0, 2000.0])
    with pytest.raises(ValueError, match="smaller than the largest profile"):
        pad_observations(ds, width=2)
