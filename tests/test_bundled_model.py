"""The committed model is real, describes itself, and works with no arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skinscan.runtime.engine import Engine, bundled_model_path

pytestmark = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[1] / "models" / "model.onnx").is_file(), reason="no bundled model in models/"
)


@pytest.fixture(scope="module")
def bundled() -> Engine:
    return Engine()


def test_bundled_model_describes_itself(bundled: Engine) -> None:
    spec = bundled.spec
    assert bundled.path == bundled_model_path()
    assert spec.architecture == "efficientnet-lite0" and spec.input_size == 224
    assert spec.colour_constancy == "shades_of_gray"
    assert 0.0 < spec.threshold < 0.5 and spec.temperature > 0  # a sensitivity-first operating point
    assert "non-commercial" in spec.license and "not a diagnosis" in spec.intended_use.lower()
    for name in ("isic2018_test", "kaggle_test", "isic2017_test", "isic2020_test"):
        metrics = spec.metrics[name]
        assert metrics["n"] >= 600 and len(metrics["auc_ci"]) == 2
    # model 2.0: the seven-diagnosis output and the pooled features, and borders trimmed before the crop
    assert spec.outputs == ("logit", "cam", "ood", "features", "diagnosis") and len(spec.diagnoses) == 7
    assert spec.crop == "trim_square" and spec.version.startswith("2.")
    # the ISIC 2018 metrics say how often each diagnosis is called malignant; the counts add up to the matrix
    by_dx = {row["group"]: row for row in spec.metrics["isic2018_test"]["by_diagnosis"]}
    assert set(by_dx) == {"mel", "bcc", "akiec", "nv", "bkl", "df", "vasc"}
    (_, fp), (_, tp) = spec.metrics["isic2018_test"]["confusion_matrix"]
    assert sum(by_dx[d]["called_malignant"] for d in ("mel", "bcc", "akiec")) == tp
    assert sum(by_dx[d]["called_malignant"] for d in ("nv", "bkl", "df", "vasc")) == fp


@pytest.mark.data
def test_bundled_model_ranks_real_lesions(bundled: Engine, shared_data: Path) -> None:
    from skinscan.training.records import load_records

    records = load_records(shared_data / "isic-mvb", "test")
    sample = records[:: max(1, len(records) // 80)]
    results = bundled.predict_batch([r.path for r in sample])
    scored = [(r.label, p.probability) for r, p in zip(sample, results, strict=True) if getattr(p, "probability", None)]
    assert len(scored) >= 0.9 * len(sample)  # the input checks pass almost all real dermoscopy
    judged = [p for p in results if getattr(p, "probability", None) is not None]
    assert all(p.diagnoses and len(p.diagnoses) == 3 for p in judged)  # type: ignore[union-attr]
    from sklearn.metrics import roc_auc_score

    labels, probs = zip(*scored, strict=True)
    assert roc_auc_score(np.array(labels), np.array(probs)) > 0.85


@pytest.mark.data
def test_predict_with_no_model_argument_uses_the_bundled_model(shared_data: Path) -> None:
    image = next((shared_data / "isic-mvb" / "test" / "malignant").glob("*.jpg"))
    result = subprocess.run(
        [sys.executable, "-m", "skinscan.cli", "predict", str(image), "--json"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert '"status": "ok"' in result.stdout or '"status": "rejected"' in result.stdout


def test_the_heatmaps_scale_holds_for_the_bundled_network(bundled: Engine) -> None:
    # core/heatmap.py reads a cell's value as the logit the photo would have if it all looked like that cell; that
    # holds exactly when the logit is the map's mean (global average pooling into a linear head)
    batch = np.random.default_rng(0).normal(size=(3, 3, 224, 224)).astype(np.float32)
    out = bundled.run_outputs(batch)
    assert np.allclose(out["cam"].reshape(3, -1).mean(axis=1), out["logit"], atol=1e-4)
