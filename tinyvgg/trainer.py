"""The training loop: mini-batches, epochs, history and callbacks.

One training step is the whole story of the package in four lines::

    logits = model.forward(x, train=True)        # forward, caching what backward needs
    loss = loss_fn.forward(logits, y)             # mean softmax cross-entropy
    model.backward(loss_fn.backward())            # every layer's grads, by the chain rule
    optimizer.step(model.named_grads())           # momentum SGD (or Adam) update

:class:`Trainer` repeats it over epochs, evaluates on validation data, keeps the
history and calls the callbacks (best and last checkpoints, learning-rate decay
on plateau, early stopping). Its :meth:`Trainer.save` writes everything a
resumed run needs, including the RNG state, so that 1 epoch + resume 1 epoch
equals 2 epochs straight.
"""
import csv
import io
import json
import os
import time

import numpy as np
from tqdm import tqdm

from . import checkpoint
from .backend import to_host
from .layers import SoftmaxCrossEntropy

HISTORY_KEYS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def evaluate(model, loader, progress=False, desc="evaluating"):
    """Loss, accuracy and every prediction of ``model`` on a :class:`~tinyvgg.data.BatchLoader`.

    Evaluation mode (dropout off, no caches kept). Sums stay on the model's
    device and are read once at the end. Returns a dict with ``loss``,
    ``accuracy``, and host arrays ``predictions``, ``labels``, ``probabilities``.
    """
    loss_fn = SoftmaxCrossEntropy()
    loss_sum, seen, predictions, labels, probabilities = 0.0, 0, [], [], []
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        logits = model.forward(x)
        loss_sum = loss_sum + loss_fn.forward(logits, y) * len(y)
        probs, _ = loss_fn.cache
        predictions.append(logits.argmax(axis=1))
        probabilities.append(probs)
        labels.append(y)
        seen += len(y)
    if seen == 0:
        raise ValueError("evaluate() got no examples.")
    predictions = np.concatenate([to_host(p) for p in predictions])
    labels = np.concatenate([to_host(t) for t in labels])
    return {"loss": float(loss_sum) / seen, "accuracy": float((predictions == labels).mean()),
            "predictions": predictions, "labels": labels,
            "probabilities": np.concatenate([to_host(p) for p in probabilities])}


