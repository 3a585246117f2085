import numpy as np
import pytest

from tinyvgg import checkpoint, cli
from tinyvgg.data import BatchLoader, make_shapes
from tinyvgg.models import vgg11, vgg16
from tinyvgg.optim import SGD
from tinyvgg.training import Trainer
from tinyvgg.transfer import dense_predict, freeze_until, to_fully_convolutional, transfer_params


def small(input_shape=(64, 64, 3), **kw):
    return vgg11(num_classes=5, input_shape=input_shape, width=1 / 16, fc_units=8, dtype=np.float64, seed=0, **kw)


@pytest.mark.parametrize("kernels", ["fast", "reference"])
def test_dense_evaluation_equals_the_original_at_the_training_size(kernels):
    model = small(kernels=kernels)
    x = np.random.default_rng(0).standard_normal((3, 64, 64, 3))
    fc = to_fully_convolutional(model)
    assert fc["fc1"].kernel_size == 2 and fc["predictions"].kernel_size == 1
    assert type(fc["fc1"]).__name__ == ("FastConv2D" if kernels == "fast" else "Conv2D")  # the model's own kind
    np.testing.assert_allclose(fc.forward(x)[:, 0, 0, :], model.forward(x), rtol=1e-12, atol=1e-12)


def test_dense_evaluation_with_batch_norm_equals_the_original():
    model = small(batch_norm=True)
    rng = np.random.default_rng(2)
    model.forward(rng.standard_normal((4, 64, 64, 3)), train=True)  # running statistics away from 0 and 1
    x = rng.standard_normal((2, 64, 64, 3))
    np.testing.assert_allclose(to_fully_convolutional(model).forward(x)[:, 0, 0, :], model.forward(x),
                               rtol=1e-12, atol=1e-12)


def test_dense_evaluation_gives_a_score_map_on_larger_images():
    fc = to_fully_convolutional(small())
    x = np.random.default_rng(0).standard_normal((2, 128, 96, 3))
    assert fc.forward(x).shape == (2, 3, 2, 5)  # (128/32 - 2 + 1, 96/32 - 2 + 1)
    probs = dense_predict(fc, x)
    assert probs.shape == (2, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="no dense layers"):
        to_fully_convolutional(small(include_top=False))


def test_frozen_layers_do_not_change_during_training():
    rng = np.random.default_rng(0)
    model = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=16, rng=rng)
    frozen = freeze_until(model, "block3_pool")
    before = {k: v.copy() for k, v in model.named_params().items()}
    data = make_shapes(64, seed=0)
    mean, std = data.channel_stats()
    optimizer = SGD(model.named_params(trainable_only=True), lr=0.05, weight_decay=0.1)
    assert not any(name.startswith("block1") for name in optimizer.params)
    Trainer(model, optimizer, rng, progress=False).fit(BatchLoader(data, 32, mean, std), epochs=1)
    for name, value in model.named_params().items():
        layer = name.split(".")[0]
        if layer in frozen:
            np.testing.assert_array_equal(value, before[name], err_msg=name)
        else:
            assert not np.array_equal(value, before[name]), name
    with pytest.raises(ValueError, match="no layer named 'block9'"):
        freeze_until(model, "block9")


def test_a_frozen_batch_norm_keeps_its_statistics_while_the_rest_trains():
    rng = np.random.default_rng(0)
    model = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=16, rng=rng, batch_norm=True)
    data = make_shapes(64, seed=0)
    mean, std = data.channel_stats()
    model.forward(BatchLoader(data, 64, mean, std).__iter__().__next__()[0], train=True)
    freeze_until(model, "block2_pool")
    before = {k: v.copy() for k, v in model.named_buffers().items()}
    optimizer = SGD(model.named_params(trainable_only=True), lr=0.05)
    assert "block1_bn1.gamma" not in optimizer.params and "block3_bn1.gamma" in optimizer.params
    Trainer(model, optimizer, rng, progress=False).fit(BatchLoader(data, 32, mean, std), epochs=1)
    for name, value in model.named_buffers().items():
        changed = not np.array_equal(value, before[name])
        assert changed == (not name.startswith(("block1", "block2"))), name


