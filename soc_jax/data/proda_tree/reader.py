"""Reading PRODA's tree (see the package docstring)."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections import Counter

import numpy as np
import xarray as xr

from ...forcing import N_MONTHS, Forcing
from ...grid import DZ, N_LAYERS
from ..covariates import COVARIATE_NAMES, covariates_dataset, nearest_cell
from ..forcing_io import forcing_to_dataset
from ..loaders import ScreeningReport, _id_str, _orient, screen_layers, stock_from_content
from ..netcdf import open_netcdf
from ._matfile import MAT_VARIABLE, TreeError, _Mat, _mat_info, _read_cells

DEFAULT_CASE = "sasu_f05_g16_checked_step4"
DEFAULT_YEARS = (661, 680)
WOSIS_DIR = "wosis_2019_snap_shot"
FORCING_DIR = os.path.join("cesm2_simu", "spinup_ss")
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
