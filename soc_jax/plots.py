"""Figure conventions shared by every figure soc_jax draws (one home; reuse it).

Rules (the helpers below apply them):

- **Units in every axis and colour-bar label**, written by `label` (``"SOC density (gC
  m$^{-3}$)"``); a logarithmic scale says so in words (``", log scale"``), never ``log10 x``.
- **Depth in m**, increasing downward, from 0 (`depth_axis`); where fewer layers are shown than
  the grid holds, the axis says which part is shown.
- **Comparisons share their axes**: panels that are compared get the same limits
  (`shared_limits`, or ``plt.subplots(sharex=True, sharey=True)``) so that a 5x difference shows.
- **Latitudes and longitudes as people write them**: ``45 S``, ``12 N``, ``30 W`` (`lat_label`,
  `lon_label`, `map_axes` with degree tick labels and axis titles).
- **Colour maps**: `SEQUENTIAL` (viridis) for magnitudes, `DIVERGING` (RdBu_r, centred on 0) for
  residuals, `CATEGORICAL` (tab10) for lines; failed or masked values in `FAILED_COLOR` with a
  legend entry.
- **Every figure has a title** that says what is shown (and, for untrained or uncalibrated
  parameters, that they are); `save` writes PNG at `DPI` and closes the figure.

Usage::

    from soc_jax import plots
    plt = plots.pyplot()
    fig, ax = plt.subplots()
    ax.plot(soc, depth)
    ax.set_xlabel(plots.label("SOC density", "gC m-3"))
    plots.depth_axis(ax, 2.5)
    plots.save(fig, out / "profile.png")

matplotlib is imported inside the functions (Agg backend), so importing this module is cheap.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import numpy as np

__all__ = [
    "CATEGORICAL",
    "DEPTH_UNIT",
    "DIVERGING",
    "DPI",
    "FAILED_COLOR",
    "GRID_DEPTH_M",
    "SEQUENTIAL",
    "SOC_DENSITY",
    "colorbar",
    "depth_axis",
    "label",
    "lat_label",
    "legend_labels",
    "lon_label",
    "map_axes",
    "plain_log_ticks",
    "pyplot",
    "save",
    "shared_limits",
    "tex_unit",
    "unit_of",
]

SEQUENTIAL = "viridis"
DIVERGING = "RdBu_r"
CATEGORICAL = "tab10"
FAILED_COLOR = "red"
DPI = 100
DEPTH_UNIT = "m"
GRID_DEPTH_M = 8.6  # bottom of CLM5's 20 layers (ZISOI[19] = 8.60 m)
SOC_DENSITY = "SOC density"  # quantity name of gC m-3 layer values


def pyplot():
    """``matplotlib.pyplot`` with the non-interactive Agg backend (safe on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tex_unit(unit: str) -> str:
    """``"gC m-3"`` -> ``"gC m$^{-3}$"``; ``"kgC m-2"`` -> ``"kgC m$^{-2}$"`` (exponents raised)."""
    return re.sub(r"(?<=[A-Za-z])(-?\d+)\b", r"$^{\1}$", unit)


def label(quantity: str, unit: str | None, *, log: bool = False) -> str:
    """An axis or colour-bar label with its unit: ``label("SOC density", "gC m-3")``.

    Args:
        quantity: what is shown, in words.
        unit: its unit as soc_jax writes units (``"gC m-3"``, ``"degrees"``, ``"1"``), or None
            for a count or a name; ``"1"`` prints as ``(-)``.
        log: the scale is logarithmic: say so in words.
    """
    text = quantity
    if unit is not None:
        text += " (-)" if unit == "1" else f" ({tex_unit(unit)})"
    if log:
        text += ", log scale"
    return text


def lat_label(lat: float, digits: int = 0) -> str:
    """``45 S``, ``12 N``, ``0`` (no minus signs, no ``-45 N``)."""
    value = round(float(lat), digits)
    text = f"{abs(value):.{digits}f}"
    if value == 0:
        return text
    return f"{text} {'N' if value > 0 else 'S'}"


def lon_label(lon: float, digits: int = 0) -> str:
    """``30 W``, ``120 E``, ``0``, ``180`` (longitudes in -180..360 are wrapped to -180..180)."""
    value = round((float(lon) + 180.0) % 360.0 - 180.0, digits)
    text = f"{abs(value):.{digits}f}"
    if value == 0 or abs(value) == 180:
        return text
    return f"{text} {'E' if value > 0 else 'W'}"


def map_axes(ax, *, lat_range: tuple[float, float] = (-60.0, 85.0)) -> None:
    """Longitude/latitude axes: full-world limits, degree ticks (``60 W``, ``30 N``), titles."""
    from matplotlib.ticker import FuncFormatter

    ax.set_xlim(-180, 180)
    ax.set_ylim(*lat_range)
    ax.set_xticks(np.arange(-180, 181, 60))
    ax.set_yticks([t for t in range(-60, 91, 30) if lat_range[0] <= t <= lat_range[1]])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: lon_label(v)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: lat_label(v)))
    ax.set_xlabel("longitude (degrees)")
    ax.set_ylabel("latitude (degrees)")


