import json

import numpy as np
import pytest

from tinyvgg import checkpoint
from tinyvgg.data import BatchLoader, make_shapes
from tinyvgg.models import vgg11
from tinyvgg.optim import SGD, Adam, LinearWarmup, ReduceLROnPlateau
from tinyvgg.training import BestCheckpoint, EarlyStopping, HistoryWriter, LastCheckpoint, Trainer, TrainingDiverged
from tinyvgg.training.precise_bn import batch_norm_layers, recompute_batch_norm_statistics


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


def precise_batches(n=120):
    """The training images of :func:`loaders` in order, unaugmented: what precise BN recomputes over."""
    train = make_shapes(n, seed=0)
    return BatchLoader(train, 32, *train.channel_stats())


def make_trainer(rng, folder, opt=SGD, batch_norm=False, precise=False):
    model = small_model(rng) if not batch_norm else \
        vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=32, rng=rng, batch_norm=True)
    optimizer = opt(model.named_params(), lr=0.01)
    callbacks = [EarlyStopping(5), HistoryWriter(str(folder)), LastCheckpoint(str(folder / "last.npz"))]
    return Trainer(model, optimizer, rng, ReduceLROnPlateau(optimizer, patience=0), callbacks=callbacks,
                   meta={"class_names": list("0123456789")}, progress=False, warmup=LinearWarmup(optimizer, 6),
                   clip_norm=1.0, precise_bn=precise_batches() if precise else None)


@pytest.mark.parametrize("opt, batch_norm, precise", [(SGD, False, False), (Adam, False, False), (SGD, True, False),
                                                      (SGD, True, True)])
def test_one_epoch_plus_resume_equals_two_epochs_bit_for_bit(tmp_path, opt, batch_norm, precise):
    (tmp_path / "straight").mkdir()
    (tmp_path / "split").mkdir()
    rng = np.random.default_rng(7)
    straight = make_trainer(rng, tmp_path / "straight", opt, batch_norm, precise)
    straight.fit(*loaders(rng), epochs=2)

    rng = np.random.default_rng(7)
    first = make_trainer(rng, tmp_path / "split", opt, batch_norm, precise)
    first.fit(*loaders(rng), epochs=1)
    rng = np.random.default_rng(99)  # a fresh process: the checkpoint must restore everything
    resumed = make_trainer(rng, tmp_path / "split", opt, batch_norm, precise)
    resumed.restore(checkpoint.load(str(tmp_path / "split" / "last.npz")))
    resumed.fit(*loaders(rng), epochs=2)

    for name, p in {**straight.model.named_params(), **straight.model.named_buffers()}.items():
        np.testing.assert_array_equal({**resumed.model.named_params(), **resumed.model.named_buffers()}[name], p,
                                      err_msg=name)
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


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_stops_with_a_clear_sentence_and_keeps_its_best_checkpoint(tmp_path):
    rng = np.random.default_rng(0)
    model = small_model(rng, dropout=0.0)
    optimizer = SGD(model.named_params(), lr=0.01)
    best = BestCheckpoint(str(tmp_path / "best.npz"))
    trainer = Trainer(model, optimizer, rng, callbacks=[best], progress=False)
    train, val = loaders(rng, n=320)
    trainer.fit(train, val, epochs=1)
    saved = (tmp_path / "best.npz").read_bytes()
    optimizer.lr = 50.0  # far too large: the loss explodes within a few steps
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+ \(epoch 2\): the loss (became|rose)"):
        trainer.fit(train, val, epochs=3)
    assert trainer.epoch == 1 and (tmp_path / "best.npz").read_bytes() == saved


def test_non_finite_weights_are_never_saved_as_best(tmp_path):
    class Fake:
        def monitored(self, logs):
            return logs["val_accuracy"]

        def save(self, path, extra):
            raise AssertionError("saved non-finite weights")

        def log(self, text):
            pass

    best = BestCheckpoint(str(tmp_path / "best.npz"))
    best.on_epoch_end(Fake(), {"loss": float("nan"), "val_loss": 1.0, "val_accuracy": 0.9})
    best.on_epoch_end(Fake(), {"loss": 1.0, "val_loss": float("inf"), "val_accuracy": 0.9})
    assert best.best is None and not (tmp_path / "best.npz").exists()


@pytest.mark.parametrize("interrupt_at, signal_name",  # (epoch, step): 4 steps an epoch
                         [((0, 3), "SIGINT"), ((1, 1), "SIGINT"), ((1, 2), "SIGINT"), ((1, 1), "SIGTERM")])
