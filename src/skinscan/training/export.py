"""Checkpoint → model.onnx + model.json: one graph with its outputs (logit, class activation map, input-check
distance to the training distribution, the pooled features, and where the checkpoint has the head, the seven
diagnosis probabilities) and the spec that describes it (training side, torch)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from skinscan.core.diagnosis import DIAGNOSES
from skinscan.core.spec import METADATA_KEY, ModelSpec, write_spec
from skinscan.training.checkpoint import Checkpoint, load_checkpoint
from skinscan.training.models import Classifier

OPSET = 17
OUTPUTS = ("logit", "cam", "ood", "features")  # then "diagnosis" where the checkpoint has the head
OOD_QUANTILE = 0.999  # of validation distances: refuses about 1 in 1,000 real dermoscopy images per check
LICENSE_NOTE = {
    "ham10000": "HAM10000 (CC BY-NC-SA 4.0, Tschandl et al. 2018): research and non-commercial use only",
    "isic-mvb": "Kaggle 'Skin Cancer: Malignant vs. Benign' (ISIC archive images, CC BY-NC / CC0 mix)",
    "isic2017": "ISIC 2017 challenge (ISIC archive images, CC BY-NC 4.0, some CC-0; Codella et al. 2018)",
    "isic2020": "SIIM-ISIC 2020 challenge subset (CC BY-NC 4.0; Rotemberg et al. 2021)",
}
INTENDED_USE = (
    "A screening aid that flags dermoscopic images of skin lesions for a doctor's attention. "
    "Not a diagnosis and not a medical device: it must not be used to rule a lesion out."
)


class GaussianDistance(nn.Module):
    """calibrate.FeatureGaussian.distance inside the graph, divided by its validation threshold."""

    mean: torch.Tensor
    components: torch.Tensor
    basis: torch.Tensor

    def __init__(self, g: dict[str, Any] | None, dim: int, threshold: float | None) -> None:
        super().__init__()
        g = g or {"mean": np.zeros(dim), "components": np.zeros((dim, 1)), "basis": np.zeros((dim, 1))}
        self.register_buffer("mean", torch.as_tensor(np.asarray(g["mean"]), dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(np.asarray(g["components"]), dtype=torch.float32))
        self.register_buffer("basis", torch.as_tensor(np.asarray(g["basis"]), dtype=torch.float32))
        self.residual_scale = float(g.get("residual_scale", 0.0))
        self.scale = 1.0 / threshold if threshold else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean
        whitened = centred @ self.components
        residual = centred - (centred @ self.basis) @ self.basis.t()
        d2 = (whitened**2).sum(1) + (residual**2).sum(1) * self.residual_scale
        return torch.sqrt(d2 / self.mean.shape[0]) * self.scale


def ood_thresholds(ckpt: Checkpoint, quantile: float) -> dict[str, float]:
    """Each input-check distance's threshold: its `quantile` over the validation images."""
    found = {}
    for name, dist in (("ood", ckpt.val_ood_distance), ("texture", ckpt.val_texture_distance)):
        if dist:
            found[name] = float(np.quantile(dist, quantile))
    return found


class ExportModule(nn.Module):
    """The graph that ships: normalised images in; logit, CAM and the input-check score out.

    The score is the larger of two distances to the training images, each divided by its threshold (so
    above 1 means "not like anything the model was trained on"): of the pooled features (what the image
    shows) and of intermediate-layer texture statistics (noise, blank, text and other photographs).
    """

    def __init__(self, model: Classifier, ckpt: Checkpoint, quantile: float = OOD_QUANTILE) -> None:
        super().__init__()
        self.model = model
        size = model.info.input_size
        maps, texture = model.maps_and_texture(torch.zeros(1, 3, size, size))
        thresholds = ood_thresholds(ckpt, quantile)
        dim = model.pool(maps).shape[1]
        self.features = GaussianDistance(ckpt.feature_gaussian, dim, thresholds.get("ood"))
        self.texture = GaussianDistance(ckpt.texture_gaussian, texture.shape[1], thresholds.get("texture"))
        self.use_texture = ckpt.texture_gaussian is not None
        self.diagnosis: nn.Linear | None = None
        if ckpt.diagnosis_head is not None:
            self.diagnosis = nn.Linear(dim, len(DIAGNOSES))
            self.diagnosis.load_state_dict(ckpt.diagnosis_head)

    @property
    def output_names(self) -> list[str]:
        return [*OUTPUTS, *(["diagnosis"] if self.diagnosis is not None else [])]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps, texture = self.model.maps_and_texture(x)
        pooled = self.model.pool(maps)
        logit = self.model.logit(pooled).squeeze(1)
        cam = self.model.cam(maps, pooled)
        ood = self.features(pooled)
        if self.use_texture:
            ood = torch.maximum(ood, self.texture(texture))
        # the pooled features too: a clinic fits its own head on them (site adaptation), at no cost here
        if self.diagnosis is None:
            return logit, cam, ood, pooled
        return logit, cam, ood, pooled, torch.softmax(self.diagnosis(pooled), dim=1)


