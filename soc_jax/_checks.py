"""Small host-side guards shared by the models."""

from __future__ import annotations

from typing import Any

import jax


def is_concrete(*trees: Any) -> bool:
    """True if no leaf of ``trees`` is a JAX tracer (we are not inside jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def require_x64(what: str) -> None:
    """Fail loudly instead of silently solving stiff, ill-conditioned systems in float32."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs float64: call jax.config.update('jax_enable_x64', True) at the start "
            "of your program (before creating arrays). soc_jax does not change this global "
            "setting on import."
        )
