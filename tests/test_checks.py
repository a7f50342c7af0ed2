"""The input checks' refusal rule, case by case (the engine and evaluate both apply it)."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.core.preprocess import PreprocessSpec, prepare_pixels
from skinscan.core.quality import Quality, QualityLimits, fit_quality_limits, measure_quality
from skinscan.core.spec import ModelSpec
from skinscan.runtime.checks import NOT_A_LESION, NOT_IN_COLOUR, TOO_DARK, quality_problem, refusal_reason
from skinscan.runtime.engine import Engine
from skinscan.training.records import load_records

FINE = Quality(brightness=120.0, contrast=30.0, sharpness=5.0, chroma=15.0, saturation=0.1)
DARK = Quality(brightness=5.0, contrast=30.0, sharpness=5.0, chroma=15.0, saturation=0.1)


@pytest.mark.parametrize(
    ("quality", "distance", "ood_threshold", "expected"),
    [
        (FINE, None, None, None),
        (FINE, 0.5, 1.0, None),
        (FINE, 1.0, 1.0, None),  # at the threshold is still a lesion
        (FINE, 1.5, 1.0, NOT_A_LESION),
        (FINE, 1.5, None, None),  # a model without the check
        (FINE, None, 1.0, None),  # before the model has run: the quality alone
        (DARK, None, None, "too dark"),
        (DARK, 1.5, 1.0, "too dark"),  # the quality's reason comes first
    ],
)  # fmt: skip
def test_refusal_reason(quality: Quality, distance: float | None, ood_threshold: float | None,
                        expected: str | None) -> None:  # fmt: skip
    reason = refusal_reason(quality, QualityLimits(), distance, ood_threshold)
    if expected is None or expected == NOT_A_LESION:
        assert reason == expected
    else:
        assert reason is not None and expected in reason


# --- colour: greyscale photos and saturated single colours (issue 15, item 11) --------------------------------------

BUNDLED_SPEC = Path(__file__).resolve().parents[1] / "models" / "model.json"
# The test split of each collection in ../shared/data, as `load_records` names it.
COLLECTIONS = {"ham10000": "test", "isic-mvb": "test", "isic2017": "test", "isic2020": "test"}
SEPIA = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])


def prepared(image: Image.Image) -> Quality:
    """The measures the engine takes of an image, with the bundled model's preprocessing."""
    return measure_quality(prepare_pixels(image, bundled_preprocess()))


def bundled_preprocess() -> PreprocessSpec:
    if not BUNDLED_SPEC.is_file():
        pytest.skip("no bundled model in models/")
    return ModelSpec.from_dict(json.loads(BUNDLED_SPEC.read_text())).preprocess


def recoloured(image: Image.Image, how: str) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if how == "warm cast":  # a yellow-orange light, as an old bulb or a phone's "warm" setting gives
        out = rgb * np.array([1.25, 0.95, 0.6])
    elif how == "half sepia":  # a colour photo under a sepia filter at half strength: its colours are still there
        out = 0.5 * rgb + 0.5 * rgb @ SEPIA.T
    elif how == "sepia":  # a sepia filter at full strength: a brown tint, whose colour constancy leaves little
        out = rgb @ SEPIA.T
    elif how == "faded":  # 30 % of the colour left, as a washed-out print
        out = 0.3 * rgb + 0.7 * np.asarray(image.convert("L").convert("RGB"), dtype=np.float32)
    else:
        raise ValueError(how)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


COLOUR_REASONS = (NOT_IN_COLOUR, NOT_A_LESION, TOO_DARK)


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (replace(FINE, chroma=0.0), NOT_IN_COLOUR),
        (replace(FINE, chroma=0.29), NOT_IN_COLOUR),
        (replace(FINE, chroma=0.3), None),  # at the limit is still colour
        (replace(FINE, saturation=0.96), NOT_A_LESION),
        (replace(FINE, saturation=0.95), None),
        (replace(FINE, saturation=1.0, contrast=0.0), NOT_A_LESION),  # a flat pure colour is not skin, not "blank"
        (replace(FINE, chroma=0.0, contrast=0.0), "nearly blank"),  # a flat grey image is blank, not "not in colour"
        (replace(FINE, chroma=0.0, brightness=5.0), "too dark"),
    ],
)  # fmt: skip
def test_colour_limits(quality: Quality, expected: str | None) -> None:
    reason = quality_problem(quality, QualityLimits())
    assert reason == expected if expected in (None, NOT_IN_COLOUR, NOT_A_LESION) else expected in (reason or "")


def test_not_in_colour_says_what_to_do() -> None:
    assert "Send a colour photo" in NOT_IN_COLOUR


SATURATED = [
    ((0, 0, 255), NOT_A_LESION),  # a pure bright blue is bright: its luminance is low, its brightest channel is not
    ((0, 0, 160), NOT_A_LESION),
    ((0, 40, 255), NOT_A_LESION),
    ((255, 0, 0), NOT_A_LESION),
    ((0, 255, 0), NOT_A_LESION),
    ((255, 0, 255), NOT_A_LESION),
    ((6, 5, 7), TOO_DARK),  # a dark photo is still too dark
    ((0, 0, 12), TOO_DARK),  # and so is a very dark blue
]


