"""Fast form of the components contract (slow original: test_analysis_components.py, four
profiles in chunks of two): `components_batch` (fixed-size compiled blocks, the last one padded,
vectorised chunks) gives each profile's own steady state and components."""

import jax
import numpy as np

from soc_jax.analysis.components import clm5_components, components_batch
from soc_jax.forcing import Forcing
from soc_jax.models import clm5
from tests.helpers import regime_forcings


def test_components_batch_equals_single_profiles_in_padded_blocks():
    forcings = [f for _, f in regime_forcings(3, seed=3)]  # temperate, tropical, permafrost
    arrays = [f.as_numpy() for f in forcings]
    batch = Forcing(**{k: np.stack([a[k] for a in arrays]) for k in arrays[0]})
    rng = np.random.default_rng(6)
    space = clm5.PARAMETERS
    P = np.stack(
        [np.asarray(space.to_physical(rng.uniform(0.1, 0.9, len(space)))) for _ in forcings]
    )
    # three profiles in blocks of two (the second padded by repeating the last profile)
    comps, soc, ok = components_batch("clm5", P, batch, "proda", block=2, chunk=1)
    assert ok.sum() >= 2
    one_ss, one_comp = jax.jit(clm5.steady_state), jax.jit(clm5_components)
    for i, f in enumerate(forcings):
        st = one_ss(P[i], f)
        assert bool(st.ok) == bool(ok[i])
        if not ok[i]:  # a failed profile: components and SOC are exactly 0
            assert comps["K"][i] == 0.0 and np.all(soc[i] == 0.0)
            continue
        one = one_comp(P[i], clm5.prepare(f), st.pools)
        np.testing.assert_allclose(comps["K"][i], float(one.K), rtol=1e-10)
        np.testing.assert_allclose(comps["A"][i], float(one.A), rtol=1e-10)
        np.testing.assert_allclose(soc[i], np.asarray(st.soc), rtol=1e-10, atol=1e-8)
    assert len({float(k) for k in comps["K"][ok]}) == int(ok.sum())  # not one profile repeated
