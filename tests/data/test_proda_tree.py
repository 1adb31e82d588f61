"""PRODA's input tree (soc_jax.data.proda_tree): a small tree in the authors' exact layout.

Expected values are computed here with plain NumPy from the arrays written (cell by hand, the
driver's dz, the driver's NaN rule), never with the reader.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from scipy.interpolate import PchipInterpolator

from benchmarks.baselines import numpy_clm5, numpy_proda_am
from soc_jax.data import proda_tree as pt
from soc_jax.data.proda_tree import _matfile, reader

NLAT, NLON, L = 20, 30, 25  # 9 x 12 degree cells
GLAT = 85.5 - 9.0 * np.arange(NLAT)  # north to south
GLON = -174.0 + 12.0 * np.arange(NLON)
# the driver's dz (m), layers 1..20
DZ20 = np.array(
    [0.02, 0.04, 0.06, 0.08, 0.12, 0.16, 0.20, 0.24, 0.28, 0.32, 0.36, 0.40, 0.44, 0.54, 0.64,
     0.74, 0.84, 0.94, 1.04, 1.14]
)  # fmt: skip
OCEAN = (5, 7)  # a cell whose CWD input is NaN in month 1, layer 3
LAYERS4 = [(0, 10, 5), (10, 30, 20), (30, 60, 45), (60, 100, 80)]  # cm: top, bottom, node

# profile id -> (lon, lat, expected cell (i, j) by hand, or None when skipped)
PROFILES = {
    101: (10.3, 40.2, (5, 15)),  # between centres: 40.5 and 6 are nearest
    102: (0.0, 45.0, (4, 14)),  # ties in both: 49.5 (i=4) before 40.5, -6 (j=14) before 6
    103: (179.0, -3.0, (10, 29)),  # next to the date line: last column (174); lat -4.5
    104: (-179.5, 12.0, (8, 0)),  # other side: first column (-174)
    105: (181.0, 12.0, (8, 0)),  # 0..360 longitude = -179: first column
    106: (-89.0, 40.8, None),  # over the NaN cell (5, 7): skipped
    107: (30.0, -30.0, (13, 17)),  # one negative layer dropped, 3 kept: profile kept
    108: (30.0, -30.0, None),  # duplicate profile id (two rows in the profile table)
    109: (60.0, 60.0, None),  # no layers in the layer table
    110: (60.0, 95.0, None),  # latitude out of range
}


def _fields(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Valid random monthly fields on the grid, NaN below level 20."""
    shape3, shape4 = (NLAT, NLON, 12), (NLAT, NLON, L, 12)

    def layered(lo, hi, nlev=L):
        a = rng.uniform(lo, hi, (NLAT, NLON, nlev, 12))
        if nlev > 20:
            a[:, :, 20:] = np.nan  # CESM2's bedrock levels: ignored
        return a

    f = {
        "nbedrock": np.repeat(rng.integers(8, 21, (NLAT, NLON))[..., None], 12, -1).astype(float),
        "ALTMAX": np.full(shape3, 8.6),
        "ALTMAX_LASTYEAR": np.full(shape3, 8.6),
        "NPP": rng.uniform(1e-9, 1e-7, shape3),
        "CELLSAND": layered(10, 80),
        "TSOI": layered(275, 300),
        "W_SCALAR": layered(0.2, 0.9),
        "O_SCALAR": layered(0.8, 1.0),
        "FPI_vr": layered(0.3, 0.9),
    }
    for var in reader._INPUTS:
        f[var] = layered(0.5, 2.0, 20) * np.exp(-np.arange(20) / 4.0)[:, None]
    f["CWD_INPUT_ACC_VECTOR"][OCEAN[0], OCEAN[1], 2, 0] = np.nan
    assert all(v.shape[:2] == (NLAT, NLON) for v in f.values())
    assert f["TSOI"].shape == shape4
    return f


