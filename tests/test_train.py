"""Training end to end on synthetic lesions: checkpoints, history, resume, config, bad data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skinscan.core.errors import DataError  # noqa: E402
from skinscan.training.checkpoint import load_checkpoint  # noqa: E402
from skinscan.training.config import TrainConfig, config_from  # noqa: E402
from skinscan.training.schedule import make_schedule  # noqa: E402
from skinscan.training.train import refit, train  # noqa: E402


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
    assert ckpt.config["model"] == "tiny-cnn"  # the config travels with the weights
    assert 0.0 < ckpt.threshold < 1.0 and ckpt.temperature > 0
    assert ckpt.val_auc is not None and ckpt.val_auc > 0.9  # the synthetic classes are easy: training learns them
    assert len(ckpt.val_keys) == ckpt.val_n == len(ckpt.val_ood_distance) == len(ckpt.val_texture_distance)
    assert ckpt.feature_gaussian is not None and ckpt.texture_gaussian is not None
    assert ckpt.feature_gaussian["mean"].shape == (32,) and ckpt.texture_gaussian["mean"].shape == (64,)
    assert ckpt.train_keys and set(ckpt.val_keys).isdisjoint(ckpt.train_keys)


def test_same_seed_same_result(synthetic_data: Path, tmp_path: Path) -> None:
    a = train(_cfg(synthetic_data, tmp_path / "a", max_steps=2))
    b = train(_cfg(synthetic_data, tmp_path / "b", max_steps=2))
    wa, wb = torch.load(a, weights_only=False)["model"], torch.load(b, weights_only=False)["model"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key])


def test_resume_continues_from_last_epoch(synthetic_data: Path, tmp_path: Path) -> None:
    """`skinscan train --resume` reaches the trainer (test_recipe checks that a resumed run continues exactly)."""
    out = tmp_path / "run"
    train(_cfg(synthetic_data, out, epochs=1, max_steps=2))
    state = torch.load(out / "last.pt", weights_only=False)
    state["history"][0]["train_loss"] = 123.0  # a fresh run would write its own first epoch instead
    torch.save(state, out / "last.pt")
    train(_cfg(synthetic_data, out, epochs=2, max_steps=2, resume=str(out / "last.pt")))
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and history[0]["train_loss"] == 123.0


def test_config_from_toml_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text('model = "seed-cnn"\nepochs = 3\nlr = 0.01\n')
    cfg = config_from(path, epochs=5, lr=None)
    assert (cfg.model, cfg.epochs, cfg.lr) == ("seed-cnn", 5, 0.01)
    with pytest.raises(ValueError, match="unknown training settings: epoch"):
        config_from(None, epoch=3)
    # misspelt choices stop at once, not after an epoch of training
    with pytest.raises(ValueError, match="valid: pos_weight, sampler, source, none"):
        config_from(None, balance="sources")
    with pytest.raises(ValueError, match="valid: val_auc, val_auc_sources"):
        config_from(None, monitor="auc")


@pytest.mark.parametrize(
    "recipe", sorted((Path(__file__).parents[1] / "experiments").glob("*.toml")), ids=lambda p: p.name
)
def test_committed_recipes_are_valid(recipe: Path) -> None:
    """Each recipe the model card cites loads, names a registered network and writes under runs/."""
    from skinscan.training.models import list_models

    cfg = config_from(recipe)
    assert cfg.model in list_models() and cfg.out.startswith("runs/") and cfg.epochs > 0


def test_unreadable_image_stops_before_training_or_is_skipped(synthetic_data: Path, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    (data / "train" / "benign" / "broken.jpg").write_bytes(b"not really a jpeg")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        train(_cfg(data, tmp_path / "out1", max_steps=1))
    from skinscan.training.records import SkippedRecords

    with pytest.warns(SkippedRecords, match=r"broken\.jpg"):
        best = train(_cfg(data, tmp_path / "out2", max_steps=1, epochs=1, skip_bad=True))
    assert best.is_file()


def test_cosine_schedule_with_weight_average_and_time_limit(synthetic_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cos"
    best = train(_cfg(synthetic_data, out, epochs=3, schedule="cosine", warmup_epochs=1, ema=0.9, max_steps=3))
    history = json.loads((out / "history.json").read_text())
    assert len(history) == 3 and history[0]["lr"] > history[1]["lr"] > history[2]["lr"]  # decays after warmup
    assert torch.load(out / "last.pt", weights_only=False)["ema"] is not None
    _, ckpt = load_checkpoint(best)
    assert 0.0 < ckpt.threshold < 1.0
    stopped = train(_cfg(synthetic_data, tmp_path / "limited", epochs=50, time_limit=1e-6, max_steps=1))
    assert len(torch.load(stopped, weights_only=False)["history"]) == 1  # stops after the first epoch


def test_cosine_learning_rate_shape() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1.0)
    sched = make_schedule(opt, TrainConfig(schedule="cosine", epochs=10, warmup_epochs=1), steps_per_epoch=10)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.after_step()
        sched.after_epoch(0.5)  # a per-step schedule ignores the epoch's metric
    assert lrs[0] == pytest.approx(0.01) and max(lrs) == pytest.approx(1.0) and lrs[-1] < 0.02
    with pytest.raises(ValueError, match="valid: cosine, plateau"):
        TrainConfig(schedule="step")


def test_refit_on_the_original_images_of_the_same_split(
    tiny_checkpoint: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    out = refit(tiny_checkpoint, tmp_path / "refit.pt")
    _, before = load_checkpoint(tiny_checkpoint)
    _, after = load_checkpoint(out)
    assert after.refit is not None and after.refit["feature_images"] == len(before.train_keys)
    assert after.val_keys == before.val_keys
    np.testing.assert_allclose(after.val_logits, before.val_logits, rtol=1e-5, atol=1e-5)  # same images
    # the split is found again by its keys: another seed in the config changes nothing...
    other = torch.load(tiny_checkpoint, weights_only=False)
    other["config"]["seed"] = 1
    torch.save(other, tmp_path / "reseeded.pt")
    assert load_checkpoint(refit(tmp_path / "reseeded.pt", tmp_path / "r2.pt"))[1].val_keys == before.val_keys
    # ...but a validation image gone from the data is an error that names it
    import shutil

    copy = tmp_path / "copy" / synthetic_data.name
    shutil.copytree(synthetic_data, copy)
    gone = before.val_keys[0].split(":", 1)[1]
    (copy / gone).unlink()
    other["config"]["data"] = [str(copy)]
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(DataError, match=f"do not hold the split.*{gone}"):
        refit(tmp_path / "other.pt", tmp_path / "never.pt")


def test_gpu_lease_path_pack_train_refit(synthetic_data: Path, tmp_path: Path) -> None:
    """experiments/gpu: pack the split here, train from the pack (as on the GPU machine), refit on the originals."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    config = tmp_path / "tiny.toml"
    config.write_text(
        f'data = ["{synthetic_data}"]\nholdout = ["{synthetic_data}"]\nmodel = "tiny-cnn"\npretrained = false\n'
        "epochs = 2\nbatch_size = 16\nval_fraction = 0.3\nfeature_images = 20\nthreads = 1\n"
    )
    pack, run = tmp_path / "pack", tmp_path / "run"

    def script(name: str, *args: str) -> None:
        result = subprocess.run([sys.executable, str(root / "experiments" / "gpu" / name), *args],
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]

    script("pack.py", "--config", str(config), "--out", str(pack))
    assert {p.name for p in pack.iterdir()} == {"images.npz", "imagenet-fp16.pth", "summary.json"}
    script("train_pack.py", str(pack), "--config", str(config), "--set", "schedule=cosine", "--out", str(run))
    _, trained = load_checkpoint(run / "best.pt")
    assert trained.config["schedule"] == "cosine" and len(trained.history) == 2
    # the pack carried exactly the split that training here makes, so refit accepts the checkpoint
    _, refitted = load_checkpoint(refit(run / "best.pt", tmp_path / "refit.pt"))
    assert refitted.val_keys == trained.val_keys and 0.0 < refitted.threshold < 1.0


