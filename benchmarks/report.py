"""Print the steady-state benchmark results (benchmarks/results/*.json) as Markdown tables.

Usage::

    python benchmarks/report.py benchmarks/results/steady_state_cpu.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

IMPLS = [
    "numpy",
    "numpy-stacked",
    "jax-dense",
    "jax-structured",
    "jax-structured-chunked",
    "jax-prepared",
    "jax-prepared-chunked",
]


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    env = data["environment"]
    lines = [
        f"{env['device']} ({env['cpu']}, {env['cpu_count']} cores), JAX {env['jax']}, "
        f"{env['precision']}, {env['date']}, load average {env['load_average_1min_at_start']:.1f} "
        f"-> {env.get('load_average_1min_at_end', float('nan')):.1f}",
        "",
        "| model | profiles | implementation | forward /s | x NumPy | x stacked | fwd+grad /s "
        "| x NumPy | grad/fwd cost | compile fwd / grad (s) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = data["results"]
    keys = sorted(
        {(r["model"], r["n"], r["impl"]) for r in rows},
        key=lambda k: (k[0], k[1], IMPLS.index(k[2])),
    )
    for model, n, impl in keys:
        sel = {r["kind"]: r for r in rows if (r["model"], r["n"], r["impl"]) == (model, n, impl)}
        fwd, grad = sel.get("forward"), sel.get("forward+gradient")
        if impl == "numpy":
            lines.append(
                f"| {model} | {n} | NumPy (loop of {fwd['measured_profiles']}) | "
                f"{fwd['rate']:,.0f} | 1 | - | - | - | - | - |"
            )
            continue
        if impl == "numpy-stacked":
            lines.append(
                f"| {model} | {n} | NumPy stacked solve ({fwd['measured_profiles']} systems, "
                f"assembly excluded) | {fwd['rate']:,.0f} | - | 1 | - | - | - | - |"
            )
            continue
        stacked = fwd.get("ratio_numpy_stacked")
        stacked = f"{stacked:,.1f}" if stacked is not None else "-"
        lines.append(
            f"| {model} | {n} | {impl} | {fwd['rate']:,.0f} | {fwd['ratio']:,.0f} | {stacked} | "
            f"{grad['rate']:,.0f} | {grad['ratio']:,.0f} | {grad['cost_vs_forward']:.2f} | "
            f"{fwd['compile_s']:.1f} / {grad['compile_s']:.1f} |"
        )
    if data.get("breakdown_us"):
        lines += ["", "Structured forward pass, microseconds per profile:", ""]
        for model, parts in data["breakdown_us"].items():
            lines.append(f"- {model}: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    return "\n".join(lines)


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["benchmarks/results/steady_state_cpu.json"]:
        print(table(Path(arg)))
