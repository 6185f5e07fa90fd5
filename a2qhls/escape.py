"""Escaping of untrusted text (names, metadata from a model file) for each generated language.

Model files are untrusted input: a graph, node or tensor name may hold newlines, carriage
returns, NUL, a backslash before a newline, ``*/``, ``$()``, backticks, Tcl ``[ ]``, ``;``,
thousands of characters. No such string reaches a generated file except through exactly one
function of this module, chosen by the target language:

=================  =========================================================================
``cpp_comment``    text inside a C++ ``//`` comment (one line)
``sh_comment``     text inside a shell ``#`` comment (one line)
``tcl_comment``    text inside a Tcl ``#`` comment (one line)
``tcl_word``       one Tcl word (a value)
``sh_word``        one shell word (a value)
``json_string``    one JSON string
``cpp_ident``      a C++ identifier (see :class:`Identifiers` for collision-free sets)
``display``        one line of terminal output (messages, tables)
=================  =========================================================================

The comment functions keep printable ASCII that is inert in that language and write every
other character as ``%XX`` per UTF-8 byte (``%`` itself as ``%25``), so the result is one line
of printable ASCII: no line break, no line splice (``\\`` + newline, the trigraph ``??/``), no
comment terminator, no substitution. Text longer than ``limit`` characters is cut with a note of
how much was left out. Ordinary names (letters, digits, ``_ . / : - +``, spaces) come out
unchanged, so generated files of ordinary models do not change.

Identifiers never come from names: units are ``layer0``, ``pool1``, ... and go through
:class:`Identifiers`, which checks them, avoids C++ keywords and resolves collisions.
"""
from __future__ import annotations

import json
import re
import shlex

__all__ = [
    "cpp_comment", "sh_comment", "tcl_comment", "tcl_word", "sh_word", "json_string", "cpp_ident",
    "display", "Identifiers", "FILTERS", "COMMENT_LIMIT",
]

COMMENT_LIMIT = 160  # characters of a name kept in a comment

_PRINTABLE = frozenset(chr(c) for c in range(0x20, 0x7F))
# characters written as %XX although printable: the escape character itself, and what could end,
# splice or extend a comment, or substitute, in the target language
_CPP_UNSAFE = frozenset("%\\?")  # '\' + newline splices lines; '??/' is a trigraph for '\'
_SH_UNSAFE = frozenset("%\\`$")
_TCL_UNSAFE = frozenset("%\\[]{}$\";")


def _pct(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))


def _encode(s: str, unsafe: frozenset, limit: int | None) -> str:
    s = str(s)
    cut = 0
    if limit is not None and len(s) > limit:
        cut = len(s) - limit
        s = s[:limit]
    out = "".join(ch if ch in _PRINTABLE and ch not in unsafe else _pct(ch) for ch in s)
    # block comments cannot open or close inside a line comment either
    out = out.replace("*/", "*%2F").replace("/*", "/%2A")
    if cut:
        out += f"... ({cut} more characters)"
    return out


def cpp_comment(s, limit: int | None = COMMENT_LIMIT) -> str:
    """``s`` as text inside a C++ ``//`` comment: one line of printable ASCII without ``\\``,
    ``?`` (trigraphs), ``/*``, ``*/``; other characters as ``%XX`` (UTF-8 bytes)."""
    return _encode(s, _CPP_UNSAFE, limit)


def sh_comment(s, limit: int | None = COMMENT_LIMIT) -> str:
    """``s`` as text inside a shell ``#`` comment: one line of printable ASCII."""
    return _encode(s, _SH_UNSAFE, limit)


def tcl_comment(s, limit: int | None = COMMENT_LIMIT) -> str:
    """``s`` as text inside a Tcl ``#`` comment: one line of printable ASCII without
    ``\\ [ ] { } $ " ;`` (a Tcl comment continues after a backslash-newline and counts braces)."""
    return _encode(s, _TCL_UNSAFE, limit)


_TCL_BARE = re.compile(r"[A-Za-z0-9_.:/+-]+")


def tcl_word(s) -> str:
    """``s`` as one Tcl word with no substitution: ``{s}`` when ``s`` is plain, else every
    character that Tcl interprets backslash-escaped (control characters as ``\\xHH``)."""
    s = str(s)
    if _TCL_BARE.fullmatch(s):
        return "{" + s + "}"
    out = []
    for ch in s:
        if ch in _PRINTABLE and ch.isalnum():
            out.append(ch)
        elif ch in _PRINTABLE:
            out.append("\\" + ch)
        else:
            # beyond the BMP: a UTF-16 surrogate pair, which Tcl 8.6 (UCS-2 inside) joins back
            units = ch.encode("utf-16-be", "surrogatepass")
            out.append("".join(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}" for i in range(0, len(units), 2)))
    return "".join(out) if out else "{}"


def sh_word(s) -> str:
    """``s`` as one shell word with no expansion (single-quoted where needed)."""
    return shlex.quote(str(s))


def json_string(s) -> str:
    """``s`` as one JSON string (ASCII, every control character escaped)."""
    return json.dumps(str(s), ensure_ascii=True)


def display(s, limit: int | None = 200) -> str:
    """``s`` for one line of terminal output: control characters (newline, CR, ESC, ...) and
    backslashes written as Python escapes, so a name cannot forge lines or terminal commands."""
    s = str(s)
    cut = 0
    if limit is not None and len(s) > limit:
        cut, s = len(s) - limit, s[:limit]
    out = "".join(ch if ch.isprintable() and ch != "\\" else repr(ch)[1:-1] for ch in s)
    return out + (f"... ({cut} more characters)" if cut else "")


CPP_KEYWORDS = frozenset("""
alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t
class compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield
decltype default delete do double dynamic_cast else enum explicit export extern false float for friend
goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private
protected public register reinterpret_cast requires return short signed sizeof static static_assert
static_cast struct switch template this thread_local throw true try typedef typeid typename union
unsigned using virtual void volatile wchar_t while xor xor_eq main
""".split())

_IDENT_MAX = 48


def cpp_ident(s) -> str:
    """A valid C++ identifier derived from ``s``: characters outside ``[A-Za-z0-9_]`` become
    ``_``, a leading digit gets ``n``, keywords and reserved names (``_X...``, ``__``) get a
    prefix, at most 48 characters. Not unique: use :class:`Identifiers` for a set."""
    t = re.sub(r"[^A-Za-z0-9_]", "_", str(s))[:_IDENT_MAX] or "n"
    if t[0].isdigit():
        t = "n" + t
    if t in CPP_KEYWORDS or t.startswith("_") or "__" in t:
        t = "n_" + re.sub(r"_+", "_", t.lstrip("_"))
        t = t.rstrip("_") or "n"
    return t


class Identifiers:
    """A set of C++ identifiers without collisions: :meth:`claim` returns ``cpp_ident(base)``,
    or that with ``_2``, ``_3``, ... appended when it is taken (``reserved`` are taken from the start)."""

    def __init__(self, reserved=()):
        self._taken = set(reserved)

    def claim(self, base) -> str:
        ident = cpp_ident(base)
        cand, k = ident, 2
        while cand in self._taken or cand in CPP_KEYWORDS:
            cand = f"{ident}_{k}"
            k += 1
        self._taken.add(cand)
        return cand


# the Jinja filters, one per target language (registered by codegen's template environment)
FILTERS = {
    "cpp_comment": cpp_comment,
    "sh_comment": sh_comment,
    "tcl_comment": tcl_comment,
    "tcl_word": tcl_word,
    "sh_word": sh_word,
    "json_string": json_string,
    "cpp_ident": cpp_ident,
}
