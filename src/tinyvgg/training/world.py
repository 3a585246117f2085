"""The world of ranks: joining an MPI run, collectives that cannot hang, and ending every rank together.

A run of several processes (ranks) is only as sound as its weakest assumption: that every rank
makes the same collective calls in the same order. When one rank leaves early (it trained fewer
epochs), or is stuck, the others would wait in their next all-reduce forever; when two ranks
all-reduce buffers of different sizes, MPI may corrupt memory. So every collective here starts
with a *rendezvous*: a tiny all-gather, of the same size on every rank, of what each rank is
about to do (which collective, its number, its size in bytes). It is waited for with a deadline
(``timeout`` seconds, ``--collective-timeout``); only when every rank is at the same collective
does the real one run, with MPI's own blocking call at full speed. So:

- ranks that are at different collectives (one has finished training, another is in a step) all
  learn it at that rendezvous, and rank 0 says which rank is where, in one sentence;
- a rank that stops answering (stuck in its own code) ends the job after ``timeout`` seconds, from
  the rank that waited, with a sentence;
- a rank that fails with an exception, or is killed, ends the job at once: the failing rank aborts
  the others (:func:`ends_every_rank_on_failure`), and Open MPI's runtime ends a job one of whose
  processes died, on any node (the same when a node is lost and its daemon with it).

``World()`` is the world of one process (``--accumulate`` without MPI): its collectives do nothing.
:func:`connect` gives the MPI one. Open MPI's ``mpiexec`` is the launcher; mpi4py the binding.
"""
import functools
import json
import os
import signal
import sys
import time
import traceback

import numpy as np

from .. import backend
from ..backend import get_array_module, require
from ..errors import TinyVGGError, UsageError

#: The world this process joined (set by :func:`connect`): what a failure must end.
_WORLD = None
#: The signal that asks every rank to stop after the same step and save its place; ``mpiexec`` forwards
#: it to every rank. SIGTERM sent to a rank, as a batch system's launcher (srun) sends it, does the same.
STOP_SIGNAL = signal.SIGUSR1
_stop_signals = []
#: Seconds between a failing rank's sentence and the abort: without them Open MPI sometimes ends the job
#: before it has passed the sentence on to the terminal.
ABORT_DELAY = 1.0
#: How long a rank waits for the others at a collective before it ends the job (``--collective-timeout``).
#: Long enough for rank 0 to save a large checkpoint while the others wait at the next step.
DEFAULT_TIMEOUT = 600.0
#: The environment variables by which a process knows that a launcher (mpiexec, srun) started it.
LAUNCHER_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE")
#: Every kind of collective a run makes, by the code its rendezvous carries.
KINDS = {"agreement": 1, "broadcast": 2, "step": 3, "evaluation": 4, "batch norm": 5, "end": 6, "test": 7}
KIND_WORDS = {1: "the start-up agreement", 2: "the broadcast of rank 0's weights", 3: "a training step's all-reduce",
              4: "the validation's sums", 5: "a synchronized batch normalization", 6: "the end of the run",
              7: "a test collective"}


class RanksOutOfStep(TinyVGGError, RuntimeError):
    """The ranks reached different collectives, or disagree on the run; every rank knows it at once,
    so rank 0 alone says it (``every_rank``)."""
    every_rank = True


class CollectiveTimeout(TinyVGGError, RuntimeError):
    """A rank waited longer than the timeout for the others at a collective."""