def test_ctrl_c_anywhere_then_resume_equals_the_straight_run_bit_for_bit(tmp_path, interrupt_at, signal_name):
    """Ctrl-C, or SIGTERM (what a batch system sends before it ends a job), stops after the step in flight."""
    import signal
    (tmp_path / "straight").mkdir()
    (tmp_path / "cut").mkdir()
    rng = np.random.default_rng(5)
    straight = make_trainer(rng, tmp_path / "straight")
    straight.fit(*loaders(rng), epochs=2)

    rng = np.random.default_rng(5)
    first = make_trainer(rng, tmp_path / "cut")
    step_of = first.train_step
    count = {"steps": 0}

    def step_then_ctrl_c(x, y):
        result = step_of(x, y)
        count["steps"] += 1
        if count["steps"] == interrupt_at[0] * 4 + interrupt_at[1]:
            signal.raise_signal(getattr(signal, signal_name))  # as a user's Ctrl-C: the step in flight finishes
        return result
    first.train_step = step_then_ctrl_c
    with pytest.raises(KeyboardInterrupt):
        first.fit(*loaders(rng), epochs=2)
    assert first.position == {**first.position, "epoch": interrupt_at[0], "step": interrupt_at[1]}
    first.save(str(tmp_path / "cut" / "last.npz"))

    rng = np.random.default_rng(123)  # a fresh process: everything comes from the checkpoint
    resumed = make_trainer(rng, tmp_path / "cut")
    resumed.restore(checkpoint.load(str(tmp_path / "cut" / "last.npz")))
    resumed.fit(*loaders(rng), epochs=2)
    for name, p in straight.model.named_params().items():
        np.testing.assert_array_equal(resumed.model.named_params()[name], p, err_msg=name)
    assert resumed.history["loss"] == straight.history["loss"]
    assert resumed.history["val_accuracy"] == straight.history["val_accuracy"]


def test_precise_bn_changes_only_the_running_statistics_and_draws_no_random_number():
    """Training with precise BN is training without it, bit for bit, except the statistics saved for
    evaluation, which are those recomputed over the training images after the last step."""
    runs = {}
    for precise in (False, True):
        rng = np.random.default_rng(3)
        model = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=32, rng=rng, batch_norm=True)
        optimizer = SGD(model.named_params(), lr=0.05)
        trainer = Trainer(model, optimizer, rng, progress=False, precise_bn=precise_batches() if precise else None)
        trainer.fit(loaders(rng)[0], epochs=2)
        runs[precise] = trainer
    plain, precise = runs[False], runs[True]
    assert precise.rng.bit_generator.state == plain.rng.bit_generator.state
    for name, value in plain.model.named_params().items():
        np.testing.assert_array_equal(precise.model.named_params()[name], value, err_msg=name)
    assert not np.array_equal(precise.model.named_buffers()["block1_bn1.running_mean"],
                              plain.model.named_buffers()["block1_bn1.running_mean"])
    recompute_batch_norm_statistics(plain.model, precise_batches())
    for name, value in plain.model.named_buffers().items():
        np.testing.assert_allclose(precise.model.named_buffers()[name], value, rtol=1e-6, err_msg=name)
    assert len(batch_norm_layers(plain.model)) == 8


def test_the_learning_rate_message_follows_the_epoch_line_it_belongs_to(capsys):
    rng = np.random.default_rng(0)
    model = small_model(rng, dropout=0.0)
    optimizer = SGD(model.named_params(), lr=0.1)

    class DivideBy10EveryEpoch:
        def step(self, value):
            optimizer.lr /= 10
            return True

    train = make_shapes(32, seed=0)
    trainer = Trainer(model, optimizer, rng, DivideBy10EveryEpoch(), progress=True)
    trainer.fit(BatchLoader(train, 32, *train.channel_stats()), epochs=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[0].startswith("epoch 1 ") and "lr 0.1 " in lines[0]
    assert lines[1] == "learning rate reduced to 0.01 from epoch 2 on"
    assert lines[2].startswith("epoch 2 ") and "lr 0.01 " in lines[2]
    assert lines[3:] == []                               # a last epoch announces no rate for an epoch that never comes


def test_ctrl_c_in_the_last_step_of_the_run_ends_it_as_a_finished_run(tmp_path):
    """Stopped after its last step, the run is complete: fit returns (the CLI then writes its end-of-run files)
    instead of saving a 'position' that a resume would find nothing left to do from."""
    import signal
    rng = np.random.default_rng(5)
    trainer = make_trainer(rng, tmp_path)
    step_of, count = trainer.train_step, {"steps": 0}

    def step_then_ctrl_c(x, y):
        result = step_of(x, y)
        count["steps"] += 1
        if count["steps"] == 8:                         # the last step of epoch 2 of 2
            signal.raise_signal(signal.SIGINT)
        return result
    trainer.train_step = step_then_ctrl_c
    trainer.fit(*loaders(rng), epochs=2)                # no KeyboardInterrupt
    assert trainer.epoch == 2 and trainer.position is None
