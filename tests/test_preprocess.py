"""One preprocessing implementation: colour constancy, cropping, and parity between training and engine."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from skinscan.core.preprocess import (
    PreprocessSpec,
    analysed_box,
    dark_border_box,
    prepare_pixels,
    preprocess,
    shades_of_gray,
    square_crop_box,
    to_input,
)
from skinscan.runtime.imaging import load_image
from synthetic import lesion_bytes


def test_shades_of_gray_removes_a_colour_cast() -> None:
    rng = np.random.default_rng(0)
    scene = rng.uniform(60, 200, (64, 64, 3))
    cast = np.clip(scene * np.array([1.3, 0.9, 0.6]), 0, 255).astype(np.uint8)
    corrected = shades_of_gray(cast).astype(np.float32)
    means = corrected.reshape(-1, 3).mean(0)
    assert means.max() / means.min() < 1.1  # the cast was 2.2 : 1
    assert shades_of_gray(np.zeros((8, 8, 3), np.uint8)).sum() == 0  # black stays black, no division by zero


def test_square_crop_is_centred() -> None:
    assert square_crop_box(600, 450) == (75, 0, 525, 450)
    assert square_crop_box(300, 500) == (0, 100, 300, 400)


@pytest.mark.parametrize("size", [(600, 450), (224, 224), (97, 301)])
def test_output_shape_and_range(size: tuple[int, int]) -> None:
    spec = PreprocessSpec(input_size=224, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image = Image.new("RGB", size, (200, 120, 100))
    x = preprocess(image, spec)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert x.min() >= -2.0 - 1e-6 and x.max() <= 2.0 + 1e-6


def test_batched_to_input_matches_single() -> None:
    spec = PreprocessSpec(input_size=32)
    pixels = np.random.default_rng(1).integers(0, 255, (3, 32, 32, 3), dtype=np.uint8)
    batch = to_input(pixels, spec)
    assert batch.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(batch[1], to_input(pixels[1], spec))


def test_engine_input_equals_training_evaluation_transform(tiny_model_dir) -> None:
    pytest.importorskip("torch")
    from skinscan.runtime.engine import Engine
    from skinscan.training.scoring import eval_tensor

    spec = Engine(tiny_model_dir).spec.preprocess  # the engine's constants come from the exported spec
    images = [load_image(lesion_bytes(m, seed=s, size=150)) for m in (False, True) for s in range(3)]
    pixels = np.stack([prepare_pixels(im, spec) for im in images])  # what training caches
    engine_input = np.stack([preprocess(im, spec) for im in images])  # what the engine runs
    training_input = eval_tensor(pixels, spec).numpy()  # what training evaluates
    np.testing.assert_allclose(engine_input, training_input, rtol=0, atol=1e-6)


def _framed(inner: Image.Image, top: int, bottom: int, left: int, right: int) -> Image.Image:
    """`inner` inside black bars, as a dermatoscope or a slide scanner frames it."""
    framed = Image.new("RGB", (inner.width + left + right, inner.height + top + bottom))
    framed.paste(inner, (left, top))
    return framed


def test_trim_square_cuts_black_bars_and_keeps_the_lesion() -> None:
    inner = Image.open(io.BytesIO(lesion_bytes(True, seed=4, size=160))).convert("RGB").resize((240, 180))
    framed = _framed(inner, 30, 20, 60, 40)
    assert dark_border_box(framed) == pytest.approx((60, 30, 300, 210), abs=3)
    trimmed = prepare_pixels(framed, PreprocessSpec(64, crop="trim_square")).astype(np.float32)
    reference = prepare_pixels(inner, PreprocessSpec(64, crop="center_square")).astype(np.float32)
    assert np.abs(trimmed - reference).mean() < 6  # the same picture as without the bars (to a pixel or two)
    centred = prepare_pixels(framed, PreprocessSpec(64, crop="center_square")).astype(np.float32)
    assert np.abs(centred - reference).mean() > 5 * np.abs(trimmed - reference).mean()


def test_trim_square_leaves_unframed_circular_and_dark_images_alone() -> None:
    plain = Image.open(io.BytesIO(lesion_bytes(False, seed=5, size=120))).convert("RGB")
    assert analysed_box(plain, "trim_square") == analysed_box(plain, "center_square") == square_crop_box(120, 120)
    yy, xx = np.mgrid[0:200, 0:200]
    disc = np.where(((yy - 100) ** 2 + (xx - 100) ** 2 < 100**2)[..., None], 170, 0).astype(np.uint8)
    circle_box = dark_border_box(Image.fromarray(np.repeat(disc, 3, axis=2)))
    assert circle_box == pytest.approx((0, 0, 200, 200), abs=2)  # the circle is kept whole
    dim = Image.fromarray(np.full((100, 100, 3), 10, np.uint8))
    assert dark_border_box(dim) == (0, 0, 100, 100)  # a dark photo is not all border
    with pytest.raises(ValueError, match="valid: center_square, trim_square, resize"):
        analysed_box(plain, "diagonal")
