"""Which successive-halving schedule keeps the full grid search's winner?

Successive halving (``soc-jax ude --search``, :func:`soc_jax.ude.cases.vmapped_search`) trains
every trial to a first rung, keeps the best ``1 / eta`` by terminal loss, and so on. Its risk
is the usual one: a trial that learns slowly at first (here GELU networks) can rank low at the
first rung and be dropped although it would have won at the full budget.

This experiment trains every trial of the chosen cases to the full budget (``schedule="full"``)
and records each trial's learning curve (terminal loss at its best iterate after every
iteration). A halving schedule with resumption continues training exactly where it stopped,
so its choices can be replayed on these curves: for each schedule the winner, the winner's
rank and terminal loss in the full grid, and the trial-iterations it costs.

Usage::

    python experiments/ude_halving_study.py --cases 1 2 4 5 6 --curves \
        --out results/ude_halving_study
    python experiments/ude_halving_study.py --replay results/ude_halving_study/halving_study.json

Writes ``--out/halving_study.json`` (the table; with ``--curves`` also every curve).
"""

from __future__ import annotations

import argparse
import json
import os
import time

#: Schedules replayed: (name, eta, cumulative budgets as fractions of the full budget).
SCHEDULES = (
    ("eta3 11/33/100", 3, (1 / 9, 1 / 3, 1.0)),
    ("eta3 25/50/100", 3, (1 / 4, 1 / 2, 1.0)),
    ("eta2 25/50/100", 2, (1 / 4, 1 / 2, 1.0)),
    ("eta2 12/25/50/100", 2, (1 / 8, 1 / 4, 1 / 2, 1.0)),
    ("eta3 33/100", 3, (1 / 3, 1.0)),
    ("eta2 50/100", 2, (1 / 2, 1.0)),
    # eta from the grid size, sqrt(n / 4): about 4 trials reach the full budget (the default)
    ("to4 25/50/100", None, (1 / 4, 1 / 2, 1.0)),
)


def _eta(eta, n: int, rungs: int) -> float:
    return eta if eta is not None else max(2.0, (n / 4) ** (1 / (rungs - 1)))


def replay(curves, group_of, eta, budgets, chunk):
    """Successive halving replayed on full learning curves: ``(winner, trial-iterations)``.

    ``curves[k][i]`` is trial ``k``'s terminal loss after ``i + 1`` iterations (a curve that
    ends early belongs to a trial frozen by early stopping: its last value holds).
    """
    import numpy as np

    from soc_jax.ude.cases import halving_survivors

    def at(k, n):
        c = curves[k]
        return c[min(n, len(c)) - 1]

    alive = list(range(len(curves)))
    cost, prev = 0, 0
    for r, budget in enumerate(budgets):
        if r > 0:
            scores = np.array([at(k, prev) if k in alive else np.inf for k in range(len(curves))])
            keep = max(chunk, int(np.ceil(len(alive) / eta)))
            alive = halving_survivors(scores, alive, group_of, keep, chunk)
        cost += sum(min(budget, len(curves[k])) - min(prev, len(curves[k])) for k in alive)
        prev = budget
    final = {k: at(k, prev) for k in alive}
    return min(final, key=lambda k: (final[k], k)), cost


def schedule_table(number: int, curves: list, seed: int = 0) -> list[dict]:
    """Replay every schedule of :data:`SCHEDULES` on one case's curves (grid order)."""
    import numpy as np

    from soc_jax.ude.cases import CASES, SEARCH_ADAM, SEARCH_CHUNK, search_configs

    cfgs = search_configs(CASES[number], seed)
    final = np.array([c[-1] for c in curves])
    group_of = {i: tuple(c.hidden) for i, c in enumerate(cfgs)}
    rank = {int(i): r + 1 for r, i in enumerate(np.argsort(final, kind="stable"))}
    full = len(cfgs) * SEARCH_ADAM
    table = []
    for name, eta, fractions in SCHEDULES:
        budgets = [max(1, round(f * SEARCH_ADAM)) for f in fractions]
        eta = _eta(eta, len(cfgs), len(budgets))
        win, cost = replay(curves, group_of, eta, budgets, SEARCH_CHUNK)
        table.append(
            {
                "schedule": name,
                "budgets": budgets,
                "eta": eta,
                "winner": {
                    k: getattr(cfgs[win], k)
                    for k in ("hidden", "activation", "lr", "lambda_wd", "lambda_coll")
                },
                "winner_full_rank": rank[win],
                "winner_terminal_loss": float(final[win]),
                "ratio_to_full_best": float(final[win] / final.min()),
                "trial_iterations": int(cost),
                "fraction_of_full": cost / full,
            }
        )
        print(
            f"case {number} {name:18s} eta {eta:4.1f} winner full-rank {rank[win]:3d} "
            f"loss x{final[win] / final.min():6.2f} of the best, "
            f"{cost:5d} trial-iterations ({cost / full:.0%})"
        )
    return table


def main(args: argparse.Namespace) -> int:
    """Run the full-budget searches (or load their curves), replay the schedules, save."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    if args.compile_cache:
        jax.config.update("jax_compilation_cache_dir", args.compile_cache)
    from soc_jax.ude.cases import CASES, SEARCH_ADAM, case_data, search_configs, vmapped_search

    os.makedirs(args.out, exist_ok=True)
    out: dict = {"seed": args.seed, "adam_steps": SEARCH_ADAM, "cases": {}}
    loaded: dict = {}
    for path in args.replay or []:
        with open(path) as fh:
            loaded.update(json.load(fh)["cases"])
    numbers = [int(n) for n in loaded] if loaded else args.cases
    for number in numbers:
        if loaded:
            prev = loaded[str(number)]
            curves, seconds = prev["curves"], prev["full_search_seconds"]
        else:
            case = CASES[number]
            t0 = time.perf_counter()
            rows, _ = vmapped_search(
                case,
                case_data(case, args.seed),
                seed=args.seed,
                schedule="full",
                curves=True,
                log=lambda *a: None,
            )
            seconds = time.perf_counter() - t0
            # rows come ranked; put the curves back in grid order
            fields = ("hidden", "activation", "lr", "lambda_wd", "lambda_coll")
            index = {
                tuple(tuple(v) if isinstance(v, list | tuple) else v for v in k): i
                for i, k in enumerate(
                    tuple(getattr(c, f) for f in fields) for c in search_configs(case, args.seed)
                )
            }
            curves = [None] * len(rows)
            for row in rows:
                k = tuple(tuple(row[f]) if f == "hidden" else row[f] for f in fields)
                curves[index[k]] = row["curve"]
        out["cases"][number] = {
            "trials": len(curves),
            "full_search_seconds": seconds,
            "full_best_terminal_loss": float(np.min([c[-1] for c in curves])),
            "schedules": schedule_table(number, curves, args.seed),
            **({"curves": curves} if args.curves else {}),
        }
        with open(os.path.join(args.out, "halving_study.json"), "w") as fh:
            json.dump(out, fh, indent=2)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, nargs="+", default=[1, 2, 4, 5, 6])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/ude_halving_study")
    p.add_argument("--curves", action="store_true", help="also save every learning curve")
    p.add_argument("--compile-cache", default=None, metavar="DIR")
    p.add_argument(
        "--replay",
        nargs="+",
        metavar="JSON",
        help="replay the schedules on curves saved by earlier runs (--curves) instead",
    )
    raise SystemExit(main(p.parse_args()))
