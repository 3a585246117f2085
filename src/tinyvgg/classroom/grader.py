"""The grader: each part of a submission runs in a sandboxed child; this process awards every point.

The child (:mod:`tinyvgg.classroom.runner`, in a bubblewrap sandbox:
:mod:`tinyvgg.classroom.bubblewrap`) works on a private copy of the submission's own
files (nothing else of tinyvgg is within its reach), runs the student's code on inputs
drawn from a fresh seed and hands back arrays (an ``.npz``, read without pickle); this process
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
import stat
import warnings
import zipfile

import numpy as np

from .. import checkpoint
from ..errors import UsageError
from . import bubblewrap, cgroup, checks, sandbox
from .checks import PARTS
from .report import print_report, shown  # noqa: F401 (print_report: the CLI's, from here as before)
from .scratch import make_scratch, remove_tree

HERE = os.path.dirname(os.path.abspath(__file__))

#: Limits of one part's child process.
LOG_CAP = 1 << 20                 # bytes of output the student's code may print
FILE_CAP = 16 << 20               # bytes of any one file it may write (and of its answer)
DISK_CAP = 256 << 20              # bytes of all the files it may leave in its folder
SUBMISSION_CAP = 50 << 20         # bytes of a submission's package copied for grading
MAX_PROCESSES = 64                # processes (and threads) one part's sandbox may hold at once

UNSAFE_WARNING = ("--unsafe-no-sandbox grades without bubblewrap: the student's code can read every file and "
                  "process this account can (other submissions, the environment, the grader's own package), "
                  "reach the network other than by TCP, and only Landlock and an audit hook guard writes")


# ---------------------------------------------------------------- the submission's files

def _refuse_link(path):
    if os.path.islink(path):
        raise UsageError(f"{path} is a symbolic link; hand in the files themselves, not links to them.")


def find_package(student_dir):
    """The student's ``tinyvgg`` package folder inside a submission (never reached through a link)."""
    for relative in (os.path.join("src", "tinyvgg"), "tinyvgg", ""):
        candidate = os.path.join(student_dir, relative) if relative else student_dir
        parts = relative.split(os.sep) if relative else []
        for depth in range(1, len(parts) + 1):  # src, then src/tinyvgg: neither may lead elsewhere
            _refuse_link(os.path.join(student_dir, *parts[:depth]))
        if all(os.path.isfile(os.path.join(candidate, name)) or os.path.islink(os.path.join(candidate, name))
               for name in ("__init__.py", "layers.py")):
            return candidate
    raise UsageError(f"{student_dir} holds no tinyvgg package (a folder src/tinyvgg/ with layers.py); "
                     "pass the folder the student handed in.")


