"""The seed's six UDE cases: what each observes, its settings (Tables 2-7), its data and scores.

How the cases are read (the seed is terse about Cases 1-3):

* Cases 1-3 ("t = 0", noise 0 / 7 / 35 %): SOC is observed as a full record from ``t = 0`` to
  50 yr (51 annual profiles), and training uses the trajectory MSE (seed Eq 7) plus the terminal
  term (Eq 16, ``lambda_term``) and the collocation PDE residual (``lambda_coll``) that Tables 2-4
  list. Scores are over the whole (z, t) field for ``t > 0``. The noise-aware variant (Cases
  2-3) drops the extra terminal term, so its likelihood counts every observed profile once.
* Cases 4-6 ("t = 50 years", noise 0 / 7 / 35 %): only the terminal profile at 50 yr is
  observed; terminal-only loss (Eq 16). Scores are over the 30 nodes of that profile. The
  collocation weight of Tables 5-7 has no data to act on (no interior-time observations).

In every case the initial profile is the prescribed Eq 8 (seed Eq 5), the networks see the
(noisy) drivers, and noise is multiplicative with AR(1) depth correlation ``rho = 0.6`` on drivers
and SOC observations (seed Eq 13; independent across times).

References:
    Raju G.V.V. S. et al. (2025). A study of universal ODE approaches to predicting soil organic
    carbon. Preprint (seed ``002_b37d5f09a3b95671``), Sections 3-4, Tables 1-8.
"""

from __future__ import annotations

import dataclasses

import jax.random as jr

from soc_jax.ude.losses import mse, r2
from soc_jax.ude.synthetic import SyntheticConfig, UDEData, make_dataset
from soc_jax.ude.train import TrainConfig

#: Depth correlation of the AR(1) noise used in all noisy cases.
NOISE_RHO = 0.6

#: Iteration caps of ``--quick`` (Adam, L-BFGS). Noisy cases skip L-BFGS in ``--quick``: it gave
#: no improvement there (Case 3: 24 iterations, 55 s, loss unchanged) and pushes towards fitting
#: the noise.
QUICK_ADAM, QUICK_LBFGS = 200, 50

#: Seed Table 8 (its reported numbers, for the side-by-side table).
SEED_TABLE8 = {
    3: {"mse_clean": None, "r2_clean": 0.938, "r2_noisy": 0.99996},
    4: {"mse_clean": 1.60e-5, "r2_clean": 0.9999},
    5: {"mse_noisy": 3.39e-6, "r2_noisy": 0.99998},
    6: {"mse_clean": 0.192, "mse_noisy": 0.694, "r2_clean": -0.033, "r2_noisy": -0.017},
}


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    """One of the six cases.

    Attributes:
        number: 1-6.
        mode: ``"trajectory"`` (Cases 1-3) or ``"terminal"`` (Cases 4-6).
        noise: eta.
        plain: seed's per-case settings (Tables 2-7) with the plain MSE loss.
        noise_aware: the noise-aware variant (None for clean cases): the multiplicative
            likelihood of the noise model (seed Eq 13) with the known eta and rho, each observed
            profile counted once (no extra terminal term when the whole record is observed).
    """

    number: int
    mode: str
    noise: float
    plain: TrainConfig
    noise_aware: TrainConfig | None


