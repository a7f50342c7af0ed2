"""Fetching an exported model (model.json + model.onnx) from what `skinscan models pull` is given: a folder or the
path of either file, an http(s) URL of the files (or of their folder), or a skinscan server's base URL (its
`GET /model/files`). Downloads are capped in size and in time, and each file's sha256 is checked against what the
source publishes (a server's index, or a SHA256SUMS file beside the files) and against the hashes the user gives."""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal
from urllib.parse import urlsplit

from skinscan import __version__
from skinscan.core.errors import DownloadError, ModelFormatError, ModelNotFoundError
from skinscan.core.spec import ModelSpec
from skinscan.runtime.store import MODEL_FILES, read_spec

CHECKSUMS = "SHA256SUMS"  # `sha256sum model.json model.onnx > SHA256SUMS`, beside the files
INDEX_PATH = "/model/files"  # a skinscan server's index of its model's files (api/model_files.py)
API_KEY_HEADER = "X-API-Key"
DEFAULT_TIMEOUT_S = 30.0  # the longest wait for a source to answer, or to send more of a file
DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # the bundled model is 16 MB
SMALL_MAX_BYTES = 4 * 1024 * 1024  # model.json, SHA256SUMS, a server's index
MAX_DURATION_S = 30 * 60  # a source that sends a byte now and then still ends within this
_HEX = frozenset("0123456789abcdef")
# what a plain web server (or a bucket without listing rights) answers for a file it does not have
_MISSING = frozenset({403, 404, 405, 410})

Kind = Literal["folder", "files", "server", "web"]  # web: an http(s) URL that is a server's or a folder of the files


@dataclass(frozen=True)
class Source:
    """Where a model comes from: a local folder, or a base URL ending in "/" (files, server or not yet known)."""

    kind: Kind
    location: str

    @property
    def remote(self) -> bool:
        return self.kind != "folder"


@dataclass(frozen=True)
class Offer:
    """What a source offers, read without downloading the model itself."""

    id: str
    version: str
    source: str


@dataclass
class Fetched:
    """A model fetched into a folder: its files' sha256 and how each was verified."""

    folder: Path
    where: str
    sha256: dict[str, str]
    verified_by: dict[str, str] = field(default_factory=dict)  # file → "published" or "given"


def is_sha256(text: str) -> bool:
    return len(text) == 64 and set(text.lower()) <= _HEX


def parse_source(text: str) -> Source:
    """What kind of source `text` names (no network).

    Raises:
        ModelNotFoundError: a path that does not exist. ModelFormatError: a file that is not model.json or model.onnx.
        DownloadError: a URL of another scheme than http(s).
    """
    text = text.strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        if urlsplit(text).path.rsplit("/", 1)[-1] in MODEL_FILES:
            return Source("files", text[: text.rindex("/") + 1])
        return Source("web", text.rstrip("/") + "/")
    if "://" in text:
        raise DownloadError(f"cannot pull from {text}: give a folder, a model.json or model.onnx, or an http(s) URL")
    path = Path(text).expanduser()
    if path.is_dir():
        return Source("folder", str(path))
    if path.is_file():
        if path.name not in MODEL_FILES:
            raise ModelFormatError(f"{path} is not a model: give its folder, or its model.json or model.onnx")
        return Source("folder", str(path.parent))
    raise ModelNotFoundError(f"no such file or folder: {path}")


