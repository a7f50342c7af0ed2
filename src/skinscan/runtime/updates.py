"""Model updates: `skinscan models pull` (fetch, verify, check and install a model), and whether a source offers a
newer model than the one in use (what the desktop app tells its user)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from skinscan.core.errors import ModelFormatError, SkinscanError
from skinscan.core.preprocess import prepare_pixels, to_input
from skinscan.core.spec import ModelSpec
from skinscan.runtime.fetch import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_S, Offer, fetch, probe
from skinscan.runtime.store import InstalledModel, ModelStore, check_version_name, is_newer, read_spec

REQUIRED_OUTPUTS = ("logit", "cam", "ood")  # what the engine reads from every model (engine.predict_batch)


@dataclass
class Pulled:
    """What `pull_model` did."""

    model: InstalledModel
    already: bool  # that version was installed with the same files
    where: str  # the source, as the messages name it
    verified_by: dict[str, str] = field(default_factory=dict)  # file → "published" or "given" (none: a local folder)


def probe_image(size: int) -> Image.Image:
    """A plain lesion-like picture (a brown disc on skin tone) to run a new model once before installing it."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    inside = np.hypot(yy - size / 2, xx - size / 2) < size * 0.25
    pixels = np.where(inside[..., None], np.array([120, 80, 60], np.float32), np.array([220, 175, 155], np.float32))
    pixels += (np.sin(xx / 5) * np.cos(yy / 7))[..., None] * 6  # some texture: a flat picture is not a photo
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def check_model(folder: str | os.PathLike[str]) -> ModelSpec:
    """Load a model with the engine and run it once on a test image; its spec if it is fit to install.

    Raises:
        ModelFormatError: it does not load, its spec does not describe its graph (class names, input size,
            outputs), or it does not give finite outputs of the shapes its spec says.
    """
    from skinscan.runtime.engine import Engine

    engine = Engine(folder, threads=1, check_inputs=False)
    spec = engine.spec
    problems = []
    check_version_name(spec.version)
    names = spec.class_names
    if len(names) != 2 or len(set(names)) != 2 or not all(isinstance(n, str) and n.strip() for n in names):
        problems.append(f"its class names must be two different names, not {list(names)}")
    if not 16 <= spec.input_size <= 4096:
        problems.append(f"its input size {spec.input_size} is not from 16 to 4096 pixels")
    graph = engine.session.get_inputs()[0].shape
    fixed = [d if isinstance(d, int) else None for d in graph]
    if len(fixed) != 4 or fixed[1] not in (3, None) or any(d not in (spec.input_size, None) for d in fixed[2:]):
        problems.append(f"its graph takes {graph}, not N x 3 x {spec.input_size} x {spec.input_size} as its spec says")
    outputs = [o.name for o in engine.session.get_outputs()]
    missing = [o for o in (*REQUIRED_OUTPUTS, *spec.outputs) if o not in outputs]
    if missing:
        problems.append(f"its graph has no output {', '.join(dict.fromkeys(missing))} (it has {', '.join(outputs)})")
    if not (0.0 <= spec.threshold <= 1.0 and spec.temperature > 0 and math.isfinite(spec.logit_bias)):
        problems.append("its threshold must lie from 0 to 1, its temperature be positive and its bias finite")
    if problems:
        raise ModelFormatError(f"{folder} is not a model skinscan can use: {'; '.join(problems)}")
    image = probe_image(spec.input_size)
    try:
        out = engine.run_outputs(to_input(prepare_pixels(image, spec.preprocess)[None], spec.preprocess))
        result = engine.predict(image, heatmap=True)
    except SkinscanError:
        raise
    except Exception as exc:  # onnxruntime's own errors: a graph that loads but does not run
        raise ModelFormatError(f"{folder} does not run on a test image: {exc}") from exc
    shapes = {"logit": (1,), "ood": (1,), "cam": (1, *spec.cam_size)}
    for name, shape in shapes.items():
        value = np.asarray(out[name])
        if value.shape != shape or not np.all(np.isfinite(value)):
            raise ModelFormatError(
                f"{folder} gives a {name} output of shape {value.shape} on a test image (its spec says {shape}), "
                "or one that is not finite"
            )
    if result.probability is None or not 0.0 <= result.probability <= 1.0:
        raise ModelFormatError(f"{folder} gives no probability from 0 to 1 on a test image")
    return spec


def pull_model(
    source: str, *, sha256: Iterable[str] = (), api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES, store: ModelStore | None = None, activate: bool = True,
) -> Pulled:  # fmt: skip
    """Fetch a model into a temporary folder, verify its files' sha256 (`runtime.fetch.fetch`), check it
    (`check_model`), then install it in the store, active unless `activate` is False. Nothing reaches the store
    unless every step passed; the models installed before stay.

    Raises:
        SkinscanError: one-line reasons (DownloadError, ModelFormatError, ModelNotFoundError).
    """
    store = store if store is not None else ModelStore()
    scratch = Path(tempfile.mkdtemp(prefix="skinscan-pull-"))
    try:
        fetched = fetch(source, scratch, sha256=list(sha256), api_key=api_key, timeout_s=timeout_s,
                        max_bytes=max_bytes)  # fmt: skip
        check_model(scratch)
        model, already = store.install(scratch, source=source, activate=activate)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Pulled(model, already, fetched.where, fetched.verified_by)


def local_model_version(model: str | os.PathLike[str] | None = None) -> str:
    """The version of the model a local engine would load (`model`, else the engine's default), read from its spec."""
    from skinscan.runtime.engine import resolve_model_path

    return read_spec(resolve_model_path(model)).version


def newer_offer(current: str, sources: Iterable[tuple[str, str | None]], *, timeout_s: float = 5.0) -> Offer | None:
    """The newest model that any of `sources` ((source, API key) pairs) offers above version `current`, or None.

    A source that cannot be reached or read is passed over without a word: an update check must never stand in the
    way of judging images.
    """
    best: Offer | None = None
    for source, api_key in sources:
        try:
            offer = probe(source, api_key=api_key, timeout_s=timeout_s)
        except (SkinscanError, OSError, ValueError):
            continue
        newest_yet = best is None or is_newer(offer.version, best.version)
        if offer.version and is_newer(offer.version, current) and newest_yet:
            best = offer
    return best
