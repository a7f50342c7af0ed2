"""The one result type: its JSON answer (what clients read), and reading a server's answer back."""

from __future__ import annotations

import base64
import dataclasses

import pytest

from skinscan import DISCLAIMER
from skinscan.runtime.result import Prediction

# the answer's keys in order: clients (the web page, the desktop app, scripts) read these
ANSWER_KEYS = [
    "status", "verdict", "verdict_code", "probability", "label", "severity", "severity_name", "description",
    "recommendation", "colour",
    "threshold", "reason", "image_size", "heatmap_png", "heatmap_legend", "diagnoses", "site", "disclaimer",
]  # fmt: skip


def verdict(**changes: object) -> Prediction:
    values: dict[str, object] = {
        "status": "ok", "threshold": 0.154321, "probability": 0.9123456, "label": "malignant", "severity": 5,
        "severity_name": "High concern", "description": "d", "recommendation": "r", "colour": "#d84315",
        "image_size": (640, 480), "overlay_png": b"\x89PNG fake", "ood_distance": 0.4, "quality": {"brightness": 90.0},
        "timing_ms": 12.0,
    }  # fmt: skip
    return dataclasses.replace(Prediction(**values), **changes)  # type: ignore[arg-type]


def test_the_json_answer() -> None:
    data = verdict().to_dict()
    assert list(data) == ANSWER_KEYS
    assert (data["probability"], data["threshold"]) == (0.9123, 0.1543)  # four decimals
    assert data["image_size"] == [640, 480] and data["disclaimer"] == DISCLAIMER
    assert base64.b64decode(data["heatmap_png"]) == b"\x89PNG fake"
    # the heatmap only when there is one and it is asked for; the in-process fields never
    assert "heatmap_png" not in verdict().to_dict(include_heatmap=False)
    assert "heatmap_png" not in verdict(overlay_png=None).to_dict()
    refused = Prediction(status="rejected", threshold=0.5, reason="too dark").to_dict()
    assert refused["probability"] is None and refused["reason"] == "too dark" and refused["image_size"] == [0, 0]


def test_a_server_answer_reads_back_as_the_same_result() -> None:
    original = verdict()
    answer = {**original.to_dict(), "model": {"id": "tiny", "version": "1"}, "time": "now", "latency_ms": 3.0}
    read = Prediction.from_dict(answer)  # the server's own keys are ignored
    assert read.to_dict() == original.to_dict()
    assert read.overlay_png == original.overlay_png and read.image_size == (640, 480)
    assert read.ood_distance is None and read.quality == {}  # not in the answer: they stay in the server


def test_reading_an_answer_with_missing_or_null_optional_keys() -> None:
    read = Prediction.from_dict({"status": "rejected", "threshold": 0.5, "reason": "too dark", "heatmap_png": None})
    assert not read.ok and read.probability is None and read.overlay_png is None
    assert read.image_size == (0, 0) and read.disclaimer == DISCLAIMER
    for missing in ("status", "threshold"):
        with pytest.raises(ValueError, match=missing):
            Prediction.from_dict({k: v for k, v in {"status": "ok", "threshold": 0.5}.items() if k != missing})
    with pytest.raises(ValueError):
        Prediction.from_dict({"status": "ok", "threshold": 0.5, "heatmap_png": "not base64!"})


def test_display_helpers() -> None:
    assert verdict(verdict="See a doctor soon").display_label == "See a doctor soon"
    assert verdict().ok and verdict().display_label == "Malignant"  # an older server's answer, with no verdict
    assert not verdict(status="rejected").ok and verdict(label=None).display_label == ""


def test_most_likely_diagnoses_and_their_line() -> None:
    from skinscan.core.diagnosis import DIAGNOSES, most_likely

    likely = most_likely([0.05, 0.6, 0.02, 0.03, 0.25, 0.04, 0.01])
    assert [d["code"] for d in likely] == ["nv", "bkl", "mel"] and likely[0]["probability"] == 0.6
    assert likely[2]["malignant"] and not likely[0]["malignant"] and len(DIAGNOSES) == 7
    line = verdict(diagnoses=likely).diagnosis_line
    assert line.startswith("Most likely") and "not a diagnosis" in line and "naevus (mole) 60%" in line
    assert verdict().diagnosis_line == ""  # a model without the output says nothing about diagnoses
