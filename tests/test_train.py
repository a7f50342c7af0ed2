"""Training end to end on synthetic lesions: checkpoints, history, resume, config, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from skinscan.errors import DataError  # noqa: E402
from skinscan.train import load_checkpoint, train  # noqa: E402
from skinscan.train_config import TrainConfig, config_from  # noqa: E402


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=[str(data)], split="train", holdout=[], model="tiny-cnn", pretrained=False, epochs=2,
                batch_size=16, val_fraction=0.3, feature_images=40, threads=1, out=str(out))  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_training_writes_a_complete_checkpoint(tiny_checkpoint: Path) -> None:
    out = tiny_checkpoint.parent
    for name in ("best.pt", "last.pt", "history.json", "history.csv", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert {"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_auc", "lr"} <= set(history[0])
    _, ckpt = load_checkpoint(tiny_checkpoint)
    assert ckpt["config"]["model"] == "tiny-cnn"  # the config travels with the weights
    assert 0.0 < ckpt["threshold"] < 1.0 and ckpt["temperature"] > 0
    assert ckpt["val_auc"] > 0.9  # the synthetic classes are easy: a real training run learns them
    assert len(ckpt["val_keys"]) == ckpt["val_n"] == len(ckpt["val_ood_distance"])
    assert set(ckpt["val_keys"]).isdisjoint({r for r in ckpt.get("train_keys", [])})


def test_same_seed_same_result(synthetic_data: Path, tmp_path: Path) -> None:
    a = train(_cfg(synthetic_data, tmp_path / "a", max_steps=2))
    b = train(_cfg(synthetic_data, tmp_path / "b", max_steps=2))
    wa, wb = torch.load(a, weights_only=False)["model"], torch.load(b, weights_only=False)["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key])


def test_resume_continues_from_last_epoch(synthetic_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(_cfg(synthetic_data, out, epochs=1, max_steps=2))
    train(_cfg(synthetic_data, out, epochs=2, max_steps=2, resume=str(out / "last.pt")))
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]


def test_config_from_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('model = "seed-cnn"\nepochs = 3\nlr = 0.01\n')
    cfg = config_from(path, epochs=5, lr=None)
    assert (cfg.model, cfg.epochs, cfg.lr) == ("seed-cnn", 5, 0.01)
    with pytest.raises(ValueError, match="unknown training settings: epoch"):
        config_from(None, epoch=3)


def test_unreadable_image_stops_before_training_or_is_skipped(synthetic_data: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    (data / "train" / "benign" / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        train(_cfg(data, tmp_path / "out1", max_steps=1))
    from skinscan.data import SkippedRecords

    with pytest.warns(SkippedRecords, match=r"broken\.jpg"):
        best = train(_cfg(data, tmp_path / "out2", max_steps=1, epochs=1, skip_bad=True))
    assert best.is_file()
