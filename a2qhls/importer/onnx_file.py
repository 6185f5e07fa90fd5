"""Reading a QONNX file: the protobuf (with external data), the checks at the door, and the a2qhls
annotations in its metadata.

Everything a model file says is checked here, before the graph walk sees it (README, "What the
importer accepts"): the file is a regular file within :data:`~a2qhls.limits.MAX_MODEL_BYTES`;
every tensor's declared size is within :data:`~a2qhls.limits.MAX_TENSOR_ELEMENTS` *before* its
data is read; external data lies next to the model and has exactly the declared length; float
values and float attributes are finite; names are unique; every op is in the domain it belongs to
(ONNX ops in the default domain, ``Quant``/``Trunc`` in QONNX's); the default-domain opset is in
:data:`MIN_OPSET`..(onnx's newest); ``Quant``'s ``signed``/``narrow`` are present and 0/1; constant
inputs have the element type the op's schema and the float dataflow need; the nodes are sorted
topologically (in place, in linear time) and then ``onnx.checker`` checks the rest.
Every failure is one :class:`~a2qhls.errors.A2QError` line naming the file, the node or tensor,
and the value.
"""
from __future__ import annotations

import math
import os
import shutil

import numpy as np

from ..errors import A2QError
from ..files import parse_json, regular_file
from ..limits import MAX_MODEL_BYTES, MAX_NODES, check_elements
from ..metadata import LAYERS_KEY as METADATA_KEY

MIN_OPSET = 11  # oldest default-domain opset accepted (the newest is what the installed onnx knows)
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas")  # where QONNX's executor finds Quant/Trunc
QONNX_OPS = {"Quant": (4, 4), "Trunc": (5, 6), "BipolarQuant": (2, 2)}  # op -> (min, max) inputs (Trunc v1: 5, refused later by name)
DEFAULT_DOMAINS = ("", "ai.onnx")

__all__ = ["read_onnx", "layer_annotations", "external_data_files", "copy_self_contained", "MIN_OPSET", "QONNX_DOMAINS"]


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def unique_node_names(g) -> None:
    """Give every node of graph ``g`` a unique name (in place): an empty name becomes
    ``<op_type>_<index>``, a repeated one ``<name>_2``, ``<name>_3``, ... Folding, ``--acc-bits``
    and cosim key on op names."""
    seen: set = set()
    for i, n in enumerate(g.node):
        base = n.name or f"{n.op_type}_{i}"
        name, k = base, 2
        while name in seen:
            name, k = f"{base}_{k}", k + 1
        seen.add(name)
        n.name = name


def read_onnx(path: str, check_ops=None):
    """Load and check a QONNX model file; returns its ``ModelProto`` with external data loaded and
    the nodes in topological order. ``check_ops(graph, path)``: the importer's own check of the op
    types, run before ``onnx.checker``. Raises :class:`A2QError` (one line) for anything it refuses."""
    import onnx
    from google.protobuf.message import DecodeError

    path = regular_file(path, "QONNX (.onnx) file")
    size = os.path.getsize(path)
    if size > MAX_MODEL_BYTES:
        raise A2QError(f"{path}: {size} bytes, above the limit of {MAX_MODEL_BYTES} for a model file")
    try:
        proto = onnx.load(path, load_external_data=False)
    except (DecodeError, RuntimeWarning, ValueError, TypeError) as e:
        raise A2QError(f"{path}: not a valid ONNX file (protobuf parse failed: {_first_line(e)})") from None
    except RecursionError:
        raise A2QError(f"{path}: not a valid ONNX file (nested too deeply)") from None
    except Exception as e:  # onnx raises a variety of types for damaged files
        raise A2QError(f"{path}: not a valid ONNX file ({type(e).__name__}: {_first_line(e)})") from None
    if not proto.HasField("graph") or proto.ir_version == 0 or len(proto.graph.node) == 0:
        raise A2QError(f"{path}: not an ONNX model (no graph or no nodes found)")
    _check_strings(proto, path)
    g = proto.graph
    if len(g.node) > MAX_NODES:
        raise A2QError(f"{path}: {len(g.node)} nodes, above the limit of {MAX_NODES}")
    unique_node_names(g)  # so that errors can name every node
    if len(g.sparse_initializer):
        raise A2QError(f"{path}: sparse initializer '{g.sparse_initializer[0].values.name}' is not supported; store it dense")
    base = os.path.dirname(os.path.abspath(path))
    tensors = [(t, f"initializer '{t.name}'") for t in g.initializer] + list(_constant_tensors(path, g))
    total = size
    for t, what in tensors:
        total += _check_tensor_header(path, base, t, what)
        if total > MAX_MODEL_BYTES:
            raise A2QError(f"{path}: the model and its data hold more than {MAX_MODEL_BYTES} bytes (at {what})")
    from onnx.external_data_helper import load_external_data_for_model

    try:
        load_external_data_for_model(proto, base)
    except Exception as e:
        raise A2QError(f"{path}: could not load external data ({type(e).__name__}: {_first_line(e)})") from None
    readers = {}
    for n in g.node:
        for x in n.input:
            readers.setdefault(x, f"node '{n.name}' ({n.op_type})")
    for t, what in tensors:
        _check_tensor_data(path, t, what + (f", read by {readers[t.name]}" if t.name in readers and what.startswith("init") else ""))
    check_graph(proto, path, check_ops, file=path)
    return proto


