"""``python -m tinyvgg.export_onnx CKPT.npz --out MODEL.onnx``: a trained network for every ONNX runtime.

ONNX is the exchange format that ONNX Runtime, TensorRT, OpenVINO, onnxruntime-web (a browser),
phones and Netron (a picture of the graph) read. The graph is built with the ``onnx`` package's
helpers and checked with ``onnx.checker`` (``full_check``: shapes inferred through every node):

- input ``images``: ``(N, H, W, 3)`` float32, RGB in [0, 1], N free (a dynamic batch dimension);
- the checkpoint's normalization inside the graph (``Sub`` its mean, ``Div`` its std), then one
  ``Transpose`` to ONNX's NCHW;
- per layer: ``ReduceMean`` over H, W and ``Sub`` (:class:`~tinyvgg.layers.ImageCentering`), ``Conv``
  (tinyvgg's HWIO kernel as ONNX's OIHW, ``transpose(3, 2, 0, 1)``, "same" padding),
  ``BatchNormalization`` with the running statistics and the layer's eps (kept as its own node
  rather than folded into the convolution: the graph then shows the network as trained),
  ``Relu``, ``MaxPool`` 2x2 stride 2; dropout is the identity at inference and leaves no node;
- before the first dense layer, a ``Transpose`` back to NHWC and a ``Flatten``, so the features
  come in tinyvgg's H, W, C order, which is the order of fc1's rows; each dense layer a ``Gemm``
  with its ``(in, out)`` weight;
- output ``logits``: ``(N, classes)``, before the softmax (a convolutional base without its top
  returns its last feature map, ``(N, h, w, C)``).
"""
import argparse

import numpy as np

from . import checkpoint, cli
from .layers import BatchNorm2D, Conv2D, Dense, Dropout, Flatten, ImageCentering, MaxPool2D, ReLU

OPSET = 17


def _require_onnx():
    try:
        import onnx
    except ImportError:
        raise cli.UsageError('exporting to ONNX needs the onnx package: pip install -e ".[interop]"') from None
    return onnx


def build_graph(model, mean, std, name="tinyvgg"):
    """The ``onnx.ModelProto`` of ``model`` (a :class:`~tinyvgg.models.Sequential` of tinyvgg's layers, on the
    host) with the normalization ``(x - mean) / std`` at its input."""
    onnx = _require_onnx()
    from onnx import TensorProto, helper, numpy_helper
    H, W, C = model.input_shape
    nodes, weights = [], []

    def constant(key, array):
        weights.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), key))
        return key

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    x = node("Sub", ["images", constant("mean", mean)], "centred")
    x = node("Div", [x, constant("std", std)], "normalized")
    x = node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])              # (N, H, W, C) -> (N, C, H, W)
    nchw = True
    for layer_name, layer in zip(model.names, model.layers):
        p = {k: np.asarray(v) for k, v in layer.params.items()}
        if isinstance(layer, Conv2D):
            K = layer.kernel_size
            x = node("Conv", [x, constant(f"{layer_name}.W", p["W"].transpose(3, 2, 0, 1)),  # HWIO -> OIHW
                              constant(f"{layer_name}.b", p["b"])], layer_name,
                     kernel_shape=[K, K], pads=[layer.pad] * 4, strides=[layer.stride] * 2,
                     dilations=[layer.dilation] * 2)
        elif isinstance(layer, ImageCentering):
            image_mean = node("ReduceMean", [x], f"{layer_name}_mean", axes=[2, 3], keepdims=1)  # (N, C, 1, 1)
            x = node("Sub", [x, image_mean], layer_name)                        # each image's own mean colour off
        elif isinstance(layer, BatchNorm2D):
            b = {k: np.asarray(v) for k, v in layer.buffers.items()}
            x = node("BatchNormalization", [x, constant(f"{layer_name}.gamma", p["gamma"]),
                                            constant(f"{layer_name}.beta", p["beta"]),
                                            constant(f"{layer_name}.running_mean", b["running_mean"]),
                                            constant(f"{layer_name}.running_var", b["running_var"])],
                     layer_name, epsilon=float(layer.eps))
        elif isinstance(layer, ReLU):
            x = node("Relu", [x], layer_name)
        elif isinstance(layer, MaxPool2D):
            x = node("MaxPool", [x], layer_name, kernel_shape=[2, 2], strides=[2, 2])
        elif isinstance(layer, Flatten):
            x = node("Transpose", [x], f"{layer_name}_nhwc", perm=[0, 2, 3, 1])  # (N, C, h, w) -> (N, h, w, C)
            x = node("Flatten", [x], layer_name, axis=1)                         # -> (N, h*w*C), fc1's row order
            nchw = False
        elif isinstance(layer, Dense):
            x = node("Gemm", [x, constant(f"{layer_name}.W", p["W"]), constant(f"{layer_name}.b", p["b"])],
                     layer_name)                                                 # (N, in) @ (in, out) + (out,)
        elif isinstance(layer, Dropout):
            continue                                                             # the identity at inference
        else:
            raise cli.UsageError(f"layer {layer_name} ({type(layer).__name__}) has no ONNX translation here.")
    if nchw:
        x = node("Transpose", [x], "features", perm=[0, 2, 3, 1])               # (N, C, h, w) -> (N, h, w, C)
    nodes[-1].output[0] = "logits" if not nchw else "features"
    nodes[-1].name = nodes[-1].output[0]
    out_shape = ["N", model.config["num_classes"]] if not nchw else ["N"] + _feature_shape(model)
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", H, W, 3])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, out_shape)], weights)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tinyvgg")
    proto.ir_version = min(proto.ir_version, 8)  # readable by ONNX Runtime releases of the last few years
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _feature_shape(model):
    shape = tuple(model.input_shape)
    for layer in model.layers:
        shape = layer.output_shape(shape)
    return list(shape)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.export_onnx", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("checkpoint", help="a tinyvgg checkpoint (best.npz, or one made by import_weights)")
    p.add_argument("--out", help="the .onnx file to write (default: the checkpoint's name with .onnx)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    _require_onnx()
    model, ckpt = checkpoint.load_model(args.checkpoint)
    mean, std = ckpt.normalization()
    default = args.checkpoint[:-4] + ".onnx" if args.checkpoint.endswith(".npz") else args.checkpoint + ".onnx"
    out = cli.output_path(args.out, "--out", args.force, default=default)
    proto = build_graph(model, mean, std)
    data = proto.SerializeToString()
    checkpoint.atomic_write(out, lambda f: f.write(data))
    config = model.config
    print(f"wrote {out}: {config['depth']}{'-BN' if config.get('batch_norm') else ''}, input (N, "
          f"{config['input_shape'][0]}, {config['input_shape'][1]}, 3) RGB in [0, 1], output "
          f"{'(N, %d) logits' % config['num_classes'] if config.get('include_top', True) else 'features'}, "
          f"{len(data) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    cli.run(main)
