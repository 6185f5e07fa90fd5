"""The one error type users see: a one-line message, no traceback (unless --debug)."""


class A2QError(Exception):
    """A problem with the user's input: what is wrong, where, and what is supported."""


class A2QWarning(UserWarning):
    """Something that builds but deserves attention (e.g. an accumulator narrower than safe)."""
