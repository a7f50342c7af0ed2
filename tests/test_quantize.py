"""8-bit quantisation: a real int8 graph that the engine runs, with the float model's verdicts and input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from skinscan.runtime.engine import Engine  # noqa: E402
from skinscan.training.quantize import only_for, quantize_model  # noqa: E402
from synthetic import lesion_bytes  # noqa: E402


@pytest.fixture(scope="module")
def int8_dir(tiny_model_dir: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8")
    quantize_model(tiny_model_dir, tiny_checkpoint, out, calibration_images=32, command="skinscan quantize ...")
    return out


def test_the_graph_is_really_8_bit_and_describes_itself(int8_dir: Path, tiny_model_dir: Path) -> None:
    proto = onnx.load(str(int8_dir / "model.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(init.data_type == onnx.TensorProto.INT8 for init in proto.graph.initializer)
    spec, float_spec = Engine(int8_dir).spec, Engine(tiny_model_dir).spec
    assert spec.id.startswith("tiny-cnn-int8-") and spec.id != float_spec.id
    assert spec.metrics == {}  # test metrics belong to the float graph until measured again
    assert spec.training_data["quantisation"]["from_model"] == float_spec.id
    assert 0.0 < spec.threshold < 1.0 and spec.ood_threshold is not None and spec.command


def test_int8_agrees_with_the_float_model(int8_dir: Path, tiny_model_dir: Path) -> None:
    fast, exact = Engine(int8_dir), Engine(tiny_model_dir)
    images = [lesion_bytes(malignant=bool(i % 2), seed=100 + i) for i in range(24)]
    p_fast = np.array([fast.predict(b).probability for b in images], dtype=float)
    p_exact = np.array([exact.predict(b).probability for b in images], dtype=float)
    assert np.corrcoef(p_fast, p_exact)[0, 1] > 0.95
    labels = [fast.predict(b).label for b in images]
    assert sum(label == ("malignant" if i % 2 else "benign") for i, label in enumerate(labels)) >= 20


def test_int8_keeps_the_input_checks(int8_dir: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    p = Engine(int8_dir).predict(Image.fromarray(noise))
    assert p.status == "rejected" and "skin lesion" in (p.reason or "")


def test_only_the_input_check_branch_stays_float(tiny_model_dir: Path) -> None:
    graph = onnx.load(str(tiny_model_dir / "model.onnx")).graph
    excluded = only_for(graph, "ood", ("logit", "cam"))
    kinds = {n.op_type for n in graph.node if n.name in excluded}
    assert "MatMul" in kinds and "Conv" not in kinds  # the distances, not the backbone
