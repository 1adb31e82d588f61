"""PRODA's own input tree, read as the authors' DA driver reads it (SPEC 1.11, 4, 5, 9).

Layout under the data folder (``path``)::

    wosis_2019_snap_shot/soc_profile*.nc         soc_profile_info (n, 7): [profile_id, country_id,
                                                 country_name, lon, lat, layer_num, date]
    wosis_2019_snap_shot/soc_data_integrate*.nc  data_soc_integrate (m, 9): [profile_id, date,
                                                 upper (cm), lower (cm), node depth (cm),
                                                 soc_weight (g C kg-1), soc_stock (gC m-3),
                                                 bulk_density (g cm-3), is_pedo]
    wosis_2019_snap_shot/*env_info*.mat          optional: EnvInfo (n, 80) covariate table
    cesm2_simu/spinup_ss/<case>_cesm2_ss_4da_<y0>_<y1>_<VAR>.mat
                                                 var_record_monthly_mean, (nlat, nlon, 12) or
                                                 (nlat, nlon, L, 12), latitude north to south

The two WoSIS files are opened separately (their ``n_col`` dimensions clash: 7 and 9). The grid
is the driver's global regular grid of the arrays' shape (384 x 576 for CESM2 f05): cell centres
``lat = 90 - (i + 1/2) 180/nlat`` (north to south), ``lon = -180 + (j + 1/2) 360/nlon``. Each
profile goes to the nearest centre in latitude and in longitude separately, first index on ties
(`soc_jax.data.nearest_cell`; profile longitudes in 0..360 are shifted to -180..180).

Per profile the forcing is the cell's monthly climatology (first 20 levels; deeper levels are
ignored). As in the driver, the litter inputs integrated over the 20 layers with ``dz`` (gC m-2
per month) are formed and a NaN in month 1 of any of the four skips the profile ("no litter input
at the cell": ocean or outside the land mask). The `Forcing` keeps the inputs per layer (gC m-3
per month), from which the model forms the same totals. A profile whose other fields are
non-finite or out of range at its cell is skipped too, with the rule named.

Observations as in `soc_jax.data.load_wosis` (node depth, given ``soc_stock``, PRODA's
screening), except that a non-physical layer value (negative, or above `MAX_SOC` gC m-3) drops
that layer only, counted in the report, and the profile is kept if enough layers remain.

Memory: MATLAB v5/v7 files have no partial read; each variable is read once, the cells needed are
copied out and the array is dropped before the next, so the peak is about one variable
(384 x 576 x 25 x 12 float64 = 53 MB). MATLAB v7.3 (HDF5) files are read cell by cell with h5py.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import struct
import zlib
from collections import Counter

import numpy as np
import xarray as xr

from ..forcing import N_MONTHS, Forcing
from ..grid import DZ, N_LAYERS
from .covariates import COVARIATE_NAMES, covariates_dataset, nearest_cell
from .forcing_io import forcing_to_dataset
from .loaders import ScreeningReport, _id_str, _orient, screen_layers, stock_from_content
from .netcdf import open_netcdf

__all__ = [
    "DEFAULT_CASE",
    "DEFAULT_YEARS",
    "FORCING_VARIABLES",
    "OPTIONAL_VARIABLES",
    "ENV_INFO_COLUMNS",
    "MAX_SOC",
    "ProdaTree",
    "TreeError",
    "grid_centres",
    "check_proda_tree",
    "load_proda_tree",
    "write_proda_tree",
    "world_tree_arrays",
]

DEFAULT_CASE = "sasu_f05_g16_checked_step4"
DEFAULT_YEARS = (661, 680)
WOSIS_DIR = "wosis_2019_snap_shot"
FORCING_DIR = os.path.join("cesm2_simu", "spinup_ss")
MAT_VARIABLE = "var_record_monthly_mean"
MAX_SOC = 1.0e6
"""gC m-3: above this a layer is non-physical (1 g C per cm3 exceeds pure organic matter at its
particle density, about 1.4 g cm-3 x 58 % carbon = 0.81 g C cm-3)."""

# VAR -> (Forcing field, litter pool index or None, per-layer?)
FORCING_VARIABLES: dict[str, tuple[str, int | None, bool]] = {
    "nbedrock": ("nbedrock", None, False),
    "ALTMAX": ("altmax", None, False),
    "ALTMAX_LASTYEAR": ("altmax_lastyear", None, False),
    "CELLSAND": ("sand", None, True),
    "NPP": ("npp", None, False),
    "TSOI": ("tsoi", None, True),
    "W_SCALAR": ("w_scalar", None, True),
    "O_SCALAR": ("o_scalar", None, True),
    "FPI_vr": ("fpi", None, True),
    "CWD_INPUT_ACC_VECTOR": ("litter_input", 0, True),
    "LITR1_INPUT_ACC_VECTOR": ("litter_input", 1, True),
    "LITR2_INPUT_ACC_VECTOR": ("litter_input", 2, True),
    "LITR3_INPUT_ACC_VECTOR": ("litter_input", 3, True),
}
"""The CESM2 variables soc_jax reads (SPEC 4), with the `Forcing` field each fills."""
OPTIONAL_VARIABLES: tuple[str, ...] = ("SOILPSI", "T_SCALAR", "TOTSOMC")
"""Loaded by the driver but unused by the model: not required, not read."""
_INPUTS = ("CWD_INPUT_ACC_VECTOR", "LITR1_INPUT_ACC_VECTOR", "LITR2_INPUT_ACC_VECTOR")
_INPUTS += ("LITR3_INPUT_ACC_VECTOR",)

ENV_INFO_COLUMNS: tuple[str, ...] = (
    "ProfileNum", "ProfileID", "LayerNum", "Lon", "Lat", "Date", "Rmean", "Rmax", "Rmin",
    "ESA_Land_Cover", "ET", "IGBP", "Climate", "Soil_Type", "NPPmean", "NPPmax", "NPPmin",
    "Veg_Cover", *(f"BIO{i}" for i in range(1, 20)), "Abs_Depth_to_Bedrock",
    *(f"{v}_{d}" for v in ("Bulk_Density", "CEC", "Clay_Content", "Coarse_Fragments_v")
      for d in ("0cm", "30cm", "100cm")),
    "Depth_Bedrock_R", "Garde_Acid", "Occurrence_R_Horizon",
    *(f"{v}_{d}" for v in ("pH_Water", "Sand_Content", "Silt_Content", "SWC_v_Wilting_Point",
                           "Texture_USDA") for d in ("0cm", "30cm", "100cm")),
    "USDA_Suborder", "WRB_Subgroup", "Drought", "Elevation", "Max_Depth", "Koppen_Climate_2018",
    "cesm2_npp", "cesm2_npp_std", "cesm2_gpp", "cesm2_gpp_std", "cesm2_vegc", "nbedrock",
)  # fmt: skip
"""The 80 columns of the authors' ``EnvInfo`` table (a scaled copy adds ``R_Squared``)."""


