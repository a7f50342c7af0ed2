"""A corpus of bad (and oddly good) uploads against a real uvicorn server on loopback: each gets its documented status
and, when refused, a JSON {error, detail}; nothing is written to disk; and the server keeps answering /health."""

from __future__ import annotations

import gzip
import http.client
import io
import os
import select
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from bombs import (
    JPEG_2000,
    JPEG_BASELINE,
    deflated_dicom,
    dicom_with_frame,
    exif_with_bad_xresolution,
    flat_png,
    j2k_codestream,
    jpeg_bytes,
    jpeg_claiming,
    progressive_jpeg_with_scans,
    tiff_with_tile,
)
from live_server import live_server
from skinscan.api.app import create_app
from skinscan.api.settings import Settings
from skinscan.runtime.budget import DecodeBudget
from skinscan.runtime.engine import Engine
from synthetic import dicom_rgb_bytes, make_lesion, png_chunk, png_claiming

MAX_UPLOAD_MB = 10

# --- the files ------------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def png_rgb48(pixels: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one), rows unfiltered."""
    height, width, _ = pixels.shape
    wide = (pixels.astype(">u2") * 257).reshape(height, width * 3)
    raw = b"".join(b"\x00" + row.tobytes() for row in wide)
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(raw))
        + png_chunk(b"IEND", b"")
    )


