"""Limits for code we do not trust: the child's rlimits, the parent's watch, and a weaker fallback.

The grader runs each part of a submission in a child process with :func:`run_limited`
(the parent's watch: time, output, disk) inside bubblewrap (:mod:`tinyvgg.classroom.bubblewrap`),
where the child calls :func:`set_limits` before it imports any of the student's code.

Where bubblewrap cannot run, ``--unsafe-no-sandbox`` grades with what this module alone
can do: the child calls :func:`lock_down` (limits, Landlock, an audit hook) instead. That
path does NOT hide the machine from the student's code (it can read every file and process
the grader can, and reach the network other than by TCP). What it gives:

- **Time**: the child and every process it starts are killed at the time limit.
  The child leads a session of its own (``start_new_session``), so one
  ``killpg`` reaches whatever stayed in it; a process that started a session of
  its own escapes that, so on Linux the grader becomes a *child subreaper*
  (``prctl(PR_SET_CHILD_SUBREAPER)``): orphans are handed to it instead of to
  init, and it kills and reaps every one that is left.
- **Resources** (``resource.setrlimit``, POSIX): CPU seconds, address space
  (memory), the size of any file written (the log included: a print loop is
  stopped at the cap, and the parent watches the log's size too), no core files.
- **Files, network, signals** (Linux 5.13 and later with Landlock, an unprivileged
  kernel sandbox): the child reads anywhere but writes, creates, renames and
  deletes only under its own folder; it may not open TCP connections (Linux 6.7+)
  nor signal processes outside its sandbox (6.12+). The kernel enforces this for
  any code, Python or native, and for every process the child starts.
- **Everywhere**: an audit hook (PEP 578) refuses Python's own ways of writing
  outside the folder, starting processes, sending signals, opening sockets and
  loading native libraries with ctypes. Native code can get around a hook, so
  where Landlock is missing (macOS, Windows, old kernels) grade untrusted code
  in a throwaway account or container; :func:`protections` says what is active.

This file is also copied, alone, next to the grader's child program: it imports
nothing from tinyvgg, so a submission's own copy of the package cannot replace it.
"""
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time

