"""How a classifier is scored: top-k accuracy (lesson 21).

The VGG paper (Simonyan & Zisserman, 2015, section 4) reports two numbers for every network on
ImageNet's 1000 classes: the *top-1 error*, the share of images whose highest-scoring class is wrong,
and the *top-5 error*, the share whose true class is not among the five highest-scoring ones (the main
criterion of the ILSVRC challenge). Both are ``1 - top_k_accuracy(scores, labels, k)``.
"""
import numpy as np

from .backend import get_array_module


def top_k_accuracy(scores, labels, k=1):
    """The share of examples whose true class is among the ``k`` highest-scoring classes.

    scores: (N, K) class scores (logits or probabilities: the ranks are the same); labels: (N,) ints.
    An example counts as right when fewer than ``k`` *other* classes score at least as high as its
    true class: a tie counts against it, so a network that gives every class the same score is right
    only at k = K, never by luck of the order. Returns a float in [0, 1]; it never decreases with k.

    >>> scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    >>> top_k_accuracy(scores, np.array([2, 0]), k=1), top_k_accuracy(scores, np.array([2, 0]), k=2)
    (0.5, 1.0)
    """
    N, K = scores.shape if scores.ndim == 2 else (None, None)
    if N is None or labels.shape != (N,):
        raise ValueError(f"top_k_accuracy needs scores (N, K) and labels (N,), got {tuple(scores.shape)} "
                         f"and {tuple(labels.shape)}.")
    if not 1 <= k <= K:
        raise ValueError(f"k must be between 1 and the number of classes {K}, got {k}.")
    xp = get_array_module(scores)
    # [part top_k] hint: for each example, count the other classes that score at least as high as its true one
    ### BEGIN SOLUTION
    true = scores[xp.arange(N), labels]                       # (N,) each example's score for its true class
    rivals = (scores >= true[:, None]).sum(axis=1) - 1        # (N, K) -> (N,): the true class ties with itself
    return float((rivals < k).mean())
    ### END SOLUTION
