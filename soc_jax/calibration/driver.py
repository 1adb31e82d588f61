"""Chunked, resumable batched calibration of every profile (the engine of ``soc-jax calibrate``).

* Inputs: a profiles Dataset and a forcing Dataset (``profiles.nc`` / ``forcing.nc`` as
  ``soc-jax synth`` writes them), matched by ``profile_id`` (a forcing without it is refused,
  `InputError`). Profiles that cannot be calibrated (no forcing, no layers,
  NaN/negative/zero SOC, bad depths, fewer than ``min_layers`` layers) are reported with a
  reason naming the profile and get ``status`` bit 32; the log gets one line with their count
  grouped by reason; the batch goes on. If no profile is left, `InputError` is raised before
  anything is written or compiled.
* Keys: each profile's key is ``fold_in(PRNGKey(seed), crc32(profile_id))`` and its chains'
  keys fold in the chain index, so a profile's result depends on (seed, id, settings) only,
  never on its chunk or neighbours (tested: batched == alone, resumed == uninterrupted).
* Chunks: the calibratable profiles, in file order, are cut into chunks of ``chunk_size``;
  the last chunk is padded (by repeating its last profile) so one compiled program serves all.
  Each finished chunk is written at once to ``OUT/chunks/chunk_NNNNN.nc`` (temporary file +
  atomic ``os.replace``). ``settings.json`` records the settings and the SHA-256 of the input
  files (``inputs``, `soc_jax._identity`); a resumed run refuses an OUT written with different
  settings or from different input files (one line naming what differs) and skips finished
  chunks.
* Outputs (after the last chunk): ``posterior.nc`` (profile x parameter summaries, chain
  diagnostics, modelled SOC at the observed depths, per-chain counts, status and reason; NaN
  marks a missing value, never a result; attribute ``filter_rule``), ``draws.nc``
  (the kept samples in ArviZ's (chain, draw) layout per profile), figures and ``summary.txt``.

Samplers (``Settings.sampler``): ``"proda-am"`` (default, `am`), or the gradient-based
``"nuts"``, ``"mala"``, ``"chees"`` (`gradient`), same chunks, keys, resume and outputs. For
the gradient samplers ``posterior.nc`` also holds the sampler diagnostics (divergences, tree
depth, step size, gradient evaluations per chain) and the posterior predictive (modelled SOC
at the observed depths and at the 20 node depths, mean and 5-95 % band), and ``draws.nc`` the
per-draw modelled SOC at the 20 nodes and log-density.

Multi-device: each chunk's profile axis is sharded over all visible devices
(`am.profile_sharding`, a ``NamedSharding`` on a one-axis mesh ``"profile"``); chunks are padded
to a multiple of the device count. Multi-host (``jax.distributed``) is not wired.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from .._identity import SettingsChanged, check_inputs, check_settings
from ..data import dataset_to_forcing, pad_observations, profile_problems
from ..models.registry import get_model
from . import am, gradient, postprocess
from .likelihood import make_evaluator
from .posterior_file import assemble, atomic_write, chunk_dataset, gradient_chunk

__all__ = [
    "Settings",
    "SAMPLER_NAMES",
    "profile_key",
    "screen",
    "skip_counts",
    "calibrate",
    "SettingsMismatch",
    "InputError",
]


class SettingsMismatch(SettingsChanged):
    """Resuming into an output directory written with different settings (a ``ValueError``)."""


class InputError(ValueError):
    """The inputs cannot be calibrated: ``source`` names the input ("forcing", "profiles")."""

    def __init__(self, message: str, source: str):
        super().__init__(message)
        self.source = source


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that determines the numbers of a calibration run.

    Attributes:
        model: ``"clm5"`` or ``"compas"``. mode: the model's mode (``"proda"``, ...).
        sampler: ``"proda-am"`` (PRODA's adaptive Metropolis, `am`) or a gradient-based
            sampler ``"nuts"``, ``"mala"``, ``"chees"`` (`gradient`).
        n_test, n_formal, thin, faithful: see `am.AMConfig` (proda-am only).
        n_chains: chains per profile (PRODA 3).
        seed: random seed.
        chunk_size: profiles per chunk.
        min_layers: profiles with fewer observed layers are skipped (3).
        width: observation slots per profile (padding width).
        n_warmup, n_draws, max_tree_depth, target_accept, init_tries: see
            `gradient.GradientConfig` (gradient samplers only; not recorded for proda-am, so
            its ``settings.json`` and attributes are unchanged).
    """

    model: str = "clm5"
    mode: str = "proda"
    sampler: str = "proda-am"
    n_test: int = 20000
    n_formal: int = 50000
    thin: int = 100
    faithful: bool = False
    n_chains: int = 3
    seed: int = 0
    chunk_size: int = 64
    min_layers: int = 3
    width: int = 0
    n_warmup: int = 500
    n_draws: int = 500
    max_tree_depth: int = 10
    target_accept: float = 0.0
    init_tries: int = 4

    def gradient_config(self) -> gradient.GradientConfig:
        """The gradient sampler's settings (``sampler`` must be one of `gradient.SAMPLERS`)."""
        return gradient.GradientConfig(
            sampler=self.sampler,
            n_warmup=self.n_warmup,
            n_draws=self.n_draws,
            max_tree_depth=self.max_tree_depth,
            target_accept=self.target_accept,
            init_tries=self.init_tries,
        ).validate()

    def record(self) -> dict:
        """The settings that determine the numbers (``settings.json``, NetCDF attributes).

        The gradient samplers' fields are left out for ``proda-am`` (its records are the same
        as before they existed, so old output folders resume).
        """
        d = dataclasses.asdict(self)
        if self.sampler == "proda-am":
            for k in _GRADIENT_FIELDS:
                d.pop(k)
        return d

    def am_config(self) -> am.AMConfig:
        """The sampler settings."""
        return am.AMConfig(
            n_test=self.n_test, n_formal=self.n_formal, thin=self.thin, faithful=self.faithful
        ).validate()