def _cases() -> dict[int, CaseSpec]:
    # Tables 2-7: hidden sizes, lr, Adam/BFGS iterations, lambda_term, lambda_coll, lambda_wd.
    c1 = TrainConfig((32, 16), "tanh", 3e-3, 200, 400, 1.0, 1.0, 1.0, 1e-4)
    c2 = TrainConfig((32, 32), "tanh", 3e-3, 200, 400, 1.0, 1.5, 1.0, 1e-3)
    c3 = TrainConfig((32, 32), "tanh", 3e-3, 200, 400, 1.0, 1.0, 1.0, 1e-3)
    c4 = TrainConfig((32, 16), "gelu", 3e-3, 200, 400, 0.0, 1.0, 0.0, 1e-4)
    c5 = TrainConfig((32, 32), "tanh", 3e-3, 200, 400, 0.0, 1.5, 0.0, 1e-3)
    c6 = TrainConfig((64, 32), "tanh", 1e-3, 400, 800, 0.0, 2.0, 0.0, 1e-4)
    # noisy drivers have kinks at the annual samples: step to them (see solve(step_to_knots))
    c2, c3, c5, c6 = (dataclasses.replace(c, step_to_knots=True) for c in (c2, c3, c5, c6))
    # noise-aware variant: the multiplicative AR(1) Gaussian likelihood with the known eta and
    # rho (seed Eq 13), everything else as the plain configuration. (The discrepancy-principle
    # loss, max(chi2, 1), stopped at chi2 = 1 with a poor fit in Cases 3 and 6: R2 clean 0.48
    # and 0.05.)
    noisy = dict(likelihood="multiplicative", rho=NOISE_RHO)
    # With a whole record (Cases 2-3) the likelihood counts every observed profile once: the
    # 50-yr profile is already the last row of the trajectory term, and Table 2-4's extra
    # terminal term (lambda_term = 1 on a per-profile mean) would weight that one noisy profile
    # 51 times as much as any other year. Under 35 % noise a profile's mean error is about 13 %
    # (AR(1) in depth), and the networks bent the whole trajectory towards it (Case 3, seed 1:
    # mean error -0.08 at 50 yr, R2 clean 0.959; without the extra term 0.989, docs/ude.md).
    once = dict(lambda_term=0.0)
    return {
        1: CaseSpec(1, "trajectory", 0.0, c1, None),
        2: CaseSpec(2, "trajectory", 0.07, c2, dataclasses.replace(c2, **noisy, **once, eta=0.07)),
        3: CaseSpec(3, "trajectory", 0.35, c3, dataclasses.replace(c3, **noisy, **once, eta=0.35)),
        4: CaseSpec(4, "terminal", 0.0, c4, None),
        5: CaseSpec(5, "terminal", 0.07, c5, dataclasses.replace(c5, **noisy, eta=0.07)),
        6: CaseSpec(6, "terminal", 0.35, c6, dataclasses.replace(c6, **noisy, eta=0.35)),
    }


CASES = _cases()


def case_data(case: CaseSpec, seed: int, truth: str = "reaction") -> UDEData:
    """Synthetic data for a case (noise drawn with ``jr.key(seed)``)."""
    cfg = SyntheticConfig(truth=truth, noise=case.noise, rho=NOISE_RHO)
    return make_dataset(cfg, jr.key(seed))


def iteration_caps(case: CaseSpec, quick: bool, max_iters: int | None) -> dict:
    """Adam and L-BFGS iteration caps of a run (``{}``: the case's Table 2-7 counts).

    ``quick`` caps at :data:`QUICK_ADAM` and :data:`QUICK_LBFGS` (no L-BFGS for noisy data);
    ``max_iters`` (smoke tests) caps both at that many iterations.
    """
    plain = case.plain
    caps = {}
    if quick:
        # --quick budget (< 3 min on 2 CPU cores): at most 200 Adam and 50 L-BFGS iterations,
        # no L-BFGS for noisy data
        caps = {
            "adam_steps": min(plain.adam_steps, QUICK_ADAM),
            "lbfgs_steps": 0 if case.noise else min(plain.lbfgs_steps, QUICK_LBFGS),
        }
    if max_iters is not None:
        caps = {
            "adam_steps": min(caps.get("adam_steps", plain.adam_steps), max_iters),
            "lbfgs_steps": min(caps.get("lbfgs_steps", plain.lbfgs_steps), max_iters),
        }
    return caps


def score(case: CaseSpec, pred, data: UDEData) -> dict:
    """MSE and R2 of ``pred`` against the noisy target and the clean truth.

    Cases 1-3 score the field at ``t > 0`` (the IC is prescribed); Cases 4-6 the terminal profile.
    """
    rows = slice(1, None) if case.mode == "trajectory" else slice(-1, None)
    p, noisy, clean = pred[rows], data.soc_obs[rows], data.soc_clean[rows]
    return {
        "mse_noisy": mse(p, noisy),
        "r2_noisy": r2(p, noisy),
        "mse_clean": mse(p, clean),
        "r2_clean": r2(p, clean),
    }


__all__ = [
    "CASES",
    "CaseSpec",
    "NOISE_RHO",
    "QUICK_ADAM",
    "QUICK_LBFGS",
    "SEED_TABLE8",
    "case_data",
    "iteration_caps",
    "score",
]
