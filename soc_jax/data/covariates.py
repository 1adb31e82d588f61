"""The 60 environmental covariates of PRODA's network (SPEC 5), scaling and grid lookup.

Covariates live in a Dataset with dims (profile, covariate) (or (cell, covariate) on a grid),
variable ``covariates`` and coordinate ``covariate`` holding `COVARIATE_NAMES` in order.
Scaling follows PRODA: min-max with the **grid's** (min, max) of each column, then clipped to
[0, 1]; categorical codes are scaled like the rest (no one-hot).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from jaxtyping import ArrayLike

__all__ = [
    "COVARIATE_NAMES",
    "COVARIATE_UNITS",
    "N_COVARIATES",
    "covariate_bounds",
    "covariate_matrix",
    "minmax_scale",
    "scale_covariates",
    "nearest_cell",
    "covariates_dataset",
]

_DEPTHS = ("0cm", "30cm", "100cm")
COVARIATE_NAMES: tuple[str, ...] = (
    "Lon",
    "Lat",
    "ESA_Land_Cover",
    *(f"BIO{i}" for i in range(1, 20)),
    "Abs_Depth_to_Bedrock",
    *(f"Bulk_Density_{d}" for d in _DEPTHS),
    *(f"CEC_{d}" for d in _DEPTHS),
    *(f"Clay_Content_{d}" for d in _DEPTHS),
    *(f"Coarse_Fragments_v_{d}" for d in _DEPTHS),
    "Garde_Acid",
    "Occurrence_R_Horizon",
    *(f"pH_Water_{d}" for d in _DEPTHS),
    *(f"Sand_Content_{d}" for d in _DEPTHS),
    *(f"Silt_Content_{d}" for d in _DEPTHS),
    *(f"SWC_v_Wilting_Point_{d}" for d in _DEPTHS),
    *(f"Texture_USDA_{d}" for d in _DEPTHS),
    "USDA_Suborder",
    "WRB_Subgroup",
    "Elevation",
    "Koppen_Climate_2018",
    "cesm2_npp",
    "cesm2_npp_std",
    "cesm2_vegc",
    "nbedrock",
)
"""The 60 covariate names of SPEC 5, in the order PRODA's network reads them."""
N_COVARIATES: int = len(COVARIATE_NAMES)

_BIO_UNITS = {
    1: "degC",
    2: "degC",
    3: "%",
    4: "degC x 100",
    **{i: "degC" for i in range(5, 12)},
    12: "mm",
    13: "mm",
    14: "mm",
    15: "%",
    **{i: "mm" for i in range(16, 20)},
}


def _unit(name: str) -> str:
    if name.startswith("BIO"):
        return _BIO_UNITS[int(name[3:])]
    for prefix, unit in (
        ("Lon", "degrees_east"),
        ("Lat", "degrees_north"),
        ("Abs_Depth", "cm"),
        ("Bulk_Density", "g cm-3"),
        ("CEC", "cmol kg-1"),
        ("Clay", "%"),
        ("Sand", "%"),
        ("Silt", "%"),
        ("Coarse", "% (volume)"),
        ("pH", "-"),
        ("SWC", "% (volume)"),
        ("Occurrence_R", "%"),
        ("Elevation", "m"),
        ("cesm2_npp", "gC m-2 s-1"),
        ("cesm2_vegc", "gC m-2"),
        ("nbedrock", "layer index"),
    ):
        if name.startswith(prefix):
            return unit
    return "category code"


COVARIATE_UNITS: dict[str, str] = {name: _unit(name) for name in COVARIATE_NAMES}
"""Unit of each covariate (categorical ones: ``"category code"``)."""