_MAX_SKIP_LINES = 10
"""Skipped profiles named one per line on the terminal (all are counted, grouped by reason)."""

_INPUTS_KEY = "inputs"
"""The key of ``settings.json`` under which the input files' identity is recorded."""

_GRADIENT_FIELDS = ("n_warmup", "n_draws", "max_tree_depth", "target_accept", "init_tries")
SAMPLER_NAMES: tuple[str, ...] = ("proda-am",) + gradient.SAMPLERS
"""Every ``Settings.sampler`` value."""


def profile_key(seed: int, profile_id: str) -> jax.Array:
    """A profile's random key from (seed, profile id) only: ``fold_in(key(seed), crc32(id))``."""
    h = zlib.crc32(str(profile_id).encode("utf-8")) & 0x7FFFFFFF
    return jax.random.fold_in(jax.random.PRNGKey(seed), h)


def screen(profiles: xr.Dataset, forcing: xr.Dataset, min_layers: int = 3):
    """Split profiles into calibratable ones and skipped ones (with a reason each).

    Returns:
        (index of calibratable profiles (file order), index into ``forcing`` for each,
        {profile index: reason} of skipped ones).

    Raises:
        InputError: ``forcing`` has no ``profile_id`` (nothing could be matched).
    """
    ids = [str(x) for x in profiles["profile_id"].values]  # plain str: clean messages
    reasons: dict[int, str] = {}
    for i, message in profile_problems(profiles):
        reasons.setdefault(i, message)
    if "profile_id" not in forcing.coords and "profile_id" not in forcing:
        raise InputError(
            "has no profile_id coordinate: the forcing of each profile is found by its "
            "profile_id (write it as `soc-jax synth` does)",
            "forcing",
        )
    f_ids = forcing["profile_id"].values.astype(str)
    where = {pid: j for j, pid in enumerate(f_ids)}
    mask = profiles["mask"].values.astype(bool)
    soc = profiles["soc"].values
    for i, pid in enumerate(ids):
        if i in reasons:
            continue
        if pid not in where:
            reasons[i] = f"profile {pid!r} (index {i}): no forcing with this profile_id"
            continue
        k = int(mask[i].sum())
        if k < min_layers:
            reasons[i] = f"profile {pid!r} (index {i}): fewer than {min_layers} layers ({k})"
        elif np.any(soc[i, mask[i]] <= 0):
            reasons[i] = f"profile {pid!r} (index {i}): SOC must be > 0 on observed layers"
    keep = np.array([i for i in range(len(ids)) if i not in reasons], int)
    f_index = np.array([where[ids[i]] for i in keep], int)
    return keep, f_index, reasons


