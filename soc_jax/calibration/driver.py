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
  atomic ``os.replace``). ``settings.json`` records the settings; a resumed run refuses an OUT
  written with different settings and skips finished chunks.
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
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..data import dataset_to_forcing, pad_observations, profile_problems
from ..grid import N_LAYERS, ZSOI
from ..models.registry import get_model
from . import am, gradient, postprocess
from .likelihood import make_evaluator

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


class SettingsMismatch(ValueError):
    """Resuming into an output directory written with different settings."""


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


def _atomic_write(ds: xr.Dataset, path: str) -> None:
    tmp = path + ".tmp"
    ds.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, path)


_SUMMARY_DIMS = {
    "para_summary_mean": ("profile", "parameter"),
    "para_summary_std": ("profile", "parameter"),
    "para_es": ("profile", "parameter"),
    "gr": ("profile", "parameter"),
    "rhat": ("profile", "parameter"),
    "ess_bulk": ("profile", "parameter"),
    "ess_tail": ("profile", "parameter"),
    "soc_mod_opt": ("profile", "slot"),
    "soc_std_opt": ("profile", "slot"),
    "r2": ("profile", "chain"),
    "rmse": ("profile", "chain"),
    "acceptance": ("profile", "chain"),
    "valid": ("profile", "chain"),
    "n_kept": ("profile", "chain"),
    "opt_chain": ("profile",),
    "filter_pass": ("profile",),
    "status": ("profile",),
    "gr_mean": ("profile",),
    "rhat_max": ("profile",),
    "r2_max": ("profile",),
}
_AM_CHAIN_COUNTS = (
    "n_evals",
    "n_failed_evals",
    "n_acc_failed",
    "n_test_restarts",
    "n_discards",
    "n_out_of_box",
)
"""Per-chain counts of PRODA's AM written to posterior.nc (see `_LONG_NAMES`)."""


def _chunk_dataset(ids: np.ndarray, summary: dict, states: am.ChainState) -> xr.Dataset:
    n = ids.size
    s = jax.tree.map(np.asarray, states)
    post = {}
    for k, dims in _SUMMARY_DIMS.items():
        v = np.asarray(summary[k])[:n]
        post[k] = (dims, v.astype(np.int8) if v.dtype == bool else v)
    pc = ("profile", "chain")
    post["n_evals"] = (pc, s.n_evals[:n])
    post["n_failed_evals"] = (pc, s.n_failed[:n])
    post["n_acc_failed"] = (pc, s.n_acc_failed[:n])
    post["n_discards"] = (pc, s.n_discards[:n])
    post["n_test_restarts"] = (pc, s.n_test_restarts[:n])
    post["n_out_of_box"] = (pc, s.n_out_of_box[:n])
    post["phase"] = (pc, s.phase[:n])
    post["draws"] = (("profile", "chain", "draw", "parameter"), s.rec_theta[:n])
    post["draws_soc"] = (("profile", "chain", "draw", "slot"), s.rec_pred[:n])
    return xr.Dataset(post, coords={"profile_id": ("profile", ids.astype(object))})


_GRADIENT_CHAIN_VARS = (
    "divergences",
    "mean_tree_depth",
    "max_tree_depth",
    "step_size",
    "n_grad_evals",
    "n_grad_warmup",
    "n_init_evals",
    "rescued",
)
_GRADIENT_PROFILE_VARS = {
    "divergent_share": ("profile",),
    "soc_q05": ("profile", "slot"),
    "soc_q95": ("profile", "slot"),
    "soc_nodes_mean": ("profile", "node"),
    "soc_nodes_q05": ("profile", "node"),
    "soc_nodes_q95": ("profile", "node"),
}


def _pooled_quantiles(x: np.ndarray, failed: np.ndarray, qs=(0.05, 0.95)) -> list[np.ndarray]:
    """Quantiles over (chain, draw) of x (P, C, D, k) without failed draws (NaN if none left)."""
    flat = np.where(failed[..., None], np.nan, x).reshape(x.shape[0], -1, x.shape[-1])
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out = [np.nanquantile(flat, q, axis=1) for q in qs]
            out.append(np.nanmean(flat, axis=1))
    return out  # NaN where no draw is left (a profile that was not sampled)


