"""Data layer: observed-profile schema, loaders, covariates, forcing I/O and the synthetic world.

This is the only package that touches files (NetCDF via xarray/netCDF4, CSV via ``csv``).

Names are imported on first use (`soc_jax._lazy`), so the CLI's parsing does not load JAX.
"""

from typing import TYPE_CHECKING

from soc_jax._lazy import lazy_exports

if TYPE_CHECKING:
    from .clm_history import bedrock_index, clm_history_profiles, read_clm_history
    from .covariates import (
        COVARIATE_NAMES,
        COVARIATE_UNITS,
        N_COVARIATES,
        covariate_bounds,
        covariate_matrix,
        covariates_dataset,
        minmax_scale,
        nearest_cell,
        scale_covariates,
    )
    from .forcing_io import dataset_to_forcing, forcing_to_dataset, read_forcing, write_forcing
    from .loaders import (
        coarse_fragment_factor,
        load_csv,
        load_wosis,
        pedotransfer_bulk_density,
        stock_from_content,
    )
    from .proda_tree import (
        ProdaTree,
        TreeError,
        check_proda_tree,
        load_proda_tree,
        world_tree_arrays,
        write_proda_tree,
    )
    from .schema import (
        ObservationBatch,
        make_profiles,
        pad_observations,
        profile_problems,
        read_profiles,
        validate_profiles,
        write_profiles,
    )
    from .screening import ScreeningReport, screen_layers
    from .synthetic import World, make_world, true_parameters, truth_table

__all__ = [
    "COVARIATE_NAMES",
    "COVARIATE_UNITS",
    "N_COVARIATES",
    "ObservationBatch",
    "ProdaTree",
    "ScreeningReport",
    "TreeError",
    "World",
    "bedrock_index",
    "clm_history_profiles",
    "coarse_fragment_factor",
    "covariate_bounds",
    "covariate_matrix",
    "covariates_dataset",
    "dataset_to_forcing",
    "forcing_to_dataset",
    "check_proda_tree",
    "load_csv",
    "load_proda_tree",
    "load_wosis",
    "make_profiles",
    "make_world",
    "minmax_scale",
    "nearest_cell",
    "pad_observations",
    "pedotransfer_bulk_density",
    "profile_problems",
    "read_clm_history",
    "read_forcing",
    "read_profiles",
    "scale_covariates",
    "screen_layers",
    "stock_from_content",
    "true_parameters",
    "truth_table",
    "validate_profiles",
    "world_tree_arrays",
    "write_forcing",
    "write_profiles",
    "write_proda_tree",
]

# Module holding each exported name (imported on first use, see `soc_jax._lazy`).
_HOMES: dict[str, tuple[str, ...]] = {
    ".clm_history": ("bedrock_index", "clm_history_profiles", "read_clm_history"),
    ".covariates": (
        "COVARIATE_NAMES",
        "COVARIATE_UNITS",
        "N_COVARIATES",
        "covariate_bounds",
        "covariate_matrix",
        "covariates_dataset",
        "minmax_scale",
        "nearest_cell",
        "scale_covariates",
    ),
    ".forcing_io": ("dataset_to_forcing", "forcing_to_dataset", "read_forcing", "write_forcing"),
    ".screening": ("ScreeningReport", "screen_layers"),
    ".loaders": (
        "coarse_fragment_factor",
        "load_csv",
        "load_wosis",
        "pedotransfer_bulk_density",
        "stock_from_content",
    ),
    ".proda_tree": (
        "ProdaTree",
        "TreeError",
        "check_proda_tree",
        "load_proda_tree",
        "world_tree_arrays",
        "write_proda_tree",
    ),
    ".schema": (
        "ObservationBatch",
        "make_profiles",
        "pad_observations",
        "profile_problems",
        "read_profiles",
        "validate_profiles",
        "write_profiles",
    ),
    ".synthetic": ("World", "make_world", "true_parameters", "truth_table"),
}
__getattr__, __dir__ = lazy_exports(
    __name__, {name: module for module, names in _HOMES.items() for name in names}
)
