"""CLM5 history files -> forcing climatology: small files written in CLM's own conventions.

The oracle is a NumPy mean over the selected years of the arrays written into the files,
indexed by the (year, month) each record stands for, converted by hand (seconds per month).
"""

import cftime
import jax
import numpy as np
import pytest
import xarray as xr

from soc_jax.data import dataset_to_forcing, read_forcing, write_forcing
from soc_jax.data.clm_history import (
    bedrock_index,
    clm_history_profiles,
    read_clm_history,
)
from soc_jax.forcing import Forcing
from soc_jax.models import clm5

jax.config.update("jax_enable_x64", True)

DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
CUM = np.concatenate([[0], np.cumsum(DAYS)])
LAT = np.array([10.0, 0.0, -10.0])  # north to south, like PRODA's grid
LON = np.array([0.0, 90.0, 180.0, 270.0])
YEARS = (1, 2, 3)
OCEAN = (2, 3)  # (i_lat, i_lon) of an ocean cell: fill values everywhere
ZBEDROCK = np.array([[1.0, 0.92, 0.45, 10.0], [0.3, 2.5, 8.6, 5.0], [1.5, 0.6, 3.0, 1e36]])

# CLM variable -> (level dim or None, units, low, high)
SPECS = {
    "TSOI": ("levgrnd", "K", 260.0, 300.0),
    "W_SCALAR": ("levdcmp", "unitless", 0.05, 1.0),
    "T_SCALAR": ("levdcmp", "unitless", 0.05, 1.0),
    "O_SCALAR": ("levdcmp", "unitless", 0.5, 1.0),
    "FPI_vr": ("levdcmp", "proportion", 0.1, 1.0),
    "CELLSAND": ("levgrnd", "PERCENT", 10.0, 90.0),
    "SOILPSI": ("levgrnd", "MPa", -2.0, -0.01),
    "ALTMAX": (None, "m", 0.5, 5.0),
    "ALTMAX_LASTYEAR": (None, "m", 0.5, 5.0),
    "NPP": (None, "gC/m^2/s", 1e-8, 1e-7),
    "CWD_INPUT_ACC_VECTOR": ("levdcmp", "gC/m^3/s", 1e-7, 1e-6),
    "LITR1_INPUT_ACC_VECTOR": ("levdcmp", "gC/m^3/s", 1e-7, 1e-6),
    "LITR2_INPUT_ACC_VECTOR": ("levdcmp", "gC/m^3/s", 1e-7, 1e-6),
    "LITR3_INPUT_ACC_VECTOR": ("levdcmp", "gC/m^3/s", 1e-7, 1e-6),
}
NLEV = {"levgrnd": 25, "levdcmp": 20}


def truth(seed=0):
    """(year, month, [level], lat, lon) arrays; levgrnd levels 21..25 are NaN (ignored)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (lev, _u, lo, hi) in SPECS.items():
        shape = (len(YEARS), 12) + ((NLEV[lev],) if lev else ()) + (LAT.size, LON.size)
        arr = rng.uniform(lo, hi, shape)
        if lev == "levgrnd":
            arr[:, :, 20:] = np.nan
        arr[..., OCEAN[0], OCEAN[1]] = np.nan
        out[name] = arr
    return out


def history(data, records, lon=LON, bounds=True, stamp="end", drop=()):
    """A CLM h0 Dataset holding the (year, month) records given, time as CLM writes it."""
    yi = np.array([YEARS.index(y) for y, _ in records])
    mi = np.array([m - 1 for _, m in records])
    start = np.array([(y - 1) * 365 + CUM[m - 1] for y, m in records], float)
    end = np.array([(y - 1) * 365 + CUM[m] for y, m in records], float)
    time = {"end": end, "middle": 0.5 * (start + end)}[stamp]
    tattrs = {"units": "days since 0001-01-01 00:00:00", "calendar": "noleap"}
    ds = xr.Dataset(coords={"lat": ("lat", LAT), "lon": ("lon", lon)})
    ds["time"] = ("time", time, dict(tattrs, bounds="time_bounds") if bounds else tattrs)
    if bounds:
        ds["time_bounds"] = (("time", "hist_interval"), np.stack([start, end], 1))
    for name, (lev, units, _lo, _hi) in SPECS.items():
        if name in drop:
            continue
        dims = ("time",) + ((lev,) if lev else ()) + ("lat", "lon")
        ds[name] = (dims, data[name][yi, mi], {"units": units, "long_name": name})
    return ds


def write(ds, path):
    enc = {v: {"_FillValue": 1e36} for v in ds.data_vars if v in SPECS or v == "zbedrock"}
    ds.to_netcdf(path, encoding=enc)
    return str(path)


def surface_file(tmp_path):
    ds = xr.Dataset({"zbedrock": (("lsmlat", "lsmlon"), ZBEDROCK, {"units": "m"})})
    return write(ds, tmp_path / "surfdata.nc")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Year 1 as 12 one-month files, years 2 and 3 as one 12-month file each (CLM names)."""
    d = tmp_path_factory.mktemp("clm")
    data = truth()
    paths = [
        write(history(data, [(1, m)]), d / f"case.clm2.h0.0001-{m:02d}.nc") for m in range(1, 13)
    ]
    for y in (2, 3):
        recs = [(y, m) for m in range(1, 13)]
        paths.append(write(history(data, recs), d / f"case.clm2.h0.000{y}-01-01-00000.nc"))
    return d, data, paths, surface_file(d)


