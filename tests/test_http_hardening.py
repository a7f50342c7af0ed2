"""Hardening of the HTTP side (issue 14), against real uvicorn servers on loopback: slow and idle clients, the
connection cap and the file-descriptor limit, request smuggling, HEAD, security headers on every response, the
multipart boundary, the API key's bytes, and settings refused at start."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import resource
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.routing import APIRoute

from live_server import live_server, live_uvicorn, plain_settings
from skinscan.api.app import app_from_env, create_app
from skinscan.api.connections import ConnectionLimits, accept_backlog, connection_cap
from skinscan.api.routes import STATIC_DIR, router
from skinscan.api.server import settings_env
from skinscan.api.settings import Settings
from skinscan.core.errors import ConfigError
from skinscan.runtime.engine import Engine
from synthetic import lesion_bytes

BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
# short enough to wait for in a test; the margins in the assertions are generous, the CPU is shared
QUICK = ConnectionLimits(header_timeout_s=1.0, body_timeout_s=1.0, read_timeout_s=4.0)
PATIENT = ConnectionLimits(header_timeout_s=60.0, body_timeout_s=60.0, read_timeout_s=120.0)
BOUNDARY = "xyz"
FORM_START = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="photo.jpg"\r\n'
    "Content-Type: image/jpeg\r\n\r\n"
).encode()


def upload_head(length: int, path: str = "/predict") -> bytes:
    """A POST's headers announcing a multipart body of `length` bytes."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def form(data: bytes) -> bytes:
    return FORM_START + data + f"\r\n--{BOUNDARY}--\r\n".encode()


# --- raw connections ---------------------------------------------------------------------------------------------


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def read_until_closed(sock: socket.socket, wait_s: float) -> tuple[bytes, float | None]:
    """Everything the server sends until it closes the connection; and after how many seconds it did (None: still
    open after wait_s)."""
    start = time.monotonic()
    received = b""
    while (left := wait_s - (time.monotonic() - start)) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return received, time.monotonic() - start
        received += chunk
    return received, None


