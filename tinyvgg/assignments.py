"""``python -m tinyvgg.assignments``: student versions of tinyvgg, and a grader they cannot fool.

The reference code marks the parts students write with nbgrader's solution
markers, preceded by a line naming the part and giving a hint::

    # [part dense] hint: out = x @ W + b; keep x for backward when training
    ### BEGIN SOLUTION
    ...the reference implementation...
    ### END SOLUTION

``make OUT_DIR [--parts dense relu ...]`` writes a student copy: every marked
region of the chosen parts becomes ``raise NotImplementedError`` under the kept
hint, the other parts keep their solution (without the markers), and a line
ending in ``# STUDENT: <code>`` becomes ``<code>`` (this switches the fast
kernels off, which would otherwise give the convolution away). The grader's own
files and the loop references stay out. The copy is an installable package with
tests on fixed inputs (their answers stored beside them), a README that lists every
blank, and the lessons with their marked cells blanked.

``grade STUDENT_DIR... [--json REPORT] [--csv GRADES]`` grades each part in a
sandboxed child process (:mod:`tinyvgg.sandbox`) on a private copy of the
submission: the child only runs the student's code on inputs drawn from a fresh
seed and hands back arrays (an ``.npz``, read without pickle); this process
computes every check and every point (:mod:`tinyvgg.assignment_checks`), so a
part never earns more than it is worth, whatever the student's code does. Code
that raises, hangs, floods its output, crashes or answers nonsense loses that
part's points with a one-line reason; the other parts and the other students are
still graded. Submissions are never modified.
"""
import argparse
import csv
import io
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import zipfile

import numpy as np

from . import assignment_checks, checkpoint, cli, sandbox
from .assignment_checks import PARTS

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(PACKAGE_DIR)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PART_LINE = re.compile(r"^(\s*)# \[part (\w+)\] hint: (.*)$")
STUDENT_LINE = re.compile(r"^(\s*).*# STUDENT: (.*)$")
#: Files of the package that stay out of the student version: the grader, and answers in loop form.
GRADER_ONLY = {"assignments.py", "assignment_checks.py", "sandbox.py", "naive.py"}
#: Files whose blanks are optional: the fast kernels, which the student version switches off.
OPTIONAL_FILES = {"fastconv.py"}

#: Limits of one part's child process.
LOG_CAP = 1 << 20                 # bytes of output the student's code may print
FILE_CAP = 16 << 20               # bytes of any one file it may write (and of its answer)
DISK_CAP = 256 << 20              # bytes of all the files it may leave in its folder
SUBMISSION_CAP = 50 << 20         # bytes of a submission's package copied for grading


# ---------------------------------------------------------------- the student version

def _begin_after(lines, i):
    """The index of the BEGIN marker that the hint at line ``i`` (plus comment lines) leads to, or None."""
    j = i + 1
    while j < len(lines) and lines[j].strip().startswith("#") and lines[j].strip() != BEGIN:
        j += 1
    return j if j < len(lines) and lines[j].strip() == BEGIN else None


def strip_solutions(text, parts, where="code", blanks=None):
    """The student version of a source text: regions of ``parts`` replaced, the others unmarked.

    ``blanks``, a list, receives ``(part, hint, line number)`` for every region replaced.
    """
    out, lines, i = [], text.split("\n"), 0
    while i < len(lines):
        line = lines[i]
        student = STUDENT_LINE.match(line)
        header = PART_LINE.match(line)
        if student:
            out.append(student.group(1) + student.group(2))
        elif header and _begin_after(lines, i) is not None:
            indent, part = header.group(1), header.group(2)
            begin = _begin_after(lines, i)  # the hint may go on over more comment lines
            try:
                end = next(k for k in range(begin + 1, len(lines)) if lines[k].strip() == END)
            except StopIteration:
                raise ValueError(f"{where}: '{BEGIN}' for part {part} has no '{END}'") from None
            if part in parts:
                if blanks is not None:
                    blanks.append((part, header.group(3), len(out) + 1))
                out += lines[i:begin] + [f"{indent}# YOUR CODE HERE",
                                         f'{indent}raise NotImplementedError("part {part}")']
            else:
                out += lines[begin + 1:end]
            i = end
        elif line.strip() in (BEGIN, END):
            raise ValueError(f"{where}: '{line.strip()}' without a '# [part NAME] hint: ...' line before it")
        else:
            out.append(line)
        i += 1
    return "\n".join(out)


