"""The README example and the quickstart run end to end and write what they promise."""

import re
from pathlib import Path

import numpy as np
import xarray as xr

from soc_jax.cli import main
from soc_jax.grid import stocks

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
    for name in ("steady_states.nc", "profiles.png", "clm5_vs_compas.png"):
        assert (tmp_path / name).stat().st_size > 0
    ds = xr.open_dataset(tmp_path / "steady_states.nc")
    assert ds.sizes == {"profile": 12, "layer": 20}
    assert ds["soc_clm5_default"].attrs["units"] == "gC m-3"
    ok = ds["ok_clm5_default"].values.astype(bool)
    assert ok.any()
    # stocks in the file are the depth integrals of the layer SOC in the file
    soc = ds["soc_clm5_default"].values[ok]
    np.testing.assert_allclose(
        ds["stock_0_100cm_clm5_default"].values[ok], stocks(soc).top_100cm / 1000, rtol=1e-12
    )
    out = capsys.readouterr().out
    assert "mean 0-100 cm stock" in out and "12 synthetic sites" in out
