"""Weights from the PyTorch world in (safetensors, torchvision's and timm's layouts), models out as ONNX.

No PyTorch here: each layout's tensors are made in NumPy with PyTorch's shapes and conventions, and the
imported network is checked against an independent float64 forward pass written the way PyTorch computes
(NCHW, OIHW kernels, ``(out, in)`` linear weights, flattening C, H, W). The exported graph is run by ONNX
Runtime against tinyvgg's own forward. Skips with the reason without the ``interop`` extra.
"""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason='needs safetensors: pip install -e ".[interop]"')

from tinyvgg import checkpoint  # noqa: E402
from tinyvgg.models import VGG_CONFIGS, build_model  # noqa: E402
from tinyvgg.pytorch_layout import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402

WIDTH = 1 / 16  # 4 ... 32 channels: PyTorch's shapes, a network small enough for a float64 reference


def pytorch_state(depth, batch_norm, layout, seed=0, classes=5, units=24):
    """A random state dict of ``depth`` in torchvision's or timm's layout: names, shapes and order as theirs."""
    rng = np.random.default_rng(seed)
    state, index, channels = {}, 0, 3
    for repeats, base in zip(VGG_CONFIGS[depth], (64, 128, 256, 512, 512)):
        for _ in range(repeats):
            out = int(base * WIDTH)
            state[f"features.{index}.weight"] = rng.standard_normal((out, channels, 3, 3)) * (2 / (9 * channels)) ** 0.5
            state[f"features.{index}.bias"] = rng.standard_normal(out) * 0.1
            index += 1
            if batch_norm:
                state[f"features.{index}.weight"] = rng.uniform(0.5, 1.5, out)
                state[f"features.{index}.bias"] = rng.standard_normal(out) * 0.1
                state[f"features.{index}.running_mean"] = rng.standard_normal(out) * 0.2
                state[f"features.{index}.running_var"] = rng.uniform(0.5, 2.0, out)
                state[f"features.{index}.num_batches_tracked"] = np.array(7, dtype=np.int64)
                index += 1
            index += 1                                          # the ReLU has no tensors
            channels = out
        index += 1                                              # the max-pool neither
    head = ("classifier.0", "classifier.3", "classifier.6") if layout == "torchvision" else \
        ("pre_logits.fc1", "pre_logits.fc2", "head.fc")
    fc1 = rng.standard_normal((units, channels * 49)) * (2 / (channels * 49)) ** 0.5
    fc2 = rng.standard_normal((units, units)) * (2 / units) ** 0.5
    state[f"{head[0]}.weight"] = fc1 if layout == "torchvision" else fc1.reshape(units, channels, 7, 7)
    state[f"{head[1]}.weight"] = fc2 if layout == "torchvision" else fc2.reshape(units, units, 1, 1)
    state[f"{head[2]}.weight"] = rng.standard_normal((classes, units)) * (1 / units) ** 0.5
    for name, size in zip(head, (units, units, classes)):
        state[f"{name}.bias"] = rng.standard_normal(size) * 0.1
    return {k: (v if v.dtype == np.int64 else v.astype(np.float32)) for k, v in state.items()}


