"""Every NetCDF file soc_jax writes or reads goes through here: CF attributes and clear errors.

One home for the CF (Climate and Forecast, https://cfconventions.org) attributes of outputs, so
that every command (quickstart, synth, calibrate, train, predict) writes complete files:

- `write_netcdf` completes a Dataset (`complete`) and writes it; it refuses a Dataset that still
  breaks a rule of `cf_problems` (a bug in the writer, not a user error);
- `complete` adds the global attributes (``Conventions = "CF-1.10"``, ``title``, ``source``,
  ``history``) and the ``units``/``long_name`` of the coordinates soc_jax uses everywhere
  (`COORDINATES`: lat, lon, profile, cell, layer, month, parameter, ...), never overwriting;
- `flag_attrs` gives a flag variable its ``flag_values`` and ``flag_meanings``;
- `depth_coords` gives the model grid's node depths with ``depth_bnds`` and layer thickness;
- `open_netcdf` reads a file; a missing or unreadable file is one ``FileNotFoundError`` or
  ``ValueError`` naming the file (no xarray traceback).

A writer that adds a new output::

    from soc_jax.data.netcdf import flag_attrs, write_netcdf
    ds["status"] = ("profile", flags, flag_attrs({0: "ok", 1: "prior violated"}, "status"))
    write_netcdf(ds, out / "calibration.nc", title="soc_jax calibration of CLM5")
"""

from __future__ import annotations

import datetime
import errno
import os
import sys
from collections.abc import Mapping

import numpy as np
import xarray as xr

import soc_jax._version as _version

__all__ = [
    "CONVENTIONS",
    "COORDINATES",
    "cf_problems",
    "complete",
    "depth_coords",
    "flag_attrs",
    "history_line",
    "open_netcdf",
    "write_netcdf",
]

CONVENTIONS = "CF-1.10"

# name -> attributes of the coordinates (and index variables) soc_jax writes.
COORDINATES: dict[str, dict[str, str]] = {
    "lat": {"units": "degrees_north", "long_name": "latitude", "standard_name": "latitude"},
    "lon": {"units": "degrees_east", "long_name": "longitude", "standard_name": "longitude"},
    "grid_lat": {
        "units": "degrees_north",
        "long_name": "latitude of the grid rows",
        "standard_name": "latitude",
    },
    "grid_lon": {
        "units": "degrees_east",
        "long_name": "longitude of the grid columns",
        "standard_name": "longitude",
    },
    "profile": {"units": "1", "long_name": "profile (site) index, 0-based"},
    "cell": {"units": "1", "long_name": "land grid cell index, 0-based"},
    "layer": {"units": "1", "long_name": "layer index, 0-based from the surface"},
    "node": {"units": "1", "long_name": "model layer index, 0-based from the surface"},
    "month": {"units": "1", "long_name": "month of the year (1 = January)"},
    "i_lat": {"units": "1", "long_name": "row of the cell in grid_lat, 0-based"},
    "i_lon": {"units": "1", "long_name": "column of the cell in grid_lon, 0-based"},
    "profile_id": {"long_name": "profile identifier"},
    "parameter": {"long_name": "parameter name"},
    "covariate": {"long_name": "covariate name"},
    "unit": {"long_name": "unit of the parameter or covariate"},
    "feature": {"long_name": "feature of the climate and soil state"},
    "litter_pool": {"long_name": "litter pool name"},
    "depth_node": {"units": "m", "long_name": "depth of the layer node", "positive": "down"},
    "depth_model": {"units": "m", "long_name": "depth of the model layer node", "positive": "down"},
}


