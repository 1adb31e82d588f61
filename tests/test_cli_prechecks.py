"""Every ``soc-jax`` command refuses a bad value before any work: one line naming the flag,
exit status 2, nothing written to --out, no JAX compilation.

The cases run in-process through `soc_jax.cli.main` (milliseconds each: the refusal comes from
the parser or `soc_jax._cli_args.preflight`, before JAX is imported); one case runs in a fresh
interpreter for the real exit status and to show that JAX was never imported. The memory
available is fixed at 16 GB (``available_memory`` patched), so the size cases do not depend on
the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soc_jax import _cli_args as ca
from soc_jax import _resources
from soc_jax.cli import main

ROOT = Path(__file__).resolve().parents[1]
GB = 1e9
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def place(tmp_path, monkeypatch):
    """Fake inputs (only their names are checked before work), a file, a read-only folder."""
    monkeypatch.setattr(_resources, "available_memory", lambda: int(16 * GB))
    monkeypatch.delenv("SOC_JAX_TRACEBACK", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    for name in ("profiles", "forcing", "covariates", "grid", "truth"):
        (data / f"{name}.nc").write_bytes(b"")
    net = tmp_path / "net"
    net.mkdir()
    (net / "network.eqx").write_bytes(b"")
    (net / "network.eqx.json").write_text(json.dumps({"model": "clm5", "mode": "proda"}))
    (tmp_path / "file.txt").write_text("not a folder\n")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    yield tmp_path
    readonly.chmod(0o755)


def _expand(argv: list[str], root: Path) -> list[str]:
    """``{tmp}`` in an argument is the test's folder; ``--out`` defaults to ``{tmp}/out``."""
    words = [w.replace("{tmp}", str(root)) for w in argv]
    if "--out" not in words:
        words += ["--out", str(root / "out")]
    return words


CAL = ["calibrate", "--data", "{tmp}/data"]
TRAIN = ["train", "--data", "{tmp}/data", "--targets", "{tmp}/data/truth.nc"]
PRED = ["predict", "--network", "{tmp}/net", "--data", "{tmp}/data"]
UDE = ["ude", "--case", "1", "--quick"]
REP = ["reproduce"]
IMP = ["import", "--proda-tree", "{tmp}/data"]