def _gradient_chunk(ids, gout, data, obs_all, pad, settings) -> xr.Dataset:
    """One chunk of a gradient sampler: summaries, diagnostics, posterior predictive, draws."""
    n = ids.size
    p = jax.nn.sigmoid(gout.z)
    soc, pred, failed = gradient.posterior_predictive(p, data, settings.model, settings.mode)
    soc, pred, failed = np.asarray(soc), np.asarray(pred), np.asarray(failed)
    summary = gradient.summarize(gout, pred, failed, obs_all.soc[pad], obs_all.mask[pad])
    usable = np.asarray(gout.usable)[:, None, None]
    failed = failed | ~usable
    q05, q95, _ = _pooled_quantiles(pred, failed)
    n05, n95, nmean = _pooled_quantiles(soc, failed)
    extra = {
        "divergent_share": summary["divergent_share"],
        "soc_q05": q05,
        "soc_q95": q95,
        "soc_nodes_mean": nmean,
        "soc_nodes_q05": n05,
        "soc_nodes_q95": n95,
    }
    post = {}
    for k, dims in _SUMMARY_DIMS.items():
        v = np.asarray(summary[k])[:n]
        post[k] = (dims, v.astype(np.int8) if v.dtype == bool else v)
    pc = ("profile", "chain")
    for k in _GRADIENT_CHAIN_VARS:
        post[k] = (pc, np.asarray(summary[k])[:n])
    post["n_evals"] = (pc, (summary["n_grad_evals"] + summary["n_init_evals"])[:n])
    for k, dims in _GRADIENT_PROFILE_VARS.items():
        post[k] = (dims, extra[k][:n])
    o = jax.tree.map(np.asarray, gout)
    pcd = ("profile", "chain", "draw")
    post["draws"] = (pcd + ("parameter",), np.asarray(p)[:n])
    post["draws_soc"] = (pcd + ("slot",), pred[:n])
    post["draws_soc_nodes"] = (pcd + ("node",), soc[:n])
    post["draws_logdensity"] = (pcd, np.where(np.isfinite(o.logdensity), o.logdensity, 0.0)[:n])
    post["draws_n_steps"] = (pcd, o.n_steps[:n])
    post["warmup_n_steps"] = (("profile", "chain", "warmup_step"), o.warmup_steps[:n])
    return xr.Dataset(post, coords={"profile_id": ("profile", ids.astype(object))})


