"""The BLAS thread policy (tinyvgg.threads): measured on the work itself, fixed on request."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tinyvgg.errors import UsageError
from tinyvgg.threads import (
    FIXED_VARIABLE,
    THREAD_VARIABLES,
    ThreadChooser,
    blas_threads,
    candidate_counts,
    usable_cores,
)


@pytest.fixture
def unfixed(monkeypatch):
    """The environment of a user who fixed nothing (the suite fixes the count for its other tests)."""
    for name in THREAD_VARIABLES + (FIXED_VARIABLE,):
        monkeypatch.delenv(name, raising=False)


class FakeMachine:
    """A clock and a switch: a step at ``count`` threads takes ``seconds[count]`` (changeable mid-run)."""

    def __init__(self, seconds):
        self.seconds, self.now, self.count, self.switches = dict(seconds), 0.0, None, []

    def clock(self):
        return self.now

    def switch(self, count):
        self.count = count
        self.switches.append(count)

    def chooser(self, **kwargs):
        return ThreadChooser(cores=kwargs.pop("cores", 4), clock=self.clock, switch=self.switch, **kwargs)

    def run(self, chooser, steps):
        for _ in range(steps):
            with chooser.timed():
                self.now += self.seconds[self.count]


def test_candidates_are_powers_of_two_and_every_core():
    assert candidate_counts(1) == [1]
    assert candidate_counts(2) == [1, 2]
    assert candidate_counts(6) == [1, 2, 4, 6]
    assert candidate_counts(8) == [1, 2, 4, 8]


def test_the_fastest_count_is_kept_after_one_warm_up_step_and_three_each(unfixed):
    machine = FakeMachine({1: 1.5, 2: 2.1, 4: 3.0})  # the loaded machine of the issue: 1 thread wins
    chooser = machine.chooser()
    assert chooser.choosing
    machine.run(chooser, 1 + 3 * 3)
    assert chooser.count == 1 and machine.count == 1 and not chooser.choosing
    assert machine.switches[:4] == [4, 1, 2, 4]  # every core until measured, then each candidate in turn
    assert "1 of 4 cores" in chooser.describe() and "1.5 s with 1" in chooser.describe()
    machine.run(chooser, 5)
    assert machine.switches[-1] == 1 and chooser.end_epoch() is False  # steady: no new measurement


def test_a_change_of_load_measures_again_and_follows_it(unfixed):
    machine = FakeMachine({1: 1.5, 2: 2.1, 4: 3.0})
    chooser = machine.chooser()
    machine.run(chooser, 10)
    machine.seconds = {1: 1.0, 2: 0.6, 4: 0.5}  # the other program ended: the step at 1 thread is 33% faster
    machine.run(chooser, 5)
    assert chooser.end_epoch() is True
    machine.run(chooser, 10)
    assert chooser.count == 4 and machine.count == 4 and chooser.measurements == 2
    assert "measured 2 times" in chooser.describe()
    machine.seconds[4] = 0.55  # 10% slower: within the margin
    machine.run(chooser, 5)
    assert chooser.end_epoch() is False and chooser.count == 4


def test_a_fixed_count_is_set_once_and_never_measured(unfixed, monkeypatch):
    machine = FakeMachine({1: 1.0, 2: 0.1, 4: 0.1})
    chooser = machine.chooser(fixed=1)
    machine.run(chooser, 20)
    assert machine.switches == [1] and chooser.count == 1 and not chooser.end_epoch()
    assert chooser.describe() == "BLAS threads: 1 of 4 cores, as asked"
    monkeypatch.setenv(FIXED_VARIABLE, "2")
    machine = FakeMachine({1: 0.1, 2: 1.0})
    chooser = machine.chooser()
    machine.run(chooser, 20)
    assert machine.switches == [2] and "as TINYVGG_THREADS=2 asks" in chooser.describe()


@pytest.mark.parametrize("value", ["two", "0", "-1", "1.5"])
def test_a_bad_fixed_count_in_the_environment_is_one_sentence(unfixed, monkeypatch, value):
    monkeypatch.setenv(FIXED_VARIABLE, value)
    with pytest.raises(UsageError, match="TINYVGG_THREADS=.* is not a thread count; set it to a whole number"):
        ThreadChooser()


def test_the_usual_variables_are_the_users_choice_and_one_core_needs_no_measuring(unfixed, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    machine = FakeMachine({1: 1.0, 2: 0.1})
    machine.count = 1  # the variable made the pool
    chooser = machine.chooser(cores=2)
    machine.run(chooser, 10)
    assert machine.switches == [] and "as OMP_NUM_THREADS=1 asks" in chooser.describe()
    monkeypatch.delenv("OMP_NUM_THREADS")
    machine = FakeMachine({1: 1.0})
    chooser = machine.chooser(cores=1)
    machine.run(chooser, 10)
    assert machine.switches == [1] and "the one core this process may use" in chooser.describe()


def test_the_real_pool_follows_the_choice(unfixed):
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=None):  # the pool as it was, afterwards
        ThreadChooser(fixed=1)
        assert blas_threads() == 1
        clock = [0.0]
        chooser = ThreadChooser(cores=2, clock=lambda: clock[0])
        for _ in range(7):
            with chooser.timed():
                clock[0] += {1: 1.0, 2: 0.5}[blas_threads()]  # two threads twice as fast, read from the real pool
        assert chooser.count == 2 and blas_threads() == 2


def test_the_training_command_says_which_count_it_chose_and_why(unfixed, tmp_path):
    args = [sys.executable, "-m", "tinyvgg.train", "--data", "shapes:88", "--width", "0.0625", "--fc-units", "16",
            "--batch-size", "8", "--epochs", "1", "--quiet", "--precise-bn", "0"]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES + (FIXED_VARIABLE,)}
    measured = subprocess.run(args + ["--out", str(tmp_path / "a")], env=env, capture_output=True, text=True, check=False)
    assert measured.returncode == 0, measured.stderr
    assert "the fastest measured now (a step: " in measured.stdout
    fixed = subprocess.run(args + ["--out", str(tmp_path / "b"), "--threads", "1"], env=env, capture_output=True,
                           text=True, check=False)
    assert "BLAS threads: 1 of" in fixed.stdout and "as --threads asks" in fixed.stdout
    refused = subprocess.run(args + ["--out", str(tmp_path / "c"), "--threads", "0"], env=env, capture_output=True,
                             text=True, check=False)
    assert refused.returncode != 0 and "--threads must be positive, got 0." in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_trainer_measures_by_default_and_keeps_a_fixed_count(unfixed):
    from threadpoolctl import threadpool_limits

    from tinyvgg.data import ArrayDataset, BatchLoader
    from tinyvgg.models import vgg11
    from tinyvgg.optim import SGD
    from tinyvgg.training import Trainer

    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 3, 64), ["a", "b", "c"])
    with threadpool_limits(limits=None):
        measured = "the fastest measured now" if usable_cores() > 1 else "the one core this process may use"
        for threads, expected in ((None, measured), (1, "as threads=1 asks")):
            model = vgg11(num_classes=3, input_shape=(32, 32, 3), width=1 / 32, fc_units=8, dropout=0.0, seed=0)
            trainer = Trainer(model, SGD(model.named_params(), lr=0.01), rng, progress=False, threads=threads)
            trainer.fit(BatchLoader(data, 8, np.zeros(3), np.ones(3), shuffle=True, rng=rng), epochs=1)  # 8 steps
            assert expected in trainer.threads.describe()
            assert blas_threads() == trainer.threads.count