class Trainer:
    """Training state and loop.

    model: a :class:`~tinyvgg.models.Sequential`; optimizer: from
    :mod:`tinyvgg.optim`; rng: the host ``numpy.random.Generator`` shared with
    the model's dropout layers and the batch loader (saved with checkpoints);
    scheduler: e.g. :class:`~tinyvgg.optim.ReduceLROnPlateau`, stepped on
    ``monitor`` after each epoch; meta: what checkpoints should carry besides
    the weights (class names, normalization statistics, CLI arguments).
    """

    def __init__(self, model, optimizer, rng, scheduler=None, monitor="val_accuracy", callbacks=(),
                 meta=None, progress=True):
        self.model, self.optimizer, self.rng, self.scheduler = model, optimizer, rng, scheduler
        self.monitor, self.callbacks, self.meta, self.progress = monitor, list(callbacks), dict(meta or {}), progress
        self.loss_fn = SoftmaxCrossEntropy()
        self.history = {k: [] for k in HISTORY_KEYS}
        self.epoch = 0
        self.stop_training = False

    def train_step(self, x, y):
        """One forward, backward and update; returns (loss, number correct) as device scalars."""
        logits = self.model.forward(x, train=True)
        loss = self.loss_fn.forward(logits, y)
        self.model.backward(self.loss_fn.backward(), input_grad=False)  # dL/d(images) is not needed
        self.optimizer.step(self.model.named_grads(trainable_only=True))  # frozen layers: no update
        return loss, (logits.argmax(axis=1) == y).sum()

    def train_epoch(self, loader, epochs):
        bar = tqdm(loader, desc=f"epoch {self.epoch + 1}/{epochs}", disable=not self.progress,
                   leave=False, unit="batch")
        loss_sum, correct, seen = 0.0, 0, 0
        for step, (x, y) in enumerate(bar):
            loss, right = self.train_step(x, y)
            loss_sum, correct, seen = loss_sum + loss * len(y), correct + right, seen + len(y)
            if step % 10 == 9:  # reading a value waits for the GPU: only now and then
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{float(correct) / seen:.3f}")
        return float(loss_sum) / seen, float(correct) / seen

    def fit(self, train_loader, val_loader=None, epochs=1):
        """Train until ``epochs`` epochs are done in total (a resumed trainer continues its count)."""
        self.stop_training = False
        while self.epoch < epochs and not self.stop_training:
            start = time.perf_counter()
            lr = self.optimizer.lr
            loss, accuracy = self.train_epoch(train_loader, epochs)
            logs = {"epoch": self.epoch + 1, "loss": loss, "accuracy": accuracy, "val_loss": None,
                    "val_accuracy": None, "lr": lr}
            if val_loader is not None:
                val = evaluate(self.model, val_loader, self.progress, desc="validating")
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
            logs["seconds"] = time.perf_counter() - start
            self.epoch += 1
            for key in HISTORY_KEYS:
                self.history[key].append(logs[key])
            if self.scheduler is not None and self.scheduler.step(self.monitored(logs)):
                self.log(f"learning rate reduced to {self.optimizer.lr:g}")
            for callback in self.callbacks:
                callback.on_epoch_end(self, logs)
            self.log(format_logs(logs))
        return self.history

    def monitored(self, logs):
        """The value of ``monitor`` in ``logs``; falls back to training accuracy without validation."""
        value = logs.get(self.monitor)
        return logs["accuracy"] if value is None else value

    def log(self, text):
        if self.progress:
            tqdm.write(text)

    # ---- saving and restoring the whole state

    def save(self, path, extra_meta=None):
        """Write weights, optimizer state, RNG state, history and metadata to ``path`` (atomically)."""
        opt_arrays, opt_scalars = self.optimizer.state_dict()
        meta = dict(self.meta, model_config=self.model.config, epoch=self.epoch, history=self.history,
                    rng_state=self.rng.bit_generator.state,
                    optimizer={"name": type(self.optimizer).__name__, "scalars": opt_scalars},
                    scheduler=self.scheduler.state_dict() if self.scheduler else None,
                    callbacks={type(c).__name__: c.state_dict() for c in self.callbacks if hasattr(c, "state_dict")})
        meta.update(extra_meta or {})
        checkpoint.save(path, self.model.named_params(), meta, optimizer=opt_arrays)

    def restore(self, ckpt):
        """Continue from a :class:`~tinyvgg.checkpoint.Checkpoint` written by :meth:`save`."""
        ckpt.load_into(self.model)
        meta = ckpt.meta
        saved_optimizer = meta.get("optimizer") or {}
        if saved_optimizer.get("name") != type(self.optimizer).__name__:
            raise checkpoint.CheckpointError(
                f"{ckpt.path} was trained with {saved_optimizer.get('name')}, not {type(self.optimizer).__name__}; "
                "resume with the same --optimizer.")
        try:
            self.optimizer.load_state_dict(ckpt.optimizer, saved_optimizer["scalars"])
        except ValueError as err:
            raise checkpoint.CheckpointError(f"{ckpt.path}: {err}") from None
        if self.scheduler is not None and meta.get("scheduler"):
            self.scheduler.load_state_dict(meta["scheduler"])
        for callback in self.callbacks:
            state = (meta.get("callbacks") or {}).get(type(callback).__name__)
            if state is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(state)
        self.rng.bit_generator.state = meta["rng_state"]
        self.history = {k: list(meta["history"].get(k, [])) for k in HISTORY_KEYS}
        self.epoch = int(meta["epoch"])


def format_logs(logs):
    parts = [f"epoch {logs['epoch']}", f"loss {logs['loss']:.4f}", f"accuracy {logs['accuracy']:.4f}"]
    if logs.get("val_loss") is not None:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_accuracy {logs['val_accuracy']:.4f}"]
    parts += [f"lr {logs['lr']:g}", f"{logs['seconds']:.1f}s"]
    return "  ".join(parts)


# ---------------------------------------------------------------- callbacks

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
        from .plots import plot_history, save_figure
        save_figure(plot_history(trainer.history), self.path)
