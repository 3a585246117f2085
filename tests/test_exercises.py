"""The lessons' self-checks: an unanswered exercise is a note, a wrong one says why, and `without`
keeps an answer from passing by calling the oracle it is compared with."""
import numpy as np
import pytest

from tinyvgg.exercises import check, close, without
from tinyvgg.models import Sequential, vgg


def test_check_reports_not_done_wrong_and_right(capsys):
    def not_done():
        raise NotImplementedError
    assert check(not_done) is False
    assert "Not done yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Not yet right: the loss is off"):
        check(lambda: close(1.0, 2.0, "the loss"))
    assert check(lambda: close(1.0, 1.0 + 1e-9, "the loss")) is True


def count_by_building():
    return vgg("vgg11", num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=16, init="zeros").num_params()


def test_without_refuses_the_oracle_inside_and_restores_it_after():
    expected = count_by_building()
    with pytest.raises(AssertionError, match="count them from the configuration"), \
            without(Sequential, "__init__", "count them from the configuration"):
        count_by_building()
    assert count_by_building() == expected          # restored after a failure inside the block
    with without(np, "log", "no logs here"):
        assert np.exp(0.0) == 1.0                   # other names are untouched
    assert np.log(1.0) == 0.0
