"""The grader's scratch folders: made private, removed whatever a submission left in them.

A submission's code may leave a folder tree 1100 levels deep, folders without permissions,
files with odd names: :func:`remove_tree` removes any of it without recursion (one open
folder at a time, climbing back through ``..`` as ``rm -rf`` does), so neither Python's
recursion limit nor the limit on open files stops it. The part's processes are killed by
then, but a sandbox's PID namespace ends a moment after bwrap itself: a dying writer can still
create a file while its folder is emptied (seen once in CI: "Directory not empty: 'answer'").
So a removal that meets a folder refilled behind it starts again, for a few seconds at most.
"""
import errno
import os
import re
import stat
import tempfile
import time

#: How long :func:`remove_tree` keeps emptying a folder that a dying process refills.
REFILL_PATIENCE_S = 5.0

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


PREFIX = "tinyvgg-grade-"


def make_scratch():
    """A new private folder for one submission's parts (mode 0700), named after this process, so that a
    later grader can tell a folder whose grader was killed (:func:`remove_leftovers`)."""
    return tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-")


def process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_leftovers(folder=None):
    """Remove the scratch folders of graders that are gone (a SIGKILLed grader cannot clean up after itself);
    returns how many. A folder of a grader still running is left alone."""
    folder = folder or tempfile.gettempdir()
    removed = 0
    for name in os.listdir(folder):
        match = re.fullmatch(re.escape(PREFIX) + r"(\d+)-\w+", name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            try:
                remove_tree(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass  # another user's, or busy: the next run tries again
    return removed


def _open_dir(name, dir_fd=None):
    """Open a folder to empty it; one the student made unreadable or read-only gets its owner's modes back
    (its files are ours: the sandbox's user is the grader's own, seen from outside)."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, stat.S_IRWXU, dir_fd=dir_fd)
        fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        os.fchmod(fd, stat.S_IRWXU)  # write permission, to remove what is in it
    except OSError:
        pass
    return fd


def remove_tree(path):
    """Remove the folder ``path`` and all in it, at any depth; links are removed, never followed.

    A folder found refilled when it is removed (ENOTEMPTY: a sandboxed process still dying wrote
    into it) is emptied again, until :data:`REFILL_PATIENCE_S` has passed.
    """
    deadline = time.monotonic() + REFILL_PATIENCE_S
    while True:
        try:
            return _remove_tree_once(path)
        except OSError as err:
            if err.errno != errno.ENOTEMPTY or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _remove_tree_once(path):
    if not os.path.lexists(path):
        return
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    fd, names = _open_dir(path), []   # names: the folders from ``path`` down to the open one
    try:
        while True:
            below = None
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        below = entry.name
                        break
                    os.unlink(entry.name, dir_fd=fd)
            if below is not None:  # go down into it; only one folder is ever open
                child = _open_dir(below, dir_fd=fd)
                os.close(fd)
                fd = child
                names.append(below)
                continue
            if not names:
                break
            parent = os.open("..", _DIR_FLAGS, dir_fd=fd)  # back up one level and remove the emptied folder
            os.close(fd)
            fd = parent
            os.rmdir(names.pop(), dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(path)