def flat_and_textured(colour: tuple[int, int, int]) -> tuple[Image.Image, Image.Image]:
    """One colour all over, and the same with texture, as a photo of a blue cloth or a screen has."""
    flat = Image.new("RGB", (256, 256), colour)
    shade = 1 + 0.15 * np.random.default_rng(0).standard_normal((256, 256, 1))
    return flat, Image.fromarray(np.clip(np.asarray(flat, dtype=np.float32) * shade, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(("colour", "expected"), SATURATED)
def test_a_saturated_colour_is_not_dark_but_not_skin(colour: tuple[int, int, int], expected: str) -> None:
    for image in flat_and_textured(colour):
        assert quality_problem(prepared(image), QualityLimits()) == expected


@pytest.fixture(scope="module")
def bundled() -> Engine:
    if not BUNDLED_SPEC.is_file():
        pytest.skip("no bundled model in models/")
    return Engine()


@pytest.mark.parametrize(("colour", "expected"), SATURATED)
def test_the_engine_gives_a_saturated_colour_the_not_a_lesion_reason(
    bundled: Engine, colour: tuple[int, int, int], expected: str
) -> None:
    """Also as a JPEG, whose faint traces of the other colours colour constancy blows up into colour noise: the
    measures no longer see one colour, and the model's feature distance refuses it for the same reason."""
    _, textured = flat_and_textured(colour)
    for image in (*flat_and_textured(colour), jpeg(textured, 90)):
        result = bundled.predict(image)
        assert (result.status, result.reason) == ("rejected", expected)


def test_a_blue_gradient_is_not_dark() -> None:
    ramp = np.tile(np.linspace(0, 255, 256, dtype=np.float32), (256, 1))
    blue = np.stack([np.zeros_like(ramp), np.zeros_like(ramp), ramp], -1).astype(np.uint8)
    assert quality_problem(prepared(Image.fromarray(blue)), QualityLimits()) == NOT_A_LESION


def test_measures_of_known_pixels() -> None:
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[:, :4] = (0, 0, 200)  # half pure blue
    pixels[:, 4:] = (100, 100, 100)  # half grey
    q = measure_quality(pixels)
    assert q.brightness == pytest.approx(150.0)  # the brightest channel: 200 and 100
    assert q.chroma == pytest.approx(100.0)  # spreads 200 and 0
    assert q.saturation == pytest.approx(200 * 32 / (200 * 32 + 100 * 32))
    assert measure_quality(np.zeros((8, 8, 3), dtype=np.uint8)).saturation == 0.0  # black: no division by zero


def test_fitted_limits_never_tighten_the_colour_defaults() -> None:
    """A training set of vivid photos must not make a model refuse ordinary ones, nor one of grey photos stop
    refusing nothing: the fit only loosens the defaults, to a little beyond what its images show."""
    vivid = [replace(FINE, chroma=60.0, saturation=0.9)] * 10
    limits = fit_quality_limits(vivid)
    assert limits.min_chroma == QualityLimits().min_chroma
    assert limits.max_saturation == pytest.approx(0.9 / 0.8)
    faint = fit_quality_limits([replace(FINE, chroma=0.25, saturation=0.01)] * 10)
    assert faint.min_chroma == pytest.approx(0.2) and faint.max_saturation == QualityLimits().max_saturation


def real_images(shared_data: Path, per_collection: int) -> dict[str, list[Path]]:
    """An even spread of each collection's test images (every k-th, so each of its sources is in)."""
    found = {}
    for name, split in COLLECTIONS.items():
        if not (shared_data / name).is_dir():
            pytest.skip(f"{shared_data / name} not found")
        paths = [r.path for r in load_records(shared_data / name, split)]
        found[name] = paths[:: max(1, len(paths) // per_collection)][:per_collection]
    return found


# The most saturated and the least colourful of the 21,478 real images (every split of the four collections).
EXTREMES = {"most saturated": "isic2020/images/ISIC_3373242.jpg", "least colour": "isic2017/images/ISIC_0013405.jpg"}


def test_real_dermoscopy_in_colour_casts_passes_and_in_grey_is_refused(shared_data: Path) -> None:
    """No real test image, nor one under a strong colour cast, a sepia filter (half or full strength) or faded to
    30 % of its colour, is refused by the colour or darkness rules; every one in greyscale (also as a JPEG) is."""
    limits = QualityLimits()
    extremes = [shared_data / p for p in EXTREMES.values() if (shared_data / p).is_file()]
    for name, paths in {**real_images(shared_data, 40), "extremes": extremes}.items():
        for path in paths:
            image = Image.open(path).convert("RGB")
            for how, variant in [("as it is", image), *((h, recoloured(image, h)) for h in ("warm cast",
                                 "half sepia", "sepia", "faded"))]:  # fmt: skip
                reason = quality_problem(prepared(variant), limits)
                assert reason not in COLOUR_REASONS, f"{name} {path.name} {how}: {reason}"
            grey = image.convert("L").convert("RGB")
            for variant in (grey, jpeg(grey)):
                assert quality_problem(prepared(variant), limits) == NOT_IN_COLOUR, f"{name} {path.name} grey"
