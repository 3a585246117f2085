"""A resumed run continues the run it was: its own number of epochs unless --epochs extends it,
a flag that would change the run applied (and said) or refused, and "nothing to do" said.

Each case runs the command-line tool in a subprocess, as a user would.
"""
import json

import numpy as np
import pytest
from test_cli_safety import TINY, snapshot
from test_cli_safety import assert_clear_error as assert_no_traceback
from test_cli_safety import run as run_command

from tinyvgg import checkpoint


def run(*args, timeout=300):
    return run_command("train", *args, timeout=timeout)


def assert_clear_error(result, *phrases):
    """As test_cli_safety's, and the error is one line starting with "error: "."""
    assert_no_traceback(result, *phrases)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run of 2 epochs, finished."""
    out = tmp_path_factory.mktemp("runs") / "A"
    result = run("--data", "shapes:200", "--epochs", "2", "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    return out


def stopped_after_epoch_1(finished, folder):
    """The state a run started with --epochs 2 had after its first epoch (Ctrl-C during validation
    leaves this): the finished run's first epoch, copied, with the run's own --epochs 2."""
    folder.mkdir()
    result = run("--data", "shapes:200", "--epochs", "1", "--out", folder, *TINY)
    assert result.returncode == 0, result.stderr
    arrays = checkpoint.read_npz(str(folder / "last.npz"))
    meta = json.loads(str(arrays.pop("meta")))
    assert meta["args"]["epochs"] == 1
    meta["args"]["epochs"] = 2
    np.savez(folder / "last.npz", meta=np.array(json.dumps(meta)), **arrays)
    return folder / "last.npz"


def test_resume_keeps_the_runs_own_epochs(finished, tmp_path):
    last = stopped_after_epoch_1(finished, tmp_path / "cut")
    result = run("--resume", last)  # no --epochs: the run's own 2, not the default 10
    assert result.returncode == 0, result.stderr
    assert "epoch 2 " in result.stdout and "epoch 3 " not in result.stdout
    resumed, straight = checkpoint.load(str(last)), checkpoint.load(str(finished / "last.npz"))
    assert resumed.meta["epoch"] == 2
    for name, value in {**straight.params, **straight.buffers}.items():  # and it is the same run, bit for bit
        np.testing.assert_array_equal({**resumed.params, **resumed.buffers}[name], value, err_msg=name)


def test_resume_with_more_epochs_extends_the_run(finished, tmp_path):
    result = run("--resume", finished / "last.npz", "--out", tmp_path / "B", "--epochs", "3",
                 "--batch-size", "32")  # the run's own value: no change, no refusal
    assert result.returncode == 0, result.stderr
    last = checkpoint.load(str(tmp_path / "B" / "last.npz"))
    assert last.meta["epoch"] == 3 and last.meta["args"]["epochs"] == 3
    assert (tmp_path / "B" / "best.npz").exists()  # the new folder holds the whole run, its best included


@pytest.mark.parametrize("extra", [[], ["--epochs", "1"], ["--out", "{tmp}/B", "--epochs", "2"]])
def test_a_finished_run_says_there_is_nothing_to_do(finished, tmp_path, extra):
    before = snapshot(finished)
    result = run("--resume", finished / "last.npz", *[a.format(tmp=tmp_path) for a in extra], timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to do: ") and "has trained 2 of its" in result.stdout
    assert "pass --epochs N with N above 2" in result.stdout and "Traceback" not in result.stderr
    assert snapshot(finished) == before and not (tmp_path / "B").exists()


def test_a_new_learning_rate_and_precise_bn_are_applied_and_said(finished, tmp_path):
    result = run("--resume", finished / "last.npz", "--out", tmp_path / "B", "--epochs", "3", "--lr", "0.005",
                 "--precise-bn", "64")
    assert result.returncode == 0, result.stderr
    assert "--lr 0.005 replaces the run's 0.02 from the next step on" in result.stdout
    assert "--precise-bn 64 replaces the run's 512" in result.stdout
    last = checkpoint.load(str(tmp_path / "B" / "last.npz"))
    assert last.meta["optimizer"]["scalars"]["lr"] == 0.005 and last.meta["args"]["lr"] == 0.005
    assert last.meta["args"]["precise_bn"] == 64


@pytest.mark.parametrize("flag, value, saved", [("--batch-size", "16", "32"), ("--data", "glyphs:200", "shapes:200"),
                                                ("--seed", "3", "0")])
def test_a_flag_that_would_change_the_run_is_refused(finished, tmp_path, flag, value, saved):
    before = snapshot(finished)
    result = run("--resume", finished / "last.npz", "--epochs", "3", flag, value, timeout=60)
    assert_clear_error(result, f"{flag} {value} would change the run that --resume continues",
                       f"(it was trained with {saved})")
    assert snapshot(finished) == before


def test_a_run_from_before_centering_resumes_and_fine_tunes_without_it(tmp_path):
    """A checkpoint written before --centering existed (no such argument, no ImageCentering layer) continues, and
    is fine-tuned, as the network it was: centering its inputs now would feed its filters images they never saw."""
    folder = tmp_path / "old"
    result = run("--data", "shapes:200", "--epochs", "1", "--out", folder, "--no-centering", *TINY)
    assert result.returncode == 0, result.stderr
    arrays = checkpoint.read_npz(str(folder / "last.npz"))
    meta = json.loads(str(arrays.pop("meta")))
    del meta["args"]["centering"]
    assert "center_images" not in meta["model_config"] and "first_conv_init" not in meta["model_config"]
    np.savez(folder / "last.npz", meta=np.array(json.dumps(meta)), **arrays)
    result = run("--resume", folder / "last.npz", "--epochs", "2")
    assert result.returncode == 0, result.stderr
    resumed = checkpoint.load(str(folder / "last.npz"))
    assert resumed.meta["epoch"] == 2 and resumed.meta["args"]["centering"] is False
    assert "center_images" not in resumed.meta["model_config"]
    result = run("--finetune", folder / "last.npz", "--data", "shapes:200", "--epochs", "1", "--out", tmp_path / "ft",
                 *TINY)  # the model's shape comes from the checkpoint, and so does its centering
    assert result.returncode == 0, result.stderr
    tuned = checkpoint.load(str(tmp_path / "ft" / "last.npz"))
    assert tuned.meta["args"]["centering"] is False and "center_images" not in tuned.meta["model_config"]


def test_a_centred_run_refuses_to_resume_without_its_centering(finished, tmp_path):
    before = snapshot(finished)
    assert checkpoint.load(str(finished / "last.npz")).meta["model_config"]["center_images"] is True
    result = run("--resume", finished / "last.npz", "--epochs", "3", "--no-centering", timeout=60)
    assert_clear_error(result, "--centering False would change the run that --resume continues",
                       "(it was trained with True)")
    assert snapshot(finished) == before