# ---------------------------------------------------------------- Landlock (Linux)

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
_PR_SET_NO_NEW_PRIVS, _PR_SET_CHILD_SUBREAPER, _PR_GET_CHILD_SUBREAPER = 38, 36, 37
_FS_EXECUTE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
_FS_ALL_V1 = (1 << 13) - 1   # execute, write, read, read dir, remove dir/file, make char/dir/reg/sock/fifo/block/sym
_FS_REFER, _FS_TRUNCATE = 1 << 13, 1 << 14                # ABI 2, ABI 3
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1          # ABI 4
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1      # ABI 6


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi():
    """The Landlock ABI version of this kernel (0: none, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        version = _libc().syscall(ctypes.c_long(_SYS_CREATE_RULESET), None, ctypes.c_long(0), ctypes.c_long(1))
    except (OSError, AttributeError):
        return 0
    return max(int(version), 0)


def restrict_filesystem(writable_dir):
    """Landlock this process (and all it starts): read anywhere, write only under ``writable_dir``,
    no TCP, no signals to processes outside. Returns the ABI used (0: not available, nothing done)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = _libc()
    handled_fs = _FS_ALL_V1 | (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0)
    fields = [handled_fs]
    if abi >= 4:
        fields.append(_NET_BIND_TCP | _NET_CONNECT_TCP)  # handled, and no rule allows them: no TCP at all
    if abi >= 6:
        fields.append(_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL)
    attr = (ctypes.c_uint64 * len(fields))(*fields)
    ruleset = libc.syscall(ctypes.c_long(_SYS_CREATE_RULESET), ctypes.byref(attr), ctypes.c_long(ctypes.sizeof(attr)),
                           ctypes.c_long(0))
    if ruleset < 0:
        return 0
    try:
        for path, access in (("/", _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR), (writable_dir, handled_fs)):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(access, fd)
                if libc.syscall(ctypes.c_long(_SYS_ADD_RULE), ctypes.c_long(ruleset), ctypes.c_long(1),
                                ctypes.byref(rule), ctypes.c_long(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule({path}) failed")
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
        if libc.syscall(ctypes.c_long(_SYS_RESTRICT_SELF), ctypes.c_long(ruleset), ctypes.c_long(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    finally:
        os.close(ruleset)
    return abi


# ---------------------------------------------------------------- the audit hook (everywhere)

_PATH_EVENTS = {  # event -> (position of a path argument, position of its dir_fd or None), PEP 578's table
    "os.remove": [(0, 1)], "os.rmdir": [(0, 1)], "os.mkdir": [(0, 2)], "os.rename": [(0, 2), (1, 3)],
    "os.link": [(0, 2), (1, 3)], "os.symlink": [(1, 2)], "os.chmod": [(0, 2)], "os.chown": [(0, 3)],
    "os.truncate": [(0, None)], "os.utime": [(0, 3)], "os.mkfifo": [(0, 2)], "os.mknod": [(0, 3)],
    "os.chflags": [(0, None)], "os.lchflags": [(0, None)], "os.lchmod": [(0, None)],
    "shutil.rmtree": [(0, 1)], "shutil.move": [(0, None), (1, None)],
}
_DENIED_EVENTS = {
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.Popen",
    "os.kill", "os.killpg", "signal.pthread_kill", "socket.connect", "socket.bind", "socket.sendto",
    "ctypes.dlopen", "ctypes.dlsym", "ctypes.dlsym/handle", "os.startfile", "webbrowser.open",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def install_audit_hook(writable_dir):
    """Refuse, from now on in this interpreter, writes outside ``writable_dir`` and the events above."""
    root = os.path.realpath(writable_dir)

    def inside(path, dir_fd=None):
        if isinstance(path, int):
            return True  # an already open descriptor: it was checked when it was opened
        path = os.fsdecode(path)
        if dir_fd is not None and not os.path.isabs(path):
            try:
                path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
            except OSError:
                return False
        full = os.path.realpath(path)
        return full == root or full.startswith(root + os.sep)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or bool((flags or 0) & _WRITE_FLAGS)
            if writing and path is not None and not inside(path):
                raise PermissionError(f"the grader's sandbox refuses to write {path}")
        elif event in _PATH_EVENTS:
            for i, fd_at in _PATH_EVENTS[event]:
                dir_fd = args[fd_at] if fd_at is not None and fd_at < len(args) else None
                if i < len(args) and args[i] is not None and not inside(args[i], dir_fd):
                    raise PermissionError(f"the grader's sandbox refuses {event} on {args[i]}")
        elif event in _DENIED_EVENTS:
            raise PermissionError(f"the grader's sandbox refuses {event}")

    sys.addaudithook(hook)


# ---------------------------------------------------------------- the child's side

def set_limits(cpu_seconds=None, memory_bytes=None, file_bytes=None, processes=None):
    """Set this process's rlimits (inherited by all it starts); returns the names of those set.

    ``None`` leaves a limit off. ``processes`` (RLIMIT_NPROC) counts the processes of this user:
    inside bwrap that is the sandbox's own user, unless root started bwrap (root is exempt).
    """
    active = []
    try:
        import resource
    except ImportError:  # Windows
        return active
    for name, value in (("RLIMIT_CPU", cpu_seconds), ("RLIMIT_AS", memory_bytes), ("RLIMIT_FSIZE", file_bytes),
                        ("RLIMIT_CORE", 0), ("RLIMIT_NPROC", processes)):
        if value is not None and hasattr(resource, name):
            value = int(value)
            hard = value + 5 if name == "RLIMIT_CPU" else value  # SIGXCPU first, the kill 5 s later
            try:
                resource.setrlimit(getattr(resource, name), (value, hard))
                active.append(name[7:].lower())
            except (ValueError, OSError):
                pass  # a hard limit below ours: the stricter one stays
    return active


def lock_down(writable_dir, cpu_seconds=None, memory_bytes=None, file_bytes=None):
    """The ``--unsafe-no-sandbox`` child: rlimits, Landlock and an audit hook on the current process;
    returns :func:`protections`' text. Call it first thing, before any untrusted import."""
    active = set_limits(cpu_seconds, memory_bytes, file_bytes)
    abi = restrict_filesystem(writable_dir)
    install_audit_hook(writable_dir)
    return describe(active, abi)


def describe(rlimits, abi):
    parts = [f"limits on {', '.join(rlimits)}" if rlimits else "no resource limits (not POSIX)"]
    parts.append(f"Landlock ABI {abi} (files{', TCP' if abi >= 4 else ''}{', signals' if abi >= 6 else ''})"
                 if abi else "no Landlock (an audit hook only)")
    return "; ".join(parts)


def protections():
    """One line saying what :func:`lock_down` can enforce on this machine."""
    try:
        import resource  # noqa: F401
        rlimits = ["cpu", "as", "fsize", "core"]
    except ImportError:
        rlimits = []
    reaper = "a subreaper reaps escaped processes" if sys.platform.startswith("linux") else "process-group kill only"
    return f"{describe(rlimits, landlock_abi())}; {reaper}"


# ---------------------------------------------------------------- the parent's side

class Reaper:
    """While active (a ``with`` block), orphaned descendants are re-parented to this process
    (Linux), so that :meth:`kill_strays` can find and kill them."""

    def __enter__(self):
        self.subreaper, self.was_subreaper = False, ctypes.c_int(0)
        if sys.platform.startswith("linux"):
            _libc().prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(self.was_subreaper), 0, 0, 0)
            self.subreaper = _libc().prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        self.known = set(_children())  # ours before: never touched
        return self

    def __exit__(self, *exc):
        self.kill_strays()
        if self.subreaper:  # as it was before (a Reaper inside another leaves the outer one working)
            _libc().prctl(_PR_SET_CHILD_SUBREAPER, self.was_subreaper.value, 0, 0, 0)

    def kill_strays(self, rounds=50):
        """Kill and reap every child that appeared since the block began (a killed one's own
        children are handed to us next, hence the rounds). Returns how many were killed."""
        killed = 0
        for _ in range(rounds):
            strays = [pid for pid in _children() if pid not in self.known]
            if not strays:
                break
            for pid in strays:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed += 1
                except ProcessLookupError:
                    pass
            for pid in strays:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            time.sleep(0.02)
        return killed


def _children():
    """PIDs whose parent is this process (Linux: from /proc; elsewhere: none known)."""
    me, found = os.getpid(), []
    if not os.path.isdir("/proc"):
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()  # after "(name)": state, ppid, ...
        if len(fields) > 1 and int(fields[1]) == me:
            found.append(int(entry))
    return found


def folder_bytes(folder, stop_at):
    """Bytes of the files under ``folder``, counting stopped once past ``stop_at``."""
    total, pending = 0, [folder]
    while pending and total <= stop_at:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


#: Seconds between two looks at a watched folder: at the page cache's speed (about 1 GB/s) a flood writes
#: that many GB past the cap before it is seen (half a second let 383 MB reach a 256 MB cap, measured).
WATCH_INTERVAL = 0.05


def run_limited(command, cwd, env, timeout, log_path, log_cap, watch=None, preexec=None, reap=True):
    """Run ``command`` with its output in ``log_path``; stop it (and everything it started) at
    ``timeout`` seconds, when the log passes ``log_cap`` bytes, or when the files under
    ``watch = (folder, cap)`` pass ``cap`` bytes (looked at every :data:`WATCH_INTERVAL`, and once more at the end:
    a child writing as fast as the disk takes it gets a few tens of MB past the cap). ``preexec`` runs in
    the child before the command (it enters the part's cgroup). ``reap`` False skips the hunt for
    escaped processes (a :class:`Reaper`): bwrap's PID namespace already ends every one of them.

    Returns ``(status, seconds)``: status is "exited", "timeout", "output" or "disk", or "killed by
    SIGNAME" (e.g. SIGXCPU at the CPU limit, SIGXFSZ at the file-size limit; bwrap reports a
    signal as the exit status 128 + its number). Whatever ends this call (an exception, a
    SIGTERM turned into one), the child and all it started are killed first.
    """
    start = last_look = time.perf_counter()
    with open(log_path, "wb") as log, (Reaper() if reap else contextlib.nullcontext()) as reaper:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=preexec)  # noqa: PLW1509 (the grader has one thread)
        status = None
        try:
            while True:
                try:
                    proc.wait(timeout=0.05)  # returns as soon as the child ends
                    break
                except subprocess.TimeoutExpired:
                    pass
                now = time.perf_counter()
                if now - start > timeout:
                    status = "timeout"
                elif os.path.getsize(log_path) > log_cap:
                    status = "output"
                elif watch and now - last_look >= WATCH_INTERVAL:
                    last_look = now
                    status = "disk" if folder_bytes(watch[0], watch[1]) > watch[1] else None
                if status:
                    break
        finally:
            try:  # the child's whole session, even after a normal exit (it may have left helpers behind)
                os.killpg(proc.pid, signal.SIGKILL) if hasattr(os, "killpg") else proc.kill()
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
            if reap:
                reaper.kill_strays()
    if status is None and os.path.getsize(log_path) > log_cap:  # a last look: the child may have flooded
        status = "output"                                         # or filled its folder faster than the watch
    elif status is None and watch and folder_bytes(watch[0], watch[1]) > watch[1]:
        status = "disk"
    if status is None:
        code = proc.returncode
        signum = -code if code < 0 else code - 128 if code > 128 else None
        status = f"killed by {signal.Signals(signum).name}" if signum in signal.valid_signals() else "exited"
    return status, time.perf_counter() - start
