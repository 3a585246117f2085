"""Run folders: one folder per training run, and one run per folder.

A run writes everything into its folder (``best.npz``, ``last.npz``, the history,
the plots). :class:`RunFolder` makes sure that folder belongs to that run alone:

- a new run starts only in a folder that is missing or empty, and ``--resume``
  continues in the checkpoint's own folder or in a new one, never over another run;
- while a run trains it holds a lock on ``.lock`` in the folder (``flock`` on
  POSIX, ``msvcrt.locking`` on Windows): a second run in the same folder is
  refused, and the operating system drops the lock when the process ends,
  however it ends, so a crashed run never leaves the folder locked;
- holding the lock, it removes the ``.tmp-*`` files that a save killed halfway
  left behind (no other process can be writing them);
- the folder is made, and the lock taken, before any long work starts, so a
  folder that cannot be written is reported at once, not after an epoch; a run
  that fails before it trained removes the folder again if it made it.

>>> import tempfile, os
>>> with RunFolder(os.path.join(tempfile.mkdtemp(), "run")) as run:
...     sorted(os.listdir(run.path))
['.lock']
"""
import os

from .errors import RunFolderError

LOCK_NAME = ".lock"
TEMP_PREFIX = ".tmp-"  # what checkpoint.atomic_write names its temporary files


def holds_a_run(path):
    """True when ``path`` is a folder with files in it (a lock file alone does not count)."""
    return os.path.isdir(path) and any(name != LOCK_NAME for name in os.listdir(path))


class RunFolder:
    """The folder of one run, locked while the ``with`` block runs (see the module docstring)."""

    def __init__(self, path):
        self.path = path
        self._fd = None
        self._made = False

    def __enter__(self):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise RunFolderError(f"the run folder {self.path} is a file, not a folder; choose another --out.")
        self._made = not os.path.exists(self.path)
        try:
            os.makedirs(self.path, exist_ok=True)
            self._fd = os.open(os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            self._remove_if_made()
            raise RunFolderError(f"cannot write the run folder {self.path} ({err.strerror}); choose a folder you "
                                 "can write with --out.") from None
        if not _try_lock(self._fd):
            os.close(self._fd)
            self._fd = None
            raise RunFolderError(f"another training is writing to {self.path} right now; wait for it to finish, "
                                 "or choose another --out.")
        os.ftruncate(self._fd, 0)
        os.write(self._fd, f"{os.getpid()}\n".encode())
        self.remove_stale_temporaries()
        return self

    def __exit__(self, exc_type, exc, tb):
        os.close(self._fd)  # closing drops the lock; the file stays (removing it would let two runs race)
        self._fd = None
        if exc_type is not None:
            self._remove_if_made()

    def _remove_if_made(self):
        """Remove the folder again if this run made it and wrote nothing in it (a run that failed early)."""
        if self._made and os.path.isdir(self.path) and not holds_a_run(self.path):
            try:
                if os.path.exists(os.path.join(self.path, LOCK_NAME)):
                    os.remove(os.path.join(self.path, LOCK_NAME))
                os.rmdir(self.path)
            except OSError:
                pass

    def remove_stale_temporaries(self):
        """Remove what saves killed halfway left (safe: we hold the lock, no save is running)."""
        removed = []
        for name in os.listdir(self.path):
            if name.startswith(TEMP_PREFIX):
                try:
                    os.remove(os.path.join(self.path, name))
                    removed.append(name)
                except OSError:
                    pass
        return removed


def _try_lock(fd):
    """Take an exclusive lock on ``fd`` without waiting; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
