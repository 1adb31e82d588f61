"""Loaders: pedotransfer, coarse fragments, WoSIS NetCDF and CSV layouts, PRODA screening with a
reason for every excluded profile."""

import csv

import netCDF4
import numpy as np
import pytest

from soc_jax.data import (
    coarse_fragment_factor,
    load_csv,
    load_wosis,
    pedotransfer_bulk_density,
    stock_from_content,
)


def test_pedotransfer_bulk_density_hand_values():
    # BD = 0.32 + 1.30 exp(-0.0089 * 1.724 * c)
    np.testing.assert_allclose(pedotransfer_bulk_density(0.0), 1.62)
    np.testing.assert_allclose(pedotransfer_bulk_density(10.0), 0.32 + 1.30 * 0.857755, rtol=1e-5)
    np.testing.assert_allclose(
        pedotransfer_bulk_density([100.0]), [0.32 + 1.30 * 0.215594], rtol=1e-5
    )


def test_coarse_fragment_factor_and_stock():
    np.testing.assert_allclose(coarse_fragment_factor([0.0, 25.0, np.nan]), [1.0, 0.75, 1.0])
    with pytest.raises(ValueError, match="0..100"):
        coarse_fragment_factor([120.0])
    soc, bd, pedo = stock_from_content([10.0, 10.0], [1.3, np.nan], [20.0, 0.0])
    np.testing.assert_allclose(soc[0], 10.0 * 1.3 * 1000.0 * 0.8)  # 10400 gC m-3
    np.testing.assert_allclose(soc[1], 10.0 * pedotransfer_bulk_density(10.0) * 1000.0)
    assert pedo.tolist() == [False, True] and bd[0] == 1.3


# Profiles (id, lon, lat) and layers (top, bottom, node in cm, soc_stock gC m-3):
GOOD = [(0, 20, 15, 9000.0), (20, 40, 30, 6000.0), (40, 80, 60, 3000.0)]
CASES = {
    1: ("kept", GOOD),
    2: ("fewer than 3 layers", [(0, 10, 5, 9000.0), (10, 80, 45, 4000.0), (80, 90, 85, 0.0)]),
    3: ("maximum depth <= 50 cm", [(0, 10, 5, 9e3), (10, 30, 20, 5e3), (30, 60, 45, 2e3)]),
    4: (
        "negative soc",
        [(0, 10, 5, 9e3), (10, 30, 20, -5.0), (30, 60, 45, 2e3), (60, 100, 80, 1e3)],
    ),
    5: ("all layers zero or NaN", [(0, 10, 5, 0.0), (10, 30, 20, np.nan)]),
    6: ("no layers", []),
    7: (
        "invalid layers",
        [(0, 20, 10, 9e3), (10, 30, 20, 5e3), (30, 60, 45, 2e3), (60, 100, 80, 1e3)],
    ),
    8: ("lat/lon out of range", GOOD),
}


def _wosis_file(path, transpose=False, duplicate=False):
    info, data = [], []
    for pid, (_, layers) in CASES.items():
        lat = 95.0 if pid == 8 else 40.0 + pid
        info.append([pid, 1, np.nan, 10.0 + pid, lat, len(layers), 2000])
        for top, bottom, node, stock in layers:
            data.append(
                [
                    pid,
                    2000,
                    top,
                    bottom,
                    node,
                    12.0 if np.isfinite(stock) else np.nan,
                    stock,
                    1.3,
                    0,
                ]
            )
    if duplicate:
        info.append(info[0])
    data.append([99, 2000, 0, 10, 5, 12.0, 5000.0, 1.3, 0])  # layer of an unknown profile
    info, data = np.array(info, float), np.array(data, float)
    with netCDF4.Dataset(path, "w") as nc:
        for name, arr in (("soc_profile_info", info), ("data_soc_integrate", data)):
            arr = arr.T if transpose else arr
            nc.createDimension(f"{name}_r", arr.shape[0])
            nc.createDimension(f"{name}_c", arr.shape[1])
            nc.createVariable(name, "f8", (f"{name}_r", f"{name}_c"))[:] = arr


