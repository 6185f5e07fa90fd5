"""The importer runs shape inference on a copy without the weights' data (importer.graph.shape_only_copy):
it must infer the same shape for every tensor the graph names as inference on the whole model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.transformation.infer_shapes import InferShapes

from a2qhls.importer.graph import SHAPE_ONLY_ABOVE, shape_only_copy

ROOT = Path(__file__).resolve().parent.parent
MODELS = [ROOT / "examples" / "digits_a2qplus_p12.onnx"] + sorted((ROOT.parent / "shared" / "cases").glob("*.onnx"))


def _shapes(proto, names) -> dict:
    g = ModelWrapper(proto).transform(InferShapes()).model.graph
    return {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in [*g.value_info, *g.output, *g.input] if vi.name in names}


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_shape_only_copy_infers_the_same_shapes(path):
    proto = onnx.load(str(path))
    names = {o for n in proto.graph.node for o in n.output} | {i.name for i in proto.graph.input}
    light = shape_only_copy(proto)
    stripped = {t.name for t in light.graph.initializer if not (t.raw_data or t.float_data or t.int64_data or t.int32_data)}
    large = {t.name for t in proto.graph.initializer if np.prod(t.dims) > SHAPE_ONLY_ABOVE}
    assert stripped == large
    assert _shapes(light, names) == _shapes(proto.__deepcopy__(), names)
