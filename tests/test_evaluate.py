"""`skinscan evaluate`'s scoring: its refusals are the engine's, on the same images and the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from skinscan.evaluation.evaluate import Scorer, score_records
from skinscan.runtime.checks import NOT_A_LESION
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction
from skinscan.training.records import Record
from synthetic import make_lesion


def write_images(folder: Path) -> list[Path]:
    """Lesions the engine judges, and images it refuses for each of its reasons."""
    rng = np.random.default_rng(7)
    images = {f"lesion{i}.png": make_lesion(rng, malignant=i % 2 == 1) for i in range(6)}
    images["noise.png"] = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))  # not a lesion
    images["dark.png"] = Image.new("RGB", (128, 128), (6, 5, 7))  # too dark
    images["blank.png"] = Image.new("RGB", (128, 128), (180, 140, 120))  # skin colour without any detail
    paths = []
    for name, image in images.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def test_evaluate_refuses_what_the_engine_refuses(engine: Engine, tiny_model_dir: Path, tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    records = [Record(path=p, label=0, key=f"test:{p.stem}", group=p.stem) for p in paths]
    scored = score_records(records, Scorer(str(tiny_model_dir)), batch_size=4)  # batches cut across the kinds
    results = engine.predict_batch(paths)
    assert all(isinstance(r, Prediction) for r in results)
    verdicts = [r for r in results if isinstance(r, Prediction)]
    assert [r.path for r in scored["records"]] == paths
    assert scored["rejected"].tolist() == [p.status == "rejected" for p in verdicts]
    # both parts of the rule are exercised: a refusal for the quality and one for the feature distance
    reasons = {p.path.stem: v.reason for p, v in zip(records, verdicts, strict=True)}
    assert reasons["noise"] == NOT_A_LESION
    assert reasons["dark"] is not None and "dark" in reasons["dark"]
    assert not any(reasons[f"lesion{i}"] for i in range(6))