class TreeError(ValueError):
    """The tree cannot be read (missing file or variable, wrong shape): one line, naming it."""


@dataclasses.dataclass
class _Mat:
    path: str
    kind: str  # "v5" or "v7.3"
    shape: tuple[int, ...]  # MATLAB order (nlat, nlon, [L,] 12)


@dataclasses.dataclass
class ProdaTree:
    """A PRODA tree read into soc_jax's own Datasets.

    Attributes:
        profiles: kept profiles (schema of `soc_jax.data.schema`), ``profile_id`` as text.
        forcing: their forcing (`soc_jax.data.forcing_io` layout) with ``profile_id``, ``lat``,
            ``lon`` and the cell indices ``i_lat``, ``i_lon`` (0-based, north to south).
        covariates: the 60 covariates of SPEC 5 for the kept profiles, or None without EnvInfo.
        report: `ScreeningReport` (profiles in/kept, excluded with reasons, dropped layers).
        grid_shape: (nlat, nlon). files: what was read (name -> path).
    """

    profiles: xr.Dataset
    forcing: xr.Dataset
    covariates: xr.Dataset | None
    report: ScreeningReport
    grid_shape: tuple[int, int]
    files: dict[str, str]

    def summary(self) -> str:
        """Lines: files and grid, kept/read, excluded profiles and dropped layers by reason."""
        rep = self.report
        lines = [
            f"grid {self.grid_shape[0]} x {self.grid_shape[1]} cells, {len(self.files)} files read",
            f"profiles: read {rep.n_profiles_in}, kept {rep.n_profiles_kept}, "
            f"skipped {len(rep.excluded)}",
        ]
        for reason, n in sorted(rep.counts().items()):
            lines.append(f"  skipped {n}: {reason}")
        layers = Counter(r["reason"] for r in rep.dropped_layers)
        lines.append(f"layers dropped: {len(rep.dropped_layers)}")
        for reason, n in sorted(layers.items()):
            lines.append(f"  dropped {n}: {reason}")
        if self.covariates is None:
            lines.append("covariates: no EnvInfo table found (none written)")
        return "\n".join(lines)


