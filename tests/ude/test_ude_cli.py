"""Smoke test of ``soc-jax ude`` and a no-recompile check across the methods of a case."""

import json
import os
import re
import subprocess
import sys

import equinox as eqx
import jax.random as jr
import pytest

from soc_jax.ude.synthetic import SyntheticConfig, make_dataset
from soc_jax.ude.train import TrainConfig, Weights, filter_spec, init_model, objective

SUMMARY = re.compile(r"^case (\d): mse_noisy=(\S+) r2_noisy=(\S+) mse_clean=(\S+) r2_clean=(\S+)$")


def test_cli_smoke(tmp_path, capsys):
    """``soc-jax ude --case 5 --quick --max-iters 2`` prints the summary line and writes outputs."""
    from soc_jax.cli import main

    out = tmp_path / "ude"
    rc = main(["ude", "--case", "5", "--quick", "--max-iters", "2", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = SUMMARY.match(lines[-1])
    assert m, lines[-1]
    assert m.group(1) == "5"
    values = [float(m.group(i)) for i in range(2, 6)]
    assert all(v == v for v in values)  # no NaN
    result = json.loads((out / "ude_case5.json").read_text())
    assert set(result["methods"]) == {"mse", "multiplicative"}
    assert result["iteration_caps"] == {"adam_steps": 2, "lbfgs_steps": 0}
    for method in result["methods"].values():
        assert method["solve_ok"]
    for kind in ("profile", "residuals", "heatmap"):
        assert (out / f"ude_case5_{kind}.png").stat().st_size > 0
    assert (out / "ude_cases.json").exists()


@pytest.mark.slow  # a compile-count property (speed), not a result; ~17 s
def test_methods_share_one_compilation():
    """Loss weights, likelihood, eta, rho and tolerances are traced: one trace for all methods.

    Trajectory mode (it contains every term of the terminal objective as well).
    """
    mode = "trajectory"
    data = make_dataset(SyntheticConfig(nz=8, n_times=6, t_final=5.0, noise=0.07), jr.key(0))
    base = TrainConfig(hidden=(4, 4))
    model = init_model(base, 8, jr.key(1))
    params, static = eqx.partition(model, filter_spec(model, False))
    spec = base.objective_spec(mode)

    @eqx.filter_jit
    @eqx.debug.assert_max_traces(max_traces=1)
    def loss_and_grad(p, w):
        return eqx.filter_value_and_grad(objective)(p, static, data, w, spec)

    for kw in (
        {},
        {"likelihood": "multiplicative", "eta": 0.07, "rho": 0.6},
        {"likelihood": "huber", "lambda_wd": 1e-2, "lambda_term": 2.0},
        {"likelihood": "student_t", "rtol": 1e-6, "atol": 1e-6},
    ):
        loss, _ = loss_and_grad(params, Weights.from_config(TrainConfig(hidden=(4, 4), **kw)))
        assert float(loss) == float(loss)


@pytest.mark.slow
def test_compile_cache_keeps_the_solver_programs(tmp_path):
    """``--compile-cache DIR`` writes the Adam step (a Diffrax solve and its adjoint) to DIR.

    JAX skips programs with host callbacks; Equinox's raising runtime checks inside Diffrax
    are such callbacks, so without ``EQX_ON_ERROR=nan`` (set by the flag) nothing but trivial
    programs was cached. Runs in a fresh interpreter: Equinox reads the variable on import.
    """
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "EQX_ON_ERROR"}
    argv = ["ude", "--case", "4", "--quick", "--max-iters", "1", "--no-figures"]
    argv += ["--out", str(tmp_path / "out"), "--compile-cache", str(cache)]
    code = f"from soc_jax.cli import main; raise SystemExit(main({argv!r}))"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    names = os.listdir(cache)
    assert any(n.startswith("jit__adam_step") for n in names), names
