"""A control group per part: one cap on the memory and the processes of a whole sandbox.

A per-process limit (``RLIMIT_AS``) lets three helpers hold three times the limit, and
``RLIMIT_NPROC`` does not count the processes of a sandbox that root started (they are
root's, outside). A cgroup counts everything in it. The grader makes one inside its own
cgroup where the machine lets it (cgroup v1's ``memory`` and ``pids`` hierarchies, or
cgroup v2 where its cgroup may have children with those controllers), moves the sandbox
into it before bwrap runs (:meth:`PartCgroup.enter`, the child's first act) and removes
it afterwards. :func:`available` says whether this works here.
"""
import functools
import os
import re
import signal
import time

ROOT = "/sys/fs/cgroup"


def _own_path(controller):
    """This process's cgroup path in the hierarchy of ``controller`` ("" for v2's unified one)."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controllers.split(",") == [controller] or (controller == "" and controllers == ""):
                return path
    return None


def _folders(name):
    """{controller file prefix: folder} of a new cgroup called ``name``, for v1 or v2."""
    if os.path.isfile(os.path.join(ROOT, "cgroup.controllers")):  # v2: one tree
        own = os.path.join(ROOT, (_own_path("") or "/").lstrip("/"))
        with open(os.path.join(own, "cgroup.subtree_control")) as f:
            enabled = f.read().split()
        if not {"memory", "pids"} <= set(enabled):
            raise OSError("the memory and pids controllers are not enabled for this cgroup's children")
        folder = os.path.join(own, name)
        return {"memory": folder, "pids": folder}
    folders = {}
    for controller in ("memory", "pids"):
        own = _own_path(controller)
        if own is None or not os.path.isdir(os.path.join(ROOT, controller)):
            raise OSError(f"no cgroup v1 {controller} hierarchy")
        folders[controller] = os.path.join(ROOT, controller, own.lstrip("/"), name)
    return folders


class PartCgroup:
    """A cgroup capping ``memory_bytes`` (no swap counted apart) and ``max_processes``."""

    def __init__(self, name, memory_bytes, max_processes):
        self.folders = _folders(name)
        self.v2 = self.folders["memory"] == self.folders["pids"]
        for folder in set(self.folders.values()):
            os.mkdir(folder)
        try:
            limits = ({"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": max_processes} if self.v2 else
                      {"memory.limit_in_bytes": memory_bytes, "pids.max": max_processes})
            for file, value in limits.items():
                folder = self.folders["pids" if file.startswith("pids") else "memory"]
                if file == "memory.swap.max" and not os.path.exists(os.path.join(folder, file)):
                    continue
                with open(os.path.join(folder, file), "w") as f:
                    f.write(str(int(value)))
        except OSError:
            self.remove()
            raise

    def enter(self):
        """Move the calling process into the cgroup (called in the child, before it runs bwrap)."""
        for folder in set(self.folders.values()):
            with open(os.path.join(folder, "cgroup.procs"), "w") as f:
                f.write("0")   # 0: the writing process

    def remove(self, wait=2.0):
        """Kill whatever is still in the cgroup (a sandbox's first process may still be dying), then remove it."""
        for folder in set(self.folders.values()):
            for _ in range(int(wait / 0.02)):
                try:
                    os.rmdir(folder)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: processes left
                    for pid in self.processes(folder):
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                    time.sleep(0.02)

    @staticmethod
    def processes(folder):
        try:
            with open(os.path.join(folder, "cgroup.procs")) as f:
                return [int(line) for line in f if line.strip()]
        except OSError:
            return []


def remove_leftovers(alive):
    """Remove the part cgroups (``tinyvgg-<pid>-...``) of graders that are gone, killing what is left in them;
    ``alive(pid)`` says whether a grader still runs. Returns how many were removed."""
    try:
        parents = {os.path.dirname(folder) for folder in _folders("probe").values()}
    except (OSError, ValueError):
        return 0
    removed = 0
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            match = re.fullmatch(r"tinyvgg-(\d+)-.+", name)
            if match and int(match.group(1)) != os.getpid() and not alive(int(match.group(1))):
                leftover = object.__new__(PartCgroup)
                leftover.folders = {"memory": os.path.join(parent, name), "pids": os.path.join(parent, name)}
                leftover.remove()
                removed += not os.path.exists(os.path.join(parent, name))
    return removed


@functools.lru_cache(maxsize=1)
def available():
    """None when the grader can make a cgroup per part here, else why not."""
    if not os.path.isdir(ROOT) or not os.path.isfile("/proc/self/cgroup"):
        return "no cgroups (not Linux)"
    try:
        PartCgroup(f"tinyvgg-probe-{os.getpid()}", 1 << 30, 64).remove()
    except (OSError, ValueError) as err:
        return f"no cgroup for the grader here ({err.strerror or err if isinstance(err, OSError) else err})"
    return None
