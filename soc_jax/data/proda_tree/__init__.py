"""PRODA's own input tree, read as the authors' DA driver reads it (SPEC 1.11, 4, 5, 9).

Layout under the data folder (``path``)::

    wosis_2019_snap_shot/soc_profile*.nc         soc_profile_info (n, 7): [profile_id, country_id,
                                                 country_name, lon, lat, layer_num, date]
    wosis_2019_snap_shot/soc_data_integrate*.nc  data_soc_integrate (m, 9): [profile_id, date,
                                                 upper (cm), lower (cm), node depth (cm),
                                                 soc_weight (g C kg-1), soc_stock (gC m-3),
                                                 bulk_density (g cm-3), is_pedo]
    wosis_2019_snap_shot/*env_info*.mat          optional: EnvInfo (n, 80) covariate table
    cesm2_simu/spinup_ss/<case>_cesm2_ss_4da_<y0>_<y1>_<VAR>.mat
                                                 var_record_monthly_mean, (nlat, nlon, 12) or
                                                 (nlat, nlon, L, 12), latitude north to south

The two WoSIS files are opened separately (their ``n_col`` dimensions clash: 7 and 9). The grid
is the driver's global regular grid of the arrays' shape (384 x 576 for CESM2 f05): cell centres
``lat = 90 - (i + 1/2) 180/nlat`` (north to south), ``lon = -180 + (j + 1/2) 360/nlon``. Each
profile goes to the nearest centre in latitude and in longitude separately, first index on ties
(`soc_jax.data.nearest_cell`; profile longitudes in 0..360 are shifted to -180..180).

Per profile the forcing is the cell's monthly climatology (first 20 levels; deeper levels are
ignored). As in the driver, the litter inputs integrated over the 20 layers with ``dz`` (gC m-2
per month) are formed and a NaN in month 1 of any of the four skips the profile ("no litter input
at the cell": ocean or outside the land mask). The `Forcing` keeps the inputs per layer (gC m-3
per month), from which the model forms the same totals. A profile whose other fields are
non-finite or out of range at its cell is skipped too, with the rule named.

Observations as in `soc_jax.data.load_wosis` (node depth, given ``soc_stock``, PRODA's
screening), except that a non-physical layer value (negative, or above `MAX_SOC` gC m-3) drops
that layer only, counted in the report, and the profile is kept if enough layers remain.

Memory: MATLAB v5/v7 files have no partial read; each variable is read once, the cells needed are
copied out and the array is dropped before the next, so the peak is about one variable
(384 x 576 x 25 x 12 float64 = 53 MB). MATLAB v7.3 (HDF5) files are read cell by cell with h5py.
"""

from ._matfile import MAT_VARIABLE, TreeError
from .reader import (
    DEFAULT_CASE,
    DEFAULT_YEARS,
    ENV_INFO_COLUMNS,
    FORCING_VARIABLES,
    MAX_SOC,
    OPTIONAL_VARIABLES,
    ProdaTree,
    check_proda_tree,
    grid_centres,
    load_proda_tree,
)
from .writer import world_tree_arrays, write_proda_tree

__all__ = [
    "DEFAULT_CASE",
    "DEFAULT_YEARS",
    "ENV_INFO_COLUMNS",
    "FORCING_VARIABLES",
    "MAT_VARIABLE",
    "MAX_SOC",
    "OPTIONAL_VARIABLES",
    "ProdaTree",
    "TreeError",
    "check_proda_tree",
    "grid_centres",
    "load_proda_tree",
    "world_tree_arrays",
    "write_proda_tree",
]
