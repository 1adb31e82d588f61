"""``soc-jax train`` / ``soc-jax predict``: bad arguments and an end-to-end run."""

import json
import subprocess
import sys

import pytest

from soc_jax.cli import main


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err[-1]


def test_bad_arguments_one_line_exit_2(capsys, tmp_path):
    code, line = _run(["train", "--targets", "nope.nc", "--data", str(tmp_path)], capsys)
    assert code == 2 and "--targets" in line and "not found" in line
    code, line = _run(
        ["train", "--targets", "x.nc", "--data", str(tmp_path), "--holdout", "1.5"], capsys
    )
    assert code == 2 and "--holdout" in line
    code, line = _run(
        ["train", "--targets", "x.nc", "--data", str(tmp_path), "--hidden", "a,b"], capsys
    )
    assert code == 2 and "--hidden" in line
    code, line = _run(["predict", "--network", str(tmp_path), "--data", str(tmp_path)], capsys)
    assert code == 2 and "--network" in line


@pytest.mark.slow
def test_train_then_predict_on_synthetic_world(tmp_path):
    env_cmd = [sys.executable, "-m", "soc_jax.cli"]
    w, net, maps = tmp_path / "w", tmp_path / "net", tmp_path / "maps"
    subprocess.run(
        env_cmd
        + ["synth", "--n-sites", "120", "--grid-resolution", "20", "--out", str(w), "--no-figure"],
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        env_cmd
        + [
            "train",
            "--targets",
            str(w / "truth.nc"),
            "--data",
            str(w),
            "--out",
            str(net),
            "--ensemble",
            "2",
            "--bootstrap",
            "2",
            "--epochs",
            "40",
            "--patience",
            "40",
            "--learning-rate",
            "1",
            "--epochs-per-call",
            "20",
            "--hidden",
            "64,64",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "held-out recovery" in out
    rec = {r["parameter"]: r for r in json.loads((net / "recovery.json").read_text())}
    assert rec["q10"]["r2"] > 0.5
    out = subprocess.run(
        env_cmd
        + ["predict", "--network", str(net), "--data", str(w), "--out", str(maps), "--block", "64"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    totals = json.loads((maps / "totals.json").read_text())
    best = totals["proda_best_guess"]["top_100cm"]
    assert abs(best / totals["truth_top_100cm"] - 1) < 0.3
    assert (
        totals["proda_bootstrap"]["top_100cm"]["q14"]
        <= totals["proda_bootstrap"]["top_100cm"]["q86"]
    )
    for f in ("maps.nc", "stock_maps.png", "latitude_profile.png", "parameters_vs_truth.png"):
        assert (maps / f).exists()
    assert "held-out pooled NSE" in out
