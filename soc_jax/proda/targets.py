"""Which profiles are training targets of PRODA's network, and why the others are not.

The network learns the map covariates -> normalized parameters from per-profile targets: the
synthetic world's ``truth.nc`` (variable ``p``) or a calibration ``posterior.nc`` (variable
``para_summary_mean``, normalized to (0, 1)). A posterior row is a target only if it is a
result:

* **never targets** (category ``"failed"``): profiles skipped before sampling (``status`` bit
  32), without a valid chain (bit 16, or no ``valid`` chain), failed (bit 2: a chain discarded
  more than ``max_discards`` times), and rows whose target is not finite;
* **site filter** (category ``"filtered"``, on by default): PRODA's filter (SPEC 6, the
  ``filter_pass`` variable: max R2 > 0 and mean Gelman-Rubin < 1.05) drops profiles whose
  chains did not converge; ``site_filter=False`` (``soc-jax train --no-site-filter``) keeps
  them. Targets without ``filter_pass`` (the synthetic truth) are not filtered.

`select_targets` returns the decision and a reason per profile; `soc_jax.proda.train.training_data`
adds the covariate checks (category ``"input"``: no covariates with the profile's id,
non-finite covariates) and the counts reported by ``soc-jax train``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "TARGET_VARIABLES",
    "NOT_A_RESULT_BITS",
    "TargetSelection",
    "target_variable",
    "select_targets",
    "target_report",
]

TARGET_VARIABLES: tuple[str, ...] = ("p", "p_mean", "posterior_mean", "para_summary_mean")
"""Target variables looked for, in order, when none is named (truth.nc: ``p``; posterior.nc:
``para_summary_mean``)."""

NOT_A_RESULT_BITS: dict[int, str] = {
    32: "skipped before sampling",
    16: "no valid chain",
    2: "failed (a chain discarded more than max_discards times)",
}
"""``posterior.nc`` status bits of profiles that are never targets."""

_FILTER_REASON = "did not pass the site filter (max R2 > 0 and mean GR < 1.05)"


@dataclasses.dataclass
class TargetSelection:
    """Per-profile decision (rows of the targets Dataset).

    Attributes:
        use: (n,) the profile is a target.
        category: (n,) ``"used"``, ``"failed"`` (never a target) or ``"filtered"`` (site
            filter).
        reason: (n,) why a profile is not used ('' when used).
        site_filter: ``"on"``, ``"off"`` or ``"not available"`` (no ``filter_pass``).
    """

    use: np.ndarray
    category: np.ndarray
    reason: np.ndarray
    site_filter: str


def target_variable(targets, target_var: str | None = None) -> str:
    """The target variable: ``target_var`` or the first of `TARGET_VARIABLES` present."""
    if target_var is not None:
        if target_var not in targets:
            raise ValueError(f"targets have no variable {target_var!r}")
        return target_var
    for name in TARGET_VARIABLES:
        if name in targets:
            return name
    raise ValueError(f"targets have none of the variables {', '.join(TARGET_VARIABLES)}")


def _profile_values(targets, name: str) -> np.ndarray | None:
    if name not in targets:
        return None
    v = targets[name]
    pdim = "profile" if "profile" in v.dims else v.dims[0]
    return np.asarray(v.transpose(pdim, ...).values)


def select_targets(targets, Y: np.ndarray, *, site_filter: bool = True) -> TargetSelection:
    """Decide which profiles of ``targets`` are training targets.

    Args:
        targets: Dataset with (optionally) ``status`` (profile,) bitmask, ``valid`` (profile,
            chain) and ``filter_pass`` (profile,), as ``soc-jax calibrate`` writes them.
        Y: (n, n_par) the target values of the n profiles (normalized parameters).
        site_filter: apply PRODA's site filter (``filter_pass``) when the targets have it.

    Returns:
        `TargetSelection`.
    """
    n = Y.shape[0]
    reason = np.full(n, "", dtype=object)
    category = np.full(n, "used", dtype=object)

    def mark(rows, cat, text):
        new = rows & (category == "used")
        category[new] = cat
        reason[new] = text

    status = _profile_values(targets, "status")
    if status is not None:
        status = np.where(np.isfinite(status.astype(float)), status, 32).astype(np.int64)
        for bit, text in NOT_A_RESULT_BITS.items():
            mark((status & bit) != 0, "failed", text)
    valid = _profile_values(targets, "valid")
    if valid is not None:
        mark(~np.any(valid.reshape(n, -1).astype(bool), axis=1), "failed", "no valid chain")
    mark(~np.all(np.isfinite(Y), axis=1), "failed", "no result (non-finite target)")
    passed = _profile_values(targets, "filter_pass")
    if passed is None:
        mode = "not available"
    elif site_filter:
        mode = "on"
        ok = np.isfinite(passed.astype(float)) & (passed.astype(float) > 0)
        mark(~ok, "filtered", _FILTER_REASON)
    else:
        mode = "off"
    return TargetSelection(category == "used", category, reason, mode)


def target_report(data) -> list[str]:
    """Terminal / summary lines: profiles used, filtered and failed, with reasons.

    Args:
        data: `soc_jax.proda.train.TrainingData`.
    """
    c = data.counts
    lines = [
        f"targets ({data.target_var}): {c.get('used', 0)} of {c.get('targets', 0)} profiles "
        f"used; {c.get('failed', 0)} skipped or failed (never targets); "
        f"{c.get('filtered', 0)} filtered out (not converged, site filter {data.site_filter}); "
        f"{c.get('input', 0)} without usable covariates"
    ]
    for text, k in sorted(data.reason_counts().items(), key=lambda kv: -kv[1]):
        lines.append(f"  left out: {k} profiles: {text}")
    return lines
