"""``--resume`` continues only the same run: nothing to resume, other input files and other
settings are each refused with exit 2 and one line naming the folder and what differs, before
any data is read or anything compiled; a folder written before the input files' hash was
recorded resumes with a warning. The SHA-256 helper against hashlib itself.

Every CLI case here stops before reading the (fake) input files, so each takes milliseconds; a
real interrupted-and-resumed run is covered by tests/calibration/test_driver.py,
test_gradient_samplers.py and tests/proda/test_contracts_fast.py.
"""

import argparse
import hashlib
import json
import os
import re

import pytest

from soc_jax import _identity
from soc_jax.cli import main


def _write(path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _refused(capsys, argv) -> str:
    """The one stderr line of a command that must exit 2."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return re.sub(r" \(see soc-jax \w+ --help\)$", "", err[0])


# -- the hash helper -----------------------------------------------------------------------------


def test_file_sha256_is_hashlib_of_the_bytes(tmp_path):
    data = b"soil organic carbon, gC m-3\n"
    path = _write(tmp_path / "a.nc", data)
    assert _identity.file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert _identity.file_sha256(_write(tmp_path / "empty", b"")) == hashlib.sha256().hexdigest()


def test_file_sha256_over_many_blocks(tmp_path):
    # 2.5 blocks of 1 MiB, and a small block size that needs thousands of reads
    data = bytes(range(256)) * (10 * 1024)  # 2.5 MiB
    assert len(data) == int(2.5 * _identity.BLOCK_BYTES)
    path = _write(tmp_path / "big.nc", data)
    want = hashlib.sha256(data).hexdigest()
    assert _identity.file_sha256(path) == want
    assert _identity.file_sha256(path, block=1000) == want


def test_input_identity_records_flag_path_size_and_hash(tmp_path):
    data = b"forcing"
    path = _write(tmp_path / "forcing.nc", data)
    rec = _identity.input_identity({"forcing.nc": ("--data", path)})
    assert rec == {
        "forcing.nc": {"flag": "--data", "path": str(path), "sha256": _sha(data), "bytes": 7}
    }
    json.dumps(rec)  # recorded in settings.json / the checkpoint header


def test_settings_diff_names_each_setting_old_to_new():
    old = {"seed": 5, "hidden": [8, 8], "ids": list("abcdef")}
    new = {"seed": 6, "hidden": (8, 8), "ids": list("abcdeg")}
    assert _identity.settings_diff(old, new) == [
        "seed 5 -> 6",
        "ids [6 items] -> [6 items] (different items)",
    ]
    assert _identity.settings_diff(old, new, keys=["hidden"]) == []
    short = {"ids": ["a", "b"]}
    assert _identity.settings_diff(old, short) == [
        "seed 5 -> None",
        "hidden [8, 8] -> None",
        "ids [6 items] -> [2 items]",
    ]


# -- soc-jax calibrate ---------------------------------------------------------------------------


@pytest.fixture
def cal_data(tmp_path):
    """A --data folder whose files exist (never read: every case stops before)."""
    d = tmp_path / "data_a"
    _write(d / "profiles.nc", b"profiles of run A")
    _write(d / "forcing.nc", b"forcing of run A")
    return d


def _calibrate(data, out):
    return ["calibrate", "--data", str(data), "--out", str(out), "--resume", "--no-figures"]


def test_calibrate_resume_without_a_run_is_refused(cal_data, tmp_path, capsys):
    out = tmp_path / "results" / "x"
    line = _refused(capsys, _calibrate(cal_data, out))
    assert line == (
        f"soc-jax calibrate: error: --resume: nothing to resume in {out} (no such folder)"
    )
    assert not out.exists()  # nothing written
    out.mkdir(parents=True)
    line = _refused(capsys, _calibrate(cal_data, out))
    assert line.endswith(f"--resume: nothing to resume in {out} (no settings.json)")
    assert os.listdir(out) == []
    line = _refused(capsys, _calibrate(cal_data, _write(tmp_path / "a_file", b"x")))
    assert "--out" in line and "not a folder" in line  # refused by --out's own check


def _run_folder(tmp_path, record: dict):
    out = tmp_path / "results" / "x"
    _write(out / "settings.json", json.dumps(record).encode())
    return out


def test_calibrate_resume_with_other_data_names_the_file(cal_data, tmp_path, capsys):
    files = {n: ("--data", str(cal_data / n)) for n in ("profiles.nc", "forcing.nc")}
    out = _run_folder(tmp_path, {"seed": 0, "inputs": _identity.input_identity(files)})
    before = (out / "settings.json").read_bytes()
    other = tmp_path / "data_b"
    _write(other / "profiles.nc", b"profiles of run B")
    _write(other / "forcing.nc", b"forcing of run A")  # the same bytes: not named
    line = _refused(capsys, _calibrate(other, out))
    old, new = _sha(b"profiles of run A")[:8], _sha(b"profiles of run B")[:8]
    assert line == (
        f"soc-jax calibrate: error: --resume: {out} was run on {cal_data / 'profiles.nc'} with "
        f"sha256 {old}..., --data now gives {other / 'profiles.nc'} with {new}...; use a new "
        "--out or the original data"
    )
    _write(other / "profiles.nc", b"profiles of run A")
    _write(other / "forcing.nc", b"forcing of run B")
    line = _refused(capsys, _calibrate(other, out))
    assert f"was run on {cal_data / 'forcing.nc'}" in line and "profiles.nc" not in line
    assert (out / "settings.json").read_bytes() == before  # nothing written


def test_calibrate_resume_of_an_old_folder_warns_that_data_are_unchecked(
    cal_data, tmp_path, capsys
):
    out = _run_folder(tmp_path, {"seed": 0})  # settings.json of an older soc_jax: no hash
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # not refused for --resume: it goes on to read --data
        main(_calibrate(cal_data, out))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        f"warning: --resume: {out} records no hash of its input data (written by an older "
        "soc_jax): the data's identity cannot be checked"
    )
    assert "argument --data: cannot read the inputs" in err[-1]


def test_calibrate_settings_and_data_checks_in_the_driver(tmp_path):
    from soc_jax.calibration import driver

    out = tmp_path / "x"
    old = driver.Settings(seed=5, width=4, chunk_size=8)
    data = _write(tmp_path / "p.nc", b"p")
    inputs = _identity.input_identity({"profiles.nc": ("--data", data)})
    driver._claim_output(str(out), old, False, inputs)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["inputs"]["profiles.nc"]["sha256"] == _sha(b"p")
    new = driver.Settings(seed=6, width=4, chunk_size=9)
    with pytest.raises(driver.SettingsMismatch) as e:
        driver._claim_output(str(out), new, True, inputs)
    assert str(e.value) == (
        f"--resume: {out} was run with different settings (seed 5 -> 6; chunk_size 8 -> 9); "
        "use a new --out or the original settings"
    )
    _write(data, b"q")
    changed = _identity.input_identity({"profiles.nc": ("--data", data)})
    with pytest.raises(_identity.InputsChanged, match=rf"p\.nc with sha256 {_sha(b'p')[:8]}\.\.\."):
        driver._claim_output(str(out), old, True, changed)
    # an old folder (no hash recorded) resumes and records this run's
    (out / "settings.json").write_text(json.dumps(old.record()))
    driver._claim_output(str(out), old, True, changed)
    recorded = json.loads((out / "settings.json").read_text())
    assert recorded["inputs"]["profiles.nc"]["sha256"] == _sha(b"q")


# -- soc-jax train (two-stage and --end-to-end) --------------------------------------------------


@pytest.fixture
def net_data(tmp_path):
    d = tmp_path / "world"
    for name in ("profiles", "forcing", "covariates", "grid"):
        _write(d / f"{name}.nc", f"{name} A".encode())
    _write(d / "truth.nc", b"truth A")
    return d


def _train(data, out):
    return ["train", "--targets", str(data / "truth.nc"), "--data", str(data), "--out", str(out)]


def _e2e(data, out, *more):
    return ["train", "--end-to-end", "--data", str(data), "--out", str(out), *more]


@pytest.mark.parametrize("kind", ["two-stage", "end-to-end"])
def test_train_resume_without_a_checkpoint_is_refused(kind, net_data, tmp_path, capsys):
    argv = _train if kind == "two-stage" else _e2e
    out = tmp_path / "net"
    line = _refused(capsys, [*argv(net_data, out), "--resume"])
    assert line == f"soc-jax train: error: --resume: nothing to resume in {out} (no such folder)"
    assert not out.exists()
    out.mkdir()
    line = _refused(capsys, [*argv(net_data, out), "--resume"])
    assert line.endswith(f"nothing to resume in {out} (no checkpoint.eqx)")
    assert os.listdir(out) == []


def _checkpoint(out, files: dict):
    """A checkpoint whose header records the identity of ``files`` (never loaded here)."""
    _write(out / "checkpoint.eqx", b"")
    header = {"format": "x", "inputs": _identity.input_identity(files)}
    _write(out / "checkpoint.eqx.json", json.dumps(header).encode())


def test_train_resume_with_other_data_names_the_file(net_data, tmp_path, capsys):
    out = tmp_path / "net"
    names = ("covariates.nc", "grid.nc", "profiles.nc")
    files = {n: ("--data", str(net_data / n)) for n in names}
    _checkpoint(out, {"targets": ("--targets", str(net_data / "truth.nc")), **files})
    other = tmp_path / "other"
    for n in names:
        _write(other / n, (net_data / n).read_bytes())
    _write(other / "truth.nc", b"truth B")
    line = _refused(capsys, [*_train(other, out), "--resume"])
    assert f"--resume: {out} was run on {net_data / 'truth.nc'} with sha256 " in line
    assert f"--targets now gives {other / 'truth.nc'} with {_sha(b'truth B')[:8]}..." in line
    _write(other / "truth.nc", b"truth A")
    _write(other / "grid.nc", b"grid B")
    line = _refused(capsys, [*_train(other, out), "--resume"])
    assert f"--data now gives {other / 'grid.nc'}" in line


def test_end_to_end_resume_with_other_data_or_a_new_prior_is_refused(net_data, tmp_path, capsys):
    out = tmp_path / "net"
    names = ("profiles", "forcing", "covariates", "grid")
    _checkpoint(out, {f"{n}.nc": ("--data", str(net_data / f"{n}.nc")) for n in names})
    other = tmp_path / "other"
    for n in names:
        _write(other / f"{n}.nc", f"{n} {'B' if n == 'forcing' else 'A'}".encode())
    line = _refused(capsys, [*_e2e(other, out), "--resume"])
    assert f"was run on {net_data / 'forcing.nc'} with sha256 {_sha(b'forcing A')[:8]}..." in line
    prior = _write(tmp_path / "posterior.nc", b"posterior")
    line = _refused(capsys, [*_e2e(net_data, out, "--prior", str(prior)), "--resume"])
    assert line.endswith(
        f"--resume: {out} was run without --prior prior, now --prior gives {prior}; use a new "
        "--out or the original data"
    )


def test_train_resume_names_each_setting_that_differs(capsys):
    from soc_jax.proda.steps import resume_ensemble
    from soc_jax.proda.train import TrainConfig

    parser = argparse.ArgumentParser(prog="soc-jax train")
    old_cfg = TrainConfig(learning_rate=1.0, max_epochs=4, hidden=(8,))
    header = {"kinds": ["seed", "bootstrap"], "seed": 0, "train_profile_id": list("abcdef")}

    def load(path):
        return None, old_cfg, header  # refused before the ensemble is used

    new_cfg = TrainConfig(learning_rate=0.5, max_epochs=9, hidden=(8,))
    extra = {"seed": 1, "train_profile_id": list("abcdeg")}
    with pytest.raises(SystemExit) as e:
        resume_ensemble(parser, "results/x/checkpoint.eqx", new_cfg, ["seed"] * 2, load, extra)
    assert e.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    line = re.sub(r" \(see soc-jax \w+ --help\)$", "", line)
    assert line == (
        "soc-jax train: error: --resume: results/x was run with different settings "
        "(learning_rate 1.0 -> 0.5; members '1 seeds, 1 bootstraps' -> '2 seeds, 0 bootstraps'; "
        "seed 0 -> 1; train_profile_id [6 items] -> [6 items] (different items)); use a new "
        "--out or the original settings (only --epochs may change)"
    )
