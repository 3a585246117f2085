"""The command-line tools end to end, through real subprocesses."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tinyvgg import checkpoint

TINY = ["--model", "vgg11", "--width", "0.0625", "--fc-units", "16", "--batch-size", "32", "--quiet"]


def run(module, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", f"tinyvgg.{module}", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def assert_clear_error(result, *phrases):
    """Non-zero exit, no traceback, and a message that names the problem."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    result = run("train", "--data", "shapes:200", "--epochs", "2", "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_every_file_of_a_run(trained_run):
    out, result = trained_run
    for name in ("best.npz", "last.npz", "history.json", "history.csv", "curves.png", "confusion.png"):
        assert (out / name).stat().st_size > 0, name
    assert "best validation accuracy" in result.stdout
    meta = checkpoint.load(str(out / "last.npz")).meta
    assert meta["epoch"] == 2 and meta["class_names"][0] == "disk" and len(meta["normalization"]["mean"]) == 3


def test_predict_prints_the_top_classes(trained_run, tmp_path):
    out, _ = trained_run
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "red.png")
    result = run("predict", tmp_path / "red.png", "--checkpoint", out / "best.npz", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"{tmp_path / 'red.png'}: ") and line.count(",") == 1
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    result = run("predict", tmp_path / "bad.jpg", "--checkpoint", out / "best.npz")
    assert_clear_error(result, "cannot read", "bad.jpg")


def test_evaluate_prints_accuracy_and_writes_a_confusion_matrix(trained_run, tmp_path):
    out, _ = trained_run
    result = run("evaluate", "--checkpoint", out / "best.npz", "--data", "shapes:200",
                 "--confusion", tmp_path / "cm.png")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("accuracy ") and "disk" in result.stdout
    assert (tmp_path / "cm.png").stat().st_size > 0


def test_resume_continues_the_same_run_bit_for_bit(trained_run, tmp_path):
    out, _ = trained_run
    split = tmp_path / "split"
    assert run("train", "--data", "shapes:200", "--epochs", "1", "--out", split, *TINY).returncode == 0
    result = run("train", "--resume", split / "last.npz", "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    straight = checkpoint.load(str(out / "last.npz"))
    resumed = checkpoint.load(str(split / "last.npz"))
    assert resumed.meta["epoch"] == 2
    for name, p in straight.params.items():
        np.testing.assert_array_equal(resumed.params[name], p, err_msg=name)


def test_a_folder_of_images_trains(tmp_path):
    for k, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "data" / f"class{k}").mkdir(parents=True)
        for i in range(12):
            Image.new("RGB", (40, 30), tuple(max(0, c - 8 * i) for c in color)).save(
                tmp_path / "data" / f"class{k}" / f"{i}.png")
    result = run("train", "--data", tmp_path / "data", "--epochs", "1", "--out", tmp_path / "run", *TINY)
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(str(tmp_path / "run" / "best.npz")).meta["class_names"] == ["class0", "class1"]


