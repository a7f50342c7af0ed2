"""What the web client needs to judge photos on the device itself (static/device.js), and its offline service worker.

- `GET /device/spec.json`: the model the device runs, with everything a server result is made of, taken from the
  Python that makes the server's: preprocessing, calibration and threshold (a site profile's where one is in use),
  input-check limits and reasons, the severity scale and verdicts, the heatmap's scale and legends, the diagnoses'
  names, the disclaimer. The browser re-types none of it.
- `GET /device/model.onnx`: the bundled model's compressed copy (models/device: 5.9 MB instead of 16 MB, the float
  model's arithmetic) when the server runs the bundled model, else the server's own model file.
- `GET /device/ort-wasm-simd-threaded.wasm`: ONNX Runtime Web's binary, stored and sent gzipped.
- `GET /sw.js`: the service worker (static/sw.js), at the root so that it may control the page; its version changes
  with every file it caches, so a browser replaces an old copy of the app as soon as the server has a new one.
- `GET /manifest.webmanifest`: the installable app's manifest, beside the page it starts.

Open like the page itself, also behind an API key: they are the page's own assets (the bundled model is public),
and the judging they allow costs the server nothing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, Response

from skinscan import DISCLAIMER, __version__
from skinscan.api.deps import get_engine
from skinscan.core.diagnosis import DIAGNOSES, MALIGNANT, NAMES
from skinscan.core.heatmap import BELOW_THRESHOLD_LEGEND, HEATMAP_LEGEND, RAMP_HEX, logit_at, top_step_probability
from skinscan.core.preprocess import CROPS
from skinscan.core.severity import CANNOT_JUDGE
from skinscan.core.spec import ModelSpec
from skinscan.runtime import checks
from skinscan.runtime.engine import Engine

STATIC_DIR = Path(__file__).with_name("static")
VENDOR_DIR = STATIC_DIR / "vendor" / "ort"
WASM = "ort-wasm-simd-threaded.wasm"
DEVICE_FOLDER = "device"  # beside the bundled model: models/device, or <environment>/share/skinscan/models/device
NO_CACHE = {"Cache-Control": "no-cache"}  # the browser revalidates; the service worker keeps the offline copy

router = APIRouter(include_in_schema=False)  # the web app's own files, not the API
EngineDep = Annotated[Engine, Depends(get_engine)]


@functools.lru_cache(maxsize=8)
def file_digest(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file, computed once per version of it on disk (size and mtime are the cache key)."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def digest_of(path: Path) -> str:
    stat = path.stat()
    return file_digest(path, stat.st_size, stat.st_mtime_ns)


def device_model_path(engine: Engine) -> Path:
    """The compressed copy of the engine's model where there is one (it names the model it was made from), else the
    engine's own model file."""
    copy = engine.path.parent / DEVICE_FOLDER / "model.onnx"
    spec_file = copy.with_name("model.json")
    if copy.is_file() and spec_file.is_file():
        made_from = ModelSpec.from_json(spec_file.read_text()).training_data.get("compression", {}).get("from_model")
        if made_from == engine.spec.id:
            return copy
    return engine.path


def unavailable_reason(engine: Engine) -> str | None:
    """Why this server's judgements cannot be made on the device, or None when they can."""
    if not (VENDOR_DIR / f"{WASM}.gz").is_file() or not (VENDOR_DIR / "ort.wasm.min.mjs").is_file():
        return (
            "ONNX Runtime Web is not installed on this server (python scripts/vendor_onnxruntime_web.py, or "
            "make install-serve, installs it)"
        )
    if engine.site is not None and engine.site.adapted is not None:
        name = engine.site.name
        return f"this server judges with the site profile {name!r}, whose adapted head runs on the server only"
    if engine.spec.crop not in CROPS or engine.spec.colour_constancy not in (None, "shades_of_gray"):
        steps = f"{engine.spec.crop}, {engine.spec.colour_constancy}"
        return f"this model's preprocessing ({steps}) is not available on the device"
    return None


