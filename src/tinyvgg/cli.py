"""What every command-line tool of tinyvgg shares: one clear sentence on a user's
mistake, a non-zero exit code, and no traceback."""
import argparse
import os
import re
import sys
import tempfile
import unicodedata
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
    try:  # the one sure test that the folder takes a new file (permissions, a read-only disk, /proc)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UsageError(f"{flag} {path}: cannot write in {folder} ({err.strerror}); choose another folder.") from None
    if not os.path.exists(path) or (given and force):
        return path
    if given:
        raise UsageError(f"{flag} {path} already exists; pass --force to replace it, or choose another name.")
    stem, ext = os.path.splitext(path)
    number = 2
    while os.path.exists(f"{stem}-{number}{ext}"):
        number += 1
    return f"{stem}-{number}{ext}"


def read_class_names(path):
    """The class names of a text file, one a line (None for no file); one sentence if it cannot be read
    (``--class-names`` of the import commands)."""
    if not path:
        return None
    if os.path.exists(path) and not os.path.isfile(path):
        raise UsageError(f"--class-names {path} is not a regular file.")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as err:
        raise UsageError(f"cannot read --class-names {path}: {err.strerror}.") from None
    except UnicodeDecodeError as err:
        raise UsageError(f"--class-names {path} is not UTF-8 text (byte {err.start}); save it as UTF-8.") from None


_HIDDEN = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")  # control, format, surrogate, private, unassigned, separators


def shown(text):
    """``text`` with every control and format character escaped (``\\n``, ``\\x1b``, ``\\u202e``...), so that text
    from a file (a checkpoint's class names, a student's exception) can neither clear the screen, set the window's
    title, move the cursor nor forge a line. The result holds none, so showing it again changes nothing."""
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _HIDDEN else ch
                   for ch in str(text))


def summary(doc):
    """A module docstring's first line for ``--help``, without its reStructuredText ````code```` marks."""
    return re.sub(r"``(.*?)``", r"\1", doc.strip().split("\n")[0])


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` that shows a flag's default once: added only where the help text does not say it already,
    and never for a flag that is off or unset by default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


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