def bad_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "noimages" / "cats").mkdir(parents=True)
    (tmp_path / "noimages" / "dogs").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("args, phrases", [
    (["--data", "{tmp}/missing"], ["error:", "missing does not exist"]),
    (["--data", "{tmp}/empty"], ["error:", "no class sub-folders"]),
    (["--data", "{tmp}/noimages"], ["error:", "cats has no images"]),
    (["--image-size", "30"], ["error:", "divisible by 32"]),
    (["--epochs", "0"], ["error:", "--epochs must be positive"]),
    (["--optimizer", "adagrad"], ["invalid choice: 'adagrad'"]),
    (["--resume", "{tmp}/nothing.npz"], ["error:", "does not exist"]),
    (["--lr", "nan"], ["error:", "--lr must be a finite number, got nan"]),
    (["--lr", "inf"], ["error:", "--lr must be a finite number, got inf"]),
    (["--lr", "-0.1"], ["error:", "--lr must be positive"]),
    (["--weight-decay", "nan"], ["error:", "--weight-decay must be a finite number"]),
    (["--width", "nan"], ["error:", "--width must be a finite number"]),
    (["--width", "64"], ["error:", "--width must be at most 4"]),
    (["--image-size", "64000"], ["error:", "--image-size must be divisible by 32", "at most 1024"]),
    (["--clip-norm", "0"], ["error:", "--clip-norm must be positive"]),
    (["--warmup-epochs", "-1"], ["error:", "--warmup-epochs must be zero or positive"]),
    (["--data", "shapes:0"], ["error:", "at least 10"]),
    (["--data", "glyphs:99999999"], ["error:", "GiB of memory"]),
    (["--seed", "-1"], ["error:", "--seed must be zero or positive, got -1"]),
    (["--warmup-epochs", "1e308"], ["error:", "--warmup-epochs must be at most 1000"]),
    (["--precise-bn", "-5"], ["error:", "--precise-bn must be zero or positive"]),
    (["--fc-units", "400000"], ["error:", "GiB of memory, but only", "lower --width, --fc-units"]),
    (["--width", "4", "--image-size", "1024", "--fc-units", "4096"], ["error:", "GiB of memory"]),
])
def test_bad_input_gets_one_clear_sentence(tmp_path, args, phrases):
    bad_folders(tmp_path)
    args = [a.format(tmp=tmp_path) for a in args]
    result = run("train", *TINY, *args, "--out", tmp_path / "run")  # args last: they override TINY
    assert_clear_error(result, *phrases)
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def cupy_state():
    """"missing", "no device" or "usable": what --backend cupy meets on this machine."""
    try:
        import cupy  # noqa: F401
    except ImportError:
        return "missing"
    from tinyvgg.backend import BackendUnavailable, require
    try:
        require("cupy")
    except BackendUnavailable:
        return "no device"
    return "usable"


def test_a_diverging_run_exits_with_one_sentence_and_keeps_its_files(tmp_path):
    out = tmp_path / "run"
    result = run("train", "--data", "shapes:200", "--epochs", "3", "--lr", "1e4", "--warmup-epochs", "0",
                 "--out", out, *TINY)
    assert_clear_error(result, "training diverged at step", "Try a lower --lr (this run used 10000)",
                       "--warmup-epochs", "--batch-norm", "--clip-norm")
    assert "RuntimeWarning" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (out / "best.npz").exists()  # nothing non-finite was ever saved as best


def test_backend_cupy_when_cupy_is_not_installed(tmp_path):
    # a package named cupy that fails to import hides any real one, as on a machine without it
    (tmp_path / "hide" / "cupy").mkdir(parents=True)
    (tmp_path / "hide" / "cupy" / "__init__.py").write_text("raise ImportError('hidden by the test')")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "hide"), os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run([sys.executable, "-m", "tinyvgg.train", "--backend", "cupy", "--out", str(tmp_path / "r"),
                             *TINY], capture_output=True, text=True, env=env, timeout=120)
    assert_clear_error(result, 'CuPy is not installed: install it from a clone of tinyvgg with pip install -e ".[gpu]"')
    doctor = subprocess.run([sys.executable, "-m", "tinyvgg.doctor"], capture_output=True, text=True, env=env)
    assert doctor.returncode == 0 and "CuPy is not installed" in doctor.stdout


@pytest.mark.skipif(cupy_state() != "no device", reason="needs CuPy installed on a machine without a usable GPU")
def test_backend_cupy_when_cupy_is_installed_but_there_is_no_gpu(tmp_path):
    result = run("train", "--backend", "cupy", "--out", tmp_path / "run", *TINY)
    assert_clear_error(result, "CuPy is installed but no usable CUDA device was found", "--backend numpy")
    assert not (tmp_path / "run").exists()
    # and the CPU still works in the very same environment
    assert run("train", "--data", "shapes:100", "--epochs", "1", "--out", tmp_path / "cpu", *TINY).returncode == 0


def test_doctor_reports_and_exits_0_without_a_gpu():
    result = run("doctor")
    assert result.returncode == 0, result.stderr
    assert "NumPy" in result.stdout and "BLAS" in result.stdout
    if cupy_state() != "usable":
        assert "no usable GPU here" in result.stdout and "--backend numpy" in result.stdout
    else:
        assert "parity" in result.stdout


