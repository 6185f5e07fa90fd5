"""Untrusted files in, one project folder out: the checks every command shares.

* :func:`regular_file`: an input path must name a readable regular file (a FIFO, a device or a
  folder would block or mislead the reader).
* :func:`load_json_file` / :func:`parse_json`: JSON with a size and nesting limit, no NaN or
  Infinity, errors as one line.
* :func:`check_out_dir` and :func:`write_project`: the one place that decides where ``build``
  may write and what ``--force`` may replace (README, "Build").
"""
from __future__ import annotations

import json
import math
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from .errors import A2QError
from .limits import MAX_JSON_BYTES, MAX_JSON_DEPTH

PROJECT_MARKER = "a2qhls.json"  # what makes a folder an a2qhls project (the build summary)
# the top-level entries a build writes; --force replaces a project holding nothing else
PROJECT_ENTRIES = frozenset({"a2qhls.json", "model.onnx", "build_csim.sh", "vitis_hls.tcl", "firmware", "tb", "tb_data", "steps"})

__all__ = ["regular_file", "parse_json", "load_json_file", "check_out_dir", "write_project", "PROJECT_MARKER"]


def regular_file(path, what: str = "file") -> str:
    """``path`` as a string when it is an existing, readable regular file; else :class:`A2QError`."""
    p = os.fspath(path)
    if p == "":
        raise A2QError(f"{what}: empty path")
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise A2QError(f"{p}: no such file") from None
    except (OSError, ValueError) as e:
        raise A2QError(f"{p}: cannot read ({_reason(e)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise A2QError(f"{p}: is a directory, expected a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise A2QError(f"{p}: not a regular file (a FIFO, socket or device); expected a {what}")
    if not os.access(p, os.R_OK):
        raise A2QError(f"{p}: permission denied")
    return p


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _depth(v, limit: int) -> int:
    """Nesting depth of a parsed JSON value, iteratively (stops past ``limit``)."""
    stack, deepest = [(v, 1)], 0
    while stack:
        x, d = stack.pop()
        if isinstance(x, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((c, d + 1) for c in (x.values() if isinstance(x, dict) else x))
    return deepest


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text, what: str, max_bytes: int = MAX_JSON_BYTES):
    """Parse JSON ``text`` (str or bytes) from an untrusted source named ``what``: at most
    ``max_bytes``, nested at most ``MAX_JSON_DEPTH`` deep, no NaN/Infinity. Raises :class:`A2QError`."""
    if len(text) > max_bytes:
        raise A2QError(f"{what}: {len(text)} bytes of JSON, above the limit of {max_bytes}")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise A2QError(f"{what}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    # cheap bound on nesting before the recursive parser sees it
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _bracket_depth(text) > MAX_JSON_DEPTH:
        raise A2QError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise A2QError(f"{what}: not valid JSON ({msg})") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise A2QError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _bracket_depth(text: str) -> int:
    """Upper bound on the nesting of ``text`` (brackets inside strings counted too)."""
    d = deepest = 0
    for ch in text:
        if ch in "[{":
            d += 1
            deepest = max(deepest, d)
        elif ch in "]}":
            d -= 1
    return deepest


def load_json_file(path, what: str = "JSON file"):
    """Read and parse a JSON file (see :func:`parse_json`); errors name the file."""
    p = regular_file(path, what)
    size = os.path.getsize(p)
    if size > MAX_JSON_BYTES:
        raise A2QError(f"{p}: {size} bytes, above the limit of {MAX_JSON_BYTES} for a {what}")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_JSON_BYTES + 1)
    except OSError as e:
        raise A2QError(f"{p}: cannot read ({_reason(e)})") from None
    return parse_json(raw, p)


def finite_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ----------------------------------------------------------------------------- output folder


def _is_project(d: Path) -> bool:
    marker = d / PROJECT_MARKER
    if not marker.is_file() or marker.is_symlink():
        return False
    try:
        data = parse_json(marker.read_bytes(), str(marker))
    except (A2QError, OSError):
        return False
    return isinstance(data, dict) and data.get("tool") == "a2qhls"


def _protected() -> list:
    """Folders --out may never name: ``/``, the home folder, the current folder and its ancestors."""
    out = [Path("/")]
    home = os.path.expanduser("~")
    if home and home != "~":
        out.append(Path(home).resolve())
    cwd = Path.cwd().resolve()
    out.extend([cwd, *cwd.parents])
    return out


def check_out_dir(out, *, force: bool, inputs: Iterable = ()) -> Path:
    """Decide whether ``build`` may write its project to ``out``; returns the resolved path.

    ``out`` may be missing (it is created, with its parents), an empty folder, or, with ``force``,
    a folder holding an a2qhls project (its ``a2qhls.json``) and nothing but what a build writes.
    Refused, with one line saying why: an empty path; ``/``, the home folder, the current folder
    or any of its ancestors; a folder holding one of ``inputs`` (the model, its external data, the
    folding file); a symbolic link; a path under a file or a special file system (``/proc``,
    ``/sys``, ``/dev``); a folder whose parent cannot be written.
    """
    raw = os.fspath(out)
    if raw.strip() == "":
        raise A2QError("--out: empty path; name the project folder to write")
    if "\0" in raw:
        raise A2QError("--out: the path contains a NUL character")
    p = Path(raw)
    if p.is_symlink():
        raise A2QError(f"--out {raw}: is a symbolic link; name a real folder")
    try:
        res = p.resolve()
    except (OSError, RuntimeError) as e:
        raise A2QError(f"--out {raw}: cannot resolve the path ({_reason(e)})") from None
    if res == Path(res.anchor):
        raise A2QError(f"--out {raw}: is the root folder; name a new project folder")
    for q in _protected():
        if res == q:
            why = "the home folder" if str(q) == os.path.expanduser("~") else (
                "the current folder" if q == Path.cwd().resolve() else "an ancestor of the current folder")
            raise A2QError(f"--out {raw}: is {why}; name a new project folder")
    for special in ("/proc", "/sys", "/dev"):
        if res == Path(special) or Path(special) in res.parents:
            raise A2QError(f"--out {raw}: is under {special}, a special file system; name a project folder elsewhere")
    for f in inputs:
        if f is None:
            continue
        fr = Path(os.fspath(f)).resolve()
        if res in fr.parents:
            raise A2QError(f"--out {raw}: holds the input file {f}; write the project to another folder")
    # the nearest existing ancestor must be a writable folder
    anc = res
    while not anc.exists() and anc != anc.parent:
        if anc.is_symlink():  # a dangling link
            raise A2QError(f"--out {raw}: {anc} is a dangling symbolic link")
        anc = anc.parent
    if anc != res or not res.exists():
        if not anc.is_dir():
            raise A2QError(f"--out {raw}: {anc} is a file, not a folder")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise A2QError(f"--out {raw}: cannot create a folder in {anc} (permission denied)")
        return res
    if not res.is_dir():
        raise A2QError(f"--out {raw}: exists and is not a folder")
    if not os.access(res.parent, os.W_OK | os.X_OK):
        raise A2QError(f"--out {raw}: cannot replace it, its parent {res.parent} is not writable")
    try:
        entries = sorted(e.name for e in os.scandir(res))
    except OSError as e:
        raise A2QError(f"--out {raw}: cannot list the folder ({_reason(e)})") from None
    if not entries:
        return res
    if not force:
        raise A2QError(f"--out {raw}: folder is not empty (use --force to replace an a2qhls project)")
    if not _is_project(res):
        raise A2QError(f"--out {raw}: --force replaces only an a2qhls project (a folder with the {PROJECT_MARKER} build writes) or an empty folder; this folder is neither")
    foreign = [e for e in entries if e not in PROJECT_ENTRIES]
    if foreign:
        raise A2QError(f"--out {raw}: --force refuses to delete '{foreign[0]}', which a2qhls did not write; move it out first")
    return res


def write_project(out: Path, files: dict, copy: Callable[[Path], None], executable: Iterable[str] = ()) -> None:
    """Write ``files`` (relative path -> text) plus what ``copy(tmp)`` puts there into a temporary
    folder beside ``out`` (a path :func:`check_out_dir` accepted), then rename it into place,
    replacing an existing ``out``. On any failure nothing is left behind: not the temporary
    folder, not the parents created for ``out``. OS errors become one-line :class:`A2QError`."""
    created = []
    parent = out.parent
    try:
        missing = []
        a = parent
        while not a.exists():
            missing.append(a)
            a = a.parent
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        tmp = Path(tempfile.mkdtemp(prefix=".a2qhls-new-", dir=parent))
    except OSError as e:
        _remove_created(created)
        raise A2QError(f"--out {out}: cannot create the project folder ({_reason(e)})") from None
    try:
        copy(tmp)
        for rel, text in files.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "w", newline="\n") as f:
                f.write(text)
        for rel in executable:
            os.chmod(tmp / rel, 0o755)
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=".a2qhls-old-", dir=parent))
            os.rename(out, old / "x")
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old / "x", out)  # put the old project back
                shutil.rmtree(old, ignore_errors=True)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        raise A2QError(f"--out {out}: cannot write the project ({_reason(e)})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        raise


def _remove_created(created: list) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:
            pass