class Fetcher:
    """Gets files over HTTP with a timeout and a size cap, the API key sent to a server that wants one.

    Args:
        api_key: sent as X-API-Key (a skinscan server with an API key wants it for /model/files).
        timeout_s: the longest wait to connect or for more data.
        max_bytes: the largest model.onnx accepted (smaller files have a cap of their own).
    """

    def __init__(
        self, *, api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.api_key = api_key or None
        self.timeout_s, self.max_bytes = timeout_s, max_bytes
        self._started = time.monotonic()

    def get(
        self, url: str, limit: int, sink: IO[bytes] | None = None, *, missing_ok: bool = False
    ) -> tuple[bytes, str]:
        """The body of `url` (or b"" when written to `sink`) and its sha256; (b"", "") for a file the server does not
        have (404, 403, ...) when `missing_ok`.

        Raises:
            DownloadError: unreachable, an error status, over `limit` bytes, or too slow.
        """
        headers = {"User-Agent": f"skinscan/{__version__}", "Accept": "*/*"}
        if self.api_key is not None:
            headers[API_KEY_HEADER] = self.api_key.encode("utf-8").decode("latin-1")  # as the server reads it
        handlers: list[urllib.request.BaseHandler] = []
        if _is_loopback(urlsplit(url).hostname or ""):  # a proxy from the environment cannot reach this machine
            handlers.append(urllib.request.ProxyHandler({}))
        opener = urllib.request.build_opener(*handlers)
        try:
            response = opener.open(urllib.request.Request(url, headers=headers), timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code in _MISSING and missing_ok:
                return b"", ""
            if exc.code == 401:
                what = "refused the API key" if self.api_key else "wants an API key: set SKINSCAN_API_KEY"
                raise DownloadError(f"{url}: the server {what}") from None
            raise DownloadError(f"{url} answered {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            raise DownloadError(f"cannot reach {url} ({reason})") from None
        digest, body, size = hashlib.sha256(), bytearray(), 0
        try:
            with response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise DownloadError(f"{url} is {_mb(int(declared))}, over the limit of {_mb(limit)}")
                while chunk := response.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise DownloadError(f"{url} is over the limit of {_mb(limit)}")
                    if time.monotonic() - self._started > MAX_DURATION_S:
                        raise DownloadError(f"{url} is taking longer than {MAX_DURATION_S // 60} minutes")
                    digest.update(chunk)
                    if sink is None:
                        body += chunk
                    else:
                        sink.write(chunk)
        except (OSError, http.client.HTTPException) as exc:  # a timeout, or the answer broke off
            raise DownloadError(f"the download of {url} broke off ({exc or type(exc).__name__})") from None
        return bytes(body), digest.hexdigest()

    def get_json(self, url: str, *, missing_ok: bool = False) -> dict[str, object] | None:
        body, digest = self.get(url, SMALL_MAX_BYTES, missing_ok=missing_ok)
        if not digest:
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def server_index(self, base: str) -> dict[str, object] | None:
        """A skinscan server's /model/files index at `base`, or None where there is none (no such file, or not an
        index)."""
        index = self.get_json(base.rstrip("/") + INDEX_PATH, missing_ok=True)
        return index if index is not None and isinstance(index.get("files"), dict) else None


def probe(text: str, *, api_key: str | None = None, timeout_s: float = 5.0) -> Offer:
    """What model `text` offers (its id and version), reading only a spec or an index.

    Raises:
        SkinscanError: unreachable, or not a model source.
    """
    source = parse_source(text)
    if source.kind == "folder":
        spec = read_spec(source.location)
        return Offer(spec.id, spec.version, text)
    fetcher = Fetcher(api_key=api_key, timeout_s=timeout_s)
    index = fetcher.server_index(source.location) if source.kind == "web" else None
    if index is not None:
        return Offer(str(index.get("id", "")), str(index.get("version", "")), text)
    body, _ = fetcher.get(source.location + "model.json", SMALL_MAX_BYTES)
    spec = ModelSpec.from_json(body.decode("utf-8", "replace"))
    return Offer(spec.id, spec.version, text)


def fetch(
    text: str, dest: str | Path, *, sha256: Sequence[str] = (), api_key: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S, max_bytes: int = DEFAULT_MAX_BYTES,
) -> Fetched:  # fmt: skip
    """Copy or download model.json and model.onnx from `text` into the folder `dest`, and verify them.

    Each file must match the sha256 the source publishes, where it publishes one; every hash in `sha256` must match
    one of the files; and a downloaded file that the source publishes no hash for must be among `sha256`. (A local
    folder's files need no hash: they are already the user's.)

    Raises:
        DownloadError: unreachable, too large, too slow, a file that is not what its hash says, or unverifiable.
    """
    given = [h.strip().lower() for h in sha256]
    for digest in given:
        if not is_sha256(digest):
            raise DownloadError(f"--sha256 {digest!r} is not a sha256 (64 hexadecimal digits)")
    source = parse_source(text)
    dest = Path(dest)
    fetcher = Fetcher(api_key=api_key, timeout_s=timeout_s, max_bytes=max_bytes)
    published: dict[str, str] = {}
    if source.kind == "folder":
        folder = Path(source.location)
        actual = {name: _copy(folder / name, dest / name, _limit(name, max_bytes)) for name in MODEL_FILES}
        published = _checksums_file(folder / CHECKSUMS)
        where = str(folder)
    else:
        index = fetcher.server_index(source.location) if source.kind == "web" else None
        if index is not None:
            base, published, sizes = source.location.rstrip("/") + INDEX_PATH + "/", *_index_entries(index)
            where = f"the server at {source.location.rstrip('/')}"
        else:
            base, sizes = source.location, {}
            body, found = fetcher.get(base + CHECKSUMS, SMALL_MAX_BYTES, missing_ok=True)
            published = _parse_checksums(body.decode("utf-8", "replace")) if found else {}
            where = source.location
        actual = {}
        for name in MODEL_FILES:
            limit = _limit(name, max_bytes)
            if name in sizes and sizes[name] > limit:
                raise DownloadError(f"{name} at {where} is {_mb(sizes[name])}, over the limit of {_mb(limit)}")
            with open(dest / name, "wb") as file:
                _, actual[name] = fetcher.get(base + name, limit, file)
    fetched = Fetched(dest, where, actual)
    _verify(fetched, published, given, required=source.remote)
    return fetched


def _verify(fetched: Fetched, published: dict[str, str], given: list[str], *, required: bool) -> None:
    for name, digest in fetched.sha256.items():
        expected = published.get(name)
        if expected is not None and expected != digest:
            raise DownloadError(
                f"{name} from {fetched.where} is not the file its publisher hashed (sha256 {digest[:16]}…, published "
                f"{expected[:16]}…): it was changed or damaged on the way; nothing was installed"
            )
        if expected is not None:
            fetched.verified_by[name] = "published"
    for digest in given:
        matching = [name for name, actual in fetched.sha256.items() if actual == digest]
        if not matching:
            raise DownloadError(
                f"--sha256 {digest[:16]}… matches none of the files from {fetched.where}: they are not the ones you "
                "expected; nothing was installed"
            )
        for name in matching:
            fetched.verified_by.setdefault(name, "given")
    unverified = [name for name in fetched.sha256 if name not in fetched.verified_by]
    if required and unverified:
        raise DownloadError(
            f"{fetched.where} publishes no sha256 for {' and '.join(unverified)}: pass the hash of each, as its "
            "publisher gives it, with --sha256 HEX; nothing was installed"
        )


def _index_entries(index: dict[str, object]) -> tuple[dict[str, str], dict[str, int]]:
    hashes, sizes = {}, {}
    files = index.get("files")
    for name, entry in (files if isinstance(files, dict) else {}).items():
        if name in MODEL_FILES and isinstance(entry, dict):
            digest, size = str(entry.get("sha256", "")).lower(), entry.get("size")
            if is_sha256(digest):
                hashes[name] = digest
            if isinstance(size, int):
                sizes[name] = size
    return hashes, sizes


def _parse_checksums(text: str) -> dict[str, str]:
    """The `sha256sum` format: "HEX  NAME" (or "HEX *NAME" for binary mode), one file a line."""
    hashes = {}
    for line in text.splitlines():
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if is_sha256(digest) and name in MODEL_FILES:
            hashes[name] = digest.lower()
    return hashes


def _checksums_file(path: Path) -> dict[str, str]:
    try:
        return _parse_checksums(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else {}
    except OSError:
        return {}


def _copy(source: Path, target: Path, limit: int) -> str:
    if not source.is_file():
        raise ModelFormatError(f"{source.parent} is not a model: it has no {source.name}")
    if source.stat().st_size > limit:
        raise DownloadError(f"{source} is {_mb(source.stat().st_size)}, over the limit of {_mb(limit)}")
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(target, "wb") as writer:
        while chunk := reader.read(1 << 20):
            digest.update(chunk)
            writer.write(chunk)
    return digest.hexdigest()


def _limit(name: str, max_bytes: int) -> int:
    return max_bytes if name == "model.onnx" else SMALL_MAX_BYTES


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
