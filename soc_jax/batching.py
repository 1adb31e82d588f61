"""Batching profiles: ``vmap`` for small batches, chunked ``vmap`` for large ones.

Every model function in soc_jax computes one profile; ``jax.vmap`` batches it. For large batches
on a CPU, one giant ``vmap`` streams every intermediate array of every profile through memory,
and throughput falls once they no longer fit in cache (CLM5 on two cores: about 47,000 steady
states per second at 100 profiles, about 19,000 at 10,000). `map_profiles` runs ``vmap`` over
chunks of ``chunk_size`` profiles inside one compiled loop (``jax.lax.map`` with
``batch_size``), which keeps the working set small: about 30,000 per second at 10,000 profiles
with chunks of 128 (see ``benchmarks/bench_steady_state.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

__all__ = ["map_profiles"]


def map_profiles(fn: Callable[..., Any], *args: Any, chunk_size: int = 128) -> Any:
    """Apply a one-profile function to every profile, ``chunk_size`` profiles at a time.

    Equivalent to ``jax.vmap(fn)(*args)`` (same values, same output structure); jit it as usual.

    Args:
        fn: one-profile function, e.g. ``clm5.steady_state`` or a ``functools.partial`` of it.
        *args: PyTrees whose leaves have a leading profile axis of the same length.
        chunk_size: profiles per vectorised chunk (>= 1); the last chunk may be partial.

    Returns:
        ``fn``'s output with a leading profile axis.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    return jax.lax.map(lambda a: fn(*a), args, batch_size=chunk_size)