def _check_strings(proto, path) -> None:
    """Every string field (names, op types, domains, metadata) is valid UTF-8: protobuf decodes
    them lazily, so a damaged one would otherwise raise wherever it is first read. One pass over
    the messages (numeric and bytes fields are not read)."""
    from google.protobuf.descriptor import FieldDescriptor

    stack = [proto]
    try:
        while stack:
            msg = stack.pop()
            for fd, value in msg.ListFields():
                single = isinstance(value, (str, bytes, int, float, bool)) or hasattr(value, "ListFields")
                if fd.type == FieldDescriptor.TYPE_MESSAGE:
                    if single:
                        stack.append(value)
                    else:
                        stack.extend(value)
                elif fd.type == FieldDescriptor.TYPE_STRING:
                    for v in [value] if single else value:
                        if not isinstance(v, str):  # protobuf hands invalid UTF-8 over as bytes
                            raise A2QError(f"{path}: not a valid ONNX file (field '{fd.name}' holds {bytes(v)[:40]!r}, which is not UTF-8)")
    except UnicodeDecodeError as e:
        raise A2QError(f"{path}: not a valid ONNX file (a name or string is not UTF-8: {e.reason} at byte {e.start})") from None


def _constant_tensors(path, g):
    from onnx import AttributeProto

    for n in g.node:
        if n.op_type != "Constant":
            continue
        for a in n.attribute:
            if a.type == AttributeProto.TENSOR:
                yield a.t, f"node '{n.name}' (Constant) value"
            elif a.type == AttributeProto.SPARSE_TENSOR or a.name.startswith("value_string"):
                raise A2QError(f"{path}: node '{n.name}' (Constant): attribute '{a.name}' is not supported")


# element types a tensor may have in a model a2qhls reads
_NP_TYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
             9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
_FLOAT_TYPES = (1, 10, 11)


