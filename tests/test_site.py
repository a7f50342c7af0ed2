"""Site profiles: `calibrate-site` fits a clinic's calibration, threshold and perhaps a head on its own labelled
photos, measures them on held-out folds, and the engine (and predict) applies the profile."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.core.errors import ConfigError, DataError
from skinscan.evaluation.site import calibrate_site, folds_of
from skinscan.runtime.engine import Engine
from skinscan.runtime.site import SiteProfile, load_site
from synthetic import lesion_bytes, write_dataset


@pytest.fixture(scope="module")
def site_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clinic's labelled photos: new lesions, and a camera with a warmer cast than the training images had."""
    root = write_dataset(tmp_path_factory.mktemp("clinic"), {"all": 45}, seed=11)
    for path in root.rglob("*.png"):
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        Image.fromarray(np.clip(pixels * [1.08, 0.97, 0.88], 0, 255).astype(np.uint8)).save(path)
    return root


@pytest.fixture(scope="module")
def fitted(site_data: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("site") / "site.json"
    summary = calibrate_site(site_data, out, model=str(tiny_model_dir), sensitivity=0.9, adapt="always",
                             refit_checks=True, n_boot=200)  # fmt: skip
    return out, summary


def test_a_profile_is_fitted_and_measured_on_held_out_folds(fitted: tuple[Path, dict], tiny_model_dir: Path) -> None:
    out, summary = fitted
    profile = load_site(out)
    engine = Engine(tiny_model_dir)
    assert profile.model_id == engine.spec.id and profile.images == 90 and profile.malignant == 45
    assert profile.head is not None and profile.active in ("recalibrated", "adapted")
    for key in ("before", "recalibrated", "adapted"):
        m = summary[key]
        assert m["n"] == 90 and m["sensitivity_ci"] and m["specificity_ci"] and 0 <= m["sensitivity"] <= 1
    assert summary["folds"] == 5
    # what the profile promises is what the held-out folds measured for the active variant
    assert profile.expected["sensitivity"] == summary[profile.active]["sensitivity"]
    report = (out.parent / "report.html").read_text()
    assert "held-out folds" in report and "not a diagnosis" in report and report.count("data:image/png") == 3


def test_the_engine_applies_the_profile(fitted: tuple[Path, dict], tiny_model_dir: Path, site_data: Path) -> None:
    out, _ = fitted
    profile = load_site(out)
    plain, sited = Engine(tiny_model_dir), Engine(tiny_model_dir, site=out)
    assert sited.threshold == pytest.approx(profile.threshold) and sited.info["site"]["name"] == profile.name
    photos = sorted(site_data.rglob("*.png"))[:6]
    a, b = plain.predict_batch(photos), sited.predict_batch(photos)
    assert all(r.site is None for r in a) and all(r.site and r.site["images"] == 90 for r in b)
    assert any(abs(x.probability - y.probability) > 1e-6 for x, y in zip(a, b, strict=True) if x.ok and y.ok)
    # a threshold given explicitly still wins over the profile's
    assert Engine(tiny_model_dir, site=out, threshold=0.3).threshold == 0.3


def test_a_profile_of_another_model_or_a_broken_file_is_refused(
    fitted: tuple[Path, dict], tiny_model_dir: Path, tmp_path: Path
) -> None:
    out, _ = fitted
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(out.read_text()), "model_id": "someone-elses-model"}))
    with pytest.raises(ConfigError, match="fitted for model someone-elses-model"):
        Engine(tiny_model_dir, site=other)
    broken = tmp_path / "broken.json"
    for text, message in (("{not json", "not JSON"), ('{"format": "x"}', "not a skinscan-site-1"),
                          (json.dumps({**json.loads(out.read_text()), "threshold": 7}), "threshold")):  # fmt: skip
        broken.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_site(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "missing.json")


