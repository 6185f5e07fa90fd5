"""The one error type users see: a one-line message, no traceback (unless --debug)."""
import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]")


def one_line(text: str) -> str:
    """``text`` with control characters (newlines, tabs, escapes) written as ``\\n``, ``\\x1b``, ...:
    names from a model file or an argument cannot break the one-line error or drive a terminal."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class A2QError(Exception):
    """A problem with the user's input: what is wrong, where, and what is supported.

    ``str(error)`` is always one line (see :func:`one_line`)."""

    def __str__(self) -> str:
        return one_line(super().__str__())


class A2QWarning(UserWarning):
    """Something that builds but deserves attention (e.g. an accumulator narrower than safe)."""
