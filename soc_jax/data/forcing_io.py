"""`Forcing` <-> xarray Dataset with dims (profile, month, layer) and NetCDF I/O.

Every `Forcing` field becomes a variable with its unit and long name (`Forcing.field_info`):
monthly per-layer fields (profile, month, layer), monthly scalars (profile, month) and the litter
inputs (profile, litter_pool, month, layer). The round trip is exact (float64 on disk).
"""

from __future__ import annotations

import os

import numpy as np
import xarray as xr

from ..forcing import N_LITTER_INPUTS, N_MONTHS, Forcing
from ..grid import N_LAYERS, ZSOI
from .netcdf import open_netcdf, write_netcdf

__all__ = [
    "LITTER_POOLS",
    "forcing_to_dataset",
    "dataset_to_forcing",
    "write_forcing",
    "read_forcing",
]

LITTER_POOLS: tuple[str, ...] = ("cwd", "metabolic", "cellulose", "lignin")
_DIMS = {2: ("month", "layer"), 1: ("month",), 3: ("litter_pool", "month", "layer")}


def forcing_to_dataset(forcing: Forcing, dim: str = "profile", **coords) -> xr.Dataset:
    """A batched `Forcing` as a Dataset.

    Args:
        forcing: `Forcing` with one leading batch axis (n profiles).
        dim: name of the batch dimension (``"profile"`` or ``"cell"``).
        **coords: extra coordinates along ``dim`` (e.g. ``lat=..., lon=...``).

    Returns:
        Dataset with one variable per field, coordinates month (1..12), layer (0..19) with
        ``depth_node`` (m) and litter_pool names.
    """
    if len(forcing.batch_shape) != 1:
        raise ValueError(f"forcing needs one batch axis, got batch shape {forcing.batch_shape}")
    n = forcing.batch_shape[0]
    arrays = forcing.as_numpy()
    data = {}
    for key, (shape, unit, long_name) in Forcing.field_info().items():
        var = xr.Variable(
            (dim, *_DIMS[len(shape)]), arrays[key], attrs={"units": unit, "long_name": long_name}
        )
        data[key] = var
    return xr.Dataset(
        data,
        coords={
            dim: np.arange(n),
            "month": np.arange(1, N_MONTHS + 1),
            "layer": np.arange(N_LAYERS),
            "depth_node": ("layer", ZSOI[:N_LAYERS], {"units": "m", "long_name": "node depth"}),
            "litter_pool": np.asarray(LITTER_POOLS, dtype=object),
            **{k: (dim, np.asarray(v)) for k, v in coords.items()},
        },
        attrs={"title": "soc_jax forcing (SPEC 4 monthly climatology)"},
    )


def dataset_to_forcing(ds: xr.Dataset, dim: str = "profile") -> Forcing:
    """The `Forcing` (numpy float64 leaves, leading axis ``dim``) stored in a Dataset.

    Raises:
        ValueError: naming the missing variable or a wrong shape.
    """
    fields = {}
    for key, (shape, _unit, _long) in Forcing.field_info().items():
        if key not in ds:
            raise ValueError(f"forcing Dataset lacks variable {key!r}")
        arr = ds[key].transpose(dim, *_DIMS[len(shape)]).values.astype(float)
        if arr.shape[1:] != shape:
            raise ValueError(
                f"forcing variable {key!r} has shape {arr.shape[1:]} per {dim}, expected {shape}"
            )
        fields[key] = arr
    if fields["litter_input"].shape[1] != N_LITTER_INPUTS:
        raise ValueError("litter_input must have 4 litter pools")
    return Forcing(**fields)


def write_forcing(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write a forcing Dataset to NetCDF4 (float64, uncompressed: fast and exact).

    CF global attributes are completed in place (`soc_jax.data.netcdf.write_netcdf`).
    """
    write_netcdf(ds, path)


def read_forcing(path: str | os.PathLike) -> xr.Dataset:
    """Read a forcing Dataset (loaded into memory, file closed; one-line error if missing)."""
    return open_netcdf(path)