def _ham_layout(synthetic_data: Path, root: Path) -> Path:
    """The synthetic test-split lesions laid out as HAM10000 training data (metadata CSV with a diagnosis and a
    lesion id): a second source, beside the folder layout's training split."""
    import shutil

    (root / "images").mkdir(parents=True)
    rows = ["lesion_id,image_id,dx,dx_type,age,sex,localization,dataset"]
    for i, path in enumerate(sorted((synthetic_data / "test").rglob("*.png"))):
        image_id = f"ISIC_{i:07d}"
        shutil.copy(path, root / "images" / f"{image_id}.png")
        dx = ("mel", "bcc")[i % 2] if path.parent.name == "malignant" else ("nv", "bkl")[i % 2]
        rows.append(f"HAM_{i:07d},{image_id},{dx},histo,50,male,back,synthetic")
    (root / "HAM10000_metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_source_balance_auxiliary_diagnosis_and_fine_tuning(synthetic_data: Path, tmp_path: Path) -> None:
    ham = _ham_layout(synthetic_data, tmp_path / "ham")
    cfg = _cfg(synthetic_data, tmp_path / "aux", epochs=2, max_steps=3, balance="source", aux_weight=0.5,
               monitor="val_auc_sources")  # fmt: skip
    cfg.data = [str(ham), str(synthetic_data)]
    best = train(cfg)
    last = torch.load(tmp_path / "aux" / "last.pt", weights_only=False)
    assert last["aux"]["weight"].shape[0] == 7  # the diagnosis head trained beside the network...
    model, ckpt = load_checkpoint(best)  # ...and stays out of the checkpoint that export reads
    assert not any(k.startswith("aux") for k in ckpt.model)
    assert ckpt.diagnosis_head is not None and ckpt.diagnosis_head["weight"].shape == (7, 32)  # kept beside it
    assert all(0.0 <= row["val_auc_sources"] <= 1.0 for row in ckpt.history)
    # init: a run starts from a checkpoint's weights (lr 0 leaves them as they were)
    tuned = train(_cfg(synthetic_data, tmp_path / "tuned", epochs=1, max_steps=2, lr=0.0, init=str(best)))
    after = dict(load_checkpoint(tuned)[0].named_parameters())
    for name, value in model.named_parameters():
        torch.testing.assert_close(after[name], value)
    with pytest.raises(DataError, match="holds a tiny-cnn, not the seed-cnn"):
        train(_cfg(synthetic_data, tmp_path / "wrong", model="seed-cnn", init=str(best)))


def test_sampling_weights_balance_labels_within_each_source() -> None:
    from skinscan.training.sampling import sampling_weights
    from skinscan.training.scoring import auc_within_sources

    labels = np.array([0] * 80 + [1] * 20 + [0] * 5 + [1] * 15)
    sources = ["ham"] * 100 + ["kaggle"] * 20
    p = sampling_weights(labels, sources, "source")
    assert p is not None and p.sum() == pytest.approx(1.0)
    ham, kaggle = np.arange(120) < 100, np.arange(120) >= 100
    assert p[ham].sum() == pytest.approx(100 / 120)  # each source keeps its share of the draws
    assert p[ham & (labels == 1)].sum() == pytest.approx(p[ham & (labels == 0)].sum())  # labels equal within it
    assert p[kaggle & (labels == 1)].sum() == pytest.approx(p[kaggle & (labels == 0)].sum())
    p = sampling_weights(labels, sources, "sampler")
    assert p is not None and p[labels == 1].sum() == pytest.approx(0.5)
    assert sampling_weights(labels, sources, "none") is None
    # a score that only tells the sources apart: better than chance pooled, chance within each source
    source_cue = np.where(ham, 0.0, 1.0)
    assert auc_within_sources(labels, source_cue, ["all"] * 120) == pytest.approx(2037.5 / 2975)  # 35 x 85 pairs
    assert auc_within_sources(labels, source_cue, sources) == 0.5
