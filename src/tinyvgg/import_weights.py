"""``python -m tinyvgg.import_weights FILE --out CKPT.npz``: a VGG trained elsewhere, as a tinyvgg checkpoint.

Reads VGG11, 13, 16 and 19, with or without batch normalization, from:

- ``.safetensors`` in torchvision's layout (``torchvision.models.vgg16(weights=...)``, ``vgg16_bn``)
  or timm's (``vgg16.tv_in1k`` and the others on the model hubs), recognised from the tensor names
  and shapes (:mod:`tinyvgg.pytorch_layout`); torchvision's preprocessing (RGB in [0, 1], ImageNet's
  mean and std) becomes the checkpoint's normalization, so ``predict`` and ``evaluate`` apply it;
- Keras' VGG16 ``.h5`` (:mod:`tinyvgg.keras_layout`, with its caffe preprocessing).

Nothing in the file is executed: PyTorch's own ``.pth`` is a pickle, which can run code when it is
loaded, so it is refused with the one line that converts it (where PyTorch is installed). tinyvgg
downloads nothing: get a file with its own library, e.g.
``safetensors.torch.save_file(torchvision.models.vgg16(weights="DEFAULT").state_dict(), "vgg16.safetensors")``.
Then ``python -m tinyvgg.predict photo.jpg --checkpoint vgg16.npz`` classifies with it, and
``python -m tinyvgg.train --finetune vgg16.npz`` fine-tunes it.
"""
import argparse
import os

from . import checkpoint, cli, memory
from .data import is_regular_file
from .keras_layout import keras_vgg16
from .models import build_model
from .pytorch_layout import IMAGENET_MEAN, IMAGENET_STD, read_safetensors, to_tinyvgg

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PICKLE_SUFFIXES = (".pth", ".pt", ".pkl", ".ckpt", ".bin")


def kind_of(path):
    """"keras", "pickle" or "safetensors", from the file's first bytes and its name."""
    with open(path, "rb") as f:
        start = f.read(8)
    if start == HDF5_MAGIC:
        return "keras"
    if start[:4] == b"PK\x03\x04" or start[:1] == b"\x80" or path.lower().endswith(PICKLE_SUFFIXES):
        return "pickle"  # torch.save's zip of pickles, or a bare pickle
    return "safetensors"


def pytorch_vgg(path, class_names=None):
    """(model, meta): a tinyvgg VGG holding the weights of a torchvision- or timm-layout safetensors file."""
    params, buffers, config, layout = to_tinyvgg(read_safetensors(path), path)
    memory.check_inference(config, path)
    model = build_model(config)
    try:
        model.load_params(params, buffers)
    except ValueError as err:
        raise cli.UsageError(f"{path}: {err}; is this a VGG of another width?") from None
    names = list(class_names) if class_names else [f"class_{k}" for k in range(config["num_classes"])]
    if len(names) != config["num_classes"]:
        raise cli.UsageError(f"{len(names)} class names given for {config['num_classes']} classes.")
    meta = {"model_config": model.config, "class_names": names,
            "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
            "source": f"{layout} weights {os.path.basename(path)}", "preprocessing": "torchvision"}
    return model, meta


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.import_weights", description=cli.summary(__doc__),
                                formatter_class=cli.HelpFormatter)
    p.add_argument("weights", help="a .safetensors file (torchvision or timm layout) or a Keras VGG16 .h5 file")
    p.add_argument("--out", help="the tinyvgg checkpoint to write (default: the file's name with .npz)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--class-names", help="a text file with one class name per line (e.g. the ImageNet labels)")
    args = p.parse_args(argv)
    path = args.weights
    if not os.path.exists(path):
        raise cli.UsageError(f"{path} does not exist; pass a .safetensors or Keras .h5 weights file.")
    if not is_regular_file(path):
        raise cli.UsageError(f"{path} is not a regular file; pass a .safetensors or Keras .h5 weights file.")
    kind = kind_of(path)
    if kind == "pickle":
        raise cli.UsageError(
            f"{path} is a PyTorch pickle, which tinyvgg never loads (unpickling can run code); convert it once where "
            "PyTorch is installed: python -c \"import torch, safetensors.torch as s; s.save_file(torch.load("
            f"'{path}', map_location='cpu', weights_only=True), '{os.path.splitext(path)[0]}.safetensors')\", "
            "then import the .safetensors file.")
    default = os.path.splitext(os.path.basename(path))[0] + ".npz"
    out = cli.output_path(args.out, "--out", args.force, default=default)
    names = cli.read_class_names(args.class_names)
    model, meta = keras_vgg16(path, "caffe", names) if kind == "keras" else pytorch_vgg(path, names)
    checkpoint.save(out, model.named_params(), meta, buffers=model.named_buffers())
    config = model.config
    print(f"wrote {out}: {config['depth']}{'-BN' if config['batch_norm'] else ''}, {model.num_params():,} "
          f"parameters, {config['num_classes']} classes, from {meta['source']} ({meta['preprocessing']} "
          "preprocessing)")
    return 0


if __name__ == "__main__":
    cli.run(main)
