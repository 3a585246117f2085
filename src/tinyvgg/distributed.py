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

What each rank does (:class:`DataParallel`): the same seed, so the same initial weights and the
same shuffle plan; its contiguous rows of every global batch (:class:`ShardedBatchLoader`);
dropout masks that are its rows of the mask one process would draw (:class:`_RowsOfBatchDraw`);
one fused all-reduce per step of every gradient packed into one flat buffer
(:class:`GradientBuffer`) together with the loss and accuracy sums and the Ctrl-C flag, so every
rank decides the same thing after the same step. ``--accumulate K`` is the same idea inside one
process: K micro-batches, each one's gradient weighted by its share of the batch, added up.

Batch normalization is the one place where shards differ: each rank's batch statistics are
those of its own rows. :class:`SyncBatchNorm2D` all-reduces the per-channel sums, so the
statistics are the whole batch's.

The engine is MPI through ``mpi4py`` (``pip install -e ".[mpi]"``) on NumPy buffers; on CuPy
arrays the all-reduce runs on the GPU through NCCL (one GPU per rank). Launch with::

    mpiexec -n 2 python -m tinyvgg.train --distributed --sync-batch-norm
"""
import functools
import os
import signal
import sys
import time
import traceback

import numpy as np

from . import backend
from .backend import get_array_module, require, to_device
from .data import BatchLoader
from .errors import TinyVGGError, UsageError
from .layers import BatchNorm2D, Dropout

#: The world this process joined (set by :func:`connect`): what a failure must end.
_WORLD = None
#: The signal that stops a run of several ranks between two steps, saving its place: ``mpiexec`` forwards
#: it to every rank, while its own Ctrl-C (SIGINT) kills the ranks at once (Open MPI cannot forward SIGINT).
STOP_SIGNAL = signal.SIGUSR1
_stop_signals = []
#: Seconds between a failing rank's sentence and the abort: without them Open MPI sometimes ends the job
#: before it has passed the sentence on to the terminal.
ABORT_DELAY = 1.0


class World:
    """The ranks of one run: ``rank`` (0 .. size-1) and ``size``, and the sum all-reduce.

    ``World()`` is the one-process world (``--accumulate`` without MPI): its all-reduce
    does nothing. :func:`connect` gives the MPI one.
    """

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self._nccl = None

    def allreduce(self, buffer):
        """Replace ``buffer`` (a contiguous array) on every rank by its sum over all ranks, in place.

        A NumPy buffer goes through MPI (``Allreduce`` with ``IN_PLACE``); a CuPy buffer stays on
        its GPU and goes through NCCL. Returns ``buffer``.
        """
        if self.size == 1:
            return buffer
        if get_array_module(buffer) is np:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            return buffer
        return self._gpu_allreduce(buffer)

    def _gpu_allreduce(self, buffer):
        """NCCL's sum all-reduce of a CuPy buffer, in place on the current stream (no host copy)."""
        cupy, nccl = require("cupy"), backend.nccl()
        if self._nccl is None:  # NCCL's ranks meet through an id that rank 0 makes and MPI hands out
            uid = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        stream = cupy.cuda.get_current_stream()
        self._nccl.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, kinds[buffer.dtype], nccl.NCCL_SUM,
                             stream.ptr)
        return buffer

    def use_gpu(self):
        """One GPU per rank: this rank takes GPU (rank on its machine) modulo the machine's GPU count."""
        from mpi4py import MPI
        cupy = require("cupy")
        local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank() if self.comm is not None else 0
        device = local_rank % cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(device).use()
        return device

    def abort(self, code=1):
        """End every rank of the run now (MPI_Abort): the others may be waiting in an all-reduce."""
        if self.comm is not None:
            self.comm.Abort(code)
        sys.exit(code)


def connect():
    """Join the MPI run this process was started in; one sentence if that cannot work.

    Refuses a world of one process: ``--distributed`` without ``mpiexec`` is almost always a
    forgotten launcher, and training silently on one process would hide it.
    """
    global _WORLD
    try:
        from mpi4py import MPI
    except ImportError:
        raise UsageError('--distributed needs mpi4py and an MPI library: pip install -e ".[mpi]", then start '
                         "the ranks with mpiexec -n 2 python -m tinyvgg.train --distributed.") from None
    _WORLD = World(MPI.COMM_WORLD)
    signal.signal(STOP_SIGNAL, lambda signum, frame: _stop_signals.append(signum))  # read at every step
    if _WORLD.size == 1:
        raise UsageError("--distributed found a world of one process: start the ranks with a launcher, e.g. "
                         "mpiexec -n 2 python -m tinyvgg.train --distributed, or leave out --distributed.")
    share_the_cores(MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_size())
    return _WORLD


