"""Training: the loop, and what plugs into it.

- :mod:`~tinyvgg.training.step`: a step object turns a batch into ``(grads, loss_sum, correct)``
  (:class:`LocalStep`, on this process);
- :mod:`~tinyvgg.training.loop`: :class:`Trainer`, which calls its step, makes the one update,
  and runs epochs, validation and callbacks, knowing nothing of ranks;
- :mod:`~tinyvgg.training.callbacks`: best and last checkpoints, early stopping, history, curves;
- :mod:`~tinyvgg.training.precise_bn`: batch normalization's statistics recomputed after an epoch;
- several ranks: :mod:`~tinyvgg.training.world` (MPI, bounded collectives),
  :mod:`~tinyvgg.training.agreement` (the ranks agree before the first step),
  :mod:`~tinyvgg.training.parallel` (a data-parallel step that wraps a local one, and a model made
  ready for it before its optimizer is built), :mod:`~tinyvgg.training.sync_bn`.

The arrows go one way: the parallel modules import the step, never the loop, and no object holds
a reference to the trainer (``tests/test_layout.py`` keeps both).
"""
from .callbacks import BestCheckpoint, CurvesPlot, EarlyStopping, HistoryWriter, LastCheckpoint, write_history
from .loop import Trainer, TrainingDiverged, evaluate_model
from .precise_bn import recompute_batch_norm_statistics
from .step import LocalStep

__all__ = ["BestCheckpoint", "CurvesPlot", "EarlyStopping", "HistoryWriter", "LastCheckpoint", "write_history",
           "Trainer", "TrainingDiverged", "evaluate_model", "recompute_batch_norm_statistics", "LocalStep"]
