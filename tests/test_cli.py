"""The ``soc-jax`` command line as a new user meets it: one-line errors, exit 2, fast help.

Each bad argument is run in a fresh interpreter (as the user runs it) and must give exactly one
line on stderr that names the flag, exit status 2 and no traceback.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from soc_jax import _cli_args as ca

ROOT = Path(__file__).resolve().parents[1]


def soc_jax(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SOC_JAX_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, "-m", "soc_jax.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


BAD_ARGUMENTS = [
    # (argv, the flag the message must name, a fragment of the rule)
    (["synth", "--n-sites", "-5"], "--n-sites", ">= 1"),
    (["synth", "--n-sites", "0"], "--n-sites", ">= 1"),
    (["synth", "--n-sites", "ten"], "--n-sites", "'ten'"),
    (["synth", "--noise", "-1"], "--noise", ">= 0"),
    (["synth", "--noise", "nan"], "--noise", "finite"),
    (["synth", "--grid-resolution", "0"], "--grid-resolution", "0.25..30"),
    (["synth", "--seed", "-1"], "--seed", ">= 0"),
    (["synth", "--model", "century"], "--model", "clm5"),
    (["synth", "--out", "README.md"], "--out", "not a folder"),
    (["quickstart", "--n-sites", "0"], "--n-sites", ">= 1"),
    (["quickstart", "--seed", "x"], "--seed", "'x'"),
    (["quickstart", "--out", "README.md"], "--out", "not a folder"),
    (["ude"], "--case", "--all"),
    (["ude", "--case", "7"], "--case", "1, 2, 3"),
    (["ude", "--case", "1", "--all"], "--all", "--case"),
    (["ude", "--case", "1", "--max-iters", "0"], "--max-iters", ">= 1"),
    (["ude", "--all", "--seed", "-3"], "--seed", ">= 0"),
]


@pytest.mark.parametrize(("argv", "flag", "rule"), BAD_ARGUMENTS, ids=" ".join)
def test_bad_argument_is_one_line_naming_the_flag(argv, flag, rule):
    proc = soc_jax(*argv)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"soc-jax {argv[0]}: error: ")
    assert flag in lines[0] and rule in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_unknown_command_is_one_line():
    proc = soc_jax("calibrat")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "invalid choice: 'calibrat'" in proc.stderr


def test_help_does_not_load_jax_and_shows_defaults():
    """``--help`` only parses: no JAX, xarray or matplotlib import (it answered in 2.5 s)."""
    code = (
        "import sys, contextlib, io\n"
        "from soc_jax.cli import build_parser\n"
        "p = build_parser()\n"
        "for cmd in ('quickstart', 'synth', 'ude'):\n"
        "    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()) as f:\n"
        "        p.parse_args([cmd, '--help'])\n"
        "    print(f.getvalue())\n"
        "heavy = [m for m in ('jax', 'xarray', 'matplotlib', 'diffrax') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    assert "(default: 300)" in proc.stdout  # quickstart and synth --n-sites
    assert "(default: results/ude)" in proc.stdout
    assert "seed 002" not in proc.stdout  # no unexplained file numbers


def test_type_checkers_accept_good_values():
    assert ca.positive_int("3") == 3 and ca.nonneg_int("0") == 0
    assert ca.nonneg_float("0") == 0.0 and ca.positive_float("1e-3") == 1e-3
    assert ca.float_in(0.25, 30)("0.25") == 0.25 and ca.int_in(1, 6)("6") == 6
    assert ca.existing_file("README.md") == Path("README.md")
    for bad, fn in (("0", ca.positive_float), ("7", ca.int_in(1, 6)), ("31", ca.float_in(0, 30))):
        with pytest.raises(argparse.ArgumentTypeError):
            fn(bad)
    with pytest.raises(argparse.ArgumentTypeError, match="no such file: 'nope.nc'"):
        ca.existing_file("nope.nc")


def test_run_command_turns_user_errors_into_one_line(capsys, tmp_path, monkeypatch):
    """A missing input file or a data-validation ValueError at run time: one line, exit 2."""
    from soc_jax.data import load_wosis

    monkeypatch.delenv("SOC_JAX_TRACEBACK", raising=False)
    missing = tmp_path / "wosis.nc"

    def command(args):
        load_wosis(args.path)

    rc = ca.run_command(command, argparse.Namespace(path=missing), "soc-jax calibrate")
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("soc-jax calibrate: error: ") and str(missing) in err

    def invalid(args):
        raise ValueError("profile 'P1' (index 0): soc is negative\n(layer 2)")

    assert ca.run_command(invalid, None, "soc-jax x") == 2
    assert (
        capsys.readouterr().err
        == "soc-jax x: error: profile 'P1' (index 0): soc is negative (layer 2)\n"
    )

    def bug(args):
        raise KeyError("a bug keeps its traceback")

    with pytest.raises(KeyError):
        ca.run_command(bug, None, "soc-jax x")
    monkeypatch.setenv("SOC_JAX_TRACEBACK", "1")
    with pytest.raises(ValueError):
        ca.run_command(invalid, None, "soc-jax x")


def test_lazy_exports_resolve():
    """The lazy package ``__init__``s export what they list, and sub-modules by name."""
    import soc_jax
    import soc_jax.data
    import soc_jax.ude

    for package in (soc_jax, soc_jax.data, soc_jax.ude):
        for name in package.__all__:
            assert getattr(package, name) is not None, (package.__name__, name)
            assert name in dir(package)
    assert soc_jax.clm5.__name__ == "soc_jax.models.clm5"
    assert soc_jax.data.netcdf.__name__ == "soc_jax.data.netcdf"
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        soc_jax.data.nope  # noqa: B018
