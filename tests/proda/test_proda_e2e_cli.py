"""``soc-jax train --end-to-end``: bad arguments; a tiny run whose network `predict` reads."""

import json

import pytest

from soc_jax.cli import main


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err[-1]


def test_end_to_end_bad_arguments_one_line_exit_2(capsys, tmp_path):
    code, line = _run(["train", "--data", str(tmp_path)], capsys)
    assert code == 2 and "--targets" in line  # still required without --end-to-end
    code, line = _run(["train", "--end-to-end", "--data", str(tmp_path)], capsys)
    assert code == 2 and "--data" in line and "not found" in line
    base = ["train", "--end-to-end", "--data", str(tmp_path)]
    code, line = _run([*base, "--variational", "--link", "clip"], capsys)
    assert code == 2 and "--link" in line
    code, line = _run([*base, "--sigma", "0"], capsys)
    assert code == 2 and "--sigma" in line
    code, line = _run([*base, "--holdout", "0"], capsys)
    assert code == 2 and "--holdout" in line
    code, line = _run([*base, "--misfit", "l2"], capsys)
    assert code == 2 and "--misfit" in line


@pytest.mark.slow
def test_end_to_end_train_resume_then_predict(tmp_path):
    world, net, maps = tmp_path / "w", tmp_path / "n", tmp_path / "m"
    assert (
        main(
            [
                "synth",
                "--n-sites",
                "60",
                "--grid-resolution",
                "15",
                "--seed",
                "3",
                "--out",
                str(world),
                "--no-figure",
            ]
        )
        == 0
    )
    args = [
        "train",
        "--end-to-end",
        "--data",
        str(world),
        "--out",
        str(net),
        "--ensemble",
        "2",
        "--bootstrap",
        "1",
        "--hidden",
        "16",
        "--epochs",
        "2",
        "--holdout",
        "0.2",
    ]
    assert main(args) == 0
    assert main([*args[:-4], "--epochs", "3", "--holdout", "0.2", "--resume"]) == 0
    header = json.loads((net / "network.eqx.json").read_text())
    assert header["link"] == "sigmoid" and header["epochs_done"] == 3
    assert (net / "summary.txt").exists() and (net / "training.nc").exists()
    assert (
        main(
            [
                "predict",
                "--network",
                str(net),
                "--data",
                str(world),
                "--out",
                str(maps),
                "--no-figures",
            ]
        )
        == 0
    )
    totals = json.loads((maps / "totals.json").read_text())
    assert header["holdout_kind"] == "spatial"  # the default hold-out: whole lat-lon blocks
    assert totals["heldout_nse"]["n_profiles"] == len(header["holdout_profile_id"]) >= 12