def covariates_dataset(values: ArrayLike, dim: str = "profile", **coords) -> xr.Dataset:
    """Wrap an (n, 60) array into a covariates Dataset.

    Args:
        values: (n, 60) covariate values in `COVARIATE_NAMES` order and `COVARIATE_UNITS`.
        dim: name of the first dimension (``"profile"`` or ``"cell"``).
        **coords: extra coordinates along ``dim`` (e.g. ``profile_id=...``).

    Returns:
        Dataset with variable ``covariates`` (dim, covariate) and coordinates ``covariate``
        (names) and ``unit``.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] != N_COVARIATES:
        raise ValueError(f"covariates must have shape (n, {N_COVARIATES}), got {values.shape}")
    ds = xr.Dataset(
        {"covariates": ((dim, "covariate"), values)},
        coords={
            dim: np.arange(values.shape[0]),
            "covariate": np.asarray(COVARIATE_NAMES, dtype=object),
            "unit": (
                "covariate",
                np.asarray([COVARIATE_UNITS[c] for c in COVARIATE_NAMES], dtype=object),
            ),
            **{k: (dim, np.asarray(v)) for k, v in coords.items()},
        },
    )
    ds["covariates"].attrs.update(long_name="environmental covariates (SPEC 5)", units="see unit")
    return ds


def covariate_matrix(cov: xr.Dataset | ArrayLike) -> np.ndarray:
    """The covariates as a float matrix, columns in `COVARIATE_NAMES` order.

    Args:
        cov: a covariates Dataset (variable ``covariates`` over ``(..., covariate)``; its columns
            are reordered to `COVARIATE_NAMES`) or an array already in that order (units of
            `COVARIATE_UNITS`).

    Returns:
        (..., N_COVARIATES) float array, in `COVARIATE_UNITS`.

    Raises:
        ValueError: a Dataset lacks one of `COVARIATE_NAMES`.
    """
    if isinstance(cov, xr.Dataset):
        names = [str(c) for c in cov["covariate"].values]
        if names != list(COVARIATE_NAMES):
            missing = [c for c in COVARIATE_NAMES if c not in names]
            if missing:
                raise ValueError(f"covariates missing: {missing}")
            cov = cov.sel(covariate=list(COVARIATE_NAMES))
        return np.asarray(cov["covariates"].values, dtype=float)
    return np.asarray(cov, dtype=float)


def covariate_bounds(grid: xr.Dataset | ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (min, max) over the grid cells, ignoring NaN.

    Args:
        grid: covariates Dataset of the grid or an (n_cells, 60) array.

    Returns:
        ``(vmin, vmax)``, each (60,).
    """
    x = covariate_matrix(grid)
    return np.nanmin(x, axis=0), np.nanmax(x, axis=0)


def minmax_scale(
    values: ArrayLike, vmin: ArrayLike, vmax: ArrayLike, clip: bool = True
) -> np.ndarray:
    """PRODA's scaling: ``(x - min) / (max - min)``, clipped to [0, 1].

    A constant column (``max == min``) scales to 0. NaN stays NaN.

    Args:
        values: (..., k) values.
        vmin: (k,) column minima (from the grid).
        vmax: (k,) column maxima (from the grid).
        clip: clip to [0, 1] (values outside the grid's range).

    Returns:
        (..., k) scaled values in [0, 1].
    """
    x = np.asarray(values, dtype=float)
    lo = np.asarray(vmin, dtype=float)
    span = np.asarray(vmax, dtype=float) - lo
    safe = np.where(span > 0, span, 1.0)
    scaled = np.where(span > 0, (x - lo) / safe, 0.0)
    scaled = np.where(np.isnan(x), np.nan, scaled)
    return np.clip(scaled, 0.0, 1.0) if clip else scaled


def scale_covariates(cov: xr.Dataset | ArrayLike, grid: xr.Dataset | ArrayLike) -> np.ndarray:
    """Scale profile covariates with the grid's bounds (`covariate_bounds` + `minmax_scale`).

    Returns:
        (n_profiles, 60) in [0, 1].
    """
    lo, hi = covariate_bounds(grid)
    return minmax_scale(covariate_matrix(cov), lo, hi)


def nearest_cell(
    lat: ArrayLike, lon: ArrayLike, grid_lat: Sequence[float], grid_lon: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest grid cell centre in latitude and longitude separately (SPEC 1.11).

    ``i = argmin |lat - grid_lat|`` and ``j = argmin |lon - grid_lon|``; ties take the first
    index (MATLAB's ``find(... == min)`` then first). If the grid's longitudes run 0..360 and a
    profile longitude is negative, it is shifted by +360 first (and conversely).

    Args:
        lat: (n,) profile latitudes, degrees north.
        lon: (n,) profile longitudes, degrees east.
        grid_lat: (n_lat,) cell-centre latitudes (any order, e.g. north to south).
        grid_lon: (n_lon,) cell-centre longitudes.

    Returns:
        ``(i_lat, i_lon)``, integer index arrays of shape (n,).
    """
    lat = np.atleast_1d(np.asarray(lat, dtype=float))
    lon = np.atleast_1d(np.asarray(lon, dtype=float)).copy()
    glat = np.asarray(grid_lat, dtype=float)
    glon = np.asarray(grid_lon, dtype=float)
    if glon.max() > 180.0:
        lon = np.where(lon < 0, lon + 360.0, lon)
    elif glon.min() < 0.0:
        lon = np.where(lon > 180.0, lon - 360.0, lon)
    i = np.argmin(np.abs(lat[:, None] - glat[None, :]), axis=1)
    j = np.argmin(np.abs(lon[:, None] - glon[None, :]), axis=1)
    return i, j