def to_onnx_bytes(module: ExportModule, input_size: int) -> bytes:
    import warnings

    module.eval()
    buffer = io.BytesIO()
    dummy = torch.zeros(2, 3, input_size, input_size)
    with warnings.catch_warnings():
        # the tracer warns that SAME-padding arithmetic is frozen into the graph: intended, the input size is fixed
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # torch 2.13 (pinned) deprecates the TorchScript exporter; it still gives the smallest, fastest graph
        # for these static-shape CNNs (its internals raise more deprecations), and the parity test guards the output
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(module, dummy, buffer)
    return buffer.getvalue()


def _export(module: ExportModule, dummy: torch.Tensor, buffer: io.BytesIO) -> None:
    names = module.output_names
    torch.onnx.export(
        module,
        (dummy,),
        buffer,  # type: ignore[arg-type]
        input_names=["input"],
        output_names=names,
        dynamic_axes={name: {0: "batch"} for name in ["input", *names]},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter gives a plain, fully constant-folded graph for these nets
    )


_LOCAL_SETTINGS = {"data", "holdout", "duplicates", "out", "resume", "threads", "device"}


def _describe_data(data: dict[str, Any]) -> dict[str, Any]:
    described = dict(data)
    names = [Path(p).name for p in data.get("sources", [])]
    described["licenses"] = [LICENSE_NOTE.get(n, n) for n in names]
    return described


def build_spec(
    ckpt: Checkpoint,
    model: Classifier,
    *,
    version: str,
    ood_quantile: float,
    ood_margin: float,
    weights_hash: str,
    metrics: dict[str, Any] | None,
    command: str,
) -> ModelSpec:
    pre = ckpt.preprocess
    thresholds = ood_thresholds(ckpt, ood_quantile)
    # the graph divides each distance by its threshold, so the score's own threshold is the margin
    ood_threshold = ood_margin if thresholds else None
    names = [Path(p).name for p in ckpt.data.get("sources", [])]
    return ModelSpec(
        id=f"{model.info.name}-{weights_hash[:10]}",
        version=version,
        architecture=model.info.name,
        input_size=pre.input_size,
        mean=pre.mean,
        std=pre.std,
        colour_constancy=pre.colour_constancy,
        crop=pre.crop,
        temperature=float(ckpt.temperature),
        logit_bias=float(ckpt.logit_bias),
        threshold=float(ckpt.threshold),
        target_sensitivity=float(ckpt.target_sensitivity),
        ood_threshold=ood_threshold,
        quality=asdict(ckpt.limits),
        training_data={
            **_describe_data(ckpt.data),
            "best_epoch": ckpt.best_epoch,
            # the recipe, minus where this machine kept things: what another machine needs to train it again
            "training_config": {k: v for k, v in ckpt.config.items() if k not in _LOCAL_SETTINGS},
            "threshold_rule": ckpt.threshold_rule,
            "val_auc": ckpt.val_auc,
            "ood_quantile": ood_quantile,
            "ood_margin": ood_margin,
            "ood_distance_thresholds": thresholds,
        },
        metrics=metrics or {},
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        license="Research and non-commercial use only (inherits HAM10000's CC BY-NC-SA 4.0)"
        if "ham10000" in names
        else "See the licences of the training data",
        intended_use=INTENDED_USE,
        command=command,
        outputs=(*OUTPUTS, *(["diagnosis"] if ckpt.diagnosis_head is not None else [])),
        diagnoses=DIAGNOSES if ckpt.diagnosis_head is not None else (),
    )


def export_model(
    model: Classifier,
    ckpt: Checkpoint,
    out_dir: str | Path,
    *,
    version: str = "1.0.0",
    ood_quantile: float = OOD_QUANTILE,
    ood_margin: float = 1.0,
    metrics: dict[str, Any] | None = None,
    command: str = "",
) -> ModelSpec:
    """Write `model.onnx` (spec embedded as metadata) and `model.json` into out_dir.

    Returns:
        The spec that was written.
    """
    import onnx

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module = ExportModule(model.eval(), ckpt, ood_quantile)
    raw = to_onnx_bytes(module, ckpt.preprocess.input_size)
    proto = onnx.load_from_string(raw)
    spec = build_spec(
        ckpt,
        model,
        version=version,
        ood_quantile=ood_quantile,
        ood_margin=ood_margin,
        weights_hash=weights_hash(proto),
        metrics=metrics,
        command=command,
    )
    cam = module(torch.zeros(1, 3, spec.input_size, spec.input_size))[1]
    spec = ModelSpec.from_dict({**spec.to_dict(), "cam_size": list(cam.shape[1:])})
    save_model(proto, spec, out)
    return spec


def weights_hash(proto: Any) -> str:
    """The hash of a graph's weights, behind the model id."""
    return hashlib.sha256(b"".join(t.raw_data for t in proto.graph.initializer)).hexdigest()


def save_model(proto: Any, spec: ModelSpec, out: Path) -> None:
    """Write out/model.onnx with the spec embedded as metadata, and out/model.json beside it."""
    import onnx

    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    proto.producer_name = "skinscan"
    onnx.checker.check_model(proto)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.onnx.tmp"
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(out / "model.onnx")
    write_spec(spec, out / "model.json")


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, **kwargs: Any) -> ModelSpec:
    """Export a training checkpoint (best.pt) as an ONNX model with its spec."""
    model, ckpt = load_checkpoint(checkpoint)
    return export_model(model, ckpt, out_dir, **kwargs)