@pytest.mark.parametrize("transpose", [False, True])
def test_wosis_screening_reasons(tmp_path, transpose):
    path = tmp_path / "wosis.nc"
    _wosis_file(path, transpose=transpose)
    ds, report = load_wosis(path)
    assert ds["profile_id"].values.tolist() == ["1"]
    np.testing.assert_allclose(ds["depth_node"].values[0], [0.15, 0.30, 0.60])
    np.testing.assert_allclose(ds["soc"].values[0], [9000.0, 6000.0, 3000.0])
    np.testing.assert_allclose(ds["lat"].values, [41.0])
    np.testing.assert_allclose(ds["lon"].values, [11.0])
    for pid, (reason, _) in CASES.items():
        if reason != "kept":
            assert report.reason_of(str(pid)) == reason, pid
    assert report.reason_of("1") is None
    assert (
        "overlapping layers" in [r for r in report.excluded if r["profile_id"] == "7"][0]["detail"]
    )
    assert report.n_profiles_in == 8 and report.n_profiles_kept == 1
    dropped = {(r["profile_id"], r["reason"]) for r in report.dropped_layers}
    assert dropped == {
        ("2", "soc is zero"),
        ("5", "soc is zero"),
        ("5", "soc is NaN"),
        ("99", "unknown profile_id"),
    }
    # The report is a table you can write
    report.to_csv(tmp_path / "excl.csv", tmp_path / "layers.csv")
    rows = list(csv.DictReader(open(tmp_path / "excl.csv")))
    assert len(rows) == 7 and {r["reason"] for r in rows} >= {"negative soc", "no layers"}
    assert len(list(csv.DictReader(open(tmp_path / "layers.csv")))) == 4
    assert "kept 1 of 8 profiles" in report.summary()


def test_wosis_duplicates_and_content_stock(tmp_path):
    path = tmp_path / "wosis.nc"
    _wosis_file(path, duplicate=True)
    ds, report = load_wosis(path, stock="content")
    assert report.reason_of("1") == "duplicate profile_id"
    assert "1" not in ds["profile_id"].values.tolist()
    # stock from content: 12 g/kg x 1.3 g cm-3 x 1000
    path2 = tmp_path / "wosis2.nc"
    _wosis_file(path2)
    ds, _ = load_wosis(path2, stock="content")
    np.testing.assert_allclose(ds["soc"].values[ds["mask"].values], 12.0 * 1.3 * 1000.0)


def test_wosis_missing_variable(tmp_path):
    path = tmp_path / "bad.nc"
    with netCDF4.Dataset(path, "w") as nc:
        nc.createDimension("r", 2)
        nc.createVariable("soc_profile_info", "f8", ("r",))
    with pytest.raises(ValueError, match="missing variable 'data_soc_integrate'"):
        load_wosis(path)


def _csv(
    path,
    rows,
    header="profile_id,lat,lon,upper_depth,lower_depth,soc_content,bulk_density,coarse_fragments",
):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write(",".join("" if v is None else str(v) for v in r) + "\n")


def test_csv_loader_stock_pedotransfer_and_screening(tmp_path):
    path = tmp_path / "layers.csv"
    _csv(
        path,
        [
            ("P1", 45.0, 7.0, 0, 10, 20.0, 1.2, 10),
            ("P1", 45.0, 7.0, 10, 30, 10.0, None, None),
            ("P1", 45.0, 7.0, 30, 100, 5.0, 1.5, 0),
            ("P2", 10.0, 7.0, 0, 10, 20.0, 1.2, 0),
            ("P2", 11.0, 7.0, 10, 30, 10.0, 1.3, 0),
            ("P2", 10.0, 7.0, 30, 100, 5.0, 1.5, 0),
            ("P3", 0.0, 0.0, 0, 30, 20.0, 1.2, 0),
            ("P3", 0.0, 0.0, 30, 60, None, 1.2, 0),
        ],
    )
    ds, report = load_csv(path)
    assert ds["profile_id"].values.tolist() == ["P1"]
    expected = [
        20.0 * 1.2 * 1000 * 0.9,
        10.0 * pedotransfer_bulk_density(10.0) * 1000,
        5.0 * 1.5 * 1000,
    ]
    np.testing.assert_allclose(ds["soc"].values[0], expected)
    np.testing.assert_allclose(ds["depth_node"].values[0], [0.05, 0.2, 0.65])
    np.testing.assert_allclose(ds["bulk_density"].values[0, 1], pedotransfer_bulk_density(10.0))
    assert report.reason_of("P2") == "inconsistent lat/lon"
    assert report.reason_of("P3") == "fewer than 3 layers"
    assert [r["reason"] for r in report.dropped_layers] == ["soc is NaN"]
    assert report.dropped_layers[0]["row"] == 9  # line number in the file


def test_csv_errors(tmp_path):
    path = tmp_path / "a.csv"
    _csv(path, [("P1", 1, 2, 0, 10, 5.0)], header="profile_id,lat,lon,upper_depth,soc_content")
    with pytest.raises(ValueError, match=r"missing required columns \['lower_depth'\]"):
        load_csv(path)
    _csv(path, [("P1", 1, 2, 0, 10)], header="profile_id,lat,lon,upper_depth,lower_depth")
    with pytest.raises(ValueError, match="soc_stock or a soc_content"):
        load_csv(path)
    _csv(
        path,
        [("P1", 1, 2, 0, "ten", 5.0)],
        header="profile_id,lat,lon,upper_depth,lower_depth,soc_stock",
    )
    with pytest.raises(ValueError, match=r"row 2, column 'lower_depth': cannot read 'ten'"):
        load_csv(path)


