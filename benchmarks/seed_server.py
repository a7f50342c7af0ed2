"""The seed project's serving design, reimplemented faithfully as the baseline for the benchmarks.

Python's http.server ThreadingHTTPServer (one process, a thread per connection, HTTP/1.0 as the stdlib defaults to),
`POST /predict` with the photo in the multipart field `file`, decoded with Pillow, resized to 224×224, made a torch
tensor /255 and run eagerly through the seed-cnn network (`model(x)`, eval mode, torch.no_grad) per request; the
answer is JSON {probability, description}. Random weights: it is for speed, not for verdicts. `GET /` answers 200
once the model is built, so the benchmarks know when to start.
Usage: python benchmarks/seed_server.py [--port 8765]   (listens on 127.0.0.1 only)"""

from __future__ import annotations

import argparse
import io
import json
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import torch
from PIL import Image

from skinscan.training.models import create_model


def describe(probability: float) -> str:
    # the seed's three-way wording of its single probability
    if probability < 0.3:
        return "The lesion looks benign."
    if probability < 0.7:
        return "The result is uncertain; have the lesion checked."
    return "The lesion looks malignant; see a doctor."


def predict_seed(model: torch.nn.Module, data: bytes) -> float:
    """The seed's whole pipeline for one upload: decode, resize, tensor /255, eager forward pass."""
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224))
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float().unsqueeze(0) / 255.0
    with torch.no_grad():
        return float(torch.sigmoid(model(x))[0])


def file_field(content_type: str, body: bytes, field: str = "file") -> bytes | None:
    """The bytes of the multipart form field `field`, parsed with the standard library's email parser."""
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == field:
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else None
    return None


def make_handler(model: torch.nn.Module) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._json(200, {"status": "ok"})

        def do_POST(self) -> None:
            if self.path.split("?")[0] != "/predict":
                self._json(404, {"error": "not found"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            data = file_field(self.headers.get("Content-Type", ""), body)
            if data is None:
                self._json(400, {"error": "no file"})
                return
            try:
                probability = predict_seed(model, data)
            except Exception as exc:  # the seed answered any failure with a 500
                self._json(500, {"error": str(exc)})
                return
            self._json(200, {"probability": probability, "description": describe(probability)})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the benchmark reads no logs; writing them would only add noise

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = create_model("seed-cnn", pretrained=False).eval()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(model))
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
