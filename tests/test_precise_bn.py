"""Precise batch normalization sets the running statistics to the data's batch statistics."""
import numpy as np
import pytest

from tinyvgg.layers import BatchNorm2D, Conv2D, Dense, Flatten, ReLU
from tinyvgg.models import Sequential, vgg11
from tinyvgg.training.precise_bn import recompute_batch_norm_statistics


@pytest.mark.parametrize("bn_class", ["reference", "fast"])
def test_running_statistics_become_the_weighted_mean_of_the_batch_statistics(bn_class):
    from tinyvgg.fastconv import FastBatchNorm2D
    rng = np.random.default_rng(0)
    bn = (BatchNorm2D if bn_class == "reference" else FastBatchNorm2D)(3, dtype=np.float64)
    model = Sequential([("conv", Conv2D(2, 3, rng=rng, dtype=np.float64)), ("bn", bn), ("relu", ReLU()),
                        ("flatten", Flatten()), ("dense", Dense(4 * 4 * 3, 2, rng=rng, dtype=np.float64))])
    batches = [(rng.standard_normal((n, 4, 4, 2)) * 3 + 1, np.zeros(n, int)) for n in (5, 5, 2)]  # uneven last
    used = recompute_batch_norm_statistics(model, batches)
    assert used == 12
    means, variances, weights = [], [], []
    for x, _ in batches:
        h = model["conv"].forward(x).reshape(-1, 3)
        means.append(h.mean(axis=0))
        variances.append(h.var(axis=0, ddof=1))  # unbiased, as the running variance is kept
        weights.append(len(x))
    np.testing.assert_allclose(bn.buffers["running_mean"], np.average(means, axis=0, weights=weights), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], np.average(variances, axis=0, weights=weights), rtol=1e-12)
    assert bn.momentum == 0.9 and all(layer.cache is None for layer in model.layers)


def test_max_images_frozen_layers_and_models_without_batch_norm():
    rng = np.random.default_rng(1)
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=4, batch_norm=True, seed=0)
    batches = [(rng.standard_normal((4, 32, 32, 3)).astype(np.float32), None) for _ in range(5)]
    frozen = model["block1_bn1"]
    frozen.trainable = False
    before = {k: v.copy() for k, v in frozen.buffers.items()}
    assert recompute_batch_norm_statistics(model, batches, max_images=8) == 8  # two batches
    assert all(np.array_equal(frozen.buffers[k], v) for k, v in before.items())
    assert not np.allclose(model["block2_bn1"].buffers["running_var"], 1.0)
    plain = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=4, seed=0)
    assert recompute_batch_norm_statistics(plain, batches) == 0



def test_disagreement_is_zero_for_equal_statistics_and_counts_shifts_in_batch_standard_deviations():
    from tinyvgg.training.precise_bn import disagreement
    mean, var = np.array([0.0, 1.0]), np.array([4.0, 1.0])
    assert disagreement([(mean, var)], [(mean, var)]) == 0.0
    shifted = disagreement([(mean + np.array([0.2, 0.0]), var)], [(mean, var)], eps=0)  # 0.1 std in one of 2 channels
    assert shifted == pytest.approx(0.05)
    scaled = disagreement([(mean, var * np.exp(0.4))], [(mean, var)], eps=0)           # every std 20% apart (log)
    assert scaled == pytest.approx(0.2)
    assert disagreement([(mean, var), (mean, var * np.exp(0.4))], [(mean, var)] * 2, eps=0) == pytest.approx(0.2)


def test_running_statistics_that_agree_are_kept_and_lagging_ones_recomputed():
    from tinyvgg.training.precise_bn import refresh_batch_norm_statistics
    rng = np.random.default_rng(2)
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=4, batch_norm=True, seed=0)
    batch = (rng.standard_normal((16, 32, 32, 3)).astype(np.float32) * 2 + 1, None)
    batches = [batch] * 4  # every batch alike: after one pass the running statistics are exactly the first batch's
    layers = [model[name] for name in model.names if "_bn" in name]
    assert refresh_batch_norm_statistics(model, batches) == 64        # fresh layers (mean 0, var 1): far off
    precise = [{k: v.copy() for k, v in layer.buffers.items()} for layer in layers]
    assert refresh_batch_norm_statistics(model, batches) == 0         # they agree now, and stay as they are
    assert all(np.array_equal(layer.buffers[k], p[k]) for layer, p in zip(layers, precise) for k in p)
    assert refresh_batch_norm_statistics(model, batches, agreement=None) == 64  # several ranks: always the pass
    layers[2].buffers["running_var"] *= 2                              # one layer lags: 35% off in scale
    assert refresh_batch_norm_statistics(model, batches) == 64
    np.testing.assert_allclose(layers[2].buffers["running_var"], precise[2]["running_var"], rtol=1e-5)
