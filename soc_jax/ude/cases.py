"""The seed's six UDE cases end to end: data, search or direct training, retraining, results.

How the cases are read, their settings and scores: :mod:`soc_jax.ude.case_specs`; the batched
hyper-parameter search: :mod:`soc_jax.ude.case_search`; the results dictionary, JSON and figures:
:mod:`soc_jax.ude.case_report`. This module runs them: :func:`run_case`, :func:`start_case`
(up to the single-threaded tail), :func:`run_cases` (tails overlapped with the next case), and
the winner's retraining (:func:`retrain_batched`, :func:`refine_clean`). Their names stay
importable from here.

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Sections 3-4, Tables 1-8.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from soc_jax.ude.case_report import CaseReport, plot_case, summary_line
from soc_jax.ude.case_search import (
    GRID,
    SEARCH_ADAM,
    # SEARCH_CHUNK and search_configs: importable from here as before (experiments)
    SEARCH_CHUNK,  # noqa: F401
    SEARCH_ENSEMBLE,
    SEARCH_SCHEDULES,
    _batch_form,
    default_threads,
    grid_search,
    halving_budgets,
    halving_eta,
    halving_survivors,
    search_configs,  # noqa: F401
    sequential_reference,
    vmapped_search,
)
from soc_jax.ude.case_specs import (
    CASES,
    SEED_TABLE8,
    CaseSpec,
    case_data,
    iteration_caps,
    score,
)
from soc_jax.ude.search import train_batched_threads, unstack
from soc_jax.ude.synthetic import UDEData
from soc_jax.ude.train import TrainConfig, refine_lbfgs, train


def _winner_fields(best: dict) -> dict:
    return dict(
        hidden=tuple(best["hidden"]),
        activation=best["activation"],
        lr=best["lr"],
        lambda_coll=best["lambda_coll"],
        lambda_wd=best["lambda_wd"],
    )


def winner_config(case: CaseSpec, best: dict, *, seed: int, caps: dict) -> TrainConfig:
    """The case's plain-MSE configuration with the search winner's hyper-parameters."""
    return dataclasses.replace(case.plain, seed=seed, **_winner_fields(best), **caps)


def retrain_batched(
    case: CaseSpec,
    best: dict,
    data: UDEData,
    *,
    seed: int,
    caps: dict,
    threads: int | None = None,
    lbfgs: bool = True,
    log=print,
):
    """Retrain the winner: plain MSE and (noisy cases) a noise-aware ensemble, one program.

    Adam for the case's full Table 2-7 iteration count (or ``caps``), all members batched
    (noisy cases: plain MSE, one member, and the noise-aware likelihood, an ensemble of
    :data:`SEARCH_ENSEMBLE` seeds, predictions averaged; clean cases: plain MSE from
    1 + :data:`SEARCH_ENSEMBLE` seeds, the lowest training loss kept); then L-BFGS for the
    clean cases (sequential; seed Tables 2-7; ``lbfgs=False`` leaves it to the caller, see
    :func:`refine_clean`). The members are split into ``threads`` batches trained
    concurrently. Returns ``({method: (models, final_losses)}, Adam seconds)``.
    """
    threads = default_threads() if threads is None else threads
    win = _winner_fields(best)
    plain = winner_config(case, best, seed=seed, caps=caps)
    cfgs = [plain]
    names = ["mse"]
    if case.noise_aware is None:
        # clean data: the same batch size, used for restarts (best training loss is kept)
        for m in range(SEARCH_ENSEMBLE):
            cfgs.append(dataclasses.replace(plain, seed=seed + 1000 * (m + 1)))
            names.append("mse")
    else:
        aware = dataclasses.replace(case.noise_aware, **win, **caps)
        for m in range(SEARCH_ENSEMBLE):
            cfgs.append(dataclasses.replace(aware, seed=seed + 1000 * (m + 1)))
            names.append(f"multiplicative+ens{SEARCH_ENSEMBLE}")
    # float32 networks and activation flag as in the search; one chunk per thread (6 members on
    # 2 cores: two chunks of 3 in one round rather than three of 2 in two rounds, the third
    # alone on one core), one more compiled program per width
    res = train_batched_threads(
        [_batch_form(c, case) for c in cfgs],
        "trajectory",
        data,
        threads=threads,
        chunk=-(-len(cfgs) // max(1, threads)),
        float32=True,
        select=True,
        adam_steps=plain.adam_steps,
        patience=plain.patience,
        log=log,
        label=f"case{case.number}:retrain",
    )
    out: dict = {}
    keep = range(len(cfgs))
    if case.noise_aware is None:
        keep = [int(np.argmin(res.best_loss))]
    for k in keep:
        models, losses = out.setdefault(names[k], ([], []))
        models.append(unstack(res.models, k))
        losses.append(float(res.best_loss[k]))
    log(f"case {case.number}: retrain {len(cfgs)} members in {res.seconds:.1f} s")
    if lbfgs:
        out = refine_clean(case, plain, out, data)
    return out, res.seconds


def refine_clean(case: CaseSpec, plain: TrainConfig, trained: dict, data: UDEData) -> dict:
    """L-BFGS after Adam for the clean cases (seed Tables 2-7); noisy cases pass through.

    ``trained`` is :func:`retrain_batched`'s ``{method: (models, losses)}``; ``plain`` the
    retrained plain-MSE configuration (its ``lbfgs_steps``). Single-threaded.
    """
    if case.noise != 0.0 or plain.lbfgs_steps <= 0:
        return trained
    out = {}
    for name, (models, _) in trained.items():
        refined = [
            refine_lbfgs(m, plain, case.mode, data, label=f"case{case.number}:lbfgs")
            for m in models
        ]
        out[name] = ([r[0] for r in refined], [r[1] for r in refined])
    return out


def run_case(number: int, **kwargs) -> dict:
    """Run one case end to end: ``start_case(number, **kwargs)()`` (arguments there).

    Returns:
        The results dictionary (also written to ``out/ude_case{N}.json``).
    """
    return start_case(number, **kwargs)()


def start_case(
    number: int,
    *,
    quick: bool = True,
    seed: int = 0,
    out: str = "results/ude",
    truth: str = "reaction",
    log_every: int = 50,
    figures: bool = True,
    max_iters: int | None = None,
    compare_sequential: int = 0,
    groups: str = "width",
    threads: int | None = None,
    schedule: str = "halving",
    log=print,
):
    """One case (data, search or direct training, scores) up to its single-threaded tail.

    With the search, the returned ``finish() -> dict`` runs the clean cases' L-BFGS, the final
    solves, the JSON and the figures, so that :func:`run_cases` can overlap it with the next
    case; :func:`run_case` calls it at once.

    Args:
        number: case 1-6.
        quick: skip the grid search and train the case's configuration directly.
        seed: data-noise seed; network seeds are ``seed`` (+ member index for ensembles).
        out: output directory (JSON and figures).
        truth: ``"reaction"`` (default, networks have a law to learn) or ``"seed"``.
        log_every: print the loss every this many iterations.
        figures: write PNG figures.
        max_iters: if given, cap Adam and L-BFGS at this many iterations each (smoke tests).
        compare_sequential: if > 0 (search only), also train this many of the search's trials
            one after another with :func:`train` (the sequential search) and extrapolate its
            wall time to all trials, for the speed-up of the batched search.
        groups: how the search is split into batches (see :func:`vmapped_search`).
        threads: batches trained concurrently (default: :func:`default_threads`).
        schedule: the search's trial budgets (see :func:`vmapped_search`).
        log: printer.

    Returns:
        ``finish``, which returns the results dictionary (also written to
        ``out/ude_case{N}.json``).
    """
    case = CASES[number]
    t0 = time.perf_counter()
    data = case_data(case, seed, truth)
    caps = iteration_caps(case, quick, max_iters)
    report = CaseReport(
        case,
        data,
        truth=truth,
        seed=seed,
        quick=quick,
        caps=caps,
        out=out,
        figures=figures,
        t0=t0,
        log=log,
    )
    if quick:
        return _train_directly(case, data, report, seed=seed, caps=caps, log_every=log_every)
    return _search_and_retrain(
        case,
        data,
        report,
        seed=seed,
        caps=caps,
        adam_steps=max_iters or SEARCH_ADAM,
        compare_sequential=compare_sequential,
        groups=groups,
        threads=threads,
        schedule=schedule,
    )


def _train_directly(case: CaseSpec, data: UDEData, report: CaseReport, *, seed, caps, log_every):
    """``--quick``: train the case's own configuration and its noise-aware variant; ``finish``."""
    plain = dataclasses.replace(case.plain, seed=seed)
    plain = dataclasses.replace(plain, **caps)
    methods = {"mse": plain}
    if case.noise_aware is not None:
        aware = dataclasses.replace(
            case.noise_aware,
            hidden=plain.hidden,
            activation=plain.activation,
            lr=plain.lr,
            seed=seed,
            **caps,
        )
        name = aware.likelihood + (f"+ens{aware.ensemble}" if aware.ensemble > 1 else "")
        methods[name] = aware
    for name, cfg in methods.items():
        report.log(
            f"case {case.number}: training '{name}' H={cfg.hidden} act={cfg.activation} "
            f"lr={cfg.lr:g}"
        )
        label = f"case{case.number}:{name}"
        res = train(cfg, case.mode, data, log_every=log_every, label=label)
        report.record(name, cfg, res.models, res.final_loss, res.seconds)
    return lambda: report.conclude(methods)