def pytorch_forward(state, depth, batch_norm, layout, x):
    """float64 logits as PyTorch computes them: ``x`` (N, 3, 224, 224), NCHW all the way."""
    x, index = x.astype(np.float64), 0
    get = lambda key: state[key].astype(np.float64)  # noqa: E731
    for repeats in VGG_CONFIGS[depth]:
        for _ in range(repeats):
            W, b = get(f"features.{index}.weight"), get(f"features.{index}.bias")   # (O, I, 3, 3)
            N, C, H, Wd = x.shape
            padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
            x = sum(np.einsum("nchw,oc->nohw", padded[:, :, i:i + H, j:j + Wd], W[:, :, i, j])
                    for i in range(3) for j in range(3)) + b[:, None, None]
            index += 1
            if batch_norm:
                g, beta = get(f"features.{index}.weight"), get(f"features.{index}.bias")
                mean, var = get(f"features.{index}.running_mean"), get(f"features.{index}.running_var")
                x = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5) * g[:, None, None] \
                    + beta[:, None, None]
                index += 1
            x = np.maximum(x, 0)
            index += 1
        N, C, H, Wd = x.shape
        x = x.reshape(N, C, H // 2, 2, Wd // 2, 2).max(axis=(3, 5))               # MaxPool2d(2, 2)
        index += 1
    if layout == "torchvision":                                                   # (N, C, 7, 7) -> C, H, W order
        x = np.maximum(x.reshape(len(x), -1) @ get("classifier.0.weight").T + get("classifier.0.bias"), 0)
        x = np.maximum(x @ get("classifier.3.weight").T + get("classifier.3.bias"), 0)
        return x @ get("classifier.6.weight").T + get("classifier.6.bias")
    x = np.maximum(np.einsum("nchw,ochw->no", x, get("pre_logits.fc1.weight")) + get("pre_logits.fc1.bias"), 0)
    x = np.maximum(np.einsum("nc,oc->no", x, get("pre_logits.fc2.weight")[:, :, 0, 0]) + get("pre_logits.fc2.bias"), 0)
    return x @ get("head.fc.weight").T + get("head.fc.bias")                      # the 1x1 average pool: itself


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=cwd, check=False)


def assert_one_sentence(result, *fragments):
    assert result.returncode == 1, (result.stdout, result.stderr)
    error = result.stderr.strip()
    assert error.startswith("error: ") and "\n" not in error and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in error, error


@pytest.mark.parametrize("depth, batch_norm, layout", [("vgg16", False, "torchvision"), ("vgg16", True, "torchvision"),
                                                       ("vgg16", False, "timm"), ("vgg11", True, "timm")])
def test_imported_logits_equal_pytorchs_computation(tmp_path, depth, batch_norm, layout):
    state = pytorch_state(depth, batch_norm, layout)
    safetensors_numpy.save_file(state, str(tmp_path / "weights.safetensors"))
    names = tmp_path / "names.txt"
    names.write_text("\n".join(f"class {k}" for k in range(5)) + "\n")
    done = run("tinyvgg.import_weights", tmp_path / "weights.safetensors", "--out", tmp_path / "vgg.npz",
               "--class-names", names)
    assert done.returncode == 0, done.stderr
    assert f"{depth}{'-BN' if batch_norm else ''}" in done.stdout and layout in done.stdout
    model, ckpt, class_names, (mean, std) = checkpoint.load_classifier(str(tmp_path / "vgg.npz"))
    np.testing.assert_allclose(mean, IMAGENET_MEAN, rtol=1e-6)
    np.testing.assert_allclose(std, IMAGENET_STD, rtol=1e-6)
    assert class_names == [f"class {k}" for k in range(5)] and model.config["batch_norm"] == batch_norm
    images = np.random.default_rng(1).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)  # RGB in [0, 1]
    normalized = (images - mean) / std                                                # torchvision's Normalize
    ours = model.forward(normalized)
    theirs = pytorch_forward(state, depth, batch_norm, layout, normalized.transpose(0, 3, 1, 2))
    assert np.abs(ours - theirs).max() / np.abs(theirs).max() < 1e-5


@pytest.mark.parametrize("depth", sorted(VGG_CONFIGS))
@pytest.mark.parametrize("batch_norm", [False, True])
def test_every_depth_is_recognised_from_names_and_shapes(depth, batch_norm):
    from tinyvgg.pytorch_layout import recognise, to_tinyvgg
    state = {k: v for k, v in pytorch_state(depth, batch_norm, "torchvision").items() if v.dtype != np.int64}
    assert recognise(state, "x") == ("torchvision", depth, batch_norm)
    params, buffers, config, _ = to_tinyvgg(state, "x")
    model = build_model(config)
    model.load_params(params, buffers)                  # every shape fits the model tinyvgg builds
    assert config["width"] == WIDTH and bool(buffers) == batch_norm


