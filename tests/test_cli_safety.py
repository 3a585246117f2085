"""Runs that never overwrite each other, exact resumes, and careless or hostile input to the CLIs.

Every case goes through the command-line tools in a subprocess: one clear sentence,
a non-zero exit, no traceback, and no file of another run touched.
"""
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from tinyvgg import checkpoint
from tinyvgg.models import vgg11
from tinyvgg.run_folder import RunFolder

TINY = ["--model", "vgg11", "--width", "0.0625", "--fc-units", "16", "--batch-size", "32", "--quiet"]
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file types and signals")
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run(module, *args, cwd=None, timeout=600):
    return subprocess.run([sys.executable, "-m", f"tinyvgg.{module}", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def assert_clear_error(result, *phrases):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def snapshot(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    for name in ("A", "B"):
        result = run("train", "--data", "shapes:200", "--epochs", "1", "--out", base / name, *TINY)
        assert result.returncode == 0, result.stderr
    return base


def images(folder, classes=("red", "blue"), count=6):
    for k, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.new("RGB", (32, 32), (200 * (k == 0), 10 * i, 200 * (k == 1))).save(folder / name / f"{i}.png")
    return folder


# ---------------------------------------------------------------- one run per folder

def test_resume_never_writes_over_another_run(two_runs):
    before = snapshot(two_runs / "B")
    result = run("train", "--resume", two_runs / "A" / "last.npz", "--out", two_runs / "B", "--epochs", "2")
    assert_clear_error(result, "already holds another run", "checkpoint's own folder")
    assert snapshot(two_runs / "B") == before


def test_resume_continues_in_a_new_folder_and_leaves_the_old_one(two_runs, tmp_path):
    before = snapshot(two_runs / "A")
    result = run("train", "--resume", two_runs / "A" / "last.npz", "--out", tmp_path / "A2", "--epochs", "2",
                 "--quiet")
    assert result.returncode == 0, result.stderr
    assert checkpoint.load(str(tmp_path / "A2" / "last.npz")).meta["epoch"] == 2
    assert snapshot(two_runs / "A") == before


def test_a_second_training_in_a_busy_folder_is_refused(two_runs, tmp_path):
    with RunFolder(str(tmp_path / "busy")):  # as a training that is running there holds it
        result = run("train", "--data", "shapes:200", "--epochs", "1", "--out", tmp_path / "busy", *TINY)
        assert_clear_error(result, "another training is writing to", "choose another --out")
        resumed = run("train", "--resume", two_runs / "A" / "last.npz", "--out", tmp_path / "busy", "--epochs", "2")
        assert_clear_error(resumed, "another training is writing to")
    assert os.listdir(tmp_path / "busy") == [".lock"]


def test_stale_temporary_files_are_removed_when_the_run_goes_on(two_runs, tmp_path):
    folder = tmp_path / "A"
    folder.mkdir()
    for name in os.listdir(two_runs / "A"):
        (folder / name).write_bytes((two_runs / "A" / name).read_bytes())
    (folder / ".tmp-x1y2last.npz").write_bytes(b"half a checkpoint, from a killed save")
    result = run("train", "--resume", folder / "last.npz", "--epochs", "2", "--quiet")
    assert result.returncode == 0, result.stderr
    assert not [n for n in os.listdir(folder) if n.startswith(".tmp-")]


def test_the_run_folder_is_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run("train", "--out", tmp_path / "file" / "run", *TINY, timeout=60)
    assert_clear_error(result, "cannot write the run folder")
    assert "epoch" not in result.stdout


@pytest.mark.skipif(AS_ROOT, reason="root writes to read-only folders")
def test_a_read_only_place_for_the_run_is_refused_at_once(tmp_path):
    (tmp_path / "locked").mkdir(mode=0o555)
    result = run("train", "--out", tmp_path / "locked" / "run", *TINY, timeout=60)
    assert_clear_error(result, "cannot write the run folder")


# ---------------------------------------------------------------- exact resume after Ctrl-C

@POSIX
def test_ctrl_c_mid_epoch_then_resume_is_bit_identical_to_the_straight_run(tmp_path):
    args = ["--data", "shapes:3000", "--epochs", "3", *TINY]
    assert run("train", *args, "--out", tmp_path / "straight").returncode == 0
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "tinyvgg.train", *args, "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out / "curves.png").exists() and time.time() < deadline:  # the last thing epoch 1 writes
        time.sleep(0.05)
    time.sleep(0.5)  # now in the middle of epoch 2
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted: saved the state at epoch 2, step" in stderr and "Traceback" not in stderr
    position = checkpoint.load(str(out / "last.npz")).meta["position"]
    assert position["epoch"] == 1 and 0 < position["step"] < 94
    result = run("train", "--resume", out / "last.npz", "--epochs", "3", "--quiet")
    assert result.returncode == 0, result.stderr
    straight = checkpoint.load(str(tmp_path / "straight" / "last.npz"))
    resumed = checkpoint.load(str(out / "last.npz"))
    assert resumed.meta["history"]["loss"] == straight.meta["history"]["loss"]
    for name, p in straight.params.items():
        np.testing.assert_array_equal(resumed.params[name], p, err_msg=name)


# ---------------------------------------------------------------- files that are not what they seem

@POSIX
def test_named_pipes_are_never_opened(tmp_path, two_runs):
    data = images(tmp_path / "data")
    os.mkfifo(data / "red" / "trap.png")
    result = run("train", "--data", data, "--epochs", "1", "--out", tmp_path / "run", *TINY, timeout=120)
    assert result.returncode == 0, result.stderr
    os.mkfifo(tmp_path / "pipe.png")
    result = run("predict", tmp_path / "pipe.png", data / "red" / "0.png", "--checkpoint", two_runs / "A" / "best.npz",
                 timeout=60)
    assert_clear_error(result, "pipe.png (it is not a regular file)")
    assert "0.png: " in result.stdout
    os.mkfifo(tmp_path / "pipe.npz")
    assert_clear_error(run("predict", data / "red" / "0.png", "--checkpoint", tmp_path / "pipe.npz", timeout=60),
                       "is not a regular file")


def test_one_class_is_refused(tmp_path):
    data = images(tmp_path / "data", classes=("only",))
    assert_clear_error(run("train", "--data", data, "--out", tmp_path / "run", *TINY), "needs at least two")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="file names of raw bytes are a POSIX thing")
def test_a_class_folder_name_that_is_not_utf8_is_refused_before_training(tmp_path):
    data = images(tmp_path / "data")
    os.rename(os.fsencode(data / "blue"), os.fsencode(data) + b"/bl\xe9u")
    result = run("train", "--data", data, "--out", tmp_path / "run", *TINY)
    assert_clear_error(result, "not valid UTF-8; rename it")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(AS_ROOT, reason="root reads unreadable folders")
def test_an_unreadable_class_folder_is_named(tmp_path):
    data = images(tmp_path / "data")
    (data / "blue").chmod(0)
    try:
        assert_clear_error(run("train", "--data", data, "--out", tmp_path / "run", *TINY), "cannot read the class")
    finally:
        (data / "blue").chmod(0o755)


# ---------------------------------------------------------------- crafted checkpoints

def crafted(path, meta=None, arrays=None, drop=()):
    """A checkpoint of a tiny model with its meta changed (keys in ``drop`` removed)."""
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8)
    full = {"model_config": model.config, "class_names": ["a", "b", "c"],
            "normalization": {"mean": [0.5] * 3, "std": [0.2] * 3}, "args": {}, "history": {}, "epoch": 1}
    full.update(meta or {})
    for key in drop:
        full.pop(key)
    checkpoint.save(str(path), arrays or model.named_params(), full)
    return path


def huge_header_npz(path):
    """An .npz whose one array claims 2**42 float64 (32 TiB) but holds 16 bytes."""
    header = io.BytesIO()  # the magic string and a header, as np.save writes them
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**42,)})
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"format": "tinyvgg-checkpoint"})))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("params/x.npy", header.getvalue() + b"\0" * 16)
        archive.writestr("meta.npy", meta.getvalue())
    return path


