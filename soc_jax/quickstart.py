"""``soc-jax quickstart``: steady-state SOC on the embedded synthetic world.

Builds a small synthetic world (sites with covariates, forcing and known true parameters) and
computes steady states of three UNCALIBRATED configurations at every site:

  clm5_default         CLM5 with its customary parameter values (mode "default")
  clm5_proda_midpoint  CLM5 at the middle of the prior of PRODA (the data assimilation of Tao
                       et al. 2024): p = 0.5 for every parameter, where PRODA's MCMC starts;
                       mode "proda"
  compas_midpoint      COMPAS at the middle of its prior (mode "proda")

and writes into --out:

  steady_states.nc     layer SOC (gC m-3) on the 20 model layers (depth, depth_bnds, thickness)
                       and stocks 0-30/100/200 cm and 0-8.6 m (kgC m-2) per site and
                       configuration; validity and failure-reason flags; the parameter values
                       and mode of each configuration; CF-1.10 attributes
  profiles.png         SOC against depth at six sites, the two CLM5 configurations
  clm5_vs_compas.png   0-100 cm stocks of CLM5 and COMPAS at every site; failed sites marked
  summary.txt          the summary printed at the end (stocks, failures and their reasons)
"""

from __future__ import annotations

import argparse
import textwrap
import time
from pathlib import Path

import numpy as np

from ._cli_args import add_command, add_run_options, positive_int

__all__ = ["FAILURES", "failure_codes", "quickstart", "register", "run"]

# Why a steady state failed: code -> meaning (the flag_meanings of failure_* in the NetCDF).
FAILURES: dict[int, str] = {
    0: "none",
    1: "input outside its rules (forcing, or parameters outside the prior in mode proda)",
    2: "nearly singular system (rcond < machine epsilon; MATLAB warns, PRODA fails it)",
    3: "negative pool in the closed-form steady state (COMPAS)",
    4: "PRODA's DA check: column soil carbon < 10 x microbial carbon (COMPAS, mode proda)",
    5: "non-finite result",
}
_FLAG_WORDS = {
    0: "none",
    1: "input_outside_rules",
    2: "nearly_singular",
    3: "negative_pool",
    4: "soil_carbon_below_10x_microbial_carbon",
    5: "non_finite",
}


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "quickstart",
        run,
        help="steady-state SOC with CLM5 and COMPAS on the embedded synthetic world",
        description=__doc__,
        check=_check,
    )
    p.add_argument(
        "--n-sites",
        type=positive_int,
        default=300,
        help="number of synthetic sites (1e4-style if exact); refused if they cannot fit in "
        "memory; the estimated run time is printed first",
    )
    add_run_options(p, out="results/quickstart", seed="seed of the synthetic world")


def _check(args: argparse.Namespace) -> None:
    """Refuse a world that cannot fit in memory, before anything is allocated."""
    from ._resources import memory_problem, quickstart_bytes

    need = quickstart_bytes(args.n_sites)
    problem = memory_problem(need, "--n-sites", f"the quickstart of {args.n_sites:,} sites")
    if problem:
        args._parser.error(f"argument --n-sites: {problem}")


def run(args: argparse.Namespace) -> int:
    from ._resources import format_seconds, quickstart_seconds

    print(f"estimated run time: about {format_seconds(quickstart_seconds(args.n_sites))}")
    quickstart(n_sites=args.n_sites, seed=args.seed, out=args.out)
    return 0


class _Steps:
    """Numbered progress lines with elapsed time."""

    def __init__(self, total: int):
        self.total, self.k, self.t0 = total, 0, time.perf_counter()

    def __call__(self, message: str) -> None:
        self.k += 1
        print(
            f"[{self.k}/{self.total}] {message} (t = {time.perf_counter() - self.t0:.1f} s)",
            flush=True,
        )


def failure_codes(model, result, params, forcing, mode: str) -> np.ndarray:
    """Why each steady state failed: (n,) int8 codes of `FAILURES` (0 where ``ok``).

    Decodes the result's flags (`soc_jax.models.common`) into one reason per profile; the first
    that applies wins: input, then the DA check, the sign flip, the condition number and a
    non-finite solve.

    Args:
        model: `soc_jax.models.clm5` or `soc_jax.models.compas` (unused: flags say it all).
        result: batched steady-state result (numpy leaves, leading profile axis n).
        params: (n_params,) or (n, n_params) physical parameters used (unused).
        forcing: the batched `Forcing` used (unused).
        mode: the mode used (unused).
    """
    from .models import common

    flags = np.asarray(result.flags)
    codes = np.zeros(flags.shape, np.int8)
    order = [
        (5, common.NONFINITE),
        (2, common.SINGULAR),
        (3, common.NEGATIVE),
        (4, common.MIC_RATIO),
        (1, common.INPUT | common.PRIOR),
    ]
    for code, bits in order:  # later entries win
        codes = np.where(flags & bits, code, codes)
    return codes.astype(np.int8)