def drip(sock: socket.socket, data: bytes, every_s: float, wait_s: float) -> tuple[bytes, float | None]:
    """Send `data` a byte every `every_s` (then nothing) while reading, as a slowloris client does."""
    start = time.monotonic()
    received, sent = b"", 0
    while time.monotonic() - start < wait_s:
        if sent < len(data):
            with contextlib.suppress(OSError):  # closed under us: what it sent before is still readable
                sock.send(data[sent : sent + 1])
            sent += 1
        if select.select([sock], [], [], every_s)[0]:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return received, time.monotonic() - start
            received += chunk
    return received, None


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """The first response in `raw`: status, headers (lower-case names), body."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", len(rest)))
    return int(status_line.split()[1]), headers, rest[:length]


def assert_json_error(raw: bytes, status: int, error: str | None = None) -> dict[str, Any]:
    got, headers, body = parse(raw)
    assert got == status, raw
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    assert headers["connection"] == "close"
    payload: dict[str, Any] = json.loads(body)
    assert set(payload) == {"error", "detail"} and payload["detail"], payload
    if error:
        assert payload["error"] == error
    return payload


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset; a response waiting to be read is not one)."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def wait_for(condition: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def quick_url(engine: Engine) -> Iterator[str]:
    """A server whose clients have 1 s for headers, 1 s pauses in a body and 4 s for a whole request."""
    with live_server(create_app(engine=engine, settings=plain_settings()), QUICK) as url:
        yield url


def no_app_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# --- slow clients ------------------------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(quick_url: str) -> None:
    with connect(quick_url) as sock:
        received, closed_after = read_until_closed(sock, wait_s=20)
    assert closed_after is not None, "an idle connection stayed open"
    assert 0.5 <= closed_after < 15 and received == b""  # no request began: nothing to answer


def test_half_sent_headers_get_408_and_the_connection_closes(quick_url: str) -> None:
    with connect(quick_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        received, closed_after = read_until_closed(sock, wait_s=20)
    assert closed_after is not None and closed_after >= 0.5
    assert "headers" in assert_json_error(received, 408, "request_timeout")["detail"]


def test_headers_sent_a_byte_at_a_time_still_time_out(quick_url: str) -> None:
    # the header timeout runs from the connection opening, not from the last byte: a slowloris never finishes
    with connect(quick_url) as sock:
        received, closed_after = drip(sock, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X" * 200, 0.1, 20)
    assert closed_after is not None and closed_after < 15, "a dripping client kept its connection"
    assert_json_error(received, 408, "request_timeout")


def test_a_stalled_body_gets_408_and_the_app_sees_a_disconnect(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    limits = ConnectionLimits(header_timeout_s=60, body_timeout_s=1, read_timeout_s=60)  # only the pause counts
    with live_server(create_app(engine=engine, settings=plain_settings()), limits) as url, connect(url) as sock:
        sock.sendall(upload_head(100_000) + FORM_START + b"\xff\xd8\xff" * 10)
        received, closed_after = read_until_closed(sock, wait_s=50)
        assert closed_after is not None and 0.5 <= closed_after < 30
        assert "stopped arriving for 1 s" in assert_json_error(received, 408, "request_timeout")["detail"]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    assert not no_app_errors(caplog)  # the route gave up quietly, and nothing wrote after the 408


def test_a_body_that_keeps_coming_slowly_meets_the_request_deadline(quick_url: str) -> None:
    # each byte within the body timeout, but the whole request past read_timeout_s
    with connect(quick_url) as sock:
        sock.sendall(upload_head(100_000) + FORM_START)
        received, closed_after = drip(sock, b"\x00" * 1000, 0.2, 30)
    assert closed_after is not None and 2 <= closed_after < 20
    assert "in full within 4 s" in assert_json_error(received, 408, "request_timeout")["detail"]


def test_a_client_that_pauses_within_the_timeouts_is_served(quick_url: str) -> None:
    body = form(lesion_bytes())
    with connect(quick_url) as sock:
        time.sleep(0.4)  # a moment before the request
        sock.sendall(upload_head(len(body)))
        time.sleep(0.4)  # and between headers and body
        sock.sendall(body[:100])
        time.sleep(0.4)
        sock.sendall(body[100:])
        status, _, payload = parse(read_until_closed(sock, wait_s=10)[0])
    assert status == 200 and json.loads(payload)["status"] in ("ok", "rejected")


def test_a_kept_alive_connection_serves_request_after_request(quick_url: str) -> None:
    # the header timeout starts again with each response, so a client that keeps the connection busy keeps it
    with httpx.Client(base_url=quick_url, timeout=10) as client:
        for _ in range(4):
            assert client.get("/health").status_code == 200
            time.sleep(0.6)  # each pause under the timeout, all of them over it
        assert client.get("/health").headers.get("connection") != "close"


# --- the connection cap -----------------------------------------------------------------------------------------


def test_at_the_cap_the_longest_idle_connection_makes_room(engine: Engine) -> None:
    limits = ConnectionLimits(60, 60, 120, max_connections=100)
    app = create_app(engine=engine, settings=plain_settings())
    with live_uvicorn(app, limits) as (url, server), ExitStack() as stack:
        idle = [stack.enter_context(connect(url)) for _ in range(300)]
        wait_for(lambda: len(server.server_state.connections) <= 100)
        response = httpx.get(f"{url}/health", timeout=10)  # a connection of its own, over the cap
        assert response.status_code == 200
        wait_for(lambda: sum(not is_closed(s) for s in idle) <= 100)
        assert is_closed(idle[0]) and not is_closed(idle[-1])  # the oldest went first


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503(engine: Engine) -> None:
    limits = ConnectionLimits(60, 60, 120, max_connections=3)
    app = create_app(engine=engine, settings=plain_settings())
    with live_uvicorn(app, limits) as (url, server), ExitStack() as stack:
        busy = [stack.enter_context(connect(url)) for _ in range(3)]
        for sock in busy:  # each in the middle of an upload: a request in progress
            sock.sendall(upload_head(100_000) + FORM_START)
        wait_for(lambda: sum(not c.idle for c in server.server_state.connections) == 3)
        with connect(url) as late:
            late.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            received, closed_after = read_until_closed(late, wait_s=10)
        assert closed_after is not None
        assert_json_error(received, 503, "unavailable")
        assert parse(received)[1]["retry-after"] == "1"
        for sock in busy:
            sock.close()
        wait_for(lambda: not server.server_state.connections)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200


def test_the_cap_fits_under_the_file_descriptor_limit() -> None:
    for fds in (256, 1024, 4096, 65536, 1 << 20):
        backlog = accept_backlog(fds)
        cap = connection_cap(1_000_000, fds, backlog)
        assert cap > 0 and cap + 4 * backlog + 64 <= fds, fds
    assert connection_cap(1000, 1 << 20, accept_backlog(1 << 20)) == 1000


def test_serve_raises_its_soft_file_descriptor_limit() -> None:
    code = "from skinscan.api.connections import raise_fd_limit; print(raise_fd_limit())"
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, high = 256, min(hard, 4096)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, high))

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            preexec_fn=limit, check=True)  # fmt: skip
    assert int(result.stdout) == high


@contextmanager
def skinscan_serve(model: Path, *args: str, env: dict[str, str], fd_limit: int | None = None) -> Iterator[Any]:
    """`skinscan serve` in a subprocess until /health answers; yields (base URL, process); output in process.out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SKINSCAN_")}
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), *args]  # fmt: skip

    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    process = subprocess.Popen(command, env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, preexec_fn=limit)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "skinscan serve did not come up"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        yield url, process
    finally:
        process.terminate()
        process.out = process.communicate(timeout=60)[0]  # type: ignore[attr-defined]


