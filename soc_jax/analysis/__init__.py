"""System-level components, process attribution and the CLM5-vs-COMPAS convergence study.

- `components`: SPEC 8's system-level ("bulk") components of CLM5 (B, K, xi, A, V, NPP) and of
  COMPAS (apparent rates, B, K with the Michaelis-Menten SOC derivative, CTE, E, xi, V, NPP),
  Michaelis-Menten diagnostics (Km xi / SOC, Km xi / DOC); pure, vmapped functions of
  (parameters, prepared forcing, steady-state pools);
- `attribution`: component control (one process group at the global constant) and marginal
  sensitivity (a group scaled by 1 + delta), summarised over the bootstrap ensemble;
- `pipeline`: ``soc-jax reproduce``, the whole study (world -> calibration -> networks ->
  prediction -> components -> attribution -> convergence), resumable stage by stage; its
  stages live in `stages`, their bookkeeping (configuration, atomic stage folders) in `runner`;
- `figures`: the paper's kinds of figures.

See docs/analysis.md. Sub-modules load on first use (``soc-jax --help`` does not import JAX).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .attribution import (
        DELTAS,
        SpatialMetrics,
        component_control,
        marginal_sensitivity,
        spatial_metrics,
        summarize_members,
    )
    from .components import (
        CLM5Components,
        COMPASComponents,
        apparent_beta,
        clm5_components,
        compas_components,
        components_batch,
    )
    from .pipeline import PipelineConfig, run_pipeline

__all__ = [
    "DELTAS",
    "CLM5Components",
    "COMPASComponents",
    "SpatialMetrics",
    "PipelineConfig",
    "apparent_beta",
    "clm5_components",
    "compas_components",
    "component_control",
    "components_batch",
    "marginal_sensitivity",
    "run_pipeline",
    "spatial_metrics",
    "summarize_members",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **{
            n: ".components"
            for n in (
                "CLM5Components",
                "COMPASComponents",
                "apparent_beta",
                "clm5_components",
                "compas_components",
                "components_batch",
            )
        },
        **{
            n: ".attribution"
            for n in (
                "DELTAS",
                "SpatialMetrics",
                "component_control",
                "marginal_sensitivity",
                "spatial_metrics",
                "summarize_members",
            )
        },
        "PipelineConfig": ".pipeline",
        "run_pipeline": ".pipeline",
    },
)