def calibrate(
    profiles: xr.Dataset,
    forcing: xr.Dataset,
    out: str,
    settings: Settings,
    resume: bool = False,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Calibrate every profile, chunk by chunk, writing each finished chunk at once.

    Args:
        profiles, forcing: Datasets (see the module docstring).
        out: output directory.
        settings: `Settings`; ``width`` 0 means the profiles' layer axis.
        resume: skip chunks already in ``out`` (written with the same settings).
        progress: tqdm bar over profiles (throughput, ETA).
        on_chunk: called with the chunk index after each chunk is written (tests use it to
            interrupt a run).
        log: where messages go (skipped profiles, resume).

    Returns:
        dict with ``posterior`` (Dataset), ``draws`` (Dataset), ``skipped`` ({id: reason}),
        ``timings`` and counts.

    Raises:
        InputError: nothing to calibrate (every profile skipped) or a forcing without
            ``profile_id``; raised before anything is written or compiled.
        SettingsMismatch: resuming into ``out`` written with different settings.
        FileExistsError: ``out`` has chunks and ``resume`` is False.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError("calibrate needs float64: jax.config.update('jax_enable_x64', True)")
    width = settings.width or int(profiles.sizes["layer"])
    settings = dataclasses.replace(settings, width=width)
    if settings.sampler not in SAMPLER_NAMES:
        raise ValueError(f"sampler must be one of {SAMPLER_NAMES}, got {settings.sampler!r}")
    use_am = settings.sampler == "proda-am"
    cfg = settings.am_config()
    gcfg = None if use_am else settings.gradient_config()
    module = get_model(settings.model)
    space = module.PARAMETERS
    n_par = len(space)
    # before any output or compilation: a run that would compute nothing is an error
    keep, f_index, skipped = screen(profiles, forcing, settings.min_layers)
    n_all = int(profiles.sizes["profile"])
    if keep.size == 0:
        why = f": {skip_counts(skipped)}" if skipped else ""
        raise InputError(
            f"leaves no profile to calibrate ({n_all} of {n_all} skipped{why})", "profiles"
        )
    chunk_dir = os.path.join(out, "chunks")
    os.makedirs(chunk_dir, exist_ok=True)
    settings_path = os.path.join(out, "settings.json")
    mine = settings.record()
    existing = sorted(f for f in os.listdir(chunk_dir) if f.endswith(".nc"))
    if os.path.exists(settings_path):
        with open(settings_path) as f:
            theirs = json.load(f)
        if existing and resume and theirs != mine:
            diff = [k for k in mine if theirs.get(k) != mine[k]]
            raise SettingsMismatch(
                f"cannot resume into {out}: it was written with different settings "
                f"({', '.join(f'{k}={theirs.get(k)!r} vs {mine[k]!r}' for k in diff)})"
            )
    if existing and not resume:
        raise FileExistsError(
            f"{out} already holds {len(existing)} finished chunks: pass --resume to continue "
            "that run, or choose another --out"
        )
    with open(settings_path + ".tmp", "w") as f:
        json.dump(mine, f, indent=1)
    os.replace(settings_path + ".tmp", settings_path)

    ids_all = profiles["profile_id"].values.astype(str)
    for reason in list(skipped.values())[:_MAX_SKIP_LINES]:
        log(f"skipped: {reason}")
    if skipped:
        more = len(skipped) - _MAX_SKIP_LINES
        tail = f" ({more} more: see 'reason' in posterior.nc)" if more > 0 else ""
        log(f"skipped {len(skipped)} of {n_all} profiles: {skip_counts(skipped)}{tail}")
    obs_all = pad_observations(profiles, width)
    forcing_all = dataset_to_forcing(forcing)
    evaluate = make_evaluator(settings.model, settings.mode)
    cs = settings.chunk_size
    # chunks are padded to a multiple of the device count so that they shard over all devices
    n_dev = jax.device_count()
    cs_pad = -(-cs // n_dev) * n_dev
    n_chunks = -(-keep.size // cs) if keep.size else 0

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(keep.size), desc=f"calibrate {settings.model}", unit="profile")
    t_run = 0.0
    evals = 0
    resumed = 0
    for c in range(n_chunks):
        path = os.path.join(chunk_dir, f"chunk_{c:05d}.nc")
        sel = keep[c * cs : (c + 1) * cs]
        if os.path.exists(path):
            resumed += 1
            if bar is not None:
                bar.update(sel.size)
            continue
        pad = np.concatenate([sel, np.repeat(sel[-1:], cs_pad - sel.size)])
        fsel = f_index[c * cs : (c + 1) * cs]
        fpad = np.concatenate([fsel, np.repeat(fsel[-1:], cs_pad - fsel.size)])
        chunk_forcing = jax.tree.map(lambda a, ix=fpad: jnp.asarray(a[ix]), forcing_all)
        data = {
            # forcing-only work done once per profile, not at every one of ~210,000 evaluations
            # (model.prepare; +36 % evaluations per second for CLM5 on the 2-core CPU)
            "forcing": module.prepare(chunk_forcing, settings.mode),
            "depth": jnp.asarray(obs_all.depth[pad]),
            "obs": jnp.asarray(obs_all.soc[pad]),
            "mask": jnp.asarray(obs_all.mask[pad]),
        }
        keys = jnp.stack([profile_key(settings.seed, ids_all[i]) for i in pad])
        t0 = time.perf_counter()
        if not use_am:
            if bar is not None:
                bar.set_postfix(chunk=f"{c + 1}/{n_chunks}", sampler=settings.sampler)
            log_pi = gradient.make_log_density(settings.model, settings.mode)
            gout = gradient.run_batch(keys, data, log_pi, n_par, settings.n_chains, gcfg)
            jax.block_until_ready(gout)
            t_run += time.perf_counter() - t0
            ds = _gradient_chunk(ids_all[sel], gout, data, obs_all, pad, settings)
            evals += int(ds["n_evals"].values.sum())
            _atomic_write(ds, path)
            if bar is not None:
                bar.update(sel.size)
                bar.set_postfix(evals_per_s=f"{evals / max(t_run, 1e-9):.3g}")
            if on_chunk is not None:
                on_chunk(c)
            continue

        def show(st, c=c, n_sel=sel.size):  # within-chunk progress: chains finished so far
            if bar is not None:
                done = int(np.sum(np.asarray(st.phase)[:n_sel] >= am.DONE))
                bar.set_postfix(chunk=f"{c + 1}/{n_chunks}", chains_done=done)

        # blocks of at most 5,000 steps keep the bar alive (results do not depend on the block)
        block = min(5000, 1 + cfg.n_test + cfg.n_formal)
        states = am.run(
            data, keys, evaluate, cfg, n_par, settings.n_chains, block=block, callback=show
        )
        jax.block_until_ready(states)
        t_run += time.perf_counter() - t0
        evals += int(np.asarray(states.n_evals)[: sel.size].sum())
        summary = postprocess.summarize(states, obs_all.soc[pad], obs_all.mask[pad], cfg)
        _atomic_write(_chunk_dataset(ids_all[sel], summary, states), path)
        if bar is not None:
            bar.update(sel.size)
            bar.set_postfix(evals_per_s=f"{evals / max(t_run, 1e-9):.3g}")
        if on_chunk is not None:
            on_chunk(c)
    if bar is not None:
        bar.close()

    chunks = [
        xr.load_dataset(os.path.join(chunk_dir, f"chunk_{c:05d}.nc")) for c in range(n_chunks)
    ]
    posterior, draws = _assemble(profiles, chunks, keep, skipped, space, settings)
    _atomic_write(posterior, os.path.join(out, "posterior.nc"))
    _atomic_write(draws, os.path.join(out, "draws.nc"))
    return {
        "posterior": posterior,
        "draws": draws,
        "skipped": {ids_all[i]: r for i, r in skipped.items()},
        "run_seconds": t_run,
        "evals": evals,
        "chunks_resumed": resumed,
        "n_chunks": n_chunks,
    }


_LONG_NAMES = {
    "para_summary_mean": ("posterior mean of the normalized parameter (optimal chain)", "1"),
    "para_summary_std": ("posterior std of the normalized parameter (optimal chain)", "1"),
    "para_es": ("GEV-mode estimate of the normalized parameter (maximum-likelihood fit)", "1"),
    "gr": (
        "Gelman-Rubin, PRODA's formula with n = the last valid chain's post-burn-in count "
        "(NaN: fewer than 2 valid chains; inf: chains frozen at different values)",
        "1",
    ),
    "rhat": (
        "rank-normalised split R-hat (BlackJAX; Vehtari et al. 2021; NaN: not computed)",
        "1",
    ),
    "ess_bulk": ("bulk effective sample size of the kept samples", "1"),
    "ess_tail": ("tail effective sample size of the kept samples", "1"),
    "soc_mod_opt": ("posterior mean modelled SOC at the observed depths", "gC m-3"),
    "soc_std_opt": ("posterior std of modelled SOC at the observed depths", "gC m-3"),
    "r2": ("PRODA 'R2' of the chain (SStot around the model mean)", "1"),
    "rmse": ("RMSE of the chain's mean modelled profile", "gC m-3"),
    "acceptance": ("acceptance rate of the final formal run", "1"),
    "valid": ("1 if the chain finished its formal run with >= 4 kept samples", "1"),
    "n_kept": ("number of kept samples of the chain", "1"),
    "opt_chain": ("index of the optimal (min RMSE) chain", "1"),
    "filter_pass": ("site filter (rule: see the filter_rule attribute)", "1"),
    "status": ("status bits (0 = fine; see reason)", "1"),
    "gr_mean": ("mean over parameters of gr (NaN: not computed; inf: W = 0)", "1"),
    "rhat_max": ("max over parameters of the rank R-hat (NaN: not computed)", "1"),
    "r2_max": ("max over chains of PRODA's 'R2'", "1"),
    "n_evals": ("model evaluations of the chain (all phases)", "1"),
    "n_failed_evals": ("failed simulations of p0 or of proposals inside the box", "1"),
    "n_acc_failed": (
        "accepted failed solves (faithful: the formal run reuses the previous dJ; "
        "0 in the default mode)",
        "1",
    ),
    "n_discards": ("formal runs discarded by the acceptance-rate rule", "1"),
    "n_test_restarts": ("test-run restarts (< 50 acceptances)", "1"),
    "n_out_of_box": (
        "proposals drawn outside the box (0, 1)^n (faithful: re-drawn; default: rejected)",
        "1",
    ),
    "phase": ("final chain phase (0 test, 1 formal, 2 done, 3 failed)", "1"),
}
_GRADIENT_LONG_NAMES = {
    "acceptance": ("mean acceptance statistic of the kept transitions", "1"),
    "valid": ("1 if the chain was sampled (its profile had a simulating start)", "1"),
    "para_summary_mean": ("posterior mean of the normalized parameter (all chains)", "1"),
    "para_summary_std": ("posterior std of the normalized parameter (all chains)", "1"),
    "soc_mod_opt": ("posterior mean modelled SOC at the observed depths (all chains)", "gC m-3"),
    "soc_std_opt": ("posterior std of modelled SOC at the observed depths (all chains)", "gC m-3"),
    "gr": ("Gelman-Rubin, PRODA's formula with n = the draws per chain (all draws)", "1"),
    "divergent_share": ("share of the post-warm-up transitions that diverged (all chains)", "1"),
    "ess_bulk": ("bulk effective sample size of the draws (all chains)", "1"),
    "ess_tail": ("tail effective sample size of the draws (all chains)", "1"),
    "n_evals": ("model evaluations of the chain (start + value-and-gradient)", "1"),
    "divergences": ("divergent transitions after the warm-up", "1"),
    "mean_tree_depth": ("mean NUTS tree depth (doublings) after the warm-up (0: not NUTS)", "1"),
    "max_tree_depth": ("max NUTS tree depth after the warm-up (0: not NUTS)", "1"),
    "step_size": ("adapted leapfrog step size (unconstrained scale)", "1"),
    "n_grad_evals": ("log-density-and-gradient evaluations (warm-up + draws + 1)", "1"),
    "n_grad_warmup": ("log-density-and-gradient evaluations of the warm-up", "1"),
    "n_init_evals": ("forward evaluations spent finding a start", "1"),
    "rescued": ("1 if the chain was stuck after the warm-up and restarted from the best", "1"),
    "soc_q05": ("5 % quantile of the modelled SOC at the observed depths", "gC m-3"),
    "soc_q95": ("95 % quantile of the modelled SOC at the observed depths", "gC m-3"),
    "soc_nodes_mean": ("posterior mean modelled SOC at the 20 node depths", "gC m-3"),
    "soc_nodes_q05": ("5 % quantile of the modelled SOC at the 20 node depths", "gC m-3"),
    "soc_nodes_q95": ("95 % quantile of the modelled SOC at the 20 node depths", "gC m-3"),
}


def _assemble(profiles, chunks, keep, skipped, space, settings):
    """posterior.nc and draws.nc over all profiles (skipped: NaN/0, status 32, reason)."""
    n = int(profiles.sizes["profile"])
    n_par, nc, w = len(space), settings.n_chains, settings.width
    use_am = settings.sampler == "proda-am"
    cap = settings.am_config().capacity if use_am else settings.n_draws
    ids = profiles["profile_id"].values.astype(str)
    cat = xr.concat(chunks, dim="profile") if chunks else None
    sizes = {"profile": n, "parameter": n_par, "chain": nc, "slot": w, "draw": cap}
    sizes.update({"node": N_LAYERS, "warmup_step": settings.n_warmup})
    dims_of = dict(_SUMMARY_DIMS)
    dims_of.update({k: ("profile", "chain") for k in ("n_evals", "n_failed_evals", "n_discards")})
    dims_of.update({"n_test_restarts": ("profile", "chain"), "phase": ("profile", "chain")})
    dims_of["draws"] = ("profile", "chain", "draw", "parameter")
    dims_of["draws_soc"] = ("profile", "chain", "draw", "slot")
    dims_of.update({k: ("profile", "chain") for k in _GRADIENT_CHAIN_VARS})
    dims_of.update(_GRADIENT_PROFILE_VARS)
    dims_of["draws_soc_nodes"] = ("profile", "chain", "draw", "node")
    dims_of["draws_logdensity"] = ("profile", "chain", "draw")
    dims_of["draws_n_steps"] = ("profile", "chain", "draw")
    dims_of["warmup_n_steps"] = ("profile", "chain", "warmup_step")
    long_names = dict(_LONG_NAMES)
    rule = postprocess.filter_rule(settings.faithful) if use_am else gradient.FILTER_RULE
    long_names["filter_pass"] = (f"site filter: {postprocess.FILTER_RULES[rule]}", "1")
    if use_am:
        names = list(_SUMMARY_DIMS) + list(_AM_CHAIN_COUNTS)
        dims_of.update({k: ("profile", "chain") for k in _AM_CHAIN_COUNTS})
        if settings.faithful:
            long_names["gr"] = (
                "Gelman-Rubin as coded by PRODA's driver: n = the last valid chain's total kept "
                "count, burn-in included (NaN: fewer than 2 valid chains; inf: W = 0)",
                "1",
            )
    else:
        long_names.update(_GRADIENT_LONG_NAMES)
        names = list(_SUMMARY_DIMS) + ["n_evals", *_GRADIENT_CHAIN_VARS, *_GRADIENT_PROFILE_VARS]

    def full(name):
        """All profiles: calibrated rows from the chunks; skipped rows NaN (floats) or 0."""
        have = cat is not None and name in cat  # chunks of an older version lack new variables
        dtype = cat[name].dtype if have else np.dtype(float)
        missing = np.nan if dtype.kind == "f" and not name.startswith("draws") else 0
        a = np.full(tuple(sizes[d] for d in dims_of[name]), missing, dtype)
        if have:
            a[keep] = cat[name].values
        return a

    status = full("status").astype(int)
    for i in skipped:
        status[i] |= 32
    reason = np.array(
        [skipped.get(i, postprocess.status_reasons(int(status[i]))) for i in range(n)],
        dtype=object,
    )
    data = {}
    for name in names:
        if name == "n_kept":
            continue
        long_name, units = long_names[name]
        data[name] = (dims_of[name], full(name), {"long_name": long_name, "units": units})
    data["status"] = (("profile",), status, {"long_name": _LONG_NAMES["status"][0], "units": "1"})
    data["reason"] = (("profile",), reason, {"long_name": "why a profile is skipped or flagged"})
    mean = full("para_summary_mean")
    physical = np.asarray(space.to_physical(jnp.asarray(np.clip(np.nan_to_num(mean), 0, 1))))
    data["para_mean_physical"] = (
        ("profile", "parameter"),
        np.where(np.isfinite(mean), physical, np.nan),
        {
            "long_name": "posterior mean in physical units (NaN: missing)",
            "units": "see unit coordinate",
        },
    )
    obs = pad_observations(profiles, w)
    data["soc_obs"] = (
        ("profile", "slot"),
        np.where(np.isfinite(obs.soc), obs.soc, 0.0),
        {"long_name": "observed SOC (0 on padding and where the input is NaN)", "units": "gC m-3"},
    )
    data["depth_obs"] = (
        ("profile", "slot"),
        np.where(np.isfinite(obs.depth), obs.depth, 0.0),
        {"long_name": "observed node depth (0 where the input is NaN)", "units": "m"},
    )
    data["obs_mask"] = (
        ("profile", "slot"),
        obs.mask.astype(np.int8),
        {"long_name": "1 on observed layers", "units": "1"},
    )
    coords = {
        "profile_id": ("profile", ids.astype(object)),
        "parameter": np.asarray(space.names, dtype=object),
        "unit": ("parameter", np.asarray(space.units, dtype=object)),
    }
    attrs = {k: str(v) for k, v in settings.record().items()}
    attrs.update(filter_rule=rule, filter_rule_text=postprocess.FILTER_RULES[rule])
    attrs["missing_values"] = (
        "NaN in a float variable means missing (skipped profile, no valid chain, diagnostic "
        "not computed; see status and reason); gr, gr_mean and rhat may be inf"
    )
    post = xr.Dataset(data, coords=coords, attrs={"title": "soc_jax posterior summary", **attrs})
    draws = xr.Dataset(
        {
            "p": (
                ("profile", "chain", "draw", "parameter"),
                full("draws"),
                {"long_name": "kept normalized parameters (0 beyond n_draws)", "units": "1"},
            ),
            "soc_pred": (
                ("profile", "chain", "draw", "slot"),
                full("draws_soc"),
                {"long_name": "modelled SOC at the observed depths per draw", "units": "gC m-3"},
            ),
            "n_draws": (
                ("profile", "chain"),
                full("n_kept").astype(int),
                {"long_name": "kept draws (the first n_draws entries of draw)", "units": "1"},
            ),
        },
        coords=coords,
        attrs={"title": "soc_jax calibration draws, ArviZ (chain, draw) layout", **attrs},
    )
    if not use_am:
        for name, (var, long_name, units) in {
            "draws_soc_nodes": ("soc_nodes", "modelled SOC at the 20 nodes per draw", "gC m-3"),
            "draws_logdensity": ("logdensity", "log posterior density (unconstrained z)", "1"),
            "draws_n_steps": ("n_steps", "leapfrog steps of the draw's transition", "1"),
            "warmup_n_steps": ("warmup_n_steps", "leapfrog steps of each warm-up transition", "1"),
        }.items():
            draws[var] = (dims_of[name], full(name), {"long_name": long_name, "units": units})
        depth_attrs = {"long_name": "depth of the 20 CLM5 nodes", "units": "m"}
        draws["node_depth"] = (("node",), np.asarray(ZSOI[:N_LAYERS]), depth_attrs)
        post["node_depth"] = (("node",), np.asarray(ZSOI[:N_LAYERS]), depth_attrs)
    return post, draws
