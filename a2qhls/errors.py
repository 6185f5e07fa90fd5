"""The one error type users see: a one-line message, no traceback (unless --debug)."""


class A2QError(Exception):
    """A problem with the user's input: what is wrong, where, and what is supported."""
