"""Which profiles PRODA's network trains on: only results, the site filter by default.

A hand-built posterior.nc (the contract of `soc-jax calibrate`: ``para_summary_mean``,
``status`` bits 32 skipped / 16 no valid chain / 2 failed, ``valid`` (profile, chain),
``filter_pass``) and the `soc-jax train` CLI on it: counts and reasons on the terminal and in
the outputs, exit 2 naming the flag when nothing is left, held-out profiles never validate.
"""

import json

import numpy as np
import pytest
import xarray as xr

from soc_jax.cli import main
from soc_jax.data import covariates_dataset
from soc_jax.proda.train import training_data

N = 40


def _posterior(n=N, seed=0):
    """A posterior.nc: 0 skipped, 1 no valid chain, 2 failed, 3 NaN mean, 4..9 not converged."""
    rng = np.random.default_rng(seed)
    mean = rng.uniform(0.1, 0.9, size=(n, 3))
    status = np.zeros(n, int)
    status[0], status[1], status[2] = 32, 16 | 8, 2
    mean[0] = mean[1] = 0.0  # what the calibration writes for profiles without a result
    mean[3, 1] = np.nan
    valid = np.ones((n, 3), bool)
    valid[1] = False
    passed = np.ones(n, bool)
    passed[:10] = False  # failed ones never pass; 4..9 ran but did not converge
    return xr.Dataset(
        {
            "para_summary_mean": (("profile", "parameter"), mean),
            "status": ("profile", status),
            "valid": (("profile", "chain"), valid.astype(np.int8)),
            "filter_pass": ("profile", passed.astype(np.int8)),
        },
        coords={
            "profile_id": ("profile", np.array([f"s{i:02d}" for i in range(n)], dtype=object)),
            "parameter": ["a", "b", "c"],
        },
        attrs={"model": "clm5", "mode": "proda"},
    )


def _covariates(n=N, seed=1):
    rng = np.random.default_rng(seed)
    ids = np.array([f"s{i:02d}" for i in range(n)], dtype=object)
    cov = covariates_dataset(rng.uniform(size=(n, 60)), profile_id=ids)
    grid = covariates_dataset(rng.uniform(size=(30, 60)), dim="cell")
    return cov, grid


def test_posterior_mean_is_the_default_target_and_only_results_are_targets():
    cov, grid = _covariates()
    d = training_data(cov, grid, _posterior())  # no target_var: para_summary_mean
    assert d.target_var == "para_summary_mean" and d.site_filter == "on"
    assert list(d.profile_id) == [f"s{i:02d}" for i in range(10, N)]
    assert d.counts == {"targets": N, "used": N - 10, "failed": 4, "filtered": 6, "input": 0}
    assert d.excluded["s00"] == "skipped before sampling"
    assert d.excluded["s01"] == "no valid chain"
    assert d.excluded["s02"].startswith("failed")
    assert d.excluded["s03"] == "no result (non-finite target)"
    assert d.excluded["s05"].startswith("did not pass the site filter")
    assert np.all(d.Y > 0)  # no zero-filled non-result is a target


def test_without_site_filter_unconverged_profiles_train_but_failed_never():
    cov, grid = _covariates()
    post = _posterior()
    post["valid"][2] = 0  # failed AND no valid chain: counted once, as failed
    d = training_data(cov, grid, post, site_filter=False)
    assert d.site_filter == "off"
    assert list(d.profile_id) == [f"s{i:02d}" for i in range(4, N)]
    assert d.counts["failed"] == 4 and d.counts["filtered"] == 0
    # robust to a missing status: the zero rows of a skipped profile are still not targets
    no_status = post.drop_vars("status")
    d2 = training_data(cov, grid, no_status, site_filter=False)
    assert "s01" not in d2.profile_id and "s03" not in d2.profile_id


def _data_dir(tmp_path, post):
    cov, grid = _covariates()
    rng = np.random.default_rng(5)
    grid = grid.assign_coords(lat=("cell", rng.uniform(-60, 70, 30)))
    grid = grid.assign_coords(lon=("cell", rng.uniform(-180, 180, 30)))
    lat, lon = rng.uniform(-60, 70, N), rng.uniform(-180, 180, N)
    prof = xr.Dataset(
        {"lat": ("profile", lat), "lon": ("profile", lon)},
        coords={"profile_id": ("profile", cov["profile_id"].values)},
    )
    d = tmp_path / "data"
    d.mkdir()
    cov.to_netcdf(d / "covariates.nc")
    grid.to_netcdf(d / "grid.nc")
    prof.to_netcdf(d / "profiles.nc")
    post.to_netcdf(tmp_path / "posterior.nc")
    return d