def _type_name(dt: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(dt)
    except ValueError:
        return str(dt)


def _check_tensor_header(path, base, t, what) -> int:
    """Element type, declared size and (for external data) the data file, before any data is read;
    returns the number of data bytes."""
    import onnx

    if t.data_type not in _NP_TYPES:
        raise A2QError(f"{path}: {what} has element type {_type_name(t.data_type)}; supported: "
                       "float, float16, double, bool and 8..64-bit integers")
    n = check_elements(t.dims, f"{path}: {what}")
    nbytes = n * np.dtype(_NP_TYPES[t.data_type]).itemsize
    if t.data_location == onnx.TensorProto.EXTERNAL:
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        norm = os.path.normpath(loc) if loc else ""
        if not loc or os.path.isabs(loc) or norm.startswith("..") or "\0" in loc:
            raise A2QError(f"{path}: {what}: external data location '{loc}' must be a file name next to the model")
        f = os.path.join(base, norm)
        if not os.path.exists(f):
            raise A2QError(f"{path}: external data file '{loc}' of {what} not found next to the model")
        regular_file(f, "external data file")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else nbytes
        except ValueError:
            raise A2QError(f"{path}: {what}: external data offset/length are not integers") from None
        if offset < 0 or length != nbytes:
            raise A2QError(f"{path}: {what}: external data of {length} bytes at offset {offset}; "
                           f"its shape {list(t.dims)} needs {nbytes} bytes")
        fsize = os.path.getsize(f)
        if offset + nbytes > fsize:
            raise A2QError(f"{path}: {what}: external data file '{loc}' has {fsize} bytes, too short for "
                           f"{nbytes} bytes at offset {offset}")
    return nbytes


def _check_tensor_data(path, t, what) -> None:
    """After loading: the stored data has exactly the declared number of values, all finite."""
    from onnx import numpy_helper

    n = math.prod(int(d) for d in t.dims)
    if t.HasField("raw_data") or t.raw_data:
        have = len(t.raw_data) // np.dtype(_NP_TYPES[t.data_type]).itemsize
        ok = len(t.raw_data) == n * np.dtype(_NP_TYPES[t.data_type]).itemsize
    else:
        from onnx import helper

        field = helper.tensor_dtype_to_field(t.data_type)
        have = len(getattr(t, field))
        ok = have == n
    if not ok:
        raise A2QError(f"{path}: {what} holds {have} values for its shape {list(t.dims)} ({n} values); the data is damaged")
    if t.data_type in _FLOAT_TYPES:
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:
            raise A2QError(f"{path}: {what}: cannot read its data ({_first_line(e)})") from None
        bad = ~np.isfinite(a)
        if np.any(bad):
            i = np.unravel_index(int(np.argmax(bad)), a.shape) if a.ndim else ()
            raise A2QError(f"{path}: {what} holds {a[i]} at index {list(map(int, i))}; values must be finite")


def check_graph(proto, path: str, check_ops=None, file=None) -> None:
    """The graph-level checks of the module docstring; sorts the nodes in place.

    ``file``: the file ``proto`` was read from, unchanged but for unique node names, the (stable)
    topological sort and external data loaded: ``onnx.checker`` first checks the file itself, in C++,
    without serializing the proto again; only if it refuses the file is the proto checked, and that
    check decides (so a file whose nodes were out of order is judged on the sorted graph)."""
    import onnx
    from onnx import AttributeProto

    g = proto.graph
    opsets = {o.domain: o.version for o in proto.opset_import}
    default = next((opsets[d] for d in DEFAULT_DOMAINS if d in opsets), None)
    newest = onnx.defs.onnx_opset_version()
    if default is None:
        raise A2QError(f"{path}: no opset of the default ONNX domain is imported")
    if not MIN_OPSET <= default <= newest:
        raise A2QError(f"{path}: default-domain opset {default} is not supported (supported: {MIN_OPSET}..{newest})")
    if len(g.output) == 0:
        raise A2QError(f"{path}: the graph has no output")
    if not len(g.input):
        raise A2QError(f"{path}: the graph has no input")
    names: dict = {}

    def define(name, what):
        if name == "":
            raise A2QError(f"{path}: {what} has an empty name")
        if name in names:
            raise A2QError(f"{path}: tensor name '{name}' is defined twice ({names[name]} and {what})")
        names[name] = what

    inits = set()
    for t in g.initializer:
        define(t.name, f"initializer '{t.name}'")
        inits.add(t.name)
    for vi in g.input:
        if vi.name in inits:
            continue  # an initializer listed as a graph input (old exporters)
        define(vi.name, f"graph input '{vi.name}'")
    for n in g.node:
        where = f"{path}: node '{n.name}' ({n.op_type})"
        if len(n.output) == 0 or n.output[0] == "":
            raise A2QError(f"{where}: has no output")
        for o in n.output:
            if o:
                define(o, f"an output of node '{n.name}'")
        if n.op_type in QONNX_OPS:
            if n.domain not in QONNX_DOMAINS:
                raise A2QError(f"{where}: domain '{n.domain}'; {n.op_type} is read from QONNX's domain '{QONNX_DOMAINS[0]}'")
            lo, hi = QONNX_OPS[n.op_type]
            if not lo <= len(n.input) <= hi or len(n.output) != 1:
                raise A2QError(f"{where}: {len(n.input)} inputs and {len(n.output)} outputs; expected {lo} inputs and 1 output")
        elif n.domain not in DEFAULT_DOMAINS:
            raise A2QError(f"{where}: domain '{n.domain}'; a2qhls reads {n.op_type} from the default ONNX domain only")
        seen_attrs = set()
        for a in n.attribute:
            if a.name in seen_attrs:
                raise A2QError(f"{where}: attribute '{a.name}' is given twice")
            seen_attrs.add(a.name)
            if a.type == AttributeProto.FLOAT and not math.isfinite(a.f):
                raise A2QError(f"{where}: attribute {a.name}={a.f}; must be finite")
            if a.type == AttributeProto.FLOATS and not all(math.isfinite(v) for v in a.floats):
                raise A2QError(f"{where}: attribute {a.name} holds a non-finite value")
        if n.op_type in ("Quant", "Trunc", "BipolarQuant"):
            _check_quant_attrs(n, where)
    for o in g.output:
        if o.name not in names:
            raise A2QError(f"{path}: graph output '{o.name}' is not produced by any node")
    toposort_in_place(g, path)
    if check_ops is not None:
        check_ops(g, path)
    _check_constant_types(proto, path, default)
    if file is not None:
        try:
            onnx.checker.check_model(os.fspath(file))
            return
        except Exception:  # judged on the proto below
            pass
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # onnx.checker.ValidationError, or ValueError for odd protos
        raise A2QError(f"{path}: the ONNX checker rejects the model: {_first_line(e)}") from None


def _check_quant_attrs(n, where) -> None:
    from onnx import AttributeProto

    attrs = {a.name: a for a in n.attribute}
    required = ("signed", "narrow") if n.op_type == "Quant" else ()
    for key in ("signed", "narrow"):
        a = attrs.get(key)
        if a is None:
            if key in required:
                raise A2QError(f"{where}: attribute '{key}' is missing; QONNX requires it (0 or 1)")
            continue
        if a.type != AttributeProto.INT or a.i not in (0, 1):
            from onnx import helper

            v = helper.get_attribute_value(a)
            v = v.decode(errors="replace") if isinstance(v, bytes) else v
            raise A2QError(f"{where}: attribute {key}={v!r}; must be the integer 0 or 1")
    a = attrs.get("rounding_mode")
    if a is not None and a.type != AttributeProto.STRING:
        raise A2QError(f"{where}: attribute rounding_mode must be a string")


def _check_constant_types(proto, path, opset: int) -> None:
    """Constant inputs (initializers, Constant outputs) must have an element type the op's schema
    allows, and the float type of the dataflow where the schema ties them to a dynamic input."""
    import onnx

    g = proto.graph
    ctype = {t.name: t.data_type for t in g.initializer}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR:
                    ctype[n.output[0]] = a.t.data_type
                elif a.name in ("value_float", "value_floats"):
                    ctype[n.output[0]] = 1
                elif a.name in ("value_int", "value_ints"):
                    ctype[n.output[0]] = 7
    dyn = next((vi for vi in g.input if vi.name not in ctype), None)
    flow = dyn.type.tensor_type.elem_type if dyn is not None and dyn.type.HasField("tensor_type") else 1
    if flow != 1:  # QONNX's Quant computes and outputs float32: the whole dataflow is float32
        raise A2QError(f"{path}: graph input '{dyn.name}' has element type {_type_name(flow)}; a2qhls reads FLOAT (float32) inputs")
    for n in g.node:
        where = f"{path}: node '{n.name}' ({n.op_type})"
        consts = [(i, x) for i, x in enumerate(n.input) if x in ctype]
        if not consts:
            continue
        if n.op_type in QONNX_OPS:
            for i, x in consts:
                if ctype[x] not in _FLOAT_TYPES:
                    raise A2QError(f"{where}: input {i} '{x}' has element type {_type_name(ctype[x])}; {n.op_type} takes float inputs")
            continue
        if n.domain not in DEFAULT_DOMAINS:
            continue
        try:
            schema = onnx.defs.get_schema(n.op_type, opset, "")
        except Exception:
            continue  # an unknown op: the importer names it
        formal = list(schema.inputs)
        if not formal:
            continue
        allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
        dyn_vars = {formal[min(i, len(formal) - 1)].type_str for i, x in enumerate(n.input) if x and x not in ctype}
        for i, x in consts:
            tvar = formal[min(i, len(formal) - 1)].type_str
            tstr = f"tensor({_ONNX_TYPE_STR.get(ctype[x], '?')})"
            ok = tstr in allowed[tvar] if tvar in allowed else tstr == tvar
            # QCDQ ops carry integer tensors (QuantizeLinear -> [Clip] -> DequantizeLinear): only the schema applies
            if ok and tvar in dyn_vars and ctype[x] != flow and n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Clip"):
                ok = False
            if not ok:
                raise A2QError(f"{where}: input {i} '{x}' has element type {_type_name(ctype[x])}; "
                               f"expected {_type_name(flow) if tvar in dyn_vars else 'one of ' + ', '.join(sorted(allowed.get(tvar, {tvar})))}")


_ONNX_TYPE_STR = {1: "float", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                  10: "float16", 11: "double", 12: "uint32", 13: "uint64"}


def toposort_in_place(g, path: str) -> None:
    """Sort ``g.node`` topologically (Kahn's algorithm taking the ready node that comes first in the
    file: O((nodes + edges) log nodes), and a graph already in order keeps its order). Raises :class:`A2QError` naming a node whose input nothing produces,
    or a cycle."""
    import heapq

    nodes = list(g.node)
    available = {t.name for t in g.initializer} | {i.name for i in g.input} | {""}
    producer = {}
    for k, n in enumerate(nodes):
        for o in n.output:
            if o:
                producer[o] = k
    waiting = [0] * len(nodes)
    readers: dict = {}
    for k, n in enumerate(nodes):
        for x in set(n.input):
            if x in available:
                continue
            if x not in producer:
                raise A2QError(f"{path}: node '{n.name}' ({n.op_type}) reads '{x}', which nothing produces")
            waiting[k] += 1
            readers.setdefault(x, []).append(k)
    ready = [k for k in range(len(nodes)) if waiting[k] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        k = heapq.heappop(ready)
        order.append(k)
        for o in nodes[k].output:
            for r in readers.get(o, ()):
                waiting[r] -= 1
                if waiting[r] == 0:
                    heapq.heappush(ready, r)
    if len(order) != len(nodes):
        n = nodes[next(k for k in range(len(nodes)) if waiting[k] > 0)]
        raise A2QError(f"{path}: node '{n.name}' ({n.op_type}) is on a cycle; an ONNX graph must be acyclic")
    if order != list(range(len(nodes))):
        sorted_nodes = [nodes[k] for k in order]
        copies = [type(n)() for n in sorted_nodes]
        for c, n in zip(copies, sorted_nodes):
            c.CopyFrom(n)
        del g.node[:]
        g.node.extend(copies)


def external_data_files(path) -> list:
    """The external data files a model file refers to (absolute paths; none for a self-contained model)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    base = os.path.dirname(os.path.abspath(str(path)))
    out = []
    for t, _ in [(t, "") for t in proto.graph.initializer] + list(_constant_tensors(str(path), proto.graph)):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in t.external_data if e.key == "location"), "")
            f = os.path.join(base, os.path.normpath(loc))
            if f not in out:
                out.append(f)
    return out


def copy_self_contained(src, dst) -> None:
    """Copy a model file to ``dst``: byte for byte when it is self-contained, else re-saved with its
    external data stored inside (a project must not depend on files beside the input model)."""
    import onnx

    if not external_data_files(src):
        shutil.copyfile(src, dst)
        return
    proto = onnx.load(str(src), load_external_data=True)
    onnx.save_model(proto, str(dst), save_as_external_data=False)


def _target_bits(v, where: str):
    from ..passes.acc_bits import MAX_ACC_BITS, MIN_ACC_BITS

    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not MIN_ACC_BITS <= v <= MAX_ACC_BITS:
        raise A2QError(f"{where}: target_acc_bits {v!r} is not an integer in {MIN_ACC_BITS}..{MAX_ACC_BITS}")
    return v


def layer_annotations(proto) -> dict:
    """Per-node annotations (quantizer kind, target accumulator width) written by our export.

    Raises :class:`A2QError` when the metadata is not valid JSON, is nested too deeply, or holds a
    target that is not an integer accumulator width or a quantizer kind that is not a short string."""
    out: dict = {}
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            data = parse_json(p.value, f"metadata '{METADATA_KEY}'")
            if not isinstance(data, dict):
                raise A2QError(f"metadata '{METADATA_KEY}': expected a JSON object keyed by node name, got {type(data).__name__}")
            for k, v in data.items():
                if not isinstance(v, dict):
                    raise A2QError(f"metadata '{METADATA_KEY}': entry '{k}' is {type(v).__name__}, expected an object")
                where = f"metadata '{METADATA_KEY}': layer '{k}'"
                e = dict(v)
                e["target_acc_bits"] = _target_bits(v.get("target_acc_bits"), where)
                q = v.get("quant")
                if q is not None and (not isinstance(q, str) or len(q) > 64):
                    raise A2QError(f"{where}: quant {q!r} is not a quantizer name")
                out[str(k)] = e
    for node in proto.graph.node:
        for p in getattr(node, "metadata_props", []):
            where = f"node '{node.name}' metadata"
            if p.key == "a2qhls.target_acc_bits":
                v = p.value.strip()
                if not (v.isascii() and v.isdigit() and len(v) <= 3):
                    raise A2QError(f"{where}: a2qhls.target_acc_bits '{p.value[:40]}' is not an integer")
                out.setdefault(node.name, {})["target_acc_bits"] = _target_bits(int(v), where)
            elif p.key == "a2qhls.quant":
                if len(p.value) > 64:
                    raise A2QError(f"{where}: a2qhls.quant is not a quantizer name")
                out.setdefault(node.name, {})["quant"] = p.value
    return out
