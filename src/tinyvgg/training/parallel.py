"""Data parallelism: one global batch split over several processes (ranks), as the VGG paper trained.

The paper (section 3.3) split each batch of 256 over four GPUs, computed the gradients in
parallel and averaged them, "the result is exactly the same as when training on a single
GPU". The reason is the sum rule: the loss is a mean over the B examples of the batch,

    L = 1/B sum_i l_i = sum_r (n_r / B) L_r,        L_r = 1/n_r sum_{i in shard r} l_i,

so the gradient of L is the sum over the shards of their own gradients, each weighted by
its share n_r / B of the batch. Each rank therefore starts its backward pass at
``loss_fn.backward(n_r / B)`` (its rows of dL/dlogits for the *global* mean) and one
all-reduce that *sums* the ranks' gradients leaves every rank with the full-batch gradient.
(Averaging the ranks' mean-loss gradients, the 1/N bookkeeping, is the same thing only when
every shard holds B/N examples; the last batch of an epoch often does not.)

"Exactly the same" holds in exact arithmetic. In float32 the ranks add the same numbers in
another order, so N ranks equal one process *step by step, to float32 rounding* (about 1e-6
relative): over a run those differences grow, as any rounding does in training (it is chaotic),
so two runs that differ only in the number of ranks drift apart, by 1e-4 to a few 1e-2 in 40 steps
(lesson 16 measures it), and equally good models come out.

What each rank does: the same seed and settings, checked before the first step
(:mod:`tinyvgg.training.agreement`), and rank 0's initial weights; its contiguous rows of every
global batch (:class:`ShardedBatchLoader`); dropout masks that are its rows of the mask one
process would draw (:class:`_RowsOfBatchDraw`, installed by :func:`prepare_model_for_ranks`
before the optimizer is built); one fused all-reduce per step of every gradient packed into one
flat buffer (:class:`GradientBuffer`) together with the loss and accuracy sums and the stop flag,
so every rank decides the same thing after the same step (:class:`DataParallelStep`).
``--accumulate K`` is the same idea inside one process: K micro-batches, each one's gradient
weighted by its share of the batch, added up.

Batch normalization is the one place where shards differ: each rank's batch statistics are
those of its own rows. :class:`~tinyvgg.training.sync_bn.SyncBatchNorm2D` all-reduces the
per-channel sums, so the statistics are the whole batch's.

The engine is MPI through ``mpi4py`` (``pip install -e ".[mpi]"``) on NumPy buffers; on CuPy
arrays the all-reduce runs on the GPU through NCCL (one GPU per rank); :mod:`tinyvgg.training.world`
keeps every collective bounded. Launch with::

    mpiexec -n 2 python -m tinyvgg.train --distributed --sync-batch-norm
"""
import numpy as np

from ..backend import get_array_module, to_device
from ..data import BatchLoader
from ..errors import UsageError
from ..fastconv import FastBatchNorm2D
from ..layers import BatchNorm2D, Dropout
from .sync_bn import FastSyncBatchNorm2D, SyncBatchNorm2D


