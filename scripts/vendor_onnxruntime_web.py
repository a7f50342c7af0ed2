"""Vendor ONNX Runtime Web into the web client, for judging photos on the device: the pinned npm release's
WebAssembly build (the CPU kernels only: no WebGPU, WebGL or WebNN), with its licence, into
src/skinscan/api/static/vendor/ort/. Nothing is loaded from a CDN. The output is committed (4 MB), so that a clean
clone serves and tests the on-device mode with no network; VERSION.json keeps each file's sha256, and `--check`
(run by tests/test_device.py) holds them and the pins here to each other.

The tarball comes from the npm registry through `npm pack` and must match the pinned sha512 integrity. The
WebAssembly binary is stored gzipped (15 MB → 3.8 MB): the server sends it as it is to browsers, which all accept
gzip (api/device.py). The npm package ships no licence file; ONNX Runtime's (the same project, MIT) and its
third-party notices come from the onnxruntime Python package that every skinscan environment has.

Usage: python scripts/vendor_onnxruntime_web.py [--check] [--optional]
  --check     exit 1 when the vendored files are missing or not those of the pinned release
  --optional  without npm or the registry, warn and exit 0 (the server then runs without on-device judging,
              and the page says why)
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "src" / "skinscan" / "api" / "static" / "vendor" / "ort"
PACKAGE = "onnxruntime-web"
VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# the ES module entry point of the WebAssembly-only build, its loader, and the binary (SIMD; threads where the page
# is cross-origin isolated, one thread otherwise)
FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
GZIPPED = "ort-wasm-simd-threaded.wasm"
MANIFEST = "VERSION.json"


def wanted_names() -> list[str]:
    return [f"{name}.gz" if name == GZIPPED else name for name in FILES] + ["LICENSE", "ThirdPartyNotices.txt"]


def is_current() -> bool:
    """Whether DEST holds the pinned release's files, unchanged."""
    try:
        manifest = json.loads((DEST / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("version") != VERSION or manifest.get("integrity") != INTEGRITY:
        return False
    digests = manifest.get("sha256", {})
    for name in wanted_names():
        path = DEST / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digests.get(name):
            return False
    return True


def fetch_tarball(folder: Path) -> bytes:
    """The pinned release's tarball, by `npm pack`, checked against its integrity."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (Debian/Ubuntu: apt-get install npm); it fetches onnxruntime-web")
    result = subprocess.run(
        [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(folder), "--silent", "--ignore-scripts"],
        capture_output=True, text=True, timeout=600, cwd=folder,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"npm pack {PACKAGE}@{VERSION} failed: {(result.stderr or result.stdout).strip()[-500:]}")
    (tarball,) = folder.glob(f"{PACKAGE}-{VERSION}.tgz")
    data = tarball.read_bytes()
    algorithm, _, expected = INTEGRITY.partition("-")
    got = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if got != expected:
        raise RuntimeError(f"{tarball.name} does not match the pinned integrity {INTEGRITY} (got {algorithm}-{got})")
    return data


def licence_files() -> dict[str, bytes]:
    """ONNX Runtime's licence and third-party notices, from the installed onnxruntime Python package."""
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the onnxruntime Python package is not installed; its licence files go with the vendored copy"
        )
    folder = Path(spec.origin).parent
    files = {name: (folder / name).read_bytes() for name in ("LICENSE", "ThirdPartyNotices.txt")}
    if not files["LICENSE"].startswith(b"MIT License"):
        raise RuntimeError(f"{folder / 'LICENSE'} is not the MIT licence onnxruntime-web is published under")
    return files


def vendor() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = fetch_tarball(Path(tmp))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        package = json.load(archive.extractfile("package/package.json"))  # type: ignore[arg-type]
        if package.get("version") != VERSION or package.get("license") != "MIT":
            raise RuntimeError(
                f"unexpected package.json: version {package.get('version')}, licence {package.get('license')}"
            )
        contents = {name: archive.extractfile(f"package/dist/{name}").read() for name in FILES}  # type: ignore[union-attr]
    # mtime 0: the same release always gives the same bytes
    contents[f"{GZIPPED}.gz"] = gzip.compress(contents.pop(GZIPPED), compresslevel=9, mtime=0)
    contents.update(licence_files())
    staging = DEST.with_name(DEST.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, blob in contents.items():
        (staging / name).write_bytes(blob)
    manifest = {
        "package": PACKAGE,
        "version": VERSION,
        "integrity": INTEGRITY,
        "licence": "MIT (Copyright (c) Microsoft Corporation); third-party notices in ThirdPartyNotices.txt",
        "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in sorted(contents.items())},
    }
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(DEST, ignore_errors=True)
    staging.replace(DEST)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the vendored files are current")
    parser.add_argument("--optional", action="store_true", help="warn instead of failing when it cannot be fetched")
    args = parser.parse_args()
    if is_current():
        return 0
    if args.check:
        print(
            f"{DEST.relative_to(ROOT)} does not hold {PACKAGE} {VERSION}: run python scripts/vendor_onnxruntime_web.py"
        )
        return 1
    try:
        vendor()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"cannot vendor {PACKAGE} {VERSION}: {exc}", file=sys.stderr)
        if args.optional:
            print("continuing without on-device judging: the web client judges on the server only", file=sys.stderr)
            return 0
        return 1
    print(f"vendored {PACKAGE} {VERSION} into {DEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
