"""GET /metrics, drift in /health and /metrics, and the audit log, against a real uvicorn on loopback."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from live_server import live_server, plain_settings
from skinscan.api.app import create_app
from skinscan.api.audit import AUDIT_FIELDS, AuditLog
from skinscan.core.drift import Reference
from skinscan.runtime.checks import reason_code
from skinscan.runtime.engine import Engine
from synthetic import lesion_bytes


def metric(text: str, sample: str, **labels: str) -> float:
    """The sum of the samples named `sample` whose labels include `labels`."""
    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))  # fmt: skip


def blank_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (128, 128), (128, 120, 110)).save(out, "PNG")
    return out.getvalue()


def test_metrics_count_what_the_server_answered(engine: Engine) -> None:
    app = create_app(engine=engine, settings=plain_settings(max_upload_mb=0.05))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        answers = [client.post("/predict", files={"file": ("a.jpg", lesion_bytes(seed=s), "image/jpeg")})
                   for s in range(4)]  # fmt: skip
        answers.append(client.post("/predict", files={"file": ("b.png", blank_png(), "image/png")}))
        bad = client.post("/predict", files={"file": ("c.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg")})
        batch = client.post("/predict/batch", files=[("files", ("d.jpg", lesion_bytes(seed=9), "image/jpeg")),
                                                     ("files", ("e.bin", b"\0" * 60_000, "image/png"))])  # fmt: skip
        client.get("/no/such/page/12345")
        text = client.get("/metrics").text
    assert all(a.status_code == 200 for a in answers) and bad.status_code == 400 and batch.status_code == 200
    results = [a.json() for a in answers] + [batch.json()["results"][0]]
    judged = Counter((r["label"], str(r["severity"]), r["verdict_code"]) for r in results if r["status"] == "ok")
    refused = Counter(reason_code(r["reason"]) for r in results if r["status"] == "rejected")
    assert sum(judged.values()) >= 1 and sum(refused.values()) >= 1  # the blank photo is refused
    for (label, severity, verdict), n in judged.items():
        assert metric(text, "skinscan_predictions_total", label=label, severity=severity, verdict=verdict) == n
    assert metric(text, "skinscan_predictions_total") == sum(judged.values())
    for reason, n in refused.items():
        assert metric(text, "skinscan_refusals_total", reason=reason) == n
    assert metric(text, "skinscan_prediction_errors_total", error=bad.json()["error"]) == 1
    assert metric(text, "skinscan_prediction_errors_total", error="too_large") == 1
    assert metric(text, "skinscan_probability_count") == sum(judged.values())
    assert metric(text, "skinscan_requests_total", route="/predict", method="POST", status="200") == 5
    assert metric(text, "skinscan_requests_total", route="/predict", method="POST", status="400") == 1
    # a raw path never becomes a label value: clients cannot grow the metrics without bound
    assert "12345" not in text and metric(text, "skinscan_requests_total", route="unmatched", status="404") == 1
    assert metric(text, "skinscan_request_duration_seconds_count", route="/predict/batch") == 1
    assert metric(text, "skinscan_model_info", id=engine.spec.id, version=engine.spec.version) == 1
    ids = [a.headers["x-request-id"] for a in answers]
    assert len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)


def test_metrics_are_behind_the_api_key(engine: Engine) -> None:
    app = create_app(engine=engine, settings=plain_settings(api_key="s3cret"))
    with live_server(app) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        answer = httpx.get(f"{url}/metrics", headers={"X-API-Key": "s3cret"})
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")


def _with_reference(model_dir: Path, out: Path, reference: Reference) -> Path:
    shutil.copytree(model_dir, out)
    spec = json.loads((out / "model.json").read_text())
    (out / "model.json").write_text(json.dumps({**spec, "reference": reference.to_dict()}))
    return out


def _photos() -> list[bytes]:
    return [lesion_bytes(seed=100 + s) for s in range(20)]


def _drift_after(model: Path) -> tuple[httpx.Response, str]:
    settings = plain_settings(model=str(model), drift_window=20, drift_min_count=10)
    with live_server(create_app(settings=settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(100):
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.1)
        assert client.get("/health").json()["drift"]["status"] == "collecting"
        for photo in _photos():
            assert client.post("/predict", files={"file": ("p.jpg", photo, "image/jpeg")}).status_code == 200
        return client.get("/health"), client.get("/metrics").text


def test_drift_warns_in_health_and_metrics_and_never_refuses(tiny_model_dir: Path, tmp_path: Path) -> None:
    far = Reference.of({"probability": [i * 1e-5 for i in range(50)], "ood_distance": [i * 1e-5 for i in range(50)]},
                       source="far away")  # fmt: skip
    health, text = _drift_after(_with_reference(tiny_model_dir, tmp_path / "model", far))
    body = health.json()
    assert health.status_code == 200 and body["status"] == "ok"  # a warning, never a refusal
    assert body["drift"]["status"] == "warning" and body["warnings"] == body["drift"]["warnings"]
    assert any("input-check distance" in w for w in body["warnings"])
    assert metric(text, "skinscan_drift_warning") == 1
    assert metric(text, "skinscan_drift_share_above_p99", measure="ood_distance") == 1.0


def test_no_drift_on_the_images_the_reference_came_from(tiny_model_dir: Path, tmp_path: Path) -> None:
    # the control: without it the test above would pass on a monitor that always warns
    engine = Engine(tiny_model_dir, threads=1)
    seen = [engine.predict(photo) for photo in _photos()]
    same = Reference.of({"probability": [p.probability for p in seen if p.ok],
                         "ood_distance": [p.ood_distance for p in seen]}, source="these images")  # fmt: skip
    health, text = _drift_after(_with_reference(tiny_model_dir, tmp_path / "model", same))
    assert health.json()["drift"]["status"] == "ok" and health.json()["warnings"] == []
    assert metric(text, "skinscan_drift_warning") == 0


def test_the_audit_log_holds_decisions_and_nothing_of_the_photo(engine: Engine, tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.log"
    photo = lesion_bytes(seed=7)
    app = create_app(engine=engine, settings=plain_settings(audit_log=str(log)))
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        good = client.post(
            "/predict",
            files={"file": ("Jane-Doe-1987-03-14.jpg", photo, "image/jpeg")},
            data={"note": "patient Jane Doe, left shoulder"},
            headers={"X-Patient": "Jane Doe"},
        )
        bad = client.post("/predict", files={"file": ("Jane-Doe-2.jpg", b"\xff\xd8\xffJane Doe", "image/jpeg")})
    assert good.status_code == 200 and bad.status_code == 400
    raw = log.read_bytes()
    lines = [json.loads(line) for line in raw.decode().splitlines()]
    assert [tuple(line) for line in lines] == [AUDIT_FIELDS, AUDIT_FIELDS]
    first, second = lines
    assert first["request_id"] == good.headers["x-request-id"] and first["model_id"] == engine.spec.id
    assert first["status"] == good.json()["status"] and first["verdict"] == good.json()["verdict_code"]
    if good.json()["status"] == "ok":
        assert first["probability"] == pytest.approx(good.json()["probability"], abs=1e-4)
    assert second["status"] == "error" and second["error"] == bad.json()["error"] and second["http_status"] == 400
    assert b"Jane" not in raw and b"shoulder" not in raw and b".jpg" not in raw
    assert not any(photo[i : i + 12] in raw for i in range(0, len(photo) - 12))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_the_audit_log_rotates_and_keeps_only_its_own_fields(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log", max_bytes=2000, backups=2)
    for i in range(100):
        log.write({"request_id": f"r{i}", "probability": 0.5, "filename": "secret.jpg", "detail": "Jane"})
    files = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert files == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all((tmp_path / f).stat().st_size <= 2000 for f in files)
    assert json.loads((tmp_path / "audit.log").read_text().splitlines()[-1])["request_id"] == "r99"
    assert b"secret" not in b"".join((tmp_path / f).read_bytes() for f in files)


def test_processes_writing_one_audit_log_never_mix_their_lines(tmp_path: Path) -> None:
    code = ("import sys; from skinscan.api.audit import AuditLog\n"
            "log = AuditLog(sys.argv[1], max_bytes=5000, backups=1000)\n"
            "for i in range(300): log.write({'request_id': sys.argv[2] + str(i), 'route': '/p' * 9})\n")  # fmt: skip
    path = tmp_path / "audit.log"
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), name]) for name in ("a", "b")]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    files = [p for p in tmp_path.iterdir() if p.name.startswith("audit.log") and not p.name.endswith(".lock")]
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 600 and len({line["request_id"] for line in lines}) == 600
    assert all(f.stat().st_size <= 5000 for f in files)
