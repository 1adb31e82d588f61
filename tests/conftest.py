"""Test configuration: float64 on the CPU, as every soc_jax entry point does.

Compiled programs go to JAX's persistent compilation cache (``.jax_test_cache/``, git-ignored;
another folder with ``SOC_JAX_TEST_CACHE=DIR``, none with ``SOC_JAX_TEST_CACHE=``). Many tests
run the CLI in-process, and every run builds fresh jitted closures that JAX's in-memory cache
does not recognise; the persistent cache matches them by their compiled program (HLO, JAX
version, flags), so the two pytest-xdist workers and repeated CLI runs compile each program once.
It changes no result: a hit loads the executable the same compilation would produce.
"""

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

_cache = os.environ.get(
    "SOC_JAX_TEST_CACHE", str(Path(__file__).resolve().parents[1] / ".jax_test_cache")
)
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_compilation_cache_max_size", 2**30)  # bytes; least recently used go
