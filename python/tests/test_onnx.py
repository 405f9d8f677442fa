"""ONNX graphs vs PyTorch (ONNX Runtime via Node: python/onnx_check). Skips without node/onnxruntime-node."""
import collections
import os

import onnx
import pytest
import torch

from duet_ref.checkpoint import load_model
from duet_ref.onnx_export import export_model
from duet_ref.onnx_validate import compare, runtime_available

from helpers import FIXTURES

GRAPHS = ["text_encoder", "prompt_kv", "denoiser", "refiner_fusion"]
ALLOWED = {"Add", "Sub", "Mul", "Div", "Neg", "MatMul", "Gemm", "Conv", "Sigmoid", "Tanh", "Softmax", "Cos", "Sin",
           "LayerNormalization", "InstanceNormalization", "ReduceMean", "ReduceSum", "Reshape", "Transpose",
           "Concat", "Slice", "Gather", "Unsqueeze", "Shape", "Constant", "ConstantOfShape", "Identity", "Cast",
           "Where", "Not", "Equal", "Greater", "Expand", "Pad", "DepthToSpace", "Split", "Squeeze", "Pow", "Sqrt"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = load_model(os.path.join(FIXTURES, "awkward"))
    d = str(tmp_path_factory.mktemp("onnx"))
    export_model(model, d)
    return model, d


def test_graphs_are_plain_opset17(exported):
    _, d = exported
    for g in GRAPHS:
        m = onnx.load(os.path.join(d, f"{g}.onnx"))
        onnx.checker.check_model(m)
        assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in m.opset_import)
        ops = collections.Counter(n.op_type for n in m.graph.node)
        assert set(ops) <= ALLOWED, f"{g}: unexpected ops {set(ops) - ALLOWED}"
        for n in m.graph.node:  # no float64 anywhere (TensorRT has no double)
            if n.op_type == "Cast":
                assert all(a.i != onnx.TensorProto.DOUBLE for a in n.attribute if a.name == "to")
        assert all(t.data_type != onnx.TensorProto.DOUBLE for t in m.graph.initializer)
    assert "LayerNormalization" in {n.op_type for n in onnx.load(os.path.join(d, "denoiser.onnx")).graph.node}


def test_onnx_matches_pytorch(exported, tmp_path):
    ok, why = runtime_available()
    if not ok:
        pytest.skip(f"ONNX Runtime check skipped: {why}")
    model, d = exported
    L = model.cfg["text"]["max_length"]
    for B, l in [(2, L), (3, L - 3)]:
        errs = compare(model, d, str(tmp_path), B, l)
        assert len(errs) == 2 + 2 * model.cfg["backbone"]["depth"] + 2 + 3
        bad = {k: e for k, e in errs.items() if not e <= 1e-4}
        assert not bad, f"B={B} L={l}: {bad}"