def _where(lat: np.ndarray, failed: np.ndarray) -> str:
    """Where the failures are: counts per latitude band, with the band's number of sites."""
    bands = [(50, 90, "north of 50 N"), (23.5, 50, "23.5-50 N"), (-23.5, 23.5, "in the tropics")]
    bands += [(-50, -23.5, "23.5-50 S"), (-90, -50, "south of 50 S")]
    parts = []
    for lo, hi, name in bands:
        inside = (lat >= lo) & (lat < hi) if hi < 90 else (lat >= lo)
        k = int((failed & inside).sum())
        if k:
            parts.append(f"{k} {name} (of {int(inside.sum())} sites there)")
    return ", ".join(parts)


def quickstart(n_sites: int = 300, seed: int = 0, out: Path | str = "results/quickstart") -> dict:
    """Run the quickstart; returns the summary numbers (also printed and in ``summary.txt``).

    Args:
        n_sites: number of synthetic sites (>= 1).
        seed: seed of the synthetic world (>= 0).
        out: output folder (created).

    Returns:
        dict with ``n_sites``, mean 0-100 cm and 0-8.6 m stocks (kgC m-2) per configuration,
        valid counts, failure counts per reason and the wall time in s.
    """
    import jax

    from .data import make_world
    from .data.netcdf import write_netcdf

    if not jax.config.jax_enable_x64:
        raise RuntimeError("quickstart needs float64: jax.config.update('jax_enable_x64', True)")
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    step = _Steps(6)
    t0 = time.perf_counter()

    step(f"building the synthetic world ({n_sites} sites, seed {seed})")
    world = make_world(n_sites, seed=seed, progress=True)
    configs = _configurations()
    results, codes = _steady_states(world, configs, step)

    step("writing steady_states.nc")
    stock_values = _stocks_kg(results)
    ds = _dataset(world, configs, results, codes, stock_values, seed)
    write_netcdf(ds, out / "steady_states.nc")

    step("drawing profiles.png and clm5_vs_compas.png")
    _draw_figures(results, stock_values, world.lat, out)

    elapsed = time.perf_counter() - t0
    summary, lines = _summary(n_sites, elapsed, results, codes, stock_values)
    lines = [
        f"soc_jax quickstart: {n_sites} synthetic sites (seed {seed}), outputs in {out}/",
        *lines,
    ]
    lines += _failure_lines(results, summary, world.lat)
    lines += _deep_carbon_note(stock_values, configs)
    lines.append(f"  total time {elapsed:.1f} s")
    text = "\n".join(
        textwrap.fill(line, 100, subsequent_indent="    ") if len(line) > 100 else line
        for line in lines
    )
    print("\n" + text)
    (out / "summary.txt").write_text(text + "\n")
    return summary


def _configurations() -> dict[str, tuple]:
    """The uncalibrated configurations: name -> (model module, physical parameters, mode)."""
    from .models import clm5, compas

    return {
        "clm5_default": (clm5, np.asarray(clm5.default_parameters()), "default"),
        "clm5_proda_midpoint": (clm5, np.asarray(clm5.PARAMETERS.midpoint()), "proda"),
        "compas_midpoint": (compas, np.asarray(compas.PARAMETERS.midpoint()), "proda"),
    }


def _steady_states(world, configs: dict, step) -> tuple[dict, dict]:
    """``(results, codes)``: each configuration's steady states at every site (numpy leaves)
    and its failure codes (`failure_codes`)."""
    import jax
    import jax.numpy as jnp

    forcing = jax.tree.map(jnp.asarray, world.forcing_batch())
    results, codes = {}, {}
    for name, (model, params, mode) in configs.items():
        step(f"steady states: {name} (mode={mode}; first call compiles)")
        fn = jax.jit(jax.vmap(lambda f, m=model, p=params, md=mode: m.steady_state(p, f, mode=md)))
        results[name] = jax.tree.map(np.asarray, fn(forcing))
        codes[name] = failure_codes(model, results[name], params, forcing, mode)
    return results, codes


