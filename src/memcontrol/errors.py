"""Errors that the user can fix. The CLI prints them as one line and exits with status 2."""


class UserError(Exception):
    """Bad input: a missing file, a malformed config, an unknown option value.

    The message must name the file, field or option and say what was expected.
    """
