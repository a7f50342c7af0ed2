"""The inference engine: an exported model on ONNX Runtime (CPU), used by API, GUI and CLI. No torch.

decode (imaging) → prepare pixels (preprocess) → quality check → model (logit, CAM, feature distance)
→ calibration → threshold, severity → optional heatmap.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from skinscan.core.calibration import Calibration
from skinscan.core.diagnosis import DIAGNOSES, most_likely
from skinscan.core.drift import Reference
from skinscan.core.errors import ConfigError, ModelFormatError, ModelNotFoundError, SkinscanError
from skinscan.core.heatmap import BELOW_THRESHOLD_LEGEND, HEATMAP_LEGEND, cell_logits, colourise, decision_heat
from skinscan.core.preprocess import Box, analysed_box, prepare_pixels, to_input
from skinscan.core.quality import Quality, measure_quality
from skinscan.core.severity import CANNOT_JUDGE, DEFAULT_SCALE, SeverityStep, severity_for
from skinscan.core.spec import METADATA_KEY, ModelSpec
from skinscan.runtime.budget import DecodeBudget, limit_heap_retention
from skinscan.runtime.checks import refusal_reason
from skinscan.runtime.defaults import ModelChoice, choose_model, threads_per_worker
from skinscan.runtime.imaging import DEFAULT_MAX_BYTES, ImageSource, load_image
from skinscan.runtime.result import HeatmapFn, Prediction
from skinscan.runtime.session import import_onnxruntime
from skinscan.runtime.site import SiteProfile, load_site
from skinscan.runtime.store import active_model_path

MODEL_ENV = "SKINSCAN_MODEL"


def bundled_model_path() -> Path:
    """Where the bundled model lives: the repository's models/ (source and editable installs) or the
    data folder of a wheel install."""
    candidates = [
        Path(__file__).resolve().parents[3] / "models" / "model.onnx",
        Path(sys.prefix) / "share" / "skinscan" / "models" / "model.onnx",
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelNotFoundError(
        "the bundled model is missing (looked in " + ", ".join(str(p) for p in candidates) + "); "
        f"give a model with --model or {MODEL_ENV}"
    )


def bundled_model_choice() -> ModelChoice:
    """The bundled model this machine runs by default, and why: the float model, or its 8-bit copy where that
    matches it and the CPU has 8-bit instructions (runtime/defaults.py)."""
    return choose_model(bundled_model_path())


def resolve_model_path(model: str | os.PathLike[str] | None = None) -> Path:
    """An explicit path, else $SKINSCAN_MODEL, else the store's active model (`skinscan models use`), else the
    bundled model. A folder means its model.onnx."""
    chosen = model if model is not None else os.environ.get(MODEL_ENV) or None
    if chosen is None:
        return active_model_path() or bundled_model_choice().path
    path = Path(chosen)
    if path.is_dir():
        path = path / "model.onnx"
    if not path.is_file():
        raise ModelNotFoundError(f"no model at {path}")
    return path


def default_threads() -> int:
    # The cores this process may use, capped: beyond 4 threads a model this small gains little, and under
    # concurrent requests ONNX Runtime's default (all logical cores per session run) oversubscribes the CPU.
    return threads_per_worker(1)


_OUTSIDE = -1e6  # the logit given to pixels outside the analysed region: never coloured


def original_size(image: Image.Image) -> tuple[int, int]:
    """The photo's size before any reduced-scale decoding."""
    size = image.info.get("original_size")
    return (int(size[0]), int(size[1])) if size else image.size


