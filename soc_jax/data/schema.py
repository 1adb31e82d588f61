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

from .netcdf import flag_attrs, open_netcdf, write_netcdf

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
    "mask": ("1", "valid layer or padding"),
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
    _check_sizes(n, lat=lat, lon=lon, depth_top=depth_top, depth_bottom=depth_bottom, soc=soc)
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
    mask = np.arange(width)[None, :] < counts[:, None]
    columns = {"depth_top": depth_top, "depth_bottom": depth_bottom, "depth_node": depth_node}
    data = {
        name: _pad(rows, name, counts, width, profile_id)
        for name, rows in {**columns, "soc": soc, **optional}.items()
    }
    return _assemble(
        np.asarray([str(p) for p in profile_id], dtype=object),
        np.asarray(lat, float),
        np.asarray(lon, float),
        mask,
        data,
        validate=validate,
    )


def _check_sizes(n: int, **per_profile: Sequence) -> None:
    """Each argument has one entry per profile (``n``), else a ValueError naming it."""
    for name, seq in per_profile.items():
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} profiles, profile_id has {n}")


def _pad(rows, name: str, counts: np.ndarray, width: int, profile_id) -> np.ndarray:
    """Ragged per-profile rows -> (n, width) padded with NaN; each row has ``counts[i]`` layers."""
    out = np.full((len(counts), width), np.nan)
    for i, row in enumerate(rows):
        row = np.asarray(row, dtype=float).ravel()
        if row.size != counts[i]:
            raise ValueError(
                f"profile {str(profile_id[i])!r}: {name} has {row.size} layers, soc has {counts[i]}"
            )
        out[i, : row.size] = row
    return out


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
            "Conventions": "CF-1.10",
            "title": "soil organic carbon profiles (soc_jax schema)",
            **(attrs or {}),
        },
    )
    for name, (units, long_name) in {**PROFILE_VARIABLES, **OPTIONAL_VARIABLES}.items():
        if name in ds:
            ds[name].attrs.update(units=units, long_name=long_name)
    ds["mask"].attrs.pop("units")  # a flag (CF 3.5): values and meanings instead of units
    ds["mask"].attrs.update(flag_attrs({0: "padding", 1: "valid layer"}, "valid layer or padding"))
    if validate:
        validate_profiles(ds)
    return ds


def _name(ds: xr.Dataset, i: int) -> str:
    return f"profile {str(ds['profile_id'].values[i])!r} (index {i})"


DEPTH_UNITS: dict[str, float] = {"m": 1.0, "cm": 100.0}  # unit -> factor from m


def fmt(value: float) -> str:
    """A number as a user writes it: ``0.15``, ``-3``, ``1.2e+05``, ``nan`` (no numpy repr)."""
    return f"{float(value):.6g}"


def source_depth_unit(ds: xr.Dataset) -> str:
    """The depth unit of the data as the user gave it (``ds.attrs["source_depth_unit"]``; m)."""
    unit = str(ds.attrs.get("source_depth_unit", "m"))
    return unit if unit in DEPTH_UNITS else "m"


def describe_layer(
    j: int, k: int, top: float, bottom: float, depth_unit: str = "m", row: object = None
) -> str:
    """``"layer 2 of 5 counted from the surface, 10-30 cm"`` (1 = top layer), plus the source row.

    Args:
        j: 0-based index of the layer among the profile's valid layers, top first.
        k: number of valid layers in the profile.
        top, bottom: layer boundaries, m.
        depth_unit: unit to show depths in, ``"m"`` or ``"cm"`` (the user's unit).
        row: where the layer came from (e.g. ``"CSV line 7"``), or None.
    """
    f = DEPTH_UNITS[depth_unit]
    where = f", {row}" if row is not None else ""
    return (
        f"layer {j + 1} of {k} counted from the surface, {fmt(top * f)}-{fmt(bottom * f)} "
        f"{depth_unit}{where}"
    )


def profile_problems(
    ds: xr.Dataset, *, depth_unit: str | None = None, rows: np.ndarray | None = None
) -> list[tuple[int, str]]:
    """Every rule each profile breaks, as ``(profile index, message)`` pairs.

    Rules: required variables present; unique ``profile_id``; lat in [-90, 90] and lon in
    [-180, 360]; valid layers first in the mask; on valid layers SOC finite and >= 0, depths
    finite and >= 0, ``depth_bottom > depth_top``, ``depth_node`` within the layer, node depths
    strictly increasing and layers not overlapping (``depth_top[k+1] >= depth_bottom[k]``).

    A message names the profile, the rule, the offending values in the user's units and the
    offending layer, counted as a user counts them: 1 = the top layer, e.g. ``"profile 'P1'
    (index 0): overlapping layers: depth_top 5 cm is above depth_bottom 10 cm of layer 1
    (layer 2 of 3 counted from the surface, 5-30 cm)"``. For a pair of layers (overlap, node
    depths not increasing) the deeper layer of the pair is the one named.

    Args:
        ds: a profiles Dataset.
        depth_unit: ``"m"`` or ``"cm"``, the unit depths are shown in; default the unit of the
            source file (``ds.attrs["source_depth_unit"]``, set by the loaders), else m.
        rows: optional (profile, layer) labels of where each layer came from (e.g. ``"CSV line
            7"``), added to the layer's description.

    Returns:
        A list of problems (empty if the Dataset is valid).
    """
    missing = [k for k in PROFILE_VARIABLES if k not in ds and k != "n_layers"]
    if missing:
        raise ValueError(f"profiles Dataset lacks required variables {missing}")
    unit = depth_unit if depth_unit is not None else source_depth_unit(ds)
    if unit not in DEPTH_UNITS:
        raise ValueError(f"depth_unit must be 'm' or 'cm', got {unit!r}")
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
            problems.append((i, f"{name}: lat {fmt(lat[i])} outside [-90, 90] degrees"))
        if not (np.isfinite(lon[i]) and -180.0 <= lon[i] <= 360.0):
            problems.append((i, f"{name}: lon {fmt(lon[i])} outside [-180, 360] degrees"))
        m = mask[i]
        k = int(m.sum())
        if k == 0:
            problems.append((i, f"{name}: no valid layers"))
            continue
        if not m[:k].all():
            problems.append((i, f"{name}: mask must list the valid layers first"))
            continue
        row_labels = None if rows is None else rows[i, :k]
        for message in _layer_problems(
            top[i, :k], bottom[i, :k], node[i, :k], soc[i, :k], unit, row_labels
        ):
            problems.append((i, f"{name}: {message}"))
    return problems


