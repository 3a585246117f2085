"""The CLIs at their edges (issue 33): crafted files and numbers first, then what a new user meets: a run folder
that moved, a Ctrl-C in the last epoch, predict on a folder, odd class names.

Each hostile case: one sentence, a non-zero exit, no traceback, memory bounded before anything large is made.
"""
import io
import json
import os
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image
from test_cli_safety import TINY, assert_clear_error, crafted, images, run, snapshot
from test_resume import assert_clear_error as one_sentence

from tinyvgg import checkpoint, memory
from tinyvgg.models import vgg11

LINUX = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS, /proc and ru_maxrss are Linux's")


def run_limited(module, *args, limit_bytes=None, cwd=None, timeout=300):
    """(result, peak resident MiB) of ``python -m tinyvgg.MODULE ARGS`` in a fresh process, under ``ulimit -v``."""
    def limit():
        if limit_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    probe = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout); sys.exit(r.returncode)")
    result = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", f"tinyvgg.{module}",
                             *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            preexec_fn=limit)
    return result, int(result.stdout.split("\n")[0]) / 1024


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.new("RGB", (32, 32), (30, 200, 90)).save(path)
    return path


# ---------------------------------------------------------------- crafted checkpoints

def many_small_members(path, count=200, size=(1 << 20) - 4096):
    """A checkpoint of ``count`` members of zeros, each just under the per-member exemption (1 MiB)."""
    meta = io.BytesIO()
    np.save(meta, np.array(json.dumps({"format": "tinyvgg-checkpoint"})))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for k in range(count):
            member = io.BytesIO()
            np.save(member, np.zeros(size // 4, np.float32))
            archive.writestr(f"params/p{k}.npy", member.getvalue())
        archive.writestr("meta.npy", meta.getvalue())
    return path


def tiny_members(path, count=20000):
    with zipfile.ZipFile(path, "w") as archive:
        for k in range(count):
            archive.writestr(f"params/p{k}.npy", b"")
    return path


@LINUX
@pytest.mark.parametrize("make, phrase", [(many_small_members, "arrays would expand from"),
                                          (tiny_members, "arrays, more than the 10,000 expected")])
def test_a_checkpoint_of_many_members_is_refused_from_its_directory(tmp_path, image, make, phrase):
    path = make(tmp_path / "bomb.npz")
    result, peak = run_limited("predict", image, "--checkpoint", path)
    one_sentence(result, phrase)
    assert peak < 400, f"{peak:.0f} MiB: the members were read"


def _config(**changes):
    return dict(vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=8).config, **changes)


@pytest.mark.parametrize("config, phrase", [
    (_config(width=float("inf")), "its width inf is not a number above 0"),
    (_config(input_shape=[float("inf"), 32, 3]), "its input_shape is not three whole numbers"),
    (_config(fc_units="8"), "its fc_units 8 is not a whole number"),
    (_config(depth="vgg99"), "its depth 'vgg99' is none of vgg11"),
    (_config(fc_units=20000), "holds 36,643 weights, but its configuration describes a model of 400,776,283"),
])
def test_a_configuration_that_lies_is_refused_before_the_model_is_built(tmp_path, image, config, phrase):
    path = crafted(tmp_path / "c.npz", {"model_config": config})
    result, peak = run_limited("predict", image, "--checkpoint", path)
    one_sentence(result, phrase)
    assert peak < 400, f"{peak:.0f} MiB"


@LINUX
def test_under_a_memory_limit_a_large_configuration_is_refused_with_the_number(tmp_path, image):
    path = crafted(tmp_path / "c.npz", {"model_config": _config(fc_units=40000)})
    result, _ = run_limited("predict", image, "--checkpoint", path, limit_bytes=4 * 2**30)  # the model: 6.4 GB
    one_sentence(result, "GiB of memory, but only")


def test_finetune_from_a_configuration_that_lies_gets_one_sentence(tmp_path):
    path = crafted(tmp_path / "c.npz", {"model_config": _config(depth="vgg99")})
    result = run("train", "--finetune", path, "--data", "shapes:100", "--out", tmp_path / "run", "--quiet")
    one_sentence(result, "describes a model tinyvgg cannot build: its depth 'vgg99'")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    result = run("train", "--data", "shapes:200", "--epochs", "2", "--out", out, *TINY)
    assert result.returncode == 0, result.stderr
    return out


def _tampered(finished, tmp_path, change):
    arrays = checkpoint.read_npz(str(finished / "last.npz"))
    meta = json.loads(str(arrays.pop("meta")))
    change(meta)
    folder = tmp_path / "run"
    folder.mkdir()
    np.savez(folder / "last.npz", meta=np.array(json.dumps(meta)), **arrays)
    return folder / "last.npz"


@pytest.mark.parametrize("change, phrase", [
    (lambda m: m.update(position={"step": 3}), "its position in the epoch has no epoch and step"),
    (lambda m: m.update(callbacks="x"), "its callbacks state is not a table"),
    (lambda m: m["history"].update(loss=["a", "b"]), "its history of loss is not 2 numbers"),
    (lambda m: m.update(epoch="2"), "its epoch is not a whole number"),
])
def test_a_tampered_training_state_is_refused_before_training(finished, tmp_path, change, phrase):
    last = _tampered(finished, tmp_path, change)
    before = snapshot(last.parent)
    result = run("train", "--resume", last, "--epochs", "3", "--quiet")
    one_sentence(result, "its training state is damaged", phrase)
    assert snapshot(last.parent) == before                              # nothing written


@pytest.mark.parametrize("change, phrase", [
    (lambda c: c.buffers.__setitem__("block1_bn1.running_var", -np.ones(4, np.float32)), "negative variance"),
    (lambda c: c.buffers.__setitem__("block1_bn1.running_mean", np.full(4, np.nan, np.float32)), "NaN"),
    (lambda c: c.meta.__setitem__("normalization", {"mean": [0.5] * 3, "std": [1e-38] * 3}),
     "no valid normalization statistics"),
    (lambda c: c.params.__setitem__("fc1.W", c.params["fc1.W"].astype(np.complex64)), "holds complex64 weights"),
])
def test_predict_refuses_statistics_and_weights_no_training_gives(finished, tmp_path, image, change, phrase):
    ckpt = checkpoint.load(str(finished / "best.npz"))
    change(ckpt)
    checkpoint.save(str(tmp_path / "x.npz"), ckpt.params, ckpt.meta, buffers=ckpt.buffers)
    one_sentence(run("predict", image, "--checkpoint", tmp_path / "x.npz"), phrase)


def test_class_names_reach_the_terminal_escaped(finished, tmp_path, image):
    ckpt = checkpoint.load(str(finished / "best.npz"))
    names = [f"c{k}" for k in range(10)]
    names[:3] = ["\x1b[2J\x1b]0;owned\x07", "x\nfake.png: cat 1.000", "\u202eevil"]
    ckpt.meta["class_names"] = names
    checkpoint.save(str(tmp_path / "x.npz"), ckpt.params, ckpt.meta, buffers=ckpt.buffers)
    result = run("predict", image, "--checkpoint", tmp_path / "x.npz", "--top-k", "10")
    assert result.returncode == 0, result.stderr
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\x07" not in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1 and r"\x1b[2J" in result.stdout


def test_samples_checks_memory_before_it_draws(tmp_path):
    result, peak = run_limited("samples", "shapes", "--out", tmp_path / "s", "--per-class", "1000",
                               "--image-size", "512", limit_bytes=2 * 2**30)
    one_sentence(result, "drawing 10,010 images of 512x512 would need about")
    assert not (tmp_path / "s").exists() and peak < 400


def test_the_training_estimate_counts_the_micro_batch(monkeypatch):
    """The README's recipe for the paper's batch of 256 (--accumulate 8: micro-batches of 32) fits in 21 GiB."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 21 * 2**30)
    config = dict(depth="vgg16", input_shape=(224, 224, 3), width=1.0, fc_units=4096, num_classes=1000)
    memory.check_training(config, 256, accumulate=8)
    with pytest.raises(memory.OutOfMemory, match="batches of 256 would need"):
        memory.check_training(config, 256)


# ---------------------------------------------------------------- what a new user meets

def test_a_run_resumes_from_another_folder_and_from_moved_data(tmp_path):
    """Trained from inside a project with --data ../photos; resumed from the folder above, then after the photos
    moved; a different set of images under the old name is refused."""
    images(tmp_path / "photos", count=12)
    (tmp_path / "project").mkdir()
    result = run("train", "--data", "../photos", "--epochs", "1", "--out", "runs/p", *TINY, cwd=tmp_path / "project")
    assert result.returncode == 0, result.stderr
    last = tmp_path / "project" / "runs" / "p" / "last.npz"
    result = run("train", "--resume", "project/runs/p/last.npz", "--epochs", "2", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    os.rename(tmp_path / "photos", tmp_path / "moved")
    result = run("train", "--resume", last, "--epochs", "3", "--quiet", cwd=tmp_path)
    assert_clear_error(result, "does not exist", "if the data moved, pass its new place with --data")
    result = run("train", "--resume", last, "--epochs", "3", "--data", tmp_path / "moved", cwd=tmp_path)
    assert result.returncode == 0 and "the data moved" in result.stdout, result.stderr
    assert checkpoint.load(str(last)).meta["epoch"] == 3
    images(tmp_path / "other", classes=("red", "blue"), count=11)
    result = run("train", "--resume", last, "--epochs", "4", "--data", tmp_path / "other", cwd=tmp_path)
    one_sentence(result, "does not hold the images the run of")


def test_a_resume_that_finds_nothing_to_do_writes_the_end_of_run_files_a_stopped_run_lacks(finished, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("best.npz", "last.npz", "history.json", "history.csv", "curves.png"):
        (folder / name).write_bytes((finished / name).read_bytes())  # as a Ctrl-C after the last step left it
    result = run("train", "--resume", folder / "last.npz", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "nothing to do" in result.stdout and "best validation accuracy" in result.stdout
    assert (folder / "confusion.png").exists()


def test_predict_takes_folders_and_patterns_and_writes_a_csv(finished, tmp_path):
    images(tmp_path / "photos" / "more", classes=("a",), count=2)
    Image.new("RGB", (32, 32)).save(tmp_path / "photos" / "top.jpg")
    (tmp_path / "photos" / "notes.txt").write_text("not an image")
    result = run("predict", tmp_path / "photos", str(tmp_path / "photos" / "*.jpg"), "--checkpoint",
                 finished / "best.npz", "--csv", tmp_path / "p.csv", "--top-k", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [str(tmp_path / "photos" / p) for p in
                                                      ("more/a/0.png", "more/a/1.png", "top.jpg", "top.jpg")]
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "image,class_1,p_1,class_2,p_2" and len(rows) == 5
    assert "forced into one of the model's classes" in run("predict", "--help").stdout


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_predict_walks_a_loop_of_links_once_and_says_when_a_folder_holds_no_image(finished, tmp_path):
    """Two links that loop made glob('**') enumerate paths without end; an empty folder printed nothing, rc 0."""
    (tmp_path / "loop" / "sub").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "loop" / "sub" / "b.png")
    os.symlink("..", tmp_path / "loop" / "sub" / "up")
    os.symlink("../loop", tmp_path / "loop" / "self")
    (tmp_path / "empty").mkdir()
    result = run("predict", "loop/**/*.png", "loop", "empty", "--checkpoint", finished / "best.npz", cwd=tmp_path,
                 timeout=60)
    lines = result.stdout.splitlines()             # the pattern's one match, and the folder's: no loop walked twice
    assert len(lines) == 2 and all(line.startswith("loop/sub/b.png: ") for line in lines) and result.returncode == 1
    assert "cannot read empty (no images" in result.stderr and "Traceback" not in result.stderr


def crafted_zip(path, shape=None, method=None):
    """A checkpoint whose one member declares ``shape`` (beyond any float), or is stored with the unknown
    compression ``method``."""
    member = io.BytesIO()
    if shape is not None:
        np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
    else:
        np.save(member, np.zeros(3, np.float32))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("params/x.npy", member.getvalue() + b"\0" * 16)
    if method is not None:
        data = bytearray(path.read_bytes())
        for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):  # local header and directory entry
            at = data.index(signature)
            data[at + offset:at + offset + 2] = method.to_bytes(2, "little")
        path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("make", [lambda p: crafted_zip(p, shape=(10**200, 10**200)),
                                  lambda p: crafted_zip(p, shape=(10**400,)),
                                  lambda p: crafted_zip(p, method=99)])
def test_a_checkpoint_beyond_any_number_or_compression_gets_one_sentence(tmp_path, image, make):
    path = make(tmp_path / "x.npz")
    result = run("predict", image, "--checkpoint", path)
    one_sentence(result, "is not a readable tinyvgg checkpoint")
    assert "Warning" not in result.stderr


def test_a_class_folder_named_like_math_text_trains_to_the_end(tmp_path):
    images(tmp_path / "data", classes=("x$^$", "y_{1}$"), count=10)
    result = run("train", "--data", tmp_path / "data", "--epochs", "1", "--out", tmp_path / "run", *TINY)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "run" / "confusion.png").exists()


def test_a_last_epoch_announces_no_learning_rate_for_an_epoch_that_never_comes(tmp_path):
    result = run("train", "--data", "shapes:100", "--epochs", "2", "--lr-patience", "0", "--warmup-epochs", "0",
                 "--out", tmp_path / "run", *[a for a in TINY if a != "--quiet"])
    assert result.returncode == 0, result.stderr
    assert "from epoch 3 on" not in result.stdout, result.stdout
