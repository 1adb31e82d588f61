"""The Patankar transport operator against the NumPy baseline and mass conservation."""

import numpy as np
import pytest

from benchmarks.baselines import numpy_clm5
from soc_jax.grid import DZ
from soc_jax.models import clm5
from soc_jax.transport import transport_operator
from tests.helpers import branch_forcings


@pytest.mark.parametrize("i", range(10))
def test_transport_equals_numpy_baseline(i):
    f = branch_forcings(10, seed=4)[i]
    rng = np.random.default_rng(i)
    bio, cryo = rng.uniform(3e-5, 5e-4), rng.uniform(3e-5, 1.6e-3)
    V = transport_operator(bio, cryo, f.nbedrock, f.altmax, f.altmax_lastyear).to_dense()
    params = clm5.PARAMETERS.midpoint()
    params[0], params[1] = bio, cryo
    ref = numpy_clm5.build_matrices(params, f.as_numpy())["V"][20:40, 20:40]  # litter1 block
    scale = np.abs(ref).max()
    np.testing.assert_allclose(np.asarray(V), ref, rtol=1e-12, atol=1e-13 * scale)


def test_mass_conservation_with_deep_bedrock_and_leak_above_it():
    f = branch_forcings(1, seed=0)[0]  # temperate, bedrock at layer 20
    V = np.asarray(
        transport_operator(1e-4, 5e-4, f.nbedrock, f.altmax, f.altmax_lastyear).to_dense()
    )
    column_sums = DZ[:20] @ V  # d/dt of the column stock for a unit density in each layer
    assert np.abs(column_sums).max() < 1e-14 * np.abs(V).max()
    assert np.all(np.diag(V) >= 0) and np.all(V - np.diag(np.diag(V)) <= 0)
    # shallow bedrock: the authors' rule leaks near the bedrock (SPEC 1.7), and only there
    nb = 8
    V8 = np.asarray(
        transport_operator(1e-4, 5e-4, np.full(12, nb), f.altmax, f.altmax_lastyear).to_dense()
    )
    leak = np.abs(DZ[:20] @ V8) / np.abs(V8).max()
    # SPEC 1.7: layers nbedrock+1 and nbedrock+2 (1-based) are slightly non-conservative
    assert leak[nb : nb + 2].min() > 1e-4
    assert np.delete(leak, [nb, nb + 1]).max() < 1e-12
