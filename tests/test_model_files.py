"""GET /model/files on a real uvicorn: the served model's id, version and files with their sha256 and size, the
files themselves, behind the API key when the server has one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx

from live_server import live_server, plain_settings
from skinscan import DISCLAIMER
from skinscan.api.app import create_app
from skinscan.runtime.engine import Engine


def test_the_index_names_each_file_with_its_sha256_and_size(server_url: str, engine: Engine) -> None:
    with httpx.Client(base_url=server_url, timeout=30) as client:
        index = client.get("/model/files").json()
        assert (index["id"], index["version"]) == (engine.spec.id, engine.spec.version)
        assert index["disclaimer"] == DISCLAIMER
        for name in ("model.json", "model.onnx"):
            on_disk = (engine.path.parent / name).read_bytes()
            entry = index["files"][name]
            assert entry == {"sha256": hashlib.sha256(on_disk).hexdigest(), "size": len(on_disk),
                             "url": f"/model/files/{name}"}  # fmt: skip
            answer = client.get(entry["url"])
            assert answer.status_code == 200 and answer.content == on_disk
            assert answer.headers["etag"] == f'"{entry["sha256"]}"'
            head = client.head(entry["url"])
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(on_disk)
        missing = client.get("/model/files/secrets.txt")
        assert missing.status_code == 404 and "model.json, model.onnx" in missing.json()["detail"]
        assert client.get("/model/files/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_the_files_want_the_api_key_when_the_server_has_one(engine: Engine) -> None:
    app = create_app(engine=engine, settings=plain_settings(api_key="letmein"))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for path in ("/model/files", "/model/files/model.onnx"):
            assert client.get(path).status_code == 401
            assert client.get(path, headers={"X-API-Key": "wrong"}).status_code == 401
            assert client.get(path, headers={"X-API-Key": "letmein"}).status_code == 200


def test_a_model_loaded_in_the_background_is_hashed_when_it_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil
    import time

    served = tmp_path / "served"
    shutil.copytree(tiny_model_dir, served)
    app = create_app(settings=plain_settings(model=str(served)))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(300):
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.1)
        published = app.state.engine_slot.published
        assert published is not None  # hashed with the load, before any request asked
        expected = hashlib.sha256((served / "model.onnx").read_bytes()).hexdigest()
        assert published.files["model.onnx"].sha256 == expected
        # a file changed under the server: the hash from the load stays, and the changed file is refused
        (served / "model.onnx").write_bytes(b"changed")
        assert client.get("/model/files").json()["files"]["model.onnx"]["sha256"] == expected
        refused = client.get("/model/files/model.onnx")
        assert refused.status_code == 409 and "changed on disk" in refused.json()["detail"]


def test_openapi_lists_the_file_routes(server_url: str) -> None:
    spec = httpx.get(server_url + "/openapi.json", timeout=30).json()
    assert {"/model/files", "/model/files/{name}"} <= set(spec["paths"])
