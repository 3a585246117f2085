"""The training loop: mini-batches, epochs, history and callbacks.

One training step is the whole story of the package in four lines::

    logits = model.forward(x, train=True)        # forward, caching what backward needs
    loss = loss_fn.forward(logits, y)             # mean softmax cross-entropy
    model.backward(loss_fn.backward())            # every layer's grads, by the chain rule
    optimizer.step(model.named_grads())           # momentum SGD (or Adam) update

The first three are the *step* (:class:`~tinyvgg.training.step.LocalStep`: a batch in, its
gradients out); the fourth is the loop's, made in one place (:meth:`Trainer.update`).
:class:`Trainer` repeats them over epochs, evaluates on validation data, keeps the
history and calls the callbacks (:mod:`tinyvgg.training.callbacks`: best and last
checkpoints, early stopping). It is given its step and knows nothing of how the gradients
were made: on several ranks the step is a
:class:`~tinyvgg.training.parallel.DataParallelStep`, and the loop is the same.
Before each validation (and so before each save) it can recompute batch normalization's
running statistics over the training images (``precise_bn``, see
:mod:`tinyvgg.training.precise_bn`), so that every validation number and every saved model
uses statistics that describe the weights as they are.
Its :meth:`Trainer.save` writes everything a resumed run needs, including the RNG
state and, after a Ctrl-C (or SIGTERM), the position inside the epoch, so that 1 epoch + resume
1 epoch equals 2 epochs straight, and so does a run interrupted anywhere and resumed.
"""
import contextlib
import signal
import threading
import time

import numpy as np
from tqdm import tqdm

from .. import checkpoint
from ..backend import backend_of, to_host
from ..errors import TrainingDiverged
from ..layers import SoftmaxCrossEntropy
from ..memory import finite_number
from ..optim import clip_grad_norm
from ..threads import ThreadChooser
from .callbacks import HISTORY_KEYS
from .precise_bn import AGREEMENT, refresh_batch_norm_statistics
from .step import LocalStep

#: The signals that stop a run between two steps, saving its place: Ctrl-C, and SIGTERM, which a batch
#: system (Slurm, Kubernetes) sends before it kills a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Every this many steps the mean loss is read (for the progress bar and the divergence guard).
CHECK_EVERY = 10
#: A mean loss above this many times the starting loss counts as diverged: at 10 classes it starts
#: near ln 10 = 2.3, and a run whose loss passes 9 is not coming back.
DIVERGED_FACTOR = 4.0


