"""Files the ``soc-jax train`` commands write beside the network, and the lines they print.

One home for: the per-member ``training.nc`` (`member_dataset`, `add_heldout`), the held-out
recovery table (``recovery.json``, ``recovery.png``, its summary lines: `write_recovery`),
``summary.txt`` (`write_summary`) and the bootstrap-cells line of ``soc-jax predict``
(`bootstrap_cells_line`). Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
import os

__all__ = [
    "add_heldout",
    "bootstrap_cells_line",
    "epochs_text",
    "member_dataset",
    "recovery_figure",
    "write_recovery",
    "write_summary",
]


def member_dataset(state, kinds: list[str], *, what: str, attrs: dict, failed: bool = False):
    """Per-member training record: best validation ``what`` (loss / misfit), its epoch, epochs
    run (and, with ``failed``, the fraction of failed steady states in the last epoch)."""
    import numpy as np
    import xarray as xr

    data = {
        "best_val": (
            "member",
            np.asarray(state.best_val, float),
            {"long_name": f"best validation {what}", "units": "1"},
        ),
        "best_epoch": (
            "member",
            np.asarray(state.best_epoch),
            {"long_name": f"epoch of best validation {what}", "units": "1"},
        ),
        "epochs": ("member", np.asarray(state.epoch), {"long_name": "epochs run", "units": "1"}),
    }
    if failed:
        data["failed_fraction"] = (
            "member",
            np.asarray(state.failed_fraction, float),
            {"long_name": "failed steady states, last epoch", "units": "1"},
        )
    coords = {"member": np.arange(len(kinds)), "kind": ("member", np.asarray(kinds, dtype=object))}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def add_heldout(member, names: list[str], hold_ids, variables: dict):
    """``member`` with held-out ``variables`` ((heldout, parameter) arrays: name -> (values,
    long name)) and the ``parameter`` and ``heldout_id`` coordinates."""
    import numpy as np

    for name, (values, long_name) in variables.items():
        member[name] = (("heldout", "parameter"), values, {"long_name": long_name, "units": "1"})
    return member.assign_coords(
        parameter=np.asarray(names, dtype=object),
        heldout_id=("heldout", hold_ids.astype(object)),
    )


def epochs_text(state) -> str:
    """``epochs run: median ..., max ...`` of the members."""
    import numpy as np

    return f"epochs run: median {int(np.median(state.epoch))}, max {int(np.max(state.epoch))}"


def write_recovery(out, table: list[dict], pred, target, names: list[str], title: str) -> list:
    """Write ``recovery.json`` and ``recovery.png``; returns the summary lines of ``table``
    (`soc_jax.proda.train.recovery_table`) under ``title``."""
    lines = [f"{title}: name R2 RMSE"]
    for r in table:
        r2 = "   -  " if r["r2"] is None else f"{r['r2']:6.3f}"
        lines.append(f"  {r['parameter']:<16} {r2} {r['rmse']:.4f}")
    with open(os.path.join(out, "recovery.json"), "w") as f:
        json.dump(table, f, indent=1)
    recovery_figure(pred, target, names, os.path.join(out, "recovery.png"))
    return lines


def recovery_figure(pred, target, names, path) -> None:
    """Held-out profiles: predicted against target parameters (those that vary, at most 12)."""
    import numpy as np

    from .maps import scatter_grid

    var = [j for j in range(len(names)) if np.std(target[:, j]) > 1e-6][:12]
    if not var:
        return
    scatter_grid(
        target,
        pred,
        var,
        names,
        path,
        xlabel="target p (normalized)",
        panel=(3.1, 2.9),
        ms=3,
        title="held-out profiles: predicted vs target parameters",
    )


def write_summary(out, lines: list[str], wrote: str) -> None:
    """Write ``summary.txt`` (``lines``), print it and which files were written to ``out``."""
    text = "\n".join(lines)
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write(text + "\n")
    print(text)
    print(f"wrote {wrote} to {out}")


def bootstrap_cells_line(info: dict) -> str:
    """Which cells the bootstrap totals sum over, and what each member lost."""
    f = info["member_failed_cells"]
    return (
        f"bootstrap totals sum over the {info['n_cells_summed']} of {info['n_cells']} cells where "
        f"every bootstrap member succeeded; {info['cells_left_out']} cells "
        f"({info['area_share_left_out']:.2%} of the area) left out of every member's total; "
        f"failed cells per member: min {min(f)}, median {int(sorted(f)[len(f) // 2])}, max "
        f"{max(f)}"
    )
