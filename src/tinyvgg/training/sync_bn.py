"""Synchronized batch normalization: batch statistics over the rows of every rank, with either kernel.

:class:`SyncBatchNorm2D` is the reference layer's arithmetic with each per-channel sum
all-reduced over the ranks; :class:`FastSyncBatchNorm2D` is the same over
:class:`~tinyvgg.fastconv.FastBatchNorm2D` (column sums by BLAS; its evaluation path), so that
``--sync-batch-norm`` keeps the kernels the model asked for.
The student version ships this module whole (lesson 16 runs it; the part a student writes is the
batch normalization of lesson 10, which :class:`SyncBatchNorm2D` inherits for evaluation and its running statistics).
:func:`~tinyvgg.training.parallel.prepare_model_for_ranks` swaps them in before the optimizer is built.
"""
from ..backend import get_array_module
from ..fastconv import FastBatchNorm2D, channel_sums
from ..layers import BatchNorm2D


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
    in the scale of the global loss, which :class:`~tinyvgg.training.parallel.DataParallelStep`
    arranges with ``n_r / B``.)
    """

    @classmethod
    def replacing(cls, layer, world):
        """A synchronized layer that shares ``layer``'s parameters, buffers and settings."""
        sync = cls(layer.num_channels, layer.momentum, layer.eps)
        sync.params, sync.buffers, sync.trainable = layer.params, layer.buffers, layer.trainable
        sync.world = world
        return sync

    def __repr__(self):
        return f"{type(self).__name__}({self.num_channels})"

    def column_sums(self, a):
        """``(m, C) -> (C,)``: each channel's sum over its m values."""
        return a.sum(axis=0)

    def forward(self, x, train=False):
        if not (train and self.trainable):
            return super().forward(x, train)                    # running statistics: nothing to share
        xp = get_array_module(x)
        C = self.num_channels
        x2 = x.reshape(-1, C)                                   # (N, H, W, C) -> (m_r, C)
        count = xp.full(1, x2.shape[0], dtype=x.dtype)          # (1,): m_r
        sums = self.world.allreduce(xp.concatenate([self.column_sums(x2), count]), kind="batch norm")  # (C + 1,)
        m = sums[C]                                             # values per channel over all ranks (float32:
                                                                # exact to 2**24, then to 6e-8)
        mean = sums[:C] / m                                     # (C,)
        centred = x2 - mean                                     # (m_r, C)
        var = self.world.allreduce(self.column_sums(centred * centred), kind="batch norm") / m  # (C,), biased
        self.update_running_statistics(mean, var * (m / xp.maximum(m - 1, 1)))
        inv_std = 1 / xp.sqrt(var + self.eps)                   # (C,)
        xhat = centred * inv_std                                # (m_r, C)
        self.cache, self.values = (xhat, inv_std, True), m
        return (self.params["gamma"] * xhat + self.params["beta"]).reshape(x.shape)  # (m_r, C) -> (N, H, W, C)

    def backward(self, dout):
        xhat, inv_std, batch_stats = self.cache
        if not batch_stats:
            return super().backward(dout)                       # a forward on running statistics
        xp = get_array_module(dout)
        C, m = self.num_channels, self.values
        dout2 = dout.reshape(-1, C)                             # (N, H, W, C) -> (m_r, C)
        sums = xp.concatenate([self.column_sums(dout2), self.column_sums(dout2 * xhat)])  # (2C,): this rank's
        self.grads = {"gamma": sums[C:].copy(), "beta": sums[:C].copy()}       # local: reduced with the rest
        self.world.allreduce(sums, kind="batch norm")          # (2C,): the whole batch's
        scale = self.params["gamma"] * inv_std                  # (C,)
        dx = scale * (dout2 - sums[:C] / m - xhat * (sums[C:] / m))  # (m_r, C)
        return dx.reshape(dout.shape)                           # (m_r, C) -> (N, H, W, C)


class FastSyncBatchNorm2D(SyncBatchNorm2D, FastBatchNorm2D):
    """:class:`SyncBatchNorm2D` over :class:`~tinyvgg.fastconv.FastBatchNorm2D`: the channel sums by BLAS
    (a ``(m,) @ (m, C)`` product, as the fast layer sums its columns) and, on running statistics, the
    fast layer's own forward and backward (next in the method order)."""

    def column_sums(self, a):
        return channel_sums(a, self.num_channels)               # (m,) @ (m, C) -> (C,), the fast layer's own
