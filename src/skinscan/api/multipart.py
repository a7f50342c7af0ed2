"""Reading multipart/form-data uploads into memory, under size limits, while the body streams in.

Starlette's own form parser spools file parts over 1 MB to a temporary file on disk; uploaded photos of skin must
never touch the disk, so the upload routes parse the body here instead, and refuse it as soon as a limit is passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MAX_BOUNDARY_LENGTH, MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

MAX_FORM_OVERHEAD = 64 * 1024  # part headers, boundaries and any small text fields beside the files


@dataclass(frozen=True)
class UploadLimits:
    """How much one request may carry."""

    max_file_bytes: int  # one file
    max_files: int  # files in the wanted field
    max_body_bytes: int  # the whole body, overhead included

    @classmethod
    def for_files(cls, max_file_bytes: int, max_files: int) -> UploadLimits:
        return cls(max_file_bytes, max_files, max_file_bytes * max_files + MAX_FORM_OVERHEAD)


@dataclass
class Upload:
    """One part of the wanted field. `too_large` parts kept no bytes (only when the caller chose to go on)."""

    filename: str | None
    content_type: str | None
    data: bytes
    too_large: bool = False


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    wanted: bool
    size: int = 0
    too_large: bool = False
    data: bytearray = field(default_factory=bytearray)


class _PartTooLarge(Exception):
    pass


class _TooManyFiles(Exception):
    pass


class _MalformedBody(Exception):
    pass


class _Collector:
    """python-multipart callbacks that keep the wanted field's parts in memory and drop every other part."""

    def __init__(self, wanted: str, limits: UploadLimits, *, stop_on_too_large: bool) -> None:
        self.wanted, self.limits, self.stop_on_too_large = wanted, limits, stop_on_too_large
        self.uploads: list[Upload] = []
        self.other_fields: list[str] = []
        self.ended = False
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part: _Part | None = None

    def on_part_begin(self) -> None:
        self._headers, self._part = {}, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_name.strip().lower()] = self._header_value.strip()
        self._header_name = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        if disposition != b"form-data" or b"name" not in options:
            raise _MalformedBody("a part has no Content-Disposition: form-data header with a name")
        name = options[b"name"].decode("utf-8", "replace")
        filename = options[b"filename"].decode("utf-8", "replace") if b"filename" in options else None
        if filename is not None:
            filename = filename.replace("\\", "/").rsplit("/", 1)[-1]  # some clients send the whole path
        content_type = self._headers.get(b"content-type")
        wanted = name == self.wanted
        if wanted and len(self.uploads) >= self.limits.max_files:
            raise _TooManyFiles
        self._part = _Part(name, filename, content_type.decode("latin-1") if content_type else None, wanted)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part is None:
            raise _MalformedBody("part data before the part's headers")
        part.size += end - start
        if not part.wanted or part.too_large:
            return
        if part.size > self.limits.max_file_bytes:
            if self.stop_on_too_large:
                raise _PartTooLarge
            part.too_large, part.data = True, bytearray()  # let the bytes go; the file is reported on its own
            return
        part.data += data[start:end]

    def on_part_end(self) -> None:
        part = self._part
        if part is None:
            return
        if part.wanted:
            self.uploads.append(Upload(part.filename, part.content_type, bytes(part.data), part.too_large))
        else:
            self.other_fields.append(part.name)
        self._part = None

    def on_end(self) -> None:
        self.ended = True


async def read_uploads(
    request: Request, wanted: str, limits: UploadLimits, *, stop_on_too_large: bool = True
) -> tuple[list[Upload], list[str]]:
    """Parse a multipart/form-data body as it arrives and keep the files of field `wanted` in memory.

    Args:
        request: the request whose body to read (not read before).
        wanted: the form field holding the files.
        limits: size and count limits, checked against Content-Length first and then while reading.
        stop_on_too_large: refuse the whole request (413) when one file is too large; otherwise mark that file.

    Returns:
        The wanted field's uploads in order, and the names of the other fields seen.

    Raises:
        HTTPException: 400 not multipart or malformed; 413 over a limit.
    """
    media_type, params = parse_options_header(request.headers.get("content-type"))
    if media_type != b"multipart/form-data":
        raise HTTPException(400, detail=f"send a multipart/form-data body with the image in the field {wanted!r}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise HTTPException(400, detail="the multipart/form-data Content-Type has no boundary")
    if len(boundary) > MAX_BOUNDARY_LENGTH:  # RFC 2046 allows 70; python-multipart, and so we, up to this
        raise HTTPException(400, detail=f"the multipart boundary is {len(boundary)} characters long: the most "
                                        f"allowed is {MAX_BOUNDARY_LENGTH} (RFC 2046 asks for at most 70)")  # fmt: skip
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limits.max_body_bytes:
        raise HTTPException(413, detail=_too_large_text(limits))
    collector = _Collector(wanted, limits, stop_on_too_large=stop_on_too_large)
    received = 0
    try:
        # inside the try: the constructor validates the boundary too, with the FormParserError handled below
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": collector.on_part_begin,
                "on_header_field": collector.on_header_field,
                "on_header_value": collector.on_header_value,
                "on_header_end": collector.on_header_end,
                "on_headers_finished": collector.on_headers_finished,
                "on_part_data": collector.on_part_data,
                "on_part_end": collector.on_part_end,
                "on_end": collector.on_end,
            },
        )
        async for chunk in request.stream():
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise HTTPException(413, detail=_too_large_text(limits))
            parser.write(chunk)
        parser.finalize()
    except ClientDisconnect:
        raise HTTPException(400, detail="the upload was interrupted") from None
    except _PartTooLarge:
        raise HTTPException(413, detail=_too_large_text(limits)) from None
    except _TooManyFiles:
        raise HTTPException(413, detail=f"too many files: at most {limits.max_files} in one request") from None
    except _MalformedBody as exc:
        raise HTTPException(400, detail=f"malformed multipart body: {exc}") from None
    except (FormParserError, ValueError):
        raise HTTPException(400, detail="malformed multipart body") from None
    if not collector.ended:
        raise HTTPException(400, detail="incomplete multipart body: it stops before its closing boundary")
    return collector.uploads, collector.other_fields


def _too_large_text(limits: UploadLimits) -> str:
    size = _megabytes(limits.max_file_bytes)
    if limits.max_files == 1:
        return f"file too large: the limit is {size}"
    return f"upload too large: the limit is {size} per file and {_megabytes(limits.max_body_bytes)} in all"


def _megabytes(n: int) -> str:
    return f"{round(n / (1024 * 1024), 1):g} MB"