def _layer_problems(
    t: np.ndarray,
    b: np.ndarray,
    z: np.ndarray,
    s: np.ndarray,
    unit: str,
    rows: np.ndarray | None,
) -> list[str]:
    """Rule messages for one profile's k valid layers (tops, bottoms, nodes in m; SOC gC m-3)."""
    k = t.size
    f = DEPTH_UNITS[unit]
    out: list[str] = []

    def d(x: float) -> str:
        return f"{fmt(x * f)} {unit}"

    def add(bad: np.ndarray, rule: str, detail) -> None:
        """Report the first offending layer j (0-based); ``detail(j)`` gives its values."""
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            where = describe_layer(j, k, t[j], b[j], unit, None if rows is None else rows[j])
            out.append(f"{rule}: {detail(j)} ({where})")

    add(np.isnan(s), "soc is NaN", lambda j: "soc nan")
    add(~np.isnan(s) & ~np.isfinite(s), "soc is infinite", lambda j: f"soc {fmt(s[j])}")
    add(s < 0, "soc is negative", lambda j: f"soc {fmt(s[j])} gC m-3")
    depth_ok = np.isfinite(t) & np.isfinite(b) & np.isfinite(z)
    add(
        ~depth_ok,
        "depth is not finite",
        lambda j: f"depth_top {d(t[j])}, depth_bottom {d(b[j])}, depth_node {d(z[j])}",
    )
    if not depth_ok.all():
        return out
    add(t < 0, "depth_top is negative", lambda j: f"depth_top {d(t[j])}")
    add(
        b <= t,
        "bottom above top (depth_bottom <= depth_top)",
        lambda j: f"depth_bottom {d(b[j])} <= depth_top {d(t[j])}",
    )
    add(
        (z < t - _DEPTH_TOL) | (z > b + _DEPTH_TOL),
        "depth_node outside its layer",
        lambda j: f"depth_node {d(z[j])}",
    )
    if k > 1:
        # rules on pairs of layers (j-1, j): the deeper layer j of the first bad pair is named
        not_increasing = np.concatenate([[False], np.diff(z) <= 0])
        add(
            not_increasing,
            "depths not increasing (depth_node)",
            lambda j: f"depth_node {d(z[j])} is not below {d(z[j - 1])} of layer {j}",
        )
        overlap = np.concatenate([[False], t[1:] < b[:-1] - _DEPTH_TOL])
        add(
            overlap,
            "overlapping layers (depth_top < previous bottom)",
            lambda j: f"depth_top {d(t[j])} is above depth_bottom {d(b[j - 1])} of layer {j}",
        )
    return out


def validate_profiles(ds: xr.Dataset, *, depth_unit: str | None = None) -> xr.Dataset:
    """Raise ``ValueError`` naming the profile, the rule and the layer at the first problem.

    Args:
        ds: a profiles Dataset (see the module docstring).
        depth_unit: unit of the depths in the message (see `profile_problems`).

    Returns:
        ``ds`` unchanged, so that calls chain.

    Raises:
        ValueError: ``"profile 'P1' (index 0): soc is negative: soc -3 gC m-3 (layer 2 of 4
            counted from the surface, 10-30 cm)"`` etc.; the message counts the other problems.
    """
    problems = profile_problems(ds, depth_unit=depth_unit)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(problems[0][1] + more)
    return ds


def write_profiles(ds: xr.Dataset, path: str | os.PathLike) -> None:
    """Write a profiles Dataset to NetCDF4 (lossless: float64, bool mask, string ids).

    The CF global attributes (Conventions, source, history) are completed in place
    (`soc_jax.data.netcdf.write_netcdf`).
    """
    encoding = {k: {"zlib": False} for k in ds.data_vars if ds[k].dtype != object}
    write_netcdf(ds, path, encoding=encoding)


def read_profiles(path: str | os.PathLike, validate: bool = True) -> xr.Dataset:
    """Read a profiles Dataset written by `write_profiles` (loaded into memory, file closed).

    Raises:
        FileNotFoundError: no such file; ValueError: not NetCDF, or a rule broken.
    """
    ds = open_netcdf(path)
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