def _search_and_retrain(
    case: CaseSpec,
    data: UDEData,
    report: CaseReport,
    *,
    seed,
    caps,
    adam_steps,
    compare_sequential,
    groups,
    threads,
    schedule,
):
    """The search, then the winner's batched Adam retraining; ``finish`` does the rest.

    ``finish`` runs the clean cases' L-BFGS (:func:`refine_clean`), scores every method and
    concludes the report.
    """
    log, result = report.log, report.result
    rows, timing = vmapped_search(
        case,
        data,
        seed=seed,
        adam_steps=adam_steps,
        groups=groups,
        threads=threads,
        schedule=schedule,
        log=log,
    )
    result["search"] = {**timing, "trials": rows}
    if compare_sequential:
        result["search"]["sequential"] = sequential_reference(
            case, data, compare_sequential, timing, seed=seed, log=log
        )
    best = rows[0]
    log(f"case {case.number}: best trial {best}")
    trained, t_retrain = retrain_batched(
        case, best, data, seed=seed, caps=caps, threads=threads, lbfgs=False, log=log
    )
    result["retrain_seconds"] = t_retrain

    def finish() -> dict:
        t_lbfgs = time.perf_counter()
        refined = refine_clean(case, winner_config(case, best, seed=seed, caps=caps), trained, data)
        result["lbfgs_seconds"] = time.perf_counter() - t_lbfgs
        for name, (models, losses) in refined.items():
            cfg = case.plain if name == "mse" else case.noise_aware
            report.record(name, cfg, models, losses, t_retrain)
        return report.conclude(refined)

    return finish