def device_spec(engine: Engine) -> dict[str, Any]:
    """Everything device.js needs to judge as this server's engine does (see the module docstring)."""
    reason = unavailable_reason(engine)
    served = {"id": engine.spec.id, "version": engine.spec.version}
    if reason is not None:
        return {"available": False, "reason": reason, "server_model": served, "disclaimer": DISCLAIMER}
    path = device_model_path(engine)
    spec_file = path.with_name("model.json")
    model = ModelSpec.from_json(spec_file.read_text()) if spec_file.is_file() else engine.spec
    spec, calibration, threshold = engine.spec, engine.calibration, engine.threshold
    return {
        "available": True,
        "model": {
            "id": model.id,
            "version": model.version,
            "url": "device/model.onnx",
            "bytes": path.stat().st_size,
            "sha256": digest_of(path),
            "same_as_server": path == engine.path,
        },
        "server_model": served,
        "input_size": spec.input_size,
        "mean": list(spec.mean),
        "std": list(spec.std),
        "crop": spec.crop,
        "colour_constancy": spec.colour_constancy,
        "pixels_graph": "static/prepare.onnx",
        "calibration": {"temperature": calibration.temperature, "bias": calibration.bias},
        "threshold": threshold,
        "ood_threshold": engine.ood_threshold,
        "class_names": list(spec.class_names),
        "quality": asdict(spec.quality_limits),
        # core/quality.py's order of the pixel graph's quality output
        "quality_measures": ["brightness", "contrast", "sharpness", "chroma", "saturation"],
        "reasons": {code: sentence for sentence, code in checks.REASON_CODES.items()},
        "decoding": {"min_side": engine.min_side, "max_pixels": engine.max_pixels},
        "scale": [
            {
                "level": s.level,
                "upper": s.upper,
                "name": s.name,
                "description": s.description,
                "recommendation": s.recommendation,
                "colour": s.colour,
                "verdict": {"code": s.verdict.code, "headline": s.verdict.headline},
            }
            for s in engine.scale
        ],
        "cannot_judge": {"code": CANNOT_JUDGE.code, "headline": CANNOT_JUDGE.headline},
        "heatmap": {
            "low_logit": logit_at(threshold, calibration),
            "high_logit": logit_at(top_step_probability(threshold, engine.scale), calibration),
            "ramp": list(RAMP_HEX),
            "legend": HEATMAP_LEGEND,
            "below_threshold_legend": BELOW_THRESHOLD_LEGEND,
            "max_side": 512,
        },
        "diagnoses": [
            {"code": c, "name": NAMES.get(c, c), "malignant": c in MALIGNANT} for c in (spec.diagnoses or DIAGNOSES)
        ],
        "site": engine.site.summary() if engine.site is not None else None,
        "disclaimer": DISCLAIMER,
    }


@router.get("/device/spec.json")
async def spec_json(engine: EngineDep) -> Response:
    return Response(json.dumps(device_spec(engine)), media_type="application/json", headers=NO_CACHE)


def not_modified(request: Request, headers: dict[str, str]) -> Response | None:
    """A 304 when the browser's copy is this one: the page and the service worker both fetch the model and the
    wasm on the first visit, and the second fetch must not download them again."""
    if request.headers.get("if-none-match", "") == headers["ETag"]:
        return Response(status_code=304, headers=headers)
    return None


@router.get("/device/model.onnx")
async def model_onnx(request: Request, engine: EngineDep) -> Response:
    path = device_model_path(engine)
    headers = {**NO_CACHE, "ETag": f'"{digest_of(path)}"'}
    return not_modified(request, headers) or FileResponse(path, media_type="application/octet-stream", headers=headers)


@router.get(f"/device/{WASM}")
async def wasm(request: Request) -> Response:
    packed = VENDOR_DIR / f"{WASM}.gz"
    if not packed.is_file():
        raise HTTPException(404, detail="ONNX Runtime Web is not installed on this server")
    headers = {**NO_CACHE, "Vary": "Accept-Encoding", "ETag": f'"{digest_of(packed)}"'}
    if (unchanged := not_modified(request, headers)) is not None:
        return unchanged
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        return FileResponse(packed, media_type="application/wasm", headers={**headers, "Content-Encoding": "gzip"})
    return Response(gzip.decompress(packed.read_bytes()), media_type="application/wasm", headers=headers)


@router.get("/sw.js")
async def service_worker(engine: EngineDep) -> Response:
    script = (STATIC_DIR / "sw.js").read_text()
    return Response(script.replace("__VERSION__", app_version(engine)), media_type="text/javascript", headers=NO_CACHE)


@router.get("/manifest.webmanifest")
async def web_manifest() -> Response:
    return FileResponse(STATIC_DIR / "manifest.webmanifest", media_type="application/manifest+json", headers=NO_CACHE)


CACHED_STATIC = (
    "index.html",
    "app.js",
    "app.css",
    "device.js",
    "imaging.js",
    "sw.js",
    "manifest.webmanifest",
    "prepare.onnx",
    "favicon.svg",
    "icon-192.png",
    "icon-512.png",
)


def app_version(engine: Engine) -> str:
    """A digest of everything the service worker caches: the static files and ONNX Runtime Web by content, the
    device model by its digest, and the spec it is judged with (a new threshold is a new version too)."""
    digest = hashlib.sha256(__version__.encode())
    for name in CACHED_STATIC:
        path = STATIC_DIR / name
        digest.update(path.read_bytes() if path.is_file() else b"-")
    manifest = VENDOR_DIR / "VERSION.json"
    digest.update(manifest.read_bytes() if manifest.is_file() else b"-")
    digest.update(json.dumps(device_spec(engine), sort_keys=True).encode())
    return digest.hexdigest()[:16]