class World:
    """The ranks of one run: ``rank`` (0 .. size-1), ``size``, and collectives that cannot hang.

    comm: an mpi4py communicator (None: one process); timeout: seconds a rank waits at a
    collective's rendezvous for the others.
    """

    def __init__(self, comm=None, timeout=DEFAULT_TIMEOUT):
        self.comm, self.timeout = comm, timeout
        self.rank = comm.Get_rank() if comm is not None else 0
        self.size = comm.Get_size() if comm is not None else 1
        self.collectives = 0    # how many this rank has made: the ranks must agree on it
        self.ended = False
        self._nccl = None

    # ---- the rendezvous before every collective

    def _rendezvous(self, kind, nbytes, same_size=True):
        """Wait (at most ``timeout`` s) until every rank is at this collective; the ``(size,)`` byte counts
        of every rank. A rank at another collective, or with another size, raises :class:`RanksOutOfStep`."""
        from mpi4py import MPI
        self.collectives += 1
        mine = np.array([KINDS[kind], self.collectives, nbytes], dtype=np.int64)
        table = np.empty((self.size, 3), dtype=np.int64)                 # (ranks, [kind, number, bytes])
        request = self.comm.Iallgather(mine, [table, MPI.INT64_T])
        self._wait(request, kind)
        seen = {tuple(row) if same_size else tuple(row[:2]) for row in table}
        if len(seen) > 1:
            raise RanksOutOfStep(self._describe(table, same_size))
        return table[:, 2]

    def _wait(self, request, kind):
        """Poll ``request`` until it completes; a sentence after ``timeout`` seconds. Spins for a moment
        (a step's rendezvous usually completes in microseconds), then sleeps between polls so that a rank
        that waits long leaves the core to the others."""
        start, polls = time.monotonic(), 0
        while not request.Test():
            polls += 1
            if polls > 2000:
                time.sleep(0.0005)
                if time.monotonic() - start > self.timeout:
                    raise CollectiveTimeout(
                        f"rank {self.rank} waited {self.timeout:g} s for the other ranks at {KIND_WORDS[KINDS[kind]]} "
                        f"(collective {self.collectives}); a rank stopped taking part (stuck, or its node lost). "
                        "If a rank legitimately needs longer (saving a large checkpoint), raise --collective-timeout.")

    def _describe(self, table, same_size):
        """One sentence: which rank is at which collective."""
        groups = {}
        for rank, (kind, number, nbytes) in enumerate(table):
            where = KIND_WORDS.get(int(kind), f"collective kind {kind}")
            where += f" (collective {number}" + (f", {nbytes:,} bytes)" if same_size else ")")
            groups.setdefault(where, []).append(rank)
        parts = [f"{_ranks_text(ranks)} at {where}" for where, ranks in groups.items()]
        return ("the ranks fell out of step: " + "; ".join(parts) + ". Something that shapes the run differs between "
                "the ranks; start every rank with the same settings and the same data.")

    # ---- the collectives

    def allreduce(self, buffer, kind="step"):
        """Replace ``buffer`` (a contiguous array) on every rank by its sum over all ranks, in place.

        A NumPy buffer goes through MPI (``Allreduce`` with ``IN_PLACE``); a CuPy buffer stays on
        its GPU and goes through NCCL. Returns ``buffer``.
        """
        if self.size == 1:
            return buffer
        self._rendezvous(kind, buffer.nbytes)
        if get_array_module(buffer) is np:
            from mpi4py import MPI
            self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            return buffer
        return self._gpu_allreduce(buffer)

    def broadcast(self, buffer, kind="broadcast"):
        """Replace ``buffer`` (a contiguous NumPy array) on every rank by rank 0's, in place; returns it."""
        if self.size > 1:
            self._rendezvous(kind, buffer.nbytes)
            self.comm.Bcast(buffer, root=0)
        return buffer

    def gather_json(self, value, kind="agreement"):
        """Every rank's ``value`` (anything JSON can write), as a list by rank, on every rank. The ranks may
        send texts of different lengths: the rendezvous carries each one's size."""
        if self.size == 1:
            return [value]
        from mpi4py import MPI
        mine = np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8)
        counts = self._rendezvous(kind, mine.size, same_size=False)
        texts = np.empty(int(counts.sum()), dtype=np.uint8)
        self.comm.Allgatherv(mine, [texts, counts, np.concatenate([[0], np.cumsum(counts)[:-1]]), MPI.UINT8_T])
        ends = np.cumsum(counts)
        return [json.loads(texts[end - count:end].tobytes()) for count, end in zip(counts, ends)]

    def finish(self):
        """The last collective of a run: every rank arrives here together, or those left waiting elsewhere
        learn that this one ended. Idempotent."""
        if self.size > 1 and not self.ended:
            self.ended = True
            self._rendezvous("end", 0)

    def _gpu_allreduce(self, buffer):
        """NCCL's sum all-reduce of a CuPy buffer, in place on the current stream (no host copy)."""
        cupy, nccl = require("cupy"), backend.nccl()
        if self._nccl is None:  # NCCL's ranks meet through an id that rank 0 makes and MPI hands out
            uid = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
            self._nccl = nccl.NcclCommunicator(self.size, uid, self.rank)
        kinds = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}
        stream = cupy.cuda.get_current_stream()
        self._nccl.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, kinds[buffer.dtype], nccl.NCCL_SUM,
                             stream.ptr)
        return buffer

    def use_gpu(self):
        """One GPU per rank: this rank takes GPU (rank on its machine) modulo the machine's GPU count."""
        from mpi4py import MPI
        cupy = require("cupy")
        local_rank = self.comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank() if self.comm is not None else 0
        device = local_rank % cupy.cuda.runtime.getDeviceCount()
        cupy.cuda.Device(device).use()
        return device

    def stop_requested(self):
        """Whether :data:`STOP_SIGNAL` reached this rank."""
        return bool(_stop_signals)

    def abort(self, code=1):
        """End every rank of the run now (MPI_Abort): the others may be waiting in a collective."""
        if self.comm is not None:
            self.comm.Abort(code)
        sys.exit(code)