def rows(count, parts, index):
    """The contiguous rows ``(start, stop)`` of part ``index`` when ``count`` rows are cut into ``parts``.

    >>> [rows(10, 4, k) for k in range(4)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    return index * count // parts, (index + 1) * count // parts


class ShardedBatchLoader(BatchLoader):
    """A training :class:`~tinyvgg.data.BatchLoader` that gives this rank its rows of every global batch.

    Every rank makes the same plan (the same shuffle and augmentation draws from the same
    seed) and loads only its contiguous rows of each batch: x is ``(n_r, H, W, 3)``. The
    labels ``y`` are those of the *whole* batch ``(B,)`` (a few hundred integers): the
    trainer's sums then count the global batch, and :class:`DataParallelStep` finds its rows in it.
    """

    def __init__(self, *args, world, **kwargs):
        super().__init__(*args, **kwargs)
        self.world = world

    def _prepare(self, indices, flips, offsets):
        start, stop = rows(len(indices), self.world.size, self.world.rank)
        part = slice(start, stop)
        x, _ = super()._prepare(indices[part], flips[part] if flips is not None else None,
                                offsets[part] if offsets is not None else None)
        return x, to_device(self.dataset.labels[indices], self.backend)   # (n_r, H, W, 3), (B,)


class ShardLoader(BatchLoader):
    """An evaluation loader over this rank's contiguous part of the data set (no shuffling):
    the ranks evaluate disjoint parts, and :meth:`DataParallel.reduce_evaluation` adds them up."""

    def __init__(self, *args, world, **kwargs):
        super().__init__(*args, **kwargs)
        self.start, self.stop = rows(len(self.dataset), world.size, world.rank)

    def __len__(self):
        return (self.stop - self.start + self.batch_size - 1) // self.batch_size

    def _plan(self):
        for start in range(self.start, self.stop, self.batch_size):
            yield np.arange(start, min(start + self.batch_size, self.stop)), None, None


class _RowsOfBatchDraw:
    """Stands in for a :class:`~tinyvgg.layers.Dropout` layer's RNG: draws the random numbers of the
    whole global batch ``(B, ...)`` once per step from the shared RNG, exactly as one process
    would, and hands each micro-batch its rows. So the masks do not depend on the split."""

    def __init__(self, rng):
        self.rng, self.batch, self.rows, self.drawn = rng, None, None, None

    def new_step(self, batch):
        self.batch, self.drawn = batch, None

    def random(self, shape, dtype=np.float64):
        if self.drawn is None:
            self.drawn = self.rng.random((self.batch,) + tuple(shape[1:]), dtype=dtype)
        part = self.drawn[self.rows]
        if part.shape != tuple(shape):
            raise ValueError(f"dropout drew rows {self.rows} of a batch of {self.batch}, but its input is {shape}.")
        return part


class GradientBuffer:
    """Every gradient packed into one flat buffer, so a step needs one all-reduce, not one per tensor.

    ``views[name]`` is the slice of ``flat`` shaped like gradient ``name`` (a view: no copy back).
    ``extra`` more elements at the end carry scalars (loss sum, correct count, Ctrl-C flag) and the
    batch-norm running statistics through the same call. One large message runs at the link's
    bandwidth; a hundred small ones pay the link's latency a hundred times.
    """

    def __init__(self, shapes, xp, dtype=np.float32, extra=0):
        sizes = [int(np.prod(shape)) for shape in shapes.values()]
        self.flat = xp.empty(sum(sizes) + extra, dtype=dtype)           # (P + extra,)
        self.views, offset = {}, 0
        for (name, shape), size in zip(shapes.items(), sizes):
            self.views[name] = self.flat[offset:offset + size].reshape(shape)  # (size,) -> shape
            offset += size
        self.extra = self.flat[offset:]                                 # (extra,)

    def add(self, grads, first):
        """Copy (``first``) or add every gradient into its place in the buffer."""
        for name, view in self.views.items():
            if first:
                view[...] = grads[name]
            else:
                view += grads[name]


def prepare_model_for_ranks(model, world, sync_batch_norm=False):
    """Make ``model`` ready for a step split over shards, in place; call it *before* the optimizer is
    built, since it replaces layers. Returns ``model``.

    Every :class:`~tinyvgg.layers.Dropout` draws its masks through a :class:`_RowsOfBatchDraw` (the
    rows of the whole batch's mask, so the masks do not depend on the split). With
    ``sync_batch_norm`` every batch normalization becomes synchronized over ``world``, keeping its
    kernels: :class:`~tinyvgg.training.sync_bn.FastSyncBatchNorm2D` for a
    :class:`~tinyvgg.fastconv.FastBatchNorm2D`, :class:`~tinyvgg.training.sync_bn.SyncBatchNorm2D`
    for the reference layer. The new layers share the old ones' parameter arrays.
    """
    for i, layer in enumerate(model.layers):
        if sync_batch_norm and isinstance(layer, BatchNorm2D) and not isinstance(layer, SyncBatchNorm2D):
            synchronized = FastSyncBatchNorm2D if isinstance(layer, FastBatchNorm2D) else SyncBatchNorm2D
            model.layers[i] = synchronized.replacing(layer, world)
        elif isinstance(layer, Dropout) and not isinstance(layer.rng, _RowsOfBatchDraw):
            layer.rng = _RowsOfBatchDraw(layer.rng)
    return model


class DataParallelStep:
    """The training step of one rank among ``world.size``, in ``accumulate`` micro-batches each.

    Wraps a :class:`~tinyvgg.training.step.LocalStep` (``step``) of a model that
    :func:`prepare_model_for_ranks` made ready. The global batch of B examples is cut into
    ``world.size * accumulate`` contiguous shards; rank r runs shards r*K .. r*K+K-1 one after
    another (K = ``accumulate``), each through ``step`` with its share ``n_shard / B`` of the global
    mean loss, adding the gradients into one :class:`GradientBuffer`; then one all-reduce sums the
    ranks' buffers, and the sums are the whole batch's gradients, the same on every rank.
    Batch-norm running statistics are averaged over all shards, so every rank keeps the same ones.
    Called like a local step: ``(grads, loss_sum, correct)`` of the global batch.
    """

    def __init__(self, step, world, accumulate=1):
        if accumulate < 1:
            raise UsageError(f"--accumulate must be at least 1, got {accumulate}.")
        self.step, self.model, self.world, self.accumulate = step, step.model, world, accumulate
        self.draws = [layer.rng for layer in self.model.layers if isinstance(layer, Dropout)]
        if not all(isinstance(draw, _RowsOfBatchDraw) for draw in self.draws):
            raise ValueError("DataParallelStep needs a model made ready by prepare_model_for_ranks(), before its "
                             "optimizer is built.")
        self.buffer, self.local_interrupt, self.stop_requested = None, None, False

    @property
    def shards(self):
        return self.world.size * self.accumulate

    def check_batches(self, num_examples, batch_size):
        """One sentence if a batch of the epoch has fewer examples than there are shards."""
        last = num_examples % batch_size or batch_size
        if min(last, batch_size) < self.shards:
            raise UsageError(f"every batch must give each of the {self.shards} shards (ranks x --accumulate) at "
                             f"least one image, but an epoch of {num_examples} images in batches of {batch_size} "
                             f"ends with {last}; choose another --batch-size.")

    def watch(self, interrupted):
        """Carry the local stop request ``interrupted`` (Ctrl-C, SIGTERM) and the world's stop signal in the
        step's all-reduce; returns the reduced flag's reader, true on every rank after the same step once
        any rank was asked to stop."""
        self.local_interrupt = lambda: interrupted() or self.world.stop_requested()
        return lambda: self.stop_requested

    def __call__(self, x, y):
        """The step of this rank's rows ``x`` of a global batch with labels ``y`` (all B of them)."""
        model, world, K = self.model, self.world, self.accumulate
        B = len(y)
        first, last = rows(B, world.size, world.rank)     # this rank's rows of the global batch
        if x.shape[0] != last - first:
            raise ValueError(f"rank {world.rank} got {x.shape[0]} images for rows {first}..{last} of {B}.")
        buffers = model.named_buffers()
        average_buffers = bool(buffers) and self.shards > 1
        start_buffers = {n: b.copy() for n, b in buffers.items()} if average_buffers and K > 1 else None
        for draw in self.draws:
            draw.new_step(B)
        loss_sum, correct = 0.0, 0
        for k in range(K):
            start, stop = rows(B, self.shards, world.rank * K + k)  # micro-batch k: rows of the global batch
            for draw in self.draws:
                draw.rows = slice(start, stop)
            if start_buffers is not None and k > 0:             # each shard moves the running statistics
                for name, value in start_buffers.items():      # from the same start
                    buffers[name][...] = value
            grads, shard_loss, shard_correct = self.step(x[start - first:stop - first], y[start:stop],
                                                         share=(stop - start) / B)  # its share of the global mean
            if self.buffer is None:
                extra = 3 + sum(b.size for b in buffers.values())
                self.buffer = GradientBuffer({name: g.shape for name, g in grads.items()},
                                             get_array_module(next(iter(grads.values()))), extra=extra)
            self.buffer.add(grads, first=k == 0)
            loss_sum, correct = loss_sum + shard_loss, correct + shard_correct
            if average_buffers:
                self._add_buffers(buffers, first=k == 0)
        extra = self.buffer.extra
        extra[0], extra[1] = loss_sum, correct
        extra[2] = 1.0 if self.local_interrupt is not None and self.local_interrupt() else 0.0
        world.allreduce(self.buffer.flat)                       # the step's one all-reduce
        if average_buffers:
            self._read_buffers(buffers)
        self.stop_requested = bool(extra[2] > 0)
        return self.buffer.views, extra[0], extra[1]

    def _add_buffers(self, buffers, first):
        """Add this shard's running statistics, divided by the number of shards, after the scalars."""
        offset, share = 3, 1.0 / self.shards
        for value in buffers.values():
            part = self.buffer.extra[offset:offset + value.size]
            if first:
                part[...] = value.reshape(-1) * share
            else:
                part += value.reshape(-1) * share
            offset += value.size

    def _read_buffers(self, buffers):
        offset = 3
        for value in buffers.values():
            value[...] = self.buffer.extra[offset:offset + value.size].reshape(value.shape)
            offset += value.size

    def reduce_evaluation(self, result):
        """Add up the ranks' parts of an :func:`~tinyvgg.training.loop.evaluate_model` result: the loss and
        accuracy of the whole data set, the same on every rank."""
        seen = len(result["labels"])
        sums = np.array([result["loss"] * seen, (result["predictions"] == result["labels"]).sum(), seen],
                        dtype=np.float64)
        self.world.allreduce(sums, kind="evaluation")
        return dict(result, loss=float(sums[0] / sums[2]), accuracy=float(sums[1] / sums[2]))