@pytest.mark.parametrize("make, command, phrase", [
    (lambda p: crafted(p, drop=("class_names",)), "predict", "does not name its classes"),
    (lambda p: crafted(p, {"class_names": ["a", "b"]}), "predict", "one name for each of its 3 outputs"),
    (lambda p: crafted(p, {"class_names": "abc"}), "evaluate", "does not name its classes"),
    (lambda p: crafted(p, {"normalization": {"mean": "x"}}), "predict", "no valid normalization"),
    (lambda p: crafted(p, {"model_config": {"depth": "vgg99"}}), "predict", "cannot build"),
    (lambda p: crafted(p, {"model_config": "vgg16"}), "predict", "has no model configuration"),
    (lambda p: crafted(p, {"args": "x"}), "train", "no training state"),
    ("damaged", "train", "training state is missing or damaged"),
    ("damaged-args", "train", "its saved setting lr = 'fast' is damaged"),
    ("damaged-choice", "train", "its saved setting head_init = 'huge' is damaged"),
    (lambda p: huge_header_npz(p), "predict", "claims 35,184,372,088,832 bytes of data but holds 16"),
    (lambda p: crafted(p, {"model_config": dict(vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16,
                                                      fc_units=8, include_top=False).config)},
                       arrays=vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8,
                                    include_top=False).named_params()), "predict", "without the dense top"),
])
def test_crafted_checkpoints_get_one_sentence(tmp_path, two_runs, make, command, phrase):
    if isinstance(make, str):  # "damaged...": a real last.npz whose RNG state or settings were tampered with
        arrays = checkpoint.read_npz(str(two_runs / "A" / "last.npz"))
        meta = json.loads(str(arrays.pop("meta")))
        if make == "damaged":
            meta["rng_state"] = "x"
        elif make == "damaged-args":
            meta["args"]["lr"] = "fast"
        else:  # the right type, but not one of the flag's choices
            meta["args"]["head_init"] = "huge"
        np.savez(tmp_path / "crafted.npz", meta=np.array(json.dumps(meta)), **arrays)
        path = tmp_path / "crafted.npz"
    else:
        path = make(tmp_path / "crafted.npz")
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    args = {"predict": [tmp_path / "x.png", "--checkpoint", path],
            "evaluate": ["--checkpoint", path, "--data", "shapes:100", "--confusion", tmp_path / "c.png"],
            "train": ["--resume", path, "--epochs", "2", "--quiet"]}[command]
    assert_clear_error(run(command, *args, timeout=120), phrase)