def test_nonsense_data_is_refused(site_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    one_class = tmp_path / "benign-only"
    shutil.copytree(site_data / "all" / "benign", one_class / "all" / "benign")
    with pytest.raises(DataError, match="all benign"):
        calibrate_site(one_class, tmp_path / "a.json", model=str(tiny_model_dir), n_boot=0)
    broken = tmp_path / "broken"
    shutil.copytree(site_data, broken)
    (broken / "all" / "malignant" / "000.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="cannot be read"):
        calibrate_site(broken, tmp_path / "b.json", model=str(tiny_model_dir), n_boot=0)


def test_few_malignant_images_are_said_plainly(site_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    few = tmp_path / "few"
    shutil.copytree(site_data / "all" / "benign", few / "all" / "benign")
    (few / "all" / "malignant").mkdir(parents=True)
    for path in sorted((site_data / "all" / "malignant").glob("*.png"))[:12]:
        shutil.copy(path, few / "all" / "malignant" / path.name)
    summary = calibrate_site(few, tmp_path / "few.json", model=str(tiny_model_dir), n_boot=0)
    assert any("Too few malignant images" in n and "12 malignant" in n for n in summary["notes"])
    assert any("No adapted head" in n for n in summary["notes"]) and summary["profile"]["active"] == "recalibrated"


def test_folds_never_split_a_lesion() -> None:
    labels = np.array([0, 1] * 30)
    groups = np.repeat(np.arange(20), 3)  # three photos of each lesion
    fold = folds_of(labels, groups, 5, seed=0)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1
    assert len(set(fold)) == 5


def test_the_command_line_fits_and_predict_uses_it(site_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "clinic.json"
    cli = [sys.executable, "-m", "skinscan.cli"]
    done = subprocess.run([*cli, "calibrate-site", str(site_data), "--out", str(out), "--model", str(tiny_model_dir),
                           "--name", "Clinic A"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recalibrated" in done.stdout and "sensitivity" in done.stdout and out.is_file()
    assert isinstance(SiteProfile.from_dict(json.loads(out.read_text())), SiteProfile)
    photo = tmp_path / "mole.jpg"
    photo.write_bytes(lesion_bytes(True, seed=4))
    judged = subprocess.run([*cli, "predict", str(photo), "--model", str(tiny_model_dir), "--site", str(out),
                             "--json"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert judged.returncode == 0, judged.stderr[-2000:]
    assert json.loads(judged.stdout)["site"]["name"] == "Clinic A"
    bad = subprocess.run([*cli, "predict", str(photo), "--site", str(tmp_path / "nope.json")], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "cannot read the site profile" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_with_a_site_uses_its_operating_point(
    fitted: tuple[Path, dict], tiny_model_dir: Path, site_data: Path, tmp_path: Path
) -> None:
    from skinscan.evaluation.evaluate import evaluate

    out, _ = fitted
    profile = load_site(out)
    metrics = evaluate(site_data, out=tmp_path / "e", model=str(tiny_model_dir), site=str(out), n_boot=0)
    assert metrics["threshold"] == pytest.approx(profile.threshold)
    assert "site profile" in (tmp_path / "e" / "report.html").read_text()


def test_the_server_answers_with_the_site_it_serves(fitted: tuple[Path, dict], tiny_model_dir: Path) -> None:
    import httpx

    from live_server import live_server, plain_settings
    from skinscan.api.app import create_app

    out, _ = fitted
    settings = plain_settings(model=str(tiny_model_dir), site=str(out))
    with live_server(create_app(settings=settings)) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(200):  # the app loads its engine (with the site) in the background
            if client.get("/health").status_code == 200:
                break
            time.sleep(0.1)
        card = client.get("/model").json()
        answer = client.post("/predict", files={"file": ("m.jpg", lesion_bytes(True, seed=5), "image/jpeg")}).json()
    name = load_site(out).name
    assert card["site"]["name"] == name and answer["site"]["name"] == name
    assert answer["threshold"] == pytest.approx(load_site(out).threshold, abs=1e-4)


def test_serve_refuses_an_unreadable_site_before_it_starts(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "skinscan.cli", "serve", "--port", "0", "--site",
                           str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "cannot read the site profile" in done.stderr and "Traceback" not in done.stderr