def _reason_kind(message: str) -> str:
    """The rule a skip message names, without the profile and its values (for grouping)."""
    rule = message.split("): ", 1)[-1].split(":", 1)[0]
    rule = re.sub(r"^(lat|lon) \S+ ", r"\1 ", rule)
    return re.sub(r" \(\d+\)$", "", rule)


def skip_counts(skipped: dict) -> str:
    """One line: how many profiles were skipped and why, grouped by rule with counts."""
    kinds = collections.Counter(_reason_kind(r) for r in skipped.values())
    return ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())


def calibrate(
    profiles: xr.Dataset,
    forcing: xr.Dataset,
    out: str,
    settings: Settings,
    resume: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    inputs: Mapping[str, dict] | None = None,
) -> dict:
    """Calibrate every profile, chunk by chunk, writing each finished chunk at once.

    Args:
        profiles, forcing: Datasets (see the module docstring).
        out: output directory.
        settings: `Settings`; ``width`` 0 means the profiles' layer axis.
        resume: continue the run in ``out`` if it holds one (its ``settings.json``): skip its
            finished chunks; its settings, and its input files if ``inputs`` is given, must
            be the same. Nothing in ``out``: a new run (``soc-jax calibrate --resume`` refuses
            that case itself).
        progress: tqdm bar over profiles (throughput, ETA).
        on_chunk: called with the chunk index after each chunk is written (tests use it to
            interrupt a run).
        log: where messages go (skipped profiles, resume).
        inputs: the identity of the input files (`soc_jax._identity.input_identity`), recorded
            in ``settings.json`` and checked on resume (when ``out`` recorded one; the CLI
            warns when it did not); None: not recorded or checked.

    Returns:
        dict with ``posterior`` (Dataset), ``draws`` (Dataset), ``skipped`` ({id: reason}),
        ``timings`` and counts.

    Raises:
        InputError: nothing to calibrate (every profile skipped) or a forcing without
            ``profile_id``; raised before anything is written or compiled.
        SettingsMismatch: resuming into ``out`` written with different settings.
        soc_jax._identity.InputsChanged: resuming into ``out`` written from other input files.
        FileExistsError: ``out`` has chunks and ``resume`` is False.
    """
    settings = _checked_settings(profiles, settings)
    # before any output or compilation: a run that would compute nothing is an error
    keep, f_index, skipped = _screened(profiles, forcing, settings)
    chunk_dir = _claim_output(out, settings, resume, inputs)
    _log_skipped(skipped, int(profiles.sizes["profile"]), log)
    run = _Run.build(profiles, forcing, settings, keep, f_index)
    t_run, evals, resumed = _sample_chunks(run, chunk_dir, progress, on_chunk)
    chunks = [
        xr.load_dataset(os.path.join(chunk_dir, f"chunk_{c:05d}.nc")) for c in range(run.n_chunks)
    ]
    posterior, draws = assemble(profiles, chunks, keep, skipped, run.module.PARAMETERS, settings)
    atomic_write(posterior, os.path.join(out, "posterior.nc"))
    atomic_write(draws, os.path.join(out, "draws.nc"))
    return {
        "posterior": posterior,
        "draws": draws,
        "skipped": {run.ids[i]: r for i, r in skipped.items()},
        "run_seconds": t_run,
        "evals": evals,
        "chunks_resumed": resumed,
        "n_chunks": run.n_chunks,
    }