def test_transfer_copies_matching_weights_and_leaves_a_new_head():
    source = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=1)
    target = vgg11(num_classes=3, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=2)
    copied = transfer_params(source, target)
    assert "block1_conv1.W" in copied and "fc2.W" in copied and "predictions.W" not in copied
    np.testing.assert_array_equal(target.named_params()["fc1.W"], source.named_params()["fc1.W"])


def write_keras_h5(path, model, corrupt=None):
    """A weights file in the layout of Keras' vgg16_weights_tf_dim_ordering_tf_kernels(_notop).h5."""
    import h5py
    with h5py.File(path, "w") as f:
        names = [n for n, layer in zip(model.names, model.layers) if layer.params]
        f.attrs["layer_names"] = [n.encode() for n in names]
        for name in names:
            group = f.create_group(name)
            weight_names = [f"{name}_W_1:0", f"{name}_b_1:0"]
            group.attrs["weight_names"] = [w.encode() for w in weight_names]
            W, b = model[name].params["W"], model[name].params["b"]
            if corrupt == name:
                W = W[..., :-1]
            group.create_dataset(weight_names[0], data=W)
            group.create_dataset(weight_names[1], data=b)


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    pytest.importorskip("h5py", reason='needs h5py (pip install -e ".[keras]")')
    model = vgg16(input_shape=(224, 224, 3), include_top=False, seed=3)
    path = tmp_path_factory.mktemp("keras") / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    write_keras_h5(path, model)
    return path, model


def test_keras_weights_import_to_the_same_numbers(keras_file, tmp_path):
    from tinyvgg.import_keras import main
    from tinyvgg.keras_layout import CAFFE_MEAN_BGR
    path, original = keras_file
    out = tmp_path / "vgg16.npz"
    assert main([str(path), "--out", str(out)]) == 0
    model, ckpt = checkpoint.load_model(str(out))
    for name, value in original.named_params().items():
        expected = value[:, :, ::-1, :] if name == "block1_conv1.W" else value  # BGR -> RGB
        np.testing.assert_array_equal(model.named_params()[name], expected, err_msg=name)
    # the stored normalization reproduces Keras' caffe preprocessing on the first layer
    rgb = np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 3)).astype(np.float32)
    mean, std = (np.asarray(ckpt.meta["normalization"][k], np.float32) for k in ("mean", "std"))
    ours = model["block1_conv1"].forward((rgb - mean) / std)
    caffe = rgb[..., ::-1] * 255 - np.asarray(CAFFE_MEAN_BGR, np.float32)
    keras_layer = original["block1_conv1"]
    np.testing.assert_allclose(ours, keras_layer.forward(caffe), rtol=1e-4, atol=1e-3)


def test_malformed_or_mismatched_h5_files_get_clear_errors(keras_file, tmp_path):
    from tinyvgg.keras_layout import keras_vgg16
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(cli.UsageError, match="not a readable Keras weights file"):
        keras_vgg16(str(tmp_path / "text.h5"))
    _, model = keras_file
    write_keras_h5(tmp_path / "bad.h5", model, corrupt="block3_conv2")
    with pytest.raises(cli.UsageError, match=r"block3_conv2 has a kernel of shape \(3, 3, 256, 255\)"):
        keras_vgg16(str(tmp_path / "bad.h5"))
    with pytest.raises(cli.UsageError, match="does not exist"):
        keras_vgg16(str(tmp_path / "missing.h5"))


def test_transfer_copies_batch_norm_statistics_too():
    source = vgg11(num_classes=10, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=1, batch_norm=True)
    source.forward(np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype(np.float32), train=True)
    target = vgg11(num_classes=3, input_shape=(32, 32, 3), width=0.125, fc_units=16, seed=2, batch_norm=True)
    transfer_params(source, target)
    np.testing.assert_array_equal(target.named_buffers()["block2_bn1.running_mean"],
                                  source.named_buffers()["block2_bn1.running_mean"])