def run_cases(numbers, *, quick, seed, out, **options) -> list[dict]:
    """Run several cases and write ``out/ude_cases.json``; returns the per-case results.

    With the search, each case's single-threaded tail (the clean cases' L-BFGS, final solves,
    JSON, figures) runs on a background thread while the next case starts, so the core the
    L-BFGS leaves idle goes to the next search (one tail at a time); a case's ``seconds`` then
    include that overlap. Not with ``compare_sequential``: that is a timing experiment, and a
    tail running beside the batched search (but not beside the sequential one) would skew it.

    ``options`` are :func:`start_case`'s other keywords (``truth``, ``max_iters``, ``figures``,
    ``compare_sequential``, ``groups``, ``threads``, ``schedule``, ``log``), with its defaults.
    """
    kwargs = dict(quick=quick, seed=seed, out=out, **options)
    if quick or options.get("compare_sequential") or len(numbers) < 2:
        results = [run_case(n, **kwargs) for n in numbers]
    else:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ude-tail") as tails:
            pending = []
            for n in numbers:
                for f in pending:
                    if f.done():
                        f.result()  # a failed tail stops the run before the next case
                pending.append(tails.submit(start_case(n, **kwargs)))
            results = [f.result() for f in pending]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "ude_cases.json"), "w") as fh:
        json.dump(results, fh, indent=2, default=float)
    return results


__all__ = [
    "CASES",
    "CaseSpec",
    "GRID",
    "SEARCH_SCHEDULES",
    "SEED_TABLE8",
    "grid_search",
    "halving_budgets",
    "halving_eta",
    "halving_survivors",
    "plot_case",
    "run_case",
    "run_cases",
    "score",
    "start_case",
    "summary_line",
]
