import os
import stat

import numpy as np
import pytest

from tinyvgg import checkpoint
from tinyvgg.checkpoint import CheckpointError
from tinyvgg.models import vgg11


def tiny(num_classes=3, seed=0):
    return vgg11(num_classes=num_classes, input_shape=(32, 32, 3), width=1 / 16, fc_units=8, seed=seed)


def test_round_trip_keeps_weights_optimizer_state_and_meta(tmp_path):
    model = tiny()
    path = str(tmp_path / "m.npz")
    meta = {"model_config": model.config, "class_names": ["a", "b", "c"], "epoch": 3}
    checkpoint.save(path, model.named_params(), meta, optimizer={"velocity/fc1.W": np.ones((4, 8))})
    ckpt = checkpoint.load(path)
    assert ckpt.meta["class_names"] == ["a", "b", "c"] and ckpt.meta["epoch"] == 3
    np.testing.assert_array_equal(ckpt.optimizer["velocity/fc1.W"], np.ones((4, 8)))
    other = tiny(seed=1)
    ckpt.load_into(other)
    for name, p in model.named_params().items():
        np.testing.assert_array_equal(other.named_params()[name], p)
    rebuilt, _ = checkpoint.load_model(path)
    np.testing.assert_array_equal(rebuilt.named_params()["fc1.W"], model.named_params()["fc1.W"])


def test_a_failed_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "m.npz"
    checkpoint.save(str(path), {"w": np.ones(3)}, {"epoch": 1})
    before = path.read_bytes()

    def crash(f):
        f.write(b"half a file")
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        checkpoint.atomic_write(str(path), crash)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary file left behind


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="file modes are POSIX")
def test_saved_files_get_an_ordinary_mode_not_the_temporary_files_private_one(tmp_path):
    # a checkpoint shared on a lab machine must be readable by others, as any file written with open() is
    previous = os.umask(0o022)
    try:
        checkpoint.save(str(tmp_path / "m.npz"), {"w": np.ones(3)}, {"epoch": 1})
        os.umask(0o077)
        checkpoint.save(str(tmp_path / "private.npz"), {"w": np.ones(3)}, {"epoch": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.npz").stat().st_mode) == 0o600


def test_truncated_foreign_and_missing_files_get_clear_errors(tmp_path):
    path = tmp_path / "m.npz"
    checkpoint.save(str(path), {"w": np.ones(1000)}, {"epoch": 1})
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        checkpoint.load(str(tmp_path / "cut.npz"))
    np.savez(tmp_path / "other.npz", a=np.ones(2))
    with pytest.raises(CheckpointError, match="not a tinyvgg checkpoint"):
        checkpoint.load(str(tmp_path / "other.npz"))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(str(tmp_path / "nothing.npz"))


def test_weights_of_another_model_are_refused(tmp_path):
    path = str(tmp_path / "m.npz")
    checkpoint.save(path, tiny(num_classes=3).named_params(), {})
    with pytest.raises(CheckpointError, match="does not fit this model"):
        checkpoint.load(path).load_into(tiny(num_classes=4))


def test_batch_norm_running_statistics_are_saved_and_required(tmp_path):
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8, batch_norm=True)
    model.forward(np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32), train=True)
    path = str(tmp_path / "bn.npz")
    checkpoint.save(path, model.named_params(), {"model_config": model.config}, buffers=model.named_buffers())
    rebuilt, _ = checkpoint.load_model(path)
    for name, value in model.named_buffers().items():
        assert value.any() and np.array_equal(rebuilt.named_buffers()[name], value), name
    checkpoint.save(path, model.named_params(), {"model_config": model.config})  # the statistics left out
    with pytest.raises(CheckpointError, match=r"the buffers do not match this model: missing \['block1_bn1"):
        checkpoint.load_model(path)
