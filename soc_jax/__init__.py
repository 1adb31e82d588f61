"""soc_jax: differentiable soil organic carbon modelling in JAX."""

__version__ = "0.1.0"