def history_line(command: str | None = None) -> str:
    """``"2026-11-21T18:40:00Z soc_jax 0.1.0: soc-jax synth --n-sites 300"`` (UTC, ISO 8601).

    The time is now, or ``SOURCE_DATE_EPOCH`` (seconds since 1970, the reproducible-builds
    convention) when that environment variable is set: then the same run writes the same bytes.

    Args:
        command: what produced the file; default the ``soc-jax`` command line when the CLI runs
            (`soc_jax._version.command_line`), else this process's command line.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = (
        datetime.datetime.fromtimestamp(int(epoch), datetime.UTC)
        if epoch
        else datetime.datetime.now(datetime.UTC)
    )
    if command is None:
        command = _version.command_line or "Python: " + " ".join(
            [os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
        )
    return f"{when.strftime('%Y-%m-%dT%H:%M:%SZ')} soc_jax {_version.__version__}: {command}"


def flag_attrs(meanings: Mapping[int, str], long_name: str) -> dict:
    """CF attributes of a flag variable.

    Args:
        meanings: value -> meaning, e.g. ``{0: "failed", 1: "valid"}``; spaces in a meaning
            become underscores (CF separates meanings by blanks).
        long_name: what the flag says.

    Returns:
        ``{"long_name", "flag_values", "flag_meanings"}``; store the variable as int8 or int32.
    """
    values = np.asarray(sorted(meanings), dtype=np.int32)
    words = ["_".join(str(meanings[int(v)]).split()) for v in values]
    return {"long_name": long_name, "flag_values": values, "flag_meanings": " ".join(words)}


def depth_coords(n_layers: int = 20, dim: str = "layer") -> dict:
    """Coordinates of the model's layers: node depth, ``depth_bnds`` and thickness (m).

    Returns:
        ``{"depth": ..., "depth_bnds": ..., "layer_thickness": ...}`` ready for
        ``Dataset.assign_coords``; ``depth`` has ``bounds = "depth_bnds"`` (CF 7.1).
    """
    from soc_jax.grid import DZ, ZISOI, ZSOI

    top = np.concatenate([[0.0], ZISOI[: n_layers - 1]])
    bnds = np.stack([top, ZISOI[:n_layers]], axis=1)
    return {
        "depth": (
            dim,
            ZSOI[:n_layers],
            {
                "units": "m",
                "long_name": "depth of the layer node",
                "standard_name": "depth",
                "positive": "down",
                "axis": "Z",
                "bounds": "depth_bnds",
            },
        ),
        "depth_bnds": (
            (dim, "nv"),
            bnds,
            {"units": "m", "long_name": "depth of the layer's upper and lower boundary"},
        ),
        "layer_thickness": (
            dim,
            DZ[:n_layers],
            {"units": "m", "long_name": "layer thickness (CLM5 dz)"},
        ),
    }


def complete(
    ds: xr.Dataset,
    *,
    title: str | None = None,
    source: str | None = None,
    history: str | None = None,
) -> xr.Dataset:
    """Add the CF global attributes and the attributes of known coordinates (never overwrites).

    Args:
        ds: the Dataset to write (changed in place and returned).
        title: short description of the file (required if ``ds`` has none).
        source: how the data were produced; default ``"soc_jax <version>"`` (prefixed to an
            existing ``source``).
        history: a line to append to ``history``; default `history_line()`.

    Returns:
        ``ds``.
    """
    attrs = ds.attrs
    attrs["Conventions"] = CONVENTIONS
    if title is not None:
        attrs["title"] = title
    package = f"soc_jax {_version.__version__}"
    if source is not None:
        attrs["source"] = source
    elif package not in str(attrs.get("source", "")):
        attrs["source"] = "; ".join(s for s in (package, attrs.get("source")) if s)
    line = history if history is not None else history_line()
    old = str(attrs.get("history", "")).strip()
    attrs["history"] = f"{old}\n{line}" if old else line
    for name, known in COORDINATES.items():
        if name in ds.variables:
            for key, value in known.items():
                ds[name].attrs.setdefault(key, value)
    return ds


def _needs_units(var: xr.Variable) -> bool:
    return var.dtype.kind in "iuf" and "flag_values" not in var.attrs


def cf_problems(ds: xr.Dataset) -> list[str]:
    """The CF attributes a Dataset still lacks (empty list: complete).

    Checked: global ``Conventions`` (CF-...), ``title``, ``source``, ``history``; every
    variable and coordinate has a ``long_name`` or ``standard_name``; every numeric one that is
    not a flag or a boundary variable has ``units``; lat/lon in degrees_north/degrees_east;
    flags have as many ``flag_meanings`` as ``flag_values`` and hold only those values; a
    ``bounds`` attribute names an existing variable.
    """
    out = []
    if not str(ds.attrs.get("Conventions", "")).startswith("CF-"):
        out.append("global attribute Conventions (CF-...) missing")
    for key in ("title", "source", "history"):
        if not str(ds.attrs.get(key, "")).strip():
            out.append(f"global attribute {key!r} missing")
    # a boundary variable takes the units of its coordinate (CF 7.1; xarray drops them on write)
    bounds = {str(v.attrs["bounds"]) for v in ds.variables.values() if "bounds" in v.attrs}
    for name, var in ds.variables.items():
        a = var.attrs
        if not (a.get("long_name") or a.get("standard_name")):
            out.append(f"{name}: no long_name")
        if _needs_units(var) and "units" not in a and name not in bounds:
            out.append(f"{name}: no units")
        if "flag_values" in a:
            n_meanings = len(str(a.get("flag_meanings", "")).split())
            values = np.atleast_1d(a["flag_values"])
            if n_meanings != values.size:
                out.append(f"{name}: {values.size} flag_values but {n_meanings} flag_meanings")
            present = np.unique(np.asarray(var.values)[np.isfinite(var.values)])
            if not np.isin(present, values).all():
                out.append(f"{name}: values {present.tolist()} outside flag_values")
        if "bounds" in a and a["bounds"] not in ds.variables:
            out.append(f"{name}: bounds variable {a['bounds']!r} missing")
    for name, unit in (("lat", "degrees_north"), ("lon", "degrees_east")):
        if name in ds.variables and ds[name].attrs.get("units") != unit:
            out.append(f"{name}: units must be {unit!r}")
    return out


def write_netcdf(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    title: str | None = None,
    source: str | None = None,
    history: str | None = None,
    **to_netcdf_kwargs,
) -> None:
    """Complete the CF attributes of ``ds`` (`complete`), check them and write NetCDF4.

    Args:
        ds: the Dataset (its attributes are completed in place).
        path: the file to write.
        title, source, history: see `complete`.
        **to_netcdf_kwargs: passed to ``Dataset.to_netcdf`` (e.g. ``encoding``).

    Raises:
        RuntimeError: if the Dataset still lacks CF attributes (a bug in the writer).
    """
    complete(ds, title=title, source=source, history=history)
    problems = cf_problems(ds)
    if problems:
        raise RuntimeError(f"{os.fspath(path)}: not CF-complete: {'; '.join(problems)}")
    to_netcdf_kwargs.setdefault("engine", "netcdf4")
    to_netcdf_kwargs.setdefault("format", "NETCDF4")
    ds.to_netcdf(path, **to_netcdf_kwargs)


def require_file(path: str | os.PathLike) -> None:
    """Raise a one-line ``FileNotFoundError`` naming ``path`` unless it is an existing file."""
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "no such file", os.fspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "a folder, not a file", os.fspath(path))


def open_netcdf(path: str | os.PathLike, **kwargs) -> xr.Dataset:
    """Read a whole NetCDF file into memory (the file is closed on return).

    Raises:
        FileNotFoundError: ``path`` does not exist (one line naming it).
        ValueError: ``path`` is not a NetCDF file xarray can read (one line naming it).
    """
    require_file(path)
    kwargs.setdefault("engine", "netcdf4")
    try:
        f = xr.open_dataset(path, **kwargs)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{os.fspath(path)}: cannot read it as NetCDF ({reason})") from None
    with f:
        return f.load()
