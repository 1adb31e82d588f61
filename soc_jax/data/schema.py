"""The observed-profile schema: an xarray Dataset with dims (profile, layer), padded with a mask.

Variables (CF-style ``units`` and ``long_name`` attributes on each):

==================  ==================  ========  ==============================================
name                dims                units     meaning
==================  ==================  ========  ==============================================
profile_id          (profile)           -         unique identifier (string)
lat, lon            (profile)           degrees   latitude (-90..90), longitude (-180..360)
n_layers            (profile)           1         number of valid layers
mask                (profile, layer)    -         True for a valid layer (valid layers first)
depth_top           (profile, layer)    m         upper boundary of the layer
depth_bottom        (profile, layer)    m         lower boundary of the layer
depth_node          (profile, layer)    m         depth at which the value is compared (SPEC 1.11)
soc                 (profile, layer)    gC m-3    soil organic carbon density (stock per volume)
soc_content         (profile, layer)    g C kg-1  optional: SOC mass fraction of fine earth
bulk_density        (profile, layer)    g cm-3    optional: bulk density of fine earth
coarse_fragments    (profile, layer)    %         optional: volumetric coarse-fragment content
==================  ==================  ========  ==============================================

Padded entries hold NaN (``mask`` False). `validate_profiles` checks the rules and raises a
``ValueError`` naming the profile and the rule; `profile_problems` lists every problem instead.
`pad_observations` turns a Dataset into a fixed-shape `ObservationBatch` for JAX.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import equinox as eqx
import numpy as np
import xarray as xr
from jaxtyping import Array, Bool, Float

__all__ = [
    "PROFILE_VARIABLES",
    "OPTIONAL_VARIABLES",
    "make_profiles",
    "profile_problems",
    "validate_profiles",
    "write_profiles",
    "read_profiles",
    "ObservationBatch",
    "pad_observations",
]

# name -> (units, long_name)
PROFILE_VARIABLES: dict[str, tuple[str, str]] = {
    "profile_id": ("1", "profile identifier"),
    "lat": ("degrees_north", "latitude"),
    "lon": ("degrees_east", "longitude"),
    "n_layers": ("1", "number of valid layers"),
    "mask": ("1", "valid layer (True) or padding (False)"),
    "depth_top": ("m", "depth of the upper layer boundary"),
    "depth_bottom": ("m", "depth of the lower layer boundary"),
    "depth_node": ("m", "depth of the layer node (comparison depth)"),
    "soc": ("gC m-3", "soil organic carbon density"),
}
OPTIONAL_VARIABLES: dict[str, tuple[str, str]] = {
    "soc_content": ("g C kg-1", "soil organic carbon content of fine earth"),
    "bulk_density": ("g cm-3", "bulk density of fine earth"),
    "coarse_fragments": ("%", "volumetric coarse fragment content"),
}
_DEPTH_TOL = 1e-9  # m; touching layers (bottom == next top) are fine


def make_profiles(
    profile_id: Sequence[str],
    lat: Sequence[float],
    lon: Sequence[float],
    depth_top: Sequence[Sequence[float]],
    depth_bottom: Sequence[Sequence[float]],
    soc: Sequence[Sequence[float]],
    depth_node: Sequence[Sequence[float]] | None = None,
    *,
    max_layers: int | None = None,
    validate: bool = True,
    **optional: Sequence[Sequence[float]],
) -> xr.Dataset:
    """Build a profiles Dataset from ragged per-profile layer lists.

    Args:
        profile_id: n identifiers (converted to ``str``).
        lat: n latitudes, degrees north.
        lon: n longitudes, degrees east.
        depth_top: n sequences of layer tops, m (a profile may have any number of layers).
        depth_bottom: n sequences of layer bottoms, m.
        soc: n sequences of SOC densities, gC m-3.
        depth_node: n sequences of node depths, m; default: the layer mid-points.
        max_layers: width of the layer axis; default the largest number of layers.
        validate: run `validate_profiles` on the result.
        **optional: ``soc_content`` (g C kg-1), ``bulk_density`` (g cm-3),
            ``coarse_fragments`` (%), each n sequences like ``soc``.

    Returns:
        The profiles Dataset (dims ``profile``, ``layer``), padded with NaN and ``mask``.
    """
    n = len(profile_id)
    for name, seq in (
        ("lat", lat),
        ("lon", lon),
        ("depth_top", depth_top),
        ("depth_bottom", depth_bottom),
        ("soc", soc),
    ):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} profiles, profile_id has {n}")
    unknown = set(optional) - set(OPTIONAL_VARIABLES)
    if unknown:
        raise ValueError(
            f"unknown optional variables {sorted(unknown)}; allowed: {sorted(OPTIONAL_VARIABLES)}"
        )
    counts = np.array([len(s) for s in soc], dtype=np.int64)
    width = int(max_layers if max_layers is not None else (counts.max() if n else 0))
    if n and counts.max() > width:
        raise ValueError(f"max_layers={width} is smaller than the largest profile ({counts.max()})")
    if depth_node is None:
        depth_node = [
            0.5 * (np.asarray(t, float) + np.asarray(b, float))
            for t, b in zip(depth_top, depth_bottom, strict=True)
        ]

    def pad(rows: Sequence[Sequence[float]], name: str) -> np.ndarray:
        out = np.full((n, width), np.nan)
        for i, row in enumerate(rows):
            row = np.asarray(row, dtype=float).ravel()
            if row.size != counts[i]:
                raise ValueError(
                    f"profile {str(profile_id[i])!r}: {name} has {row.size} layers, soc has "
                    f"{counts[i]}"
                )
            out[i, : row.size] = row
        return out

    mask = np.arange(width)[None, :] < counts[:, None]
    data = {
        "depth_top": pad(depth_top, "depth_top"),
        "depth_bottom": pad(depth_bottom, "depth_bottom"),
        "depth_node": pad(depth_node, "depth_node"),
        "soc": pad(soc, "soc"),
    }
    for name, rows in optional.items():
        data[name] = pad(rows, name)
    return _assemble(
        np.asarray([str(p) for p in profile_id], dtype=object),
        np.asarray(lat, float),
        np.asarray(lon, float),
        mask,
        data,
        validate=validate,
    )


def _assemble(
    profile_id: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    mask: np.ndarray,
    layers: dict[str, np.ndarray],
    *,
    validate: bool = True,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Dataset from padded (n, width) arrays (internal; no copying of large arrays)."""
    n = mask.shape[0]
    ds = xr.Dataset(
        {
            "profile_id": ("profile", profile_id.astype(str).astype(object)),
            "lat": ("profile", lat),
            "lon": ("profile", lon),
            "n_layers": ("profile", mask.sum(axis=1).astype(np.int32)),
            "mask": (("profile", "layer"), mask.astype(bool)),
            **{k: (("profile", "layer"), v) for k, v in layers.items()},
        },
        coords={"profile": np.arange(n), "layer": np.arange(mask.shape[1])},
        attrs={
            "Conventions": "CF-1.8",
            "title": "soil organic carbon profiles (soc_jax schema)",
            **(attrs or {}),
        },
    )
    for name, (units, long_name) in {**PROFILE_VARIABLES, **OPTIONAL_VARIABLES}.items():
        if name in ds:
            ds[name].attrs.update(units=units, long_name=long_name)
    if validate:
        validate_profiles(ds)
    return ds


