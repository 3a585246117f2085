"""Using a trained VGG beyond its training setup: dense evaluation and fine-tuning.

**Dense (fully-convolutional) evaluation**, as in the VGG paper (section 3.2):
a dense layer applied to a flattened HxWxC map is a convolution with an HxW
kernel and no padding, so ``fc1`` becomes a 7x7 convolution (at 224x224
training size) and ``fc2`` and ``predictions`` become 1x1 convolutions, with
the same weights reshaped. The converted network accepts larger images and
returns a map of class scores, one per position; its softmax is averaged over
positions and over the image and its horizontal mirror.

**Fine-tuning**: reuse a trained network's layers under a new head, with the
early layers frozen (no updates, no weight decay).
"""
import numpy as np

from .backend import get_array_module, to_host
from .fastconv import FastConv2D, FastDense
from .layers import Conv2D, Dense, Flatten, softmax
from .models import Sequential


def _no_weights(shape, rng):
    return np.zeros(0)  # the converted layer's weights are set right after construction


def _dense_as_conv(dense, in_shape):
    """A "valid" convolution computing ``dense`` on an (H, W, C) map: W reshaped, not retrained."""
    H, W, C = in_shape
    if H != W:
        raise ValueError(f"dense evaluation needs a square feature map, got {H}x{W}.")
    conv_class = FastConv2D if isinstance(dense, FastDense) else Conv2D  # the model's own kind of kernels
    conv = conv_class(C, dense.out_features, kernel_size=H, padding="valid", init=_no_weights)
    # Flatten's NHWC order (h, w, c) is the row order of the dense weight: (H*W*C, F) -> (H, W, C, F)
    conv.params = {"W": dense.params["W"].reshape(H, W, C, dense.out_features), "b": dense.params["b"]}
    return conv


def to_fully_convolutional(model):
    """The model with Flatten + dense layers replaced by equivalent convolutions.

    Weights are shared with ``model`` (reshaped views, not copies). The result
    maps an (N, H, W, 3) batch to (N, h, w, num_classes) class scores, with
    h = w = 1 at the training size.
    """
    layers, shape, converted = [], model.input_shape, False
    for name, layer in zip(model.names, model.layers):
        if isinstance(layer, Flatten):
            continue  # the first converted dense layer reads the map directly
        if isinstance(layer, Dense):
            layer = _dense_as_conv(layer, shape if len(shape) == 3 else (1, 1, shape[0]))
            converted = True
        layers.append((name, layer))
        shape = layer.output_shape(shape)
    if not converted:
        raise ValueError("the model has no dense layers to convert (was it built with include_top=False?).")
    return Sequential(layers, input_shape=model.input_shape, config=dict(model.config, fully_convolutional=True))


def dense_predict(fc_model, x, flip=True):
    """Class probabilities (N, K) of images of any size >= the training size.

    Softmax of every position's scores, averaged over the score map, and
    (``flip=True``) averaged with the same for the horizontally mirrored images.
    Returns a NumPy array.
    """
    score_map = fc_model.forward(x)                      # (N, h, w, K)
    probs = softmax(score_map).mean(axis=(1, 2))          # (N, K)
    if flip:
        mirrored = fc_model.forward(x[:, :, ::-1, :].copy())
        probs = (probs + softmax(mirrored).mean(axis=(1, 2))) / 2
    return to_host(probs)


def freeze_until(model, layer_name):
    """Mark every layer up to and including ``layer_name`` as frozen; returns their names.

    A frozen layer still runs forward and passes gradients back, but its
    parameters are left out of ``model.named_params(trainable_only=True)``,
    so the optimizer neither updates nor decays them.
    """
    if layer_name not in model.names:
        raise ValueError(f"no layer named {layer_name!r}; choose one of: {', '.join(model.names)}.")
    stop = model.names.index(layer_name)
    for layer in model.layers[:stop + 1]:
        layer.trainable = False
    return model.names[:stop + 1]


def transfer_params(source, target, buffers=None):
    """Copy every parameter whose name and shape match from ``source`` into ``target``.

    ``source``: a model, or a dict of arrays (a checkpoint's ``params``, with its
    ``buffers`` passed too, so that batch normalization keeps its running statistics).
    Returns the names of the parameters copied; the others (a new head, say) keep their
    fresh initialization.
    """
    if not isinstance(source, dict):
        source, buffers = source.named_params(), source.named_buffers()
    copied = _copy_matching(source, target.named_params())
    _copy_matching(buffers or {}, target.named_buffers())
    return copied


def _copy_matching(source, target):
    """Copy the arrays of ``source`` into those of ``target`` with the same name and shape; their names."""
    copied = []
    for name, value in source.items():
        if name in target and tuple(target[name].shape) == tuple(value.shape):
            target[name][...] = get_array_module(target[name]).asarray(np.asarray(to_host(value)))
            copied.append(name)
    return copied
