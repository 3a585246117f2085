"""Callbacks: what happens after every epoch, each a small object with ``on_epoch_end(trainer, logs)``.

The loop (:class:`~tinyvgg.training.loop.Trainer`) calls them in order after the scheduler has
stepped, so a saved state holds the reduced rate. Those with a ``state_dict`` are saved with the
trainer and restored on ``--resume``.
"""
import csv
import io
import json
import os

import numpy as np

from .. import checkpoint

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


class BestCheckpoint:
    """Save the trainer to ``path`` whenever the monitored metric beats every earlier one.

    The value is stored in the checkpoint and read back from an existing file,
    so a resumed (or repeated) run never overwrites a better model with a worse one.
    """

    def __init__(self, path, monitor="val_accuracy"):
        self.path, self.monitor = path, monitor
        self.best = None
        if os.path.exists(path):
            try:
                self.best = checkpoint.load(path).meta.get("best_value")
            except checkpoint.CheckpointError:
                self.best = None  # unreadable: the next good epoch replaces it

    def on_epoch_end(self, trainer, logs):
        value = trainer.monitored(logs)
        if not all(np.isfinite(logs[k]) for k in ("loss", "val_loss") if logs.get(k) is not None):
            return  # weights that give a non-finite loss are never "best" (the trainer stops on them anyway)
        if self.best is None or value > self.best:
            self.best = value
            trainer.save(self.path, {"best_value": value, "monitor": self.monitor})
            trainer.log(f"saved {self.path} ({self.monitor} {value:.4f})")


class LastCheckpoint:
    """Save the trainer to ``path`` after every epoch (what ``--resume`` continues from)."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer, logs):
        trainer.save(self.path)


class EarlyStopping:
    """Stop when the monitored metric has not improved for ``patience`` epochs."""

    def __init__(self, patience=10, min_delta=1e-4):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad_epochs = None, 0

    def on_epoch_end(self, trainer, logs):
        value = trainer.monitored(logs)
        if self.best is None or value > self.best + self.min_delta:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
            if self.bad_epochs >= self.patience:
                trainer.stop_training = True
                trainer.log(f"early stopping: no improvement in {self.patience} epochs")

    def state_dict(self):
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state):
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class HistoryWriter:
    """Write the history as ``history.json`` and ``history.csv`` in ``folder`` after every epoch."""

    def __init__(self, folder):
        self.folder = folder

    def on_epoch_end(self, trainer, logs):
        write_history(trainer.history, self.folder)


def write_history(history, folder):
    text = json.dumps(history, indent=2)
    checkpoint.atomic_write(os.path.join(folder, "history.json"), lambda f: f.write(text.encode()))
    rows = io.StringIO()
    writer = csv.writer(rows)
    writer.writerow(HISTORY_KEYS)
    writer.writerows(zip(*(history[k] for k in HISTORY_KEYS)))
    checkpoint.atomic_write(os.path.join(folder, "history.csv"), lambda f: f.write(rows.getvalue().encode()))


class CurvesPlot:
    """Redraw ``curves.png`` (accuracy and loss, train and validation) after every epoch."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer, logs):
        from ..plots import plot_history, save_figure
        save_figure(plot_history(trainer.history), self.path, tight=False)  # fixed margins: one drawing
