"""The pipeline: stage bookkeeping (fast) and the whole study at its smallest size, interrupted
inside a stage and resumed (slow)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import xarray as xr

from soc_jax.analysis.pipeline import ConfigMismatch, PipelineConfig, run_pipeline
from soc_jax.analysis.runner import _Runner


class Boom(RuntimeError):
    pass


def test_runner_skips_finished_stages_and_redoes_an_interrupted_one(tmp_path):
    calls = []

    def stage(name, fail=False):
        def fn(d):
            calls.append(name)
            with open(os.path.join(d, "out.txt"), "w") as f:
                f.write(name)
            if fail:
                raise Boom(name)

        return fn

    r = _Runner(str(tmp_path), PipelineConfig(), None, None, print)
    r.run("a", stage("a"))
    with pytest.raises(Boom):
        r.run("b", stage("b", fail=True))
    assert os.path.exists(r.dir("a") + ".done.json") and not os.path.exists(r.dir("b"))
    assert os.path.exists(r.dir("b") + ".partial")  # left for inspection, never marked done
    r2 = _Runner(str(tmp_path), PipelineConfig(), None, None, print)
    r2.run("a", stage("a"))
    r2.run("b", stage("b"))
    assert calls == ["a", "b", "b"] and r2.skipped == ["a"] and r2.ran == ["b"]
    assert open(os.path.join(r2.dir("b"), "out.txt")).read() == "b"
    assert not os.path.exists(r2.dir("b") + ".partial")


def test_config_mismatch_is_refused(tmp_path):
    run_cfg = PipelineConfig(n_sites=10)
    os.makedirs(tmp_path / "stages")
    with open(tmp_path / "config.json", "w") as f:
        json.dump(PipelineConfig(n_sites=11).to_json(), f)
    with pytest.raises(ConfigMismatch, match="n_sites=11 vs 10"):
        run_pipeline(run_cfg, str(tmp_path), progress=False)


TINY = PipelineConfig(
    n_sites=10,
    grid_resolution=30.0,
    worlds=("clm5",),
    n_test=20,
    n_formal=40,
    thin=4,
    n_chains=2,
    n_seeds=1,
    n_bootstrap=1,
    epochs=10,
    patience=3,
    hidden=(16, 16),
    attribution_members=1,
)


@pytest.mark.slow  # a few minutes: compiles calibration, training and every steady-state shape
def test_pipeline_smallest_size_resumes_a_killed_stage(tmp_path):
    full = str(tmp_path / "full")
    res = run_pipeline(TINY, full, progress=False)
    assert res["skipped"] == [] and res["ran"][-1] == "report"
    for f in ("report.md", "clm5_attribution.png", "clm5_logsoc_before_after.png"):
        assert os.path.exists(os.path.join(full, f)), f

    part = str(tmp_path / "part")
    victim = "clm5_world/components"

    def hook(name):
        if name == victim:
            raise Boom("killed")

    with pytest.raises(Boom):
        run_pipeline(TINY, part, progress=False, hook=hook)
    stages = os.path.join(part, "stages")
    done = {n: os.path.getmtime(os.path.join(stages, n + ".done.json")) for n in res["ran"][:7]}
    assert not os.path.exists(os.path.join(stages, victim + ".done.json"))
    again = run_pipeline(TINY, part, progress=False)
    assert again["skipped"] == res["ran"][:7]  # world, 2 x calibrate, train, predict
    assert again["ran"][0] == victim
    for n, t in done.items():  # finished stages untouched
        assert os.path.getmtime(os.path.join(stages, n + ".done.json")) == t

    def conv(root):  # the text (NaN == NaN)
        with open(os.path.join(root, "stages", "clm5_world/convergence/convergence.json")) as f:
            return f.read()

    assert conv(part) == conv(full)
    a = xr.load_dataset(os.path.join(full, "stages", "clm5_world/components/components.nc"))
    b = xr.load_dataset(os.path.join(part, "stages", "clm5_world/components/components.nc"))
    for k in a.data_vars:
        np.testing.assert_array_equal(a[k].values, b[k].values, err_msg=k)


def _cli(args, capsys):
    from soc_jax.cli import main

    try:
        code = main(args)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def test_cli_bad_arguments_one_line_exit_2(capsys, tmp_path):
    out = str(tmp_path / "o")
    code, line = _cli(["reproduce", "--out", out, "--bootstrap", "-1"], capsys)
    assert code == 2 and "--bootstrap" in line
    code, line = _cli(["reproduce", "--out", out, "--n-sites", "abc"], capsys)
    assert code == 2 and "--n-sites" in line
    code, line = _cli(["reproduce", "--out", out, "--n-sites", "5"], capsys)
    assert code == 2 and "--n-sites" in line and "Traceback" not in line
    code, line = _cli(["reproduce", "--out", out, "--worlds", "clm6"], capsys)
    assert code == 2 and "worlds" in line


def _posterior(path, status, filter_pass, mean):
    n = len(status)
    ds = xr.Dataset(
        {
            "para_summary_mean": (("profile", "parameter"), np.asarray(mean, float)),
            "status": ("profile", np.asarray(status, np.int32)),
            "filter_pass": ("profile", np.asarray(filter_pass, np.int8)),
            "valid": (("profile", "chain"), np.ones((n, 2), np.int8)),
        },
        coords={"profile_id": ("profile", [f"p{i}" for i in range(n)])},
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ds.to_netcdf(path)


@pytest.mark.parametrize("site_filter, expected", [(False, [1, 1, 0, 0]), (True, [1, 0, 0, 0])])
def test_network_targets_are_results_only_and_filtered_on_request(tmp_path, site_filter, expected):
    from soc_jax.analysis.stages import _targets

    cfg = PipelineConfig(site_filter=site_filter)
    r = _Runner(str(tmp_path), cfg, None, None, print)
    # profile 0 converged, 1 did not converge, 2 was skipped (bit 32), 3 has no result (NaN)
    mean = [[0.2, 0.3], [0.4, 0.5], [np.nan, np.nan], [np.nan, np.nan]]
    _posterior(
        r.path("clm5_world/calibrate_clm5", "posterior.nc"), [0, 0, 32, 16], [1, 0, 0, 0], mean
    )
    _, use = _targets(r, "clm5", "clm5")
    assert use.astype(int).tolist() == expected


def test_calibration_stage_passes_the_sampler_settings(tmp_path, monkeypatch):
    import soc_jax.calibration as cal
    from soc_jax.analysis.stages import _calibrate

    seen = {}

    def fake_calibrate(profiles, forcing, out, settings, **kw):
        seen["settings"] = settings
        raise Boom

    monkeypatch.setattr(cal, "calibrate", fake_calibrate)
    cfg = PipelineConfig(sampler="chees", n_warmup=30, n_draws=40, n_chains=4)
    r = _Runner(str(tmp_path), cfg, None, None, print)
    with pytest.raises(Boom):
        _calibrate(r, "clm5", "compas", {"profiles": None, "forcing": None})
    s = seen["settings"]
    assert (s.sampler, s.n_warmup, s.n_draws, s.n_chains, s.model) == ("chees", 30, 40, 4, "compas")