def oracle(data, years=YEARS):
    """Climatology by hand: mean over years, first 20 levels, rates to amounts per month."""
    idx = [YEARS.index(y) for y in years]
    mean = {k: v[idx].mean(axis=0) for k, v in data.items()}
    seconds = (DAYS * 86400.0).reshape(12, 1, 1, 1)

    def cell_first(a):  # (12, [lev], lat, lon) -> (cell, 12, [lev])
        a = a[:, :20] if a.ndim == 4 else a
        return np.moveaxis(a.reshape(a.shape[:-2] + (-1,)), -1, 0)

    out = {k: cell_first(mean[v]) for k, v in (("tsoi", "TSOI"), ("w_scalar", "W_SCALAR"))}
    out |= {k: cell_first(mean[v]) for k, v in (("o_scalar", "O_SCALAR"), ("fpi", "FPI_vr"))}
    out |= {"sand": cell_first(mean["CELLSAND"]), "npp": cell_first(mean["NPP"])}
    out |= {"altmax": cell_first(mean["ALTMAX"])}
    out |= {"altmax_lastyear": cell_first(mean["ALTMAX_LASTYEAR"])}
    names = ("CWD", "LITR1", "LITR2", "LITR3")
    lit = [cell_first(mean[f"{n}_INPUT_ACC_VECTOR"] * seconds) for n in names]
    out["litter_input"] = np.stack(lit, axis=1)
    return out


def test_climatology_equals_numpy_mean_by_month(tree, tmp_path):
    _, data, paths, surface = tree
    ds = read_clm_history(list(reversed(paths)), surface=surface)
    write_forcing(ds, tmp_path / "cells.nc")  # a CF-complete forcing file per cell
    expect = oracle(data)
    assert ds.sizes["cell"] == LAT.size * LON.size
    for key, value in expect.items():
        np.testing.assert_allclose(ds[key].values, value, rtol=1e-13, err_msg=key)
    np.testing.assert_array_equal(ds["lat"].values, np.repeat(LAT, LON.size))
    np.testing.assert_array_equal(ds["lon"].values, np.tile(LON, LAT.size))
    assert "t_scalar" in ds and "soilpsi" in ds


def test_year_selection(tree):
    _, data, paths, surface = tree
    ds = read_clm_history(paths, surface=surface, years=[2, 3])
    np.testing.assert_allclose(ds["tsoi"].values, oracle(data, (2, 3))["tsoi"], rtol=1e-13)
    ds1 = read_clm_history(paths, surface=surface, years=range(1, 2))
    np.testing.assert_allclose(ds1["npp"].values, oracle(data, (1,))["npp"], rtol=1e-13)