def _tables(rng):
    info, layers = [], []
    for pid, (lon, lat, _cell) in PROFILES.items():
        info.append([pid, 1, np.nan, lon, lat, 4, 2019])
        if pid == 109:
            continue
        for k, (top, bottom, node) in enumerate(LAYERS4):
            soc = 20000.0 * np.exp(-node / 50.0) * rng.uniform(0.8, 1.2)
            if pid == 107 and k == 1:
                soc = -350.0
            layers.append([pid, 2019, top, bottom, node, soc / 1500.0, soc, 1.5, 0])
    info.append([108, 1, np.nan, 31.0, -31.0, 4, 2019])  # the duplicate row
    layers.append([999, 2019, 0, 10, 5, 1.0, 1000.0, 1.5, 0])  # id unknown to the profile table
    return np.asarray(info, float), np.asarray(layers, float)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    rng = np.random.default_rng(26)
    fields = _fields(rng)
    info, layers = _tables(rng)
    root = tmp_path_factory.mktemp("proda")
    env = rng.uniform(0, 1, (len(PROFILES), 80))
    env[:, 1] = list(PROFILES)  # ProfileID
    pt.write_proda_tree(root, fields, info, layers, env_info=env)
    return root, fields, info, layers, pt.load_proda_tree(root)


def _expected(fields, i, j):
    """The driver's per-site arrays at cell (i, j), plain NumPy, MATLAB order."""
    cell = {v: a[i, j] for v, a in fields.items()}
    out = {
        "tsoi": cell["TSOI"][:20].T,
        "w_scalar": cell["W_SCALAR"][:20].T,
        "o_scalar": cell["O_SCALAR"][:20].T,
        "fpi": cell["FPI_vr"][:20].T,
        "sand": cell["CELLSAND"][:20].T,
        "nbedrock": cell["nbedrock"],
        "altmax": cell["ALTMAX"],
        "altmax_lastyear": cell["ALTMAX_LASTYEAR"],
        "npp": cell["NPP"],
    }
    out["litter_input"] = np.stack([cell[v][:20].T for v in reader._INPUTS])
    out["input_sum"] = np.stack([(cell[v][:20] * DZ20[:, None]).sum(0) for v in reader._INPUTS])
    return out


def test_profile_to_cell_and_forcing_match_the_driver(tree):
    _root, fields, _info, _layers, t = tree
    f = t.forcing
    ids = list(f["profile_id"].values.astype(str))
    kept = {str(p): cell for p, (_lo, _la, cell) in PROFILES.items() if cell is not None}
    assert sorted(ids) == sorted(kept)
    for k, pid in enumerate(ids):
        i, j = kept[pid]
        assert (int(f["i_lat"][k]), int(f["i_lon"][k])) == (i, j), pid
        exp = _expected(fields, i, j)
        for key in ("tsoi", "w_scalar", "o_scalar", "fpi", "sand", "litter_input"):
            np.testing.assert_array_equal(f[key].values[k], exp[key], err_msg=f"{pid} {key}")
        for key in ("nbedrock", "altmax", "altmax_lastyear", "npp"):
            np.testing.assert_array_equal(f[key].values[k], exp[key], err_msg=f"{pid} {key}")
        # the driver's dz-integrated monthly inputs (gC m-2 per month) from the stored layers
        per_layer = f["litter_input"].values[k]
        np.testing.assert_allclose((per_layer * DZ20).sum(-1), exp["input_sum"], rtol=1e-14)


def test_observations_and_report(tree):
    _root, _fields, _info, layers, t = tree
    p = t.profiles
    for k, pid in enumerate(p["profile_id"].values.astype(str)):
        rows = layers[(layers[:, 0] == int(pid)) & (layers[:, 6] > 0)]
        m = p["mask"].values[k]
        np.testing.assert_array_equal(p["depth_node"].values[k, m], rows[:, 4] / 100)
        np.testing.assert_array_equal(p["soc"].values[k, m], rows[:, 6])
    assert p["n_layers"].values[list(p["profile_id"].values).index("107")] == 3
    rep = t.report
    assert rep.n_profiles_in == 10 and rep.n_profiles_kept == 6
    reasons = {r["profile_id"]: r["reason"] for r in rep.excluded}
    assert reasons["108"] == "duplicate profile_id"
    assert reasons["109"] == "no layers"
    assert reasons["110"] == "lat/lon out of range"
    assert reasons["106"].startswith("no litter input at the cell")
    dropped = sorted((r["profile_id"], r["reason"]) for r in rep.dropped_layers)
    assert dropped == [("107", "negative soc"), ("999", "unknown profile_id")]
    text = t.summary()
    assert "read 10, kept 6, skipped 4" in text and "dropped 1: negative soc" in text


