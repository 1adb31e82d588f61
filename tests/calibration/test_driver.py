"""Driver and CLI: kill-and-resume is bit-identical, bad profiles are skipped with a reason, no NaN
in posterior.nc, settings are checked on resume, bad arguments exit 2 with one line."""

import os

import numpy as np
import pytest
import xarray as xr

from soc_jax.calibration import driver
from soc_jax.cli import main
from soc_jax.data.synthetic import make_world

SETTINGS = driver.Settings(n_test=30, n_formal=40, thin=2, chunk_size=2, seed=5)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def world_inputs(tmp_path_factory):
    w = make_world(7, seed=3, model="clm5")
    profiles = w.profiles.copy(deep=True)
    ids = profiles["profile_id"].values.copy()
    ids[4] = "NO_FORCING"
    profiles["profile_id"] = ("profile", ids)
    mask = profiles["mask"].values.copy()
    mask[5, 2:] = False  # two layers left
    profiles["mask"] = (profiles["mask"].dims, mask)
    soc = profiles["soc"].values.copy()
    soc[6, 1] = np.nan
    profiles["soc"] = (profiles["soc"].dims, soc)
    d = tmp_path_factory.mktemp("world")
    w.to_netcdf(d)
    return w, profiles, d


def _no_log(msg):
    pass


def test_kill_and_resume_is_bit_identical_and_bad_profiles_are_skipped(world_inputs, tmp_path):
    w, profiles, _ = world_inputs
    full = driver.calibrate(
        profiles, w.forcing, str(tmp_path / "a"), SETTINGS, progress=False, log=_no_log
    )

    def kill_after_first(c):
        if c == 0:
            raise Killed

    out_b = str(tmp_path / "b")
    with pytest.raises(Killed):
        driver.calibrate(
            profiles,
            w.forcing,
            out_b,
            SETTINGS,
            progress=False,
            on_chunk=kill_after_first,
            log=_no_log,
        )
    assert sorted(os.listdir(os.path.join(out_b, "chunks"))) == ["chunk_00000.nc"]
    with pytest.raises(FileExistsError, match="--resume"):
        driver.calibrate(profiles, w.forcing, out_b, SETTINGS, progress=False, log=_no_log)
    with pytest.raises(driver.SettingsMismatch, match="seed"):
        driver.calibrate(
            profiles,
            w.forcing,
            out_b,
            driver.Settings(**{**SETTINGS.__dict__, "seed": 6}),
            resume=True,
            progress=False,
            log=_no_log,
        )
    resumed = driver.calibrate(
        profiles, w.forcing, out_b, SETTINGS, resume=True, progress=False, log=_no_log
    )
    assert resumed["chunks_resumed"] == 1 and resumed["n_chunks"] == 2

    a = xr.load_dataset(tmp_path / "a" / "posterior.nc")
    b = xr.load_dataset(tmp_path / "b" / "posterior.nc")
    xr.testing.assert_identical(a, b)
    xr.testing.assert_identical(
        xr.load_dataset(tmp_path / "a" / "draws.nc"), xr.load_dataset(tmp_path / "b" / "draws.nc")
    )

    # skipped profiles: named, flagged, and nothing in posterior.nc is NaN
    skipped = full["skipped"]
    assert set(skipped) == {
        "NO_FORCING",
        str(profiles["profile_id"].values[5]),
        str(profiles["profile_id"].values[6]),
    }
    assert "no forcing" in skipped["NO_FORCING"]
    assert "fewer than 3" in skipped[str(profiles["profile_id"].values[5])]
    assert "NaN" in skipped[str(profiles["profile_id"].values[6])]
    assert np.all(a["status"].values[4:] & 32) and not np.any(a["status"].values[:4] & 32)
    for name, v in a.data_vars.items():
        if v.dtype.kind == "f":
            assert np.all(np.isfinite(v.values)), name
    # the calibrated profiles ran the full protocol and are summarised
    assert np.all(a["n_evals"].values[:4] >= 1 + 30 + 40)
    assert np.all((a["para_summary_mean"].values[:4] > 0) & (a["para_summary_mean"].values[:4] < 1))


def test_profile_result_does_not_depend_on_chunking(world_inputs, tmp_path):
    w, profiles, _ = world_inputs
    a = driver.calibrate(
        profiles, w.forcing, str(tmp_path / "a"), SETTINGS, progress=False, log=_no_log
    )
    one = profiles.isel(profile=[2])
    b = driver.calibrate(one, w.forcing, str(tmp_path / "b"), SETTINGS, progress=False, log=_no_log)
    pa, pb = a["posterior"].isel(profile=[2]), b["posterior"]
    for name in ("para_summary_mean", "gr", "rhat", "acceptance", "soc_mod_opt", "n_evals"):
        np.testing.assert_array_equal(pa[name].values, pb[name].values)


def test_cli_end_to_end_and_bad_arguments(world_inputs, tmp_path, capsys):
    _, _, d = world_inputs
    out = tmp_path / "cli"
    args = [
        "calibrate",
        "--data",
        str(d),
        "--out",
        str(out),
        "--steps-test",
        "30",
        "--steps-formal",
        "40",
        "--thin",
        "2",
        "--chunk-size",
        "2",
        "--seed",
        "5",
    ]
    assert main(args) == 0
    for name in (
        "posterior.nc",
        "draws.nc",
        "summary.txt",
        "profiles.png",
        "diagnostics.png",
        "truth_scatter.png",
    ):
        assert (out / name).is_file(), name
    text = (out / "summary.txt").read_text()
    assert "calibrated 7 profiles" in text and "per s" in text
    capsys.readouterr()
    for bad, flag in (
        (["--chunk-size", "0"], "--chunk-size"),
        (["--steps-formal", "1"], "--steps-formal"),
        (["--thin", "0"], "--thin"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["calibrate", "--data", str(d), "--out", str(tmp_path / "x"), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert flag in err[-1] and "Traceback" not in "".join(err)
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # different settings into an existing OUT
        main(args[:-1] + ["6", "--resume"])
    assert e.value.code == 2 and "different settings" in capsys.readouterr().err
