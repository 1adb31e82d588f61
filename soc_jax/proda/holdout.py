"""Held-out profiles for evaluating PRODA's network: spatial blocks (default) or random.

A network that maps covariates to parameters is used on a global grid, far from the profiles it
was fitted to. A random hold-out keeps neighbours of every held-out profile in training and
overstates how well the maps are known; a **spatial** hold-out withholds whole regions:

* `spatial_holdout`: sites are grouped into ``block`` x ``block`` degree latitude-longitude
  blocks; whole blocks, in a seeded random order, are withheld until at least ``frac`` of the
  sites are out. No block has sites on both sides.
* `random_holdout`: a seeded random permutation; the first ``round(frac n)`` are held out.

Both return sorted index arrays ``(train_idx, hold_idx)`` (and, for the spatial one, each site's
block id). The members' validation rows (early stopping, `soc_jax.proda.train.member_splits`)
are drawn from ``train_idx`` only, so train, validation and held-out test are three disjoint
sets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["HOLDOUT_KINDS", "spatial_holdout", "random_holdout", "holdout_split", "block_ids"]

HOLDOUT_KINDS: tuple[str, ...] = ("spatial", "random")


def block_ids(lat, lon, block: float = 30.0) -> np.ndarray:
    """Integer id of the ``block`` x ``block`` degree lat-lon block of each site.

    Args:
        lat: (n,) latitudes, degrees north. lon: (n,) longitudes, degrees east (-180..180 or
            0..360: wrapped to [-180, 180)).
        block: block size, degrees.
    """
    lat = np.asarray(lat, float)
    lon = (np.asarray(lon, float) + 180.0) % 360.0 - 180.0
    if not (np.all(np.isfinite(lat)) and np.all(np.isfinite(lon))):
        raise ValueError("site coordinates must be finite")
    if block <= 0:
        raise ValueError(f"block must be > 0 degrees, got {block}")
    n_lon = int(np.ceil(360.0 / block))
    i = np.floor((np.clip(lat, -90.0, 90.0) + 90.0) / block).astype(int)
    j = np.floor((lon + 180.0) / block).astype(int)
    return i * n_lon + j


def spatial_holdout(
    lat, lon, frac: float, seed: int, block: float = 30.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Withhold whole lat-lon blocks (seeded order) until at least ``frac`` of the sites.

    Args:
        lat, lon: (n,) site coordinates, degrees.
        frac: fraction of sites to hold out, in [0, 1); 0 holds out nothing.
        seed: random seed of the block order.
        block: block size, degrees (30 by default).

    Returns:
        ``(train_idx, hold_idx, region)``: sorted indices and (n,) block id per site.
    """
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"frac must be in [0, 1), got {frac}")
    region = block_ids(lat, lon, block)
    hold = np.zeros(len(region), bool)
    rng = np.random.default_rng(seed)
    for r in rng.permutation(np.unique(region)):
        if hold.mean() >= frac:
            break
        hold |= region == r
    return np.flatnonzero(~hold), np.flatnonzero(hold), region


def random_holdout(n: int, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``round(frac n)`` sites drawn by a seeded permutation: ``(train_idx, hold_idx)``."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"frac must be in [0, 1), got {frac}")
    order = np.random.default_rng(seed).permutation(n)
    n_hold = int(round(frac * n))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def holdout_split(
    kind: str, lat, lon, frac: float, seed: int, block: float = 30.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, hold_idx)`` of `spatial_holdout` or `random_holdout` (``kind``)."""
    if kind == "spatial":
        return spatial_holdout(lat, lon, frac, seed, block)[:2]
    if kind == "random":
        return random_holdout(len(np.asarray(lat)), frac, seed)
    raise ValueError(f"kind must be one of {HOLDOUT_KINDS}, got {kind!r}")


def site_coordinates(ids, *sources) -> tuple[np.ndarray, np.ndarray] | None:
    """(lat, lon) in degrees of the profiles ``ids`` from the first source that has them all.

    Each source is a Dataset with ``profile_id`` and ``lat``/``lon`` along the profile axis
    (truth.nc, posterior.nc, profiles.nc), or a pair ``(covariates, grid)`` where the
    covariates carry ``grid_cell`` (index of the grid cell) and the grid ``lat``/``lon`` per
    cell. Returns None when no source has coordinates for every id.
    """
    ids = np.asarray(ids).astype(str)
    for src in sources:
        if src is None:
            continue
        if isinstance(src, tuple):
            cov, grid = src
            if "grid_cell" not in cov or "lat" not in grid or "lon" not in grid:
                continue
            cells = np.asarray(cov["grid_cell"].values).astype(int)
            if cells.size and (cells.min() < 0 or cells.max() >= grid["lat"].size):
                continue
            lat, lon = grid["lat"].values[cells], grid["lon"].values[cells]
            have = np.asarray(cov["profile_id"].values).astype(str)
        else:
            if "lat" not in src or "lon" not in src or "profile_id" not in src:
                continue
            lat, lon = src["lat"].values, src["lon"].values
            have = np.asarray(src["profile_id"].values).astype(str)
        pos = {p: i for i, p in enumerate(have)}
        if all(p in pos for p in ids):
            rows = np.array([pos[p] for p in ids], dtype=int)
            return np.asarray(lat, float)[rows], np.asarray(lon, float)[rows]
    return None


def describe(kind: str, n: int, hold: np.ndarray, frac: float, block: float, region=None) -> str:
    """One line saying which hold-out was used and what it holds."""
    if len(hold) == 0:
        return "held out: none (--holdout 0)"
    what = f"{len(hold)} of {n} profiles ({len(hold) / n:.1%}, requested {frac:.1%})"
    if kind == "spatial":
        blocks = "" if region is None else f"{len(np.unique(np.asarray(region)[hold]))} "
        return f"held out: spatial, {blocks}whole {block:g} x {block:g} degree blocks, {what}"
    return f"held out: random, {what}"
