"""CI: each lesson runs in the student version, both before and after the student writes its parts.

1. For lesson k, make a student version whose blanks are the parts of the lessons *after* k (so the
   parts up to k are "solved": the reference solutions stay in), and run lesson k there with nbmake,
   importing that copy's tinyvgg. The exercises are blank in every student version, so this also checks
   that an unanswered exercise lets its lesson run to the end.
2. For a lesson that introduces parts, make a student version where its *own* parts are blank too (the
   state a student opens it in) and execute its cells in order until the first error. The check passes
   when the lesson runs to the end, or when the first error is a ``NotImplementedError`` of one of its
   own parts raised in the student's own cell: a cell that holds a blank (``raise NotImplementedError``
   under a hint), or a cell whose first line is ``# Your turn: part NAME ...`` (the cell that first
   runs a part written in ``src/tinyvgg``, after the text that asks for it). Anything earlier is a
   traceback before the student's turn.

    python .ci/handout_lessons.py                  # every lesson
    python .ci/handout_lessons.py 2 5              # lessons 2 and 5 only
    python .ci/handout_lessons.py --before 10      # lesson 10, the second check only
"""
import os
import re
import subprocess
import sys
import tempfile
import time

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from tinyvgg.classroom import handout

# the parts each lesson introduces (lessons/README.md, "In the student version")
LESSON_PARTS = [("01", []), ("02", ["dense"]), ("03", ["softmax"]), ("04", ["relu", "dropout"]),
                ("05", ["conv", "im2col"]), ("06", ["pool"]), ("07", ["sgd"]), ("08", []), ("09", []),
                ("10", ["batchnorm"]), ("11", []), ("12", []), ("13", []), ("14", []), ("15", []), ("16", []),
                ("17", ["rmsprop", "adam"]), ("18", []), ("19", ["leaky"]), ("20", ["strided", "global_average"]), ("21", ["top_k"]), ("22", ["residual"])]
assert sorted(p for _, parts in LESSON_PARTS for p in parts) == sorted(handout.PARTS)
BLANK = re.compile(r'raise NotImplementedError\("part (\w+)"\)')
YOUR_TURN = re.compile(r"^# Your turn: part (\w+)")


def lesson_file(folder, number):
    return next(n for n in sorted(os.listdir(os.path.join(folder, "lessons"))) if n.startswith(number + "_"))


def run_to_the_end(folder, number):
    """Phase 1: nbmake on the lesson; returns an error text or None."""
    lesson = lesson_file(folder, number)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                             "--nbmake-timeout=900",  # the reference kernels train for minutes in one cell
                             os.path.join("lessons", lesson)], cwd=folder, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=os.path.join(folder, "src")))
    return None if result.returncode == 0 else result.stdout[-3000:] + result.stderr[-2000:]


def run_to_the_students_turn(folder, number, own):
    """Phase 2: execute cells until the first error; returns (error text or None, what happened)."""
    path = os.path.join(folder, "lessons", lesson_file(folder, number))
    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONPATH"] = os.path.join(folder, "src")   # the kernel imports this copy's tinyvgg
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(path)}})
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as err:
                text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))       # without the terminal's colours
                raised = re.fullmatch(r"part (\w+)", str(err.evalue)) if err.ename == "NotImplementedError" else None
                first = cell.source.split("\n", 1)[0]
                turn = YOUR_TURN.match(first)
                mine = set(BLANK.findall(cell.source)) | ({turn.group(1)} if turn else set())
                if raised and raised.group(1) in own and raised.group(1) in mine:
                    return None, f"stops at the student's turn, code cell {index} (part {raised.group(1)})"
                return (f"code cell {index} fails before the student's turn:\n{cell.source[:600]}\n"
                        f"{text[-2500:]}"), "FAILED"
    return None, "runs to the end"


def main(argv):
    before_only = "--before" in argv
    wanted = {f"{int(a):02d}" for a in argv if a != "--before"} or {number for number, _ in LESSON_PARTS}
    failed = []
    saved_path = os.environ.get("PYTHONPATH")
    with tempfile.TemporaryDirectory(prefix="tinyvgg-handout-") as scratch:
        for k, (number, own) in enumerate(LESSON_PARTS):
            if number not in wanted:
                continue
            later = [p for _, parts in LESSON_PARTS[k + 1:] for p in parts]
            folder = os.path.join(scratch, f"upto-{number}")
            handout.make(folder, later)
            if not before_only:
                start = time.perf_counter()
                error = run_to_the_end(folder, number)
                print(f"{lesson_file(folder, number):45s} blanks: {', '.join(later) or 'exercises only':45s} "
                      f"{'FAILED' if error else 'ok'} in {time.perf_counter() - start:.0f} s", flush=True)
                if error:
                    print(error)
                    failed.append(number)
            if not own:
                continue
            folder = os.path.join(scratch, f"before-{number}")
            handout.make(folder, own + later)
            start = time.perf_counter()
            error, what = run_to_the_students_turn(folder, number, own)
            os.environ.pop("PYTHONPATH", None)
            if saved_path is not None:
                os.environ["PYTHONPATH"] = saved_path
            print(f"{lesson_file(folder, number) if before_only else '':45s} blanks: {', '.join(own + later):45s} "
                  f"{what} in {time.perf_counter() - start:.0f} s",
                  flush=True)
            if error:
                print(error)
                failed.append(number)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