#: The part name of the lessons' exercise answers: removed from every student version.
EXERCISE = "exercise"


def _convert_notebook(path, dest, parts):
    with open(path) as f:
        nb = json.load(f)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            text = strip_solutions("".join(cell["source"]), set(parts) | {EXERCISE}, os.path.basename(path))
            cell["source"] = [line + "\n" for line in text.split("\n")]
            cell["source"][-1] = cell["source"][-1].rstrip("\n")
            cell["outputs"], cell["execution_count"] = [], None
    with open(dest, "w") as f:
        json.dump(nb, f, indent=1)
        f.write("\n")


STUDENT_README = """# tinyvgg: your assignment

This is tinyvgg with some parts left for you to write: {parts}.
Each place to fill in says `raise NotImplementedError("part NAME")` under a hint.

    pip install -e ".[test]"
    pytest tests/test_assignment.py            # all parts
    pytest tests/test_assignment.py -k dense   # one part

The tests run your code on fixed inputs and compare it with the answers the
reference code gives (stored in `tests/expected.npz`); they always test the code
in this folder, whatever else is installed. The grader runs the same kinds of
checks on inputs you have not seen. Its convolution checks lend your `Conv2D`
a correct im2col, so each part is judged on its own; these tests use yours, so
write im2col first. `python -m tinyvgg.gradcheck` checks every layer once all
of them are written. The lessons in `lessons/` explain each idea.
Hand in this whole folder.

## Every blank

Graded (points out of {total}):

{graded}

Optional, not graded: the fast kernels of `fastconv.py` compute the same things
faster; this version switches them off (`fastconv.ENABLED = False`). Fill them
in once your parts pass, switch them on, and check that nothing changes:

{optional}
"""

STUDENT_CONFTEST = '''"""Make sure the tests import the tinyvgg of this folder, never another installed copy."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
'''

STUDENT_TEST = '''"""Your parts on fixed inputs, against the answers of the reference code (stored in expected.npz)."""
import json
import pathlib

import numpy as np
import pytest

import tinyvgg
from tinyvgg.assignment_runner import compare, run_case

HERE = pathlib.Path(__file__).resolve().parent
assert pathlib.Path(tinyvgg.__file__).resolve().parent == HERE.parent / "tinyvgg", (
    f"these tests must test the tinyvgg of {{HERE.parent}}, but imported {{tinyvgg.__file__}}; "
    "run pytest from the assignment folder")
EXPECTED = np.load(HERE / "expected.npz", allow_pickle=False)
CHECKS = json.loads(str(EXPECTED["checks"]))


def arrays(prefix):
    return {{name[len(prefix):]: EXPECTED[name] for name in EXPECTED.files if name.startswith(prefix)}}


@pytest.mark.parametrize("check", CHECKS, ids=[c["id"] for c in CHECKS])
def test_part(check):
    inputs = arrays(check["id"] + "/input/")
    outputs, error = run_case(check["recipe"], inputs, check["kwargs"])
    assert error is None, f"{{check['title']}}: {{error}}"
    reason = compare(check["kind"], outputs, arrays(check["id"] + "/expected/"), inputs, check["kwargs"],
                     check["tol"])
    assert reason is None, f"{{check['title']}}: {{reason}}"
'''


