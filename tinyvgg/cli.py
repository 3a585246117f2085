"""What every command-line tool of tinyvgg shares: one clear sentence on a user's
mistake, a non-zero exit code, and no traceback."""
import sys
import warnings

from .backend import BackendUnavailable
from .checkpoint import CheckpointError
from .data import DataError


class UsageError(ValueError):
    """A command-line value that cannot work; the message says which and what to do."""


USER_ERRORS = (UsageError, DataError, CheckpointError, BackendUnavailable)


def _short_warning(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def run(main, argv=None):
    """Call ``main(argv)``; turn a user's mistake into ``error: ...`` and exit code 1."""
    warnings.formatwarning = _short_warning
    try:
        code = main(argv)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