def test_covariates_from_env_info_by_column_name(tree):
    from scipy.io import loadmat

    root, t = tree[0], tree[4]
    (path,) = [str(p) for p in (root / "wosis_2019_snap_shot").glob("*env_info*.mat")]
    env = loadmat(path)["EnvInfo"]
    row = {int(r[1]): r for r in env}
    cov = t.covariates["covariates"]
    # the authors' 0-based column of a few of the 60 inputs (SPEC 5; their env_info_names)
    for name, col in {"Lon": 3, "Lat": 4, "ESA_Land_Cover": 9, "BIO1": 18, "nbedrock": 79}.items():
        got = cov.sel(covariate=name).values
        want = [row[int(p)][col] for p in t.covariates["profile_id"].values]
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert cov.sizes["covariate"] == 60


def test_steady_state_and_cost_equal_numpy_baseline(tree):
    import jax

    jax.config.update("jax_enable_x64", True)
    from soc_jax.calibration.likelihood import cost
    from soc_jax.data import dataset_to_forcing
    from soc_jax.grid import ZSOI, pchip_interpolate
    from soc_jax.models import clm5

    _root, fields, _info, layers, t = tree
    forcing = dataset_to_forcing(t.forcing)
    params = numpy_clm5.to_physical(np.full(21, 0.5))
    ids = t.forcing["profile_id"].values.astype(str)
    for k in (0, 2, 4):  # between centres, date line, 0..360
        i, j = int(t.forcing["i_lat"][k]), int(t.forcing["i_lon"][k])
        ref = numpy_clm5.steady_state(params, _expected(fields, i, j), "proda")
        assert ref["ok"]
        res = clm5.steady_state(params, forcing[k], mode="proda")
        np.testing.assert_allclose(np.asarray(res.soc), ref["soc"], rtol=1e-9)
        rows = layers[(layers[:, 0] == int(ids[k])) & (layers[:, 6] > 0)]
        depth, obs = rows[:, 4] / 100, rows[:, 6]
        j_ref = numpy_proda_am.clm5_cost(
            PchipInterpolator(ZSOI[:20], ref["soc"])(depth), obs, depth
        )
        pred = pchip_interpolate(ZSOI[:20], res.soc, depth)
        j_jax = cost("clm5", pred, obs, depth, np.ones(depth.size, bool))
        np.testing.assert_allclose(float(j_jax), j_ref, rtol=1e-9)


def test_v73_hdf5_files_read_the_same(tree, tmp_path):
    import h5py  # noqa: F401  (in the test extra: this test never skips)

    root, fields, info, layers, t = tree
    pt.write_proda_tree(tmp_path, fields, info, layers, fmt="v7.3")
    with open(next(iter(reader._forcing_paths(str(tmp_path), None, None).values())), "rb") as f:
        assert f.read(10) == b"MATLAB 7.3"
    t73 = pt.load_proda_tree(tmp_path)
    for key in ("tsoi", "litter_input", "nbedrock", "i_lat", "i_lon"):
        np.testing.assert_array_equal(t73.forcing[key].values, t.forcing[key].values)


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", ["f8", "u1", "i2", "f4"])
def test_v5_streamed_cells_equal_loadmat(tmp_path, monkeypatch, compress, dtype):
    """Cells streamed out of a MATLAB v5 file (values cut by chunk boundaries, integer storage,
    compressed or not) equal scipy's full read."""
    from scipy.io import loadmat, savemat

    monkeypatch.setattr(_matfile, "_CHUNK", 61)  # odd: values straddle the chunk ends
    rng = np.random.default_rng(1)
    full = (rng.uniform(0, 100, (7, 9, 22, 12))).astype(dtype)
    path = str(tmp_path / "x.mat")
    savemat(path, {"other": np.arange(5.0), pt.MAT_VARIABLE: full}, do_compression=compress)
    ii, jj = np.array([0, 6, 3, 3]), np.array([8, 0, 4, 4])
    got = _matfile._read_cells(_matfile._mat_info(path, "TSOI"), ii, jj)
    ref = loadmat(path)[pt.MAT_VARIABLE][ii, jj, :20]
    np.testing.assert_array_equal(got, ref.astype(float))


