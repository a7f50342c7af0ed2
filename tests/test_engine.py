"""The inference engine on a real (tiny) exported model: verdicts, heatmaps, checks, errors, batches."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.core.errors import InvalidImageError, ModelFormatError, ModelNotFoundError, UnsupportedFormatError
from skinscan.runtime.engine import MODEL_ENV, Engine, resolve_model_path
from skinscan.runtime.result import Prediction
from synthetic import lesion_bytes


def test_malignant_lesions_score_higher(engine: Engine) -> None:
    benign = [engine.predict(lesion_bytes(False, seed=500 + i)) for i in range(6)]
    malignant = [engine.predict(lesion_bytes(True, seed=600 + i)) for i in range(6)]
    assert all(p.status == "ok" for p in benign + malignant)
    assert max(p.probability for p in benign) < min(p.probability for p in malignant)  # type: ignore[type-var]
    assert {p.label for p in malignant} == {"malignant"} and {p.label for p in benign} == {"benign"}


def test_prediction_fields_are_consistent(engine: Engine) -> None:
    p = engine.predict(lesion_bytes(True, seed=1))
    assert p.label == ("malignant" if p.probability >= p.threshold else "benign")  # type: ignore[operator]
    assert (p.severity == 1) == (p.label == "benign")
    data = p.to_dict()
    for key in ("probability", "label", "severity", "description", "recommendation", "threshold", "disclaimer"):
        assert data[key] is not None, key
    assert "not a diagnosis" in data["disclaimer"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "TIFF", "WEBP"])
def test_formats_from_bytes_path_and_stream(engine: Engine, fmt: str, tmp_path: Path) -> None:
    data = lesion_bytes(True, seed=3, fmt=fmt)
    from_bytes = engine.predict(data)
    path = tmp_path / "image.bin"  # the name says nothing: the format is read from the bytes
    path.write_bytes(data)
    assert engine.predict(path).probability == pytest.approx(from_bytes.probability, abs=1e-6)
    assert engine.predict(io.BytesIO(data)).probability == pytest.approx(from_bytes.probability, abs=1e-6)


def test_heatmap_is_image_sized_and_a_png(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, check_inputs=False)  # a squashed synthetic lesion; checks are tested below
    image = Image.open(io.BytesIO(lesion_bytes(True, seed=4, size=96))).resize((150, 100))
    p = engine.predict(image, heatmap=True)
    assert p.heatmap is not None and p.heatmap.shape == (100, 150)
    assert p.heatmap.min() >= 0.0 and p.heatmap.max() <= 1.0
    assert p.heatmap[:, :25].max() == 0.0  # outside the analysed centre square there is no evidence
    overlay = Image.open(io.BytesIO(p.overlay_png or b""))
    assert overlay.format == "PNG" and overlay.size == (150, 100)
    assert engine.predict(image).heatmap is None  # only on request


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (200, 200), (0, 0, 0)),  # black
        Image.new("RGB", (200, 200), (5, 4, 6)),  # nearly black
        Image.new("RGB", (200, 200), (180, 140, 120)),  # blank skin colour, no detail
    ],
)
def test_unjudgeable_images_are_rejected_with_a_reason(engine: Engine, image: Image.Image) -> None:
    p = engine.predict(image)
    assert p.status == "rejected" and p.probability is None and p.label is None
    assert p.reason and ("dark" in p.reason or "blank" in p.reason or "blurred" in p.reason)


def test_noise_is_not_a_lesion(engine: Engine) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    p = engine.predict(Image.fromarray(noise))
    assert p.status == "rejected" and "skin lesion" in (p.reason or "")


def test_checks_can_be_switched_off(tiny_model_dir: Path) -> None:
    p = Engine(tiny_model_dir, check_inputs=False).predict(Image.new("RGB", (64, 64)))
    assert p.status == "ok" and p.probability is not None


def test_threshold_override(tiny_model_dir: Path) -> None:
    strict = Engine(tiny_model_dir, threshold=0.999999)
    p = strict.predict(lesion_bytes(True, seed=9))
    assert p.threshold == pytest.approx(0.999999)
    assert p.label == ("malignant" if p.probability >= p.threshold else "benign")  # type: ignore[operator]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidImageError),
        (b"hello, this is text", InvalidImageError),
        (lesion_bytes(True, seed=1)[:300], InvalidImageError),
        (b"%PDF-1.4\n%...", UnsupportedFormatError),
    ],
)
def test_bad_input_raises_the_engine_error(engine: Engine, data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        engine.predict(data)


def test_batch_reports_each_failure_in_place(engine: Engine) -> None:
    results = engine.predict_batch([lesion_bytes(False, seed=1), b"junk", lesion_bytes(True, seed=2)])
    assert isinstance(results[0], Prediction) and isinstance(results[2], Prediction)
    assert isinstance(results[1], InvalidImageError)
    single = engine.predict(lesion_bytes(True, seed=2))
    assert results[2].probability == pytest.approx(single.probability, abs=1e-5)


def test_model_resolution(tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MODEL_ENV, str(tiny_model_dir))
    assert resolve_model_path() == tiny_model_dir / "model.onnx"
    with pytest.raises(ModelNotFoundError, match="no model at"):
        resolve_model_path(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelFormatError):
        Engine(broken)


def test_large_jpeg_is_decoded_small_but_reported_at_full_size(tiny_model_dir: Path) -> None:
    engine = Engine(tiny_model_dir, check_inputs=False)
    big = Image.open(io.BytesIO(lesion_bytes(True, seed=8, size=120))).resize((1600, 1200))
    buffer = io.BytesIO()
    big.save(buffer, format="JPEG", quality=90)
    assert engine.decode(buffer.getvalue()).size[0] < 1600  # Pillow's draft shrank the decode
    p = engine.predict(buffer.getvalue(), heatmap=True)
    assert p.image_size == (1600, 1200)
    assert p.heatmap is not None and p.heatmap.shape == (1200, 1600)


def test_a_trim_square_model_places_its_heatmap_on_the_trimmed_region(tiny_model_dir: Path, tmp_path: Path) -> None:
    """Black bars cut away before the centre square: the heatmap covers the photo between them, not the bars,
    also for a large JPEG decoded at reduced scale."""
    import json
    import shutil

    trimmed = tmp_path / "trimmed"
    shutil.copytree(tiny_model_dir, trimmed)
    spec = json.loads((trimmed / "model.json").read_text())
    (trimmed / "model.json").write_text(json.dumps({**spec, "crop": "trim_square"}))
    engine = Engine(trimmed, check_inputs=False)
    inner = Image.open(io.BytesIO(lesion_bytes(True, seed=9, size=160))).convert("RGB").resize((2400, 1800))
    framed = Image.new("RGB", (2400, 2600))  # bars of 400 px above and below, then the 4:3 photo
    framed.paste(inner, (0, 400))
    data = io.BytesIO()
    framed.save(data, "JPEG", quality=90)
    result = engine.predict(data.getvalue(), heatmap=True)
    heat = result.heatmap
    assert heat is not None and heat.shape == (2600, 2400) and result.image_size == (2400, 2600)
    assert heat[:390].max() == 0 and heat[2210:].max() == 0  # nothing on the bars
    assert heat[420:2180, 320:2080].min() >= 0 and heat[420:2180, 320:2080].max() > 0  # the analysed square
    assert heat[1000, :280].max() == 0 and heat[1000, 2120:].max() == 0  # left and right of the square


def test_a_greyscale_photo_is_refused_and_asked_for_in_colour(engine: Engine) -> None:
    from skinscan.runtime.checks import NOT_IN_COLOUR

    colour = Image.open(io.BytesIO(lesion_bytes(True, seed=11, size=128)))
    assert engine.predict(colour).status == "ok"
    grey = engine.predict(colour.convert("L"))  # a one-channel file, as a scanner or a "mono" filter writes
    assert (grey.status, grey.reason, grey.probability) == ("rejected", NOT_IN_COLOUR, None)
    assert engine.predict(colour.convert("L").convert("RGB")).reason == NOT_IN_COLOUR  # grey in three channels too
    assert "colour photo" in NOT_IN_COLOUR


def test_a_bright_blue_image_is_not_called_dark(engine: Engine) -> None:
    from skinscan.runtime.checks import NOT_A_LESION

    p = engine.predict(Image.new("RGB", (200, 200), (0, 0, 255)))
    assert (p.status, p.reason) == ("rejected", NOT_A_LESION)
    assert p.quality["brightness"] > 100  # its brightest channel, not its luminance of about 17
