"""The errors a user can cause, each with a message that names the problem and the fix.

Every user-facing error derives from :class:`TinyVGGError`, so a command-line tool
catches that one class and prints its sentence (``cli.run``), while a real bug
still shows its traceback. Each also derives from the built-in exception it
refines (``ValueError`` or ``RuntimeError``), so ``except ValueError`` keeps working.
This module imports nothing: every other module may import it.
"""


class TinyVGGError(Exception):
    """Base class of the errors a user can cause and fix; the message says how."""


class UsageError(TinyVGGError, ValueError):
    """A command-line value that cannot work; the message says which and what to do."""


class DataError(TinyVGGError, ValueError):
    """A problem with the user's data; the message names it and the fix."""


class CheckpointError(TinyVGGError, ValueError):
    """A checkpoint file that cannot be used; the message says why and what to do."""


class BackendUnavailable(TinyVGGError, RuntimeError):
    """The requested array library (CuPy) or a GPU is not available; the message says how to fix it."""


class TrainingDiverged(TinyVGGError, RuntimeError):
    """The loss exploded or became NaN; the message says where and what to try."""


class RunFolderError(TinyVGGError, ValueError):
    """The run folder cannot be used; the message says why and what to do."""