def test_truncated_and_foreign_checkpoints_are_refused(trained_run, tmp_path):
    out, _ = trained_run
    (tmp_path / "cut.npz").write_bytes((out / "last.npz").read_bytes()[:500])
    assert_clear_error(run("train", "--resume", tmp_path / "cut.npz", *TINY), "truncated or corrupt")
    assert_clear_error(run("predict", "x.png", "--checkpoint", tmp_path / "cut.npz"), "truncated or corrupt")
    checkpoint.save(str(tmp_path / "other.npz"), {"fc1.W": np.zeros((2, 2))},
                    {"model_config": checkpoint.load(str(out / "best.npz")).meta["model_config"]})
    assert_clear_error(run("evaluate", "--checkpoint", tmp_path / "other.npz", "--data", "shapes"),
                       "holds 4 weights, but its configuration describes a model of")  # compared before building


def test_an_earlier_run_is_never_damaged(trained_run):
    out, _ = trained_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run("train", "--data", "shapes:200", "--epochs", "1", "--out", out, *TINY)
    assert_clear_error(result, "already holds files", "--resume")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_finetune_keeps_frozen_layers_and_trains_a_new_head(trained_run, tmp_path):
    out, _ = trained_run
    for k, color in enumerate([(255, 0, 0), (0, 0, 255)]):
        (tmp_path / "data" / f"c{k}").mkdir(parents=True)
        for i in range(10):
            shade = tuple(max(0, c - 9 * i) for c in color)
            Image.new("RGB", (32, 32), shade).save(tmp_path / "data" / f"c{k}" / f"{i}.png")
    result = run("train", "--finetune", out / "best.npz", "--freeze-until", "block2_pool", "--data", tmp_path / "data",
                 "--epochs", "2", "--out", tmp_path / "ft", "--batch-size", "8", "--lr", "0.05")
    assert result.returncode == 0, result.stderr
    assert "fine-tuning from" in result.stdout and "new layers ['predictions']" in result.stdout
    source = checkpoint.load(str(out / "best.npz")).params
    tuned = checkpoint.load(str(tmp_path / "ft" / "last.npz")).params
    assert tuned["predictions.W"].shape[1] == 2
    np.testing.assert_array_equal(tuned["block1_conv1.W"], source["block1_conv1.W"])   # frozen
    np.testing.assert_array_equal(tuned["block2_conv1.W"], source["block2_conv1.W"])   # frozen
    assert not np.array_equal(tuned["block3_conv1.W"], source["block3_conv1.W"])       # trained
    assert_clear_error(run("train", "--freeze-until", "block2_pool", "--out", tmp_path / "x", *TINY),
                       "--freeze-until needs --finetune")
    assert_clear_error(run("train", "--finetune", out / "best.npz", "--freeze-until", "block9", "--data",
                           tmp_path / "data", "--out", tmp_path / "y", "--quiet"), "no layer named 'block9'")


def test_samples_writes_a_folder_that_train_and_predict_read(tmp_path, trained_run):
    out, _ = trained_run
    result = subprocess.run([sys.executable, "-m", "tinyvgg.samples", "shapes", "--out", str(tmp_path / "s"),
                             "--per-class", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "s").iterdir())[:2] == ["cross", "diamond"]
    assert len(list((tmp_path / "s").rglob("*.png"))) == 20
    result = run("predict", tmp_path / "s" / "disk" / "0.png", "--checkpoint", out / "best.npz")
    assert result.returncode == 0 and result.stdout.startswith(str(tmp_path / "s" / "disk" / "0.png")), result.stderr
    again = subprocess.run([sys.executable, "-m", "tinyvgg.samples", "shapes", "--out", str(tmp_path / "s")],
                           capture_output=True, text=True, timeout=60)
    assert_clear_error(again, "already exists and is not an empty folder")


def test_help_says_each_default_once_and_has_no_markup():
    import re
    for command in ("train", "predict", "evaluate", "samples", "import_keras"):
        text = subprocess.run([sys.executable, "-m", f"tinyvgg.{command}", "--help"], capture_output=True,
                              text=True, timeout=60, env=dict(os.environ, COLUMNS="200")).stdout
        assert "``" not in text and "(default: None)" not in text, (command, text)
        blocks = re.split(r"\n(?=  -)", text.split("options:")[1])  # one block per flag
        assert all(block.count("default") <= 1 for block in blocks), (command, text)
        for block in blocks[1:]:  # every flag but --help has a help text after its name and metavar
            assert len(block.split()) > 2 + block.count(","), (command, block)
