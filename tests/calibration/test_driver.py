"""Driver and CLI: kill-and-resume is bit-identical, bad profiles are skipped with a reason (NaN,
never zeros, in posterior.nc), settings are checked on resume, bad arguments and inputs that
leave nothing to calibrate exit 2 with one line."""

import os
import shutil

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
    with pytest.raises(driver.SettingsMismatch, match="seed 5 -> 6"):
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

    # skipped profiles: named, flagged, and missing (NaN) in posterior.nc, never zeros
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
    for name in ("para_summary_mean", "para_summary_std", "para_es", "soc_mod_opt"):
        assert np.all(np.isnan(a[name].values[4:])), name
        assert np.all(np.isfinite(a[name].values[:4])), name
    assert not np.any(a["filter_pass"].values[4:]) and not np.any(a["valid"].values[4:])
    assert a.attrs["filter_rule"] == "rank_rhat"
    for name in ("n_failed_evals", "n_acc_failed", "n_test_restarts", "n_discards", "n_out_of_box"):
        assert a[name].attrs["units"] == "1" and a[name].attrs["long_name"], name
    assert np.all(a["n_acc_failed"].values == 0)  # never in the default mode
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
    assert "estimated run time: about " in capsys.readouterr().out  # printed before sampling
    for bad, flag in (
        (["--chunk-size", "0"], "--chunk-size"),
        (["--steps-formal", "1e9", "--thin", "1"], "--steps-formal"),  # draws beyond memory
        (["--steps-formal", "1"], "--steps-formal"),
        (["--thin", "0"], "--thin"),
    ):
        with pytest.raises(SystemExit) as e:
            main(["calibrate", "--data", str(d), "--out", str(tmp_path / "x"), *bad])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert flag in err[-1] and "Traceback" not in "".join(err)
        assert not (tmp_path / "x").exists()  # refused before anything was written
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")])
    assert e.value.code == 2 and "--data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # different settings into an existing OUT
        main(args[:-1] + ["6", "--resume"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "different settings (seed 5 -> 6)" in err


CLI_STEPS = ["--steps-test", "30", "--steps-formal", "40", "--thin", "2", "--chunk-size", "2"]


def _data_dir(tmp_path, d, profiles=None, forcing=None):
    """A copy of the world folder ``d`` with profiles.nc / forcing.nc replaced if given."""
    new = tmp_path / "data"
    shutil.copytree(d, new)
    if profiles is not None:
        profiles.to_netcdf(new / "profiles.nc")
    if forcing is not None:
        forcing.to_netcdf(new / "forcing.nc")
    return new


def test_cli_prints_how_many_profiles_were_skipped_and_why(world_inputs, tmp_path, capsys):
    w, profiles, d = world_inputs
    data = _data_dir(tmp_path, d, profiles=profiles)
    out = tmp_path / "out"
    assert (
        main(
            ["calibrate", "--data", str(data), "--out", str(out), "--no-figures"]
            + CLI_STEPS
            + ["--seed", "5"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    line = next(x for x in printed.splitlines() if x.startswith("skipped 3 of 7 profiles:"))
    for part in ("1 no forcing with this profile_id", "1 fewer than 3 layers", "1 soc is NaN"):
        assert part in line, line
    text = (out / "summary.txt").read_text()
    assert "skipped 3 profiles: " in text and "accepted failed solves" in text
    assert "site filter [rank_rhat]" in text


def test_cli_refuses_a_forcing_without_profile_id(world_inputs, tmp_path, capsys):
    w, _, d = world_inputs
    forcing = w.forcing.drop_vars("profile_id")
    data = _data_dir(tmp_path, d, forcing=forcing)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--data", str(data), "--out", str(out)] + CLI_STEPS)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert str(data / "forcing.nc") in err[0] and "profile_id" in err[0]
    assert not out.exists()  # refused before anything was written (or compiled)


def test_cli_run_that_would_compute_nothing_is_an_error(world_inputs, tmp_path, capsys):
    w, _, d = world_inputs
    profiles = w.profiles.copy(deep=True)
    profiles["profile_id"] = ("profile", [f"X{i}" for i in range(profiles.sizes["profile"])])
    data = _data_dir(tmp_path, d, profiles=profiles)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["calibrate", "--data", str(data), "--out", str(out)] + CLI_STEPS)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert str(data / "profiles.nc") in err[0] and "7 of 7 skipped" in err[0]
    assert "7 no forcing with this profile_id" in err[0]
    assert not out.exists()
