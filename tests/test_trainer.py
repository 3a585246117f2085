import json

import numpy as np
import pytest

from tinyvgg import checkpoint
from tinyvgg.data import BatchLoader, make_shapes
from tinyvgg.models import vgg11
from tinyvgg.optim import SGD, Adam, ReduceLROnPlateau
from tinyvgg.trainer import BestCheckpoint, EarlyStopping, HistoryWriter, LastCheckpoint, Trainer


def small_model(rng, num_classes=10, dropout=0.5):
    return vgg11(num_classes=num_classes, input_shape=(32, 32, 3), width=0.125, fc_units=32, dropout=dropout,
                 rng=rng)


def loaders(rng, n=120, batch=32):
    train, val = make_shapes(n, seed=0), make_shapes(60, seed=1)
    mean, std = train.channel_stats()
    return (BatchLoader(train, batch, mean, std, shuffle=True, augment=True, rng=rng),
            BatchLoader(val, 64, mean, std))


def test_a_small_network_overfits_a_tiny_batch():
    rng = np.random.default_rng(0)
    model = small_model(rng, dropout=0.0)
    train = make_shapes(16, seed=0)
    mean, std = train.channel_stats()
    trainer = Trainer(model, Adam(model.named_params(), lr=1e-3), rng, progress=False)
    trainer.fit(BatchLoader(train, 16, mean, std), epochs=150)
    assert trainer.history["accuracy"][-1] == 1.0
    assert trainer.history["loss"][-1] < 0.05


def test_loss_falls_on_the_built_in_data():
    rng = np.random.default_rng(0)
    model = small_model(rng)
    train, val = loaders(rng, n=320)
    trainer = Trainer(model, Adam(model.named_params(), lr=1e-3), rng, progress=False)
    trainer.fit(train, val, epochs=5)
    assert trainer.history["loss"][-1] < trainer.history["loss"][0] - 0.05


def make_trainer(rng, folder, opt=SGD):
    model = small_model(rng)
    optimizer = opt(model.named_params(), lr=0.01)
    callbacks = [EarlyStopping(5), HistoryWriter(str(folder)), LastCheckpoint(str(folder / "last.npz"))]
    return Trainer(model, optimizer, rng, ReduceLROnPlateau(optimizer, patience=0), callbacks=callbacks,
                   meta={"class_names": list("0123456789")}, progress=False)


@pytest.mark.parametrize("opt", [SGD, Adam])
def test_one_epoch_plus_resume_equals_two_epochs_bit_for_bit(tmp_path, opt):
    (tmp_path / "straight").mkdir()
    (tmp_path / "split").mkdir()
    rng = np.random.default_rng(7)
    straight = make_trainer(rng, tmp_path / "straight", opt)
    straight.fit(*loaders(rng), epochs=2)

    rng = np.random.default_rng(7)
    first = make_trainer(rng, tmp_path / "split", opt)
    first.fit(*loaders(rng), epochs=1)
    rng = np.random.default_rng(99)  # a fresh process: the checkpoint must restore everything
    resumed = make_trainer(rng, tmp_path / "split", opt)
    resumed.restore(checkpoint.load(str(tmp_path / "split" / "last.npz")))
    resumed.fit(*loaders(rng), epochs=2)

    for name, p in straight.model.named_params().items():
        np.testing.assert_array_equal(resumed.model.named_params()[name], p, err_msg=name)
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.optimizer.lr == straight.optimizer.lr
    history = json.loads((tmp_path / "split" / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert (tmp_path / "split" / "history.csv").read_text().splitlines()[0].startswith("epoch,loss,accuracy")


def test_best_checkpoint_is_never_replaced_by_a_worse_one(tmp_path):
    path = str(tmp_path / "best.npz")

    class Fake:
        history, epoch = {}, 0
        saved = []

        def monitored(self, logs):
            return logs["val_accuracy"]

        def save(self, p, extra):
            checkpoint.save(p, {"w": np.zeros(1)}, extra)
            self.saved.append(extra["best_value"])

        def log(self, text):
            pass

    fake = Fake()
    best = BestCheckpoint(path)
    for acc in (0.5, 0.7, 0.6, 0.7, 0.8):
        best.on_epoch_end(fake, {"val_accuracy": acc})
    assert fake.saved == [0.5, 0.7, 0.8]
    again = BestCheckpoint(path)  # a later run in the same folder reads the stored value
    again.on_epoch_end(fake, {"val_accuracy": 0.75})
    assert fake.saved == [0.5, 0.7, 0.8] and checkpoint.load(path).meta["best_value"] == 0.8


def test_early_stopping_stops_after_patience():
    class Fake:
        stop_training = False

        def monitored(self, logs):
            return logs["val_accuracy"]

        def log(self, text):
            pass

    fake, stopper = Fake(), EarlyStopping(patience=2)
    for acc in (0.5, 0.6, 0.6):
        stopper.on_epoch_end(fake, {"val_accuracy": acc})
    assert not fake.stop_training
    stopper.on_epoch_end(fake, {"val_accuracy": 0.55})
    assert fake.stop_training