def _name(ds: xr.Dataset, i: int) -> str:
    return f"profile {str(ds['profile_id'].values[i])!r} (index {i})"


def profile_problems(ds: xr.Dataset) -> list[tuple[int, str]]:
    """Every rule each profile breaks, as ``(profile index, message)`` pairs.

    Rules: required variables present; unique ``profile_id``; lat in [-90, 90] and lon in
    [-180, 360]; valid layers first in the mask; on valid layers SOC finite and >= 0, depths
    finite and >= 0, ``depth_bottom > depth_top``, ``depth_node`` within the layer, node depths
    strictly increasing and layers not overlapping (``depth_top[k+1] >= depth_bottom[k]``).

    Args:
        ds: a profiles Dataset.

    Returns:
        A list of problems (empty if the Dataset is valid); each message names the profile and
        the rule.
    """
    missing = [k for k in PROFILE_VARIABLES if k not in ds and k != "n_layers"]
    if missing:
        raise ValueError(f"profiles Dataset lacks required variables {missing}")
    problems: list[tuple[int, str]] = []
    ids = ds["profile_id"].values.astype(str)
    mask = ds["mask"].values.astype(bool)
    top = ds["depth_top"].values
    bottom = ds["depth_bottom"].values
    node = ds["depth_node"].values
    soc = ds["soc"].values
    lat = ds["lat"].values
    lon = ds["lon"].values
    _, first, counts = np.unique(ids, return_index=True, return_counts=True)
    dup = set(ids[first[counts > 1]])
    seen: dict[str, int] = {}
    for i in range(ids.size):
        name = _name(ds, i)
        if ids[i] in dup:
            if ids[i] in seen:
                problems.append(
                    (i, f"{name}: duplicate profile_id (first at index {seen[ids[i]]})")
                )
            seen.setdefault(ids[i], i)
        if not (np.isfinite(lat[i]) and -90.0 <= lat[i] <= 90.0):
            problems.append((i, f"{name}: lat {lat[i]} outside [-90, 90] degrees"))
        if not (np.isfinite(lon[i]) and -180.0 <= lon[i] <= 360.0):
            problems.append((i, f"{name}: lon {lon[i]} outside [-180, 360] degrees"))
        m = mask[i]
        k = int(m.sum())
        if k == 0:
            problems.append((i, f"{name}: no valid layers"))
            continue
        if not m[:k].all():
            problems.append((i, f"{name}: mask must list the valid layers first"))
            continue
        t, b, z, s = top[i, :k], bottom[i, :k], node[i, :k], soc[i, :k]

        def add(bad: np.ndarray, rule: str, values: np.ndarray, i=i, name=name) -> None:
            if np.any(bad):
                j = int(np.flatnonzero(bad)[0])
                problems.append((i, f"{name}: {rule} (layer {j}, value {values[j]!r})"))

        add(np.isnan(s), "soc is NaN", s)
        add(~np.isnan(s) & ~np.isfinite(s), "soc is infinite", s)
        add(s < 0, "soc is negative", s)
        depth_ok = np.isfinite(t) & np.isfinite(b) & np.isfinite(z)
        add(~depth_ok, "depth is not finite", np.where(np.isfinite(t), z, t))
        if not depth_ok.all():
            continue
        add(t < 0, "depth_top is negative", t)
        add(b <= t, "bottom above top (depth_bottom <= depth_top)", b)
        add((z < t - _DEPTH_TOL) | (z > b + _DEPTH_TOL), "depth_node outside its layer", z)
        if k > 1:
            add(np.diff(z) <= 0, "depths not increasing (depth_node)", z[1:])
            add(
                t[1:] < b[:-1] - _DEPTH_TOL,
                "overlapping layers (depth_top < previous bottom)",
                t[1:],
            )
    return problems


