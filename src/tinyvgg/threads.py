"""How many BLAS threads: the count that is fastest on this machine as it is now, measured.

NumPy hands every matrix product (and so every convolution, through im2col) to a BLAS
library, OpenBLAS or MKL, which splits it over a pool of threads, one per core by default.
On a quiet machine that is right. On a loaded one it is not: a thread whose core is busy
with another program makes the whole product wait for it. Measured on a 2-core machine with
one core kept busy, a VGG16 step took 2.08 s with 2 threads and 1.46 s with 1 (1.02 s with
2 threads when quiet). Which count wins depends on the machine *and the moment*, so
:class:`ThreadChooser` measures it on the work itself:

1. the candidates are 1, 2, 4, ... up to the cores this process may use
   (``os.sched_getaffinity``: a batch system or ``taskset`` may give it fewer than the
   machine has);
2. after one warm-up step, a few real steps run at each candidate, timed; the fastest
   median wins (nothing is wasted: the measured steps are training steps);
3. after every epoch, if the steps at the chosen count got slower or faster by more than
   ``margin`` (another program started or ended), the next steps measure again.

The switching itself is threadpoolctl's, which knows how to talk to every BLAS library.

One thing changes with the count: the rounding. A product split over two threads adds its
terms in another order than on one thread, so the float32 results differ in the last bits,
and over a training run such differences grow (training is chaotic: lesson 16). A run is
repeatable bit for bit only at a fixed count: ``--threads N`` (or ``threads=N``), or
``OMP_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS`` set in the environment,
which the chooser respects as the user's choice.
"""
import contextlib
import os
import statistics
import time

from .errors import UsageError

#: Environment variables through which a user fixes the BLAS threads: the chooser leaves the pool alone then.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: tinyvgg's own: a fixed count for every command and Trainer of a session, like --threads (a test suite sets it
#: so that runs compare bit for bit, a teacher so that a class's notebooks repeat).
FIXED_VARIABLE = "TINYVGG_THREADS"
#: Timed steps per candidate count; the median of these decides.
STEPS_EACH = 3
#: Re-measure when an epoch's median step at the chosen count moved by more than this fraction.
MARGIN = 0.3


def usable_cores():
    """The cores this process may run on: its affinity where the system has one, else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def candidate_counts(cores):
    """1, 2, 4, ... and ``cores`` itself: the counts worth timing on ``cores`` cores."""
    counts, n = [], 1
    while n < cores:
        counts.append(n)
        n *= 2
    return counts + [cores]


def _count_from_environment():
    text = os.environ[FIXED_VARIABLE]
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"{FIXED_VARIABLE}={text!r} is not a thread count; set it to a whole number such as 1 or 2, "
                         "or unset it to let tinyvgg measure.")
    return int(text)


def blas_threads():
    """The BLAS pool's current thread count (None when threadpoolctl finds no BLAS)."""
    from threadpoolctl import threadpool_info
    pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(pools) if pools else None


def set_blas_threads(count):
    from threadpoolctl import threadpool_limits
    threadpool_limits(count, user_api="blas")


class ThreadChooser:
    """Times the steps wrapped in :meth:`timed` and keeps the BLAS thread count that runs them fastest.

    fixed: a thread count to use throughout (``--threads N``), ``why`` saying who chose it; None:
    measure, unless the environment fixes the count (:data:`FIXED_VARIABLE`, :data:`THREAD_VARIABLES`).
    Use::

        chooser = ThreadChooser()
        for x, y in batches:
            with chooser.timed():
                train_step(x, y)
        chooser.end_epoch()           # measure again if the machine's load changed
        print(chooser.describe())     # "BLAS threads: 1 of 2 cores, the fastest measured now (...)"
    """

    def __init__(self, fixed=None, why="as asked", cores=None, steps_each=STEPS_EACH, margin=MARGIN,
                 clock=time.perf_counter, switch=set_blas_threads):
        self.cores = cores or usable_cores()
        self.steps_each, self.margin, self.clock, self.switch = steps_each, margin, clock, switch
        self.count, self.reason, self._current = self.cores, None, None
        chosen_by = [name for name in THREAD_VARIABLES if os.environ.get(name)]
        if fixed is None and os.environ.get(FIXED_VARIABLE):
            fixed, self.reason = _count_from_environment(), f"as {FIXED_VARIABLE}={os.environ[FIXED_VARIABLE]} asks"
        if fixed is not None:
            self.count, self.reason = int(fixed), self.reason or why
        elif chosen_by:  # the user's choice: the pool stays as the variable made it
            self.count = self._current = blas_threads() or 1
            self.reason = f"as {chosen_by[0]}={os.environ[chosen_by[0]]} asks"
        elif self.cores == 1:
            self.count, self.reason = 1, "the one core this process may use"
        self.adapts = self.reason is None  # measured (now and whenever the load changes), not fixed
        self.timings = {}      # candidate count -> step times of the current measurement
        self.best_time = None  # the median step time of the chosen count when it was chosen
        self.epoch_times = []  # step times at the chosen count since the last end_epoch
        self.measurements = 0
        self._queue = self._plan() if self.adapts else []
        self._use(self.count)

    @property
    def choosing(self):
        """Whether the next steps measure (a measurement is due or under way)."""
        return bool(self._queue)

    def _use(self, count):
        if count != self._current:
            self.switch(count)
            self._current = count

    def _plan(self):
        """The counts of the next steps: one warm-up step (untimed), then ``steps_each`` at each candidate."""
        queue = [None]
        for count in candidate_counts(self.cores):
            queue += [count] * self.steps_each
        return queue

    @contextlib.contextmanager
    def timed(self):
        """Run the wrapped step at the count it is due (a candidate while measuring), and time it."""
        due = self._queue.pop(0) if self._queue else self.count
        self._use(due or self.count)  # None: the warm-up step before a measurement, at the count in use
        start = self.clock()
        yield
        seconds = self.clock() - start
        if due is None:
            return
        if self.timings or self._queue:  # a measurement's step
            self.timings.setdefault(due, []).append(seconds)
            if not self._queue:
                self._choose()
        else:
            self.epoch_times.append(seconds)

    def _choose(self):
        medians = {count: statistics.median(times) for count, times in self.timings.items()}
        self.count = min(medians, key=medians.get)
        self.best_time = medians[self.count]
        self._use(self.count)
        self.measurements += 1
        shown = ", ".join(f"{seconds:.3g} s with {count}" for count, seconds in sorted(medians.items()))
        self.reason = f"the fastest measured now (a step: {shown})"
        self.timings, self.epoch_times = {}, []

    def end_epoch(self):
        """Measure again over the next steps if the steps at the chosen count moved by more than ``margin``."""
        if not self.adapts or self._queue or len(self.epoch_times) < self.steps_each:
            self.epoch_times = []
            return False
        now = statistics.median(self.epoch_times)
        self.epoch_times = []
        if abs(now / self.best_time - 1) <= self.margin:
            return False
        self._queue = self._plan()
        return True

    def describe(self):
        """One line: the count in use and why."""
        if self.reason is None:
            return f"BLAS threads: measuring 1 to {self.cores} (of {self.cores} cores)"
        again = f", measured {self.measurements} times" if self.measurements > 1 else ""
        return f"BLAS threads: {self.count} of {self.cores} cores, {self.reason}{again}"
