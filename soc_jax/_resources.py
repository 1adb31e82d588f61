"""Memory and run-time estimates that ``soc-jax`` commands check before they start work.

A size a user asks for (``--n-sites``, ``--chunk-size``, ``--steps-formal``) is turned into an
estimate of the peak memory (bytes) the command will need, by a small formula per command; if the
estimate does not fit in the memory available now (``MemAvailable`` of ``/proc/meminfo``, else
``os.sysconf``), the command is refused with one line naming the flag, the estimate and the
memory available, before anything is allocated, written or compiled. Long runs print their
estimated run time first, from the number of model evaluations (or epochs) and a cost per
evaluation measured on the 2-core CPU of the development machine (a GPU is faster).

The formulas are ``base + per_item x items``; the constants were measured with ``ru_maxrss``
of a fresh ``soc-jax`` process (CPU) at two sizes (the slope between them is the per-item cost, the
rest is the base: Python, JAX, XLA's compiled programs) and rounded up; each constant says
what it was measured on. They are deliberately generous: refusing a run that would have fit in
95 % of the memory is better than a run killed by the system after an hour.

The check is against the host's memory (where the arrays live on a CPU); on a GPU the device's
memory can be the tighter limit, which these estimates do not read.

Standard library only (imported while the command line is parsed).
"""

from __future__ import annotations

import os

__all__ = [
    "INT32_MAX",
    "available_memory",
    "calibrate_chunk_bytes",
    "calibrate_draws_bytes",
    "calibrate_seconds",
    "format_bytes",
    "format_seconds",
    "memory_problem",
    "quickstart_bytes",
    "quickstart_seconds",
    "train_seconds",
    "ude_seconds",
    "world_bytes",
    "world_problem",
]

INT32_MAX = 2**31 - 1  # step counters of the samplers and the draw index are int32

# Base memory of a soc-jax process that has imported JAX and compiled its programs, bytes
# (measured 0.75-0.82 GB peak for synth and quickstart at 200 and 2,000 sites).
BASE_BYTES = 1.0e9
# synth: bytes per synthetic site (forcing, covariates, profiles, truth, steady states).
# Measured: peak RSS 749 MB at 200 sites, 791 MB at 2,000 (4 degree grid): 2.3e4 per site;
# taken x 2 for the arrays of larger worlds that small worlds never reach.
WORLD_BYTES_PER_SITE = 5.0e4
# synth: bytes per land cell of the global grid (covariates, forcing, steady state per cell).
# Measured: 749 MB at 4 degrees (696 cells), 1,261 MB at 1 degree (11,156 cells), 200 sites:
# 4.9e4 per cell; taken x 1.5. Land cells: 11,156 at 1 degree, x (1 / resolution)^2.
GRID_BYTES_PER_CELL = 7.5e4
LAND_CELLS_AT_1_DEGREE = 11156
# quickstart: bytes per site: the world plus three steady-state configurations. Measured:
# 762 MB at 200 sites, 823 MB at 2,000: 3.4e4 per site; taken x 2.
QUICKSTART_BYTES_PER_SITE = 7.0e4
# calibrate: bytes per chain of a chunk for the sampler state and the model's work arrays
# (20 layers x 7 pools, matrices of 140 x 140 in float64 for each chain in flight). Measured
# (200 profiles, 3 chains, 70 steps): peak RSS 896 MB with chunks of 8, 962 MB with chunks of
# 64: 3.9e5 per chain; taken x 2.5.
CHAIN_BYTES = 1.0e6
# calibrate: bytes per kept draw and chain: parameters + predicted SOC slots + log density in
# float64, held about three times at the end (the chunks, the concatenation, the file buffer).
DRAW_COPIES = 3

# Run-time costs measured on the 2-core development CPU (benchmarks/README.md).
AM_EVALS_PER_S = 5.0e4  # adaptive Metropolis: model evaluations per s (measured 6.3-6.7e4)
GRADIENT_EVAL_COST = 3.0  # one value-and-gradient ~ 3 model evaluations
STEADY_STATES_PER_S = 5.0e4  # quickstart: steady states per s (CLM5 7.2e4, COMPAS 8.8e4)
COMPILE_S = 30.0  # compilation and start-up of a command, s
MEMBER_ROW_EPOCH_S = 7.0e-5  # PRODA network: s per member x training row x epoch (0.52 s/epoch
# for 10 members x 1,000 rows, 14.4 s for 200 members)
UDE_QUICK_S = 90.0  # soc-jax ude --quick: s per case (measured 55-93 s)
UDE_SEARCH_S = 300.0  # soc-jax ude with the grid search: s per case (about 30 min for all six)


