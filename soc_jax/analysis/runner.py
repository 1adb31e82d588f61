"""The pipeline's bookkeeping: its configuration, ``config.json`` and atomic, resumable stages.

`soc_jax.analysis.pipeline` runs the stages (`soc_jax.analysis.stages`) through a `_Runner`:
each stage writes into ``OUT/stages/<name>.partial/``, renamed to ``OUT/stages/<name>/`` when it
finishes, with ``OUT/stages/<name>.done.json`` recording its wall time; a finished stage is
never redone. ``OUT/config.json`` holds the configuration; resuming with another one is refused
(`ConfigMismatch`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable

import numpy as np

__all__ = ["PipelineConfig", "ConfigMismatch", "stage_names", "check_config", "MODES", "MODELS"]

MODES: dict[str, str] = {"clm5": "proda", "compas": "documented"}
"""Model modes of the pipeline (the synthetic world's, `soc_jax.data.synthetic.MODEL_MODES`)."""
MODELS: tuple[str, ...] = ("clm5", "compas")


class ConfigMismatch(ValueError):
    """Resuming into an output folder written with another configuration."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Sizes and settings of a run (the small default finishes in minutes on 2 CPU cores).

    Attributes:
        n_sites: sites (profiles) per world. grid_resolution: degrees. noise: observation
            noise of the world (log-normal sigma). seed: seed of worlds, chains and networks.
        worlds: models that generate a world (``"clm5"``, ``"compas"``).
        sampler: ``"proda-am"`` (PRODA's adaptive Metropolis, the default) or a gradient
            sampler of `soc_jax.calibration` (``"chees"``, ...).
        n_test, n_formal, thin, n_chains, chunk_size: the adaptive Metropolis
            (PRODA: 20,000 / 50,000 steps, 3 chains); n_chains and chunk_size for every sampler.
        n_warmup, n_draws: warm-up and kept draws per chain of a gradient sampler.
        site_filter: train the networks only on sites that pass the site filter (off by
            default: the short default chains rarely pass it, and the report says so).
        n_seeds, n_bootstrap: best-guess and bootstrap networks (PRODA: 10 and 200).
        epochs, patience, learning_rate, hidden: network training (PRODA: 6000 / 1200 /
            Adadelta 1e-3 / 256-512-512-256).
        attribution_members: bootstrap members used by the attribution (all if 0).
    """

    n_sites: int = 200
    grid_resolution: float = 6.0
    noise: float = 0.2
    seed: int = 0
    worlds: tuple[str, ...] = ("clm5", "compas")
    sampler: str = "proda-am"
    n_test: int = 400
    n_formal: int = 1000
    thin: int = 10
    n_chains: int = 2
    chunk_size: int = 128
    n_warmup: int = 500
    n_draws: int = 500
    site_filter: bool = False
    n_seeds: int = 3
    n_bootstrap: int = 5
    epochs: int = 150
    patience: int = 30
    learning_rate: float = 1.0
    hidden: tuple[int, ...] = (256, 512, 512, 256)
    attribution_members: int = 8

    def __post_init__(self):
        object.__setattr__(self, "worlds", tuple(self.worlds))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        bad = [w for w in self.worlds if w not in MODELS]
        if bad or not self.worlds:
            raise ValueError(f"worlds must be among {MODELS}, got {self.worlds}")
        if self.n_sites < 10:
            raise ValueError(f"n_sites must be >= 10, got {self.n_sites}")
        if self.n_seeds < 1:
            raise ValueError("n_seeds must be >= 1")

    def to_json(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def stage_names(config: PipelineConfig) -> list[str]:
    """All stages in order (``<world>/<stage>`` and the final ``report``)."""
    names = []
    for w in config.worlds:
        names.append(f"{w}_world/world")
        names += [f"{w}_world/calibrate_{m}" for m in MODELS]
        names += [f"{w}_world/train_{m}" for m in MODELS]
        names += [f"{w}_world/predict_{m}" for m in MODELS]
        names.append(f"{w}_world/components")
        names += [f"{w}_world/attribution_{m}" for m in MODELS]
        names.append(f"{w}_world/convergence")
    names.append("report")
    return names


def check_config(config: PipelineConfig, out: str) -> None:
    """Record ``config`` in ``out/config.json``, or refuse one that differs from the recorded one.

    Raises:
        ConfigMismatch: ``out`` holds a run with another configuration.
    """
    cpath = os.path.join(out, "config.json")
    mine = config.to_json()
    if os.path.exists(cpath):
        theirs = _read_json(cpath)
        if theirs != mine:
            diff = [k for k in mine if theirs.get(k) != mine[k]]
            raise ConfigMismatch(
                f"{out} holds a run with another configuration "
                f"({', '.join(f'{k}={theirs.get(k)!r} vs {mine[k]!r}' for k in diff)}); "
                "choose another --out"
            )
    else:
        _write_json(mine, cpath)


# -- helpers -------------------------------------------------------------------------------------


def _write_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_jsonable)
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x))


def _read_json(path: str):
    with open(path) as f:
        return json.load(f)


class _Runner:
    """Runs each stage once into ``out/stages``; records what ran, what was resumed, and times."""

    def __init__(self, out: str, config: PipelineConfig, bar, hook, log):
        self.out, self.config, self.bar, self.hook, self.log = out, config, bar, hook, log
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.times: dict[str, float] = {}

    def dir(self, name: str) -> str:
        return os.path.join(self.out, "stages", name)

    def path(self, name: str, file: str) -> str:
        return os.path.join(self.dir(name), file)

    def run(self, name: str, fn: Callable[[str], None], keep_partial: bool = False) -> None:
        done = self.dir(name) + ".done.json"
        if self.bar is not None:
            self.bar.set_postfix_str(name)
        if os.path.exists(done):
            self.skipped.append(name)
            self.times[name] = _read_json(done)["seconds"]
            if self.bar is not None:
                self.bar.update(1)
            return
        final, partial = self.dir(name), self.dir(name) + ".partial"
        if os.path.exists(partial) and not keep_partial:
            shutil.rmtree(partial)
        if os.path.exists(final):  # renamed but not marked: redo
            shutil.rmtree(final)
        os.makedirs(partial, exist_ok=True)
        t0 = time.perf_counter()
        if self.hook is not None:
            self.hook(name)
        fn(partial)
        seconds = time.perf_counter() - t0
        os.replace(partial, final)
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        _write_json({"stage": name, "seconds": seconds, "load_1min": load}, done)
        self.ran.append(name)
        self.times[name] = seconds
        if self.bar is not None:
            self.bar.update(1)