class Engine:
    """Loads an exported model once and predicts images.

    Args:
        model: path to model.onnx or its folder; None → $SKINSCAN_MODEL, else the bundled model.
        threads: ONNX Runtime intra-op threads (default: up to 4).
        threshold: override the spec's operating threshold.
        check_inputs: refuse unjudgeable images (quality and not-a-lesion checks).
        max_pixels, max_bytes, min_side: decoding limits.
        site: a clinic's site profile (runtime/site.py), a path to one or the profile: its calibration, threshold,
            input-check limit and perhaps adapted head replace the model's own; `threshold` still overrides.
        decode_budget: the memory that this engine's decodes may hold at once (shared by the threads calling it);
            None → DecodeBudget() (256 MB, waits up to 10 s for room).
        scale: the severity scale.
        spin: let ONNX Runtime's idle threads spin (lowest latency for one caller); a server under concurrent
            load does better with False.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        threads: int | None = None,
        threshold: float | None = None,
        check_inputs: bool = True,
        max_pixels: int = 50_000_000,
        max_bytes: int | None = DEFAULT_MAX_BYTES,
        min_side: int = 32,
        decode_budget: DecodeBudget | None = None,
        site: str | os.PathLike[str] | SiteProfile | None = None,
        scale: tuple[SeverityStep, ...] = DEFAULT_SCALE,
        spin: bool = True,
    ) -> None:
        ort = import_onnxruntime()

        self.path = resolve_model_path(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if not spin:
            # idle worker threads sleep instead of spinning: a spinning pool burns the cores that decoding and
            # a server's request threads need between model runs (+18 % requests/s at 16 clients, 1 worker)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for any unreadable file
            raise ModelFormatError(f"cannot load model {self.path}: {exc}") from exc
        self.spec = self._read_spec()
        self._input = self.session.get_inputs()[0].name
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.site = load_site(site) if isinstance(site, str | os.PathLike) else site
        self.ood_threshold = self.spec.ood_threshold
        self.calibration = Calibration(self.spec.temperature, self.spec.logit_bias)
        default_threshold = self.spec.threshold
        if self.site is not None:
            if self.site.model_id != self.spec.id:
                raise ConfigError(
                    f"the site profile {self.site.name!r} was fitted for model {self.site.model_id}, not "
                    f"{self.spec.id}: fit one for this model with `skinscan calibrate-site`"
                )
            if self.site.adapted is not None and "features" not in self._outputs:
                raise ConfigError(f"the site profile {self.site.name!r} needs a model with a features output")
            self.calibration = Calibration(self.site.temperature, self.site.bias)
            default_threshold = self.site.threshold
            if self.site.ood_threshold is not None:
                self.ood_threshold = self.site.ood_threshold
        self.threshold = default_threshold if threshold is None else float(threshold)
        self.check_inputs = check_inputs
        self.max_pixels, self.max_bytes, self.min_side = max_pixels, max_bytes, min_side
        self.decode_budget = decode_budget if decode_budget is not None else DecodeBudget()
        limit_heap_retention()  # what a large decode frees goes back to the system, not to this process's heap
        self.scale = scale
        # one model run at a time: concurrent runs would each take every thread and fight over the cores,
        # while decoding and preprocessing of other requests still overlap with it
        self._run_lock = threading.Lock()

    def _read_spec(self) -> ModelSpec:
        beside = self.path.with_name("model.json")
        if beside.is_file():
            return ModelSpec.from_json(beside.read_text())
        meta = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelFormatError(f"{self.path} carries no skinscan spec (no model.json beside it either)")
        return ModelSpec.from_json(meta[METADATA_KEY])

    @property
    def info(self) -> dict[str, Any]:
        """The model card as a JSON-ready dict, with the site profile in use (or None)."""
        site = self.site.summary() if self.site is not None else None
        return {**self.spec.to_dict(), "threshold": self.threshold, "path": str(self.path), "site": site}

    def drift_reference(self) -> Reference | None:
        """What the probabilities and input-check distances this engine gives should look like (core/drift.py): its
        site profile's own reference where it has one; else the model's, less the probability's when a site profile
        recalibrates (the model's validation probabilities say nothing of the site's).

        Raises:
            ModelFormatError: the model's or the site's reference is malformed.
        """
        try:
            if self.site is not None and self.site.reference:
                return Reference.from_dict(self.site.reference)
            reference = Reference.from_dict(self.spec.reference)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"the drift reference of {self.path} is malformed: {exc}") from None
        if reference is not None and self.site is not None:
            kept = {k: m for k, m in reference.measures.items() if k != "probability"}
            reference = Reference(kept, reference.images, reference.source)
        return reference

    def site_logits(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The logits this engine decides on: the model's own, or its site's adapted head's on the pooled features."""
        head = self.site.adapted if self.site is not None else None
        if head is None:
            return np.asarray(outputs["logit"], dtype=np.float64)
        return head.logits(outputs["features"], outputs["logit"])

    # --- core --------------------------------------------------------------------------------------

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw model outputs for a normalised float32 N x 3 x S x S batch: logits, CAMs, feature distances."""
        out = self.run_outputs(batch)
        return out["logit"], out["cam"], out["ood"]

    def run_outputs(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every output of the graph by name (newer models add "features" and "diagnosis")."""
        with self._run_lock:
            values = self.session.run(None, {self._input: np.ascontiguousarray(batch, dtype=np.float32)})
        return dict(zip(self._outputs, values, strict=True))

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of malignancy for a normalised batch."""
        return self.calibration.apply(self.run(batch)[0])

    def decode(self, source: ImageSource | Image.Image) -> Image.Image:
        if isinstance(source, Image.Image):
            return source.convert("RGB")
        return load_image(
            source,
            draft_size=self.spec.input_size,
            min_side=self.min_side,
            max_pixels=self.max_pixels,
            max_bytes=self.max_bytes,
            budget=self.decode_budget,
        )

    def predict(self, source: ImageSource | Image.Image, *, heatmap: bool = False) -> Prediction:
        """Judge one image (bytes, path, stream or PIL image).

        Raises:
            InvalidImageError: the input is not a readable image (or one of its subclasses).
        """
        return self.predict_batch([source], heatmap=heatmap, raise_errors=True)[0]  # type: ignore[return-value]

    def predict_batch(
        self, sources: Sequence[ImageSource | Image.Image], *, heatmap: bool = False, raise_errors: bool = False
    ) -> list[Prediction | SkinscanError]:
        """Judge several images in one model run; a failed image gives its error in its place."""
        start = time.perf_counter()
        results: list[Prediction | SkinscanError | None] = [None] * len(sources)
        images: dict[int, Image.Image] = {}
        pixels: dict[int, np.ndarray] = {}
        qualities: dict[int, dict[str, float]] = {}
        measures: dict[int, Quality] = {}
        limits = self.spec.quality_limits
        for i, source in enumerate(sources):
            try:
                images[i] = self.decode(source)
            except SkinscanError as exc:
                if raise_errors:
                    raise
                results[i] = exc
                continue
            pixels[i] = prepare_pixels(images[i], self.spec.preprocess)
            measures[i] = measure_quality(pixels[i])
            qualities[i] = asdict(measures[i])
            # the quality alone first: an unfit image is refused without a model run
            reason = refusal_reason(measures[i], limits) if self.check_inputs else None
            if reason is not None:
                results[i] = self._rejected(reason, images[i], qualities[i])
                del pixels[i]
        if pixels:
            order = list(pixels)
            outputs = self.run_outputs(to_input(np.stack([pixels[i] for i in order]), self.spec.preprocess))
            cams, dists, diagnoses = outputs["cam"], outputs["ood"], outputs.get("diagnosis")
            decided = self.site_logits(outputs)
            probs = self.calibration.apply(decided)
            for j, i in enumerate(order):
                dist = float(dists[j])
                if self.check_inputs:
                    reason = refusal_reason(measures[i], limits, dist, self.ood_threshold)
                    if reason is not None:
                        results[i] = self._rejected(reason, images[i], qualities[i], dist)
                        continue
                logit = float(outputs["logit"][j])
                results[i] = self._verdict(
                    float(probs[j]), (logit, float(decided[j]) - logit), images[i], cams[j], qualities[i], dist,
                    heatmap,
                )  # fmt: skip
                if diagnoses is not None:
                    codes = self.spec.diagnoses or DIAGNOSES  # a spec written by hand may leave them out
                    results[i].diagnoses = most_likely(diagnoses[j], codes)  # type: ignore[union-attr]
        elapsed = (time.perf_counter() - start) * 1000
        for r in results:
            if isinstance(r, Prediction):
                r.timing_ms = elapsed / max(len(sources), 1)
        return [r for r in results if r is not None]

    def _rejected(
        self, reason: str, image: Image.Image, quality: dict[str, float], dist: float | None = None
    ) -> Prediction:
        return Prediction(
            site=self.site.summary() if self.site is not None else None,
            status="rejected",
            verdict=CANNOT_JUDGE.headline,
            verdict_code=CANNOT_JUDGE.code,
            threshold=self.threshold,
            reason=reason,
            quality=quality,
            ood_distance=dist,
            image_size=original_size(image),
        )

    def _verdict(
        self,
        prob: float,
        logit: tuple[float, float],
        image: Image.Image,
        cam: np.ndarray,
        quality: dict[str, float],
        dist: float,
        heatmap: bool,
    ) -> Prediction:
        step = severity_for(prob, self.threshold, self.scale)
        result = Prediction(
            site=self.site.summary() if self.site is not None else None,
            status="ok",
            verdict=step.verdict.headline,
            verdict_code=step.verdict.code,
            threshold=self.threshold,
            probability=prob,
            label=self.spec.class_names[1] if prob >= self.threshold else self.spec.class_names[0],
            severity=step.level,
            severity_name=step.name,
            description=step.description,
            recommendation=step.recommendation,
            colour=step.colour,
            quality=quality,
            ood_distance=dist,
            image_size=original_size(image),
        )
        if heatmap:
            result.heatmap_fn, result.overlay_png = self.render_heatmap(cam, image, *logit)
            result.heatmap_legend = HEATMAP_LEGEND if prob >= self.threshold else BELOW_THRESHOLD_LEGEND
        return result

    # --- heatmap -------------------------------------------------------------------------------------

    def render_heatmap(
        self, cam: np.ndarray, image: Image.Image, logit: float, shift: float = 0.0, max_side: int = 512
    ) -> tuple[HeatmapFn, bytes]:
        """The CAM on the decision's scale (core/heatmap.py) as a lazily computed map the size of the input image
        (its original size, also when a large JPEG was decoded at reduced scale; 0 where uncoloured, up to 1 at
        the highest severity), and a PNG of it laid over the image at display size. `logit` is the model's own;
        `shift` moves every cell by what a site's adapted head adds to it (the head sees only pooled features, so
        its change is spread evenly over the map).

        The full-size map is only built when asked for: for a 12-megapixel photo it is 48 MB of floats, while
        the overlay that the API and the apps show needs a few hundred pixels a side.
        """
        cam = np.asarray(cam, dtype=np.float32)
        # a map whose mean is the logit gives each cell's logit directly; one that sums contributions is rescaled
        mean_map = abs(float(cam.mean()) - float(logit)) <= 1e-3 * max(1.0, abs(float(logit)))
        cells = cell_logits(cam, float(logit), 1.0 if mean_map else float(cam.size)) + np.float32(shift)
        w, h = original_size(image)
        factor = min(1.0, max_side / max(w, h))
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        # the analysed region, found on the decoded image (perhaps decoded at reduced scale), in original pixels
        sx, sy = w / image.width, h / image.height
        left, top, right, bottom = analysed_box(image, self.spec.crop)
        box = (round(left * sx), round(top * sy), round(right * sx), round(bottom * sy))

        above = float(self.calibration.apply(np.array([logit + shift]))[0]) >= self.threshold

        def heat_at(scale: float) -> np.ndarray:
            placed = self._place_cam(cells, (w, h), box, scale, fill=_OUTSIDE)
            return decision_heat(placed, self.threshold, self.calibration, self.scale, above_threshold=above)

        heat_small = heat_at(factor)
        base = np.asarray(image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0), dtype=np.float32)
        colours, alpha = colourise(heat_small)
        blended = base + (colours - base) * alpha[..., None]
        buffer = io.BytesIO()
        Image.fromarray(blended.astype(np.uint8)).save(buffer, format="PNG", compress_level=1)
        return (lambda: np.maximum(heat_at(1.0), 0.0)), buffer.getvalue()

    @staticmethod
    def _place_cam(
        norm: np.ndarray, size: tuple[int, int], analysed: Box, factor: float, fill: float = 0.0
    ) -> np.ndarray:
        """A CAM-sized map resized onto the analysed region of an image of `size` (`fill` elsewhere), all scaled by
        `factor`."""
        w, h = size
        left, top, right, bottom = analysed
        out_w, out_h = max(1, round(w * factor)), max(1, round(h * factor))
        box = [round(v * factor) for v in (left, top, right, bottom)]
        region = (max(1, box[2] - box[0]), max(1, box[3] - box[1]))
        placed = np.full((out_h, out_w), fill, dtype=np.float32)
        placed[box[1] : box[1] + region[1], box[0] : box[0] + region[0]] = np.asarray(
            Image.fromarray(norm).resize(region, Image.Resampling.BILINEAR)
        )[: out_h - box[1], : out_w - box[0]]
        return placed