def available_memory() -> int | None:
    """Memory available to a new allocation now, bytes (None if the system does not say)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``'1.5 GB'`` (decimal units)."""
    if n >= 1e15:
        return f"{n / 1e12:,.0f} TB"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_seconds(s: float) -> str:
    """A duration in the largest sensible unit: ``'45 s'``, ``'12 min'``, ``'3.4 h'``, ..."""
    for unit, size in (("years", 3.156e7), ("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if s >= 2 * size or (unit == "min" and s >= 90):
            return f"{s / size:.3g} {unit}"
    return f"{s:.0f} s"


def memory_problem(need: float, flag: str, what: str) -> str | None:
    """The refusal for ``need`` bytes if they do not fit in the memory available, else None.

    Args:
        need: the estimated peak memory, bytes.
        flag: the option that sets the size, e.g. ``"--n-sites"``.
        what: what needs the memory, e.g. ``"a world of 1e+12 sites"``.
    """
    available = available_memory()
    if available is None or need <= available:
        return None
    return (
        f"{what} needs about {format_bytes(need)} of memory (estimate), "
        f"{format_bytes(available)} available; use a smaller {flag}"
    )


def world_bytes(n_sites: int, grid_resolution: float = 4.0) -> float:
    """Peak memory of ``soc-jax synth`` (`make_world`), bytes.

    Args:
        n_sites: synthetic sites.
        grid_resolution: resolution of the global grid of land cells, degrees.
    """
    cells = LAND_CELLS_AT_1_DEGREE / grid_resolution**2
    return BASE_BYTES + WORLD_BYTES_PER_SITE * n_sites + GRID_BYTES_PER_CELL * cells


def world_problem(n_sites: int, grid_resolution: float) -> tuple[str, str] | None:
    """``(flag, refusal)`` if the world of `world_bytes` cannot fit in memory, else None; the
    flag is ``--n-sites`` or ``--grid-resolution``, whichever needs more of the memory."""
    need = world_bytes(n_sites, grid_resolution)
    sites = WORLD_BYTES_PER_SITE * n_sites
    flag = "--n-sites" if sites >= need - BASE_BYTES - sites else "--grid-resolution"
    what = f"a world of {n_sites:,} sites on a {grid_resolution:g} degree grid"
    problem = memory_problem(need, flag, what)
    if problem and flag == "--grid-resolution":
        problem = problem.replace("a smaller --grid-resolution", "a coarser --grid-resolution")
    return None if problem is None else (flag, problem)


def quickstart_bytes(n_sites: int) -> float:
    """Peak memory of ``soc-jax quickstart`` with ``n_sites`` sites, bytes."""
    return BASE_BYTES + QUICKSTART_BYTES_PER_SITE * n_sites


def calibrate_chunk_bytes(chunk: int, chains: int) -> float:
    """Peak memory of one compiled chunk of ``chunk`` profiles x ``chains`` chains, bytes."""
    return BASE_BYTES + CHAIN_BYTES * chunk * chains


def calibrate_draws_bytes(profiles: int, chains: int, kept: int, n_params: int, slots: int):
    """Memory of the kept draws of every profile (draws.nc and its copies), bytes.

    Args:
        profiles: profiles calibrated.
        chains: chains per profile.
        kept: draws kept per chain (formal steps / thin, or the gradient draws).
        n_params: parameters of the model.
        slots: observation slots per profile (predicted SOC kept with each draw).
    """
    return DRAW_COPIES * 8.0 * profiles * chains * kept * (n_params + slots + 2)


def calibrate_seconds(profiles: int, chains: int, steps: int, gradient: bool, depth: int) -> float:
    """Estimated run time of ``soc-jax calibrate``, s.

    Args:
        profiles: profiles calibrated.
        chains: chains per profile.
        steps: steps per chain (test + formal, or warm-up + draws).
        gradient: a gradient sampler (NUTS, MALA, ChEES) instead of the adaptive Metropolis.
        depth: the gradient sampler's maximum tree depth (NUTS: up to 2^depth gradients a step;
            counted as 2^(depth / 2), a typical tree).
    """
    evals = profiles * chains * (steps + 1.0)
    if gradient:
        evals *= GRADIENT_EVAL_COST * 2.0 ** (depth / 2)
    return COMPILE_S + evals / AM_EVALS_PER_S


def quickstart_seconds(n_sites: int) -> float:
    """Estimated run time of ``soc-jax quickstart`` (world + three configurations), s."""
    return 2 * COMPILE_S + 4.0 * n_sites / STEADY_STATES_PER_S


def train_seconds(members: int, rows: int, epochs: int) -> float:
    """Longest run time of ``soc-jax train`` (every epoch run; early stopping ends sooner), s."""
    return COMPILE_S + MEMBER_ROW_EPOCH_S * members * rows * epochs


def ude_seconds(cases: int, quick: bool, max_iters: int | None) -> float:
    """Estimated run time of ``soc-jax ude`` for ``cases`` cases, s (``max_iters`` scales the
    default 150 iterations; compilation is about a third of a quick case)."""
    per_case = UDE_QUICK_S if quick else UDE_SEARCH_S
    if max_iters is not None:
        per_case = per_case / 3 + per_case * 2 / 3 * min(1.0, max_iters / 150)
    return cases * per_case