def grid_centres(nlat: int, nlon: int) -> tuple[np.ndarray, np.ndarray]:
    """The driver's cell centres: (nlat,) degrees north, north to south; (nlon,) -180..180."""
    dlat, dlon = 180.0 / nlat, 360.0 / nlon
    lat = 90.0 - dlat / 2 - dlat * np.arange(nlat)
    lon = -180.0 + dlon / 2 + dlon * np.arange(nlon)
    return lat, lon


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def _one(pattern: str, what: str) -> str:
    found = sorted(glob.glob(pattern))
    if len(found) != 1:
        how = "no file" if not found else f"{len(found)} files ({', '.join(found)})"
        raise TreeError(f"{what}: {how} matches {pattern}")
    return found[0]


def _forcing_paths(path: str, case: str | None, years: tuple[int, int] | None) -> dict[str, str]:
    folder = os.path.join(path, FORCING_DIR)
    if not os.path.isdir(folder):
        raise TreeError(f"no forcing folder {folder}")
    if case is None or years is None:
        span = "*" if years is None else f"{years[0]}_{years[1]}"
        probe = f"{case or '*'}_cesm2_ss_4da_{span}_*.mat"
        names = (*FORCING_VARIABLES, *OPTIONAL_VARIABLES)
        keys = set()
        for hit in glob.glob(os.path.join(folder, probe)):
            m = re.match(r"(.+)_cesm2_ss_4da_(\d+)_(\d+)_(.+)\.mat$", os.path.basename(hit))
            if m and m[4] in names:
                keys.add((m[1], (int(m[2]), int(m[3]))))
        if len(keys) != 1:
            raise TreeError(
                f"cannot tell the case and years from {folder} ({len(keys)} candidates for "
                f"{probe}): give case= and years="
            )
        case, years = keys.pop()
    prefix = os.path.join(folder, f"{case}_cesm2_ss_4da_{years[0]}_{years[1]}_")
    return {var: f"{prefix}{var}.mat" for var in FORCING_VARIABLES}


def _mat_info(path: str, var: str) -> _Mat:
    if not os.path.isfile(path):
        raise TreeError(f"missing forcing file for {var}: {path}")
    with open(path, "rb") as f:
        head = f.read(128)
    if b"MATLAB 7.3" in head or head.startswith(b"\x89HDF"):
        h5py = _h5py(path)
        with h5py.File(path, "r") as f:
            if MAT_VARIABLE not in f:
                raise TreeError(f"{path} has no variable {MAT_VARIABLE!r}")
            shape = tuple(reversed(f[MAT_VARIABLE].shape))  # HDF5 stores MATLAB's transpose
        return _Mat(path, "v7.3", shape)
    from scipy.io import whosmat

    try:
        found = {name: shape for name, shape, _cls in whosmat(path)}
    except Exception as err:  # noqa: BLE001 - any parse failure is one line for the user
        raise TreeError(f"{path} is not a MATLAB file scipy can read: {err}") from None
    if MAT_VARIABLE not in found:
        raise TreeError(f"{path} has no variable {MAT_VARIABLE!r} (has {sorted(found)})")
    return _Mat(path, "v5", tuple(found[MAT_VARIABLE]))


def _h5py(path: str):
    try:
        import h5py
    except ModuleNotFoundError:
        raise TreeError(
            f"{path} is a MATLAB v7.3 (HDF5) file: reading it needs h5py (pip install h5py)"
        ) from None
    return h5py


def _check_shape(var: str, mat: _Mat, grid: tuple[int, int] | None) -> tuple[int, int]:
    layered = FORCING_VARIABLES[var][2]
    want = "(nlat, nlon, L, 12) with L >= 20" if layered else "(nlat, nlon, 12)"
    s = mat.shape
    ok = len(s) == (4 if layered else 3) and s[-1] == N_MONTHS
    ok = ok and (not layered or s[2] >= N_LAYERS)
    if not ok:
        raise TreeError(f"{mat.path}: {MAT_VARIABLE} has shape {s}, expected {want}")
    if grid is not None and tuple(s[:2]) != grid:
        raise TreeError(f"{mat.path}: grid {s[0]} x {s[1]} differs from the other files' {grid}")
    return (int(s[0]), int(s[1]))


