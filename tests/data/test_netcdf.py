"""Every NetCDF file soc_jax writes is CF-complete; the checker itself catches each omission."""

import numpy as np
import pytest
import xarray as xr

from soc_jax.cli import main
from soc_jax.data.netcdf import (
    cf_problems,
    complete,
    depth_coords,
    flag_attrs,
    history_line,
    open_netcdf,
    write_netcdf,
)
from soc_jax.grid import DZ, ZISOI


def _small():
    return xr.Dataset(
        {
            "soc": (
                ("profile", "layer"),
                np.ones((2, 20)),
                {"units": "gC m-3", "long_name": "SOC"},
            ),
            "ok": (
                ("profile",),
                np.array([0, 1], np.int8),
                flag_attrs({0: "failed", 1: "valid"}, "ok"),
            ),
        },
        coords={"profile": np.arange(2), "layer": np.arange(20), **depth_coords(20)},
        attrs={"title": "test"},
    )


def test_synth_writes_cf_complete_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    argv = [
        "synth",
        "--n-sites",
        "15",
        "--grid-resolution",
        "15",
        "--no-figure",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    files = sorted(tmp_path.glob("*.nc"))
    assert [f.name for f in files] == [
        "covariates.nc",
        "forcing.nc",
        "grid.nc",
        "profiles.nc",
        "truth.nc",
    ]
    for path in files:
        ds = xr.open_dataset(path)
        assert cf_problems(ds) == [], path.name
        assert ds.attrs["Conventions"] == "CF-1.10"
        assert ds.attrs["history"] == (
            "2023-11-14T22:13:20Z soc_jax 0.1.0: soc-jax synth --n-sites 15 --grid-resolution 15 "
            f"--no-figure --out {tmp_path}"
        )
        assert "soc_jax" in ds.attrs["source"]
        for name in ("lat", "lon"):
            if name in ds.variables:
                assert ds[name].attrs["long_name"] in ("latitude", "longitude")


def test_depth_bounds_and_thickness_are_the_model_grid():
    c = depth_coords(20)
    bnds = c["depth_bnds"][1]
    np.testing.assert_array_equal(bnds[:, 1], ZISOI[:20])
    assert bnds[0, 0] == 0.0 and np.all(bnds[1:, 0] == bnds[:-1, 1])
    np.testing.assert_allclose(bnds[:, 1] - bnds[:, 0], DZ[:20], rtol=1e-12)
    np.testing.assert_array_equal(c["layer_thickness"][1], DZ[:20])


def test_flags_round_trip(tmp_path):
    ds = _small()
    write_netcdf(ds, tmp_path / "a.nc")
    back = open_netcdf(tmp_path / "a.nc")
    assert back["ok"].attrs["flag_meanings"] == "failed valid"
    np.testing.assert_array_equal(back["ok"].attrs["flag_values"], [0, 1])
    assert cf_problems(back) == []
    assert (
        flag_attrs({2: "nearly singular", 0: "none"}, "x")["flag_meanings"]
        == "none nearly_singular"
    )


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda ds: ds.attrs.pop("Conventions"), "Conventions"),
        (lambda ds: ds.attrs.pop("history"), "'history'"),
        (lambda ds: ds["soc"].attrs.pop("units"), "soc: no units"),
        (lambda ds: ds["soc"].attrs.pop("long_name"), "soc: no long_name"),
        (
            lambda ds: ds["ok"].attrs.update(flag_meanings="valid"),
            "ok: 2 flag_values but 1 flag_meanings",
        ),
        (lambda ds: ds["ok"].values.__setitem__(0, 3), "ok: values [1, 3] outside flag_values"),
        (
            lambda ds: ds["depth"].attrs.update(bounds="nope"),
            "depth: bounds variable 'nope' missing",
        ),
        (lambda ds: ds["lat"].attrs.update(units="degrees"), "lat: units must be 'degrees_north'"),
    ],
)
def test_checker_catches_each_omission(spoil, problem):
    ds = complete(_small().assign_coords(lat=("profile", [1.0, 2.0])))
    assert cf_problems(ds) == []
    spoil(ds)
    assert any(problem in p for p in cf_problems(ds)), cf_problems(ds)


def test_write_refuses_an_incomplete_dataset(tmp_path):
    ds = _small()
    ds["soc"].attrs.pop("units")
    with pytest.raises(RuntimeError, match="not CF-complete: soc: no units"):
        write_netcdf(ds, tmp_path / "b.nc")
    assert not (tmp_path / "b.nc").exists()


def test_history_line(monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert history_line("x y").startswith("1970-01-01T00:00:00Z soc_jax ")
    assert history_line("x y").endswith(": x y")


def test_history_line_records_the_running_command_and_version(monkeypatch):
    import soc_jax
    from soc_jax import _version

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    monkeypatch.setattr(_version, "command_line", "soc-jax synth --n-sites 3")
    assert history_line() == (
        f"1970-01-01T00:00:00Z soc_jax {soc_jax.__version__}: soc-jax synth --n-sites 3"
    )
    assert soc_jax.__version__ == _version.__version__


def test_open_netcdf_errors_are_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file") as err:
        open_netcdf(tmp_path / "missing.nc")
    assert err.value.filename == str(tmp_path / "missing.nc")
    with pytest.raises(IsADirectoryError):
        open_netcdf(tmp_path)
    (tmp_path / "t.nc").write_text("text")
    with pytest.raises(ValueError, match="t.nc: cannot read it as NetCDF") as err:
        open_netcdf(tmp_path / "t.nc")
    assert "\n" not in str(err.value)


def test_data_layer_does_not_import_the_package_root_or_the_cli():
    """Provenance (version, command line) comes from soc_jax._version, below the data layer."""
    import ast
    from pathlib import Path

    import soc_jax.data

    root = Path(soc_jax.data.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if path.name.endswith("cli.py"):  # the data sub-commands belong to the CLI layer
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                root_import = node.module == "soc_jax" or (node.level == 2 and not node.module)
                names = {a.name for a in node.names} if root_import else set()
                assert not names & {"__version__", "_cli_args", "cli"}, path
                assert node.module not in ("soc_jax._cli_args", "soc_jax.cli"), path
                assert not (node.level == 2 and node.module in ("_cli_args", "cli")), path
