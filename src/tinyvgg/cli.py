"""What every command-line tool of tinyvgg shares: one clear sentence on a user's
mistake, a non-zero exit code, and no traceback."""
import os
import sys
import warnings

from .errors import TinyVGGError, UsageError


def output_path(path, flag, force=False, default=None):
    """The file a command will write: checked before any work, and never an existing file unasked.

    ``path`` None means the user gave no name: ``default`` is used, and if that file exists
    already, the first free ``name-2.ext``, ``name-3.ext``, ... instead (the caller prints it).
    A name the user gave is replaced only with ``force``. The folder must exist.
    """
    given = path is not None
    path = path if given else default
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: the folder {folder} does not exist; create it first.")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} {path} exists and is not a regular file; choose another name.")
    if not os.path.exists(path) or (given and force):
        return path
    if given:
        raise UsageError(f"{flag} {path} already exists; pass --force to replace it, or choose another name.")
    stem, ext = os.path.splitext(path)
    number = 2
    while os.path.exists(f"{stem}-{number}{ext}"):
        number += 1
    return f"{stem}-{number}{ext}"


def _short_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def run(main, argv=None):
    """Call ``main(argv)``; turn a user's mistake (a :class:`~tinyvgg.errors.TinyVGGError`) into
    ``error: ...`` and exit code 1."""
    warnings.formatwarning = _short_warning
    try:
        code = main(argv)
    except TinyVGGError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
