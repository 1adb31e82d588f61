"""Fast forms of the PRODA contracts whose full-size checks are in the slow suite.

* the end-to-end loss's gradient equals central finite differences for the variational
  objective (slow: test_proda_end_to_end.py, 3 profiles; here 2 profiles, 1 sample);
* ``soc-jax train`` -> ``soc-jax predict`` on a synthetic world (slow: test_proda_cli.py,
  120 sites, 40 epochs, subprocesses);
* ``soc-jax train --end-to-end``, ``--resume``, then ``predict`` (slow: test_proda_e2e_cli.py,
  60 sites).

The two CLI runs share one tiny world (30-degree grid), run in process, in one test.
"""

from __future__ import annotations

import hashlib
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from soc_jax.cli import main
from soc_jax.data.schema import ObservationBatch
from soc_jax.examples import example_forcing
from soc_jax.models import clm5
from soc_jax.proda import end_to_end as e2e
from soc_jax.proda.network import PRODANet


def test_variational_gradient_matches_finite_differences():
    n = 2
    forcing, _ = example_forcing(n, 11)
    rng = np.random.default_rng(11)
    depth = np.tile(np.array([0.05, 0.2, 0.5, 0.1]), (n, 1))
    mask = np.tile(np.array([True, True, True, False]), (n, 1))
    obs = np.where(mask, rng.uniform(500.0, 3000.0, depth.shape), 0.0)
    X = rng.uniform(size=(n, 3))
    data = e2e.make_data("clm5", X, forcing, ObservationBatch(depth=depth, soc=obs, mask=mask))
    cfg = e2e.E2EConfig(model="clm5", hidden=(2,), variational=True, n_samples=1, smoothness=0.1)
    model = PRODANet(
        3, 2 * len(clm5.PARAMETERS), key=jax.random.key(0), hidden=(2,), dtype=jnp.float64
    )
    params, static = eqx.partition(model, eqx.is_array)
    theta, unravel = ravel_pytree(params)
    key = jax.random.key(3)

    def loss(t):
        m = eqx.combine(unravel(t), static)
        return e2e.batch_loss(m, data, jnp.ones(n), key, cfg, training=False)[0]

    vg = jax.jit(jax.value_and_grad(loss))  # one program for values and gradient
    _, g = vg(theta)
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0.0)
    v = jnp.asarray(np.random.default_rng(0).standard_normal(theta.shape))
    h = 1e-5
    fd = (vg(theta + h * v)[0] - vg(theta - h * v)[0]) / (2 * h)
    ad = jnp.dot(g, v)
    assert abs(float(fd) - float(ad)) <= 1e-6 * max(1.0, abs(float(ad))), (fd, ad)


def _world(tmp_path):
    w = tmp_path / "w"
    args = ["synth", "--n-sites", "40", "--grid-resolution", "30", "--seed", "3"]
    assert main([*args, "--out", str(w), "--no-figure"]) == 0
    return w


def test_cli_train_predict_and_end_to_end_resume_predict_on_one_tiny_world(tmp_path, capsys):
    # one test, so that pytest-xdist runs both on one worker: one world, one compiled predict
    world = _world(tmp_path)
    _train_then_predict(world, tmp_path, capsys)
    _end_to_end_train_resume_then_predict(world, tmp_path, capsys)


def _train_then_predict(world, tmp_path, capsys):
    """``soc-jax train`` -> ``soc-jax predict`` (slow at scale: test_proda_cli.py)."""
    net, maps = tmp_path / "net", tmp_path / "maps"
    args = ["train", "--targets", str(world / "truth.nc"), "--data", str(world)]
    args += ["--out", str(net), "--ensemble", "1", "--bootstrap", "2", "--epochs", "4"]
    args += ["--patience", "4", "--epochs-per-call", "2", "--hidden", "8"]
    assert main(args) == 0
    assert "held-out recovery" in capsys.readouterr().out
    rec = {r["parameter"]: r for r in json.loads((net / "recovery.json").read_text())}
    assert set(rec) == set(clm5.PARAMETERS.names) and "r2" in rec["q10"]
    args = ["predict", "--network", str(net), "--data", str(world), "--out", str(maps)]
    assert main([*args, "--block", "16"]) == 0
    assert "held-out pooled NSE" in capsys.readouterr().out
    totals = json.loads((maps / "totals.json").read_text())
    best = totals["proda_best_guess"]["top_100cm"]
    assert np.isfinite(best) and best > 0 and totals["truth_top_100cm"] > 0
    boot = totals["proda_bootstrap"]["top_100cm"]
    assert boot["q14"] <= boot["q86"]
    for f in ("maps.nc", "stock_maps.png", "latitude_profile.png", "parameters_vs_truth.png"):
        assert (maps / f).exists(), f


def _end_to_end_train_resume_then_predict(world, tmp_path, capsys):
    """``train --end-to-end``, ``--resume``, ``predict`` (slow at scale: test_proda_e2e_cli.py);
    the checkpoint header records the input files' SHA-256, and a checkpoint of an older
    soc_jax (none recorded) resumes with a warning."""
    net, maps = tmp_path / "n", tmp_path / "m"
    base = ["train", "--end-to-end", "--data", str(world), "--out", str(net)]
    base += ["--ensemble", "2", "--bootstrap", "1", "--hidden", "4", "--holdout", "0.2"]
    assert main([*base, "--epochs", "1"]) == 0
    first = json.loads((net / "network.eqx.json").read_text())
    assert first["epochs_done"] == 1
    ckpt = net / "checkpoint.eqx.json"
    old = json.loads(ckpt.read_text())
    forcing = (world / "forcing.nc").read_bytes()
    assert old["inputs"]["forcing.nc"]["sha256"] == hashlib.sha256(forcing).hexdigest()
    del old["inputs"]  # as an older soc_jax wrote it
    ckpt.write_text(json.dumps(old))
    capsys.readouterr()
    assert main([*base, "--epochs", "2", "--resume"]) == 0
    assert "the data's identity cannot be checked" in capsys.readouterr().err
    assert "inputs" in json.loads(ckpt.read_text())  # recorded from now on
    header = json.loads((net / "network.eqx.json").read_text())
    assert header["link"] == "sigmoid" and header["epochs_done"] == 2
    assert header["holdout_profile_id"] == first["holdout_profile_id"]  # resumed, not redrawn
    assert (net / "summary.txt").exists() and (net / "training.nc").exists()
    args = ["predict", "--network", str(net), "--data", str(world), "--out", str(maps)]
    assert main([*args, "--block", "16", "--no-figures"]) == 0  # the compiled block of above
    totals = json.loads((maps / "totals.json").read_text())
    assert header["holdout_kind"] == "spatial"
    assert totals["heldout_nse"]["n_profiles"] == len(header["holdout_profile_id"]) >= 1