def copy_package(source, dest, cap=SUBMISSION_CAP):
    """Copy a submitted package (its regular files and folders, at most ``cap`` bytes; caches left out).

    A link or a special file (a device, a FIFO, a socket) anywhere in it is refused with the
    submission: what the grader runs is only what the student wrote, never a file found elsewhere.
    """
    total, pending = 0, [""]
    while pending:
        relative = pending.pop()
        os.makedirs(os.path.join(dest, relative), exist_ok=True)
        with os.scandir(os.path.join(source, relative)) as entries:
            for entry in entries:
                path = os.path.join(relative, entry.name)
                if entry.is_symlink():
                    _refuse_link(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        pending.append(path)
                elif not entry.is_file(follow_symlinks=False):
                    raise UsageError(f"{os.path.join(source, path)} is not a regular file (a device, FIFO or "
                                     "socket); hand in source files only.")
                elif not entry.name.endswith(".pyc"):
                    total += entry.stat(follow_symlinks=False).st_size
                    if total > cap:
                        raise UsageError(f"{source} holds more than {cap >> 20} MB; hand in the package's source only.")
                    shutil.copyfile(entry.path, os.path.join(dest, path), follow_symlinks=False)


# ---------------------------------------------------------------- the isolation

def isolation(unsafe_no_sandbox=False):
    """"bubblewrap" where the sandbox works here, "unsafe" with the explicit opt-in, else a UsageError."""
    problem = bubblewrap.works()
    if problem is None:
        return "bubblewrap"
    if unsafe_no_sandbox:
        return "unsafe"
    raise UsageError(f"the grader's sandbox cannot run here: {problem}. Install bubblewrap (apt-get install "
                     "bubblewrap) and run where user namespaces are allowed, or pass --unsafe-no-sandbox to grade "
                     "without it (the student's code can then read this machine's files and processes).")


def protections(mode):
    """One line saying how the student's code is held, in this mode, on this machine."""
    if mode == "unsafe":
        return f"UNSAFE, no sandbox: {sandbox.protections()}"
    no_cgroup = cgroup.available()
    limits = (f"a cgroup per part caps its memory and {MAX_PROCESSES} processes" if no_cgroup is None else
              f"memory limited per process (RLIMIT_AS) and processes per sandbox user (RLIMIT_NPROC, not enforced "
              f"when root grades), since {no_cgroup}")
    return ("bubblewrap: own user, PID, network, IPC and UTS namespaces, no capabilities, read-only Python and "
            f"NumPy, read-write only its copy of the submission; {limits}")


def _child_env(workdir):
    """The --unsafe-no-sandbox child's small, fixed environment: nothing of the grader's own settings."""
    env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8", "MPLBACKEND": "Agg",
           "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    if "SYSTEMROOT" in os.environ:  # Windows needs it to start Python at all
        env["SYSTEMROOT"] = os.environ["SYSTEMROOT"]
    return env


# ---------------------------------------------------------------- one part

#: The most arrays an answer may hold (a part's cases make a few dozen): a zip of 60,000 members would
#: otherwise cost seconds of the grader's own time, outside --timeout.
MAX_ANSWER_MEMBERS = 1000
#: The longest list of errors an answer may carry (bytes of JSON), and how deep it may nest: a mapping of
#: case to reason is one level; a list nested 100,000 deep would exhaust the JSON decoder's recursion.
MAX_ERRORS_TEXT, MAX_ERRORS_DEPTH = 1 << 20, 4


class AnswerIsALink(ValueError):
    """The answer file was replaced by a link: it is never followed, and the reason says nothing of the target."""


def open_answer(path):
    """The answer file, opened read-only without following a link (``O_NOFOLLOW``), and only if it is a
    regular file: a sandboxed child can replace its answer by a link to any file of the grader's machine
    (``/etc/shadow``), which the grader, perhaps root, could read, and whose existence and format a reason
    would then betray."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as err:
        if os.path.islink(path):
            raise AnswerIsALink("the answer was a link, not a file") from None
        raise ValueError(f"its answer cannot be opened ({err.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ValueError("its answer is not a regular file")
    return os.fdopen(fd, "rb")


def _nesting(text):
    """How deep the brackets of a JSON text nest (strings skipped), counted without recursion."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _read_answer(path):
    """(outputs, errors) from the child's answer file, or a ValueError saying what is wrong with it."""
    with open_answer(path) as f:
        arrays = checkpoint.read_npz(f, max_bytes=FILE_CAP, max_members=MAX_ANSWER_MEMBERS)
    if "errors" not in arrays or arrays["errors"].dtype.kind != "U" or arrays["errors"].ndim != 0:
        raise ValueError("its answer has no list of errors")
    text = str(arrays.pop("errors"))
    if len(text) > MAX_ERRORS_TEXT or _nesting(text) > MAX_ERRORS_DEPTH:
        raise ValueError("its list of errors is not a mapping of case to reason")
    errors = json.loads(text)
    if not isinstance(errors, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in errors.items()):
        raise ValueError("its list of errors is not a mapping of case to reason")
    # a reason is never empty: "" would read as "no error" (checks.score tests `is not None`, and so does this)
    return arrays, {k: shown(v[:300]) or "an error without a message" for k, v in errors.items()}


def _run_child(part_dir, package_copy, task, mode, timeout, memory_bytes, part_cgroup=None):
    """Run ``task`` on ``package_copy`` (a folder holding the submission's ``tinyvgg``) in a sandboxed
    child, inside ``part_cgroup`` if given; returns (status, answer path, log path, CPU seconds)."""
    grader_dir, answer_dir = os.path.join(part_dir, "grader"), os.path.join(part_dir, "answer")
    os.makedirs(grader_dir)
    os.makedirs(answer_dir)
    for ours, name in ((os.path.join(HERE, "runner.py"), "_grader_runner.py"), (sandbox.__file__, "_grader_sandbox.py")):
        shutil.copyfile(ours, os.path.join(grader_dir, name))  # the grader's own bytes, where the child cannot write
    np.savez(os.path.join(grader_dir, "task.npz"), meta=np.array(json.dumps(task.meta())), **task.input_arrays())
    answer = f"answer-{random.SystemRandom().randrange(1 << 60):x}.npz"
    cpu = max(1, math.ceil(timeout)) + 1
    limits = [str(cpu), str(memory_bytes) if memory_bytes else "none", str(FILE_CAP), str(MAX_PROCESSES)]
    log_path = os.path.join(part_dir, "output.log")  # the log: outside the child's reach
    if mode == "bubblewrap":
        inside = bubblewrap.GRADER_DIR
        argv = bubblewrap.python_argv(f"{inside}/_grader_runner.py", f"{inside}/task.npz",
                                      f"{bubblewrap.ANSWER_DIR}/{answer}", bubblewrap.SUBMISSION_DIR,
                                      bubblewrap.LIBRARY_DIR, "bubblewrap", *limits)
        command = bubblewrap.command(grader_dir, package_copy, answer_dir, argv, work_bytes=DISK_CAP)
        cwd, env = answer_dir, {"PATH": "/usr/bin:/bin"}
    else:  # the child may write only in its working folder (Landlock, where there is one): the answer goes there
        cwd = answer_dir
        library = os.path.dirname(bubblewrap.numpy_folders()[0])
        command = bubblewrap.python_argv(os.path.join(grader_dir, "_grader_runner.py"),
                                         os.path.join(grader_dir, "task.npz"), os.path.join(answer_dir, answer),
                                         package_copy, library, "unsafe", *limits)
        env = _child_env(answer_dir)
    status, _ = sandbox.run_limited(command, cwd, env, timeout, log_path, LOG_CAP, watch=(answer_dir, DISK_CAP),
                                    preexec=part_cgroup.enter if part_cgroup is not None else None,
                                    reap=mode != "bubblewrap")  # bwrap's PID namespace ends every process
    return status, os.path.join(answer_dir, answer), log_path, cpu


def grade_part(part_dir, package_copy, part, seed, timeout, memory_bytes, mode, part_cgroup=None):
    """(checks, reason) of one part: the scored checks, or why none could be scored."""
    task = checks.make_task(part, seed)
    status, answer_path, log_path, cpu = _run_child(part_dir, package_copy, task, mode, timeout, memory_bytes,
                                                    part_cgroup)
    failed = {"timeout": f"stopped after {timeout:g} s (an endless loop?)",
              "output": f"stopped: it printed more than {LOG_CAP >> 20} MB",
              "disk": f"stopped: it wrote more than {DISK_CAP >> 20} MB of files",
              "killed by SIGXCPU": f"stopped at the CPU-time limit ({cpu} s)"}.get(status)
    if failed is None and not os.path.lexists(answer_path):  # lexists: a link is judged by open_answer, never followed
        failed = f"the checks did not finish ({shown(_last_line(log_path) or status)})"
    if failed is None:
        try:
            outputs, errors = _read_answer(answer_path)
        except AnswerIsALink as err:
            failed = str(err)
        except (ValueError, OSError, EOFError, KeyError, MemoryError, RecursionError, OverflowError,
                NotImplementedError, RuntimeError, SystemError, zipfile.BadZipFile) as err:
            failed = f"its answer was malformed ({type(err).__name__}: {shown(str(err)[:200])})"
    if failed is None:
        try:  # judged in this process: no warning may reach the report, no failure may stop the batch
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return checks.score(task, outputs, errors), None
        except Exception as err:  # an answer shaped to break a check or its feedback: this part, not the batch
            failed = f"its answer could not be judged ({type(err).__name__}: {shown(str(err)[:200])})"
    return [{"check": c["title"], "points": 0, "max": c["points"], "reason": failed} for c in task.checks], failed


def _last_line(log_path):
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, os.path.getsize(log_path) - 300))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return None
    return lines[-1] if lines else None


