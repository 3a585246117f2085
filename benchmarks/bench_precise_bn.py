"""Which running statistics should evaluation use? Plain, bias-corrected, or precise BN.

Trains the default network (VGG16 at width 0.25, batch normalization, SGD 0.02 with
a one-epoch warm-up) and, after every epoch, scores the validation data three ways
with the same weights:

- plain: the layers' running averages (momentum 0.9), what tinyvgg used before;
- corrected: the same averages started at zero and divided by 1 - 0.9^t (Adam's bias
  correction), which removes the start-up bias but not the lag behind moving weights;
- precise: the statistics recomputed over the training images (precise_bn).

And the disagreement between the running statistics and one batch's, which
``refresh_batch_norm_statistics`` compares with its threshold (0.1) to skip the precise pass.

It also times the precise pass against the epoch. Run::

    python benchmarks/bench_precise_bn.py shapes [EPOCHS]   # 150 shapes (15 a class), 300 validation
    python benchmarks/bench_precise_bn.py glyphs [EPOCHS]   # the same with the built-in digits
    python benchmarks/bench_precise_bn.py large [EPOCHS]    # the default run's 6000 shapes, 1000 validation
    python benchmarks/bench_precise_bn.py sizes [EPOCHS]    # how many images the precise pass needs

``sizes`` trains the network `python -m tinyvgg.train` builds, on its data, and after every epoch
recomputes the statistics over samples of 256, 512, 1024 and all 6000 training images (train.py's
fixed shuffled order, its batch size): validation loss and accuracy with each, and how far each
sample's statistics are from the whole set's (the same measure as the skip check).
"""
import sys
import time

import numpy as np

from tinyvgg.data import BatchLoader, Subset, open_dataset
from tinyvgg.models import build_model
from tinyvgg.optim import FastSGD, LinearWarmup, ReduceLROnPlateau
from tinyvgg.training import Trainer, evaluate_model
from tinyvgg.training.precise_bn import batch_norm_layers, disagreement, recompute_batch_norm_statistics

SAMPLE_SIZES = (256, 512, 1024, None)  # None: every training image


def track_bias_corrected(layer):
    """Shadow the layer's running statistics with zero-started ones and a step count."""
    shadow = {"mean": np.zeros_like(layer.buffers["running_mean"]),
              "var": np.zeros_like(layer.buffers["running_var"]), "t": 0}
    update = layer.update_running_statistics

    def wrapped(mean, var):
        update(mean, var)
        m = layer.momentum
        shadow["mean"] = m * shadow["mean"] + (1 - m) * mean
        shadow["var"] = m * shadow["var"] + (1 - m) * var
        shadow["t"] += 1
    layer.update_running_statistics = wrapped
    return shadow


def score_with(model, layers, stats, loader):
    """Validation accuracy with the given per-layer (mean, var), then the layers' own restored."""
    saved = [(layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()) for layer in layers]
    for layer, (mean, var) in zip(layers, stats):
        layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = mean, var
    accuracy = evaluate_model(model, loader)["accuracy"]
    for layer, (mean, var) in zip(layers, saved):
        layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = mean, var
    return accuracy