def _stocks_kg(results: dict) -> dict[str, dict[str, np.ndarray]]:
    """Stocks 0-30/100/200 cm and of the whole column (kgC m-2, NaN where failed) per
    configuration."""
    from .grid import stocks

    stock_values = {}
    for name, res in results.items():
        st = stocks(np.where(res.ok[:, None], res.soc, np.nan))
        stock_values[name] = {
            label: np.asarray(value) / 1000.0
            for label, value in zip(("0_30cm", "0_100cm", "0_200cm", "total"), st, strict=True)
        }
    return stock_values


def _draw_figures(results: dict, stock_values: dict, lat: np.ndarray, out: Path) -> None:
    """``profiles.png`` and ``clm5_vs_compas.png`` into ``out``."""
    from . import plots

    plots.save(profiles_figure(results, lat), out / "profiles.png")
    plots.save(
        comparison_figure(
            stock_values["clm5_proda_midpoint"]["0_100cm"],
            stock_values["compas_midpoint"]["0_100cm"],
            lat,
        ),
        out / "clm5_vs_compas.png",
    )


def _summary(n_sites: int, elapsed: float, results, codes, stock_values) -> tuple[dict, list]:
    """``(summary, lines)``: the numbers `quickstart` returns and the table of mean stocks."""
    summary: dict = {"n_sites": n_sites, "seconds": elapsed}
    lines = [
        "uncalibrated configurations; mean stocks over the valid sites, kgC m-2:",
        f"  {'configuration':22s} {'valid':>9s} {'0-100 cm':>9s} {'0-8.6 m':>9s}",
    ]
    for name, res in results.items():
        s100 = float(np.nanmean(stock_values[name]["0_100cm"])) if res.ok.any() else np.nan
        stot = float(np.nanmean(stock_values[name]["total"])) if res.ok.any() else np.nan
        summary[f"{name}_mean_0_100cm_kgC_m2"] = s100
        summary[f"{name}_mean_total_kgC_m2"] = stot
        summary[f"{name}_valid"] = int(res.ok.sum())
        counts = {c: int((codes[name] == c).sum()) for c in FAILURES if c}
        summary[f"{name}_failures"] = {FAILURES[c]: k for c, k in counts.items() if k}
        lines.append(f"  {name:22s} {int(res.ok.sum()):5d}/{n_sites:<3d} {s100:9.2f} {stot:9.2f}")
    return summary, lines


def _failure_lines(results: dict, summary: dict, lat: np.ndarray) -> list[str]:
    """One line per configuration with failures: their reasons and where they are."""
    lines = []
    for name, res in results.items():
        failed = ~res.ok
        if failed.any():
            reasons = "; ".join(f"{k} x {v}" for v, k in summary[f"{name}_failures"].items())
            lines.append(
                f"  {name} failed at {int(failed.sum())} sites: {reasons}. Where: "
                f"{_where(lat, failed)}."
            )
    return lines


def _deep_carbon_note(stock_values: dict, configs: dict) -> list[str]:
    """Explain a CLM5 column that holds most of its carbon below 1 m (the prior midpoint)."""
    lines = []
    for name, st in stock_values.items():
        model, params, _ = configs[name]
        if not model.__name__.endswith("clm5"):
            continue
        efolding = float(params[model.PARAMETERS.index("efolding")])
        total, top = st["total"], st["0_100cm"]
        good = np.isfinite(total) & (total > 0)
        if not good.any():
            continue
        below = 1.0 - np.sum(top[good]) / np.sum(total[good])
        if below > 0.5:
            i = int(np.nanargmax(np.where(good, total, -np.inf)))
            lines.append(
                f"  note: {name} holds {100 * below:.0f} % of its 0-8.6 m carbon below 1 m "
                f"(up to {total[i]:.0f} kgC m-2 at one site, {top[i]:.0f} of it in 0-100 cm). "
                "This is what the model gives (checked against the NumPy baseline): with an "
                f"e-folding depth of {efolding:g} m, decomposition is slowed by exp(-z / "
                f"{efolding:g} m), to {100 * np.exp(-2.0 / efolding):.2g} % at 2 m, so the "
                "deep layers are nearly inert and fill with carbon mixed down from above; see "
                "docs/quickstart.md."
            )
    return lines