def _sample_chunks(run: _Run, chunk_dir: str, progress: bool, on_chunk) -> tuple[float, int, int]:
    """Sample and write every chunk not yet in ``chunk_dir``: (seconds sampling, model
    evaluations, chunks resumed)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(run.keep.size), desc=f"calibrate {run.settings.model}", unit="profile")
    t_run = 0.0
    evals = 0
    resumed = 0
    for c in range(run.n_chunks):
        path = os.path.join(chunk_dir, f"chunk_{c:05d}.nc")
        n_sel = run.chunk(c).size
        if os.path.exists(path):
            resumed += 1
            if bar is not None:
                bar.update(n_sel)
            continue
        ds, seconds, n_evals = _sample_chunk(run, c, bar)
        t_run += seconds
        evals += n_evals
        atomic_write(ds, path)
        if bar is not None:
            bar.update(n_sel)
            bar.set_postfix(evals_per_s=f"{evals / max(t_run, 1e-9):.3g}")
        if on_chunk is not None:
            on_chunk(c)
    if bar is not None:
        bar.close()

    return t_run, evals, resumed


def _checked_settings(profiles: xr.Dataset, settings: Settings) -> Settings:
    """``settings`` with ``width`` filled in, after checking float64, the sampler and its
    settings (ValueError)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("calibrate needs float64: jax.config.update('jax_enable_x64', True)")
    width = settings.width or int(profiles.sizes["layer"])
    settings = dataclasses.replace(settings, width=width)
    if settings.sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {settings.sampler!r}")
    get_model(settings.model)
    settings.am_config()
    if settings.sampler != "proda-am":
        settings.gradient_config()
    return settings


def _screened(profiles: xr.Dataset, forcing: xr.Dataset, settings: Settings):
    """`screen`'s (keep, f_index, skipped); `InputError` when no profile is left."""
    keep, f_index, skipped = screen(profiles, forcing, settings.min_layers)
    n_all = int(profiles.sizes["profile"])
    if keep.size == 0:
        why = f": {skip_counts(skipped)}" if skipped else ""
        raise InputError(
            f"leaves no profile to calibrate ({n_all} of {n_all} skipped{why})", "profiles"
        )
    return keep, f_index, skipped


