"""Errors a user can cause. The CLI prints them as one line and exits with `exit_code`."""


class UserError(Exception):
    """A problem with the user's input (path, flag value, file): one line, exit 2, no traceback."""

    exit_code = 2