# (argv, the flag the one line must name, a fragment of the message)
BAD_INPUT = [
    # synth
    (["synth", "--n-sites", "1e12"], "--n-sites", "of memory"),
    (["synth", "--n-sites", "1000000000000"], "--n-sites", "16 GB available"),
    (["synth", "--n-sites", "2.5e0"], "--n-sites", "only if exact"),
    (["synth", "--n-sites", "inf"], "--n-sites", "'inf'"),
    (["synth", "--seed", "1e30"], "--seed", "<= 4294967295"),
    (["synth", "--out", "{tmp}/file.txt"], "--out", "not a folder"),
    (["synth", "--out", "{tmp}/file.txt/sub"], "--out", "not a folder"),
    (["synth", "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
    (["synth", "--out", "{tmp}/readonly/sub"], "--out", "cannot write"),
    # quickstart
    (["quickstart", "--n-sites", "1000000000"], "--n-sites", "of memory"),
    (["quickstart", "--out", "{tmp}/file.txt/sub"], "--out", "not a folder"),
    (["quickstart", "--out", "/proc/version/sub"], "--out", "not a folder"),
    # calibrate
    ([*CAL, "--mode", "bogus"], "--mode", "invalid choice"),
    ([*CAL, "--model", "compas", "--mode", "default"], "--mode", "proda or documented"),
    ([*CAL, "--chunk-size", "1000000000"], "--chunk-size", "of memory"),
    ([*CAL, "--chunk-size", "0"], "--chunk-size", ">= 1"),
    ([*CAL, "--chunk-size", "big"], "--chunk-size", "must be auto or an integer >= 1, got 'big'"),
    # each phase at most half the int32 range of the step counters: (2**31 - 1) // 2
    ([*CAL, "--steps-formal", "1e12"], "--steps-formal", "within 2..1073741823"),
    ([*CAL, "--steps-test", "2147483647"], "--steps-test", "within 2.."),
    ([*CAL, "--steps-formal", "50", "--thin", "100"], "--thin", "--steps-formal"),
    ([*CAL, "--chains", "1"], "--chains", ">= 2"),
    ([*CAL, "--sampler", "nuts", "--draws", "1e12"], "--draws", "within 4.."),
    ([*CAL, "--target-accept", "1"], "--target-accept", "0..0.99"),
    ([*CAL, "--sampler", "hmc"], "--sampler", "invalid choice"),
    (["calibrate", "--data", "{tmp}/nowhere"], "--data", "not found"),
    ([*CAL, "--out", "{tmp}/readonly/sub"], "--out", "cannot write"),
    ([*CAL, "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
    # train (two-stage and --end-to-end)
    ([*TRAIN, "--dropout", "2"], "--dropout", "0..0.95"),
    ([*TRAIN, "--holdout", "0.95"], "--holdout", "[0, 0.9)"),
    ([*TRAIN, "--holdout-block", "0"], "--holdout-block", "0.1..360"),
    ([*TRAIN, "--hidden", "256,,512"], "--hidden", "positive integers"),
    ([*TRAIN, "--epochs", "1.5"], "--epochs", "'1.5'"),
    ([*TRAIN, "--dtype", "float16"], "--dtype", "invalid choice"),
    ([*TRAIN, "--epochs", "1e12"], "--epochs", "of memory"),
    (["train", "--data", "{tmp}/data", "--targets", "{tmp}/none.nc"], "--targets", "not found"),
    (["train", "--data", "{tmp}/data"], "--targets", "required"),
    (["train", "--data", "{tmp}/nowhere", "--end-to-end"], "--data", "no such folder"),
    (["train", "--data", "{tmp}/data", "--end-to-end", "--holdout", "0"], "--holdout", "(0, 0.9)"),
    ([*TRAIN, "--end-to-end", "--variational", "--link", "clip"], "--link", "sigmoid"),
    ([*TRAIN, "--out", "{tmp}/file.txt"], "--out", "not a folder"),
    ([*TRAIN, "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
    # predict
    (["predict", "--network", "{tmp}/nowhere", "--data", "{tmp}/data"], "--network", "no such"),
    (["predict", "--network", "{tmp}/data", "--data", "{tmp}/data"], "--network", "not found"),
    ([*PRED, "--mode", "bogus"], "--mode", "invalid choice"),
    ([*PRED, "--mode", "documented"], "--mode", "proda or default"),
    ([*PRED, "--block", "0"], "--block", ">= 1"),
    ([*PRED, "--block", "1e12"], "--block", "of memory"),
    ([*PRED, "--out", "{tmp}/readonly/maps"], "--out", "cannot write"),
    ([*PRED, "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
    # import
    ([*IMP, "--years", "680", "661"], "--years", "FIRST must be <= LAST"),
    ([*IMP, "--years", "x", "661"], "--years", "'x'"),
    ([*IMP, "--profiles", "a,,b"], "--profiles", "empty"),
    (["import", "--proda-tree", "{tmp}/nowhere"], "--proda-tree", "no such folder"),
    ([*IMP, "--out", "{tmp}/file.txt/sub"], "--out", "not a folder"),
    # ude
    ([*UDE, "--compare-sequential", "1000"], "--compare-sequential", "0..144"),
    ([*UDE, "--compile-cache", "/proc/soc_jax_cache"], "--compile-cache", "cannot write"),
    ([*UDE, "--threads", "0"], "--threads", ">= 1"),
    ([*UDE, "--max-iters", "1e12"], "--max-iters", "<= 2147483647"),
    ([*UDE, "--out", "{tmp}/file.txt"], "--out", "not a folder"),
    ([*UDE, "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
    # reproduce (components, attribution and convergence)
    ([*REP, "--worlds", "clm5,foo"], "--worlds", "clm5, compas"),
    ([*REP, "--worlds", "clm5,clm5"], "--worlds", "each once"),
    ([*REP, "--n-sites", "5"], "--n-sites", ">= 10"),
    ([*REP, "--n-sites", "1e12"], "--n-sites", "of memory"),
    ([*REP, "--grid-resolution", "0"], "--grid-resolution", "0.25..30"),
    ([*REP, "--steps-formal", "5"], "--steps-formal", "within 10.."),
    ([*REP, "--out", "/proc/soc_jax_out"], "--out", "cannot write"),
]


def _id(case) -> str:
    return " ".join(case[0]).replace("{tmp}/", "")


@pytest.mark.parametrize(("argv", "flag", "fragment"), BAD_INPUT, ids=map(_id, BAD_INPUT))
def test_bad_input_is_refused_before_any_work(place, capsys, argv, flag, fragment):
    if "readonly" in " ".join(argv) and IS_ROOT:
        pytest.skip("root ignores folder permissions (the file and /proc cases cover root)")
    with pytest.raises(SystemExit) as e:
        main(_expand(argv, place))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert e.value.code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"soc-jax {argv[0]}: error: "), lines[0]
    assert flag in lines[0] and fragment in lines[0], lines[0]
    assert out == ""  # no progress line, no run-time estimate: refused before any work
    assert not (place / "out").exists()
    assert not (place / "readonly" / "sub").exists()


def test_a_refusal_imports_no_jax_and_exits_2(tmp_path):
    """In a fresh interpreter as a user runs it: ``calibrate --mode bogus`` and an unwritable
    ``--out`` are refused with exit status 2 before JAX is imported."""
    data = tmp_path / "data"
    data.mkdir()
    for name in ("profiles.nc", "forcing.nc"):
        (data / name).write_bytes(b"")
    code = (
        "import sys\n"
        "from soc_jax.cli import main\n"
        "for argv in sys.argv[1:]:\n"
        "    try:\n"
        "        main(argv.split())\n"
        "    except SystemExit as e:\n"
        "        print('exit', e.code, 'jax' in sys.modules)\n"
    )
    out = tmp_path / "out"
    runs = [
        f"calibrate --data {data} --out {out} --mode bogus",
        f"calibrate --data {data} --out /proc/soc_jax_out",
        f"calibrate --data {data} --out {out} --chunk-size 1000000000000",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOC_JAX_TRACEBACK", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, *runs], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.stdout.splitlines() == ["exit 2 False"] * 3, proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 3 and "Traceback" not in proc.stderr
    assert not out.exists()


def test_good_options_pass_the_checks_and_leave_nothing(place):
    """The defaults pass `preflight`; the write probe removes the folders it created."""
    parser = __import__("soc_jax.cli", fromlist=["build_parser"]).build_parser()
    for argv in (CAL, TRAIN, PRED, UDE, ["synth"], ["quickstart"], REP):
        args = parser.parse_args(_expand([*argv, "--out", "{tmp}/a/b/c"], place))
        ca.preflight(args)
        assert not (place / "a").exists(), argv


def test_counts_may_be_written_1e4_style_only_if_exact():
    assert ca.positive_int("1e4") == 10_000 and ca.int_in(2, 10**6)("2.5e3") == 2500
    assert ca.nonneg_int("0") == 0 and ca.positive_int(" 7 ") == 7
    for bad in ("1.5", "2.5e0", "1e-3", "nan", "inf", "1e400", "ten"):
        with pytest.raises(argparse.ArgumentTypeError):
            ca.positive_int(bad)


def test_output_problem_probes_and_cleans_up(tmp_path):
    assert ca.output_problem(tmp_path / "x" / "y") is None
    assert list(tmp_path.iterdir()) == []  # the probe's folders and file are gone
    (tmp_path / "f").write_text("")
    assert "not a folder" in ca.output_problem(tmp_path / "f" / "g")
    assert "cannot write" in ca.output_problem("/proc/soc_jax_probe")


def test_memory_estimate_names_the_flag_and_the_memory(monkeypatch):
    monkeypatch.setattr(_resources, "available_memory", lambda: int(8 * GB))
    line = _resources.memory_problem(2e13, "--n-sites", "a world of 1e8 sites")
    assert line == (
        "a world of 1e8 sites needs about 20 TB of memory (estimate), 8 GB available; "
        "use a smaller --n-sites"
    )
    assert _resources.memory_problem(1e9, "--n-sites", "x") is None
    monkeypatch.setattr(_resources, "available_memory", lambda: None)
    assert _resources.memory_problem(1e30, "--n-sites", "x") is None  # unknown: not refused


def test_the_finest_grid_is_refused_only_when_memory_is_short(monkeypatch):
    """0.25 degree: about 178,000 land cells x 7.5e4 B (1.5 x the 4.9e4 B measured per cell)."""
    monkeypatch.setattr(_resources, "available_memory", lambda: int(32 * GB))
    assert _resources.world_problem(300, 0.25) is None
    monkeypatch.setattr(_resources, "available_memory", lambda: int(8 * GB))
    flag, line = _resources.world_problem(300, 0.25)
    assert flag == "--grid-resolution" and "coarser --grid-resolution" in line


def test_available_memory_is_read_from_the_system():
    available = _resources.available_memory()
    assert available is None or 1e6 < available < 1e15


def test_run_times_are_formatted_for_people():
    assert _resources.format_seconds(45) == "45 s"
    assert _resources.format_seconds(12 * 60) == "12 min"
    assert _resources.format_seconds(3 * 3600) == "3 h"
    assert _resources.format_seconds(10 * 86400) == "10 days"
    # PRODA's protocol on 100 profiles: 3 chains x 70,001 steps at 5e4 evaluations per s
    assert _resources.calibrate_seconds(100, 3, 70_000, False, 10) == pytest.approx(
        30 + 100 * 3 * 70_001 / 5e4
    )


@pytest.mark.parametrize(
    ("attrs", "line"),
    [
        ({"resume": False}, "soc-jax calibrate: interrupted; continue with the same command and "
         "--resume\n"),
        ({}, "soc-jax calibrate: interrupted\n"),
        ({"_on_interrupt": "continue with the same command"},
         "soc-jax calibrate: interrupted; continue with the same command\n"),
    ],
)  # fmt: skip
def test_ctrl_c_exits_130_and_says_how_to_continue(capsys, attrs, line):
    def command(args):
        raise KeyboardInterrupt

    rc = ca.run_command(command, argparse.Namespace(**attrs), "soc-jax calibrate")
    assert rc == 130 and capsys.readouterr().err == line


def test_every_command_with_resume_says_so_on_ctrl_c(place):
    from soc_jax.cli import build_parser

    parser = build_parser()
    for argv in (CAL, TRAIN, REP):
        args = parser.parse_args(_expand(argv, place))
        assert getattr(args, "resume", None) is not None or args._on_interrupt


@pytest.mark.parametrize("model", ["clm5", "compas"])
def test_the_modes_the_cli_accepts_are_the_models(model):
    """The command line's table of modes (no JAX at parse time) matches the models'."""
    from soc_jax.calibration.cli import MODES
    from soc_jax.models.registry import get_model

    assert MODES[model] == tuple(get_model(model)._MODEL.modes)