def _expected_file(parts, seeds=(0, 1)):
    """The student tests' fixed inputs and reference answers, as one .npz (bytes) without pickle."""
    arrays, checks = {}, []
    for part in parts:
        for seed in seeds:
            task = assignment_checks.make_task(part, seed)
            for n, check in enumerate(task.checks):
                case = task.cases[check["case"]]
                check_id = f"{part}-{seed}-{n}"
                checks.append({"id": check_id, "part": part, "title": check["title"], "recipe": case["recipe"],
                               "kwargs": case["kwargs"], "kind": check["kind"], "tol": check["tol"]})
                arrays.update({f"{check_id}/input/{k}": v for k, v in case["arrays"].items()})
                arrays.update({f"{check_id}/expected/{k}": v for k, v in check["expected"].items()})
    buffer = io.BytesIO()
    np.savez(buffer, checks=np.array(json.dumps(checks)), **arrays)
    return buffer.getvalue()


def make(out_dir, parts):
    """Write the student version of the package (and marked lessons) into ``out_dir``; returns the
    number of lesson notebooks converted."""
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise cli.UsageError(f"{out_dir} already exists and is not an empty folder; choose a new folder for the "
                             "student version.")
    package = os.path.join(out_dir, "tinyvgg")
    os.makedirs(package, exist_ok=True)
    graded, optional = [], []
    for name in sorted(os.listdir(PACKAGE_DIR)):
        if not name.endswith(".py") or name in GRADER_ONLY:
            continue
        with open(os.path.join(PACKAGE_DIR, name)) as f:
            text = f.read()
        blanks = []
        text = strip_solutions(text, parts, name, blanks)
        for part, hint, line in blanks:
            entry = f"- `tinyvgg/{name}`, line {line} (part {part}): {hint}"
            (optional if name in OPTIONAL_FILES else graded).append(entry)
        with open(os.path.join(package, name), "w") as f:
            f.write(text)
    if os.path.exists(os.path.join(REPO_DIR, "pyproject.toml")):
        shutil.copy(os.path.join(REPO_DIR, "pyproject.toml"), out_dir)
    tests = os.path.join(out_dir, "tests")
    os.makedirs(tests)
    for name, text in (("conftest.py", STUDENT_CONFTEST), ("test_assignment.py", STUDENT_TEST.format())):
        with open(os.path.join(tests, name), "w") as f:
            f.write(text)
    with open(os.path.join(tests, "expected.npz"), "wb") as f:
        f.write(_expected_file(parts))
    total = sum(PARTS[p] for p in parts)
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(STUDENT_README.format(parts=", ".join(parts), total=total,
                                      graded="\n".join(graded) or "- none",
                                      optional="\n".join(optional) or "- none"))
    lessons = os.path.join(REPO_DIR, "lessons")
    converted = 0
    if os.path.isdir(lessons):
        os.makedirs(os.path.join(out_dir, "lessons"))
        for name in sorted(os.listdir(lessons)):
            if name.endswith(".ipynb"):
                _convert_notebook(os.path.join(lessons, name), os.path.join(out_dir, "lessons", name), parts)
                converted += 1
    return converted


# ---------------------------------------------------------------- the grader

def find_package(student_dir):
    """The student's ``tinyvgg`` package folder inside a submission."""
    for candidate in (os.path.join(student_dir, "tinyvgg"), student_dir):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in ("__init__.py", "layers.py")):
            return candidate
    raise cli.UsageError(f"{student_dir} holds no tinyvgg package (a folder tinyvgg/ with layers.py); "
                         "pass the folder the student handed in.")


def copy_package(source, dest, cap=SUBMISSION_CAP):
    """Copy the regular files of a submitted package (no links, devices or caches), at most ``cap`` bytes."""
    total = 0
    for folder, subfolders, files in os.walk(source, followlinks=False):
        subfolders[:] = [d for d in subfolders if d != "__pycache__" and not os.path.islink(os.path.join(folder, d))]
        target = os.path.join(dest, os.path.relpath(folder, source))
        os.makedirs(target, exist_ok=True)
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path) or not os.path.isfile(path) or name.endswith(".pyc"):
                continue
            total += os.path.getsize(path)
            if total > cap:
                raise cli.UsageError(f"{source} holds more than {cap >> 20} MB; hand in the package's source only.")
            shutil.copyfile(path, os.path.join(target, name))