def _dataset(world, configs, results, codes, stock_values, seed):
    """The steady_states.nc Dataset (CF attributes completed by `write_netcdf`)."""
    import xarray as xr

    from .data.netcdf import depth_coords

    n = world.lat.size
    data_vars: dict = {}
    coords: dict = {
        "profile": np.arange(n),
        "layer": np.arange(20),
        **depth_coords(20),
        "lat": ("profile", world.lat),
        "lon": ("profile", world.lon),
    }
    coords |= _parameter_coords(configs)
    for name, res in results.items():
        data_vars |= _configuration_vars(name, res, configs[name], codes[name], stock_values[name])
    return xr.Dataset(
        data_vars,
        coords=coords,
        attrs={
            "title": "soc_jax quickstart: steady-state SOC of uncalibrated CLM5 and COMPAS "
            "configurations on the synthetic world",
            "source": f"soc_jax synthetic world, seed {seed}, {n} sites",
            "world_seed": seed,
        },
    )


def _parameter_coords(configs: dict) -> dict:
    """The coordinates ``<model>_parameter`` (names) and ``<model>_parameter_unit``."""
    coords: dict = {}
    for model_name, model in {"clm5": configs["clm5_default"][0], "compas": None}.items():
        model = model if model is not None else configs["compas_midpoint"][0]
        space = model.PARAMETERS
        coords[f"{model_name}_parameter"] = (
            f"{model_name}_parameter",
            np.asarray(space.names, dtype=object),
            {"long_name": f"{model_name.upper()} parameter name"},
        )
        coords[f"{model_name}_parameter_unit"] = (
            f"{model_name}_parameter",
            np.asarray([s.unit for s in space.specs], dtype=object),
            {"long_name": f"unit of the {model_name.upper()} parameter"},
        )
    return coords


_LABEL_WORDS = {
    "0_30cm": "0-30 cm",
    "0_100cm": "0-100 cm",
    "0_200cm": "0-200 cm",
    "total": "0-8.6 m (the whole model column)",
}


def _configuration_vars(name: str, res, config: tuple, codes, stock_values: dict) -> dict:
    """The variables of configuration ``name``: layer SOC, validity, failure reason, stocks
    and parameter values."""
    from .data.netcdf import flag_attrs

    model, params, mode = config
    model_name = model.__name__.rsplit(".", 1)[-1]
    data_vars: dict = {}
    data_vars[f"soc_{name}"] = (
        ("profile", "layer"),
        res.soc,
        {"units": "gC m-3", "long_name": f"soil organic carbon density, {name}"},
    )
    data_vars[f"ok_{name}"] = (
        ("profile",),
        res.ok.astype(np.int8),
        flag_attrs({0: "failed", 1: "valid"}, f"valid steady state, {name}"),
    )
    data_vars[f"failure_{name}"] = (
        ("profile",),
        codes,
        {
            **flag_attrs(_FLAG_WORDS, f"why the steady state failed, {name}"),
            "comment": "; ".join(f"{k}: {v}" for k, v in FAILURES.items()),
        },
    )
    for label, value in stock_values.items():
        data_vars[f"stock_{label}_{name}"] = (
            ("profile",),
            value,
            {
                "units": "kgC m-2",
                "long_name": f"SOC stock {_LABEL_WORDS[label]}, {name}",
                "comment": "NaN where the steady state failed",
            },
        )
    data_vars[f"parameters_{name}"] = (
        (f"{model_name}_parameter",),
        np.asarray(params, dtype=float),
        {
            "long_name": f"parameter values of {name} (physical units)",
            "units": f"see {model_name}_parameter_unit",
            "model": model_name,
            "mode": mode,
        },
    )
    return data_vars


