"""The grader's sandbox: each part of a submission runs in a bubblewrap (``bwrap``) container.

bubblewrap (the sandbox of Flatpak) starts a process in new Linux namespaces. The child
the grader starts with :func:`command` gets:

- **its own user, PID, network, IPC, UTS and cgroup namespaces** (``--unshare-all``): it sees
  no process of the machine (a fresh ``/proc`` shows only its own), has no network at all (not
  even loopback to the machine's listeners), runs as ``nobody`` with no capabilities (no
  ``mknod``, no ``chattr``, no mounts), may not make user namespaces of its own, and every
  process it starts dies with it: when the sandbox's first process ends, the kernel kills the
  whole PID namespace, session leaders and daemons included (``--die-with-parent`` ends it with
  the grader, ``--new-session`` keeps it off the grader's terminal);
- **a file system of read-only binds of only what Python needs**: the Python installation
  (its ``site-packages`` hidden under empty folders), NumPy's own folders, ``/usr``, and the
  grader's copy of this one submission; not the teacher's files, not ``/home``, not the package
  the grader imports. Writable: a working folder and ``/tmp`` (size-capped tmpfs, in memory,
  gone with the sandbox) and the folder the answer is written to;
- **a cleared environment** (``--clearenv``) with a fixed handful of variables;
- **limits**: a cgroup caps the memory and the number of processes of the whole sandbox where
  the machine lets the grader make one (:mod:`tinyvgg.classroom.cgroup`); else the child limits
  each of its processes' address space (``RLIMIT_AS``) and the sandbox user's processes
  (``RLIMIT_NPROC``), which the kernel does not enforce for a sandbox started by root.

:func:`works` tries it once on this machine and says why not where it cannot run.
"""
import functools
import os
import shutil
import site
import subprocess
import sys
import tempfile

import numpy

#: Where things appear inside the sandbox.
GRADER_DIR = "/grader"             # read-only: the grader's runner and the part's task
SUBMISSION_DIR = "/submission"     # read-only: the grader's copy of the submission (its tinyvgg/)
WORK_DIR = "/work"                 # read-write, the working folder: a tmpfs, gone with the sandbox
ANSWER_DIR = "/answer"             # read-write: the one folder whose files the grader reads back
LIBRARY_DIR = "/opt/tinyvgg-grader/lib"   # read-only: NumPy, alone
SANDBOX_UID = 65534                # nobody
TMP_BYTES = 64 << 20               # the private /tmp (a tmpfs, in memory)

ENVIRONMENT = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}


def find_bwrap():
    """The path of ``bwrap``, or None."""
    return shutil.which("bwrap") if sys.platform.startswith("linux") else None


def python_executable():
    """The real Python binary (a virtual environment's ``python`` is a link to it)."""
    return os.path.realpath(sys.executable)


def numpy_folders():
    """NumPy's package folder and the folder of the libraries its wheel ships (``numpy.libs``), if any."""
    package = os.path.dirname(os.path.realpath(numpy.__file__))
    libs = package + ".libs"
    return [package] + ([libs] if os.path.isdir(libs) else [])


def _site_folders():
    """Every folder of installed packages Python knows of: hidden inside the sandbox."""
    folders = set(site.getsitepackages()) | {site.getusersitepackages()}
    for prefix in {sys.base_prefix, os.path.dirname(os.path.dirname(python_executable()))}:
        for lib in ("lib", "lib64"):
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            folders |= {os.path.join(prefix, lib, version, "site-packages"),
                        os.path.join(prefix, lib, version, "dist-packages"),
                        os.path.join(prefix, lib, "python3", "dist-packages")}
    return sorted(os.path.realpath(f) for f in folders if os.path.isdir(f))


def _system_binds():
    """``/usr`` and the top-level links or folders of a merged-/usr system (``/lib -> usr/lib``...)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    return args


def _python_binds():
    """The Python installation read-only, its package folders hidden, NumPy alone in LIBRARY_DIR."""
    args, covered = [], ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"]
    for prefix in sorted({os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(python_executable()))}):
        if not any(prefix == c or prefix.startswith(c + os.sep) for c in covered):
            args += ["--ro-bind", prefix, prefix]
            covered.append(prefix)
    for folder in _site_folders():
        if any(folder.startswith(c + os.sep) for c in covered):
            args += ["--tmpfs", folder]   # an empty folder over it: no installed package is reachable
    for folder in numpy_folders():
        args += ["--ro-bind", folder, os.path.join(LIBRARY_DIR, os.path.basename(folder))]
    return args


def command(grader_dir, submission_dir, answer_dir, argv, work_bytes=TMP_BYTES):
    """The ``bwrap`` command line that runs ``argv`` (whose program is the real Python) in the sandbox:
    ``grader_dir`` and ``submission_dir`` read-only at GRADER_DIR and SUBMISSION_DIR, ``answer_dir``
    read-write at ANSWER_DIR, and the working folder a fresh tmpfs of ``work_bytes`` at WORK_DIR
    (whatever the code leaves there, a folder tree 1100 deep included, vanishes with the sandbox)."""
    args = [find_bwrap() or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox", "--clearenv"]
    for name, value in ENVIRONMENT.items():
        args += ["--setenv", name, value]
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    args += _system_binds() + _python_binds()
    args += ["--ro-bind", grader_dir, GRADER_DIR, "--ro-bind", submission_dir, SUBMISSION_DIR,
             "--bind", answer_dir, ANSWER_DIR, "--size", str(work_bytes), "--tmpfs", WORK_DIR, "--chdir", WORK_DIR]
    return args + ["--", *argv]


def python_argv(script, *args):
    """Python, isolated (``-I``: no environment variables, no user site, no script folder on the path;
    ``-S``: no ``site``, so no ``.pth`` file or installed package is ever looked at)."""
    return [python_executable(), "-I", "-S", "-B", script, *args]


@functools.lru_cache(maxsize=1)
def works():
    """None when the sandbox runs on this machine (NumPy imports inside it), else why not, in a sentence."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})"
    if find_bwrap() is None:
        return "bubblewrap is not installed (the package `bubblewrap`, command bwrap)"
    probe = f"import sys, os; sys.path.insert(0, {LIBRARY_DIR!r}); import numpy; print(os.getuid())"
    try:
        with tempfile.TemporaryDirectory(prefix="tinyvgg-probe-") as empty:
            result = subprocess.run(command(empty, empty, empty, [python_executable(), "-I", "-S", "-c", probe]),
                                    capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap could not start ({err})"
    if result.returncode != 0 or result.stdout.strip() != str(SANDBOX_UID):
        lines = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
        return f"bwrap cannot make a sandbox here ({lines[-1][:200]}); it needs root or unprivileged user namespaces"
    return None


def doctor_line():
    """What ``python -m tinyvgg.doctor`` says about the grader's sandbox on this machine."""
    problem = works()
    if problem is None:
        return "Grader sandbox: bubblewrap works (python -m tinyvgg.assignments grade isolates each part)."
    return (f"Grader sandbox: {problem}; install bubblewrap (apt-get install bubblewrap), "
            "or the grader refuses without --unsafe-no-sandbox.")
