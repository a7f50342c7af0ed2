"""experiments/onnx_to_checkpoint.py: the bundled export back into a checkpoint that reproduces it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skinscan.core.preprocess import prepare_pixels, to_input  # noqa: E402
from skinscan.runtime.engine import Engine  # noqa: E402
from skinscan.runtime.imaging import load_image  # noqa: E402
from skinscan.training.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_the_bundled_model_rebuilt_as_a_checkpoint_gives_its_logits(synthetic_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "rebuilt.pt"
    done = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "onnx_to_checkpoint.py"), str(ROOT / "models"),
         "--data", str(synthetic_data), "--images", "32", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    model, ckpt = load_checkpoint(out)
    engine = Engine(ROOT / "models", threads=1)
    assert ckpt.model_name == engine.spec.architecture and ckpt.preprocess == engine.spec.preprocess
    images = sorted((synthetic_data / "test").rglob("*.png"))[:8]
    batch = to_input(np.stack([prepare_pixels(load_image(p), ckpt.preprocess) for p in images]), ckpt.preprocess)
    with torch.no_grad():
        ours = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(ours, engine.run(batch)[0], atol=1e-3, rtol=1e-4)