def with_exif_rotation(image: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    return encode(image, "JPEG", exif=exif.tobytes())


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


PHOTO = make_lesion(np.random.default_rng(3), malignant=True, size=256)
JPEG = encode(PHOTO, "JPEG", quality=92)
FRAMES = [PHOTO, PHOTO.rotate(90), PHOTO.rotate(180)]
SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256"><rect/></svg>'
HTML = b"<!DOCTYPE html>\n<html><head><title>mole</title></head><body><img src=x onerror=alert(1)></body></html>"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"
DEFLATED_DICOM = deflated_dicom(100)
NOISE = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()

# --- the cases --------------------------------------------------------------------------------------------------

OCTET = "application/octet-stream"


@dataclass(frozen=True)
class Case:
    """One request: a file in a form field (`data` with `filename` in `form_field`) or a raw body (`content`)."""

    status: int
    error: str | None = None  # the JSON error name of a refusal; None for a verdict (200)
    data: bytes | None = None
    filename: str | None = "photo.jpg"
    form_field: str = "file"
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/predict"
    extra: dict[str, Any] = field(default_factory=dict)  # further httpx arguments (extra files, form fields)


def raw_multipart(*parts: bytes, boundary: str = "BOUNDARY", close: bool = True) -> bytes:
    body = b"".join(b"--" + boundary.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + boundary.encode() + b"--\r\n" if close else b"")


MULTIPART = {"Content-Type": "multipart/form-data; boundary=BOUNDARY"}
FILE_PART = b'Content-Disposition: form-data; name="file"; filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'

CASES: dict[str, Case] = {
    # not images, or broken ones: 400
    "empty file": Case(400, "invalid_image", b""),
    "random bytes": Case(400, "invalid_image", NOISE),
    "truncated JPEG": Case(400, "invalid_image", JPEG[: len(JPEG) // 2]),
    "JPEG header only": Case(400, "invalid_image", JPEG[: JPEG.index(b"\xff\xda")]),  # all up to the scan
    "JPEG magic then HTML": Case(400, "invalid_image", b"\xff\xd8\xff" + HTML),
    "PNG with a broken IDAT": Case(400, "invalid_image", png_claiming(256, 256)),
    "1×1 image": Case(400, "image_too_small", encode(Image.new("RGB", (1, 1), (200, 150, 120)), "PNG")),
    "4000×4 sliver": Case(400, "image_too_small", encode(Image.new("RGB", (4000, 4), (200, 150, 120)), "PNG")),
    # recognisable files of other kinds: 415
    "text named .jpg": Case(415, "unsupported_format", b"Dear doctor, here is the photo of my mole.\n" * 10),
    "HTML": Case(415, "unsupported_format", HTML, filename="photo.html"),
    "SVG": Case(415, "unsupported_format", SVG, filename="drawing.svg"),
    "PDF": Case(415, "unsupported_format", PDF, filename="report.pdf"),
    "zip": Case(415, "unsupported_format", zip_of("photo.jpg", JPEG), filename="photos.zip"),
    "gzip": Case(415, "unsupported_format", gzip.compress(JPEG), filename="photo.jpg.gz"),
    # headers claiming more pixels than allowed: 413, from the header alone
    "PNG claiming 50,000×50,000": Case(413, "too_large", png_claiming(50_000, 50_000), filename="bomb.png"),
    "JPEG claiming 65,535×65,535": Case(413, "too_large", jpeg_claiming(JPEG, 65_535, 65_535)),
    "two files in /predict": Case(413, "too_large", JPEG, extra={"files": [("file", ("b.jpg", JPEG, OCTET))]}),
    # small files that decode into huge work: refused from their headers, before the work
    "DICOM deflated, inflating to 100 MB": Case(415, "unsupported_format", DEFLATED_DICOM, filename="z.dcm"),
    "DICOM of 64×64 holding a 13,000² JPEG 2000": Case(415, "unsupported_format", dicom_with_frame(
        64, 64, JPEG_2000, j2k_codestream(13_000, 13_000)), filename="j2k.dcm"),
    "DICOM of 64×64 holding a 13,000² JPEG": Case(400, "invalid_image", dicom_with_frame(
        64, 64, JPEG_BASELINE, jpeg_claiming(jpeg_bytes(PHOTO.resize((64, 64))), 13_000, 13_000)), filename="j.dcm"),
    "progressive JPEG of 4000² in 2,000 scans": Case(413, "too_large", progressive_jpeg_with_scans(4000, 2000)),
    "TIFF of 64×64 in one 16,384² tile": Case(413, "too_large", tiff_with_tile(64, 64, 16_384), filename="t.tif"),
    # odd but good images: 200
    "CMYK JPEG": Case(200, data=encode(PHOTO.convert("CMYK"), "JPEG", quality=92)),
    "16-bit grey PNG": Case(200, data=encode(
        Image.fromarray(np.asarray(PHOTO.convert("L"), dtype=np.uint16) * 257), "PNG"), filename="grey16.png"),
    "48-bit RGB PNG": Case(200, data=png_rgb48(np.asarray(PHOTO)), filename="rgb48.png"),
    "animated GIF": Case(200, data=encode(FRAMES[0], "GIF", save_all=True, append_images=FRAMES[1:], duration=80,
                                          loop=0), filename="clip.gif"),
    "RGBA PNG": Case(200, data=encode(PHOTO.convert("RGBA"), "PNG"), filename="alpha.png"),
    "EXIF-rotated JPEG": Case(200, data=with_exif_rotation(PHOTO)),
    "DICOM": Case(200, data=dicom_rgb_bytes(np.asarray(PHOTO)), filename="lesion.dcm"),
    "DICOM with a baseline JPEG frame": Case(200, data=dicom_with_frame(256, 256, JPEG_BASELINE, JPEG,
                                                                        b"YBR_FULL_422"), filename="jpeg.dcm"),
    "progressive JPEG of 4000²": Case(200, data=progressive_jpeg_with_scans(4000, 0)),
    "flat PNG of 7000²": Case(200, data=flat_png(7000), filename="flat.png"),
    "EXIF orientation 6 beside an XResolution given as text": Case(200, data=exif_with_bad_xresolution(PHOTO)),
    "JPEG declared as image/png": Case(200, data=JPEG, filename="photo.png"),
    # filenames: never used for anything but echoing back
    "path-traversal filename": Case(200, data=JPEG, filename="../../etc/passwd.jpg"),
    "Windows path filename": Case(200, data=JPEG, filename="C:\\Users\\me\\..\\..\\Windows\\win.ini.jpg"),
    "unicode filename": Case(200, data=JPEG, filename="фото родинки 🩺 ñ.jpg"),
    "255-character filename": Case(200, data=JPEG, filename="a" * 251 + ".jpg"),
    "empty filename": Case(200, data=JPEG, filename=""),
    "no filename (a plain form field)": Case(
        200, content=raw_multipart(b'Content-Disposition: form-data; name="file"\r\n\r\n' + JPEG), headers=MULTIPART),
    "extra form fields beside the file": Case(200, data=JPEG, extra={"data": {"note": "left arm", "age": "42"}}),
    # the form itself is wrong: 4xx from the multipart reader or the route
    "wrong field name": Case(422, "missing_field", JPEG, form_field="image"),
    "no multipart: the JPEG as the body": Case(400, "bad_request", content=JPEG,
                                               headers={"Content-Type": "image/jpeg"}),
    "no multipart: JSON": Case(400, "bad_request", content=b'{"file": "aGVsbG8="}',
                               headers={"Content-Type": "application/json"}),
    "no multipart: url-encoded form": Case(400, "bad_request", content=b"file=photo.jpg",
                                           headers={"Content-Type": "application/x-www-form-urlencoded"}),
    "no Content-Type at all": Case(400, "bad_request", content=JPEG),
    "multipart without a boundary": Case(400, "bad_request", content=raw_multipart(FILE_PART + JPEG),
                                         headers={"Content-Type": "multipart/form-data"}),
    "multipart with another boundary": Case(400, "bad_request", content=raw_multipart(FILE_PART + JPEG),
                                            headers={"Content-Type": "multipart/form-data; boundary=OTHER"}),
    "multipart cut before its closing boundary": Case(400, "bad_request",
                                                      content=raw_multipart(FILE_PART + JPEG, close=False)[:-10],
                                                      headers=MULTIPART),
    "part without Content-Disposition": Case(400, "bad_request",
                                             content=raw_multipart(b"Content-Type: image/jpeg\r\n\r\n" + JPEG),
                                             headers=MULTIPART),
    "empty multipart body": Case(400, "bad_request", content=b"", headers=MULTIPART),
    # python-multipart caps a part's header line at about 4 kB (a guard against header floods)
    "10,000-character filename": Case(400, "bad_request", JPEG, filename="a" * 10_000 + ".jpg"),
    "heatmap=maybe": Case(422, "invalid_request", JPEG, path="/predict?heatmap=maybe"),
    "bad file with heatmap=true": Case(415, "unsupported_format", SVG, path="/predict?heatmap=true"),
}  # fmt: skip


# --- the server, and a watch on file writes ---------------------------------------------------------------------

_writes: list[str] | None = None
_hook_installed = False
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_TMPFILE", 0)
_FS_CHANGES = {"os.mkdir", "os.rename", "os.symlink", "os.link", "os.truncate", "shutil.copyfile", "shutil.move"}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _writes is None:
        return
    if event == "open":
        path, mode, flags = args
        if not ((isinstance(mode, str) and any(c in mode for c in "wax+")) or (mode is None and flags & _WRITE_FLAGS)):
            return
    elif event in _FS_CHANGES:
        path = args[0]
    else:
        return
    # the import system caches the bytecode of modules first imported during a request; that is not the upload
    if "__pycache__" not in str(path):
        _writes.append(f"{event} {path}")


@pytest.fixture
def no_writes() -> Iterator[list[str]]:
    """Every file the process opens for writing (or creates, renames, links) while the test runs."""
    global _writes, _hook_installed
    if not _hook_installed:
        sys.addaudithook(_audit)  # cannot be removed again; a no-op while _writes is None
        _hook_installed = True
    _writes = []
    try:
        yield _writes
    finally:
        _writes = None


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    # a short wait, so that the test of a full budget is quick; the room is the default 256 MB
    return Engine(tiny_model_dir, threads=1, decode_budget=DecodeBudget(wait_s=0.5))


@pytest.fixture(scope="module")
def base_url(engine: Engine) -> Iterator[str]:
    settings = Settings(api_key=None, cors_origins=[], max_upload_mb=MAX_UPLOAD_MB, model=None)
    with live_server(create_app(engine=engine, settings=settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as c:
        yield c


def send(client: httpx.Client, case: Case) -> httpx.Response:
    if case.content is not None:
        return client.post(case.path, content=case.content, headers=case.headers)
    assert case.data is not None
    files = [(case.form_field, (case.filename, case.data, OCTET)), *case.extra.get("files", [])]
    return client.post(case.path, files=files, data=case.extra.get("data"), headers=case.headers)


def assert_alive(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_upload(client: httpx.Client, no_writes: list[str], name: str) -> None:
    case = CASES[name]
    response = send(client, case)
    assert response.status_code == case.status, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    if case.error is None:
        assert body["status"] in ("ok", "rejected") and body["disclaimer"], body
    else:
        assert set(body) == {"error", "detail"} and body["error"] == case.error and body["detail"].strip(), body
        assert "Traceback" not in body["detail"]
    assert no_writes == []
    assert_alive(client)


def test_path_traversal_filename_writes_nothing(client: httpx.Client, no_writes: list[str]) -> None:
    with tempfile.TemporaryFile():  # a control: the watch does see a file being written
        pass
    assert no_writes and "open" in no_writes[0]
    no_writes.clear()
    names = ["../../etc/passwd.jpg", "../../../../../../tmp/skinscan-traversal.jpg", "/etc/passwd.jpg"]
    for name in names:
        assert send(client, Case(200, data=JPEG, filename=name)).status_code == 200
    assert no_writes == []
    for suspect in (Path("/etc/passwd.jpg"), Path("/tmp/skinscan-traversal.jpg"), Path.cwd().parent / "etc"):
        assert not suspect.exists(), suspect
    assert_alive(client)


def post_streaming(base_url: str, body_bytes: int, *, chunked: bool) -> tuple[int, dict[str, Any], int, float]:
    """POST a multipart upload whose file part holds `body_bytes` zero bytes, streamed 1 MB at a time from one reused
    buffer, and stop sending as soon as the server answers.

    Returns:
        The status, the JSON body, the bytes sent before the answer came, and the seconds until it came.
    """
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    head = b"--big\r\n" + FILE_PART.replace(b"photo.jpg", b"huge.jpg") + b"\xff\xd8\xff"
    tail = b"\r\n--big--\r\n"
    chunk = bytes(1024 * 1024)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", "multipart/form-data; boundary=big")
    if chunked:
        connection.putheader("Transfer-Encoding", "chunked")
    else:
        connection.putheader("Content-Length", str(len(head) + body_bytes + len(tail)))
    connection.endheaders()

    def write(data: bytes) -> None:
        connection.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)

    sent = 0
    started = time.perf_counter()
    try:
        write(head)
        while sent < body_bytes:
            assert connection.sock is not None
            if select.select([connection.sock], [], [], 0)[0]:
                break  # the answer is there: no need to send the rest
            write(chunk)
            sent += len(chunk)
        else:
            write(tail)
            if chunked:
                connection.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close its side once it has answered
    try:
        response = connection.getresponse()
        return response.status, httpx.Response(200, content=response.read()).json(), sent, time.perf_counter() - started
    finally:
        connection.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["declared length", "chunked, no length"])
def test_100_mb_body_is_refused_quickly(base_url: str, client: httpx.Client, chunked: bool) -> None:
    status, body, sent, seconds = post_streaming(base_url, 100 * 1024 * 1024, chunked=chunked)
    assert status == 413 and body["error"] == "too_large" and set(body) == {"error", "detail"}, body
    # refused from the declared length before the body is read, or once the limit is passed: the answer comes long
    # before the 100 MB are sent (what was sent by then is the limit plus what the loopback's buffers held)
    assert sent <= 50 * 1024 * 1024, f"{sent / 2**20:.0f} MB sent before the answer"
    assert seconds < 10
    assert_alive(client)


def test_batch_of_16_flat_7000px_pngs(client: httpx.Client) -> None:
    png = flat_png(7000)  # 16 × 49 megapixels in about 2.5 MB
    files = [("files", (f"flat{i}.png", png, OCTET)) for i in range(16)]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert len(results) == 16 and all(r["image_size"] == [7000, 7000] for r in results), results[0]
    assert_alive(client)


def test_full_decode_budget_answers_503_with_retry_after(engine: Engine, client: httpx.Client) -> None:
    # someone else holds the whole budget for longer than a request waits (0.5 s here)
    with engine.decode_budget.reserve(engine.decode_budget.capacity):
        response = send(client, Case(200, data=JPEG))
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "busy" and int(response.headers["retry-after"]) >= 1
        assert client.get("/health").status_code == 200  # the server goes on answering what costs no decode
    assert send(client, Case(200, data=JPEG)).status_code == 200  # and decodes again once there is room
