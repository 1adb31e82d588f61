"""The README example and the quickstart run end to end and write what they promise."""

import re
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from soc_jax.cli import main
from soc_jax.data.netcdf import cf_problems
from soc_jax.grid import ZISOI, stocks
from soc_jax.models import clm5, compas

ROOT = Path(__file__).resolve().parents[1]


def test_readme_example_runs(capsys):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## A first example\n\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 15
    exec(compile(code, "README example", "exec"), {})
    printed = capsys.readouterr().out
    assert "kgC m-2 in 0-100 cm" in printed


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci/run").read_text()
    assert "<!-- ci:test -->" in ci
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- ci:test -->", 1)[1]
    assert 'pip install -e ".[test]"' in block and "pytest" in block


def test_quickstart_writes_netcdf_and_figures(tmp_path, capsys):
    assert main(["quickstart", "--n-sites", "12", "--seed", "3", "--out", str(tmp_path)]) == 0
    for name in ("steady_states.nc", "profiles.png", "clm5_vs_compas.png", "summary.txt"):
        assert (tmp_path / name).stat().st_size > 0
    ds = xr.open_dataset(tmp_path / "steady_states.nc")
    assert cf_problems(ds) == []
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert "soc-jax quickstart --n-sites 12 --seed 3" in ds.attrs["history"]
    assert ds.sizes["profile"] == 12 and ds.sizes["layer"] == 20
    assert ds["soc_clm5_default"].attrs["units"] == "gC m-3"
    assert ds["lat"].attrs["long_name"] == "latitude"
    # the model layers: bounds from the CLM5 grid, thickness = bottom - top
    np.testing.assert_allclose(ds["depth_bnds"].values[:, 1], ZISOI[:20])
    np.testing.assert_allclose(ds["depth_bnds"].values[1:, 0], ZISOI[:19])
    np.testing.assert_allclose(
        ds["layer_thickness"].values, np.diff(ds["depth_bnds"].values, axis=1)[:, 0], rtol=1e-12
    )
    assert ds["depth"].attrs["bounds"] == "depth_bnds"
    # flags say what their values mean; the failure code is 0 exactly where ok
    assert ds["ok_compas_midpoint"].attrs["flag_meanings"] == "failed valid"
    for name in ("clm5_default", "clm5_proda_midpoint", "compas_midpoint"):
        ok = ds[f"ok_{name}"].values.astype(bool)
        np.testing.assert_array_equal(ds[f"failure_{name}"].values == 0, ok)
    # the parameters of each configuration are stored with their names and mode
    mid = ds["parameters_clm5_proda_midpoint"]
    assert mid.attrs["mode"] == "proda" and mid.dims == ("clm5_parameter",)
    np.testing.assert_array_equal(mid.values, clm5.PARAMETERS.midpoint())
    assert list(ds["clm5_parameter"].values) == list(clm5.PARAMETERS.names)
    assert ds["parameters_compas_midpoint"].sizes["compas_parameter"] == len(compas.PARAMETERS)
    ok = ds["ok_clm5_default"].values.astype(bool)
    assert ok.any()
    # stocks in the file are the depth integrals of the layer SOC in the file
    soc = ds["soc_clm5_default"].values[ok]
    np.testing.assert_allclose(
        ds["stock_0_100cm_clm5_default"].values[ok], stocks(soc).top_100cm / 1000, rtol=1e-12
    )
    out = capsys.readouterr().out
    assert "12 synthetic sites" in out and "0-100 cm" in out and "uncalibrated" in out
    assert out.strip().endswith((tmp_path / "summary.txt").read_text().strip())


def test_failure_codes_name_the_reason():
    """The quickstart's one-reason codes decode the steady state's flags: COMPAS's DA check, a
    nearly singular system, a sign flip and bad input get their own codes; bad input wins."""
    from types import SimpleNamespace

    import jax

    from soc_jax.data import make_world
    from soc_jax.models import common
    from soc_jax.quickstart import FAILURES, failure_codes

    flags = [0, common.MIC_RATIO, common.SINGULAR, common.NEGATIVE, common.INPUT | common.SINGULAR]
    result = SimpleNamespace(flags=np.array(flags))
    codes = failure_codes(compas, result, None, None, "proda")
    words = [FAILURES[c].split(" ")[0] for c in codes]
    assert words == ["none", "PRODA's", "nearly", "negative", "input"]
    # a real run: forcing outside its rules is reported as such
    world = make_world(4, seed=0)
    bad = jax.tree.map(lambda a: a.copy(), world.forcing_batch())
    bad.litter_input[1] = -1.0
    res = jax.vmap(compas.steady_state, in_axes=(None, 0))(compas.PARAMETERS.midpoint(), bad)
    assert failure_codes(compas, jax.tree.map(np.asarray, res), None, bad, "proda")[1] == 1


def test_deep_carbon_of_the_prior_midpoint_is_what_numpy_gives():
    """The quickstart's note on CLM5's prior midpoint (most carbon below 1 m) is the model's."""
    import jax.numpy as jnp

    from benchmarks.baselines import numpy_clm5
    from soc_jax.data import make_world

    world = make_world(40, seed=0)
    forcing = world.forcing_batch()
    p = clm5.PARAMETERS.midpoint()
    res = jax.jit(jax.vmap(lambda f: clm5.steady_state(p, f, mode="proda")))(
        jax.tree.map(jnp.asarray, forcing)
    )
    st = stocks(np.asarray(res.soc))
    total, top = np.asarray(st.total), np.asarray(st.top_100cm)
    assert np.sum(top) / np.sum(total) < 0.5  # most of the column's carbon is below 1 m
    i = int(np.argmax(total))
    one = jax.tree.map(lambda a: np.asarray(a)[i], forcing)
    ref = numpy_clm5.steady_state(np.asarray(p), one.as_numpy(), mode="proda")
    np.testing.assert_allclose(np.asarray(res.soc)[i], ref["soc"], rtol=1e-9)
    # the deep layers are nearly inert: decomposition scaled by exp(-z / 0.5 m) below 2 %
    assert clm5.PARAMETERS.midpoint()[clm5.PARAMETERS.index("efolding")] == 0.5
