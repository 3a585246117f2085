"""VGG16 weights from a Keras ``.h5`` file (``python -m tinyvgg.import_weights`` or ``tinyvgg.import_keras``).

Keras ships ImageNet-trained VGG16 weights as
``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` (with the dense top) and
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` (without). Get the file
with Keras (``keras.applications.VGG16(weights="imagenet")`` stores it under
``~/.keras/models/``) or from the keras-applications release page; tinyvgg
downloads nothing. Reading it needs h5py: ``pip install -e ".[keras]"``.

The layout: one HDF5 group per layer (``block1_conv1`` ... ``block5_conv3``,
``fc1``, ``fc2``, ``predictions``), each holding its kernel and bias.
Keras' "tf" ordering is exactly tinyvgg's: HWIO convolution kernels, (in, out)
dense kernels and an NHWC flatten, so the arrays are copied as they are.

Keras' "caffe" preprocessing for these weights converts RGB to BGR and
subtracts the ImageNet mean pixel (0-255 scale). ``--preprocessing caffe`` folds
both into the checkpoint: the first layer's input channels are reversed (so it
takes RGB) and the normalization becomes mean = the mean pixel / 255, std = 1/255,
so ``predict`` and ``evaluate`` prepare images correctly with no special case.
"""
import os

import numpy as np

from . import cli
from .data import is_regular_file
from .models import vgg16

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: The most values one array of the file may hold: VGG16's largest weight, fc1's (7*7*512, 4096) kernel.
MAX_ARRAY_SIZE = 7 * 7 * 512 * 4096


def read_keras_weights(path):
    """``{layer name: [kernel, bias]}`` from a Keras .h5 weights file."""
    try:
        import h5py
    except ImportError:
        raise cli.UsageError('reading Keras .h5 files needs h5py: pip install -e ".[keras]"') from None
    if os.path.exists(path) and not is_regular_file(path):
        raise cli.UsageError(f"{path} is not a regular file; pass the path of a Keras VGG16 .h5 weights file.")
    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f  # a whole saved model, or weights only
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs.get("layer_names", list(group))]
            weights = {}
            for name in names:
                layer = group[name]
                if not isinstance(layer, h5py.Group):
                    raise cli.UsageError(f"{path}: {name} is a single array where Keras stores a layer (a group of "
                                         "arrays); pass a Keras VGG16 .h5 weights file.")
                weight_names = [w.decode() if isinstance(w, bytes) else w for w in layer.attrs.get("weight_names", [])]
                if weight_names:
                    weights[name] = [_read_array(path, layer, w) for w in weight_names]
            return weights
    except cli.UsageError:
        raise
    except FileNotFoundError:
        raise cli.UsageError(f"{path} does not exist; pass the path of a Keras VGG16 .h5 weights file.") from None
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise cli.UsageError(f"{path} is not a readable Keras weights file (HDF5): {err}") from None


def _read_array(path, layer, name):
    """One array of a layer group, its size checked from the header before it is read (an HDF5 array
    can declare any shape and be filled lazily: a small file can claim terabytes)."""
    import h5py
    dataset = layer[name]
    if not isinstance(dataset, h5py.Dataset):
        raise cli.UsageError(f"{path}: {layer.name}/{name} is not an array; pass a Keras VGG16 .h5 weights file.")
    if dataset.size > MAX_ARRAY_SIZE:
        raise cli.UsageError(f"{path}: {layer.name}/{name} has shape {dataset.shape}, larger than any VGG16 weight "
                             f"({MAX_ARRAY_SIZE:,} values); is this the weights file of another model?")
    return np.asarray(dataset)


def keras_vgg16(path, preprocessing="caffe", class_names=None):
    """(model, meta): a tinyvgg VGG16 holding the weights of a Keras .h5 file."""
    weights = read_keras_weights(path)
    include_top = "predictions" in weights
    num_classes = weights["predictions"][0].shape[1] if include_top else 1000
    fc_units = weights["fc1"][0].shape[1] if include_top else 4096
    model = vgg16(num_classes=num_classes, input_shape=(224, 224, 3), fc_units=fc_units,
                  include_top=include_top, init="zeros")
    params = {}
    for name, layer in zip(model.names, model.layers):
        if not layer.params:
            continue
        if name not in weights:
            raise cli.UsageError(f"{path} has no weights for layer {name}; it is not a Keras VGG16 weights file "
                                 f"(its layers: {', '.join(list(weights)[:5])}...).")
        if len(weights[name]) != 2:
            raise cli.UsageError(f"{path}: layer {name} holds {len(weights[name])} arrays, "
                                 "expected a kernel and a bias.")
        for key, value in zip(("W", "b"), weights[name]):
            expected = layer.params[key].shape
            if value.shape != expected:
                what = "kernel" if key == "W" else "bias"
                raise cli.UsageError(f"{path}: {name} has a {what} of shape {value.shape}, VGG16 needs "
                                     f"{expected}; is this the weights file of another model?")
            params[f"{name}.{key}"] = value.astype(np.float32)
    if preprocessing == "caffe":
        params["block1_conv1.W"] = params["block1_conv1.W"][:, :, ::-1, :].copy()  # BGR -> RGB input channels
        mean = [m / 255 for m in reversed(CAFFE_MEAN_BGR)]
        std = [1 / 255] * 3
    else:
        mean, std = [0.0] * 3, [1.0] * 3
    model.load_params(params)
    names = list(class_names) if class_names else [f"class_{k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise cli.UsageError(f"{len(names)} class names given for {num_classes} classes.")
    meta = {"model_config": model.config, "class_names": names, "normalization": {"mean": mean, "std": std},
            "source": f"keras weights {path}", "preprocessing": preprocessing}
    return model, meta