def _claim_output(out: str, settings: Settings, resume: bool, inputs: Mapping | None) -> str:
    """Create ``out/chunks`` and write ``settings.json`` (the settings and, if given, the input
    files' identity under ``inputs``); returns the chunk folder.

    Raises:
        SettingsMismatch: resuming into ``out`` written with different settings.
        InputsChanged: resuming into ``out`` written from other input files.
        FileExistsError: ``out`` has chunks and ``resume`` is False.
    """
    settings_path = os.path.join(out, "settings.json")
    mine = settings.record()
    recorded = None
    if resume and os.path.exists(settings_path):
        with open(settings_path) as f:
            theirs = json.load(f)
        recorded = theirs.pop(_INPUTS_KEY, None)
        if inputs is not None and recorded is not None:  # none recorded: not checked
            check_inputs(out, recorded, inputs)
        try:
            check_settings(out, theirs, mine)
        except SettingsChanged as err:
            raise SettingsMismatch(str(err)) from None
    chunk_dir = os.path.join(out, "chunks")
    existing = (
        sorted(f for f in os.listdir(chunk_dir) if f.endswith(".nc"))
        if os.path.isdir(chunk_dir)
        else []
    )
    if existing and not resume:
        raise FileExistsError(
            f"{out} already holds {len(existing)} finished chunks: pass --resume to continue "
            "that run, or choose another --out"
        )
    os.makedirs(chunk_dir, exist_ok=True)
    record = dict(mine)
    if inputs is not None or recorded is not None:
        record[_INPUTS_KEY] = dict(inputs) if inputs is not None else recorded
    with open(settings_path + ".tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(settings_path + ".tmp", settings_path)
    return chunk_dir


def _log_skipped(skipped: dict, n_all: int, log: Callable[[str], None]) -> None:
    """The first skipped profiles one per line, then one line with all of them by reason."""
    for reason in list(skipped.values())[:_MAX_SKIP_LINES]:
        log(f"skipped: {reason}")
    if skipped:
        more = len(skipped) - _MAX_SKIP_LINES
        tail = f" ({more} more: see 'reason' in posterior.nc)" if more > 0 else ""
        log(f"skipped {len(skipped)} of {n_all} profiles: {skip_counts(skipped)}{tail}")


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every chunk of a run shares.

    Attributes:
        settings: the run's `Settings` (``width`` filled in).
        keep, f_index: calibratable profiles (file order) and their forcing rows.
        ids: every profile's id. obs: every profile's observations on ``width`` slots.
        forcing: the forcing PyTree (every row). module: the model module.
        n_chunks: chunks of ``chunk_size`` profiles. chunk_pad: profiles per compiled chunk
            (``chunk_size`` rounded up to a multiple of the device count, so chunks shard).
    """

    settings: Settings
    keep: np.ndarray
    f_index: np.ndarray
    ids: np.ndarray
    obs: object
    forcing: object
    module: object
    n_chunks: int
    chunk_pad: int

    @classmethod
    def build(cls, profiles, forcing, settings: Settings, keep, f_index) -> _Run:
        """Load the observations and the forcing once for every chunk."""
        cs = settings.chunk_size
        n_dev = jax.device_count()
        return cls(
            settings=settings,
            keep=keep,
            f_index=f_index,
            ids=profiles["profile_id"].values.astype(str),
            obs=pad_observations(profiles, settings.width),
            forcing=dataset_to_forcing(forcing),
            module=get_model(settings.model),
            n_chunks=-(-keep.size // cs) if keep.size else 0,
            chunk_pad=-(-cs // n_dev) * n_dev,
        )

    def chunk(self, c: int) -> np.ndarray:
        """Index of chunk ``c``'s profiles."""
        cs = self.settings.chunk_size
        return self.keep[c * cs : (c + 1) * cs]

    def inputs(self, c: int):
        """(pad, data, keys) of chunk ``c``: its profiles padded to ``chunk_pad`` (the last one
        repeated), their data PyTree and their keys (`profile_key`)."""
        cs, s = self.settings.chunk_size, self.settings
        sel = self.chunk(c)
        pad = np.concatenate([sel, np.repeat(sel[-1:], self.chunk_pad - sel.size)])
        fsel = self.f_index[c * cs : (c + 1) * cs]
        fpad = np.concatenate([fsel, np.repeat(fsel[-1:], self.chunk_pad - fsel.size)])
        chunk_forcing = jax.tree.map(lambda a, ix=fpad: jnp.asarray(a[ix]), self.forcing)
        data = {
            # forcing-only work done once per profile, not at every one of ~210,000 evaluations
            # (model.prepare; +36 % evaluations per second for CLM5 on the 2-core CPU)
            "forcing": self.module.prepare(chunk_forcing, s.mode),
            "depth": jnp.asarray(self.obs.depth[pad]),
            "obs": jnp.asarray(self.obs.soc[pad]),
            "mask": jnp.asarray(self.obs.mask[pad]),
        }
        keys = jnp.stack([profile_key(s.seed, self.ids[i]) for i in pad])
        return pad, data, keys


def _sample_chunk(run: _Run, c: int, bar) -> tuple[xr.Dataset, float, int]:
    """Sample chunk ``c``: (its Dataset, seconds of sampling, model evaluations)."""
    s = run.settings
    sel = run.chunk(c)
    pad, data, keys = run.inputs(c)
    n_par = len(run.module.PARAMETERS)
    t0 = time.perf_counter()
    if s.sampler != "proda-am":
        if bar is not None:
            bar.set_postfix(chunk=f"{c + 1}/{run.n_chunks}", sampler=s.sampler)
        log_pi = gradient.make_log_density(s.model, s.mode)
        gout = gradient.run_batch(keys, data, log_pi, n_par, s.n_chains, s.gradient_config())
        jax.block_until_ready(gout)
        seconds = time.perf_counter() - t0
        ds = gradient_chunk(run.ids[sel], gout, data, run.obs, pad, s)
        return ds, seconds, int(ds["n_evals"].values.sum())

    def show(st):  # within-chunk progress: chains finished so far
        if bar is not None:
            done = int(np.sum(np.asarray(st.phase)[: sel.size] >= am.DONE))
            bar.set_postfix(chunk=f"{c + 1}/{run.n_chunks}", chains_done=done)

    cfg = s.am_config()
    evaluate = make_evaluator(s.model, s.mode)
    # blocks of at most 5,000 steps keep the bar alive (results do not depend on the block)
    block = min(5000, 1 + cfg.n_test + cfg.n_formal)
    states = am.run(data, keys, evaluate, cfg, n_par, s.n_chains, block=block, callback=show)
    jax.block_until_ready(states)
    seconds = time.perf_counter() - t0
    summary = postprocess.summarize(states, run.obs.soc[pad], run.obs.mask[pad], cfg)
    evals = int(np.asarray(states.n_evals)[: sel.size].sum())
    return chunk_dataset(run.ids[sel], summary, states), seconds, evals