def test_a_pytorch_pickle_gets_the_line_that_converts_it_and_is_never_loaded(tmp_path):
    class Alarm:
        def __reduce__(self):                           # what unpickling would run
            return (open, (str(tmp_path / "pwned"), "w"))
    (tmp_path / "vgg16.pth").write_bytes(pickle.dumps({"features.0.weight": Alarm()}))
    done = run("tinyvgg.import_weights", tmp_path / "vgg16.pth", "--out", tmp_path / "out.npz")
    assert_one_sentence(done, "is a PyTorch pickle", "safetensors")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out.npz").exists()


def _bad_files(tmp_path):
    state = pytorch_state("vgg11", False, "torchvision")
    good = tmp_path / "good.safetensors"
    safetensors_numpy.save_file(state, str(good))
    data = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[:len(data) // 2])
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    header["classifier.0.weight"]["shape"] = [4096, 25088]                  # claims 400 MB in a 100 KB file
    text = json.dumps(header).encode()
    (tmp_path / "lying.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data[8 + length:])
    (tmp_path / "huge-header.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    safetensors_numpy.save_file({"conv1.weight": np.zeros((64, 3, 7, 7), np.float32),
                                 "fc.weight": np.zeros((1000, 2048), np.float32)}, str(tmp_path / "resnet.safetensors"))
    safetensors_numpy.save_file({k: v.astype(np.int32) for k, v in state.items()}, str(tmp_path / "ints.safetensors"))
    bn = pytorch_state("vgg11", True, "torchvision")
    safetensors_numpy.save_file({k: v for k, v in bn.items() if k != "features.1.running_var"},
                                str(tmp_path / "no-running-var.safetensors"))
    safetensors_numpy.save_file(dict(state, **{"classifier.6.weight": np.zeros((0, 24), np.float32),
                                               "classifier.6.bias": np.zeros(0, np.float32)}),
                                str(tmp_path / "no-classes.safetensors"))
    safetensors_numpy.save_file(dict(state, **{"features.0.weight": np.full((4, 3, 3, 3), np.nan, np.float32)}),
                                str(tmp_path / "nan.safetensors"))
    safetensors_numpy.save_file(dict(state, **{"classifier.0.weight": np.zeros((0, 1568), np.float32)}),
                                str(tmp_path / "no-units.safetensors"))
    return {"no-running-var": "has no tensor 'features.1.running_var'", "no-classes": "its num_classes 0",
            "nan": "holds weights no training gives (features.0.weight", "no-units": "its tensors do not fit one",
            "truncated": "not a readable safetensors file", "lying": "does not match the bytes the file holds",
            "huge-header": "its header claims", "empty": "fewer than the 8",
            "resnet": "holds no VGG in torchvision's layout", "ints": "stores tensors as I32"}


def test_bad_files_get_one_sentence_each_and_nothing_is_written(tmp_path):
    for name, fragment in _bad_files(tmp_path).items():
        out = tmp_path / f"{name}.npz"
        done = run("tinyvgg.import_weights", tmp_path / f"{name}.safetensors", "--out", out)
        assert_one_sentence(done, fragment)
        assert not out.exists(), name
    assert_one_sentence(run("tinyvgg.import_weights", tmp_path / "missing.safetensors"), "does not exist")
    assert_one_sentence(run("tinyvgg.import_weights", tmp_path), "not a regular file")


# ---------------------------------------------------------------- ONNX out

def _onnx_missing():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as err:
        return f'needs onnx and onnxruntime ({err.name} is missing): pip install -e ".[interop]"'
    return None


needs_onnx = pytest.mark.skipif(_onnx_missing() is not None, reason=str(_onnx_missing()))


def _trained_looking_model(batch_norm, include_top=True, seed=0, center_images=False):
    rng = np.random.default_rng(seed)
    model = build_model(dict(depth="vgg11", num_classes=5, input_shape=(64, 64, 3), width=WIDTH, fc_units=16,
                             dropout=0.5, include_top=include_top, batch_norm=batch_norm,
                             center_images=center_images), rng=rng)
    for layer in model.layers:                          # statistics and scales that are not the identity
        if "running_mean" in getattr(layer, "buffers", {}):
            layer.buffers["running_mean"][...] = rng.standard_normal(layer.num_channels)
            layer.buffers["running_var"][...] = rng.uniform(0.5, 2, layer.num_channels)
            layer.params["gamma"][...] = rng.uniform(0.5, 2, layer.num_channels)
    return model


@needs_onnx
@pytest.mark.parametrize("batch_norm, center_images", [(False, False), (True, False), (True, True)])
def test_the_exported_graph_computes_tinyvggs_logits_at_any_batch_size(tmp_path, batch_norm, center_images):
    import onnx
    import onnxruntime as ort
    model = _trained_looking_model(batch_norm, center_images=center_images)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    checkpoint.save(str(tmp_path / "best.npz"), model.named_params(),
                    {"model_config": model.config, "class_names": list("abcde"),
                     "normalization": {"mean": mean, "std": std}}, buffers=model.named_buffers())
    done = run("tinyvgg.export_onnx", tmp_path / "best.npz")         # default name: beside it, .onnx
    assert done.returncode == 0, done.stderr
    path = tmp_path / "best.onnx"
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [64, 64, 3]
    for n in (1, 3):
        rng = np.random.default_rng(n)  # each image with its own colour cast, which centering takes off
        images = (rng.uniform(0, 0.5, (n, 64, 64, 3)) + rng.uniform(0, 0.5, (n, 1, 1, 3))).astype(np.float32)
        ours = model.forward((images - np.float32(mean)) / np.float32(std))
        (theirs,) = session.run(None, {"images": images})
        assert theirs.shape == (n, 5)
        assert np.abs(theirs - ours).max() / np.abs(ours).max() < 1e-5


@needs_onnx
def test_a_convolutional_base_exports_its_feature_map(tmp_path):
    import onnxruntime as ort

    from tinyvgg.export_onnx import build_graph
    model = _trained_looking_model(True, include_top=False)
    session = ort.InferenceSession(build_graph(model, [0.5] * 3, [0.25] * 3).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    images = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 3)).astype(np.float32)
    ours = model.forward((images - np.float32(0.5)) / np.float32(0.25))
    (theirs,) = session.run(None, {"images": images})
    assert theirs.shape == ours.shape == (2, 2, 2, 32)
    assert np.abs(theirs - ours).max() / np.abs(ours).max() < 1e-5


