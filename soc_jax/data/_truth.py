"""The synthetic world's truth: true parameters as documented functions of the covariates.

Split from `soc_jax.data.synthetic` (module docstring, item 4, documents the rule): normalized
parameters per site ``p_j = c_j + a_j tanh(w_j . u)`` with the standardized covariates
``u = (uT, uP, uC, upH, uN, uT*uC)``; the table of ``c, a, w`` is fixed, not seed-dependent.
`_truth_dataset` stores the truth with its table (the world's ``truth.nc``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ..models.registry import get_model

__all__ = ["truth_table", "true_parameters"]

# (centre c, amplitude a, weights on u = (uT, uP, uC, upH, uN, uT*uC)); unlisted: c = 0.5, a = 0.
_TRUTH_CLM5: dict[str, tuple[float, float, tuple[float, ...]]] = {
    "diffus": (0.3, 0.0, ()),
    "cryo": (0.3, 0.0, ()),
    "q10": (0.45, 0.25, (-0.8, 0.0, 0.3, 0.0, 0.0, 0.0)),
    "efolding": (0.6, 0.2, (0.5, 0.0, -0.6, 0.0, 0.0, 0.2)),
    "taucwd": (0.4, 0.0, ()),
    "taul1": (0.45, 0.0, ()),
    "taul2": (0.45, 0.0, ()),
    "tau4s1": (0.5, 0.2, (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)),
    "tau4s2": (0.2, 0.15, (-0.6, 0.0, 0.8, 0.0, 0.0, 0.0)),
    "tau4s3": (0.15, 0.12, (0.0, 0.0, 0.9, -0.5, 0.0, 0.3)),
    "fl3s2": (0.5, 0.15, (0.0, 0.0, 0.6, -0.6, 0.0, 0.0)),
    "fs1s2": (0.4, 0.0, ()),
    "fs1s3": (0.3, 0.0, ()),
    "fs2s3": (0.4, 0.2, (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)),
    "fs3s1": (0.4, 0.0, ()),
    "w_scaling": (0.4, 0.15, (0.0, -0.8, 0.0, 0.0, 0.0, 0.0)),
    "beta": (0.86, 0.08, (0.7, 0.3, 0.0, 0.0, 0.0, 0.0)),
}
_TRUTH_COMPAS: dict[str, tuple[float, float, tuple[float, ...]]] = {
    "bio": (0.3, 0.0, ()),
    "cryo": (0.3, 0.0, ()),
    "q10": (0.45, 0.25, (-0.8, 0.0, 0.3, 0.0, 0.0, 0.0)),
    "w_scaling": (0.3, 0.15, (0.0, -0.8, 0.0, 0.0, 0.0, 0.0)),
    "mic_cue": (0.45, 0.2, (-0.6, 0.0, 0.5, 0.0, 0.0, 0.0)),
    "tau4s4": (0.4, 0.2, (0.3, 0.0, -0.8, 0.3, 0.0, 0.0)),
    "mm_const_decom": (0.5, 0.25, (0.0, 0.0, 0.9, 0.0, 0.0, 0.3)),
    "pdeath2soc": (0.5, 0.2, (0.0, 0.0, 0.7, -0.4, 0.0, 0.0)),
    "beta": (0.86, 0.08, (0.7, 0.3, 0.0, 0.0, 0.0, 0.0)),
}
_U_NAMES = ("uT", "uP", "uC", "upH", "uN", "uT*uC")


def truth_table(model: str = "clm5") -> dict[str, tuple[float, float, tuple[float, ...]]]:
    """The documented truth functions: parameter name -> (centre c, amplitude a, weights w).

    ``p = c + a tanh(w . u)`` with ``u = (uT, uP, uC, upH, uN, uT*uC)`` (module docstring, item
    4). Parameters not varying have ``a = 0``. Every parameter of the model is listed in order.
    """
    space = get_model(model).PARAMETERS
    table = _TRUTH_CLM5 if model == "clm5" else _TRUTH_COMPAS
    out = {}
    for name in space.names:
        c, a, w = table.get(name, (0.5, 0.0, ()))
        out[name] = (c, a, tuple(w) + (0.0,) * (len(_U_NAMES) - len(w)))
    return out


def _standardized(cov: dict[str, np.ndarray]) -> np.ndarray:
    npp = cov["cesm2_npp"] * 365.0 * 86400.0  # gC m-2 yr-1
    ut = (cov["BIO1"] - 10.0) / 10.0
    uc = (cov["Clay_Content_0cm"] - 22.0) / 10.0
    return np.stack(
        [
            ut,
            np.log(cov["BIO12"] / 700.0) / 0.8,
            uc,
            cov["pH_Water_0cm"] - 6.3,
            np.log(np.maximum(npp, 1.0) / 400.0) / 0.7,
            ut * uc,
        ],
        axis=1,
    )


def true_parameters(cov: dict[str, np.ndarray], model: str = "clm5") -> np.ndarray:
    """True normalized parameters ``p = c + a tanh(w . u)`` per site.

    Args:
        cov: covariates by name, each (n,) (at least BIO1, BIO12, Clay_Content_0cm,
            pH_Water_0cm, cesm2_npp).
        model: ``"clm5"`` or ``"compas"``.

    Returns:
        (n, n_params) normalized parameters in (0, 1).
    """
    u = _standardized(cov)
    table = truth_table(model)
    c = np.array([v[0] for v in table.values()])
    a = np.array([v[1] for v in table.values()])
    w = np.array([v[2] for v in table.values()])  # (n_params, 6)
    return c[None, :] + a[None, :] * np.tanh(u @ w.T)


def _truth_dataset(model: str, p: np.ndarray, dim: str, mode: str) -> xr.Dataset:
    """True parameters ``p`` (n, n_params) along ``dim`` with the truth table; ``mode``: the
    model's steady-state mode in the world (`soc_jax.data.synthetic.MODEL_MODES`)."""
    space = get_model(model).PARAMETERS
    table = truth_table(model)
    physical = np.asarray(space.to_physical(jnp.asarray(p)), dtype=float)
    return xr.Dataset(
        {
            "p": ((dim, "parameter"), p, {"long_name": "true normalized parameter", "units": "1"}),
            "physical": (
                (dim, "parameter"),
                physical,
                {
                    "long_name": "true parameter in physical units",
                    "units": "see the coordinate 'unit' (per parameter)",
                },
            ),
            "centre": (
                "parameter",
                np.array([v[0] for v in table.values()]),
                {"long_name": "centre of the truth function (normalized)", "units": "1"},
            ),
            "amplitude": (
                "parameter",
                np.array([v[1] for v in table.values()]),
                {"long_name": "amplitude of the truth function (normalized)", "units": "1"},
            ),
            "weight": (
                ("parameter", "feature"),
                np.array([v[2] for v in table.values()]),
                {"long_name": "weight of each feature in the truth function", "units": "1"},
            ),
        },
        coords={
            dim: np.arange(p.shape[0]),
            "parameter": np.asarray(space.names, dtype=object),
            "unit": ("parameter", np.asarray([s.unit for s in space.specs], dtype=object)),
            "feature": np.asarray(_U_NAMES, dtype=object),
        },
        attrs={
            "truth_function": "p = centre + amplitude * tanh(weight . u); u = (uT, uP, uC, "
            "upH, uN, uT*uC), uT = (BIO1 - 10)/10, uP = ln(BIO12/700)/0.8, uC = "
            "(Clay_Content_0cm - 22)/10, upH = pH_Water_0cm - 6.3, uN = ln(NPP/400)/0.7 "
            "(NPP in gC m-2 yr-1)",
            "model": model,
            "mode": mode,
        },
    )