def check_proda_tree(
    path: str | os.PathLike, *, case: str | None = None, years: tuple[int, int] | None = None
) -> tuple[dict[str, str], dict[str, _Mat], tuple[int, int]]:
    """Check the tree before any work: files present, variables present, shapes agree.

    Reads only headers (whosmat / HDF5 metadata). Returns (WoSIS paths, forcing files, grid).

    Raises:
        TreeError: one line naming the file and the problem.
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise TreeError(f"{path} is not a folder")
    wosis = os.path.join(path, WOSIS_DIR)
    files = {
        "soc_profile_info": _one(os.path.join(wosis, "soc_profile*.nc"), "profile table"),
        "data_soc_integrate": _one(os.path.join(wosis, "soc_data_integrate*.nc"), "layer table"),
    }
    env = sorted(glob.glob(os.path.join(wosis, "*env_info*.mat")))
    if env:
        files["EnvInfo"] = env[0]
    mats, grid = {}, None
    for var, p in _forcing_paths(path, case, years).items():
        mats[var] = _mat_info(p, var)
        grid = _check_shape(var, mats[var], grid)
    return files, mats, grid


def _read_cells(mat: _Mat, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """Values at cells (ii, jj): (n, 12) or (n, 20, 12); other cells never kept in memory."""
    layered = len(mat.shape) == 4
    shape = (*mat.shape[:2], *((min(mat.shape[2], N_LAYERS),) if layered else ()), N_MONTHS)
    if mat.kind == "v7.3":
        with _h5py(mat.path).File(mat.path, "r") as f:
            d = f[MAT_VARIABLE]  # (12, [L,] nlon, nlat)
            cells = [np.asarray(d[..., j, i], dtype=float).T for i, j in zip(ii, jj, strict=True)]
        out = np.stack(cells) if cells else np.empty((0, *mat.shape[2:]))
        return out[:, :N_LAYERS] if layered else out
    # flat column-major offsets of (cell, [level,] month) in the (nlat, nlon, [L,] 12) array
    nlat, nlon = mat.shape[:2]
    cell = (np.asarray(ii) + nlat * np.asarray(jj)).reshape(-1, *([1] * (len(shape) - 2)))
    rest = np.indices(shape[2:]).reshape(len(shape) - 2, -1)
    stride = np.cumprod([nlat * nlon, *mat.shape[2:-1]])[: len(shape) - 2]
    flat = cell + (stride[:, None] * rest).sum(0).reshape(shape[2:])
    return _v5_values(mat, flat)


_MI_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8"}
_MI_TYPES[13] = "u8"
_CHUNK = 1 << 22  # bytes decompressed at a time


class _Stream:
    """Bytes of one MATLAB v5 data element, decompressed piece by piece (bounded memory)."""

    def __init__(self, f, nbytes: int, compressed: bool):
        self.f, self.left, self.buf = f, nbytes, b""
        self.z = zlib.decompressobj() if compressed else None

    def chunk(self) -> bytes:
        """The next bytes (at most about `_CHUNK`); b"" at the end."""
        if self.buf:
            out, self.buf = self.buf, b""
            return out
        while True:
            if self.z is not None and self.z.unconsumed_tail:
                out = self.z.decompress(self.z.unconsumed_tail, _CHUNK)
            elif self.left > 0:
                raw = self.f.read(min(self.left, _CHUNK))
                if not raw:
                    return b""
                self.left -= len(raw)
                out = raw if self.z is None else self.z.decompress(raw, _CHUNK)
            else:
                return b"" if self.z is None else self.z.flush()
            if out:
                return out

    def read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            piece = self.chunk()
            if not piece:
                raise TreeError(f"{self.f.name}: truncated MATLAB data element")
            out += piece
        self.buf = out[n:]
        return out[:n]


def _tag(stream: _Stream, endian: str) -> tuple[int, int, bytes]:
    """(type, nbytes, small-element data or b'') of the next tag."""
    raw = stream.read(8)
    first, second = struct.unpack(endian + "II", raw)
    if first >> 16:  # small data element: type, size and up to 4 bytes in 8
        return first & 0xFFFF, first >> 16, raw[4 : 4 + (first >> 16)]
    return first, second, b""


def _v5_values(mat: _Mat, flat: np.ndarray) -> np.ndarray:
    """The values at column-major offsets ``flat`` of the variable, streamed (MATLAB v5/v7)."""
    with open(mat.path, "rb") as f:
        endian = "<" if f.read(128)[126:128] == b"IM" else ">"
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise TreeError(f"{mat.path}: no variable {MAT_VARIABLE!r}")
            mtype, nbytes = struct.unpack(endian + "II", head)
            end = f.tell() + nbytes
            if mtype in (14, 15):
                stream = _Stream(f, nbytes, compressed=mtype == 15)
                if mtype == 15:
                    mtype, _n, _ = _tag(stream, endian)
                if mtype == 14 and _matrix_name(stream, endian, mat) == MAT_VARIABLE:
                    return _pick(stream, endian, flat, mat)
            f.seek(end)


def _matrix_name(stream: _Stream, endian: str, mat: _Mat) -> str:
    for what in ("flags", "dimensions", "name"):
        _type, n, small = _tag(stream, endian)
        data = small or stream.read(n + (-n % 8))[:n]
        if what == "flags" and data[0 if endian == "<" else 3] not in range(6, 16):
            raise TreeError(f"{mat.path}: {MAT_VARIABLE} is not a numeric array")
    return data.decode("ascii", "replace")


def _pick(stream: _Stream, endian: str, flat: np.ndarray, mat: _Mat) -> np.ndarray:
    """Values at the element offsets ``flat`` of the real part that ``stream`` is at."""
    mtype, _n, small = _tag(stream, endian)
    if mtype not in _MI_TYPES:
        raise TreeError(f"{mat.path}: unsupported MATLAB data type {mtype}")
    dtype = np.dtype(endian + _MI_TYPES[mtype])  # MATLAB may store doubles as integers
    size = dtype.itemsize
    order = np.argsort(flat.ravel(), kind="stable")
    want = flat.ravel()[order] * size  # byte offsets, increasing
    out = np.empty(want.size)
    buf, pos, k = small, 0, 0  # buf holds the data bytes from offset pos on
    while k < want.size:
        hi = int(np.searchsorted(want, pos + len(buf) - size, side="right"))
        if hi > k:
            idx = (want[k:hi] - pos)[:, None] + np.arange(size)
            out[order[k:hi]] = np.frombuffer(buf, np.uint8)[idx].copy().view(dtype).ravel()
            k = hi
            if k == want.size:
                break
        if want[k] >= pos + len(buf):
            pos, buf = pos + len(buf), b""
        else:
            buf, pos = buf[want[k] - pos :], int(want[k])
        piece = stream.chunk()
        if not piece:
            raise TreeError(f"{mat.path}: {MAT_VARIABLE} ends before its last value")
        buf += piece
    return out.reshape(flat.shape)


# ---------------------------------------------------------------------------------------------
# Observations
# ---------------------------------------------------------------------------------------------


def _table(path: str, name: str, ncol: int) -> np.ndarray:
    ds = open_netcdf(path, decode_times=False)
    if name not in ds:
        raise TreeError(f"{path}: missing variable {name!r} (SPEC 9 layout)")
    try:
        return _orient(ds[name].values, ncol, name)
    except ValueError as err:
        raise TreeError(f"{path}: {err}") from None


def _observations(files: dict[str, str], wanted, report: ScreeningReport) -> xr.Dataset:
    info = _table(files["soc_profile_info"], "soc_profile_info", 7)
    data = _table(files["data_soc_integrate"], "data_soc_integrate", 9)
    pids = np.asarray([_id_str(x) for x in info[:, 0]], dtype=object)
    lpid = np.asarray([_id_str(x) for x in data[:, 0]], dtype=object)
    rows = np.arange(data.shape[0])
    if wanted is not None:
        wanted = {str(w) for w in wanted}
        pick, lpick = np.isin(pids, list(wanted)), np.isin(lpid, list(wanted))
        info, pids, data, lpid, rows = info[pick], pids[pick], data[lpick], lpid[lpick], rows[lpick]
    computed, bd_used, _ = stock_from_content(data[:, 5], data[:, 7])
    soc = np.where(np.isnan(data[:, 6]), computed, data[:, 6])
    bad = (soc < 0) | np.isinf(soc) | (soc > MAX_SOC)
    for j in np.flatnonzero(bad):
        reason = "negative soc" if soc[j] < 0 else f"soc above {MAX_SOC:g} gC m-3 (non-physical)"
        report.dropped_layers.append(
            {
                "profile_id": str(lpid[j]),
                "row": int(rows[j]),
                "depth_node_m": float(data[j, 4] / 100.0),
                "reason": reason,
            }
        )
    keep = ~bad
    layers = {
        "profile_id": lpid[keep],
        "depth_top": data[keep, 2] / 100.0,
        "depth_bottom": data[keep, 3] / 100.0,
        "depth_node": data[keep, 4] / 100.0,
        "soc": soc[keep],
        "soc_content": data[keep, 5],
        "bulk_density": np.where(np.isnan(data[keep, 7]), bd_used[keep], data[keep, 7]),
        "row": rows[keep],
    }
    ds, _ = screen_layers(
        pids,
        info[:, 4],
        info[:, 3],
        layers,
        report=report,
        depth_unit="cm",
        row_label="data_soc_integrate row {} (0-based)",
    )
    return ds


# ---------------------------------------------------------------------------------------------
# Forcing and covariates
# ---------------------------------------------------------------------------------------------


def _extract(mats: dict[str, _Mat], ii: np.ndarray, jj: np.ndarray) -> dict[str, np.ndarray]:
    """Forcing fields (n, ...) at the cells, one variable file at a time."""
    n = ii.size
    fields = {k: np.empty((n, *shape)) for k, (shape, _, _) in Forcing.field_info().items()}
    for var, (field, pool, layered) in FORCING_VARIABLES.items():
        cells = _read_cells(mats[var], ii, jj)
        value = np.swapaxes(cells, 1, 2) if layered else cells  # (n, 12, 20) or (n, 12)
        if pool is None:
            fields[field][:] = value
        else:
            fields[field][:, pool] = value
    return fields


def _forcing(tree_mats, profiles: xr.Dataset, grid, report) -> tuple[xr.Dataset, np.ndarray]:
    glat, glon = grid_centres(*grid)
    ii, jj = nearest_cell(profiles["lat"].values, profiles["lon"].values, glat, glon)
    fields = _extract(tree_mats, ii, jj)
    ids = profiles["profile_id"].values.astype(str)
    integrated = np.einsum("npml,l->npm", fields["litter_input"], DZ[:N_LAYERS])  # gC m-2 mon-1
    keep = np.ones(ids.size, bool)
    for k in range(ids.size):
        where = f"cell ({ii[k]}, {jj[k]}) at lat {glat[ii[k]]:g}, lon {glon[jj[k]]:g}"
        if np.any(np.isnan(integrated[k, :, 0])):
            reason = "no litter input at the cell"
            detail = f"{where}: NaN in month 1 of the dz-integrated inputs (ocean or no land)"
        else:
            try:
                Forcing(**{f: v[k] for f, v in fields.items()}).validate(f"profile {ids[k]}")
                continue
            except ValueError as err:
                reason, detail = "invalid forcing at the cell", f"{where}: {err}"
        keep[k] = False
        report.excluded.append({"profile_id": str(ids[k]), "reason": reason, "detail": detail})
    forcing = Forcing(**{f: v[keep] for f, v in fields.items()})
    ds = forcing_to_dataset(
        forcing,
        profile_id=ids[keep].astype(object),
        lat=profiles["lat"].values[keep],
        lon=profiles["lon"].values[keep],
        i_lat=ii[keep],
        i_lon=jj[keep],
    )
    ds["i_lat"].attrs.update(long_name="0-based latitude index of the cell (north to south)")
    ds["i_lon"].attrs.update(long_name="0-based longitude index of the cell (from -180)")
    return ds, keep


def _covariates(path: str, ids: np.ndarray) -> xr.Dataset:
    from scipy.io import loadmat

    raw = loadmat(path)
    name = next((k for k in ("EnvInfo", "profile_env_info") if k in raw), None)
    if name is None:
        raise TreeError(f"{path}: no EnvInfo (or profile_env_info) table")
    table = np.asarray(raw[name], dtype=float)
    if table.ndim != 2 or table.shape[1] not in (80, 81):
        raise TreeError(f"{path}: {name} has shape {table.shape}, expected (n, 80) or (n, 81)")
    col = {c: k for k, c in enumerate(ENV_INFO_COLUMNS)}
    row_of = {_id_str(x): r for r, x in enumerate(table[:, col["ProfileID"]])}
    missing = [p for p in ids if p not in row_of]
    if missing:
        raise TreeError(f"{path}: no {name} row for profile_id {missing[0]} ({len(missing)} such)")
    rows = np.asarray([row_of[p] for p in ids], dtype=int)
    values = table[np.ix_(rows, [col[c] for c in COVARIATE_NAMES])]
    ds = covariates_dataset(values, profile_id=ids.astype(object))
    ds.attrs["title"] = "the 60 PRODA covariates of the profiles (from EnvInfo)"
    ds.attrs["source"] = f"PRODA tree, {os.path.basename(path)}"
    return ds


def load_proda_tree(
    path: str | os.PathLike,
    *,
    case: str | None = None,
    years: tuple[int, int] | None = None,
    profiles=None,
) -> ProdaTree:
    """Read PRODA's input tree (module docstring) into profiles, forcing and covariates.

    Args:
        path: the data folder (holding ``wosis_2019_snap_shot`` and ``cesm2_simu``).
        case: CESM2 case name of the forcing files, e.g. ``"sasu_f05_g16_checked_step4"``;
            None: the only case present. years: (first, last) year of the climatology, e.g.
            (661, 680); None: the only one present.
        profiles: profile ids to read (None: all); others are not read or reported.

    Returns:
        `ProdaTree`. Profiles left out are in ``report.excluded`` with a reason; layers left out
        in ``report.dropped_layers``.

    Raises:
        TreeError: before any data is read, for a missing file or variable or a wrong shape;
            after, if no profile is left (naming the reasons).
    """
    files, mats, grid = check_proda_tree(path, case=case, years=years)
    report = ScreeningReport()
    obs = _observations(files, profiles, report)
    if obs.sizes["profile"] == 0:
        raise TreeError(f"no profile left in {os.fspath(path)}: {report.summary()}")
    forcing, keep = _forcing(mats, obs, grid, report)
    obs = obs.isel(profile=np.flatnonzero(keep)).assign_coords(profile=np.arange(keep.sum()))
    report.n_profiles_kept = int(keep.sum())
    if report.n_profiles_kept == 0:
        raise TreeError(f"no profile left in {os.fspath(path)}: {report.summary()}")
    ids = obs["profile_id"].values.astype(str)
    cov = _covariates(files["EnvInfo"], ids) if "EnvInfo" in files else None
    obs.attrs["source"] = f"PRODA tree {os.fspath(path)}"
    forcing.attrs["source"] = f"PRODA tree {os.fspath(path)}, case {case or 'as found'}"
    files.update({var: m.path for var, m in mats.items()})
    return ProdaTree(obs, forcing, cov, report, grid, files)


# ---------------------------------------------------------------------------------------------
# Writer (tests, docs): a tree in exactly the authors' layout
# ---------------------------------------------------------------------------------------------


def _write_mat(path: str, value: np.ndarray, fmt: str) -> None:
    if fmt == "v5":
        from scipy.io import savemat

        savemat(path, {MAT_VARIABLE: value}, do_compression=True)  # MATLAB's default -v7
        return
    h5py = _h5py(path)
    with h5py.File(path, "w", userblock_size=512) as f:
        d = f.create_dataset(MAT_VARIABLE, data=np.asarray(value, float).T)  # column-major
        d.attrs["MATLAB_class"] = np.bytes_("double")
    head = b"MATLAB 7.3 MAT-file, written by soc_jax (HDF5 schema 1.00)".ljust(116)
    with open(path, "r+b") as f:
        f.write(head + b"\x00" * 8 + b"\x00\x02IM")


def write_proda_tree(
    path: str | os.PathLike,
    fields: dict[str, np.ndarray],
    info: np.ndarray,
    layers: np.ndarray,
    *,
    case: str = DEFAULT_CASE,
    years: tuple[int, int] = DEFAULT_YEARS,
    fmt: str = "v5",
    env_info: np.ndarray | None = None,
    tag: str = "wosis_2019_snapshot_hugelius_mishra",
) -> dict[str, str]:
    """Write a tree in the authors' layout (module docstring).

    Args:
        path: data folder to create.
        fields: VAR -> ``var_record_monthly_mean`` in MATLAB order ((nlat, nlon, 12) or
            (nlat, nlon, L, 12), latitude north to south); any subset (tests leave some out).
        info: (n, 7) ``soc_profile_info`` rows. layers: (m, 9) ``data_soc_integrate`` rows.
        case, years: name parts of the forcing files. fmt: ``"v5"`` (MATLAB -v7, compressed)
            or ``"v7.3"`` (HDF5, needs h5py).
        env_info: optional (n, 80) ``EnvInfo`` table (`ENV_INFO_COLUMNS`).
        tag: name part of the WoSIS files.

    Returns:
        name -> path of every file written.
    """
    path = os.fspath(path)
    wosis = os.path.join(path, WOSIS_DIR)
    folder = os.path.join(path, FORCING_DIR)
    os.makedirs(wosis, exist_ok=True)
    os.makedirs(folder, exist_ok=True)
    out = {
        "soc_profile_info": os.path.join(wosis, f"soc_profile_{tag}.nc"),
        "data_soc_integrate": os.path.join(wosis, f"soc_data_integrate_{tag}.nc"),
    }
    for key, table, ncol, dim in (
        ("soc_profile_info", info, 7, "n_profile"),
        ("data_soc_integrate", layers, 9, "n_layer"),
    ):
        table = np.asarray(table, float).reshape(-1, ncol)
        ds = xr.Dataset({key: (("n_col", dim), table.T)})  # as MATLAB's ncwrite lays it out
        ds.to_netcdf(out[key])
    for var, value in fields.items():
        p = os.path.join(folder, f"{case}_cesm2_ss_4da_{years[0]}_{years[1]}_{var}.mat")
        _write_mat(p, np.asarray(value, float), fmt)
        out[var] = p
    if env_info is not None:
        from scipy.io import savemat

        out["EnvInfo"] = os.path.join(wosis, f"{tag}_env_info.mat")
        savemat(out["EnvInfo"], {"EnvInfo": np.asarray(env_info, float)}, do_compression=True)
    return out


def world_tree_arrays(
    world, shape: tuple[int, int] = (20, 30), *, levels: int = 25, lon360: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """The arrays of a tree holding a synthetic `World` (for `write_proda_tree`).

    Each site's forcing fills its cell (driver rule); where sites share a cell the first site's
    forcing is the cell's. Cells without a site are NaN (ocean). Per-layer fields get ``levels``
    levels, NaN below 20; litter inputs 20. Profile ids become 1, 2, ... (the tables are
    numeric); ``lon360`` writes longitudes in 0..360.

    Returns:
        ``(fields, info, layers, env_info)``.
    """
    nlat, nlon = shape
    glat, glon = grid_centres(nlat, nlon)
    prof = world.profiles
    ii, jj = nearest_cell(prof["lat"].values, prof["lon"].values, glat, glon)
    f = world.forcing_batch().as_numpy()
    fields = {}
    for var, (field, pool, layered) in FORCING_VARIABLES.items():
        nlev = (N_LAYERS if pool is not None else levels) if layered else 0
        arr = np.full((nlat, nlon, *((nlev,) if layered else ()), N_MONTHS), np.nan)
        for k in range(ii.size)[::-1]:  # the first site of a cell is written last
            value = f[field][k] if pool is None else f[field][k, pool]
            if layered:
                arr[ii[k], jj[k], :N_LAYERS] = value.T
            else:
                arr[ii[k], jj[k]] = value
        fields[var] = arr
    n = ii.size
    lon = prof["lon"].values % 360.0 if lon360 else prof["lon"].values
    info = np.column_stack(
        [np.arange(1, n + 1), np.zeros(n), np.full(n, np.nan), lon, prof["lat"].values,
         prof["n_layers"].values, np.full(n, 2019.0)]
    )  # fmt: skip
    rows = []
    for k in range(n):
        m = prof["mask"].values[k]
        cols = [prof[v].values[k, m] for v in ("depth_top", "depth_bottom", "depth_node")]
        soc = prof["soc"].values[k, m]
        for t, b, z, s, c, bd in zip(
            *cols,
            soc,
            prof["soc_content"].values[k, m],
            prof["bulk_density"].values[k, m],
            strict=True,
        ):
            rows.append([k + 1, 2019.0, 100 * t, 100 * b, 100 * z, c, s, bd, 0.0])
    env = np.full((n, len(ENV_INFO_COLUMNS)), np.nan)
    env[:, 0] = np.arange(1, n + 1)
    env[:, 1] = np.arange(1, n + 1)
    cov = world.covariates["covariates"].transpose("profile", "covariate").values
    for c, name in enumerate(COVARIATE_NAMES):
        env[:, ENV_INFO_COLUMNS.index(name)] = cov[:, c]
    return fields, info, np.asarray(rows, float), env