def _child_env(workdir):
    """A small, fixed environment for the child: nothing of the grader's own settings leaks in."""
    tmp = os.path.join(workdir, "tmp")
    os.makedirs(tmp, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": workdir, "TMPDIR": tmp, "MPLCONFIGDIR": tmp,
           "MPLBACKEND": "Agg", "PYTHONPATH": workdir, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
           "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    if "SYSTEMROOT" in os.environ:  # Windows needs it to start Python at all
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
    return env


def _read_answer(path):
    """(outputs, errors) from the child's answer file, or a ValueError saying what is wrong with it."""
    arrays = checkpoint.read_npz(path, max_bytes=FILE_CAP)
    if "errors" not in arrays or arrays["errors"].dtype.kind != "U" or arrays["errors"].ndim != 0:
        raise ValueError("its answer has no list of errors")
    errors = json.loads(str(arrays.pop("errors")))
    if not isinstance(errors, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in errors.items()):
        raise ValueError("its list of errors is not a mapping of case to reason")
    for name, value in arrays.items():
        if value.dtype.kind not in "fiub":
            raise ValueError(f"its answer {name} is not numeric")
    return {k: v.astype(np.float64) for k, v in arrays.items()}, {k: v[:300] for k, v in errors.items()}


def grade_part(workdir, part, seed, timeout, memory_bytes):
    """(checks, reason) of one part: the scored checks, or why none could be scored."""
    task = assignment_checks.make_task(part, seed)
    token = f"{part}-{random.SystemRandom().randrange(1 << 60):x}"
    task_path, answer_path = os.path.join(workdir, f"task-{token}.npz"), os.path.join(workdir, f"answer-{token}.npz")
    log_path = os.path.join(os.path.dirname(workdir), f"output-{token}.log")  # outside the child's reach
    np.savez(task_path, meta=np.array(json.dumps(task.meta())), **task.input_arrays())
    cpu = max(1, math.ceil(timeout)) + 1
    command = [sys.executable, "-s", "-B", os.path.join(workdir, "_grader_runner.py"), workdir, task_path, answer_path,
               str(cpu), str(memory_bytes) if memory_bytes else "none", str(FILE_CAP)]
    status, _ = sandbox.run_limited(command, workdir, _child_env(workdir), timeout, log_path, LOG_CAP,
                                    watch=(workdir, DISK_CAP))
    failed = {"timeout": f"stopped after {timeout:g} s (an endless loop?)",
              "output": f"stopped: it printed more than {LOG_CAP >> 20} MB",
              "disk": f"stopped: it wrote more than {DISK_CAP >> 20} MB of files",
              "killed by SIGXCPU": f"stopped at the CPU-time limit ({cpu} s)"}.get(status)
    if failed is None and not os.path.isfile(answer_path):
        failed = f"the checks did not finish ({_last_line(log_path) or status})"
    if failed is None:
        try:
            outputs, errors = _read_answer(answer_path)
            return assignment_checks.score(task, outputs, errors), None
        except (ValueError, OSError, EOFError, KeyError, MemoryError, zipfile.BadZipFile) as err:
            failed = f"its answer was malformed ({type(err).__name__}: {err})"
    return [{"check": c["title"], "points": 0, "max": c["points"], "reason": failed} for c in task.checks], failed


def _last_line(log_path):
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 300))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


