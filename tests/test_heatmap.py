"""The heatmap's scale is the decision's: uncoloured below the threshold, yellow at it, red at the highest severity."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.core.calibration import Calibration
from skinscan.core.heatmap import (
    BELOW_THRESHOLD_LEGEND,
    HEATMAP_LEGEND,
    colourise,
    decision_heat,
    logit_at,
    top_step_probability,
)
from skinscan.core.severity import severity_for
from skinscan.runtime.engine import Engine
from skinscan.runtime.legend import with_legend
from synthetic import lesion_bytes


@pytest.mark.parametrize(("temperature", "bias"), [(1.0, 0.0), (0.95, 1.5), (2.0, -0.7)])
def test_logit_at_inverts_the_calibration(temperature: float, bias: float) -> None:
    calibration = Calibration(temperature, bias)
    for p in (0.01, 0.078, 0.5, 0.97):
        assert calibration.apply(np.array([logit_at(p, calibration)]))[0] == pytest.approx(p, rel=1e-6)


@pytest.mark.parametrize("threshold", [0.078, 0.3, 0.5])
def test_red_is_where_the_highest_severity_begins(threshold: float) -> None:
    top = top_step_probability(threshold)
    assert severity_for(top, threshold).level == 5 and severity_for(top + 1e-6, threshold).level == 6


def test_cells_below_the_threshold_stay_uncoloured() -> None:
    calibration = Calibration(0.95, 1.5)
    low, high = logit_at(0.078, calibration), logit_at(top_step_probability(0.078), calibration)
    cells = np.array([low - 1.0, low - 1e-3, low, (low + high) / 2, high, high + 5.0], dtype=np.float32)
    heat = decision_heat(cells, 0.078, calibration)
    assert heat[:2].tolist() == [-1.0, -1.0]
    assert heat[2:].tolist() == pytest.approx([0.0, 0.5, 1.0, 1.0], abs=1e-5)
    assert (decision_heat(cells, 0.078, calibration, above_threshold=False) == -1.0).all()
    rgb, alpha = colourise(heat)
    assert (alpha[:2] == 0).all() and (alpha[2:] > 0).all()
    assert rgb[2, 0] > 200 and rgb[2, 1] > 180  # yellow at the threshold
    assert rgb[-1, 0] > rgb[-1, 1] * 3  # red at the top


def overlay(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_a_photo_below_the_threshold_shows_no_colour(tiny_model_dir: Path) -> None:
    photo = lesion_bytes(True, seed=1, size=160)
    engine = Engine(tiny_model_dir, threads=1, threshold=1.0, check_inputs=False)
    below = engine.predict(photo, heatmap=True)
    decoded = engine.decode(photo)  # perhaps at reduced scale, as the overlay is drawn from it
    plain = np.asarray(decoded.resize((160, 160), Image.Resampling.BILINEAR), dtype=np.int16)
    assert below.ok and below.label == "benign" and below.heatmap_legend == BELOW_THRESHOLD_LEGEND
    assert np.abs(overlay(below.overlay_png or b"") - plain).max() <= 2  # the photo as it is (resampling aside)
    assert below.heatmap is not None and float(below.heatmap.max()) == 0.0
    above = Engine(tiny_model_dir, threads=1, threshold=1e-9, check_inputs=False).predict(photo, heatmap=True)
    assert above.label == "malignant" and above.heatmap_legend == HEATMAP_LEGEND
    assert np.abs(overlay(above.overlay_png or b"") - plain).max() > 30  # coloured where it reaches the threshold


def test_a_heatmap_file_carries_its_legend(tiny_model_dir: Path) -> None:
    result = Engine(tiny_model_dir, threads=1, threshold=1e-9, check_inputs=False).predict(
        lesion_bytes(True, seed=2, size=160), heatmap=True
    )
    png = result.overlay_png or b""
    page = Image.open(io.BytesIO(with_legend(png, result.heatmap_legend)))
    shown = Image.open(io.BytesIO(png))
    assert page.width >= shown.width and page.height > shown.height + 60  # the ramp and the sentence below