def test_serve_under_a_low_file_descriptor_limit_stays_reachable(tiny_model_dir: Path) -> None:
    # 256 descriptors: the cap comes down to fit, and 400 idle connections neither lock /health out nor make
    # accept() fail (which logged a traceback per waiting connection, thousands a second)
    cap = connection_cap(1000, 256, accept_backlog(256))
    env = {"SKINSCAN_HEADER_TIMEOUT_S": "600", "SKINSCAN_READ_TIMEOUT_S": "600"}  # the cap alone, no timeouts
    # one process: the cap is per process, and this counts one process's connections
    with (
        skinscan_serve(tiny_model_dir, "--workers", "1", env=env, fd_limit=256) as (url, process),
        ExitStack() as stack,
    ):
        idle = [stack.enter_context(connect(url)) for _ in range(400)]
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        # held by the server, or in the kernel's queue (the backlog) for it to accept
        wait_for(lambda: sum(not is_closed(s) for s in idle) <= cap + accept_backlog(256) + 1)
        assert is_closed(idle[0])
    assert f"at most {cap} connections per process" in process.out
    assert "Traceback" not in process.out and "out of system resource" not in process.out
    assert "out of file descriptors" not in process.out  # the filter's last resort was never needed


def test_the_timeouts_reach_worker_processes(tiny_model_dir: Path) -> None:
    env = {"SKINSCAN_HEADER_TIMEOUT_S": "1", "SKINSCAN_API_KEY": ""}
    with skinscan_serve(tiny_model_dir, "--workers", "2", env=env) as (url, _):
        for _ in range(4):  # the kernel spreads the connections over both processes
            with connect(url) as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\n")
                received, closed_after = read_until_closed(sock, wait_s=20)
            assert closed_after is not None and closed_after < 8  # 1 s configured, 10 s by default
            assert_json_error(received, 408)


