"""The Checkpoint file: one format, read and written in one place; older files load, wrong ones say why."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from skinscan.core.errors import ModelFormatError  # noqa: E402
from skinscan.core.preprocess import PreprocessSpec  # noqa: E402
from skinscan.training.checkpoint import FORMAT, Checkpoint, load_checkpoint, read_checkpoint  # noqa: E402

# The keys a best.pt had before the Checkpoint class, as the trainer wrote them (format skinscan-checkpoint-1).
FORMAT_1_KEYS = {
    "format", "model_name", "model", "info", "preprocess", "config", "data", "history", "best_epoch", "train_keys",
    "quality_limits", "temperature", "logit_bias", "threshold", "target_sensitivity", "threshold_rule", "val_auc",
    "val_n", "val_keys", "val_logits", "val_labels", "val_ood_distance", "val_texture_distance", "feature_gaussian",
    "texture_gaussian",
}  # fmt: skip


def test_a_trained_checkpoint_round_trips(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = read_checkpoint(tiny_checkpoint)
    assert ckpt.format == FORMAT and isinstance(ckpt.preprocess, PreprocessSpec)
    saved = read_checkpoint(ckpt.save(tmp_path / "again.pt"))
    for f in fields(Checkpoint):
        if f.name not in ("model", "feature_gaussian", "texture_gaussian"):
            assert getattr(saved, f.name) == getattr(ckpt, f.name), f.name
    for key, value in ckpt.model.items():
        torch.testing.assert_close(saved.model[key], value)
    assert not (tmp_path / "again.tmp").exists()  # written under a temporary name, then renamed


def test_the_file_is_the_format_1_dict(tiny_checkpoint: Path) -> None:
    raw = torch.load(tiny_checkpoint, weights_only=False)
    assert set(raw) >= FORMAT_1_KEYS and raw["format"] == "skinscan-checkpoint-1"
    assert isinstance(raw["preprocess"], dict)  # plain data on disk: readable without skinscan's classes


def test_a_format_1_file_written_by_the_old_trainer_loads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    raw = torch.load(tiny_checkpoint, weights_only=False)
    old = {k: v for k, v in raw.items() if k in FORMAT_1_KEYS}  # no keys added since
    old["preprocess"] = {k: list(v) if isinstance(v, tuple) else v for k, v in old["preprocess"].items()}
    old["soup"] = {"kept": ["a", "b"]}  # a key this version does not know: kept, and written back
    torch.save(old, tmp_path / "old.pt")
    model, ckpt = load_checkpoint(tmp_path / "old.pt")
    assert ckpt.preprocess.mean == tuple(raw["preprocess"]["mean"]) and ckpt.refit is None
    assert read_checkpoint(ckpt.save(tmp_path / "again.pt")).extra == {"soup": {"kept": ["a", "b"]}}
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"model": {}, "optimizer": {}, "epoch": 3, "config": {}}, "resumable state"),
        ({"format": "skinscan-checkpoint-9", "model_name": "tiny-cnn"}, "reads skinscan-checkpoint-1"),
        ({"format": "skinscan-checkpoint-1", "model_name": "tiny-cnn"}, "incomplete"),
        ([1, 2, 3], "not a skinscan checkpoint"),
    ],
    ids=["last.pt", "newer format", "missing keys", "not a dict"],
)
def test_wrong_files_get_a_clear_error(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(ModelFormatError, match=message):
        read_checkpoint(path)


def test_unreadable_file_and_mismatched_weights(tiny_checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelFormatError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    ckpt = read_checkpoint(tiny_checkpoint)
    wrong = Checkpoint(model_name="seed-cnn", model=ckpt.model, preprocess=ckpt.preprocess)
    with pytest.raises(ModelFormatError, match="do not fit a seed-cnn"):
        wrong.build_model()
    with pytest.raises(TypeError):
        ckpt.with_fit(no_such_field=1)


def test_export_of_a_last_pt_is_refused_on_the_command_line(tiny_checkpoint: Path, tmp_path: Path) -> None:
    last = tiny_checkpoint.parent / "last.pt"
    done = subprocess.run([sys.executable, "-m", "skinscan.cli", "export", str(last), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1 and "resumable state" in done.stderr and "Traceback" not in done.stderr
