"""Each feature of the training recipe, tested so that the test fails when the feature becomes a no-op: resume,
augmentation, balanced and source-balanced sampling, the auxiliary diagnosis loss, the weight average,
early stopping and both learning-rate schedules. Real tiny networks on synthetic lesions; no mocks."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from skinscan.core.preprocess import prepare_pixels  # noqa: E402
from skinscan.training.augment import AugmentConfig, augment_batch  # noqa: E402
from skinscan.training.config import TrainConfig  # noqa: E402
from skinscan.training.dataset import Prepared  # noqa: E402
from skinscan.training.models import create_model  # noqa: E402
from skinscan.training.records import Record  # noqa: E402
from skinscan.training.scoring import eval_tensor  # noqa: E402
from skinscan.training.train import build_trainer, seed_everything, train_prepared  # noqa: E402
from skinscan.training.trainer import Trainer, make_ema  # noqa: E402
from synthetic import make_lesion  # noqa: E402

CPU = torch.device("cpu")
# ham: 60 benign, 20 malignant, with diagnoses; kaggle: 10 benign, 30 malignant, without
MIX = {("ham", 0): 60, ("ham", 1): 20, ("kaggle", 0): 10, ("kaggle", 1): 30}
NEUTRAL = AugmentConfig(rotate=False, flip=False, scale=(1.0, 1.0), shift=0.0, brightness=0.0, contrast=0.0,
                        saturation=0.0, channel_gain=0.0, gamma=0.0, blur_p=0.0, lowres_p=0.0)  # fmt: skip


def _prepared(mix: dict[tuple[str, int], int], seed: int) -> Prepared:
    rng = np.random.default_rng(seed)
    spec = create_model("tiny-cnn", pretrained=False).info.preprocess
    records, pixels = [], []
    for (source, label), n in mix.items():
        for i in range(n):
            key = f"{source}:{seed}-{label}-{i}"
            meta = {"dx": ("mel", "bcc")[i % 2] if label else ("nv", "bkl")[i % 2]} if source == "ham" else {}
            records.append(Record(Path(key), label, key, key, meta=meta))
            pixels.append(prepare_pixels(make_lesion(rng, bool(label)), spec))
    return Prepared(records, np.stack(pixels), np.array([r.label for r in records], dtype=np.int64))


@pytest.fixture(scope="module")
def sets() -> tuple[Prepared, Prepared]:
    return _prepared(MIX, 0), _prepared({("ham", 0): 12, ("ham", 1): 6, ("kaggle", 0): 4, ("kaggle", 1): 8}, 1)


def _cfg(tmp_path: Path, **kw: object) -> TrainConfig:
    base = dict(data=[], holdout=[], model="tiny-cnn", pretrained=False, epochs=2, batch_size=16, lr=3e-3,
                feature_images=40, threads=1, patience=10, out=str(tmp_path / "run"))  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _trainer(cfg: TrainConfig, sets: tuple[Prepared, Prepared]) -> Trainer:
    seed_everything(cfg.seed)  # as train_prepared does before it builds anything
    torch.set_num_threads(1)
    return build_trainer(cfg, *sets, CPU)


class _Crash(Exception):
    pass


# --- resume ------------------------------------------------------------------------------------------


def test_resume_continues_the_interrupted_run_exactly(sets: tuple[Prepared, Prepared], tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, epochs=2, max_steps=3, schedule="cosine", ema=0.9, aux_weight=0.5, balance="source")
    straight = _trainer(cfg, sets)
    straight.fit(tmp_path / "a")

    def crash(row: dict[str, float]) -> None:
        raise _Crash  # after epoch 1's last.pt is written, as a killed run would leave it

    (tmp_path / "b").mkdir()
    with pytest.raises(_Crash):
        _trainer(cfg, sets).fit(tmp_path / "b", on_epoch=crash)
    last = tmp_path / "b" / "last.pt"
    saved = torch.load(last, weights_only=False)
    saved["history"][0]["train_loss"] = 123.0  # a marker: the resumed run must carry the saved history on
    torch.save(saved, last)

    resumed = _trainer(cfg, sets)
    resumed.restore(last)
    assert resumed.epoch == 1 and len(resumed.history) == 1 and resumed.stale == saved["stale"]
    state = resumed.optimizer.state_dict()["state"]
    assert state, "the optimiser's moments were not restored"
    for key, moments in saved["optimizer"]["state"].items():
        torch.testing.assert_close(state[key]["exp_avg"], moments["exp_avg"])
    resumed.fit(tmp_path / "b")

    assert [r["epoch"] for r in resumed.history] == [1, 2] and resumed.history[0]["train_loss"] == 123.0
    drop = ("seconds",)
    assert {k: v for k, v in resumed.history[1].items() if k not in drop} == pytest.approx(
        {k: v for k, v in straight.history[1].items() if k not in drop}
    )
    for name, value in straight.scored_model.state_dict().items():  # weights, average, RNG: all continued
        torch.testing.assert_close(resumed.scored_model.state_dict()[name], value)
    assert resumed.drawn == straight.drawn


# --- augmentation ------------------------------------------------------------------------------------


def _grey(n: int, value: int = 128, size: int = 32) -> torch.Tensor:
    rng = np.random.default_rng(0)
    base = np.full((n, size, size, 3), value, dtype=np.int16) + rng.integers(-20, 20, (n, size, size, 3))
    return torch.from_numpy(base.clip(0, 255).astype(np.uint8))


def test_neutral_augmentation_is_the_identity() -> None:
    pixels = _grey(4)
    out = augment_batch(pixels, NEUTRAL, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, pixels.permute(0, 3, 1, 2).float() / 255, atol=1e-4, rtol=0)


def test_augmentation_is_applied_and_random_but_seeded() -> None:
    pixels = _grey(8)
    a = augment_batch(pixels, AugmentConfig(), torch.Generator().manual_seed(0))
    again = augment_batch(pixels, AugmentConfig(), torch.Generator().manual_seed(0))
    other = augment_batch(pixels, AugmentConfig(), torch.Generator().manual_seed(1))
    plain = pixels.permute(0, 3, 1, 2).float() / 255
    assert (a - plain).abs().mean() > 0.01  # applied
    torch.testing.assert_close(a, again)  # reproducible from its generator
    assert (a - other).abs().mean() > 0.01  # random
    assert a.shape == plain.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


@pytest.mark.parametrize(
    ("setting", "spread"),
    [("brightness", 0.25), ("channel_gain", 0.08)],
)
def test_colour_augmentation_stays_within_its_documented_range(setting: str, spread: float) -> None:
    pixels = _grey(256, value=100)
    cfg = replace(NEUTRAL, **{setting: spread})
    out = augment_batch(pixels, cfg, torch.Generator().manual_seed(0))
    before = pixels.permute(0, 3, 1, 2).float() / 255
    dims = (1, 2, 3) if setting == "brightness" else (2, 3)
    ratio = (out.mean(dim=dims) / before.mean(dim=dims)).flatten()
    assert float(ratio.min()) >= 1 - spread - 1e-3 and float(ratio.max()) <= 1 + spread + 1e-3  # within range
    assert float(ratio.min()) < 1 - 0.8 * spread and float(ratio.max()) > 1 + 0.8 * spread  # and uses it


def test_geometry_augmentation_zooms_within_its_range() -> None:
    """A centred square 1/4 of the side: its area after the zoom tells the scale, within (0.75, 1.35)."""
    pixels = torch.zeros(128, 64, 64, 3, dtype=torch.uint8)
    pixels[:, 24:40, 24:40] = 255
    cfg = replace(NEUTRAL, scale=(0.75, 1.35))
    out = augment_batch(pixels, cfg, torch.Generator().manual_seed(0))
    # reflection padding repeats the square when zoomed out: count only the middle
    area = out[:, 0, 8:56, 8:56].gt(0.5).float().sum(dim=(1, 2)) / 256
    side = area.sqrt()
    assert float(side.min()) > 0.7 and float(side.max()) < 1.42
    assert float(side.min()) < 0.85 and float(side.max()) > 1.2


def test_the_trainer_augments_its_batches(sets: tuple[Prepared, Prepared], tmp_path: Path) -> None:
    idx = np.arange(8)
    on = _trainer(_cfg(tmp_path, augment=True), sets)
    first, second = on.batch(idx)[0], on.batch(idx)[0]
    plain = eval_tensor(sets[0].pixels[idx], on.spec)
    assert (first - plain).abs().mean() > 0.05 and (first - second).abs().mean() > 0.05
    off = _trainer(_cfg(tmp_path, augment=False), sets)
    torch.testing.assert_close(off.batch(idx)[0], plain)
    # end to end: the same run with and without augmentation trains on different inputs
    loss_on = on.train_epoch()["train_loss"]
    loss_off = off.train_epoch()["train_loss"]
    assert loss_on != pytest.approx(loss_off, rel=1e-4)


# --- sampling ----------------------------------------------------------------------------------------


def _drawn_over(trainer: Trainer, epochs: int) -> Counter[tuple[str, int]]:
    for _ in range(epochs):
        trainer.train_epoch()
        trainer.epoch += 1
    return trainer.drawn


def test_balanced_sampling_draws_both_labels_equally(sets: tuple[Prepared, Prepared], tmp_path: Path) -> None:
    drawn = _drawn_over(_trainer(_cfg(tmp_path, balance="sampler", lr=0.0), sets), 12)
    total = sum(drawn.values())
    malignant = sum(n for (_, y), n in drawn.items() if y == 1) / total
    assert total == 12 * 120 and malignant == pytest.approx(0.5, abs=0.04)  # the data are 50/120 = 0.42


def test_source_balanced_sampling_balances_labels_within_each_source(
    sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    drawn = _drawn_over(_trainer(_cfg(tmp_path, balance="source", lr=0.0), sets), 12)
    total = sum(drawn.values())
    for source, share in (("ham", 80 / 120), ("kaggle", 40 / 120)):
        there = drawn[(source, 0)] + drawn[(source, 1)]
        assert there / total == pytest.approx(share, abs=0.04)  # each source keeps its share of the draws
        assert drawn[(source, 1)] / there == pytest.approx(0.5, abs=0.06)  # ham is 25 % malignant, kaggle 75 %


@pytest.mark.parametrize("balance", ["pos_weight", "none"])
def test_unbalanced_runs_see_each_image_once_an_epoch(
    balance: str, sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    trainer = _trainer(_cfg(tmp_path, balance=balance, lr=0.0), sets)
    assert _drawn_over(trainer, 3) == Counter({k: 3 * n for k, n in MIX.items()})
    expected = 70 / 50 if balance == "pos_weight" else 1.0  # benign / malignant in the training set
    assert float(trainer.loss.pos_weight) == pytest.approx(expected)


# --- auxiliary diagnosis loss ------------------------------------------------------------------------


def _backbone_grad(trainer: Trainer, idx: np.ndarray) -> torch.Tensor:
    trainer.model.train()
    trainer.loss.train()
    x, y, dx = trainer.batch(idx)
    loss, _ = trainer.compute_loss(x, y, dx)
    trainer.optimizer.zero_grad()
    loss.backward()
    grad = trainer.model.convs[0].weight.grad  # type: ignore[union-attr,index]
    assert grad is not None
    return grad.clone()


def test_auxiliary_diagnosis_loss_changes_the_backbone_gradient(
    sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    plain = _trainer(_cfg(tmp_path, augment=False, aux_weight=0.0), sets)
    aux = _trainer(_cfg(tmp_path, augment=False, aux_weight=0.5), sets)
    assert aux.loss.aux is not None
    trained = {id(p) for group in aux.optimizer.param_groups for p in group["params"]}
    assert id(aux.loss.aux.weight) in trained  # the diagnosis head learns too
    with_dx = np.arange(0, 80, 5)  # ham images: diagnoses known
    assert (_backbone_grad(aux, with_dx) - _backbone_grad(plain, with_dx)).abs().max() > 1e-6
    without_dx = np.arange(80, 120, 3)  # kaggle images: no diagnosis, nothing to add
    torch.testing.assert_close(_backbone_grad(aux, without_dx), _backbone_grad(plain, without_dx))


# --- weight average ----------------------------------------------------------------------------------


def test_weight_average_follows_its_decay() -> None:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = make_ema(net, 0.75)  # type: ignore[arg-type]
    assert ema is not None and make_ema(net, 0.0) is None  # type: ignore[arg-type]
    ema.update_parameters(net)  # the first update copies
    with torch.no_grad():
        net.weight.fill_(5.0)
    ema.update_parameters(net)
    torch.testing.assert_close(ema.module.weight, torch.full((1, 2), 0.75 * 1.0 + 0.25 * 5.0))


def test_best_checkpoint_keeps_the_averaged_weights(sets: tuple[Prepared, Prepared], tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, epochs=1, max_steps=4, ema=0.9)
    best = torch.load(train_prepared(cfg, *sets, {}), weights_only=False)["model"]
    last = torch.load(Path(cfg.out) / "last.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k.startswith("module.")}
    for name, value in best.items():
        torch.testing.assert_close(value, averaged[name])
    assert any(not torch.equal(value, last["model"][name]) for name, value in best.items())


# --- layer freezing ----------------------------------------------------------------------------------


def test_frozen_layers_keep_weights_and_batch_statistics_in_training_mode() -> None:
    model = create_model("efficientnet-lite0", pretrained=False)
    model.freeze(3)
    model.train()
    frozen_bn, free_bn = model._bn0, model._blocks[5]._bn1  # type: ignore[attr-defined,index]
    before = frozen_bn.running_mean.clone(), free_bn.running_mean.clone()
    model(torch.rand(2, 3, 64, 64)).sum().backward()
    torch.testing.assert_close(frozen_bn.running_mean, before[0])  # ImageNet statistics kept
    assert not torch.equal(free_bn.running_mean, before[1])  # the rest adapts
    assert model._conv_stem.weight.grad is None and model._blocks[5]._bn1.weight.grad is not None  # type: ignore[attr-defined,index]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in model.parameters())


def test_frozen_norms_keep_every_batch_statistic_while_weights_learn(
    sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    trainer = _trainer(_cfg(tmp_path, model="efficientnet-lite0", freeze_blocks=0, freeze_bn=True, max_steps=1,
                            input_size=64), sets)  # fmt: skip
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch()
    after = trainer.model.state_dict()
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    assert not torch.equal(before["_blocks.5._bn1.weight"], after["_blocks.5._bn1.weight"])  # the affine part learns


def test_building_the_objective_leaves_the_network_as_it_was(sets: tuple[Prepared, Prepared]) -> None:
    """The diagnosis head's width is probed with a forward pass, which must not touch batch statistics."""
    from skinscan.training.train import build_loss, build_network

    cfg = TrainConfig(model="efficientnet-lite0", pretrained=False, freeze_blocks=0, aux_weight=0.3, input_size=64)
    model = build_network(cfg, CPU)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = build_loss(cfg, model, sets[0], CPU)
    assert loss.aux is not None and loss.aux.in_features == 1280 and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- stopping and schedules --------------------------------------------------------------------------