def test_running_out_of_descriptors_logs_one_line_not_a_flood() -> None:
    # the last resort, if accept() does fail: asyncio logs each failure with a traceback, once per waiting
    # connection per loop iteration; the filter keeps one rate-limited line
    code = """
import asyncio, logging, resource, sys
from skinscan.api.connections import install_accept_error_filter
logging.basicConfig(stream=sys.stdout, format="%(levelname)s %(message)s")
install_accept_error_filter()
held = []
async def main():
    server = await asyncio.start_server(lambda r, w: held.append(w), "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    resource.setrlimit(resource.RLIMIT_NOFILE, (48, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    await asyncio.sleep(3)
asyncio.run(main())
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)  # fmt: skip
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with ExitStack() as stack:
            for _ in range(100):  # past the 48 descriptors, within the listen backlog (100)
                stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            output = process.communicate(timeout=60)[0]
    finally:
        process.kill()
        process.communicate()
    assert "out of file descriptors" in output
    assert output.count("\n") <= 3 and "Traceback" not in output, output[:2000]


# --- framing -----------------------------------------------------------------------------------------------------

SMUGGLED = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    "lengths",
    [
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ],
)
def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed(
    quick_url: str, lengths: bytes
) -> None:
    # a proxy that goes by Content-Length sees one request; by Transfer-Encoding there are two
    request = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lengths + b"\r\n0\r\n\r\n" + SMUGGLED
    with connect(quick_url) as sock:
        sock.sendall(request)
        received, closed_after = read_until_closed(sock, wait_s=10)
    assert closed_after is not None
    assert len(re.findall(rb"HTTP/1\.1 \d{3} ", received)) == 1, received  # the smuggled one never answered
    assert "Transfer-Encoding" in assert_json_error(received, 400, "bad_request")["detail"]


def test_pipelined_requests_are_still_answered(quick_url: str) -> None:
    # the control for the test above: two honest requests on one connection both get answers
    with connect(quick_url) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                     + SMUGGLED.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))  # fmt: skip
        received, _ = read_until_closed(sock, wait_s=10)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"405", b"200"]


def test_malformed_http_gets_a_json_400(quick_url: str) -> None:
    with connect(quick_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n")
        received, _ = read_until_closed(sock, wait_s=10)
    assert "malformed HTTP request" in assert_json_error(received, 400, "bad_request")["detail"]


# --- HEAD and the security headers ------------------------------------------------------------------------------


CHANGES_PER_REQUEST = {"/metrics"}  # it counts and times every request, its own included


def get_paths() -> list[tuple[str, dict[str, str]]]:
    """Every GET route without path parameters (the browser's / as well), and every static file."""
    routes = [r.path for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods and "{" not in r.path]
    assert {"/", "/health", "/model", "/docs"} <= set(routes)
    paths = [(path, {}) for path in [*routes, "/openapi.json"]] + [("/", {"Accept": BROWSER_ACCEPT})]
    return paths + [(f"/static/{p.name}", {}) for p in sorted(STATIC_DIR.iterdir()) if p.is_file()]


def test_head_answers_like_get_without_a_body(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        for path, headers in get_paths():
            got, head = client.get(path, headers=headers), client.head(path, headers=headers)
            assert (path, head.status_code) == (path, 200) and got.status_code == 200
            assert head.content == b""
            assert head.headers.get("content-type") == got.headers.get("content-type"), path
            if path in CHANGES_PER_REQUEST:  # the GET itself changed what a HEAD after it describes
                assert int(head.headers["content-length"]) > 0, path
            else:
                assert head.headers.get("content-length") == got.headers.get("content-length"), path
        assert client.head("/predict").status_code == 405  # POST only, as GET gets
        assert client.head("/no/such/page").status_code == 404


def test_every_response_carries_the_security_headers(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        responses = [client.get(path, headers=headers) for path, headers in get_paths()]
        responses += [
            client.get("/no/such/page"), client.get("/predict"), client.post("/predict", json={}),
            client.post("/predict", files={"image": ("a.jpg", b"x")}), client.head("/static/app.js"),
        ]  # fmt: skip
    for response in responses:
        csp = response.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, response.url
        assert response.headers.get("x-content-type-options") == "nosniff", response.url
        assert response.headers.get("referrer-policy") == "no-referrer", response.url


def test_a_crash_still_answers_with_the_security_headers(engine: Engine) -> None:
    app = create_app(engine=engine, settings=plain_settings())

    async def crash() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/crash", crash)
    with live_server(app) as url:
        response = httpx.get(f"{url}/crash", timeout=10)
    assert response.status_code == 500 and response.json()["error"] == "internal_error"
    assert response.headers["x-content-type-options"] == "nosniff"


# --- uploads and the API key ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "status"), [(1, 200), (70, 200), (256, 200), (257, 400), (5000, 400)])
def test_multipart_boundary_length(server_url: str, caplog: pytest.LogCaptureFixture, length: int, status: int) -> None:
    boundary = "b" * length
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n'.encode()
        + lesion_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    response = httpx.post(f"{server_url}/predict", content=body, headers=headers, timeout=30)
    assert response.status_code == status, response.text
    if status == 400:
        assert response.json()["error"] == "bad_request" and "boundary" in response.json()["detail"]
    assert not no_app_errors(caplog)


def test_a_non_ascii_api_key_matches_its_utf8_bytes(engine: Engine) -> None:
    key = "clé-naïve-ü-🔑"
    app = create_app(engine=engine, settings=plain_settings(api_key=key))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/model", headers={"X-API-Key": key.encode("utf-8")}).status_code == 200
        assert client.get("/model", headers={"X-API-Key": b"cle-naive-u"}).status_code == 401
        latin = "clé-naïve-ü".encode("latin-1")  # the same letters, other bytes
        assert client.get("/model", headers={"X-API-Key": latin}).status_code == 401


# --- settings -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("max_upload_mb", "inf"), ("max_upload_mb", "nan"), ("max_upload_mb", "-1"), ("max_upload_mb", "0"),
        ("max_upload_mb", "1e9"), ("max_batch_files", "1000000"), ("threshold", "nan"),
        ("header_timeout_s", "inf"), ("header_timeout_s", "0"), ("body_timeout_s", "nan"),
        ("read_timeout_s", "-5"), ("max_connections", "0"),
    ],
)  # fmt: skip
def test_absurd_settings_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(f"SKINSCAN_{name.upper()}", value)
    with pytest.raises(ConfigError, match=f"SKINSCAN_{name.upper()}"):
        Settings()


def test_serve_refuses_an_infinite_upload_limit_in_one_line() -> None:
    env = {**os.environ, "SKINSCAN_MAX_UPLOAD_MB": "inf"}
    command = [sys.executable, "-m", "skinscan.cli", "serve", "--port", "0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "SKINSCAN_MAX_UPLOAD_MB" in result.stderr and "finite" in result.stderr


def test_worker_processes_get_the_connection_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    given = plain_settings(header_timeout_s=3, body_timeout_s=4, read_timeout_s=50, max_connections=7)
    for name, value in settings_env(given).items():
        monkeypatch.setenv(name, value)
    rebuilt: Settings = app_from_env().state.settings
    assert ConnectionLimits.from_settings(rebuilt) == ConnectionLimits(3, 4, 50, 7)


def test_default_limits_match_the_default_settings() -> None:
    assert ConnectionLimits.from_settings(plain_settings()) == ConnectionLimits()