@needs_onnx
def test_an_imported_network_goes_out_as_onnx_and_export_refuses_bad_input(tmp_path):
    import onnxruntime as ort
    state = pytorch_state("vgg11", True, "timm")
    safetensors_numpy.save_file(state, str(tmp_path / "w.safetensors"))
    assert run("tinyvgg.import_weights", tmp_path / "w.safetensors", "--out", tmp_path / "w.npz").returncode == 0
    done = run("tinyvgg.export_onnx", tmp_path / "w.npz", "--out", tmp_path / "w.onnx")
    assert done.returncode == 0 and "input (N, 224, 224, 3) RGB in [0, 1]" in done.stdout, done.stderr
    session = ort.InferenceSession(str(tmp_path / "w.onnx"), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(3).uniform(0, 1, (2, 224, 224, 3)).astype(np.float32)
    normalized = (images - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    theirs = pytorch_forward(state, "vgg11", True, "timm", normalized.transpose(0, 3, 1, 2))
    (exported,) = session.run(None, {"images": images})
    assert np.abs(exported - theirs).max() / np.abs(theirs).max() < 1e-5
    assert_one_sentence(run("tinyvgg.export_onnx", tmp_path / "w.npz", "--out", tmp_path / "w.onnx"),
                        "already exists")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert_one_sentence(run("tinyvgg.export_onnx", tmp_path / "junk.npz"), "not a readable tinyvgg checkpoint")
    assert not os.path.exists(tmp_path / "junk.onnx")
