"""Shared fixtures: synthetic lesion images, a tiny network really trained and exported once per session,
and the real dermoscopy of ../shared/data when it is there."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from synthetic import write_dataset

if TYPE_CHECKING:
    from skinscan.runtime.engine import Engine

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# pytest-qt and qtpy must pick the same binding, or two Qt libraries end up in one process
os.environ.setdefault("PYTEST_QT_API", os.environ.get("QT_API", "pyqt5"))
# a model store of the test run's own, empty (never created unless a test pulls into it): a model the user pulled
# with `skinscan models pull` must not become every test's default model (runtime/store.py)
os.environ["SKINSCAN_HOME"] = os.path.join(tempfile.gettempdir(), f"skinscan-tests-{os.getpid()}")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets; tests that need them skip when a fresh machine has no ../shared."""
    if not (SHARED_DATA / "ham10000").is_dir() or not (SHARED_DATA / "isic-mvb").is_dir():
        pytest.skip(f"real dermoscopy not found at {SHARED_DATA} (it ships beside the repository only in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic"), {"train": 40, "test": 12})


@pytest.fixture(scope="session")
def tiny_checkpoint(synthetic_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-cnn really trained for a few epochs on synthetic lesions (a best.pt)."""
    pytest.importorskip("torch")
    from skinscan.training.config import TrainConfig
    from skinscan.training.train import train

    out = tmp_path_factory.mktemp("tiny_run")
    cfg = TrainConfig(
        data=[str(synthetic_data)],
        split="train",
        holdout=[str(synthetic_data)],
        model="tiny-cnn",
        pretrained=False,
        epochs=6,
        batch_size=16,
        lr=3e-3,
        val_fraction=0.3,
        patience=6,
        feature_images=60,
        threads=1,
        out=str(out),
    )
    return train(cfg)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> Engine:
    """The tiny model in the real engine, one thread (the tests share two cores)."""
    from skinscan.runtime.engine import Engine

    return Engine(tiny_model_dir, threads=1)


@pytest.fixture(scope="module")
def server_url(engine: Engine) -> Iterator[str]:
    """A real uvicorn server on loopback serving the app over `engine`, with settings from no environment."""
    from live_server import live_server, plain_settings
    from skinscan.api.app import create_app

    with live_server(create_app(engine=engine, settings=plain_settings())) as url:
        yield url


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported as model.onnx + model.json: a real model for engine, API and GUI tests."""
    from skinscan.training.export import export_checkpoint

    out = tmp_path_factory.mktemp("tiny_model")
    # 24 validation images make the 99th percentile nearly their maximum; the margin keeps fresh synthetic
    # lesions in (noise and blank images still fall far outside)
    export_checkpoint(tiny_checkpoint, out, ood_margin=1.5)
    return out


@pytest.fixture(scope="session")
def diagnosis_model_dir(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a (random) seven-diagnosis head: a model whose answers name the likely diagnoses."""
    torch = pytest.importorskip("torch")
    from skinscan.training.checkpoint import load_checkpoint
    from skinscan.training.export import export_model

    model, ckpt = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("diagnosis_model")
    export_model(model, ckpt.with_fit(diagnosis_head=torch.nn.Linear(32, 7).state_dict()), out, ood_margin=1.5)
    return out