def test_only_the_profiles_asked_for(tree):
    root = tree[0]
    t = pt.load_proda_tree(root, profiles=["103", "107"])
    assert sorted(t.forcing["profile_id"].values.astype(str)) == ["103", "107"]
    assert t.report.n_profiles_in == 2


# ---- bad input: one line naming the file, before any data is read ----


def _copy(root, tmp_path):
    dst = tmp_path / "tree"
    shutil.copytree(root, dst)
    return dst


def test_missing_variable_file(tree, tmp_path):
    dst = _copy(tree[0], tmp_path)
    path = reader._forcing_paths(str(dst), None, None)["FPI_vr"]
    os.remove(path)
    with pytest.raises(pt.TreeError, match=r"missing forcing file for FPI_vr: .*FPI_vr\.mat"):
        pt.check_proda_tree(dst)


def test_wrong_shape(tree, tmp_path):
    dst = _copy(tree[0], tmp_path)
    fields = {"TSOI": tree[1]["TSOI"][:, :, :12]}  # 12 levels, fewer than 20
    pt.write_proda_tree(dst, fields, tree[2], tree[3])
    with pytest.raises(pt.TreeError, match=r"TSOI\.mat: .* shape \(20, 30, 12, 12\), expected"):
        pt.load_proda_tree(dst)
    pt.write_proda_tree(dst, {"TSOI": tree[1]["TSOI"][:10]}, tree[2], tree[3])
    with pytest.raises(
        pt.TreeError, match=r"grid 10 x 30 differs from the other files' \(20, 30\)"
    ):
        pt.load_proda_tree(dst)


def test_nothing_left_is_an_error(tree, tmp_path):
    fields, info, layers = tree[1], tree[2], tree[3]
    ocean = {k: np.full_like(v, np.nan) for k, v in fields.items()}
    pt.write_proda_tree(tmp_path, ocean, info, layers)
    with pytest.raises(pt.TreeError, match=r"no profile left .* no litter input at the cell: 7"):
        pt.load_proda_tree(tmp_path)


# ---- soc-jax import ----