def test_early_stopping_after_patience_epochs_without_improvement(
    sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    trainer = _trainer(_cfg(tmp_path, lr=0.0, epochs=10, patience=2), sets)  # lr 0: nothing can improve
    trainer.fit(tmp_path / "stop")
    assert len(trainer.history) == 3 and trainer.stale == 2


def test_plateau_lowers_the_learning_rate_when_the_monitor_stalls(
    sets: tuple[Prepared, Prepared], tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path, lr=1e-5, epochs=4, max_steps=1, schedule="plateau", lr_patience=0, lr_factor=0.5,
               monitor="val_auc", patience=10)  # fmt: skip
    trainer = _trainer(cfg, sets)
    trainer.fit(tmp_path / "plateau")
    aucs = [row["val_auc"] for row in trainer.history]
    assert aucs == [1.0] * 4  # the synthetic lesions are easy: the monitor cannot rise above its first value
    lrs = [row["lr"] for row in trainer.history]
    # epoch 1 sets the best; each later epoch cannot beat it, so each halves the rate for the next
    assert lrs == pytest.approx([1e-5, 1e-5, 5e-6, 2.5e-6], rel=1e-6, abs=0)


def test_cosine_schedule_warms_up_then_decays_per_step(sets: tuple[Prepared, Prepared], tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, lr=1e-3, epochs=4, max_steps=2, schedule="cosine", warmup_epochs=1)
    trainer = _trainer(cfg, sets)
    seen = []
    for _ in range(4):
        trainer.train_epoch()
        trainer.epoch += 1
        seen.append(trainer.optimizer.param_groups[0]["lr"])
    # 2 steps an epoch, 1 epoch of warm-up, 8 steps in all: peak after step 2, then half a cosine to 1 %
    expected = [1e-3 * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * (s - 2) / 6))) for s in (2, 4, 6, 8)]
    assert seen == pytest.approx(expected, rel=1e-6)
