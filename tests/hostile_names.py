"""Hostile names for model files: strings that try to inject C++, shell or Tcl into generated files.

``named_cases(canary)`` lists the named attacks (each runs ``touch <canary>`` or ``puts`` if it
ever gets interpreted); ``rename_all(proto, names)`` gives every node and tensor of an ONNX
model a name drawn from a list (tensor names made unique, node names may repeat), the graph
the first one, and adds hostile metadata.
"""
from __future__ import annotations

import itertools
import json

import onnx

from a2qhls.metadata import LAYERS_KEY

# characters that mean something to C++, the preprocessor, bash or Tcl, line breaks, escapes
HOSTILE_ALPHABET = (
    "\n\r\x00\t\x0b\x0c\x1b\\/*#$()`[]{};'\"?%&|<>!~ "
    "abcAZ_09.:-+=" "\u00e9\u00fc\u5c42\u202e\u2028\u0085\U0001F600"
)


def named_cases(canary: str) -> dict:
    """``{case: name}``: one name per attack of issue 9, section 1 (``canary``: an absolute path
    that exists only if some injected command ran)."""
    touch = f"touch {canary}"
    return {
        "newline": f"digits\n{touch}\n",
        "carriage_return": f"cr\r{touch}\r",
        "nul": f"nul\x00{touch}\x00",
        "backslash_newline": f"splice \\\n{touch}; int injected_cpp = 1;",
        "trigraph_splice": f"tri ??/\n{touch}",
        "comment_close": f"*/ int injected_cpp = 1; /* {touch}",
        "hash": f"#include </etc/passwd>\n#define layer0 oops\n# {touch}",
        "command_substitution": f"$({touch})",
        "backticks": f"`{touch}`",
        "tcl_brackets": f"[exec {touch}]",
        "semicolon": f"x; {touch}; y",
        "tcl_puts": f"\nputs INJECTED\n{{[exec {touch}]}}",
        "tcl_brace_backslash": "}\\\n" + f"exec {touch}",
        "quotes": f"'\"; {touch}; echo \"'",
        "non_ascii": "Schicht_\u00fc\u00e9_\u5c42_\u202e\u2028\u0085_\U0001F600",
        "ansi_escape": "\x1b[2J\x1b[31mred\x1b[0m",
        "percent": "%0A%25%",
        "long_10000": ("L" * 4999) + f"\n{touch}\n" + ("M" * (5000 - len(touch) - 2)),
        "cpp_keyword_int": "int",
        "cpp_keyword_class": "class",
        "cpp_keyword_return": "return",
        "cpp_main": "main",
        "generated_name_layer0": "layer0",
        "generated_name_top": "a2q_top",
        "reserved_identifier": "__asm__",
        "empty": "",
        "trailing_backslash": "name\\",
    }


def rename_all(proto: onnx.ModelProto, names: list, graph_name: str | None = None) -> onnx.ModelProto:
    """A copy of ``proto`` whose nodes and tensors are named from ``names`` (cycled; tensor names
    made unique with a ``#k`` suffix where a name repeats), with hostile metadata and doc strings.
    The ``a2qhls.layers`` metadata (keyed by node names) follows the renaming."""
    p = onnx.ModelProto()
    p.CopyFrom(proto)
    g = p.graph
    cyc = itertools.cycle(names)
    tmap: dict = {}
    used: set = set()

    def fresh(old: str) -> str:
        if old == "" or old in tmap:
            return tmap.get(old, old)
        base = next(cyc)
        new, k = base, 1
        while new in used or new == "":
            new = f"{base}#{k}"
            k += 1
        used.add(new)
        tmap[old] = new
        return new

    for vi in list(g.input) + list(g.output):
        vi.name = fresh(vi.name)
    for t in g.initializer:
        t.name = fresh(t.name)
    node_map = {}
    for n in g.node:
        for i, x in enumerate(n.input):
            n.input[i] = fresh(x)
        for i, x in enumerate(n.output):
            n.output[i] = fresh(x)
        old = n.name
        n.name = next(cyc)
        node_map[old] = n.name
        n.doc_string = next(cyc)
    for vi in g.value_info:
        vi.name = fresh(vi.name)
    g.name = next(cyc) if graph_name is None else graph_name
    g.doc_string = next(cyc)
    keep = []
    for prop in p.metadata_props:
        if prop.key == LAYERS_KEY:
            layers = json.loads(prop.value)
            prop.value = json.dumps({node_map.get(k, k): v for k, v in layers.items()})
        keep.append(prop)
    for k, name in enumerate(names[:4]):
        p.metadata_props.add(key=f"{name}#meta{k}", value=name)
    p.producer_name = names[0]
    return p