def main(which="small", epochs=None):
    name, epochs = (which, int(epochs or 10)) if which in ("shapes", "glyphs") else ("shapes", int(epochs or 3))
    spec = f"{name}:150" if which != "large" else "shapes"
    train_set, val_set = open_dataset(spec, 32, seed=0)
    if which != "large":
        val_set = open_dataset(f"{name}:300", 32, seed=1)[0]
    mean, std = train_set.channel_stats()
    rng = np.random.default_rng(0)
    model = build_model(dict(depth="vgg16", num_classes=10, input_shape=(32, 32, 3), width=0.25, fc_units=256,
                             dropout=0.0, include_top=True, init="he_normal", batch_norm=True), rng=rng, kernels="fast")
    layers = batch_norm_layers(model)
    shadows = [track_bias_corrected(layer) for layer in layers]
    optimizer = FastSGD(model.named_params(trainable_only=True), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = BatchLoader(train_set, 64, mean, std, shuffle=True, rng=rng)
    val_loader = BatchLoader(val_set, 256, mean, std)
    trainer = Trainer(model, optimizer, rng, ReduceLROnPlateau(optimizer, factor=0.1, patience=2), progress=False,
                      warmup=LinearWarmup(optimizer, len(loader)))
    print(f"{spec}: {len(train_set)} training, {len(val_set)} validation images; {len(loader)} steps an epoch")
    print("epoch  train_acc  val_plain  val_corrected  val_precise  train_precise  epoch_s  precise_s(all)  "
          "precise_s(1024)  disagreement")
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        trainer.fit(loader, None, epochs=epoch)
        seconds = time.perf_counter() - start
        plain = evaluate_model(model, val_loader)["accuracy"]
        corrected = score_with(model, layers, [(s["mean"] / (1 - 0.9 ** s["t"]), s["var"] / (1 - 0.9 ** s["t"]))
                                               for s in shadows], val_loader)
        saved = [(layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()) for layer in layers]
        first = next(iter(BatchLoader(Subset(train_set, np.random.default_rng(0).permutation(len(train_set))[:64]),
                                      64, mean, std)))  # the first batch of train.py's precise sample
        recompute_batch_norm_statistics(model, [first])  # what refresh_batch_norm_statistics compares with
        off = disagreement(saved, [(layer.buffers["running_mean"], layer.buffers["running_var"]) for layer in layers])
        start = time.perf_counter()
        recompute_batch_norm_statistics(model, BatchLoader(train_set, 64, mean, std))
        precise_all = time.perf_counter() - start
        sample = Subset(train_set, np.linspace(0, len(train_set) - 1, min(1024, len(train_set))).astype(np.int64))
        start = time.perf_counter()
        recompute_batch_norm_statistics(model, BatchLoader(sample, 64, mean, std))
        precise_1024 = time.perf_counter() - start
        precise = evaluate_model(model, val_loader)["accuracy"]
        train_precise = evaluate_model(model, BatchLoader(train_set, 256, mean, std))["accuracy"]
        for layer, (m, v) in zip(layers, saved):  # training goes on from the layers' own averages
            layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = m, v
        print(f"{epoch:5d}  {trainer.history['accuracy'][-1]:9.3f}  {plain:9.3f}  {corrected:13.3f}  "
              f"{precise:11.3f}  {train_precise:13.3f}  {seconds:7.1f}  {precise_all:14.2f}  {precise_1024:15.2f}  "
              f"{off:12.3f}",
              flush=True)


def statistics(layers):
    return [(layer.buffers["running_mean"].copy(), layer.buffers["running_var"].copy()) for layer in layers]


def set_statistics(layers, stats):
    for layer, (mean, var) in zip(layers, stats):
        layer.buffers["running_mean"][...], layer.buffers["running_var"][...] = mean, var


def sizes(epochs=None):
    """Validation with precise statistics over samples of SAMPLE_SIZES images, after every epoch of the default run."""
    from tinyvgg.train import CENTERING, HEAD_INITS
    epochs = int(epochs or 10)
    train_set, val_set = open_dataset("shapes", 32, seed=0)
    mean, std = train_set.channel_stats()
    rng = np.random.default_rng(0)
    model = build_model(dict(depth="vgg16", num_classes=10, input_shape=(32, 32, 3), width=0.25, fc_units=256,
                             dropout=0.0, include_top=True, init="he_normal", batch_norm=True, **HEAD_INITS["he"],
                             **CENTERING), rng=rng, kernels="fast")
    layers = batch_norm_layers(model)
    optimizer = FastSGD(model.named_params(trainable_only=True), lr=0.02, momentum=0.9, weight_decay=5e-4)
    loader = BatchLoader(train_set, 64, mean, std, shuffle=True, rng=rng)
    val_loader = BatchLoader(val_set, 256, mean, std)
    trainer = Trainer(model, optimizer, rng, ReduceLROnPlateau(optimizer, factor=0.1, patience=2), progress=False,
                      warmup=LinearWarmup(optimizer, len(loader)))
    order = np.random.default_rng(0).permutation(len(train_set))  # train.precise_bn_batches's sample
    names = [str(n or len(train_set)) for n in SAMPLE_SIZES]
    print(f"default run's data and network: {len(train_set)} training, {len(val_set)} validation images")
    print("epoch  running: loss acc  " + "  ".join(f"{n}: loss acc off" for n in names) + "  (off: from all images')")
    for epoch in range(1, epochs + 1):
        trainer.fit(loader, None, epochs=epoch)
        running = statistics(layers)
        val = evaluate_model(model, val_loader)
        row = [f"{epoch:5d}  {val['loss']:.4f} {val['accuracy']:.3f}"]
        results = {}
        for n in SAMPLE_SIZES:
            sample = Subset(train_set, order[:n])
            recompute_batch_norm_statistics(model, BatchLoader(sample, 64, mean, std))
            results[n] = (statistics(layers), evaluate_model(model, val_loader))
        whole = results[None][0]
        for n in SAMPLE_SIZES:
            stats, val = results[n]
            row.append(f"{val['loss']:.4f} {val['accuracy']:.3f} {disagreement(stats, whole):.3f}")
        print("  ".join(row), flush=True)
        set_statistics(layers, running)  # training goes on from its own averages


if __name__ == "__main__":
    if sys.argv[1:2] == ["sizes"]:
        sizes(*sys.argv[2:3])
    else:
        main(*sys.argv[1:3])
