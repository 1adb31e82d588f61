"""The generated report says beside the convergence numbers when the chains did not converge."""

from __future__ import annotations

import math

from soc_jax.analysis.report import convergence_caveat, write_report


def _cal(share, gr):
    return {"filter_pass": share, "median_gr_mean": gr, "median_r2_max": 0.9}


def test_caveat_when_no_site_passes_the_filter():
    text = convergence_caveat({"clm5": _cal(0.0, 1.93), "compas": _cal(0.0, 2.1)})
    assert "did NOT converge" in text
    assert "CLM5 0 % of sites" in text and "COMPAS 0 %" in text
    assert "1.93" in text and "2.10" in text


def test_no_caveat_when_most_sites_pass():
    assert convergence_caveat({"clm5": _cal(0.8, 1.01), "compas": _cal(0.5, 1.02)}) == ""


def test_one_unconverged_model_is_enough_and_named():
    text = convergence_caveat({"clm5": _cal(0.9, 1.01), "compas": _cal(0.3, 1.4)})
    assert "COMPAS 30 %" in text and "CLM5" not in text


def test_missing_or_nonfinite_share_counts_as_not_converged():
    assert convergence_caveat({"clm5": _cal(math.nan, math.nan)}) != ""
    assert convergence_caveat({"clm5": {"median_gr_mean": 1.0}}) != ""


def _fake_runner(tmp_path, share):
    """The smallest set of stage files `write_report` reads (one CLM5 world)."""
    import json
    import types

    root = tmp_path / "stages"
    files = {
        "clm5_world/convergence/convergence.json": {
            "n_cells": 10,
            "log_soc": {"before": 0.1, "after": 0.5},
            "components": {},
            "paper_components_after": {},
            "vs_truth": {
                k: 0.5 for k in ("clm5_before", "clm5_after", "compas_before", "compas_after")
            },
            "totals_pg_100cm": {
                "clm5": {"before": 800.0, "proda_best_guess": 1200.0},
                "compas": {"before": 900.0, "proda_best_guess": 1100.0},
                "truth": 1210.0,
            },
        },
        "clm5_world/world/world.json": {"summary": "a world"},
    }
    for m in ("clm5", "compas"):
        files[f"clm5_world/predict_{m}/totals.json"] = {"failed": {"network": 0}}
        files[f"clm5_world/calibrate_{m}/calibration.json"] = _cal(share, 1.9)
        files[f"clm5_world/attribution_{m}/attribution.json"] = {
            "control_summary": [
                {"group": "none", "nse_median": 0.5, "r_median": 0.7, "total_pg_median": 1200.0}
            ],
            "sensitivity_summary": [],
        }
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(json.dumps(content))
    config = types.SimpleNamespace(
        n_sites=20,
        grid_resolution=8.0,
        n_chains=2,
        n_test=100,
        n_formal=300,
        n_seeds=2,
        n_bootstrap=0,
        epochs=5,
        learning_rate=1.0,
        attribution_members=0,
        worlds=("clm5",),
    )
    return types.SimpleNamespace(
        config=config,
        path=lambda stage, file: str(root / stage / file),
        dir=lambda name: str(root / name),
        times={},
    )


def test_report_warns_beside_the_convergence_and_total_tables(tmp_path):
    path = write_report(_fake_runner(tmp_path, 0.0), str(tmp_path), {})
    text = open(path).read()
    assert text.count("did NOT converge") == 2  # convergence table and Pg C table
    conv = text.index("### Convergence")
    assert conv < text.index("did NOT converge") < text.index("| log SOC 0-100 cm")
    path = write_report(_fake_runner(tmp_path, 0.9), str(tmp_path), {})
    assert "did NOT converge" not in open(path).read()