# ---------------------------------------------------------------- output files

def test_evaluate_never_replaces_a_file_it_did_not_write(two_runs, tmp_path):
    (tmp_path / "confusion.png").write_bytes(b"someone's picture")
    (tmp_path / "best.npz").write_bytes((two_runs / "A" / "best.npz").read_bytes())
    result = run("evaluate", "--checkpoint", tmp_path / "best.npz", "--data", "shapes:100")
    assert result.returncode == 0, result.stderr
    assert f"confusion matrix written to {tmp_path / 'confusion-2.png'}" in result.stdout
    assert (tmp_path / "confusion.png").read_bytes() == b"someone's picture"
    result = run("evaluate", "--checkpoint", two_runs / "A" / "best.npz", "--data", "shapes:100",
                 "--confusion", tmp_path / "confusion.png")
    assert_clear_error(result, "already exists; pass --force")
    assert_clear_error(run("evaluate", "--checkpoint", two_runs / "A" / "best.npz", "--data", "shapes:100",
                           "--confusion", tmp_path / "missing" / "c.png"), "does not exist; create it first")
    assert (tmp_path / "confusion.png").read_bytes() == b"someone's picture"


def test_import_keras_never_replaces_a_checkpoint_unasked(tmp_path):
    (tmp_path / "best.npz").write_bytes(b"a trained model")
    result = run("import_keras", tmp_path / "weights.h5", "--out", tmp_path / "best.npz")
    assert_clear_error(result, "already exists; pass --force")
    assert (tmp_path / "best.npz").read_bytes() == b"a trained model"
    assert_clear_error(run("import_keras", tmp_path / "weights.h5", "--out", tmp_path / "no" / "x.npz"),
                       "does not exist; create it first")