def test_month_from_time_bounds_not_the_end_stamp(tmp_path):
    """January's mean is stamped 0001-02-01 (end of interval): it must land in month 1."""
    data = truth(1)
    recs = [(1, m) for m in range(1, 13)]
    p = write(history(data, recs), tmp_path / "h0.nc")
    ds = read_clm_history(p, surface=surface_file(tmp_path))
    np.testing.assert_allclose(ds["tsoi"].values[0, 0], data["TSOI"][0, 0, :20, 0, 0])
    # the stamp of record 1 is in February: a stamp-month reader would put January there
    with xr.open_dataset(p, decode_times=False) as raw:
        t = raw["time"]
        stamp = cftime.num2date(t.values[0], t.attrs["units"], t.attrs["calendar"])
    assert (stamp.month, stamp.day) == (2, 1)
    # the same data with bounds whose midpoint says otherwise: bounds win over the stamp
    shifted = history(data, recs)
    shifted["time_bounds"] = shifted["time_bounds"] - 31.0  # now each interval is a month earlier
    q = write(shifted, tmp_path / "shifted.nc")
    with pytest.raises(ValueError, match="too few months"):  # December moved to year 0
        read_clm_history(q, surface=surface_file(tmp_path), years=[1])


def test_month_without_bounds_end_or_middle_stamps(tmp_path):
    data = truth(2)
    recs = [(1, m) for m in range(1, 13)]
    surf = surface_file(tmp_path)
    expect = oracle({k: v[:1] for k, v in data.items()}, (1,))["tsoi"]
    for stamp in ("end", "middle"):
        p = write(history(data, recs, bounds=False, stamp=stamp), tmp_path / f"{stamp}.nc")
        np.testing.assert_allclose(read_clm_history(p, surface=surf)["tsoi"].values, expect)


def test_units_conversions(tree):
    _, data, paths, surface = tree
    ds = read_clm_history(paths, surface=surface, years=[3])
    # CWD in gC m-3 s-1 -> gC m-3 per month: March has 31 days
    raw = data["CWD_INPUT_ACC_VECTOR"][2, 2, 5, 1, 2]
    assert ds["litter_input"].values[1 * 4 + 2, 0, 2, 5] == pytest.approx(raw * 31 * 86400, 1e-13)
    # declared per year instead: x days_in_month / 365
    yr = read_clm_history(
        paths, surface=surface, years=[3], units={"CWD_INPUT_ACC_VECTOR": "gC/m3/yr"}
    )
    assert yr["litter_input"].values[6, 0, 1, 3] == pytest.approx(
        data["CWD_INPUT_ACC_VECTOR"][2, 1, 3, 1, 2] * 28 / 365, 1e-13
    )
    with pytest.raises(ValueError, match="TSOI has units 'furlong'"):
        read_clm_history(paths, surface=surface, units={"TSOI": "furlong"})


def test_bedrock_index_clm_rule():
    # zisoi(j-1) < z <= zisoi(j), searched from layer 6 (contains 0.4 m) to 20; else 20
    z = np.array([1.0, 0.92, 0.45, 10.0, 0.3, 2.5, 8.6, np.nan])
    np.testing.assert_array_equal(bedrock_index(z), [9, 8, 6, 20, 20, 13, 20, np.nan])


def test_nbedrock_from_surface_and_nan_levels_ignored(tree):
    _, _, paths, surface = tree
    ds = read_clm_history(paths, surface=surface)
    nb = ds["nbedrock"].values
    np.testing.assert_array_equal(nb, np.repeat(nb[:, :1], 12, axis=1))  # same every month
    z = ZBEDROCK.ravel().copy()
    z[z > 1e30] = np.nan
    np.testing.assert_array_equal(nb[:, 0], bedrock_index(z))
    land = np.isfinite(ds["tsoi"].values).all(axis=(1, 2))
    assert land.sum() == LAT.size * LON.size - 1  # only the ocean cell is NaN


