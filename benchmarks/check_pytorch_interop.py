"""The interop check against PyTorch itself (not a test: tinyvgg never depends on PyTorch).

    python benchmarks/check_pytorch_interop.py     # in an environment with torch, torchvision, timm, safetensors,
                                                   # onnxruntime, and tinyvgg on PYTHONPATH

torchvision's ``vgg16`` and ``vgg16_bn`` and timm's ``vgg16`` (random weights, as their builders
initialise them; batch norm statistics set to something that is not the identity) are saved with
``safetensors.torch.save_file``, imported with ``python -m tinyvgg.import_weights``, and run on decoded
images (the built-in shapes, written as PNG and read back by PIL) with torchvision's preprocessing:
RGB in [0, 1], then ImageNet's mean and std. Printed: the relative difference of tinyvgg's logits from
PyTorch's (the largest absolute difference over the largest logit), and the same for the ONNX graph
that ``python -m tinyvgg.export_onnx`` writes, run by ONNX Runtime. The tests (``tests/test_interop.py``)
check the same layouts against a NumPy model of PyTorch's arithmetic; this script checks that model.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file

from tinyvgg import checkpoint
from tinyvgg.data import decode_image, make_shapes


def images(folder, count=4):
    """``count`` built-in shapes written as PNG at 64x64 and decoded at 224x224: uint8 (N, 224, 224, 3)."""
    shapes = make_shapes(count, image_size=64, seed=3)
    decoded = []
    for k in range(count):
        path = os.path.join(folder, f"{k}.png")
        Image.fromarray(shapes.images[k]).save(path)
        decoded.append(decode_image(path, 224))
    return np.stack(decoded)


def randomise_statistics(model, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def main():
    import onnxruntime
    import timm
    torch.manual_seed(0)
    models = {"torchvision vgg16": torchvision.models.vgg16(weights=None),
              "torchvision vgg16_bn": torchvision.models.vgg16_bn(weights=None),
              "timm vgg16": timm.create_model("vgg16", pretrained=False)}
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    with tempfile.TemporaryDirectory() as folder:
        pixels = images(folder)
        x = (pixels.astype(np.float32) / 255 - mean) / std                       # torchvision's preprocessing
        print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}, "
              f"onnxruntime {onnxruntime.__version__}; {len(x)} decoded images at 224x224")
        for name, model in models.items():
            randomise_statistics(model)
            model.eval()
            with torch.no_grad():
                theirs = model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
            stem = os.path.join(folder, name.replace(" ", "_"))
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, stem + ".safetensors")
            for command in (["tinyvgg.import_weights", stem + ".safetensors", "--out", stem + ".npz"],
                            ["tinyvgg.export_onnx", stem + ".npz", "--out", stem + ".onnx"]):
                done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True)
                if done.returncode:
                    sys.exit(done.stderr)
                print("  " + done.stdout.strip())
            ours_model, ckpt, _, (ckpt_mean, ckpt_std) = checkpoint.load_classifier(stem + ".npz")
            ours = ours_model.forward((pixels.astype(np.float32) / 255 - ckpt_mean) / ckpt_std)
            session = onnxruntime.InferenceSession(stem + ".onnx", providers=["CPUExecutionProvider"])
            (exported,) = session.run(None, {"images": pixels.astype(np.float32) / 255})
            print(f"{name}: tinyvgg's logits against PyTorch's {relative(ours, theirs):.1e}, "
                  f"ONNX Runtime's against PyTorch's {relative(exported, theirs):.1e}, "
                  f"top-1 agrees on {int((ours.argmax(1) == theirs.argmax(1)).sum())} of {len(x)}")


if __name__ == "__main__":
    main()