def test_import_writes_soc_jax_files_and_report(tree, tmp_path, capsys):
    from soc_jax.cli import main
    from soc_jax.data import read_forcing, read_profiles

    out = tmp_path / "out"
    assert main(["import", "--proda-tree", str(tree[0]), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "profiles: read 10, kept 6, skipped 4" in printed
    assert "skipped 1: duplicate profile_id" in printed and "dropped 1: negative soc" in printed
    report = (out / "import_report.txt").read_text()
    assert "skipped profile 106: no litter input at the cell (cell (5, 7)" in report
    f = read_forcing(out / "forcing.nc")
    np.testing.assert_array_equal(f["tsoi"].values, tree[4].forcing["tsoi"].values)
    assert list(f["profile_id"].values) == list(read_profiles(out / "profiles.nc")["profile_id"])
    assert (out / "covariates.nc").exists()
    with pytest.raises(SystemExit) as stop:  # no --force: argparse's one line, exit 2
        main(["import", "--proda-tree", str(tree[0]), "--out", str(out)])
    assert stop.value.code == 2
    assert "exists (use --force)" in capsys.readouterr().err


def test_import_bad_tree_is_one_line_exit_2(tree, tmp_path, capsys):
    from soc_jax.cli import main

    dst = _copy(tree[0], tmp_path)
    os.remove(reader._forcing_paths(str(dst), None, None)["TSOI"])
    out = tmp_path / "out"
    assert main(["import", "--proda-tree", str(dst), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing forcing file for TSOI" in err
    assert not out.exists()  # refused before any work


# ---- acceptance: a synthetic world through the tree and soc-jax calibrate ----


def _own_files(fields, info, layers, out):
    """profiles.nc and forcing.nc written from the tree's arrays with plain NumPy (no reader)."""
    from soc_jax.data import forcing_to_dataset, make_profiles, write_forcing, write_profiles
    from soc_jax.forcing import Forcing

    nlat, nlon = fields["TSOI"].shape[:2]
    glat = 90 - 180 / nlat * (np.arange(nlat) + 0.5)
    glon = -180 + 360 / nlon * (np.arange(nlon) + 0.5)
    ids, cells = [], []
    for pid, lon, lat in info[:, [0, 3, 4]]:
        i, j = np.argmin(np.abs(lat - glat)), np.argmin(np.abs(lon - glon))  # first on ties
        if not np.isnan(fields["CWD_INPUT_ACC_VECTOR"][i, j, :, 0].sum()):
            ids.append(int(pid))
            cells.append((i, j))
    rows = [layers[layers[:, 0] == p] for p in ids]
    profiles = make_profiles(
        [str(p) for p in ids],
        [info[info[:, 0] == p, 4][0] for p in ids],
        [info[info[:, 0] == p, 3][0] for p in ids],
        [r[:, 2] / 100 for r in rows],
        [r[:, 3] / 100 for r in rows],
        [r[:, 6] for r in rows],
        [r[:, 4] / 100 for r in rows],
    )
    per = [_expected(fields, i, j) for i, j in cells]
    keys = [k for k in per[0] if k != "input_sum"]
    forcing = Forcing(**{k: np.stack([p[k] for p in per]) for k in keys})
    os.makedirs(out, exist_ok=True)
    write_profiles(profiles, os.path.join(out, "profiles.nc"))
    write_forcing(
        forcing_to_dataset(forcing, profile_id=np.asarray([str(p) for p in ids], dtype=object)),
        os.path.join(out, "forcing.nc"),
    )
    return ids


@pytest.mark.slow
def test_world_through_the_tree_calibrates_as_own_files(tmp_path, capsys):
    import jax
    import xarray as xr

    jax.config.update("jax_enable_x64", True)
    from soc_jax.cli import main
    from soc_jax.data import make_world

    world = make_world(80, seed=26, grid_resolution=30.0)
    fields, info, layers, env = pt.world_tree_arrays(world, (20, 30))
    pt.write_proda_tree(tmp_path / "tree", fields, info, layers, env_info=env)
    ids = _own_files(fields, info, layers, tmp_path / "own")
    assert (
        main(["import", "--proda-tree", str(tmp_path / "tree"), "--out", str(tmp_path / "imp")])
        == 0
    )
    print(capsys.readouterr().out)
    run = ["--steps-test", "300", "--steps-formal", "600", "--chains", "2", "--no-figures"]
    for name in ("imp", "own"):
        args = ["calibrate", "--data", str(tmp_path / name), "--out", str(tmp_path / f"cal_{name}")]
        assert main(args + run) == 0
    a = xr.open_dataset(tmp_path / "cal_imp" / "posterior.nc")
    b = xr.open_dataset(tmp_path / "cal_own" / "posterior.nc")
    assert list(a["profile_id"].values) == [str(p) for p in ids] and len(ids) >= 50
    worst = 0.0
    for name, var in b.data_vars.items():
        if np.issubdtype(var.dtype, np.floating):
            x, y = a[name].values, var.values
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
            scale = np.maximum(np.abs(y), 1.0)
            worst = max(worst, float(np.nanmax(np.abs(x - y) / scale, initial=0.0)))
    print(f"{len(ids)} profiles, largest relative difference of posterior.nc: {worst:.3g}")
    assert worst <= 1e-12
