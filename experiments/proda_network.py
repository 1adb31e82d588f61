"""Experiment: PRODA's network trained on the synthetic TRUTH (an upper bound, not two-stage).

**What this measures.** The network's targets are the world's TRUE normalized parameters
(``truth.nc``), not calibrated posterior means, and Adadelta runs with learning rate 1.0 (1000x
PRODA's Keras 1e-3). Its held-out R2, NSE and Pg C are therefore an UPPER BOUND on what the
two-stage pipeline (calibration -> network) can reach: they show that the network, the
prediction and the totals are right when the targets are perfect. The real two-stage result
(targets = converged ChEES posterior means, spatial hold-out) is measured by
``experiments/e2e_vs_two_stage.py`` (docs/end_to_end.md, docs/proda.md).

1. ``soc-jax synth``: a CLM5 world (default 600 sites, 4 degree grid) whose true normalized
   parameters are documented smooth functions of the covariates;
2. ``soc-jax train``: 10 seed members + ``--bootstrap`` bootstrap members as one vmapped
   program on the true parameters of 90 % of the sites (10 % held out), Keras' recipe except
   the Adadelta learning rate (``--learning-rate``, default 1.0: Zeiler's Adadelta; Keras'
   1e-3 needs PRODA's thousands of epochs);
3. ``soc-jax predict``: parameters, steady states and stocks on every grid cell, Pg C totals
   with bootstrap quantiles, the homogeneous and default configurations, held-out NSE;
4. a Markdown table (held-out R2 per parameter, totals vs the world's true total) printed and
   written to ``--out/report.md``; figures copied to ``docs/figures/proda_*.png`` with
   ``--docs``.

Usage::

    python experiments/proda_network.py [--n-sites 600] [--bootstrap 20] [--epochs 150]
        [--out results/proda_experiment] [--docs]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time


def _parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n-sites", type=int, default=600)
    p.add_argument("--grid-resolution", type=float, default=4.0)
    p.add_argument("--ensemble", type=int, default=10)
    p.add_argument("--bootstrap", type=int, default=20)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--learning-rate", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/proda_experiment")
    p.add_argument("--docs", action="store_true", help="copy figures to docs/figures/")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = _parse(argv)
    world, net, maps = (os.path.join(args.out, d) for d in ("world", "network", "maps"))
    times = {}
    _timed(times, "synth_s", _synth_args(args, world))
    _timed(times, "train_s", _train_args(args, world, net))
    _timed(times, "predict_s", ["predict", "--network", net, "--data", world, "--out", maps])
    with open(os.path.join(net, "recovery.json")) as f:
        rec = json.load(f)
    with open(os.path.join(maps, "totals.json")) as f:
        tot = json.load(f)
    text = "\n".join(_report_lines(args, rec, tot, times))
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    if args.docs:
        _copy_to_docs(net, maps)
    return 0


def _timed(times: dict, key: str, argv: list[str]) -> None:
    """Run ``soc-jax <argv>``; its wall time (s) goes to ``times[key]``."""
    from soc_jax.cli import main as cli

    t0 = time.perf_counter()
    cli(argv)
    times[key] = time.perf_counter() - t0


def _synth_args(args, world: str) -> list[str]:
    """``soc-jax synth``: the CLM5 world."""
    return [
        "synth",
        "--n-sites",
        str(args.n_sites),
        "--grid-resolution",
        str(args.grid_resolution),
        "--seed",
        str(args.seed),
        "--out",
        world,
        "--no-figure",
    ]


def _train_args(args, world: str, net: str) -> list[str]:
    """``soc-jax train`` on the world's TRUE parameters (``truth.nc``)."""
    return [
        "train",
        "--targets",
        os.path.join(world, "truth.nc"),
        "--data",
        world,
        "--out",
        net,
        "--ensemble",
        str(args.ensemble),
        "--bootstrap",
        str(args.bootstrap),
        "--epochs",
        str(args.epochs),
        "--patience",
        str(args.patience),
        "--learning-rate",
        str(args.learning_rate),
        "--epochs-per-call",
        "10",
        "--seed",
        str(args.seed),
    ]


def _report_lines(args, rec: list, tot: dict, times: dict) -> list[str]:
    """``report.md``: held-out R2 per parameter, the totals against the world's truth."""
    lines = [
        "UPPER BOUND: network trained on the TRUE parameters (truth.nc), not on calibrated "
        "posterior means.",
        "",
        f"Synthetic CLM5 world: {args.n_sites} sites, {args.grid_resolution} degree grid; "
        f"{args.ensemble} seeds + {args.bootstrap} bootstraps, <= {args.epochs} epochs "
        f"(patience {args.patience}, Adadelta lr {args.learning_rate}).",
        "",
        "| parameter | held-out R2 | RMSE (normalized) |",
        "|---|---|---|",
    ]
    for r in rec:
        r2 = "constant" if r["r2"] is None else f"{r['r2']:.3f}"
        lines.append(f"| {r['parameter']} | {r2} | {r['rmse']:.4f} |")
    lines += _totals_lines(tot)
    return lines + [
        "",
        f"Failed steady states: {json.dumps(tot['failed'])}",
        "",
        "Wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()),
    ]


def _totals_lines(tot: dict) -> list[str]:
    """The 0-100 cm totals (Pg C) and the held-out NSE of ``totals.json``."""
    b = tot["proda_best_guess"]["top_100cm"]
    lines = [
        "",
        "| 0-100 cm SOC (Pg C) | value |",
        "|---|---|",
        f"| truth (world) | {tot.get('truth_top_100cm', float('nan')):.1f} |",
        f"| PRODA best guess (seed median) | {b:.1f} |",
    ]
    if "proda_bootstrap" in tot:
        q = tot["proda_bootstrap"]["top_100cm"]
        lines.append(
            f"| PRODA bootstrap median [14 %, 86 %] | {q['median']:.1f} "
            f"[{q['q14']:.1f}, {q['q86']:.1f}] |"
        )
    for k in ("homogeneous", "default"):
        if k in tot:
            lines.append(f"| {k} parameters | {tot[k]['top_100cm']:.1f} |")
    if "heldout_nse" in tot:
        h = tot["heldout_nse"]
        lines += [
            "",
            f"Held-out pooled NSE of layer SOC: {h['nse']:.3f} ({h['n_profiles']} "
            f"profiles, {h['n_layers']} layers, {h['n_failed_profiles']} failed).",
        ]
    return lines


def _copy_to_docs(net: str, maps: str) -> None:
    os.makedirs("docs/figures", exist_ok=True)
    for src in ("stock_maps", "parameter_maps", "latitude_profile", "parameters_vs_truth"):
        shutil.copy(os.path.join(maps, f"{src}.png"), f"docs/figures/proda_{src}.png")
    shutil.copy(os.path.join(net, "recovery.png"), "docs/figures/proda_recovery.png")


if __name__ == "__main__":
    raise SystemExit(main())