# ---------------------------------------------------------------- a submission

def grade(student_dir, parts=tuple(PARTS), timeout=60.0, seed=None, memory_gb=4.0, unsafe_no_sandbox=False):
    """Grade one submission; returns a report dict (per part: points, max, reasons)."""
    mode = isolation(unsafe_no_sandbox)
    package = find_package(student_dir)
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    report = {"submission": student_dir, "seed": seed, "protections": protections(mode), "parts": {},
              "total": 0, "max": 0}
    memory_bytes = int(memory_gb * 2**30) if memory_gb else None
    scratch, parts_cgroup = make_scratch(), None
    try:
        package_copy = os.path.join(scratch, "submission")  # checked and copied once; every part reads it only
        copy_package(package, os.path.join(package_copy, "tinyvgg"))
        if mode == "bubblewrap" and memory_bytes and cgroup.available() is None:
            # one cgroup for the parts, which run one at a time (a part's processes are gone when the next
            # starts); its memory counts the files in the sandbox's in-memory folders too
            parts_cgroup = cgroup.PartCgroup(f"tinyvgg-{os.getpid()}-{os.path.basename(scratch)}",
                                             memory_bytes + (64 << 20), MAX_PROCESSES)
        for number, part in enumerate(parts):
            part_dir = os.path.join(scratch, part)  # a fresh working folder: nothing one part leaves reaches the next
            try:
                scored, failed = grade_part(part_dir, package_copy, part, seed + number, timeout, memory_bytes,
                                            mode, parts_cgroup)
            except (KeyboardInterrupt, UsageError):
                raise
            except Exception as err:  # whatever this part's code or answer did: 0 for it, the rest goes on
                failed = f"the grader could not grade it ({type(err).__name__}: {shown(str(err)[:200])})"
                scored = [{"check": c["title"], "points": 0, "max": c["points"], "reason": failed}
                          for c in checks.make_task(part, seed + number).checks]
            remove_tree(part_dir)
            points = sum(c["points"] for c in scored)
            lost = [f"-{c['max']} {c['check']}: {c['reason']}" for c in scored if c["reason"]]
            reasons = [failed] if failed else lost
            report["parts"][part] = {"points": points, "max": PARTS[part], "reasons": reasons, "checks": scored}
            report["total"] += points
            report["max"] += PARTS[part]
    finally:
        if parts_cgroup is not None:
            parts_cgroup.remove()
        remove_tree(scratch)
    return report
