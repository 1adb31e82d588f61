"""Writing a tree in the authors' exact layout (tests, docs, synthetic worlds)."""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from ...forcing import N_MONTHS
from ...grid import N_LAYERS
from ..covariates import COVARIATE_NAMES, nearest_cell
from ._matfile import _write_mat
from .reader import (
    DEFAULT_CASE,
    DEFAULT_YEARS,
    ENV_INFO_COLUMNS,
    FORCING_DIR,
    FORCING_VARIABLES,
    WOSIS_DIR,
    grid_centres,
)


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
