"""The synthetic world: sites, covariates, forcing, known true parameters and observed profiles.

No real data can be shipped, so the embedded default dataset is a deterministic synthetic world
(`make_world`). Everything follows from the seed:

1. **Land.** A plausible land mask (continent-like ellipses perturbed by a smooth random field,
   56 S to 78 N, no ice sheets). Sites are drawn uniformly by area on land; the global grid is a
   regular lat-lon grid (default 2 degrees) of land cells.
2. **Covariates** (the 60 of SPEC 5) are deterministic functions of location and of a few smooth
   random fields on the sphere (sums of random plane waves on the unit sphere), so sites and grid
   cells share one world. Temperature falls with latitude (``29 - 40 sin^2(lat)`` degC) and
   elevation (6.5 K/km); precipitation has an ITCZ, dry subtropics and mid-latitude storm
   tracks; monthly temperature and precipitation series give BIO1-BIO19 exactly; texture is a
   softmax of smooth fields (sand + silt + clay = 100 %); pH falls with wetness and cold; bulk
   density rises with sand and depth; CEC rises with clay; Koppen, land cover, texture class,
   soil orders and acidity grade are categorical codes derived from these; NPP is the Miami
   model (Lieth 1975) times 0.45 gC per g dry matter.
3. **Forcing** per site from its covariates: soil temperature per layer and month (annual wave
   damped and lagged with depth, damping depth 2.2 m, +1.5 K snow insulation in cold climates);
   active layer = deepest thawing interface; bedrock layer from depth to bedrock; moisture scalar
   from the aridity index P/PET and the monthly rain; oxygen scalar reduced in wet, deep soil;
   nitrogen scalar FPI from a smooth field and temperature; sand per layer from the 0/30/100 cm
   sand; litter inputs = NPP x season x root profile (Jackson et al. 1996 beta by biome) x
   CWD/metabolic/cellulose/lignin shares (CWD only under forests, more lignin under conifers).
4. **Truth.** Normalized parameters per site ``p_j = c_j + a_j tanh(w_j . u)``, with the
   standardized covariates ``u = (uT, uP, uC, upH, uN, uT*uC)``: ``uT = (BIO1 - 10)/10``,
   ``uP = ln(BIO12/700)/0.8``, ``uC = (Clay_0cm - 22)/10``, ``upH = pH_Water_0cm - 6.3``,
   ``uN = ln(NPP/400 gC m-2 yr-1)/0.7``. The table `truth_table` lists ``c, a, w`` per
   parameter (fixed, not seed-dependent); it is saved with the world. A site whose steady state
   fails (``ok`` False) gets its truth **redrawn** toward the centre, ``p = c + 0.5^r (p - c)``
   for r = 1, 2, 3 and finally ``p = c``; the number of redraws is saved (``truth.redraws``).
   Sites still failing are removed and listed in ``World.failed`` (never silently).
5. **Observations.** 3-10 layers per profile, bottoms mostly 60-200 cm (all deeper than 60 cm,
   so PRODA's screening keeps every profile), thin layers at the top; the model's layer SOC is
   PCHIP-interpolated to the node depths (`soc_jax.grid.pchip_interpolate`, SPEC 1.11) and
   multiplied by ``exp(noise * eps)``, eps ~ N(0, 1) per layer (noise = 0: exactly the model).
   SOC content is back-computed with the site's bulk density and coarse fragments (SPEC 9).

The process model runs in float64 with ``jax.jit(jax.vmap(steady_state))`` in chunks of 2,048
sites (one compiled shape for every world), in the mode given by `MODEL_MODES`.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..forcing import Forcing
from ..grid import N_LAYERS, ZSOI, pchip_interpolate, stocks
from ..models.registry import MODELS, get_model, is_failure
from ._environment import (
    _FIELDS,
    _covariates,
    _forcing,
    _grid_cells,
    _sample_sites,
    _SmoothFields,
)
from ._truth import _truth_dataset, true_parameters, truth_table
from .covariates import COVARIATE_NAMES, covariates_dataset, nearest_cell
from .forcing_io import dataset_to_forcing, forcing_to_dataset, write_forcing
from .netcdf import write_netcdf
from .schema import ObservationBatch, _assemble, pad_observations, write_profiles

__all__ = ["World", "make_world", "truth_table", "true_parameters", "MODELS", "MODEL_MODES"]

MODEL_MODES: dict[str, str] = {"clm5": "proda", "compas": "documented"}
"""Mode of each model's ``steady_state`` in the world: CLM5 as PRODA codes it (beta input
profile, capped moisture scalar); COMPAS as documented (PRODA's ``mic_ratio < 10`` check is an
MCMC acceptance rule, not part of the model, and would reject about half of the sites)."""
_CHUNK = 2048  # sites per compiled steady-state call (one compiled shape for every world)


@functools.lru_cache(maxsize=4)
def _solver(model: str) -> Callable:
    module = get_model(model)

    def one(params, forcing):
        result = module.steady_state(params, forcing, mode=MODEL_MODES[model])
        return result.soc, ~is_failure(result)

    return jax.jit(jax.vmap(one))


def _bucket(n: int) -> int:
    """Padded batch size: always `_CHUNK`, so one compiled function serves every world."""
    del n
    return _CHUNK


def _steady_state(model: str, p: np.ndarray, forcing: Forcing, progress=None) -> tuple:
    """soc (n, 20) gC m-3 and ok (n,) for normalized parameters p (n, n_params), chunked."""
    space = get_model(model).PARAMETERS
    x = np.asarray(space.to_physical(jnp.asarray(p)), dtype=float)
    n = p.shape[0]
    size = _bucket(n)
    solve = _solver(model)
    arrays = forcing.as_numpy()
    soc = np.empty((n, N_LAYERS))
    ok = np.empty(n, bool)
    for s in range(0, n, size):
        e = min(s + size, n)
        idx = np.minimum(np.arange(s, s + size), e - 1)  # pad by repeating the last site
        f = Forcing(**{k: jnp.asarray(v[idx]) for k, v in arrays.items()})
        out_soc, out_ok = solve(jnp.asarray(x[idx]), f)
        soc[s:e] = np.asarray(out_soc)[: e - s]
        ok[s:e] = np.asarray(out_ok)[: e - s]
        if progress is not None:
            progress.update(e - s)
    return soc, ok


def _solve_with_redraws(model, cov, forcing, progress=None):
    """Truth, soc and the redraw count; failing sites shrink toward the centre (item 4)."""
    p = true_parameters(cov, model)
    centre = np.array([v[0] for v in truth_table(model).values()])
    soc, ok = _steady_state(model, p, forcing, progress)
    redraws = np.zeros(p.shape[0], np.int32)
    for r in (1, 2, 3, 4):
        bad = np.flatnonzero(~ok)
        if bad.size == 0:
            break
        shrink = 0.5**r if r < 4 else 0.0
        p[bad] = centre + shrink * (
            true_parameters({k: v[bad] for k, v in cov.items()}, model) - centre
        )
        soc[bad], ok[bad] = _steady_state(model, p[bad], forcing[bad])
        redraws[bad] = r
    return p, soc, ok, redraws


def _observation_layout(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Layer edges (n, 11) in m (NaN beyond each profile) and the number of layers (n,)."""
    n_layers = rng.choice(
        np.arange(3, 11), size=n, p=[0.08, 0.14, 0.2, 0.18, 0.14, 0.11, 0.08, 0.07]
    )
    bottom = rng.choice(
        [0.8, 0.9, 1.0, 1.2, 1.5, 2.0, 2.5], size=n, p=[0.1, 0.15, 0.3, 0.15, 0.13, 0.12, 0.05]
    )
    bottom = bottom * rng.uniform(0.95, 1.1, n)
    gamma = rng.uniform(1.2, 1.8, n)
    k = np.arange(11)[None, :]
    frac = (k / n_layers[:, None]) ** gamma[:, None]
    edges = np.round(100.0 * bottom[:, None] * frac) / 100.0
    for j in range(1, 11):  # at least 2 cm per layer
        edges[:, j] = np.maximum(edges[:, j], edges[:, j - 1] + 0.02)
    edges = np.where(k <= n_layers[:, None], edges, np.nan)
    return edges, n_layers