def validate_profiles(ds: xr.Dataset) -> xr.Dataset:
    """Raise ``ValueError`` naming the profile and the rule at the first problem.

    Args:
        ds: a profiles Dataset (see the module docstring).

    Returns:
        ``ds`` unchanged, so that calls chain.

    Raises:
        ValueError: ``"profile 'P1' (index 0): soc is negative (layer 2, value -3.0)"`` etc.;
            the message counts the other problems.
    """
    problems = profile_problems(ds)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(problems[0][1] + more)
    return ds


def write_profiles(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write a profiles Dataset to NetCDF4 (lossless: float64, bool mask, string ids)."""
    encoding = {k: {"zlib": False} for k in ds.data_vars if ds[k].dtype != object}
    ds.to_netcdf(path, format="NETCDF4", engine="netcdf4", encoding=encoding)


def read_profiles(path: str | os.PathLike, validate: bool = True) -> xr.Dataset:
    """Read a profiles Dataset written by `write_profiles` (loaded into memory, file closed)."""
    with xr.open_dataset(path, engine="netcdf4") as f:
        ds = f.load()
    ds["profile_id"] = ds["profile_id"].astype(str).astype(object)
    if ds["mask"].dtype != bool:
        ds["mask"] = ds["mask"].astype(bool)
    if validate:
        validate_profiles(ds)
    return ds


class ObservationBatch(eqx.Module):
    """Observed layers padded to a fixed width, for batched JAX code.

    Attributes:
        depth: (n, width) node depths, m; padding holds ``fill_depth`` (a harmless depth).
        soc: (n, width) observed SOC, gC m-3; padding holds 0.
        mask: (n, width) True on observed layers.
    """

    depth: Float[Array, "n width"]
    soc: Float[Array, "n width"]
    mask: Bool[Array, "n width"]


def pad_observations(
    ds: xr.Dataset, width: int | None = None, fill_depth: float = 0.1
) -> ObservationBatch:
    """Pad a profiles Dataset's observations to a fixed number of layers.

    One compiled function then serves any batch: pass the same ``width`` (e.g. 16) for all.

    Args:
        ds: a profiles Dataset.
        width: number of layer slots (>= the largest profile); default the Dataset's layer axis.
        fill_depth: depth (m) written into padded slots so interpolation stays finite.

    Returns:
        `ObservationBatch` of numpy float64/bool arrays, shape (n_profiles, width).
    """
    mask = ds["mask"].values.astype(bool)
    n, w0 = mask.shape
    counts = mask.sum(axis=1)
    width = w0 if width is None else int(width)
    if n and counts.max() > width:
        raise ValueError(
            f"width={width} is smaller than the largest profile ({counts.max()} layers)"
        )
    depth = np.full((n, width), float(fill_depth))
    soc = np.zeros((n, width))
    m = np.zeros((n, width), bool)
    k = min(w0, width)
    mk = mask[:, :k]
    depth[:, :k] = np.where(mk, ds["depth_node"].values[:, :k], fill_depth)
    soc[:, :k] = np.where(mk, ds["soc"].values[:, :k], 0.0)
    m[:, :k] = mk
    return ObservationBatch(depth=depth, soc=soc, mask=m)
