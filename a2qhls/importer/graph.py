"""The importer's graph walk: read the file, check what can be checked up front, then visit the
nodes in topological order and dispatch each to its op handler (:data:`HANDLERS`).

Adding an op: a handler ``on_<op>(ctx, node)`` in the module of its family (or a new module),
plus an entry in :data:`HANDLERS` and :data:`SUPPORTED_OPS`.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import A2QError
from ..limits import check_elements
from ..ir import Conv, Dense, Model, channels_first
from .arith import on_add, on_mul, on_sub_div
from .batchnorm import on_batchnorm
from .context import AccState, Ctx, FloatInput, IntState, finalize_acc
from .conv import on_conv, on_conv_transpose
from .dense import on_gemm, on_matmul
from .onnx_file import layer_annotations, read_onnx, unique_node_names
from .pool import on_pool, on_trunc
from .input_quant import insert_input_quant
from .qcdq import has_qcdq, qcdq_to_quant
from .quant import on_bipolar_quant, on_quant, on_relu
from .reorder import on_depth_to_space
from .resize import on_concat, on_resize
from .shape import CONST_FOLDABLE, fold_const, on_reshape

SUPPORTED_OPS = (
    "Quant",
    "BipolarQuant",
    "Trunc",
    "Gemm",
    "MatMul",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "BatchNormalization",
    "Relu",
    "Transpose",
    "Flatten",
    "Reshape",
    "DepthToSpace",
    "Resize",
    "Upsample",
    "Concat",
    "ConvTranspose",
    "Identity",
    "Constant",
    "Pow",
    "Sqrt",
)


HANDLERS = {
    "Trunc": on_trunc,
    "Conv": on_conv,
    "MaxPool": on_pool,
    "AveragePool": on_pool,
    "GlobalAveragePool": on_pool,
    "ReduceMean": on_pool,
    "Quant": on_quant,
    "BipolarQuant": on_bipolar_quant,
    "Gemm": on_gemm,
    "MatMul": on_matmul,
    "Add": on_add,
    "Mul": on_mul,
    "Sub": on_sub_div,
    "Div": on_sub_div,
    "BatchNormalization": on_batchnorm,
    "Relu": on_relu,
    "Flatten": on_reshape,
    "Reshape": on_reshape,
    "DepthToSpace": on_depth_to_space,
    "Resize": on_resize,
    "Upsample": on_resize,
    "Concat": on_concat,
    "ConvTranspose": on_conv_transpose,
}


def load_qonnx(path: str, input_quant: str | None = None) -> Model:
    """Read a QONNX model file into an a2qhls :class:`~a2qhls.ir.Model`.

    ``input_quant``: ``"TYPE:SCALE[:ZERO_POINT]"`` (e.g. ``"uint8:0.00392"``) declares the integer
    type of a graph input the file does not quantize (see :mod:`.input_quant`)."""
    path = str(path)
    proto = original = read_onnx(path, check_ops=check_ops)
    if input_quant is not None:
        proto = insert_input_quant(proto, input_quant, path)
    from onnx import numpy_helper

    if has_qcdq(proto):  # QuantizeLinear/Clip/DequantizeLinear were let through the door: fuse them
        proto = qcdq_to_quant(proto, path)
        check_ops(proto.graph, path, allow_qcdq=False)
    graph = proto.graph
    if proto is not original:  # --input-quant or the QCDQ fusion rewrote the graph
        unique_node_names(graph)
    ctx = Ctx(path=path, graph_outputs={o.name for o in graph.output})
    ctx.annotations = layer_annotations(proto)

    for t in graph.initializer:
        ctx.consts[t.name] = numpy_helper.to_array(t)
    for n in graph.node:
        if n.op_type == "Constant":
            from onnx import helper

            for a in n.attribute:
                if a.name == "value":
                    ctx.consts[n.output[0]] = numpy_helper.to_array(a.t)
                elif a.name in ("value_float", "value_int", "value_floats", "value_ints"):
                    ctx.consts[n.output[0]] = np.asarray(helper.get_attribute_value(a))
    for n in graph.node:
        for i in n.input:
            ctx.consumers.setdefault(i, []).append(n)

    order = toposort(graph, ctx)
    check_quant_params_constant(graph, ctx, order)
    infer_shapes(proto, ctx)

    dyn_inputs = [i for i in graph.input if i.name not in ctx.consts]
    if len(dyn_inputs) != 1:
        raise A2QError(f"{path}: expected exactly one graph input, found {len(dyn_inputs)} ({', '.join(i.name for i in dyn_inputs)})")
    inp = dyn_inputs[0]
    in_shape = ctx.shapes.get(inp.name)
    if in_shape is None:
        dims = inp.type.tensor_type.shape.dim
        in_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    in_shape = tuple(in_shape)
    if len(in_shape) < 2 or any(d is None or d <= 0 for d in in_shape[1:]):
        raise A2QError(f"{path}: input '{inp.name}' must be [batch, features...] with fixed feature dimensions, got {list(in_shape)}")
    per_sample = tuple(int(d) for d in in_shape[1:])
    check_elements(per_sample, f"{path}: input '{inp.name}' (one sample)")
    ctx.state[inp.name] = FloatInput(per_sample)
    ctx.input_name = inp.name

    for node in order:
        if node.op_type == "Constant":
            continue
        if node.op_type not in ("Quant", "BipolarQuant") and all((x in ctx.consts) or x == "" for x in node.input):
            if node.op_type in CONST_FOLDABLE:
                fold_const(ctx, node)
                continue
            raise A2QError(f"{ctx.where(node)}: {node.op_type} on constants only is not supported; supported on constants: "
                           f"Quant, {', '.join(CONST_FOLDABLE)}")
        if node.op_type == "Identity":
            src = node.input[0]
            if src in ctx.state:
                ctx.state[node.output[0]] = ctx.state[src]
            continue
        if node.op_type == "Transpose":
            raise A2QError(f"{ctx.where(node)}: Transpose of an activation is not supported (only of constant weights)")
        HANDLERS[node.op_type](ctx, node)

    outputs, out_names, out_shapes = [], [], []
    for o in graph.output:
        st = ctx.state.get(o.name)
        if isinstance(st, AccState):
            if st.deferred is not None:
                raise A2QError(f"{path}: graph output '{o.name}' is a MaxPool of a layer output without an activation Quant; add one")
            if st.relu:
                raise A2QError(f"{path}: graph output '{o.name}' is a Relu without a Quant; supported: a layer output or a Quant")
            finalize_acc(ctx, f"{path}: graph output '{o.name}'", st, graph_output=True)
            outputs.append(st.layer.outputs[0])
        elif isinstance(st, IntState) and not st.relu:
            outputs.append(st.tensor)
        elif isinstance(st, IntState):
            raise A2QError(f"{path}: graph output '{o.name}' is a Relu of a quantized tensor without a Quant after it; "
                           "supported: a Quant (e.g. a QuantReLU) after the Relu")
        elif o.name in ctx.consts or st is None:
            raise A2QError(f"{path}: graph output '{o.name}' is a constant, not computed from the input; a Brevitas model that "
                           "returns a QuantTensor exports its scale, zero-point and bit width as extra outputs: return "
                           "the tensor's .value (or export with dynamo=True)")
        else:
            raise A2QError(f"{path}: graph output '{o.name}' is not produced by a layer or a Quant")
        out_names.append(o.name)
        cf = channels_first(ctx.tensors[outputs[-1]].shape, one_d=len(per_sample) == 2)  # as QONNX has it
        out_shapes.append((int(np.prod(cf)),) if st.flattened else cf)

    if not any(isinstance(op, (Dense, Conv)) for op in ctx.ops):
        raise A2QError(f"{path}: no MatMul/Gemm/Conv layer found; a2qhls compiles models with at least one layer")
    name = proto.graph.name or os.path.splitext(os.path.basename(path))[0]
    return Model(
        name=name,
        input_name=inp.name,
        input_shape=per_sample,
        ops=ctx.ops,
        tensors=ctx.tensors,
        outputs=outputs,
        output_names=out_names,
        output_shapes=out_shapes,
        source=os.path.abspath(path),
        source_stat=(os.stat(path).st_size, os.stat(path).st_mtime_ns),
        input_quant=input_quant,
    )


QCDQ_DOOR_OPS = ("QuantizeLinear", "DequantizeLinear", "Clip")  # fused into Quant by importer.qcdq


def check_ops(graph, path: str, allow_qcdq: bool = True) -> None:
    """A quantized model whose ops are all in :data:`SUPPORTED_OPS` (run by the importer's door,
    before ``onnx.checker``, so an unknown op is named with what is supported). ``allow_qcdq``:
    also let QCDQ ops through (a graph that has them is fused into ``Quant`` nodes next, and
    checked again without them)."""
    quant_types = {"Quant", "BipolarQuant", "QuantizeLinear", "DequantizeLinear", "Trunc"}
    if not any(n.op_type in quant_types for n in graph.node):
        raise A2QError(
            f"{path}: a float model with no Quant nodes; a2qhls needs a quantized QONNX model "
            "(e.g. exported with brevitas.export.export_qonnx or 'a2qhls train')"
        )
    qcdq = allow_qcdq and any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
    unsupported = [n for n in graph.node if n.op_type not in SUPPORTED_OPS and not (qcdq and n.op_type in QCDQ_DOOR_OPS)]
    if unsupported:
        n = unsupported[0]
        raise A2QError(
            f"{path}: node '{n.name}' has unsupported op {n.op_type}; supported ops: {', '.join(SUPPORTED_OPS)}"
        )


def check_quant_params_constant(graph, ctx: Ctx, order=None) -> None:
    """Every Quant's scale, zero-point and bit width must be computable from constants alone."""
    const = set(ctx.consts)
    for n in order if order is not None else toposort(graph, ctx):
        if n.op_type not in ("Quant", "BipolarQuant") and n.input and all(i in const or i == "" for i in n.input):
            const.update(n.output)
    params = {
        "Quant": ("scale", "zero-point", "bit width"),
        "Trunc": ("scale", "zero-point", "input bit width", "output scale", "output bit width"),
        "BipolarQuant": ("scale",),
    }
    for n in graph.node:
        if n.op_type not in params:
            continue
        if n.op_type == "Quant" and len(n.input) < 4:
            raise A2QError(f"{ctx.where(n)}: expected 4 inputs (x, scale, zeropt, bitwidth), found {len(n.input)}")
        if n.op_type == "Trunc" and len(n.input) != 6:
            raise A2QError(
                f"{ctx.where(n)}: Trunc with {len(n.input)} inputs (version 1) is not supported; supported: Trunc v2 "
                "(x, scale, zeropt, input_bit_width, output_scale, output_bit_width) as Brevitas 0.13 exports it"
            )
        for what, name in zip(params[n.op_type], n.input[1:]):
            if name not in const:
                raise A2QError(
                    f"{ctx.where(n)}: the {what} input '{name}' is not a constant; "
                    f"a2qhls supports {n.op_type} nodes whose parameters are constants"
                )


