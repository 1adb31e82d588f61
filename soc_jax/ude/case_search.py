"""The seed's hyper-parameter search of each UDE case (Table 1) as batched programs.

The trials of a case's grid (:func:`search_configs`) are trained together by
:func:`~soc_jax.ude.search.train_batched` (one program per batch shape), budgeted by successive
halving (:func:`halving_budgets`, :func:`halving_eta`, :func:`halving_survivors`) and ranked by
the seed's terminal loss (:func:`vmapped_search`). :func:`grid_search` and
:func:`sequential_reference` train trials one at a time (Table 1 tuning; the sequential
baseline of the speed-up).

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Sections 3-4, Tables 1-8.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from soc_jax.ude.case_specs import CaseSpec
from soc_jax.ude.search import BatchState, train_batched
from soc_jax.ude.synthetic import UDEData
from soc_jax.ude.train import TrainConfig, train

#: Seed Table 1 grid.
GRID = {
    "hidden": [(32, 16), (32, 32), (64, 16), (64, 32)],
    "activation": ["tanh", "gelu"],
    "lr": [3e-3, 5e-3],
}

#: Case 3's 144-trial sweep (seed Sec 4.2 / Table 4 / Table 8): Table 1's architectures and
#: activations, learning rates 1e-3-5e-3 (Table 4's range, and 1e-3 of Table 8's winner), weight
#: decay {1e-4, 1e-3, 1e-2} (Table 4) and the PDE (collocation) weight {1, 5} (Table 8's winner
#: has lambda_pde = 5): 4 x 2 x 3 x 3 x 2 = 144.
GRID_CASE3 = {
    "hidden": GRID["hidden"],
    "activation": GRID["activation"],
    "lr": [1e-3, 3e-3, 5e-3],
    "lambda_wd": [1e-4, 1e-3, 1e-2],
    "lambda_coll": [1.0, 5.0],
}

#: Search budget: Adam iterations per trial and early-stopping patience (the seed: "early
#: stopping accelerates hyperparameter tuning"; it gives no tuning budget).
SEARCH_ADAM, SEARCH_PATIENCE = 100, 25

#: Ensemble size of the noise-aware retraining in the noisy cases (members differ by seed);
#: with the plain-MSE member the retraining has 6 members (one chunk per thread).
SEARCH_ENSEMBLE = 5

#: Members per batch of the search. The members of a batch share one
#: adaptive step size (the smallest any needs), so the per-member cost grows with the batch
#: beyond a few members; measured per member and Adam step (Case 3, (32, 16), float32 nets):
#: 30 ms alone, 18-22 ms in batches of 3, 22 ms of 6, 39 ms of 9, 47 ms of 18.
SEARCH_CHUNK = 2


def search_configs(case: CaseSpec, seed: int = 0) -> list[TrainConfig]:
    """The seed's search for ``case``: 144 trials for Case 3, Table 1's 16 for the others."""
    grid = GRID_CASE3 if case.number == 3 else GRID
    names = list(grid)
    return [
        dataclasses.replace(case.plain, seed=seed, **dict(zip(names, values, strict=True)))
        for values in itertools.product(*(grid[n] for n in names))
    ]


def _batch_form(cfg: TrainConfig, case: CaseSpec) -> TrainConfig:
    """``cfg`` in the form every batched run shares (one compilation across cases).

    Terminal-only cases become the trajectory objective with zero trajectory and collocation
    weights (the same loss value), and every case steps to the driver knots (required for
    noisy drivers; for the clean cases it costs about 52 instead of 40 steps).
    """
    if case.mode == "terminal":
        cfg = dataclasses.replace(cfg, lambda_traj=0.0, lambda_coll=0.0)
    return dataclasses.replace(cfg, step_to_knots=True)


#: Ways to split a search into batches (``vmapped_search(groups=...)``).
SEARCH_GROUPS = ("one", "width", "architecture")

#: How trials are budgeted (``vmapped_search(schedule=...)``): ``"halving"``, successive
#: halving (every trial gets the first rung, the best go on, three rungs); ``"full"``, every
#: trial trained to the whole budget.
SEARCH_SCHEDULES = ("halving", "full")

#: Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, Hyperband, one bracket):
#: rungs at a quarter, half and all of the Adam budget (25, 50, 100 iterations); after each
#: rung the best ``1 / eta`` of the trials by terminal loss go on from where they stopped
#: (Adam state kept), with ``eta`` set so that about HALVING_FINAL trials reach the full
#: budget: two batches of two, one per core (eta 2 for 16 trials, 6 for 144). Chosen by
#: ``experiments/ude_halving_study.py``, which replays schedules on the full searches'
#: learning curves: a first rung at 11 iterations dropped GELU trials that learn slowly at
#: first and win at 100 (Case 4).
HALVING_RUNGS, HALVING_FINAL = 3, 4


def halving_budgets(adam_steps: int, rungs: int = HALVING_RUNGS) -> list[int]:
    """Cumulative Adam iterations at each rung, doubling: ``[25, 50, 100]`` for 100.

    Small budgets merge rungs that would repeat (``[1, 2]`` for 2).
    """
    return sorted({max(1, round(adam_steps / 2 ** (rungs - 1 - r))) for r in range(rungs)})


def halving_eta(trials: int, rungs: int = HALVING_RUNGS, final: int = HALVING_FINAL) -> float:
    """Fraction ``1 / eta`` kept per rung so about ``final`` trials reach the last (at least 2)."""
    return max(2.0, (trials / final) ** (1.0 / max(rungs - 1, 1)))


def halving_survivors(scores, alive, group_of, keep: int, chunk: int) -> list[int]:
    """The trials that go on to the next rung of successive halving.

    The ``keep`` best of ``alive`` by ``scores`` (lower is better, non-finite last; ties by
    index), then, so every batch stays full (one compiled program per batch size), each
    group's count is rounded up to a multiple of ``chunk`` with the group's next best trials
    (where the group has them; otherwise its worst survivors are dropped instead).

    Args:
        scores: score of every trial (indexable by trial index).
        alive: indices of the trials still in the search.
        group_of: group key of every trial (trials of a group share a batch shape).
        keep: how many to keep before rounding.
        chunk: batch size.

    Returns:
        Sorted indices of the survivors.
    """
    scores = np.asarray(scores, dtype=float)
    key = lambda k: (not np.isfinite(scores[k]), scores[k] if np.isfinite(scores[k]) else 0.0, k)
    ranked = sorted(alive, key=key)
    chosen = set(ranked[: max(0, keep)])
    for g in {group_of[k] for k in alive}:
        members = [k for k in ranked if group_of[k] == g]
        n = sum(k in chosen for k in members)
        short = -n % chunk
        spare = [k for k in members if k not in chosen]
        if short and len(spare) >= short:
            chosen.update(spare[:short])
        elif short:
            for k in [k for k in members if k in chosen][-(n % chunk) :]:
                chosen.discard(k)
    return sorted(chosen)


def default_threads() -> int:
    """Concurrent batches: the CPU count, at most 2 (one solve keeps one core busy)."""
    return max(1, min(2, os.cpu_count() or 1))


def vmapped_search(
    case: CaseSpec,
    data: UDEData,
    *,
    seed: int = 0,
    adam_steps: int = SEARCH_ADAM,
    groups: str = "width",
    threads: int | None = None,
    chunk: int = SEARCH_CHUNK,
    schedule: str = "halving",
    curves: bool = False,
    log=print,
) -> tuple[list[dict], dict]:
    """All trials of the case's search as batched programs; ranked by terminal loss.

    Each trial is trained with Adam (at most ``adam_steps``, early stopping); the selection
    criterion is the seed's "terminal loss": the MSE of the 50-yr profile against the observed
    one at the trial's best iterate (comparable across loss weights, unlike the training loss).

    ``schedule`` (:data:`SEARCH_SCHEDULES`) decides the budget of each trial. ``"halving"``
    (default; the seed: "early stopping makes the grid search efficient") is successive
    halving: every trial runs to the first rung of :func:`halving_budgets` (25 of 100
    iterations), the best ``1 / eta`` by terminal loss (:func:`halving_eta`,
    :func:`halving_survivors`) continue from where they stopped to the second (50), the best
    of those to the full budget, about 4 trials (Case 3: 144 -> 24 -> 4, 31 % of the full
    grid's trial-iterations; 16 trials: 16 -> 8 -> 4). ``"full"`` trains every trial to
    ``adam_steps``. Rows are ranked by the rung reached, then by terminal loss; each row has
    the trial's terminal loss at the end of every rung it ran (``terminal_loss_by_rung``) and,
    with ``curves=True``, after every iteration (``curve``).

    ``groups`` (:data:`SEARCH_GROUPS`) decides which trials share a batch:

    * ``"width"`` (default): one batch per pair of hidden widths; tanh and GELU members share
      it through a traced flag (one tanh per unit either way), no padding. 4 compilations.
    * ``"architecture"``: one batch per (widths, activation). 8 compilations, smaller batches.
    * ``"one"``: every trial in one batch, widths zero-padded to the largest: one compilation,
      but a (32, 16) trial pays for a (64, 32) network (3.4x the multiply-adds).

    Learning rates, loss weights and seeds are data in every case. Each group is trained in
    batches of ``chunk`` members (:data:`SEARCH_CHUNK`; equal sizes share one compilation,
    across cases too), ``threads`` batches at a time (Python threads; each XLA computation
    keeps one core busy), largest networks first. Networks are evaluated in float32.

    Returns:
        ``(rows sorted best first, timing)``.
    """
    cfgs = search_configs(case, seed)
    batches = _group_trials(cfgs, groups)
    budgets = _rung_budgets(schedule, adam_steps)
    threads = default_threads() if threads is None else max(1, int(threads))
    trials = _Trials.start(len(cfgs))
    train_chunk = functools.partial(_train_chunk, case, data, cfgs, groups != "architecture", log)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        rungs, steps = _run_rungs(
            pool, train_chunk, trials, batches, budgets, cfgs, chunk, curves, case.number, log
        )
    seconds = time.perf_counter() - t0
    trials.states.clear()
    timing = _search_timing(
        trials,
        rungs,
        steps,
        seconds,
        schedule=schedule,
        groups=groups,
        n_groups=len(batches),
        chunk=chunk,
        threads=threads,
        adam_steps=adam_steps,
    )
    _log_search(case, timing, log)
    return trials.ranked_rows(cfgs, curves), timing


def _group_trials(cfgs: list[TrainConfig], groups: str) -> dict:
    """Trial indices by batch key (``vmapped_search(groups=...)``), in trial order."""
    if groups not in SEARCH_GROUPS:
        raise ValueError(f"groups must be one of {SEARCH_GROUPS}, got {groups!r}")
    batches: dict = {}
    for k, cfg in enumerate(cfgs):
        key = {
            "one": ("padded", "select"),
            "width": (tuple(cfg.hidden), "tanh/gelu"),
            "architecture": (tuple(cfg.hidden), cfg.activation),
        }[groups]
        batches.setdefault(key, []).append(k)
    return batches


def _rung_budgets(schedule: str, adam_steps: int) -> list[int]:
    """Cumulative Adam iterations at the end of each rung of ``schedule``."""
    if schedule not in SEARCH_SCHEDULES:
        raise ValueError(f"schedule must be one of {SEARCH_SCHEDULES}, got {schedule!r}")
    return [adam_steps] if schedule == "full" else halving_budgets(adam_steps)


@dataclasses.dataclass
class _Trials:
    """What the search knows of each trial so far (indexed by trial).

    Attributes:
        loss, term: best training loss and its terminal MSE.
        iterations: Adam iterations run.
        rung: last rung reached (0-based).
        states: :class:`~soc_jax.ude.search.BatchState` of each trial, to resume it.
        by_rung: terminal MSE at the end of every rung run.
        curve: terminal MSE after every iteration (``curves=True``).
    """

    loss: np.ndarray
    term: np.ndarray
    iterations: np.ndarray
    rung: np.ndarray
    states: dict
    by_rung: dict
    curve: dict

    @classmethod
    def start(cls, n: int) -> _Trials:
        """``n`` trials not yet trained."""
        return cls(
            np.full(n, np.inf),
            np.full(n, np.inf),
            np.zeros(n, dtype=int),
            np.zeros(n, dtype=int),
            {},
            {k: [] for k in range(n)},
            {k: [] for k in range(n)},
        )

    def record(self, idx: list[int], res, r: int, curves: bool) -> None:
        """Take the outcome ``res`` (:class:`BatchResult`) of trials ``idx`` at rung ``r``."""
        self.loss[idx], self.term[idx] = res.best_loss, res.terminal_mse
        for j, k in enumerate(idx):
            self.states[k] = res.state.take([j])
            self.iterations[k] = int(res.state.iterations[j])
            self.rung[k] = r
            self.by_rung[k].append(float(res.terminal_mse[j]))
            if curves:
                self.curve[k].extend(float(v) for v in res.terminal_history[:, j])

    def ranked_rows(self, cfgs: list[TrainConfig], curves: bool) -> list[dict]:
        """One row per trial, ranked by the rung reached, then terminal loss, then index."""
        rows = []
        for k, cfg in enumerate(cfgs):
            rows.append(
                {
                    "hidden": list(cfg.hidden),
                    "activation": cfg.activation,
                    "lr": cfg.lr,
                    "lambda_term": cfg.lambda_term,
                    "lambda_coll": cfg.lambda_coll,
                    "lambda_wd": cfg.lambda_wd,
                    "train_loss": float(self.loss[k]),
                    "terminal_loss": float(self.term[k]),
                    "iterations": int(self.iterations[k]),
                    "rung": int(self.rung[k]) + 1,
                    "terminal_loss_by_rung": self.by_rung[k],
                    **({"curve": self.curve[k]} if curves else {}),
                }
            )
        order = sorted(range(len(rows)), key=lambda k: (-self.rung[k], self.term[k], k))
        return [rows[i] for i in order]


def _train_chunk(case: CaseSpec, data: UDEData, cfgs, select: bool, log, item):
    """Train chunk ``item = (key, idx, more, resume)`` ``more`` iterations: ``(idx, res)``."""
    (hidden, act), idx, more, resume = item
    res = train_batched(
        [_batch_form(cfgs[k], case) for k in idx],
        "trajectory",
        data,
        adam_steps=more,
        patience=SEARCH_PATIENCE,
        log=log,
        log_every=max(more, 1),
        label=f"case{case.number}:search H={hidden} {act}",
        float32=True,
        select=select,
        resume=resume,
    )
    return idx, res


def _run_rungs(pool, train_chunk, trials, batches, budgets, cfgs, chunk, curves, number, log):
    """Train every rung in turn, pruning by successive halving between: ``(rungs, step s)``."""
    group_of = {k: key for key, idx in batches.items() for k in idx}

    def cost(key):
        return max(cfgs[k].hidden[0] * cfgs[k].hidden[1] for k in batches[key]) * len(batches[key])

    order = sorted(batches, key=cost, reverse=True)
    alive = list(range(len(cfgs)))
    rungs, steps = [], []
    for r, budget in enumerate(budgets):
        t_rung = time.perf_counter()
        if r > 0:
            eta = halving_eta(len(cfgs), rungs=len(budgets))
            keep = max(chunk, int(np.ceil(len(alive) / eta)))
            alive = halving_survivors(trials.term, alive, group_of, keep, chunk)
        more = budget - (budgets[r - 1] if r else 0)
        chunks = _round_robin(batches, order, alive, chunk)
        items = [
            (key, idx, more, BatchState.concat([trials.states[k] for k in idx]) if r else None)
            for key, idx in chunks
        ]
        for idx, res in pool.map(train_chunk, items):
            trials.record(idx, res, r, curves)
            steps.append(res.step_seconds)
        rungs.append(
            {
                "budget": budget,
                "trials": len(alive),
                "batches": len(chunks),
                "seconds": time.perf_counter() - t_rung,
            }
        )
        if len(budgets) > 1:
            log(
                f"case {number}: rung {r + 1}/{len(budgets)}: {len(alive)} trials to "
                f"{budget} iterations in {rungs[-1]['seconds']:.1f} s"
            )
    return rungs, steps


def _round_robin(batches: dict, order: list, alive: list[int], chunk: int) -> list:
    """``(key, trial indices)`` chunks of the live trials, round robin over the groups.

    Largest networks first: the threads start on different programs, so no two compile the
    same one at once (JAX does not share an in-flight compilation), and later chunks of a
    group find it compiled.
    """
    per_group = []
    for key in order:
        idx = [k for k in batches[key] if k in set(alive)]
        per_group.append([(key, idx[i : i + chunk]) for i in range(0, len(idx), chunk)])
    return [c for row in itertools.zip_longest(*per_group) for c in row if c is not None]


def _search_timing(
    trials, rungs, steps, seconds, *, schedule, groups, n_groups, chunk, threads, adam_steps
) -> dict:
    """The search's ``timing`` record (see :func:`vmapped_search`)."""
    trial_iterations = int(trials.iterations.sum())
    n = len(trials.loss)
    return {
        "trials": n,
        "schedule": schedule,
        "rungs": rungs,
        "groups": n_groups,
        "grouping": groups,
        "batches": sum(r["batches"] for r in rungs),
        "members_per_batch": chunk,
        "threads": threads,
        "iterations": int(trials.iterations.max()),
        "trial_iterations": trial_iterations,
        "trial_iterations_full_grid": n * adam_steps,
        "seconds": seconds,
        # NaN when every timed step was a first (compiling) one, as with 1-2 iterations
        "median_batched_step_ms": (
            1e3 * float(np.nanmedian(steps)) if np.isfinite(steps).any() else float("nan")
        ),
        "wall_ms_per_trial_iteration": 1e3 * seconds / max(trial_iterations, 1),
        "network_precision": "float32 networks in a float64 solve",
    }


def _log_search(case: CaseSpec, timing: dict, log) -> None:
    """One line: trials, schedule, batches, trial-iterations and wall time of the search."""
    log(
        f"case {case.number}: search {timing['trials']} trials ({timing['schedule']}, "
        f"{timing['batches']} batches, {timing['threads']} at a time), "
        f"{timing['trial_iterations']} trial-iterations (full grid "
        f"{timing['trial_iterations_full_grid']}) in {timing['seconds']:.1f} s "
        f"({timing['wall_ms_per_trial_iteration']:.1f} ms per trial-iteration)"
    )


def grid_search(case: CaseSpec, data: UDEData, *, adam_steps: int = 150, log=print) -> list[dict]:
    """Seed Table 1 grid (16 configs), each tuned with Adam only, ranked by training loss.

    Adam-only tuning keeps one compilation per architecture (the learning rate is traced).
    """
    rows = []
    for hidden, act, lr in itertools.product(GRID["hidden"], GRID["activation"], GRID["lr"]):
        cfg = dataclasses.replace(
            case.plain, hidden=hidden, activation=act, lr=lr, adam_steps=adam_steps, lbfgs_steps=0
        )
        res = train(cfg, case.mode, data)
        rows.append(
            {
                "hidden": list(hidden),
                "activation": act,
                "lr": lr,
                "loss": res.final_loss[0],
                "seconds": res.seconds,
            }
        )
        log(
            f"  grid H={hidden} act={act} lr={lr:g}: loss={res.final_loss[0]:.3e} "
            f"({res.seconds:.1f} s)"
        )
    return sorted(rows, key=lambda r: r["loss"])


def sequential_reference(
    case: CaseSpec, data: UDEData, n: int, timing: dict, *, seed: int = 0, log=print
) -> dict:
    """Time ``n`` trials of the search trained one at a time (the sequential search).

    The trials are spread over the architectures (every ``len // n``-th trial), each trained by
    :func:`train` (Adam only) for the batched search's iteration count without early stopping
    (so the comparison gives the sequential search the same work per trial as the batched one
    at most); compile time is included, as a sequential search pays it per architecture.
    """
    cfgs = search_configs(case, seed)
    picks = cfgs[:: max(1, len(cfgs) // n)][:n]
    t0 = time.perf_counter()
    for cfg in picks:
        cfg = dataclasses.replace(
            cfg, adam_steps=timing["iterations"], lbfgs_steps=0, patience=10**9
        )
        train(cfg, case.mode, data)
    sec = time.perf_counter() - t0
    per_trial = sec / len(picks)
    est = per_trial * len(cfgs)
    # the same schedule run one trial at a time: the same trial-iterations at the sequential
    # cost per iteration (compile included, so an upper bound, as above)
    est_same = sec / (len(picks) * max(timing["iterations"], 1)) * timing["trial_iterations"]
    out = {
        "trials_timed": len(picks),
        "seconds_timed": sec,
        "seconds_per_trial": per_trial,
        "extrapolated_seconds": est,
        "speedup_vs_batched": est / timing["seconds"],
        "extrapolated_seconds_same_schedule": est_same,
        "speedup_same_schedule": est_same / timing["seconds"],
    }
    log(
        f"case {case.number}: sequential search {len(picks)} trials in {sec:.1f} s -> "
        f"{est:.0f} s for the full grid of {len(cfgs)} (extrapolated), {est_same:.0f} s for "
        f"the same schedule; batched {timing['seconds']:.0f} s: speed-up "
        f"x{out['speedup_vs_batched']:.1f} (full grid), x{out['speedup_same_schedule']:.1f} "
        "(same schedule)"
    )
    return out


__all__ = [
    "GRID",
    "GRID_CASE3",
    "HALVING_FINAL",
    "HALVING_RUNGS",
    "SEARCH_ADAM",
    "SEARCH_CHUNK",
    "SEARCH_ENSEMBLE",
    "SEARCH_GROUPS",
    "SEARCH_PATIENCE",
    "SEARCH_SCHEDULES",
    "default_threads",
    "grid_search",
    "halving_budgets",
    "halving_eta",
    "halving_survivors",
    "search_configs",
    "sequential_reference",
    "vmapped_search",
]