def _interp_depth(values3: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Linear interpolation of (n, 3) values at 0, 30, 100 cm to depths (n, w) m (flat beyond)."""
    d = np.clip(depth, 0.0, 1.0)
    upper = d > 0.3
    w_lo = np.where(upper, (d - 0.3) / 0.7, d / 0.3)
    a = np.where(upper, values3[:, 1:2], values3[:, 0:1])
    b = np.where(upper, values3[:, 2:3], values3[:, 1:2])
    return (1 - w_lo) * a + w_lo * b


@jax.jit
def _pchip_batch(soc20, depth):
    return jax.vmap(lambda y, q: pchip_interpolate(jnp.asarray(ZSOI[:N_LAYERS]), y, q))(
        soc20, depth
    )


@dataclasses.dataclass
class World:
    """A synthetic world with known truth.

    Attributes:
        profiles: observed profiles Dataset (schema of `soc_jax.data.schema`), dims
            (profile, layer); also ``soc_model`` (profile, node) the model's layer SOC at the 20
            nodes, gC m-3, and ``stock_100cm`` (profile) gC m-2.
        covariates: Dataset (profile, covariate) with the 60 covariates of SPEC 5.
        forcing: Dataset (profile, month, layer) of the `Forcing` fields (see `forcing_io`).
        truth: Dataset (profile, parameter): ``p`` normalized, ``physical`` values, ``redraws``;
            the truth table (``centre``, ``amplitude``, ``weight`` (parameter, feature)).
        grid: Dataset (cell): lat/lon of land cells of the regular grid, covariates, forcing
            fields, true ``p`` and the model ``soc_model`` (cell, node) and ``stock_100cm``.
        model: ``"clm5"`` or ``"compas"``. seed, noise: as given.
        failed: ids of sites removed because even the centre truth failed (normally empty).
        timings: seconds per stage.
    """

    profiles: xr.Dataset
    covariates: xr.Dataset
    forcing: xr.Dataset
    truth: xr.Dataset
    grid: xr.Dataset
    model: str
    seed: int
    noise: float
    failed: list[str] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    @property
    def n_sites(self) -> int:
        """Number of sites (profiles)."""
        return int(self.profiles.sizes["profile"])

    @property
    def lat(self) -> np.ndarray:
        """(n,) site latitudes, degrees north."""
        return self.profiles["lat"].values

    @property
    def lon(self) -> np.ndarray:
        """(n,) site longitudes, degrees east."""
        return self.profiles["lon"].values

    def forcing_batch(self) -> Forcing:
        """The sites' `Forcing` with a leading profile axis (numpy float64 leaves)."""
        return dataset_to_forcing(self.forcing)

    def grid_forcing_batch(self) -> Forcing:
        """The grid cells' `Forcing` with a leading cell axis."""
        return dataset_to_forcing(self.grid, dim="cell")

    def true_params(self, physical: bool = False) -> np.ndarray:
        """(n, n_params) true parameters, normalized (default) or physical."""
        return self.truth["physical" if physical else "p"].values

    def observations(self, width: int | None = None) -> ObservationBatch:
        """Observed layers padded to ``width`` slots (`soc_jax.data.pad_observations`)."""
        return pad_observations(self.profiles, width)

    def to_netcdf(self, out: str | os.PathLike) -> dict[str, str]:
        """Write profiles, covariates, forcing, truth and grid NetCDF files into ``out``.

        Returns:
            name -> path of each file written.
        """
        os.makedirs(out, exist_ok=True)
        paths = {
            k: os.path.join(out, f"{k}.nc")
            for k in ("profiles", "covariates", "forcing", "truth", "grid")
        }
        what = f"model {self.model}, seed {self.seed}, noise {self.noise}"
        titles = {
            "covariates": "synthetic world: the 60 PRODA covariates at the sites",
            "forcing": "synthetic world: monthly forcing at the sites",
            "truth": "synthetic world: true parameters at the sites",
            "grid": "synthetic world: global grid of land cells (covariates, forcing, truth)",
        }
        source = f"soc_jax synthetic world ({what})"
        for key in titles:
            ds = getattr(self, key)
            ds.attrs.setdefault("title", titles[key])
            ds.attrs.setdefault("source", source)
        write_profiles(self.profiles, paths["profiles"])
        write_netcdf(self.covariates, paths["covariates"])
        write_forcing(self.forcing, paths["forcing"])
        write_netcdf(self.truth, paths["truth"])
        write_netcdf(self.grid, paths["grid"])
        return paths

    def summary(self) -> str:
        """A short text summary: sizes, SOC quantiles, stocks, redraws."""
        soc = self.profiles["soc"].values[self.profiles["mask"].values]
        q = np.quantile(soc, [0.01, 0.25, 0.5, 0.75, 0.99])
        stock = self.profiles["stock_100cm"].values / 1000.0
        redrawn = float((self.truth["redraws"].values > 0).mean())
        return (
            f"synthetic world: {self.n_sites} sites, model {self.model}, seed {self.seed}, "
            f"noise {self.noise}; {int(self.profiles['n_layers'].sum())} observed layers\n"
            f"observed layer SOC (gC m-3) quantiles 1/25/50/75/99 %: "
            + " / ".join(f"{v:.3g}" for v in q)
            + f"\n0-100 cm stock (kgC m-2): median {np.median(stock):.3g}, 5-95 % "
            f"{np.quantile(stock, 0.05):.3g}-{np.quantile(stock, 0.95):.3g}\n"
            f"truth redrawn for {100 * redrawn:.2f} % of sites; failed {len(self.failed)}; "
            f"grid: {self.grid.sizes['cell']} land cells"
        )

    def figure(self, path: str | os.PathLike, dpi: int | None = None) -> str:
        """Summary figure: map of the sites coloured by 0-100 cm stock; SOC-vs-depth examples.

        Drawn by `soc_jax.data._world_figure.world_figure` (conventions of `soc_jax.plots`).

        Returns:
            The path written.
        """
        from ._world_figure import world_figure

        return world_figure(self, path, dpi)


def make_world(
    n_sites: int,
    seed: int = 0,
    model: str = "clm5",
    noise: float = 0.2,
    grid_resolution: float = 4.0,
    progress: bool = False,
) -> World:
    """Generate a synthetic world with known truth (see the module docstring).

    Args:
        n_sites: number of sites (profiles), >= 1 (10 to 100,000 typical).
        seed: random seed; the same seed gives identical worlds (and files).
        model: process model generating the observations, ``"clm5"`` or ``"compas"``.
        noise: standard deviation of the multiplicative log-normal observation noise
            (``obs = model * exp(noise * eps)``); 0 gives the model exactly.
        grid_resolution: resolution of the global grid of land cells, degrees.
        progress: show tqdm progress bars over the steady-state chunks (one counting the
            sites, one counting the cells of the global grid).

    Returns:
        `World`.

    Raises:
        RuntimeError: if float64 is off (``jax.config.update("jax_enable_x64", True)``).
        ValueError: for a bad argument.
    """
    _check_world_arguments(n_sites, model, noise, grid_resolution)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ss = np.random.SeedSequence(seed)
    rng_fields, rng_sites, rng_layout, rng_noise = (np.random.default_rng(s) for s in ss.spawn(4))
    fields = _SmoothFields(rng_fields, _FIELDS, freq={"land": 2.5, "elev": 3.5, "cont": 1.5})
    lat, lon = _sample_sites(rng_sites, n_sites, fields)
    cells = _GridCells(*_grid_cells(fields, grid_resolution))
    site = _covariates(lat, lon, fields)
    cell = _covariates(cells.lat, cells.lon, fields)
    timings["covariates"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    f_site = _forcing(site["cov"], site["aux"])
    f_cell = _forcing(cell["cov"], cell["aux"])
    timings["forcing"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    p, soc20, ok, redraws = _solve_with_progress(model, site["cov"], f_site, progress, "sites")
    what = f"{grid_resolution:g} degree grid cells"
    gp, gsoc, gok, _ = _solve_with_progress(model, cell["cov"], f_cell, progress, what)
    timings["steady_state"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    ids = np.asarray([f"S{i:06d}" for i in range(n_sites)], dtype=object)
    keep = np.flatnonzero(ok)
    failed = [str(ids[i]) for i in np.flatnonzero(~ok)]
    observed = _observe(rng_layout, rng_noise, soc20, ok, site["aux"]["tex"], noise)
    source = f"soc_jax synthetic world (model {model}, seed {seed}, noise {noise})"
    profiles = _profiles_dataset(observed, soc20, ids, lat, lon, keep, source)
    covariates = _site_covariates(site["cov"], keep, ids, lat, lon, cells)
    forcing = forcing_to_dataset(
        Forcing(**{k: v[keep] for k, v in f_site.as_numpy().items()}), profile_id=ids[keep]
    )
    truth = _truth_dataset(model, p[keep], "profile", MODEL_MODES[model])
    truth["redraws"] = (
        "profile",
        redraws[keep],
        {"long_name": "times the truth was redrawn toward the centre (0 = none)", "units": "1"},
    )
    truth = truth.assign_coords(profile_id=("profile", ids[keep]))
    grid = _grid_dataset(cells, cell["cov"], f_cell, gp, gsoc, gok, truth["parameter"].values)
    grid.attrs.update(resolution_deg=grid_resolution, n_failed_cells=int((~gok).sum()))
    timings["observations_and_datasets"] = time.perf_counter() - t0
    return World(
        profiles, covariates, forcing, truth, grid, model, int(seed), float(noise), failed, timings
    )


def _check_world_arguments(n_sites: int, model: str, noise: float, grid_resolution: float):
    """Float64 on and the arguments of `make_world` valid, else a clear error."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "make_world needs float64 steady states: call "
            "jax.config.update('jax_enable_x64', True) first (the soc-jax CLI does this)."
        )
    if n_sites < 1:
        raise ValueError(f"n_sites must be >= 1, got {n_sites}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if not 0.25 <= grid_resolution <= 30:
        raise ValueError(f"grid_resolution must be within 0.25..30 degrees, got {grid_resolution}")
    get_model(model)


class _GridCells(NamedTuple):
    """The land cells of the regular grid (`_grid_cells`), degrees and 0-based indices."""

    grid_lat: np.ndarray  # (n_lat,) rows, north -> south
    grid_lon: np.ndarray  # (n_lon,) columns
    lat: np.ndarray  # (c,) each land cell
    lon: np.ndarray
    i_lat: np.ndarray  # (c,) row of each land cell in grid_lat
    i_lon: np.ndarray


def _solve_with_progress(model, cov, forcing, progress: bool, what: str):
    """`_solve_with_redraws` with a tqdm bar counting the ``what`` (when ``progress``)."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = cov["Lat"].size
        bar = tqdm(total=total, desc=f"{model} steady states, {what}", unit=what.split()[-1])
    result = _solve_with_redraws(model, cov, forcing, bar)
    if bar is not None:
        bar.close()
    return result


class _Observed(NamedTuple):
    """The observed layers of every site, (n, 10) (NaN beyond a profile's layers)."""

    top: np.ndarray  # m
    bottom: np.ndarray  # m
    node: np.ndarray  # m
    mask: np.ndarray  # (n, 10) bool, a layer of the profile
    n_layers: np.ndarray  # (n,)
    obs: np.ndarray  # observed SOC, gC m-3
    model_at: np.ndarray  # model SOC at the nodes (PCHIP), gC m-3
    content: np.ndarray  # g C kg-1
    bd: np.ndarray  # bulk density, g cm-3
    cf: np.ndarray  # coarse fragments, % volume


def _observe(rng_layout, rng_noise, soc20, ok, tex, noise: float) -> _Observed:
    """The observed layers of every site (item 5): edges, noisy SOC, content, BD, CF."""
    n_sites = soc20.shape[0]
    edges, n_layers = _observation_layout(rng_layout, n_sites)
    eps = rng_noise.standard_normal((n_sites, 10))
    top, bottom = edges[:, :-1], edges[:, 1:]
    node = 0.5 * (top + bottom)
    mask = ~np.isnan(bottom)
    safe_node = np.where(mask, node, 0.1)
    model_at = np.asarray(
        _pchip_batch(jnp.asarray(np.where(ok[:, None], soc20, 1.0)), jnp.asarray(safe_node))
    )
    obs = np.where(mask, model_at * np.exp(noise * eps), np.nan)
    bd3 = np.stack([tex[d][4] for d in ("0cm", "30cm", "100cm")], 1)
    cf3 = np.stack([tex[d][3] for d in ("0cm", "30cm", "100cm")], 1)
    bd = np.where(mask, _interp_depth(bd3, safe_node), np.nan)
    cf = np.where(mask, _interp_depth(cf3, safe_node), np.nan)
    content = obs / (bd * 1000.0 * (1.0 - cf / 100.0))
    return _Observed(top, bottom, node, mask, n_layers, obs, model_at, content, bd, cf)


def _profiles_dataset(o: _Observed, soc20, ids, lat, lon, keep, source: str) -> xr.Dataset:
    """The observed profiles of the kept sites with the model's SOC and 0-100 cm stock."""
    mask = o.mask
    width = int(o.n_layers[keep].max()) if keep.size else 0
    sl = (keep, slice(0, width))
    profiles = _assemble(
        ids[keep],
        lat[keep],
        lon[keep],
        mask[sl],
        {
            "depth_top": np.where(mask, o.top, np.nan)[sl],
            "depth_bottom": o.bottom[sl],
            "depth_node": np.where(mask, o.node, np.nan)[sl],
            "soc": o.obs[sl],
            "soc_content": o.content[sl],
            "bulk_density": o.bd[sl],
            "coarse_fragments": o.cf[sl],
        },
        validate=False,
        attrs={"source": source},
    )
    profiles["soc_model"] = (
        ("profile", "node"),
        soc20[keep],
        {"units": "gC m-3", "long_name": "model SOC at the 20 nodes"},
    )
    profiles = profiles.assign_coords(
        depth_model=("node", ZSOI[:N_LAYERS], {"units": "m", "long_name": "model node depth"})
    )
    profiles["stock_100cm"] = (
        "profile",
        np.asarray(stocks(soc20[keep]).top_100cm),
        {"units": "gC m-2", "long_name": "model SOC stock 0-100 cm"},
    )
    profiles["soc_model_at_obs"] = (
        ("profile", "layer"),
        np.where(mask, o.model_at, np.nan)[sl],
        {"units": "gC m-3", "long_name": "model SOC at the observation depths (PCHIP)"},
    )
    return profiles


def _site_covariates(cov, keep, ids, lat, lon, cells: _GridCells) -> xr.Dataset:
    """The kept sites' covariates, each with the index of its nearest land grid cell."""
    cov_matrix = np.stack([cov[k] for k in COVARIATE_NAMES], axis=1)[keep]
    ci_lat, ci_lon = nearest_cell(lat[keep], lon[keep], cells.grid_lat, cells.grid_lon)
    cell_index = -np.ones((cells.grid_lat.size, cells.grid_lon.size), np.int64)
    cell_index[cells.i_lat, cells.i_lon] = np.arange(cells.i_lat.size)
    covariates = covariates_dataset(
        cov_matrix, profile_id=ids[keep], grid_cell=cell_index[ci_lat, ci_lon]
    )
    covariates["grid_cell"].attrs.update(
        long_name="index of the nearest land grid cell; -1 if the nearest cell is ocean", units="1"
    )
    return covariates


def _grid_dataset(cells: _GridCells, cov, f_cell, gp, gsoc, gok, parameter) -> xr.Dataset:
    """The grid Dataset of the cells whose steady state succeeded (``gok``)."""
    gkeep = np.flatnonzero(gok)
    g_cov = np.stack([cov[k] for k in COVARIATE_NAMES], axis=1)[gkeep]
    grid = covariates_dataset(
        g_cov,
        dim="cell",
        lat=cells.lat[gkeep],
        lon=cells.lon[gkeep],
        i_lat=cells.i_lat[gkeep],
        i_lon=cells.i_lon[gkeep],
    )
    gforce = forcing_to_dataset(
        Forcing(**{k: v[gkeep] for k, v in f_cell.as_numpy().items()}), dim="cell"
    )
    grid = xr.merge([grid, gforce], compat="override")
    grid["p"] = (
        ("cell", "parameter"),
        gp[gkeep],
        {"long_name": "true normalized parameter", "units": "1"},
    )
    grid = grid.assign_coords(
        parameter=parameter,
        grid_lat=("grid_lat", cells.grid_lat),
        grid_lon=("grid_lon", cells.grid_lon),
    )
    grid["soc_model"] = (
        ("cell", "node"),
        gsoc[gkeep],
        {"units": "gC m-3", "long_name": "model SOC at the 20 nodes"},
    )
    grid["stock_100cm"] = (
        "cell",
        np.asarray(stocks(gsoc[gkeep]).top_100cm),
        {"units": "gC m-2", "long_name": "model SOC stock 0-100 cm"},
    )
    return grid
