"""Universal differential equation for SOC over depth and time (seed ``002_b37d5f09a3b95671``).

``dC/dt = D C_zz - v C_z + NN_P - NN_R`` on a 1 m column (method of lines, Nz = 30), solved with
Diffrax Tsit5 + PID control and differentiated with ``RecursiveCheckpointAdjoint``.

Modules: :mod:`~soc_jax.ude.column` (grid, operators), :mod:`~soc_jax.ude.vector_field` (hybrid
vector field, safe solve), :mod:`~soc_jax.ude.synthetic` (seed Eqs 8-13, two truths, noise),
:mod:`~soc_jax.ude.losses`, :mod:`~soc_jax.ude.train`, :mod:`~soc_jax.ude.search` (many
configurations as one batched program), the six cases (:mod:`~soc_jax.ude.case_specs`: settings,
data, scores; :mod:`~soc_jax.ude.case_search`: the batched hyper-parameter search;
:mod:`~soc_jax.ude.case_report`: results and figures; :mod:`~soc_jax.ude.cases`: running them),
:mod:`~soc_jax.ude.cli` (``soc-jax ude``).

Names are imported on first use (`soc_jax._lazy`), so the CLI's parsing does not load JAX.
"""

from typing import TYPE_CHECKING

from soc_jax._lazy import lazy_exports

if TYPE_CHECKING:
    from soc_jax.ude.column import Column, require_x64
    from soc_jax.ude.synthetic import SyntheticConfig, UDEData, make_dataset
    from soc_jax.ude.vector_field import (
        Drivers,
        KnownReaction,
        NeuralReaction,
        Transport,
        UDEVectorField,
        safe_loss,
        solve,
    )

__all__ = [
    "Column",
    "Drivers",
    "KnownReaction",
    "NeuralReaction",
    "SyntheticConfig",
    "Transport",
    "UDEData",
    "UDEVectorField",
    "make_dataset",
    "require_x64",
    "safe_loss",
    "solve",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Column": "soc_jax.ude.column",
        "require_x64": "soc_jax.ude.column",
        "SyntheticConfig": "soc_jax.ude.synthetic",
        "UDEData": "soc_jax.ude.synthetic",
        "make_dataset": "soc_jax.ude.synthetic",
        "Drivers": "soc_jax.ude.vector_field",
        "KnownReaction": "soc_jax.ude.vector_field",
        "NeuralReaction": "soc_jax.ude.vector_field",
        "Transport": "soc_jax.ude.vector_field",
        "UDEVectorField": "soc_jax.ude.vector_field",
        "safe_loss": "soc_jax.ude.vector_field",
        "solve": "soc_jax.ude.vector_field",
    },
)