SHAPE_ONLY_ABOVE = 4096  # initializers larger than this go to shape inference without their data


def shape_only_copy(proto):
    """A copy of ``proto`` for shape inference: the graph's nodes, inputs, outputs, value infos and
    small initializers, but large initializers (weights) as name, type and dims only. Shape
    inference needs only their shapes; copying and serializing megabytes of weights (qonnx's
    InferShapes round-trips the model through onnx) was most of ``inspect``'s time on large nets."""
    import onnx

    light = onnx.ModelProto()
    light.ir_version = proto.ir_version
    light.opset_import.extend(proto.opset_import)
    g, lg = proto.graph, light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= int(d)
        if n <= SHAPE_ONLY_ABOVE:
            lg.initializer.append(t)
        else:
            lg.initializer.append(onnx.TensorProto(name=t.name, data_type=t.data_type, dims=list(t.dims)))
    return light


def infer_shapes(proto, ctx: Ctx) -> None:
    """Shapes of value infos, from onnx's shape inference (linear in the graph's size) run on a
    :func:`shape_only_copy` whose QONNX ops (``Quant``, ``Trunc``: output shaped like input 0) are replaced by ``Identity``,
    as qonnx's ``InferShapes`` does; the graph as given when inference fails. Every inferred
    per-sample size is checked against :data:`~a2qhls.limits.MAX_TENSOR_ELEMENTS`."""
    import onnx
    from onnx import helper

    from ..limits import check_elements
    from .onnx_file import QONNX_OPS

    g = proto.graph
    try:
        p = shape_only_copy(proto)
        nodes = [helper.make_node("Identity", [n.input[0]], [n.output[0]], name=n.name) if n.op_type in QONNX_OPS else n
                 for n in p.graph.node]
        del p.graph.node[:]
        p.graph.node.extend(nodes)
        g = onnx.shape_inference.infer_shapes(p).graph
    except Exception:
        g = proto.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
            if all(d is not None for d in shape[1:]):
                check_elements(shape[1:], f"{ctx.path}: tensor '{vi.name}' (one sample)")
            ctx.shapes[vi.name] = shape


def toposort(graph, ctx: Ctx) -> list:
    """The nodes in topological order: :func:`~a2qhls.importer.onnx_file.read_onnx` has sorted
    them in place (in linear time) and refused graphs with cycles or dangling inputs."""
    return list(graph.node)
