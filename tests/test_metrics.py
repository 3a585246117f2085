"""Top-k accuracy against a loop over the examples, ties included."""
import numpy as np
import pytest

from tinyvgg.metrics import top_k_accuracy


def top_k_loop(scores, labels, k):
    """An example is right when fewer than k other classes score at least as high as its true class."""
    right = 0
    for row, label in zip(scores, labels):
        rivals = sum(1 for j, s in enumerate(row) if j != label and s >= row[label])
        right += rivals < k
    return right / len(labels)


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_matches_the_loop_with_and_without_ties(k):
    rng = np.random.default_rng(k)
    for scores in (rng.standard_normal((40, 10)), rng.integers(0, 3, (40, 10)).astype(np.float32)):
        labels = rng.integers(0, 10, 40)
        assert top_k_accuracy(scores, labels, k) == pytest.approx(top_k_loop(scores, labels, k))


def test_never_decreases_with_k_and_is_one_at_k_equal_to_the_classes():
    rng = np.random.default_rng(0)
    scores, labels = rng.standard_normal((50, 7)), rng.integers(0, 7, 50)
    values = [top_k_accuracy(scores, labels, k) for k in range(1, 8)]
    assert values == sorted(values) and values[-1] == 1.0
    assert values[0] == np.mean(scores.argmax(axis=1) == labels)  # top-1 is the usual accuracy without ties


def test_equal_scores_are_never_right_by_luck():
    scores, labels = np.zeros((6, 4)), np.arange(6) % 4
    assert [top_k_accuracy(scores, labels, k) for k in range(1, 5)] == [0.0, 0.0, 0.0, 1.0]


@pytest.mark.parametrize("scores, labels, k, message", [
    (np.zeros((3, 4)), np.zeros(2, int), 1, "labels"), (np.zeros(4), np.zeros(4, int), 1, "scores"),
    (np.zeros((3, 4)), np.zeros(3, int), 0, "k must be"), (np.zeros((3, 4)), np.zeros(3, int), 5, "k must be")])
def test_wrong_shapes_and_k_get_a_sentence(scores, labels, k, message):
    with pytest.raises(ValueError, match=message):
        top_k_accuracy(scores, labels, k)
