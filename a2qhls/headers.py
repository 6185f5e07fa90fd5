"""Where the ap_int / hls_stream headers and the C++ compiler come from.

Headers: ``$XILINX_HLS/include`` when ``XILINX_HLS`` is set, else the copy of Xilinx's
Apache-2.0 ``ap_types`` that hls4ml's wheel ships (``hls4ml/templates/vivado/ap_types``),
located with importlib without importing hls4ml. Nothing is ever copied into this repo.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from .errors import A2QError

__all__ = ["find_headers", "find_cxx"]

_NEEDED = ("ap_int.h", "hls_stream.h")


def _ok(d: Path) -> bool:
    return all((d / h).is_file() for h in _NEEDED)


def find_headers() -> Path:
    """The folder holding ``ap_int.h`` and ``hls_stream.h``; A2QError if none is found."""
    xil = os.environ.get("XILINX_HLS")
    if xil:
        d = Path(xil) / "include"
        if _ok(d):
            return d
        raise A2QError(f"XILINX_HLS is set to '{xil}' but {d} lacks {' / '.join(_NEEDED)}")
    tried = []
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            d = Path(loc) / "templates" / "vivado" / "ap_types"
            tried.append(str(d))
            if _ok(d):
                return d
    raise A2QError(
        "ap_int/hls_stream headers not found: set XILINX_HLS to a Vitis HLS installation, "
        "or install a package shipping Xilinx's ap_types (pip install 'a2qhls[cosim]', i.e. hls4ml)"
        + (f"; looked in {', '.join(tried)}" if tried else "")
    )


def find_cxx() -> str:
    """The C++ compiler (``$CXX`` or g++); A2QError if it is missing."""
    cxx = os.environ.get("CXX") or "g++"
    path = shutil.which(cxx)
    if path is None:
        raise A2QError(f"C++ compiler '{cxx}' not found on PATH; install g++ (or set CXX) to run C simulation")
    return path