def test_csv_metres_and_given_stock(tmp_path):
    path = tmp_path / "m.csv"
    rows = [
        ("X", 1.0, 2.0, 0.0, 0.2, 8000.0),
        ("X", 1.0, 2.0, 0.2, 0.5, 4000.0),
        ("X", 1.0, 2.0, 0.5, 1.0, 1000.0),
    ]
    _csv(path, rows, header="profile_id,lat,lon,upper_depth,lower_depth,soc_stock")
    ds, report = load_csv(path, depth_unit="m")
    np.testing.assert_allclose(ds["soc"].values[0], [8000.0, 4000.0, 1000.0])
    np.testing.assert_allclose(ds["depth_bottom"].values[0], [0.2, 0.5, 1.0])
    assert report.excluded == []


def test_wosis_report_names_the_layer_in_cm(tmp_path):
    """Excluded profiles name the layer that broke the rule, in the file's cm, with its row."""
    path = tmp_path / "wosis.nc"
    _wosis_file(path)
    _, report = load_wosis(path)
    detail = {r["profile_id"]: r["detail"] for r in report.excluded}
    # profile 7: layers 0-20, 10-30, 30-60, 60-100 cm; the second starts inside the first
    assert detail["7"] == (
        "overlapping layers (depth_top < previous bottom): depth_top 10 cm is above "
        "depth_bottom 20 cm of layer 1 (layer 2 of 4 counted from the surface, 10-30 cm, "
        "data_soc_integrate row 16 (0-based))"
    )
    # profile 4: the second layer (rows 9-12 of the table) is negative
    assert detail["4"] == (
        "soc -5 gC m-3 (layer 2 of 4 counted from the surface, 10-30 cm, data_soc_integrate "
        "row 10 (0-based))"
    )
    assert detail["3"] == "deepest node 45 cm"
    assert detail["8"] == "lat 95, lon 18 degrees"


@pytest.mark.parametrize(("unit", "shown"), [("cm", "depth_top 10 cm"), ("m", "depth_top 10 m")])
def test_csv_report_uses_the_files_depth_unit(tmp_path, unit, shown):
    path = tmp_path / "layers.csv"
    _csv(
        path,
        [
            ("P1", 45.0, 7.0, 0, 20, 20.0, 1.2, 0),
            ("P1", 45.0, 7.0, 10, 30, 10.0, 1.2, 0),
            ("P1", 45.0, 7.0, 30, 100, 5.0, 1.5, 0),
        ],
    )
    _, report = load_csv(path, depth_unit=unit)
    (row,) = report.excluded
    assert row["reason"] == "invalid layers"
    assert row["detail"] == (
        f"overlapping layers (depth_top < previous bottom): {shown} is above depth_bottom "
        f"20 {unit} of layer 1 (layer 2 of 3 counted from the surface, 10-30 {unit}, CSV line 3)"
    )


def test_missing_or_unreadable_file_is_one_line(tmp_path):
    """No xarray traceback: the error is raised by soc_jax and names the file."""
    missing = tmp_path / "nope.nc"
    for load in (load_wosis, load_csv):
        with pytest.raises(FileNotFoundError) as err:
            load(missing)
        assert str(missing) in str(err.value) and "\n" not in str(err.value)
        assert not any("xarray" in str(entry.path) for entry in err.traceback)
    text = tmp_path / "notes.nc"
    text.write_text("not a NetCDF file\n")
    with pytest.raises(ValueError, match="notes.nc: cannot read it as NetCDF") as err:
        load_wosis(text)
    assert "\n" not in str(err.value)
    assert not any("xarray" in str(entry.path) for entry in err.traceback)


def test_report_holds_plain_strings(tmp_path):
    """No numpy reprs (np.str_('A'), np.float64(0.15)) in what the user reads."""
    path = tmp_path / "a.csv"
    _csv(
        path,
        [
            ("A", 1, 2, 0, 10, 5.0),
            ("A", 1, 2, 10, 20, -1.0),
            ("A", 1, 2, 20, 80, 3.0),
            ("B", 95, 2, 0, 10, 5.0),
        ],
        header="profile_id,lat,lon,upper_depth,lower_depth,soc_stock",
    )
    _, report = load_csv(path)
    assert report.excluded == [
        {"profile_id": "B", "reason": "lat/lon out of range", "detail": "lat 95, lon 2 degrees"},
        {
            "profile_id": "A",
            "reason": "negative soc",
            "detail": "soc -1 gC m-3 (layer 2 of 3 counted from the surface, 10-20 cm, CSV line 3)",
        },
    ]
    assert all(type(row["profile_id"]) is str for row in report.excluded)
    assert "np." not in repr(report.excluded) + report.summary()
