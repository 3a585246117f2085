"""Precise batch normalization: running statistics recomputed over the training data.

While training, every :class:`~tinyvgg.layers.BatchNorm2D` normalizes with its batch's own
mean and variance and moves a running average towards them, 10% a step
(``running <- 0.9 running + 0.1 batch``). Evaluation uses that running average. It lags:
it mixes the statistics of the last ~20 steps, taken while the weights below the layer were
still moving. With a large data set and a small learning rate the lag does not matter; with
150 images (three steps an epoch) the weights move far between steps and the running
statistics describe a network that no longer exists: evaluation then scores near chance
while training accuracy is high.

The cure (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021; fvcore's and Detectron2's
``PreciseBN``): after training, with the weights fixed, run the training images through the
network once more and set each layer's running statistics to the average of the batch
statistics it sees, the quantities training normalized with. Each layer still normalizes
every batch with its batch's statistics during this pass, so the layers above see what
they saw in training.

The pass costs about a third of a training step per batch (a forward pass). It pays only where
the running statistics are wrong, so :func:`refresh_batch_norm_statistics` first runs *one*
batch and compares its statistics with the running ones (:func:`disagreement`); where they
agree to within the batch's own sampling noise the running statistics stay, and the pass is
skipped; otherwise the pass goes on from that batch. After the few steps of a small folder's epoch
they never agree; on the default run at lr 0.02 they came within 0.08-0.10, still too far to skip.
"""
import numpy as np

from ..backend import to_host
from ..layers import BatchNorm2D

#: The running statistics stay when they are this close to one batch's (:func:`disagreement`): a
#: shift of 0.05 batch standard deviations in the channels' means, or 5% in their scales, on average
#: over the channels of the layer that moved most. At 0.1 the default run kept its running statistics in
#: 6 of 10 epochs and scored 0.005-0.021 lower in them than with precise ones (benchmarks/README.md).
AGREEMENT = 0.05


def batch_norm_layers(model):
    """The trainable :class:`~tinyvgg.layers.BatchNorm2D` layers of ``model`` (frozen ones keep their statistics)."""
    return [layer for layer in model.layers if isinstance(layer, BatchNorm2D) and layer.trainable]


def disagreement(running, batch, eps=1e-5):
    """How far running statistics are from a batch's: for each layer, the channels' mean of
    ``|running mean - batch mean| / batch std + |log(running std / batch std)|``; the largest over the
    layers. running, batch: one ``(mean, var)`` pair of ``(C,)`` arrays per layer."""
    worst = 0.0
    for (mean, var), (batch_mean, batch_var) in zip(running, batch):
        mean, var, batch_mean, batch_var = (to_host(a).astype(np.float64) for a in (mean, var, batch_mean, batch_var))
        shift = np.abs(mean - batch_mean) / np.sqrt(batch_var + eps)           # (C,)
        scale = np.abs(np.log((var + eps) / (batch_var + eps))) / 2             # (C,): |log of the std ratio|
        worst = max(worst, float((shift + scale).mean()))
    return worst


def refresh_batch_norm_statistics(model, batches, agreement=AGREEMENT):
    """Precise statistics where the running ones are off: run the first of ``batches``, and if its
    statistics agree with the running ones (:func:`disagreement` at most ``agreement``) keep them;
    otherwise recompute them over all ``batches`` (:func:`recompute_batch_norm_statistics`).
    Returns the number of images the statistics now come from (0: the running ones were kept).
    agreement=None: always recompute (on several ranks, whose running statistics may differ while
    their decision must not)."""
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    if agreement is None:
        return recompute_batch_norm_statistics(model, batches)
    running = [(layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()) for layer in layers]
    remaining = iter(batches)
    first = recompute_batch_norm_statistics(model, [next(remaining)])  # the layers now hold this batch's statistics
    sample = [(layer.buffers["running_mean"], layer.buffers["running_var"]) for layer in layers]
    if disagreement(running, sample) <= agreement:
        for layer, (mean, var) in zip(layers, running):
            layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = mean, var
        return 0
    return recompute_batch_norm_statistics(model, remaining, seen=first)  # the pass goes on from that batch


def recompute_batch_norm_statistics(model, batches, max_images=None, seen=0):
    """Set every trainable batch-norm layer's running mean and variance to the average, over
    ``batches``, of its batch statistics, each batch weighted by its number of images.

    batches: an iterable of ``(x, y)`` (a :class:`~tinyvgg.data.BatchLoader` without shuffling or
    augmentation, so that the result is the same every time). Each batch should mix the classes
    as training's batches do: the mean of the batch variances misses the variance between the
    batches' means, which is large when a batch holds one or two classes (a folder read in
    order); a Subset in a fixed shuffled order gives both. max_images: stop once this many
    images were seen (None: all). Dropout is off and no layer keeps a cache. Returns the number of
    images used (0 when the model has no batch normalization: then nothing is run).

    The average is a running one with a changing momentum: after batches of m_1, ..., m_k images,
    momentum = (m_1 + ... + m_(k-1)) / (m_1 + ... + m_k) makes
    running = sum_i m_i * batch_value_i / sum_i m_i, the weighted mean. seen: images the running
    statistics already average (0: the first batch replaces them), so that a pass can be continued.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        for x, y in batches:
            if max_images is not None and seen >= max_images:
                break
            m = len(x) if y is None else len(y)  # the batch's size: under data parallelism x holds this rank's rows
            for layer in layers:
                layer.momentum = seen / (seen + m)     # the first batch replaces what was there
            for layer in model.layers:
                x = layer.forward(x, train=layer in layers)  # batch statistics, as in training
                layer.cache = None
            seen += m
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return seen