def test_errors(tmp_path, tree):
    _, data, paths, surface = tree
    recs = [(1, m) for m in range(1, 13)]
    p = write(history(data, recs, drop=("O_SCALAR",)), tmp_path / "no_o.nc")
    with pytest.raises(ValueError, match=r"O_SCALAR not found .*no_o\.nc"):
        read_clm_history(p, surface=surface)
    with pytest.raises(ValueError, match=r"nbedrock \(or zbedrock\) not found"):
        read_clm_history(paths[:12])
    other = write(history(data, [(2, m) for m in range(1, 13)], lon=LON + 1), tmp_path / "b.nc")
    with pytest.raises(ValueError, match="grid mismatch"):
        read_clm_history(paths[:12] + [other], surface=surface)
    with pytest.raises(ValueError, match=r"too few months.*0001-05"):
        read_clm_history(paths[:4] + paths[5:12], surface=surface)
    with pytest.raises(ValueError, match="too few months.*0004-01"):
        read_clm_history(paths, surface=surface, years=[3, 4])
    with pytest.raises(ValueError, match="not strictly increasing"):
        read_clm_history(paths[:12] + [paths[3]], surface=surface)
    part = write(history(data, [(2, m) for m in range(1, 13)], drop=("NPP",)), tmp_path / "c.nc")
    with pytest.raises(ValueError, match="NPP is in only some of the history files"):
        read_clm_history(paths[:12] + [part], surface=surface)
    small = xr.Dataset({"zbedrock": (("lsmlat", "lsmlon"), ZBEDROCK[:2])})
    with pytest.raises(ValueError, match=r"grid mismatch: .*small\.nc holds zbedrock"):
        read_clm_history(paths[:12], surface=write(small, tmp_path / "small.nc"))
    shallow = history(data, recs).isel(levdcmp=slice(0, 1))  # a run without vertical soil BGC
    with pytest.raises(ValueError, match="W_SCALAR has 1 levels on levdcmp"):
        read_clm_history(write(shallow, tmp_path / "shallow.nc"), surface=surface)
    with pytest.raises(FileNotFoundError, match="nowhere.nc"):
        read_clm_history([tmp_path / "nowhere.nc"])


def test_profiles_nearest_cell_ties_and_date_line(tree):
    _, data, paths, surface = tree
    # lat 5: tie between 10 and 0 -> first (10, north); lon 45: tie 0/90 -> 0;
    # lon -179 -> 181 on a 0..360 grid -> 180; lon -90 -> 270; lon 359 -> 270 (no wrap, SPEC 1.11)
    lat = [5.0, -10.0, 0.0, -4.0, 10.0]
    lon = [45.0, -179.0, -90.0, 359.0, 179.0]
    ds = clm_history_profiles(paths, ["a", "b", "c", "d", "e"], lat, lon, surface=surface)
    cells = [(0, 0), (2, 2), (1, 3), (1, 3), (0, 2)]
    assert list(ds["profile_id"].values) == ["a", "b", "c", "d", "e"]
    full = read_clm_history(paths, surface=surface)
    for p, (i, j) in enumerate(cells):
        c = i * LON.size + j
        assert (int(ds["i_lat"][p]), int(ds["i_lon"][p])) == (i, j)
        for key in ("tsoi", "litter_input", "nbedrock", "npp"):
            np.testing.assert_array_equal(ds[key].values[p], full[key].values[c])


def test_round_trip_and_clm5_steady_state(tree, tmp_path):
    _, data, paths, surface = tree
    ds = clm_history_profiles(paths, ["p1", "p2"], [0.0, -10.0], [90.0, 0.0], surface=surface)
    write_forcing(ds, tmp_path / "forcing.nc")  # as soc-jax calibrate --data reads it
    back = read_forcing(tmp_path / "forcing.nc")
    assert list(back["profile_id"].values.astype(str)) == ["p1", "p2"]
    forcing = dataset_to_forcing(back, dim="profile")
    for key, value in dataset_to_forcing(ds).as_numpy().items():
        np.testing.assert_array_equal(getattr(forcing, key), value, err_msg=key)
    forcing.validate()
    expect = oracle(data)
    params = clm5.PARAMETERS.midpoint()
    # zbedrock 2.5 m: 2.28 < 2.5 <= 2.72 -> layer 13; 1.5 m: 1.20 < 1.5 <= 1.52 -> layer 10
    for p, (cell, nb) in enumerate([(1 * 4 + 1, 13.0), (2 * 4 + 0, 10.0)]):
        direct = Forcing(**{k: v[cell] for k, v in expect.items()}, nbedrock=np.full(12, nb))
        ss = clm5.steady_state(params, forcing[p])
        ref = clm5.steady_state(params, direct)
        assert np.all(np.isfinite(ss.soc)) and float(np.sum(ss.soc)) > 0
        np.testing.assert_allclose(ss.soc, ref.soc, rtol=1e-10)


