"""Steps that ``soc-jax train`` (two-stage and ``--end-to-end``) and ``soc-jax predict`` share.

One home each for: reading a NetCDF input whole (`read_dataset`), the ``--holdout`` split of the
profiles (`holdout_rows`), the ``--resume`` checks (`check_resume`: a run to continue, made
from the same input files; `resume_ensemble`: with the same settings), the common
part of the network header (`network_header`), and choosing members of a stacked ensemble
(`select_members`, `usable_members`). Errors a user causes stop with ``parser.error`` (one line
naming the flag, exit 2). Heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from .._identity import ResumeError, check_run, check_settings, input_identity

__all__ = [
    "check_resume",
    "holdout_rows",
    "loop_options",
    "network_header",
    "read_dataset",
    "resume_ensemble",
    "select_members",
    "usable_members",
]


def read_dataset(path, variables: list[str] | None = None):
    """The NetCDF file at ``path`` loaded into memory (only ``variables``, if given)."""
    import xarray as xr

    with xr.open_dataset(path) as f:
        return (f if variables is None else f[variables]).load()


def holdout_rows(parser, args, ids, *sources):
    """(train_rows, hold_rows, line) of ``--holdout`` / ``--holdout-kind`` / ``--holdout-block``
    over the profiles ``ids`` (site coordinates from ``sources``, `site_coordinates`)."""
    from .holdout import describe, random_holdout, site_coordinates, spatial_holdout

    n = len(ids)
    if args.holdout == 0 or args.holdout_kind == "random":
        tr, ho = random_holdout(n, args.holdout, args.seed)
        kind = "random" if args.holdout else "none"
        return tr, ho, describe(kind, n, ho, args.holdout, args.holdout_block)
    coords = site_coordinates(ids, *sources)
    if coords is None:
        parser.error(
            "--holdout-kind spatial: no site coordinates (lat, lon) for the profiles in "
            "--targets, --data/profiles.nc or the covariates' grid_cell; use --holdout-kind random"
        )
    tr, ho, region = spatial_holdout(*coords, args.holdout, args.seed, args.holdout_block)
    line = describe("spatial", n, ho, args.holdout, args.holdout_block, region)
    return tr, ho, line


_RUN_KEYS = (
    "model",
    "mode",
    "seed",
    "target_var",
    "site_filter",
    "holdout_kind",
    "holdout_block_deg",
    "train_profile_id",
    "holdout_profile_id",
)
"""Header entries (`network_header` and each training's) that ``--resume`` may not change."""


def check_resume(parser, args, files: dict) -> dict:
    """The identity of the input ``files`` (``{name: (flag, path)}``), recorded in the header;
    with ``--resume``, first checks that ``--out`` holds a checkpoint made from the same files
    (before anything is read or compiled).

    A checkpoint of an older soc_jax (no identity recorded) resumes with a warning.
    """
    inputs = input_identity(files)
    if not args.resume:
        return inputs
    try:
        needed = ["checkpoint.eqx", "checkpoint.eqx.json"]
        warning = check_run(args.out, needed, "checkpoint.eqx.json", inputs)
    except ResumeError as err:
        parser.error(str(err))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return inputs


def _members(kinds) -> str:
    kinds = list(kinds or [])
    return f"{kinds.count('seed')} seeds, {kinds.count('bootstrap')} bootstraps"


def resume_ensemble(parser, ckpt: str, cfg, kinds: list[str], load, extra: dict | None = None):
    """The ensemble of ``ckpt`` to continue training (``--resume``), checked against ``cfg``.

    Only ``--epochs`` may change; members stopped by the old epoch limit alone run on. A
    refusal names each setting that differs (old -> new).

    Args:
        parser: the command's parser (errors).
        ckpt: checkpoint path.
        cfg: this run's training configuration (a dataclass with ``max_epochs``, ``patience``).
        kinds: this run's member kinds.
        load: the checkpoint reader, ``path -> (ensemble, config, header)``.
        extra: this run's header entries (`_RUN_KEYS` recorded in the checkpoint must match).
    """
    try:
        ens, old_cfg, header = load(ckpt)
    except (OSError, ValueError) as err:
        parser.error(f"--resume: {err}")
    old = {**dataclasses.asdict(old_cfg), "members": _members(header.get("kinds"))}
    new = {**dataclasses.asdict(cfg), "members": _members(kinds)}
    keys = [k for k in new if k != "max_epochs"]
    for k in _RUN_KEYS:
        if k in header and extra is not None and k in extra:
            old[k], new[k] = header[k], extra[k]
            keys.append(k)
    try:
        check_settings(os.path.dirname(ckpt) or ".", old, new, keys)
    except ResumeError as err:
        parser.error(f"{err} (only --epochs may change)")
    # --epochs may grow: members stopped only by the old epoch limit run on
    st = ens.state
    stopped = (st.wait >= cfg.patience) | (st.epoch >= cfg.max_epochs)
    ens = dataclasses.replace(ens, state=dataclasses.replace(st, stopped=stopped))
    print(f"resuming at epoch {header['epochs_done']}")
    return ens


def loop_options(args) -> dict:
    """The training-loop options both trainings share: keywords of
    `soc_jax.proda.train.TrainConfig` and `soc_jax.proda.end_to_end.E2EConfig`."""
    return {
        "batch_size": args.batch_size,
        "max_epochs": args.epochs,
        "patience": args.patience,
        "learning_rate": args.learning_rate,
        "hidden": args.hidden,
        "dtype": args.dtype,
        "epochs_per_call": args.epochs_per_call,
    }


def network_header(model, mode, kinds, names, vmin, vmax, train_ids, hold_ids) -> dict:
    """The header entries every trained network carries (``network.eqx.json``); each training
    adds its own after these."""
    return {
        "model": model,
        "mode": mode,
        "kinds": kinds,
        "parameter_names": names,
        "vmin": vmin.tolist(),
        "vmax": vmax.tolist(),
        "train_profile_id": train_ids.tolist(),
        "holdout_profile_id": hold_ids.tolist(),
    }


def select_members(models, rows):
    """The members ``rows`` (index or boolean mask) of stacked models."""
    import equinox as eqx
    import jax

    return jax.tree.map(lambda a: a[rows] if eqx.is_array(a) else a, models)


def usable_members(ens, kinds):
    """Members that improved during training: ``(stacked models, kinds, note or '')``.

    A member whose validation loss never improved (non-finite from the first epoch) holds its
    untrained initial weights; it is left out of the prediction, with a note."""
    import numpy as np

    from .train import never_improved

    bad = never_improved(ens.state)
    if not bad.any():
        return ens.best_models, list(kinds), ""
    keep = np.flatnonzero(~bad)
    models = select_members(ens.best_models, keep)
    k = np.asarray(kinds)[bad]
    note = (
        f"left out {int(bad.sum())} of {len(kinds)} members that never improved during training "
        f"({int(np.sum(k == 'seed'))} seeds, {int(np.sum(k == 'bootstrap'))} bootstraps: "
        "non-finite validation loss, untrained weights)"
    )
    return models, [kinds[i] for i in keep], note
