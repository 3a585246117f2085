"""The grader: each part of a submission runs in a sandboxed child; this process awards every point.

The child (:mod:`tinyvgg.classroom.runner`, in :mod:`tinyvgg.classroom.sandbox`) works
on a private copy of the submission, runs the student's code on inputs drawn from a
fresh seed and hands back arrays (an ``.npz``, read without pickle); this process
computes every check and every point (:mod:`tinyvgg.classroom.checks`), so a part
never earns more than it is worth, whatever the student's code does. Code that
raises, hangs, floods its output, crashes or answers nonsense loses that part's
points with a one-line reason; the other parts and the other students are still
graded. Submissions are never modified.
"""
import json
import math
import os
import random
import shutil
import sys
import tempfile
import zipfile

import numpy as np

from .. import checkpoint
from ..errors import UsageError
from . import checks, sandbox
from .checks import PARTS

HERE = os.path.dirname(os.path.abspath(__file__))

#: Limits of one part's child process.
LOG_CAP = 1 << 20                 # bytes of output the student's code may print
FILE_CAP = 16 << 20               # bytes of any one file it may write (and of its answer)
DISK_CAP = 256 << 20              # bytes of all the files it may leave in its folder
SUBMISSION_CAP = 50 << 20         # bytes of a submission's package copied for grading


# ---------------------------------------------------------------- the grader

def find_package(student_dir):
    """The student's ``tinyvgg`` package folder inside a submission."""
    for candidate in (os.path.join(student_dir, "src", "tinyvgg"), os.path.join(student_dir, "tinyvgg"), student_dir):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in ("__init__.py", "layers.py")):
            return candidate
    raise UsageError(f"{student_dir} holds no tinyvgg package (a folder src/tinyvgg/ with layers.py); "
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
                raise UsageError(f"{source} holds more than {cap >> 20} MB; hand in the package's source only.")
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
    task = checks.make_task(part, seed)
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
            return checks.score(task, outputs, errors), None
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
            for ours, name in ((os.path.join(HERE, "runner.py"), "_grader_runner.py"),
                               (sandbox.__file__, "_grader_sandbox.py"),
                               (os.path.join(HERE, "naive.py"), "_grader_naive.py")):
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