def share_the_cores(ranks_here):
    """Give each of the ``ranks_here`` ranks on this machine its share of the cores for BLAS (at least 1):
    by default every rank would start a thread per core, and 2 ranks x 2 threads on 2 cores fight for
    them (and with MPI, which waits by polling). OMP_NUM_THREADS, when set, is left as it is."""
    if "OMP_NUM_THREADS" in os.environ or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    from threadpoolctl import threadpool_limits
    threadpool_limits(max(1, (os.cpu_count() or 1) // ranks_here), user_api="blas")


def ends_every_rank_on_failure(main):
    """Decorate a command's ``main``: in a run of several ranks, an exception on any rank prints one
    sentence naming the rank and the cause and ends every rank (``MPI_Abort``) within seconds,
    instead of leaving the others waiting forever in their next all-reduce. A bug (not a
    :class:`~tinyvgg.errors.TinyVGGError`) also shows its traceback first. One process: unchanged."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except BaseException as err:
            if _WORLD is None or _WORLD.size == 1 or isinstance(err, SystemExit) and not err.code:
                raise
            if not isinstance(err, (TinyVGGError, KeyboardInterrupt, SystemExit)):
                traceback.print_exc()
            cause = str(err) if isinstance(err, TinyVGGError) else f"{type(err).__name__}: {err}"
            print(f"error: rank {_WORLD.rank} of {_WORLD.size} failed, so every rank stops: {cause}",
                  file=sys.stderr, flush=True)
            time.sleep(ABORT_DELAY)  # the launcher forwards the sentence before the abort tears the job down
            _WORLD.abort(1)
    return wrapped


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
    trainer's sums then count the global batch, and :class:`DataParallel` finds its rows in it.
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


class DataParallel:
    """The training step of one rank among ``world.size``, in ``accumulate`` micro-batches each.

    The global batch of B examples is cut into ``world.size * accumulate`` contiguous shards;
    rank r runs shards r*K .. r*K+K-1 one after another (K = ``accumulate``), starting each
    backward pass at ``n_shard / B`` (its share of the global mean loss) and adding the
    gradients into one :class:`GradientBuffer`; then one all-reduce sums the ranks' buffers and
    the optimizer steps, the same on every rank. ``sync_batch_norm`` turns every batch
    normalization into :class:`SyncBatchNorm2D` (statistics over the shards of all ranks that
    run at the same time: exact for K = 1). Batch-norm running statistics are averaged over
    all shards, so every rank keeps the same ones.
    """

    def __init__(self, model, world, accumulate=1, sync_batch_norm=False):
        if accumulate < 1:
            raise UsageError(f"--accumulate must be at least 1, got {accumulate}.")
        self.model, self.world, self.accumulate = model, world, accumulate
        if sync_batch_norm:
            for i, layer in enumerate(model.layers):
                if isinstance(layer, BatchNorm2D):
                    model.layers[i] = SyncBatchNorm2D.replacing(layer, world)
        self.draws = []
        for layer in model.layers:
            if isinstance(layer, Dropout):
                layer.rng = _RowsOfBatchDraw(layer.rng)
                self.draws.append(layer.rng)
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
        """Use the local Ctrl-C flag ``interrupted`` in the step's all-reduce; returns the reduced flag's
        reader, which is true on every rank after the same step once any rank was interrupted (by Ctrl-C
        or by :data:`STOP_SIGNAL`, which ``mpiexec`` forwards to every rank)."""
        self.local_interrupt = lambda: interrupted() or bool(_stop_signals)
        return lambda: self.stop_requested

    def train_step(self, trainer, x, y):
        """One update from this rank's rows ``x`` of a global batch with labels ``y`` (all B of them).

        Returns the global batch's mean loss and number of correct predictions, as on one process.
        """
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
            xk, yk = x[start - first:stop - first], y[start:stop]
            logits = model.forward(xk, train=True)
            loss = trainer.loss_fn.forward(logits, yk)          # the mean over the micro-batch
            model.backward(trainer.loss_fn.backward((stop - start) / B))  # its share of the global mean
            if self.buffer is None:
                xp = get_array_module(logits)
                shapes = {name: g.shape for name, g in model.named_grads(trainable_only=True).items()}
                extra = 3 + sum(b.size for b in buffers.values())
                self.buffer = GradientBuffer(shapes, xp, extra=extra)
            self.buffer.add(model.named_grads(trainable_only=True), first=k == 0)   # this backward's
            loss_sum = loss_sum + loss * (stop - start)
            correct = correct + (logits.argmax(axis=1) == yk).sum()
            if average_buffers:
                self._add_buffers(buffers, first=k == 0)
        extra = self.buffer.extra
        extra[0], extra[1] = loss_sum, correct
        extra[2] = 1.0 if self.local_interrupt is not None and self.local_interrupt() else 0.0
        world.allreduce(self.buffer.flat)                       # the step's one all-reduce
        if average_buffers:
            self._read_buffers(buffers)
        self.stop_requested = bool(extra[2] > 0)
        trainer.update(self.buffer.views)
        return extra[0] / B, extra[1]

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
        """Add up the ranks' parts of an :func:`~tinyvgg.trainer.evaluate_model` result: the loss and
        accuracy of the whole data set, the same on every rank."""
        seen = len(result["labels"])
        sums = np.array([result["loss"] * seen, (result["predictions"] == result["labels"]).sum(), seen],
                        dtype=np.float64)
        self.world.allreduce(sums)
        return dict(result, loss=float(sums[0] / sums[2]), accuracy=float(sums[1] / sums[2]))


class SyncBatchNorm2D(BatchNorm2D):
    """:class:`~tinyvgg.layers.BatchNorm2D` whose batch statistics run over the rows of every rank.

    Forward: rank r holds m_r of the m = sum_r m_r values of each channel. Two all-reduces of
    per-channel sums give the whole batch's statistics, in the same two passes one process
    makes: mean = (sum_r sum x) / m (m travels with the first sums), then
    var = (sum_r sum (x - mean)^2) / m. Every rank then normalizes its rows with the same mean
    and variance, and moves the running statistics the same way. (Ranks that all hold the
    same rows, as when every rank recomputes precise statistics from the same batches, get
    that batch's statistics: copies change neither a mean nor a variance.)

    Backward, derived: with s = sqrt(var + eps) and g_i = dL/dxhat_i = gamma * dout_i, each
    x_j reaches every xhat_i of the *whole* batch through the mean and the variance:
    d xhat_i / d x_j = (delta_ij - 1/m) / s - xhat_i * xhat_j / (m s), for i over all ranks. So
        dL/dx_j = sum_i g_i d xhat_i / d x_j
                = gamma / s * (dout_j - (1/m) sum_i dout_i - xhat_j (1/m) sum_i dout_i xhat_i),
    the single-process formula, whose two channel means run over all m values: each rank
    all-reduces its two (C,) sums, sum dout and sum dout * xhat, before it can form its dx.
    dgamma = sum dout * xhat and dbeta = sum dout stay local sums: they are gradients of
    parameters, which the step's all-reduce adds up with all the others. (This presumes dout is
    in the scale of the global loss, which :class:`DataParallel` arranges with ``n_r / B``.)
    """

    @classmethod
    def replacing(cls, layer, world):
        """A synchronized layer that shares ``layer``'s parameters, buffers and settings."""
        sync = cls(layer.num_channels, layer.momentum, layer.eps)
        sync.params, sync.buffers, sync.trainable = layer.params, layer.buffers, layer.trainable
        sync.world = world
        return sync

    def __repr__(self):
        return f"SyncBatchNorm2D({self.num_channels})"

    def forward(self, x, train=False):
        if not (train and self.trainable):
            return super().forward(x, train)                    # running statistics: nothing to share
        # [part batchnorm] hint: the reference forward, with each per-channel sum all-reduced over the ranks
        ### BEGIN SOLUTION
        xp = get_array_module(x)
        C = self.num_channels
        x2 = x.reshape(-1, C)                                   # (N, H, W, C) -> (m_r, C)
        count = xp.full(1, x2.shape[0], dtype=x.dtype)          # (1,): m_r
        sums = self.world.allreduce(xp.concatenate([x2.sum(axis=0), count]))  # (C + 1,): over all ranks
        m = sums[C]                                             # values per channel over all ranks (float32:
                                                                # exact to 2**24, then to 6e-8)
        mean = sums[:C] / m                                     # (C,)
        centred = x2 - mean                                     # (m_r, C)
        var = self.world.allreduce((centred * centred).sum(axis=0)) / m  # (C,), biased
        self.update_running_statistics(mean, var * (m / xp.maximum(m - 1, 1)))
        inv_std = 1 / xp.sqrt(var + self.eps)                   # (C,)
        xhat = centred * inv_std                                # (m_r, C)
        self.cache, self.values = (xhat, inv_std, True), m
        return (self.params["gamma"] * xhat + self.params["beta"]).reshape(x.shape)  # (m_r, C) -> (N, H, W, C)
        ### END SOLUTION

    def backward(self, dout):
        xhat, inv_std, batch_stats = self.cache
        if not batch_stats:
            return super().backward(dout)                       # a forward on running statistics
        # [part batchnorm] hint: the reference backward, its two channel means taken over every rank's values
        ### BEGIN SOLUTION
        xp = get_array_module(dout)
        C, m = self.num_channels, self.values
        dout2 = dout.reshape(-1, C)                             # (N, H, W, C) -> (m_r, C)
        sums = xp.concatenate([dout2.sum(axis=0), (dout2 * xhat).sum(axis=0)])  # (2C,): this rank's
        self.grads = {"gamma": sums[C:].copy(), "beta": sums[:C].copy()}       # local: reduced with the rest
        self.world.allreduce(sums)                              # (2C,): the whole batch's
        scale = self.params["gamma"] * inv_std                  # (C,)
        dx = scale * (dout2 - sums[:C] / m - xhat * (sums[C:] / m))  # (m_r, C)
        return dx.reshape(dout.shape)                           # (m_r, C) -> (N, H, W, C)
        ### END SOLUTION