# ---------------------------------------------------------------- resource traps: refused before the work

def zip_bomb_npz(path, declared=2**30):
    """A checkpoint whose one weight declares ``declared`` bytes of zeros and compresses them ~1000x."""
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"format": "tinyvgg-checkpoint", "model_config": {}})))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("params/fc1.W.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (declared // 4,)})
            zeros = bytes(2**24)
            for _ in range(declared // len(zeros)):  # streamed: the test never holds the gigabyte either
                f.write(zeros)
        archive.writestr("meta.npy", meta.getvalue())
    return path


def peak_memory_of(module, *args):
    """(result, peak resident MiB) of ``python -m tinyvgg.MODULE ARGS`` run from a fresh process."""
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.stderr.write(r.stderr); sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", f"tinyvgg.{module}",
                             *map(str, args)], capture_output=True, text=True, timeout=120)
    return result, int(result.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and /proc/meminfo are Linux's")
def test_a_zip_bomb_checkpoint_is_refused_before_it_is_decompressed(tmp_path):
    bomb = zip_bomb_npz(tmp_path / "bomb.npz")
    assert bomb.stat().st_size < 4 * 2**20  # a gigabyte of zeros in a few megabytes
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    result, peak = peak_memory_of("predict", tmp_path / "x.png", "--checkpoint", bomb)
    assert_clear_error(result, "would expand from", "zip bomb")
    assert peak < 400, f"{peak:.0f} MiB: the bomb was decompressed before it was refused"


def nan_weights(path):
    model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8)
    params = model.named_params()
    params["fc1.W"] = params["fc1.W"].copy()
    params["fc1.W"][0, 0] = np.nan
    return crafted(path, arrays=params)


def huge_input(path):
    config = dict(vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8).config,
                  input_shape=[8192, 8192, 3])
    return crafted(path, {"model_config": config})


@pytest.mark.parametrize("make, command, phrase", [
    (huge_input, "predict", "describes a model for 8192x8192 images, larger than the 1024"),
    (huge_input, "evaluate", "larger than the 1024"),
    (lambda p: crafted(p, {"model_config": dict(vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16,
                                                      fc_units=8).config, fc_units=2**24)}),
     "predict", "GiB of memory, but only"),
    (nan_weights, "predict", "holds NaN or infinite weights (fc1.W)"),
    (nan_weights, "evaluate", "the run that wrote it diverged"),
])
def test_checkpoints_that_cannot_work_are_refused_before_the_model_is_built(tmp_path, make, command, phrase):
    path = make(tmp_path / "crafted.npz")
    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")
    args = {"predict": [tmp_path / "x.png", "--checkpoint", path],
            "evaluate": ["--checkpoint", path, "--data", "shapes:100", "--confusion", tmp_path / "c.png"]}[command]
    result = run(command, *args, timeout=60)
    assert_clear_error(result, phrase)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert not (tmp_path / "c.png").exists()


@POSIX
def test_a_full_disk_at_the_first_save_gets_one_sentence_and_leaves_nothing_half_written(tmp_path):
    import resource

    def small_files_only():  # a write past 64 KiB fails with EFBIG, as on a full or size-capped disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "tinyvgg.train", "--data", "shapes:200", "--epochs", "2",
                             "--out", str(out), *TINY], capture_output=True, text=True, timeout=300,
                            preexec_fn=small_files_only)
    assert_clear_error(result, "cannot write", "File too large", "untouched")
    assert result.stderr.count("\n") == 1
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-") or name.endswith(".npz")]


