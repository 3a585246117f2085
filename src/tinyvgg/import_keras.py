"""``python -m tinyvgg.import_keras WEIGHTS.h5``: VGG16 weights from a Keras file (the Keras half of
``python -m tinyvgg.import_weights``, which reads PyTorch's safetensors files too).

Keras ships ImageNet-trained VGG16 weights as ``vgg16_weights_tf_dim_ordering_tf_kernels.h5`` (with the
dense top) and ``..._notop.h5`` (without); :mod:`tinyvgg.keras_layout` says how they are read and how
Keras' "caffe" preprocessing is folded into the checkpoint. Reading needs h5py: ``pip install -e ".[keras]"``.
"""
import argparse

from . import checkpoint, cli
from .keras_layout import keras_vgg16


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.import_keras", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("weights", help="vgg16_weights_tf_dim_ordering_tf_kernels.h5 (or the _notop file)")
    p.add_argument("--out", help="the tinyvgg checkpoint to write (default: vgg16_keras.npz, or vgg16_keras-2.npz "
                                 "and so on if that exists)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--preprocessing", choices=["caffe", "none"], default="caffe",
                   help="caffe: Keras' BGR and mean-pixel preprocessing for these weights; none: inputs as given")
    p.add_argument("--class-names", help="a text file with one class name per line (e.g. the ImageNet labels)")
    args = p.parse_args(argv)
    out = cli.output_path(args.out, "--out", args.force, default="vgg16_keras.npz")
    model, meta = keras_vgg16(args.weights, args.preprocessing, cli.read_class_names(args.class_names))
    checkpoint.save(out, model.named_params(), meta)
    print(f"wrote {out}: VGG16, {model.num_params():,} parameters, "
          f"{'with' if model.config['include_top'] else 'without'} the dense top, {args.preprocessing} preprocessing")
    return 0


if __name__ == "__main__":
    cli.run(main)
