"""A training step's arithmetic: the gradients of a batch, separate from what is done with them.

A step object is called with a batch and returns ``(grads, loss_sum, correct)``: the gradients
of the batch's mean loss (a dict by parameter name), the loss summed over the batch and the
number of correct predictions (device scalars: reading them would wait for a GPU). The loop
(:class:`~tinyvgg.training.loop.Trainer`) then makes the one update; it never needs to know how
the gradients were computed. :class:`LocalStep` computes them on this process;
:class:`~tinyvgg.training.parallel.DataParallelStep` wraps one and adds micro-batches and the
ranks' all-reduce.
"""
from ..layers import SoftmaxCrossEntropy


class LocalStep:
    """Forward, loss and backward of one batch on this process::

        logits = model.forward(x, train=True)        # forward, caching what backward needs
        loss = loss_fn.forward(logits, y)             # mean softmax cross-entropy over the batch
        model.backward(loss_fn.backward(share))       # every layer's grads, by the chain rule

    ``share`` scales the gradient: the batch's mean loss counts ``share`` of the loss being
    minimised (1 for a whole batch; n_k / B for a micro-batch of n_k rows of a batch of B, which
    :class:`~tinyvgg.training.parallel.DataParallelStep` passes). Frozen layers get no gradient.
    """

    def __init__(self, model):
        self.model = model
        self.loss_fn = SoftmaxCrossEntropy()

    def __call__(self, x, y, share=1.0):
        """``(grads, loss_sum, correct)`` of the batch ``x`` (N, H, W, 3) with labels ``y`` (N,)."""
        logits = self.model.forward(x, train=True)                      # (N, classes)
        loss = self.loss_fn.forward(logits, y)                          # mean over the N examples
        self.model.backward(self.loss_fn.backward(share))  # the loop turns model.input_grad off: no dL/d(images)
        return self.model.named_grads(trainable_only=True), loss * len(y), (logits.argmax(axis=1) == y).sum()

    def watch(self, interrupted):
        """The reader of the stop request the loop checks after each step: this process's own."""
        return interrupted

    def reduce_evaluation(self, result):
        """An evaluation of this process's data is the whole evaluation."""
        return result