# columns of an h1 file: (i_lat, i_lon) of their grid cell and CLM landunit type (1 = soil)
COLUMNS = [((0, 0), 1), ((1, 2), 4), ((1, 2), 1), ((2, 1), 1), ((0, 3), 1)]


def column_history(data, records):
    """The gridded records as an h1 file by column (dims time, levgrnd|levdcmp, column)."""
    grid = history(data, records)
    i = xr.DataArray([c[0][0] for c in COLUMNS], dims="column")
    j = xr.DataArray([c[0][1] for c in COLUMNS], dims="column")
    ds = grid.drop_vars(list(SPECS)).assign({v: grid[v].isel(lat=i, lon=j) for v in SPECS})
    ds = ds.drop_vars(["lat", "lon"]).assign(lat=("lat", LAT), lon=("lon", LON))
    ds["cols1d_lat"] = ("column", LAT[i.values])
    ds["cols1d_lon"] = ("column", LON[j.values])
    ds["cols1d_jxy"] = ("column", i.values + 1)
    ds["cols1d_ixy"] = ("column", j.values + 1)
    ds["cols1d_itype_lunit"] = ("column", np.array([c[1] for c in COLUMNS]))
    return ds


def test_column_files_equal_gridded_cells(tmp_path, tree):
    _, data, paths, surface = tree
    col = [
        write(column_history(data, [(y, m) for m in range(1, 13)]), tmp_path / f"h1.{y}.nc")
        for y in YEARS
    ]
    ds = read_clm_history(col, surface=surface)
    write_forcing(ds, tmp_path / "columns.nc")
    full = read_clm_history(paths, surface=surface)
    flat = [i * LON.size + j for (i, j), _ in COLUMNS]
    for key in ("tsoi", "fpi", "litter_input", "nbedrock", "altmax", "sand"):
        np.testing.assert_array_equal(ds[key].values, full[key].values[flat], err_msg=key)
    np.testing.assert_array_equal(ds["i_lat"].values, [c[0][0] for c in COLUMNS])
    # a profile at cell (1, 2) takes the soil column (index 2), not the first column (type 4)
    prof = clm_history_profiles(col, ["x", "y"], [0.0, 10.0], [180.0, 0.0], surface=surface)
    np.testing.assert_array_equal(prof["tsoi"].values, ds["tsoi"].values[[2, 0]])
    with pytest.raises(ValueError, match="without a soil column.*: z"):
        clm_history_profiles(col, ["z"], [-10.0], [0.0], surface=surface)


def test_cell_subset_and_time_constant_field(tmp_path, tree):
    """cells= reads only those cells (any order, repeats); CELLSAND without time is broadcast."""
    _, data, paths, surface = tree
    full = read_clm_history(paths, surface=surface)
    cells = [7, 0, 7, 5, 11]
    sub = read_clm_history(paths, surface=surface, cells=cells)
    for key in ("tsoi", "litter_input", "nbedrock", "lat", "lon", "i_lat", "i_lon"):
        np.testing.assert_array_equal(sub[key].values, full[key].values[cells], err_msg=key)
    ds = history(data, [(1, m) for m in range(1, 13)])
    ds["CELLSAND"] = ds["CELLSAND"].isel(time=0, drop=True)  # written once, as CLM can
    one = read_clm_history(write(ds, tmp_path / "static.nc"), surface=surface)
    sand = data["CELLSAND"][0, 0, :20].reshape(20, -1).T  # (cell, layer)
    np.testing.assert_array_equal(one["sand"].values, np.repeat(sand[:, None], 12, axis=1))