def test_cli_refuses_when_no_profile_passes_the_filter(tmp_path, capsys):
    post = _posterior()
    post["filter_pass"][:] = 0  # nothing converged
    d = _data_dir(tmp_path, post)
    with pytest.raises(SystemExit) as e:
        main(["train", "--targets", str(tmp_path / "posterior.nc"), "--data", str(d)])
    out, err = capsys.readouterr()
    assert e.value.code == 2
    line = err.strip().splitlines()[-1]
    assert "no profile left" in line and "--no-site-filter" in line
    assert "4 skipped or failed" in line and "36 not converged" in line
    assert "left out: 36 profiles: did not pass the site filter" in out


def test_cli_trains_on_results_only_reports_counts_and_holds_out_spatially(tmp_path, capsys):
    d = _data_dir(tmp_path, _posterior())
    out_dir = tmp_path / "net"
    args = ["train", "--targets", str(tmp_path / "posterior.nc"), "--data", str(d)]
    args += ["--out", str(out_dir), "--ensemble", "2", "--bootstrap", "2", "--epochs", "2"]
    args += ["--hidden", "4", "--epochs-per-call", "2", "--holdout", "0.2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "30 of 40 profiles used; 4 skipped or failed" in out
    assert "6 filtered out (not converged, site filter on)" in out
    assert "held out: spatial" in out
    summary = (out_dir / "summary.txt").read_text()
    assert "30 of 40 profiles used" in summary and "held out: spatial" in summary
    with xr.open_dataset(out_dir / "training.nc") as t:
        assert t.attrs["n_used"] == 30 and t.attrs["n_failed_or_skipped"] == 4
        assert t.attrs["n_filtered_not_converged"] == 6 and t.attrs["holdout_kind"] == "spatial"
        assert sorted(t["excluded_profile_id"].values) == [f"s{i:02d}" for i in range(10)]
    h = json.loads((out_dir / "network.eqx.json").read_text())
    train_ids = np.array(h["train_profile_id"])
    hold = set(h["holdout_profile_id"])
    assert len(hold) >= 6 and not hold & set(train_ids)
    assert not hold & {f"s{i:02d}" for i in range(10)}  # non-results are not held out either
    from soc_jax.proda.train import load_checkpoint

    ens, _, _ = load_checkpoint(out_dir / "network.eqx")
    for tr, va in zip(np.asarray(ens.train_idx), np.asarray(ens.val_idx), strict=True):
        v = set(train_ids[va])
        assert not v & set(train_ids[tr]) and not v & hold


@pytest.mark.slow
def test_calibrate_then_train_works_as_is(tmp_path, capsys):
    """`soc-jax calibrate` (tiny, short chains) -> `soc-jax train --targets posterior.nc`."""
    import jax

    jax.config.update("jax_enable_x64", True)
    from soc_jax.data.synthetic import make_world

    w = make_world(14, seed=3, model="clm5")
    d = tmp_path / "w"
    w.to_netcdf(d)
    cal = tmp_path / "cal"
    args = ["calibrate", "--data", str(d), "--out", str(cal), "--steps-test", "30"]
    args += ["--steps-formal", "40", "--thin", "2", "--chunk-size", "14", "--seed", "5"]
    assert main(args) == 0
    with xr.open_dataset(cal / "posterior.nc") as post:
        n_pass = int(np.sum(post["filter_pass"].values))
    capsys.readouterr()
    train = ["train", "--targets", str(cal / "posterior.nc"), "--data", str(d)]
    train += ["--ensemble", "1", "--bootstrap", "1", "--epochs", "2", "--hidden", "4"]
    train += ["--epochs-per-call", "2", "--holdout", "0"]
    if n_pass < 11:  # such short chains do not converge: the default filter refuses, naming why
        with pytest.raises(SystemExit) as e:
            main([*train, "--out", str(tmp_path / "refused")])
        assert e.value.code == 2 and "--no-site-filter" in capsys.readouterr().err
    assert main([*train, "--out", str(tmp_path / "net"), "--no-site-filter"]) == 0
    out = capsys.readouterr().out
    assert "targets (para_summary_mean): 14 of 14 profiles used" in out