def depth_axis(ax, shown_m: float, grid_m: float | None = GRID_DEPTH_M) -> None:
    """Depth on the y axis in m, 0 at the top, down to ``shown_m``.

    Args:
        ax: the axes.
        shown_m: deepest depth shown, m.
        grid_m: depth of the profile's grid, m; if deeper than ``shown_m`` the label says that
            only the top part is shown (``"depth (m), top 2.5 m of 8.6 m"``). None: no note.
    """
    ax.set_ylim(shown_m, 0)
    text = f"depth ({DEPTH_UNIT})"
    if grid_m is not None and grid_m > shown_m * 1.001:
        text += f", top {shown_m:g} m of {grid_m:g} m shown"
    ax.set_ylabel(text)


def shared_limits(
    values: Iterable[np.ndarray],
    *,
    log: bool = False,
    pad: float = 0.05,
    decades: float | None = None,
) -> tuple[float, float]:
    """One (lo, hi) range for panels that are compared (finite values; positive ones if log).

    Args:
        values: the arrays shown in the panels.
        log: limits for a log axis (padding in decades).
        pad: relative padding (of the range, or of the decades if log).
        decades: on a log axis, show at most this many decades below the largest value (say so
            in the figure: smaller values leave the axis).
    """
    flat = np.concatenate([np.ravel(np.asarray(v, dtype=float)) for v in values])
    flat = flat[np.isfinite(flat)]
    if log:
        flat = flat[flat > 0]
    if flat.size == 0:
        return (1.0, 10.0) if log else (0.0, 1.0)
    lo, hi = float(flat.min()), float(flat.max())
    if log:
        if decades is not None:
            lo = max(lo, hi * 10.0**-decades)
        a, b = np.log10(lo), np.log10(hi)
        d = max(b - a, 1e-3) * pad
        return 10 ** (a - d), 10 ** (b + d)
    d = max(hi - lo, abs(hi) * 1e-6, 1e-12) * pad
    return lo - d, hi + d


def plain_log_ticks(ax, axis: str = "both") -> None:
    """Tick labels of a log axis as plain numbers (``20``, ``0.5``), not ``2 x 10^1``."""
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _: f"{v:g}")
    for a in (ax.xaxis, ax.yaxis) if axis == "both" else (getattr(ax, f"{axis}axis"),):
        a.set_major_formatter(fmt)
        a.set_minor_formatter(fmt)


def colorbar(fig, mappable, ax, quantity: str, unit: str | None, *, log: bool = False, **kw):
    """A colour bar labelled with quantity and unit (`label`); returns it."""
    kw.setdefault("shrink", 0.85)
    cb = fig.colorbar(mappable, ax=ax, **kw)
    cb.set_label(label(quantity, unit, log=log))
    if log:
        plain_log_ticks(cb.ax)
    return cb


def save(fig, path: str | os.PathLike, *, dpi: int = DPI) -> str:
    """Write ``fig`` as PNG at ``dpi`` and close it; returns the path."""
    plt = pyplot()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return os.fspath(path)


def legend_labels(ax) -> list[str]:
    """The texts of ``ax``'s legend (empty if none): for tests and checks."""
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def unit_of(text: str) -> str | None:
    """The unit in parentheses at the end of a label made by `label` (None if there is none)."""
    m = re.search(r"\(([^()]*)\)(, log scale)?$", text)
    return m.group(1) if m else None
