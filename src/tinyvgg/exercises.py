"""Self-checking exercises for the lessons.

Each lesson ends with an exercise: a cell where you write a small function, and a
cell that checks it with :func:`check`. The check never shows the answer; it tests
what your answer must do (a numerical gradient it must match, a brute-force count it
must agree with, a loss it must reach)::

    def relu_backward(x, dout):
        raise NotImplementedError  # your code here

    check(lambda: ...)   # "Not done yet" / "Correct." / an AssertionError that says what is wrong

An unanswered exercise only prints "Not done yet", so a lesson runs to its end before
you have done its exercise.

A number a lesson prints and a teacher will ask about goes through :func:`record` as well; the
teacher's guide (``lessons/teacher/``) states the range every run gives, and CI checks that the
lessons' own runs fall inside it (``.ci/teacher_guide.py``), so the guide cannot drift.
"""
import json
import os
import sys
from contextlib import contextmanager

import numpy as np


class Verdict:
    """What :func:`check` returns: true when the exercise passed. It shows nothing in a notebook (the
    check has already printed its sentence), so a cell that ends with ``check(test)`` prints
    "Correct." and not "Correct." then "True"."""

    def __init__(self, passed):
        self.passed = passed

    def __bool__(self):
        return self.passed

    def __eq__(self, other):
        return bool(self) == other

    def __hash__(self):
        return hash(self.passed)

    def __repr__(self):
        return f"Verdict(passed={self.passed})"

    def _ipython_display_(self):
        pass


def check(test, success="Correct."):
    """Run ``test()`` (which calls your answer and asserts what must hold); a true :class:`Verdict` when it
    passes.

    A ``NotImplementedError`` means the exercise is not done yet: a note, not an error. A wrong
    answer raises an ``AssertionError`` that says what is wrong.
    """
    try:
        test()
    except NotImplementedError:
        print("Not done yet: write your answer in the cell above, run it, then run this cell again.")
        return Verdict(False)
    except AssertionError as err:
        raise AssertionError(f"Not yet right: {err}") from None
    print(success)
    return Verdict(True)


def close(got, expected, what, tol=1e-6):
    """Assert that ``got`` matches ``expected`` to a relative error below ``tol``; says which value is off."""
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{what} has shape {got.shape}, expected {expected.shape}"
    denom = np.linalg.norm(got) + np.linalg.norm(expected)
    error = 0.0 if denom == 0 else float(np.linalg.norm(got - expected) / denom)
    assert error < tol, f"{what} is off (relative error {error:.1e})"


#: The environment variable naming the file that :func:`record` appends to (CI sets it; a lesson never needs it).
RECORD_VARIABLE = "TINYVGG_LESSON_RECORD"


def record(name, value):
    """Note ``value``, a number the lesson printed, as ``name`` ("09.best_val_accuracy": the lesson's number,
    a dot, a name); returns ``value`` unchanged.

    Nothing happens unless the environment variable ``TINYVGG_LESSON_RECORD`` names a file; then one JSON
    line ``{"name": ..., "value": ...}`` is appended to it, for the check of the teacher's guide.
    """
    path = os.environ.get(RECORD_VARIABLE)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"name": name, "value": float(value)}) + "\n")
    return value


@contextmanager
def without(owner, name, why):
    """Within the block, calling ``owner.name`` fails with an AssertionError that says ``why``.

    For an exercise that asks for something *without* the package's help (count the parameters
    without building the model), the check calls your answer inside ``with without(Sequential,
    "__init__", "count them from the configuration")``: an answer that asks the package fails
    with that sentence instead of passing by copying the oracle the check compares with.

    ``owner`` is a class (its method is replaced; one it only inherits is shadowed, then removed
    again) or a module. For a module's function, every other name bound to the same function in
    tinyvgg's modules and in the notebook (``__main__``) is replaced too, so importing it by
    another route does not get around the block.
    """
    original = getattr(owner, name)

    def refuse(*args, **kwargs):
        raise AssertionError(why)

    if isinstance(owner, type):
        places, owned = [(owner, name)], name in vars(owner)
    else:
        places, owned = [(owner, name)] + _aliases(original, owner), True
    for place, attribute in places:
        setattr(place, attribute, refuse)
    try:
        yield
    finally:
        for place, attribute in places:
            if owned or place is not owner:
                setattr(place, attribute, original)
            else:
                delattr(place, attribute)


def _aliases(function, skip):
    """(module, name) pairs, in tinyvgg's modules and ``__main__``, that are bound to ``function``."""
    found = []
    for module_name, module in list(sys.modules.items()):
        if module is skip or not (module_name == "__main__" or module_name.split(".")[0] == "tinyvgg"):
            continue
        found += [(module, attribute) for attribute, value in list(vars(module).items()) if value is function]
    return found
