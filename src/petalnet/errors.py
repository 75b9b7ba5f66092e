"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`.

    exit 2  UserError      a problem with the input: path, flag value, file, photo; nothing was written
    exit 3  StorageError   a file could not be written (disk full, read-only folder, no permission);
                           files written before are intact
    exit 4  PeerStopped    (ranklogs.py) another process of a torchrun run died or stopped first
"""


class UserError(Exception):
    """A problem with the user's input (path, flag value, file): one line, exit 2, no traceback."""

    exit_code = 2


class StorageError(UserError):
    """Writing failed (disk full, read-only, permissions): one line, exit 3, earlier files intact."""

    exit_code = 3


def describe_os_error(err):
    """'No space left on device: /path' from an OSError."""
    reason = err.strerror or type(err).__name__
    name = err.filename if err.filename is not None else ""
    return f"{reason}: {name}" if name else reason


def one_line(err, limit=None):
    """An exception's message on one line (whitespace runs become one space), cut to `limit` characters."""
    text = " ".join(str(err).split())
    return text[:limit] if limit else text