def evaluate_model(model, loader, progress=False, desc="evaluating", threads=None):
    """Loss, accuracy and every prediction of ``model`` on a :class:`~tinyvgg.data.BatchLoader`.

    Evaluation mode (dropout off, no caches kept). Sums stay on the model's
    device and are read once at the end. Returns a dict with ``loss``,
    ``accuracy``, and host arrays ``predictions``, ``labels``, ``probabilities``.
    threads: a :class:`~tinyvgg.threads.ThreadChooser` that times every batch and picks the
    BLAS thread count (None: the count in use stays).
    """
    loss_fn = SoftmaxCrossEntropy()
    loss_sum, seen, predictions, labels, probabilities = 0.0, 0, [], [], []
    for x, y in tqdm(loader, desc=desc, disable=not progress, leave=False, unit="batch"):
        with threads.timed() if threads is not None else contextlib.nullcontext():
            logits = model.forward(x)
        loss_sum = loss_sum + loss_fn.forward(logits, y) * len(y)
        probs, _ = loss_fn.cache
        predictions.append(logits.argmax(axis=1))
        probabilities.append(probs)
        labels.append(y)
        seen += len(y)
    if seen == 0:
        raise ValueError("evaluate_model() got no examples.")
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
    the weights (class names, normalization statistics, CLI arguments);
    precise_bn: training batches drawn without randomness (a
    :class:`~tinyvgg.data.BatchLoader` with no shuffling or augmentation, over the
    training images, or a sample of them, in a fixed order that mixes the classes, as
    ``train.precise_bn_batches`` makes), over which batch normalization's running
    statistics are recomputed at the end of every epoch, before validation and the
    callbacks, unless one batch shows that the running ones agree with them to within
    ``precise_bn_agreement`` (None: always; see
    :func:`~tinyvgg.training.precise_bn.refresh_batch_norm_statistics`) (precise_bn None: the
    running averages as training left them); step: what computes a batch's
    gradients (default: a :class:`~tinyvgg.training.step.LocalStep` of ``model``), built around
    the same ``model``; threads: how many BLAS threads the steps run on, a number, or a
    :class:`~tinyvgg.threads.ThreadChooser` (default: one that measures which count is fastest
    now, unless the environment fixes it; on a GPU the count does not matter and stays).
    """

    def __init__(self, model, optimizer, rng, scheduler=None, monitor="val_accuracy", callbacks=(),
                 meta=None, progress=True, warmup=None, clip_norm=None, precise_bn=None, step=None, threads=None,
                 precise_bn_agreement=AGREEMENT):
        self.model, self.optimizer, self.rng, self.scheduler = model, optimizer, rng, scheduler
        self.monitor, self.callbacks, self.meta, self.progress = monitor, list(callbacks), dict(meta or {}), progress
        self.warmup, self.clip_norm, self.precise_bn = warmup, clip_norm, precise_bn
        self.precise_bn_agreement = precise_bn_agreement
        self.step = LocalStep(model) if step is None else step
        on_host = all(backend_of(p) == "numpy" for p in model.named_params().values())
        self.threads = threads if isinstance(threads, ThreadChooser) else \
            ThreadChooser(threads, why=f"as threads={threads} asks") if on_host or threads is not None else None
        self.history = {k: [] for k in HISTORY_KEYS}
        self.epoch = 0
        self.start_loss = None  # the mean loss of the first window of steps: what "diverged" is measured against
        self.position = None    # where in an epoch an interrupted run stopped (saved, so resume is exact)
        self.stop_training = False
        self._interrupted = _never

    def train_step(self, x, y):
        """One step: the batch's gradients from :attr:`step`, then the update; returns (mean loss,
        number correct) of the batch as device scalars."""
        grads, loss_sum, correct = self.step(x, y)
        self.update(grads)
        return loss_sum / len(y), correct

    def update(self, grads):
        """Clip the gradients (``clip_norm``), advance the warm-up and take one optimizer step."""
        if self.clip_norm:
            clip_grad_norm(grads, self.clip_norm)
        if self.warmup is not None:
            self.warmup.step()
        self.optimizer.step(grads)

    def train_epoch(self, loader, epochs):
        """One pass over ``loader``; (mean loss, accuracy). Continues a saved :attr:`position` if it is
        this epoch's, and on a deferred Ctrl-C stops between two steps, leaving :attr:`position` set."""
        start, sums, plan_state = 0, [0.0, 0, 0, 0.0, 0], None
        if self.position is not None and self.position["epoch"] == self.epoch:
            start, sums, plan_state = self.position["step"], self.position["sums"], self.position["plan_rng_state"]
        self.position = None
        loss_sum, correct, seen, window_sum, window_seen = sums
        batches = loader.batches(start=start, plan_state=plan_state)
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{epochs}", disable=not self.progress, leave=False,
                   unit="batch", initial=start, total=len(loader))
        for step, (x, y) in enumerate(bar, start=start):
            with self.threads.timed() if self.threads is not None else contextlib.nullcontext():
                loss, right = self.train_step(x, y)  # y: the whole batch's labels, also on several ranks
            loss_sum, correct, seen = loss_sum + loss * len(y), correct + right, seen + len(y)
            window_sum, window_seen = window_sum + loss * len(y), window_seen + len(y)
            if step % CHECK_EVERY == CHECK_EVERY - 1:  # reading a value waits for the GPU: only now and then
                self.guard_divergence(float(window_sum) / window_seen)
                window_sum, window_seen = 0.0, 0
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}", acc=f"{float(correct) / seen:.3f}")
            if self._interrupted() and step + 1 < len(loader):
                bar.close()
                self.position = {"epoch": self.epoch, "step": step + 1, "plan_rng_state": loader.plan_state,
                                 "sums": [float(loss_sum), int(correct), seen, float(window_sum), window_seen]}
                raise KeyboardInterrupt
        if window_seen:
            self.guard_divergence(float(window_sum) / window_seen)
        if self.threads is not None and self.threads.end_epoch():
            self.log(f"the steps' speed changed by more than {self.threads.margin:.0%}: measuring the BLAS "
                     "threads again")
        return float(loss_sum) / seen, float(correct) / seen

    def guard_divergence(self, loss):
        """The divergence guard: raise :class:`TrainingDiverged` if ``loss`` (a mean over the last
        steps) is not finite or more than ``DIVERGED_FACTOR`` times the loss the run started at."""
        if self.start_loss is None and np.isfinite(loss):
            self.start_loss = loss
        if np.isfinite(loss) and loss <= DIVERGED_FACTOR * self.start_loss:
            return
        what = f"the loss became {loss}" if not np.isfinite(loss) else \
            f"the loss rose to {loss:.3g}, more than {DIVERGED_FACTOR}x the {self.start_loss:.3g} it started at"
        raise TrainingDiverged(f"training diverged at step {self.optimizer.iterations} (epoch {self.epoch + 1}): "
                               f"{what}. {self._advice()}")

    def _advice(self):
        return (f"Try a lower --lr (this run used {self.optimizer.lr:g}), a longer learning-rate warm-up "
                "(--warmup-epochs 2), batch normalization (--batch-norm, the default), or --clip-norm 5.")

    def fit(self, train_loader, val_loader=None, epochs=1):
        """Train until ``epochs`` epochs are done in total (a resumed trainer continues its count).

        Raises :class:`TrainingDiverged` (before any callback sees the epoch) when the loss
        explodes or turns non-finite: checkpoints keep the last good epoch.
        """
        self.stop_training = False
        input_grad, self.model.input_grad = self.model.input_grad, False  # the images need no gradient
        with deferred_interrupt() as interrupted:
            self._interrupted = self.step.watch(interrupted)  # on several ranks: any rank's, after the same step
            try:
                self._fit(train_loader, val_loader, epochs)
            finally:
                self._interrupted = _never
                self.model.input_grad = input_grad
        return self.history

    def _fit(self, train_loader, val_loader, epochs):
        while self.epoch < epochs and not self.stop_training:
            start = time.perf_counter()
            loss, accuracy = self.train_epoch(train_loader, epochs)
            logs = {"epoch": self.epoch + 1, "loss": loss, "accuracy": accuracy, "val_loss": None,
                    "val_accuracy": None, "lr": self.optimizer.lr}  # the rate of the epoch's last step
            if self.precise_bn is not None:  # statistics of these weights, not a lagging average (no RNG drawn)
                logs["precise_bn"] = refresh_batch_norm_statistics(self.model, self.precise_bn,
                                                                   self.precise_bn_agreement)
            if val_loader is not None:
                val = evaluate_model(self.model, val_loader, self.progress, desc="validating")
                val = self.step.reduce_evaluation(val)  # on several ranks: their parts added up
                logs.update(val_loss=val["loss"], val_accuracy=val["accuracy"])
                if not np.isfinite(val["loss"]):
                    raise TrainingDiverged(f"training diverged in epoch {self.epoch + 1}: the validation loss is "
                                           f"{val['loss']}. {self._advice()}")
            logs["seconds"] = time.perf_counter() - start
            self.epoch += 1
            for key in HISTORY_KEYS:
                self.history[key].append(logs[key])
            warming_up = self.warmup is not None and self.warmup.active
            reduced = self.scheduler is not None and not warming_up and self.scheduler.step(self.monitored(logs))
            for callback in self.callbacks:  # after the scheduler: a saved state holds the reduced rate
                callback.on_epoch_end(self, logs)
            self.log(format_logs(logs))
            more = self.epoch < epochs and not self.stop_training   # another epoch follows
            if reduced and more:  # after the epoch's line, whose lr is the rate that epoch trained at
                self.log(f"learning rate reduced to {self.optimizer.lr:g} from epoch {self.epoch + 1} on")
            if self._interrupted() and more:  # Ctrl-C during validation: stop at the end of the epoch (after the
                raise KeyboardInterrupt       # last one the run is complete: it ends as any finished run does)

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
                    optimizer={"name": self.optimizer.name, "scalars": opt_scalars},
                    scheduler=self.scheduler.state_dict() if self.scheduler else None,
                    warmup=self.warmup.state_dict() if self.warmup else None, start_loss=self.start_loss,
                    position=self.position,
                    callbacks={type(c).__name__: c.state_dict() for c in self.callbacks if hasattr(c, "state_dict")})
        meta.update(extra_meta or {})
        checkpoint.save(path, self.model.named_params(), meta, optimizer=opt_arrays,
                        buffers=self.model.named_buffers())

    def restore(self, ckpt):
        """Continue from a :class:`~tinyvgg.checkpoint.Checkpoint` written by :meth:`save`; a
        :class:`~tinyvgg.checkpoint.CheckpointError` if its training state is missing or damaged."""
        try:
            self._restore(ckpt)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            if isinstance(err, checkpoint.CheckpointError):
                raise
            raise checkpoint.CheckpointError(f"{ckpt.path}: its training state is missing or damaged "
                                             f"({type(err).__name__}: {err}); resume from a last.npz written by "
                                             "tinyvgg.") from None

    def _restore(self, ckpt):
        ckpt.load_into(self.model)
        meta = ckpt.meta
        saved_optimizer = meta.get("optimizer") or {}
        if saved_optimizer.get("name") != self.optimizer.name:
            raise checkpoint.CheckpointError(
                f"{ckpt.path} was trained with {saved_optimizer.get('name')}, not {self.optimizer.name}; "
                "resume with the same --optimizer.")
        try:
            self.optimizer.load_state_dict(ckpt.optimizer, saved_optimizer["scalars"])
        except ValueError as err:
            raise checkpoint.CheckpointError(f"{ckpt.path}: {err}") from None
        if self.scheduler is not None and meta.get("scheduler"):
            self.scheduler.load_state_dict(meta["scheduler"])
        if self.warmup is not None and meta.get("warmup"):
            self.warmup.load_state_dict(meta["warmup"])
        self.start_loss = meta.get("start_loss")
        self.position = meta.get("position")
        for callback in self.callbacks:
            state = (meta.get("callbacks") or {}).get(type(callback).__name__)
            if state is not None and hasattr(callback, "load_state_dict"):
                callback.load_state_dict(state)
        self.rng.bit_generator.state = meta["rng_state"]
        self.history = {k: list(meta["history"].get(k, [])) for k in HISTORY_KEYS}
        self.epoch = int(meta["epoch"])