def _ranks_text(ranks):
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(str(r) for r in ranks)


def started_by_a_launcher():
    """Whether a launcher (mpiexec, srun with PMIx or PMI) started this process: it sets one of
    :data:`LAUNCHER_VARIABLES`. Without one, initializing MPI would make a world of one process
    (and leave Open MPI's session folder behind in the temporary folder)."""
    return any(name in os.environ for name in LAUNCHER_VARIABLES)


def connect(timeout=DEFAULT_TIMEOUT):
    """Join the MPI run this process was started in; one sentence if that cannot work.

    Refuses a process that no launcher started (before MPI is initialized, so nothing is left in
    the temporary folder), and a world of one process: ``--distributed`` without ``mpiexec`` is
    almost always a forgotten launcher, and training silently on one process would hide it.
    """
    global _WORLD
    try:
        import mpi4py  # noqa: F401  (the package alone: MPI is initialized only below)
    except ImportError:
        raise UsageError('--distributed needs mpi4py and an MPI library: pip install -e ".[mpi]", then start '
                         "the ranks with mpiexec -n 2 python -m tinyvgg.train --distributed.") from None
    if not started_by_a_launcher():
        raise UsageError("--distributed found a world of one process (no MPI launcher started it): start the ranks "
                         "with a launcher, e.g. mpiexec -n 2 python -m tinyvgg.train --distributed, or leave out "
                         "--distributed.")
    from mpi4py import MPI
    _WORLD = World(MPI.COMM_WORLD, timeout)
    for signum in (STOP_SIGNAL, signal.SIGTERM):  # read at every step; SIGTERM also before training starts
        signal.signal(signum, lambda number, frame: _stop_signals.append(number))
    if _WORLD.size == 1:
        raise UsageError("--distributed found a world of one process: start the ranks with a launcher, e.g. "
                         "mpiexec -n 2 python -m tinyvgg.train --distributed, or leave out --distributed.")
    share_the_cores(MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_size())
    return _WORLD


def cores_for_this_rank(ranks_here):
    """The BLAS threads one of ``ranks_here`` ranks on this machine should run (at least 1).

    The cores a rank may use are its affinity (``os.sched_getaffinity``): Open MPI binds each rank to
    its own core(s) by default, and then they are all this rank's. A rank that is not bound (its
    affinity is the whole machine, e.g. ``--bind-to none``) shares them with the other ranks here.
    """
    try:
        mine = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):   # not Linux: the machine's count, shared
        mine = os.cpu_count() or 1
    if mine >= (os.cpu_count() or 1):
        mine //= max(1, ranks_here)
    return max(1, mine)


def share_the_cores(ranks_here):
    """Set this rank's BLAS threads to :func:`cores_for_this_rank`: by default every rank would start a
    thread per core of the machine, and 2 ranks x 2 threads on 2 cores fight for them (and with MPI,
    which waits by polling). OMP_NUM_THREADS or OPENBLAS_NUM_THREADS, when set, is left as it is."""
    if "OMP_NUM_THREADS" in os.environ or "OPENBLAS_NUM_THREADS" in os.environ:
        return
    from threadpoolctl import threadpool_limits
    threadpool_limits(cores_for_this_rank(ranks_here), user_api="blas")


def ends_every_rank_on_failure(main):
    """Decorate a command's ``main``: in a run of several ranks, an exception on any rank prints one
    sentence naming the rank and the cause and ends every rank (``MPI_Abort``) within seconds,
    instead of leaving the others waiting in their next collective. An error that every rank
    raised together (the ranks disagree) is said once, by rank 0. A bug (not a
    :class:`~tinyvgg.errors.TinyVGGError`) also shows its traceback first. A rank that returns
    meets the others at the run's last collective (:meth:`World.finish`), so that none is left
    waiting. One process: unchanged."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            code = main(*args, **kwargs)
            if _WORLD is not None:
                _WORLD.finish()
            return code
        except BaseException as err:
            if _WORLD is None or _WORLD.size == 1 or isinstance(err, SystemExit) and not err.code:
                raise
            if getattr(err, "every_rank", False):
                if _WORLD.rank == 0:
                    print(f"error: {err}", file=sys.stderr, flush=True)
            else:
                if not isinstance(err, (TinyVGGError, KeyboardInterrupt, SystemExit)):
                    traceback.print_exc()
                cause = str(err) if isinstance(err, TinyVGGError) else f"{type(err).__name__}: {err}"
                print(f"error: rank {_WORLD.rank} of {_WORLD.size} failed, so every rank stops: {cause}",
                      file=sys.stderr, flush=True)
            time.sleep(ABORT_DELAY)  # the launcher forwards the sentence before the abort tears the job down
            _WORLD.abort(1)
    return wrapped
