"""The lessons' self-checks: an unanswered exercise is a note, a wrong one says why, and `without`
keeps an answer from passing by calling the oracle it is compared with."""
import numpy as np
import pytest

from tinyvgg.exercises import check, close, without
from tinyvgg.models import Sequential, vgg


def test_check_reports_not_done_wrong_and_right(capsys):
    def not_done():
        raise NotImplementedError
    assert not check(not_done)
    assert "Not done yet" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="Not yet right: the loss is off"):
        check(lambda: close(1.0, 2.0, "the loss"))
    passed = check(lambda: close(1.0, 1.0 + 1e-9, "the loss"))
    assert passed and passed == True  # noqa: E712 (a Verdict: true, and shown as nothing in a notebook)
    assert callable(getattr(type(passed), "_ipython_display_", None))


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


def test_without_blocks_a_function_under_every_name_and_an_inherited_method_only_for_the_block():
    from tinyvgg import optim
    from tinyvgg.training import loop as trainer
    from tinyvgg.optim import SGD, Optimizer
    assert trainer.clip_grad_norm is optim.clip_grad_norm            # trainer imports it by name
    with without(optim, "clip_grad_norm", "clip it yourself"), pytest.raises(AssertionError, match="clip it yourself"):
        trainer.clip_grad_norm({"w": np.ones(3)}, 1.0)
    assert trainer.clip_grad_norm is optim.clip_grad_norm            # both names restored
    assert "step" not in vars(SGD)                                    # SGD inherits step
    with without(SGD, "step", "derive it"), pytest.raises(AssertionError, match="derive it"):
        SGD({"w": np.zeros(2)}, lr=0.1).step({"w": np.ones(2)})
    assert "step" not in vars(SGD) and SGD.step is Optimizer.step     # the shadow is gone again
