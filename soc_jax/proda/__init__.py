"""PRODA's network and global prediction (SPEC 5, 7, 8).

- `network`: the Equinox MLP 60 -> 256 -> 512 -> 512 -> 256 -> n_par (Glorot-uniform init);
- `losses`: CLM5's joint L2 x L1 loss and COMPAS's L2 loss, exactly as PRODA codes them;
- `loop`: the one training loop (member state, shuffled minibatches, masking of stopped members,
  early stopping with restore-best, Equinox checkpoints) that both trainers call with their loss;
- `train`: Keras-equivalent two-stage training (Adadelta 1e-3/0.95/1e-7, batch 32) of seeds and
  bootstraps as ONE vmapped program on calibrated targets;
- `end_to_end`: the network trained through the process model (misfit of observed SOC);
- `predict`: parameters on the grid (PRODA's clipping), steady states per cell, stocks, cell
  areas, Pg C totals with bootstrap quantiles, CF NetCDF maps and figures.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .losses import clm5_loss, compas_loss
    from .network import PRODANet, glorot_uniform, make_ensemble
    from .train import (
        Ensemble,
        TrainConfig,
        keras_adadelta,
        load_checkpoint,
        member_splits,
        new_ensemble,
        save_checkpoint,
        train_ensemble,
    )

__all__ = [
    "Ensemble",
    "PRODANet",
    "TrainConfig",
    "clm5_loss",
    "compas_loss",
    "glorot_uniform",
    "keras_adadelta",
    "load_checkpoint",
    "make_ensemble",
    "member_splits",
    "new_ensemble",
    "save_checkpoint",
    "train_ensemble",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "clm5_loss": ".losses",
        "compas_loss": ".losses",
        "PRODANet": ".network",
        "glorot_uniform": ".network",
        "make_ensemble": ".network",
        **{
            name: ".train"
            for name in (
                "Ensemble",
                "TrainConfig",
                "keras_adadelta",
                "load_checkpoint",
                "member_splits",
                "new_ensemble",
                "save_checkpoint",
                "train_ensemble",
            )
        },
    },
)
