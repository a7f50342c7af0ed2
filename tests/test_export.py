"""Export: the ONNX graph computes what the PyTorch model computes, and carries its spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from skinscan.core.spec import METADATA_KEY, ModelSpec  # noqa: E402
from skinscan.runtime.engine import Engine  # noqa: E402
from skinscan.training.checkpoint import load_checkpoint  # noqa: E402
from skinscan.training.export import OOD_QUANTILE, ExportModule, ood_thresholds  # noqa: E402
from skinscan.training.fitting import FeatureGaussian  # noqa: E402
from synthetic import lesion_bytes  # noqa: E402


def test_onnx_outputs_equal_pytorch(tiny_checkpoint: Path, tiny_model_dir: Path) -> None:
    model, ckpt = load_checkpoint(tiny_checkpoint)
    engine = Engine(tiny_model_dir)
    x = np.random.default_rng(0).normal(size=(5, 3, 64, 64)).astype(np.float32)
    logit, cam, ood = engine.run(x)
    with torch.no_grad():
        t = torch.from_numpy(x)
        maps, texture = model.maps_and_texture(t)
        pooled = model.pool(maps)
        np.testing.assert_allclose(logit, model(t).numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cam, model.cam(maps, pooled).numpy(), rtol=1e-4, atol=1e-4)
    # the input-check score: the larger of the two distances, each over its validation quantile
    thresholds = ood_thresholds(ckpt, OOD_QUANTILE)
    features = FeatureGaussian.from_dict(ckpt.feature_gaussian).distance(pooled.numpy()) / thresholds["ood"]
    textures = FeatureGaussian.from_dict(ckpt.texture_gaussian).distance(texture.numpy()) / thresholds["texture"]
    np.testing.assert_allclose(ood, np.maximum(features, textures), rtol=1e-3, atol=1e-4)
    assert engine.spec.ood_threshold == 1.5  # the margin the fixture exported with, over a score scaled to 1


def test_spec_travels_in_the_onnx_file_and_beside_it(tiny_model_dir: Path) -> None:
    proto = onnx.load(str(tiny_model_dir / "model.onnx"))
    embedded = ModelSpec.from_json({p.key: p.value for p in proto.metadata_props}[METADATA_KEY])
    beside = ModelSpec.from_json((tiny_model_dir / "model.json").read_text())
    assert embedded == beside
    assert beside.architecture == "tiny-cnn" and beside.input_size == 64
    assert beside.ood_threshold is not None and beside.cam_size == (8, 8)
    assert "CC BY-NC-SA" not in beside.license  # synthetic training data, not HAM10000
    # the recipe travels too, without this machine's paths; and how the threshold was chosen
    recipe = beside.training_data["training_config"]
    assert recipe["model"] == "tiny-cnn" and recipe["epochs"] == 6 and not {"data", "out", "threads"} & set(recipe)
    assert "within every source" in beside.training_data["threshold_rule"]


def test_engine_reads_the_embedded_spec_without_model_json(tiny_model_dir: Path, tmp_path: Path) -> None:
    lone = tmp_path / "model.onnx"
    lone.write_bytes((tiny_model_dir / "model.onnx").read_bytes())
    assert Engine(lone).spec.id == json.loads((tiny_model_dir / "model.json").read_text())["id"]


def test_export_without_feature_statistics_still_works(tiny_checkpoint: Path) -> None:
    model, ckpt = load_checkpoint(tiny_checkpoint)
    # a checkpoint from before the input checks were fitted
    bare = ckpt.with_fit(feature_gaussian=None, texture_gaussian=None, val_ood_distance=[], val_texture_distance=[])
    module = ExportModule(model, bare)
    logit, _, ood, *_ = module(torch.zeros(1, 3, 64, 64))
    assert logit.shape == (1,) and ood.shape == (1,)


def test_features_and_diagnosis_outputs_equal_pytorch(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """The pooled features always, and the seven diagnosis probabilities where the checkpoint has the head."""
    from skinscan.core.diagnosis import DIAGNOSES
    from skinscan.training.export import export_model

    model, ckpt = load_checkpoint(tiny_checkpoint)
    head = torch.nn.Linear(32, 7)
    export_model(model, ckpt.with_fit(diagnosis_head=head.state_dict()), tmp_path)
    engine = Engine(tmp_path)
    assert engine.spec.outputs == ("logit", "cam", "ood", "features", "diagnosis")
    assert engine.spec.diagnoses == DIAGNOSES
    x = np.random.default_rng(1).normal(size=(3, 3, 64, 64)).astype(np.float32)
    out = engine.run_outputs(x)
    with torch.no_grad():
        pooled = model.pool(model.feature_maps(torch.from_numpy(x)))
        np.testing.assert_allclose(out["features"], pooled.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(out["diagnosis"], torch.softmax(head(pooled), 1).numpy(), rtol=1e-4, atol=1e-5)
    result = engine.predict(lesion_bytes(True, seed=2), heatmap=False)
    codes = [d["code"] for d in result.diagnoses or []]
    probs = [d["probability"] for d in result.diagnoses or []]
    assert len(codes) == 3 and set(codes) <= set(DIAGNOSES) and probs == sorted(probs, reverse=True)
    assert result.to_dict()["diagnoses"][0]["name"]  # in the JSON answer, with a name a person reads
    from skinscan.runtime.predict import format_line

    assert f"most likely: {result.diagnoses[0]['name']}" in format_line(Path("x.jpg"), result)  # type: ignore[index]