def grade(student_dir, parts=tuple(PARTS), timeout=60.0, seed=None, memory_gb=4.0):
    """Grade one submission; returns a report dict (per part: points, max, reasons)."""
    package = find_package(student_dir)
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    report = {"submission": student_dir, "seed": seed, "protections": sandbox.protections(), "parts": {},
              "total": 0, "max": 0}
    with tempfile.TemporaryDirectory(prefix="tinyvgg-grade-", ignore_cleanup_errors=True) as scratch:
        for number, part in enumerate(parts):
            # a fresh copy for every part: what one part's code leaves behind cannot touch the next
            workdir = os.path.join(scratch, part, "work")  # the child's world; its log lives beside it
            copy_package(package, os.path.join(workdir, "tinyvgg"))
            for ours, name in ((os.path.join(PACKAGE_DIR, "assignment_runner.py"), "_grader_runner.py"),
                               (sandbox.__file__, "_grader_sandbox.py"),
                               (os.path.join(PACKAGE_DIR, "naive.py"), "_grader_naive.py")):
                shutil.copyfile(ours, os.path.join(workdir, name))
            checks, failed = grade_part(workdir, part, seed + number, timeout,
                                        int(memory_gb * 2**30) if memory_gb else None)
            shutil.rmtree(os.path.join(scratch, part), ignore_errors=True)
            points = sum(c["points"] for c in checks)
            lost = [f"-{c['max']} {c['check']}: {c['reason']}" for c in checks if c["reason"]]
            reasons = [failed] if failed else lost
            report["parts"][part] = {"points": points, "max": PARTS[part], "reasons": reasons, "checks": checks}
            report["total"] += points
            report["max"] += PARTS[part]
    return report


def print_report(report):
    print(f"{report['submission']}: {report['total']} / {report['max']} points")
    if report.get("error"):
        print(f"  not graded: {report['error']}")
    for part, r in report["parts"].items():
        print(f"  {part:<9} {r['points']:>3} / {r['max']:<3}")
        for reason in r["reasons"]:
            print(f"      {reason}")


def _write_text(path, text):
    checkpoint.atomic_write(path, lambda f: f.write(text.encode()))


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tinyvgg.assignments", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write a student version")
    mk.add_argument("out_dir")
    mk.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr = sub.add_parser("grade", help="grade one or more submissions")
    gr.add_argument("student_dirs", nargs="+", metavar="STUDENT_DIR")
    gr.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    gr.add_argument("--json", help="write the full report of one submission (or a list of them) here")
    gr.add_argument("--csv", help="write one row per submission: points per part and the total")
    gr.add_argument("--force", action="store_true", help="replace an existing --json or --csv file")
    gr.add_argument("--timeout", type=float, default=60.0, help="seconds allowed per part")
    gr.add_argument("--memory-limit", type=float, default=4.0, metavar="GB",
                    help="address space allowed to the student's code per part")
    gr.add_argument("--seed", type=int, help="the inputs' seed (default: a fresh random one)")
    args = p.parse_args(argv)
    if args.command == "make":
        notebooks = make(args.out_dir, args.parts)
        print(f"wrote the student version to {args.out_dir} (parts: {', '.join(args.parts)}; "
              f"{notebooks} lesson notebooks)")
        return 0
    for flag, value in (("--timeout", args.timeout), ("--memory-limit", args.memory_limit)):
        if not (math.isfinite(value) and value > 0):
            raise cli.UsageError(f"{flag} must be a positive number, got {value}.")
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path:
            cli.output_path(path, flag, args.force)
    reports = []
    for student_dir in args.student_dirs:
        try:
            reports.append(grade(student_dir, args.parts, args.timeout, args.seed, args.memory_limit))
        except (cli.UsageError, OSError) as err:  # this submission cannot be graded; the others still are
            reports.append({"submission": student_dir, "error": str(err), "total": 0,
                            "max": sum(PARTS[k] for k in args.parts),
                            "parts": {k: {"points": 0, "max": PARTS[k], "reasons": [], "checks": []}
                                      for k in args.parts}})
        print_report(reports[-1])
    if args.json:
        _write_text(args.json, json.dumps(reports[0] if len(reports) == 1 else reports, indent=2))
    if args.csv:
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["submission", *args.parts, "total", "max", "note"])
        for r in reports:
            writer.writerow([r["submission"], *(r["parts"][k]["points"] for k in args.parts), r["total"], r["max"],
                             r.get("error", "")])
        _write_text(args.csv, rows.getvalue())
    return 0


if __name__ == "__main__":
    cli.run(main)