def test_a_run_folder_made_read_only_mid_run_gets_one_sentence_and_keeps_the_saved_epoch(tmp_path, monkeypatch):
    """Every write after the first epoch's fails as on a read-only file system (as root, chmod would not)."""
    import errno
    import tempfile

    from tinyvgg import train
    from tinyvgg.errors import TinyVGGError
    real, calls = tempfile.mkstemp, []

    def read_only_after_epoch_1(*args, **kwargs):
        calls.append(kwargs.get("suffix"))
        if calls.count("history.json") > 1:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint.tempfile, "mkstemp", read_only_after_epoch_1)
    with pytest.raises(TinyVGGError, match="cannot write .*history.json .Read-only file system.") as info:
        train.main(["--data", "shapes:200", "--epochs", "3", "--out", str(tmp_path / "run"), *TINY])
    assert "\n" not in str(info.value)
    assert checkpoint.load(str(tmp_path / "run" / "last.npz")).meta["epoch"] == 1
    assert checkpoint.load(str(tmp_path / "run" / "best.npz")).meta["epoch"] == 1


@pytest.mark.parametrize("content", [
    b"cos\nsystem\n(S'echo owned'\ntR.",                     # a pickle that would run a shell command
    b"\x80\x02]q\x00(K\x01K\x02e.",           # a list, not a dict
    b"\x80\x02}q\x00C\x0blabel_namesq\x01]q\x02X\x01\x00\x00\x00aq\x03as.",  # one class name, not ten
])
def test_a_crafted_cifar_batches_meta_is_refused_in_one_sentence(tmp_path, content):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "batches.meta").write_bytes(content)
    result = run("train", "--data", f"cifar10:{folder}", "--out", tmp_path / "run", *TINY, timeout=60)
    assert_clear_error(result, "batches.meta")
    assert not (tmp_path / "run").exists()


def test_import_keras_refuses_class_names_that_are_not_utf8(tmp_path):
    (tmp_path / "names.txt").write_bytes(b"cat\n\xff\xfedog\n")
    result = run("import_keras", tmp_path / "weights.h5", "--class-names", tmp_path / "names.txt",
                 "--out", tmp_path / "x.npz")
    assert_clear_error(result, "is not UTF-8 text")


def test_evaluate_checks_where_it_writes_before_evaluating(two_runs):
    started = time.perf_counter()
    result = run("evaluate", "--checkpoint", two_runs / "A" / "best.npz", "--data", "shapes:3000",
                 "--confusion", "/proc/x.png", timeout=60)
    assert_clear_error(result, "--confusion /proc/x.png: cannot write in /proc")
    assert "accuracy" not in result.stdout and time.perf_counter() - started < 30


def test_evaluate_writes_the_confusion_matrix_beside_the_checkpoint(two_runs, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "best.npz").write_bytes((two_runs / "A" / "best.npz").read_bytes())
    result = run("evaluate", "--checkpoint", folder / "best.npz", "--data", "shapes:100", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (folder / "confusion.png").stat().st_size > 0 and not (tmp_path / "confusion.png").exists()


@pytest.mark.parametrize("trap, phrase", [
    ("dataset", "block1_conv1 is a single array where Keras stores a layer"),
    ("huge", "larger than any VGG16 weight"),
])
def test_import_keras_refuses_a_crafted_h5_before_reading_it(tmp_path, trap, phrase):
    h5py = pytest.importorskip("h5py", reason='needs h5py (pip install -e ".[keras]")')
    path = tmp_path / "weights.h5"
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [b"block1_conv1"]
        if trap == "dataset":
            f.create_dataset("block1_conv1", data=np.zeros(3))
        else:  # declared, never written: HDF5 allocates it lazily, so the file stays small
            group = f.create_group("block1_conv1")
            group.attrs["weight_names"] = [b"kernel:0"]
            group.create_dataset("kernel:0", shape=(2**20, 2**20), dtype="f4", chunks=(64, 64))
    assert path.stat().st_size < 2**20
    result = run("import_keras", path, "--out", tmp_path / "x.npz", timeout=60)
    assert_clear_error(result, phrase)
    assert result.stderr.count("\n") == 1