def profiles_figure(results: dict, lat: np.ndarray):
    """SOC against depth at six sites spread over latitude: CLM5 default vs prior midpoint.

    Both panels share the SOC axis (log) and the depth axis (the whole 8.6 m model column).
    Returns the matplotlib Figure.
    """
    from . import plots
    from .grid import ZSOI

    plt = plots.pyplot()
    names = ("clm5_default", "clm5_proda_midpoint")
    titles = ("customary parameters (mode default)", "PRODA prior midpoint (mode proda)")
    z = ZSOI[:20]
    ok_all = np.all([results[k].ok for k in names], axis=0)
    candidates = np.flatnonzero(ok_all)
    if candidates.size == 0:
        candidates = np.arange(lat.size)
    order = candidates[np.argsort(lat[candidates])]
    picks = order[np.linspace(0, order.size - 1, min(6, order.size)).astype(int)]
    colors = plt.get_cmap(plots.SEQUENTIAL)(np.linspace(0, 0.9, picks.size))
    shown = [results[k].soc[picks] for k in names]
    lo, hi = plots.shared_limits(shown, log=True, decades=4)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5), sharex=True, sharey=True, layout="constrained")
    for ax, name, title in zip(axes, names, titles, strict=True):
        for c, i in zip(colors, picks, strict=True):
            ax.plot(results[name].soc[i], z, "-o", ms=2.5, color=c, label=plots.lat_label(lat[i]))
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_title(f"CLM5, {title}", fontsize=10)
        ax.set_xlabel(plots.label(plots.SOC_DENSITY, "gC m-3", log=True))
        ax.grid(alpha=0.3)
    plots.depth_axis(axes[0], plots.GRID_DEPTH_M)
    axes[0].text(0.03, 0.02, f"SOC below {lo:.2g} gC m$^{{-3}}$ is off the axis",
                 transform=axes[0].transAxes, fontsize=8, color="0.3")  # fmt: skip
    axes[1].legend(title="site latitude", fontsize=8)
    axes[1].text(0.03, 0.02, "a profile that drops off has reached the site's bedrock",
                 transform=axes[1].transAxes, fontsize=8, color="0.3")  # fmt: skip
    fig.suptitle("Steady-state SOC profiles of uncalibrated CLM5 at six synthetic sites")
    return fig


def comparison_figure(clm5_stock: np.ndarray, compas_stock: np.ndarray, lat: np.ndarray):
    """0-100 cm stocks of CLM5 and COMPAS (prior midpoints) at every site; failures marked.

    Left: COMPAS against CLM5 (log-log, same limits, 1:1 line). Right: both against latitude.
    A failed steady state (NaN stock) is drawn as a red mark at the bottom of each panel.
    Returns the matplotlib Figure.
    """
    from . import plots

    plt = plots.pyplot()
    lo, hi = plots.shared_limits([clm5_stock, compas_stock], log=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.8), layout="constrained")
    both = np.isfinite(clm5_stock) & np.isfinite(compas_stock)
    ax1.scatter(clm5_stock[both], compas_stock[both], s=8, color="C0", label="both valid")
    ax1.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="1:1")
    # a site where one model failed: a red mark on the axis of the model that did not fail
    compas_failed = ~np.isfinite(compas_stock) & np.isfinite(clm5_stock)
    clm5_failed = ~np.isfinite(clm5_stock) & np.isfinite(compas_stock)
    red = {"s": 30, "color": plots.FAILED_COLOR, "clip_on": False}
    if compas_failed.any():
        n = int(compas_failed.sum())
        ax1.scatter(clm5_stock[compas_failed], np.full(n, lo), marker="v", **red,
                    label=f"COMPAS failed ({n} sites)")  # fmt: skip
    if clm5_failed.any():
        n = int(clm5_failed.sum())
        ax1.scatter(np.full(n, lo), compas_stock[clm5_failed], marker="<", **red,
                    label=f"CLM5 failed ({n} sites)")  # fmt: skip
    ax1.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
    ax1.set_xlabel(plots.label("CLM5 stock 0-100 cm", "kgC m-2", log=True))
    ax1.set_ylabel(plots.label("COMPAS stock 0-100 cm", "kgC m-2", log=True))
    ax1.set_title("COMPAS against CLM5 at the same sites", fontsize=10)
    plots.plain_log_ticks(ax1)
    ax1.legend(fontsize=8)
    for stock, name, color in ((clm5_stock, "CLM5", "C0"), (compas_stock, "COMPAS", "C1")):
        ax2.scatter(lat, stock, s=8, color=color, label=name)
    failed = ~np.isfinite(compas_stock)
    if failed.any():
        n = int(failed.sum())
        ax2.scatter(lat[failed], np.full(n, lo), marker="v", **red,
                    label=f"COMPAS failed ({n} sites)")  # fmt: skip
    ax2.set(yscale="log", ylim=(lo, hi), xlim=(-60, 85))
    ax2.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: plots.lat_label(v)))
    ax2.set_xlabel("site latitude (degrees)")
    ax2.set_ylabel(plots.label("stock 0-100 cm", "kgC m-2", log=True))
    ax2.set_title("stocks against latitude", fontsize=10)
    plots.plain_log_ticks(ax2, "y")
    ax2.legend(fontsize=8)
    fig.suptitle("CLM5 and COMPAS at their prior midpoints (uncalibrated), 0-100 cm SOC stocks")
    return fig