def training_state_problem(meta):
    """None when a last.npz's training state has the types the trainer reads, else what is wrong, in a few words:
    checked before any of it is used, so a crafted file gets a sentence, never a traceback mid-run."""
    epoch = meta.get("epoch")
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        return "its epoch is not a whole number"
    history = meta.get("history")
    if not isinstance(history, dict) or not all(isinstance(v, list) for v in history.values()):
        return "its history is not a table of lists"
    for key, values in history.items():
        if key in HISTORY_KEYS and (len(values) != epoch or not all(v is None or finite_number(v) for v in values)):
            return f"its history of {key[:40]} is not {epoch} numbers"
    position = meta.get("position")
    if position is not None:
        if not isinstance(position, dict) or not all(isinstance(position.get(k), int) for k in ("epoch", "step")):
            return "its position in the epoch has no epoch and step"
        sums = position.get("sums")
        if not isinstance(sums, list) or len(sums) != 5 or not all(finite_number(v) for v in sums) \
                or not isinstance(position.get("plan_rng_state"), dict):
            return "its position in the epoch is incomplete"
    for key in ("callbacks", "scheduler", "warmup", "optimizer"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"its {key} state is not a table"
    if not all(isinstance(v, dict) for v in (meta.get("callbacks") or {}).values()):
        return "its callbacks' states are not tables"
    return None


def _never():
    return False


@contextlib.contextmanager
def deferred_interrupt(signals=STOP_SIGNALS):
    """Within the block, Ctrl-C (SIGINT) or SIGTERM only raises a flag, read by calling the yielded
    function: the training loop stops between two steps, never halfway through an update, and saves
    its place. A second one of the same signal acts at once. Outside the main thread (where signals
    cannot be caught) the flag stays down and the signals act as usual."""
    requested, previous = [], {}

    def handler(signum, frame):
        requested.append(signum)
        signal.signal(signum, previous[signum])  # the next one is not deferred

    if threading.current_thread() is not threading.main_thread():
        yield _never
        return
    for signum in signals:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield lambda: bool(requested)
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def format_logs(logs):
    parts = [f"epoch {logs['epoch']}", f"loss {logs['loss']:.4f}", f"accuracy {logs['accuracy']:.4f}"]
    if logs.get("val_loss") is not None:
        parts += [f"val_loss {logs['val_loss']:.4f}", f"val_accuracy {logs['val_accuracy']:.4f}"]
    parts += [f"lr {logs['lr']:g}", f"{logs['seconds']:.1f}s"]
    if logs.get("precise_bn") is not None:  # where evaluation's batch-norm statistics came from
        parts.append(f"bn statistics: {logs['precise_bn']} images" if logs["precise_bn"] else "bn statistics: running")
    return "  ".join(parts)
