"""Checkpoint → model.onnx + model.json: one graph with three outputs (logit, class activation map,
feature distance to the training distribution) and the spec that describes it (training side, torch)."""

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

from skinscan.errors import ModelFormatError
from skinscan.models import Classifier
from skinscan.quality import QualityLimits
from skinscan.spec import METADATA_KEY, ModelSpec, write_spec
from skinscan.train import load_checkpoint

OPSET = 17
LICENSE_NOTE = {
    "ham10000": "HAM10000 (CC BY-NC-SA 4.0, Tschandl et al. 2018): research and non-commercial use only",
    "isic-mvb": "Kaggle 'Skin Cancer: Malignant vs. Benign' (ISIC archive images, CC BY-NC / CC0 mix)",
}
INTENDED_USE = (
    "A screening aid that flags dermoscopic images of skin lesions for a doctor's attention. "
    "Not a diagnosis and not a medical device: it must not be used to rule a lesion out."
)


class ExportModule(nn.Module):
    """The graph that ships: normalised images in; logit, CAM and OOD distance out."""

    ood_mean: torch.Tensor
    ood_components: torch.Tensor
    ood_basis: torch.Tensor

    def __init__(self, model: Classifier, gaussian: dict[str, Any] | None) -> None:
        super().__init__()
        self.model = model
        dim = model.pool(model.feature_maps(torch.zeros(1, 3, model.info.input_size, model.info.input_size))).shape[1]
        g = gaussian or {"mean": np.zeros(dim), "components": np.zeros((dim, 1)), "basis": np.zeros((dim, 1))}
        self.register_buffer("ood_mean", torch.as_tensor(np.asarray(g["mean"]), dtype=torch.float32))
        self.register_buffer("ood_components", torch.as_tensor(np.asarray(g["components"]), dtype=torch.float32))
        self.register_buffer("ood_basis", torch.as_tensor(np.asarray(g["basis"]), dtype=torch.float32))
        self.ood_residual_scale = float(g.get("residual_scale", 0.0))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.model.feature_maps(x)
        pooled = self.model.pool(maps)
        logit = self.model.logit(pooled).squeeze(1)
        cam = self.model.cam(maps, pooled)
        # same formula as calibrate.FeatureGaussian.distance, inside the graph so serving needs no extra files
        centred = pooled - self.ood_mean
        whitened = centred @ self.ood_components
        residual = centred - (centred @ self.ood_basis) @ self.ood_basis.t()
        d2 = (whitened**2).sum(1) + (residual**2).sum(1) * self.ood_residual_scale
        ood = torch.sqrt(d2 / self.ood_mean.shape[0])
        return logit, cam, ood


def to_onnx_bytes(module: nn.Module, input_size: int) -> bytes:
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


def _export(module: nn.Module, dummy: torch.Tensor, buffer: io.BytesIO) -> None:
    torch.onnx.export(
        module,
        (dummy,),
        buffer,  # type: ignore[arg-type]
        input_names=["input"],
        output_names=["logit", "cam", "ood"],
        dynamic_axes={"input": {0: "batch"}, "logit": {0: "batch"}, "cam": {0: "batch"}, "ood": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,  # the TorchScript exporter gives a plain, fully constant-folded graph for these nets
    )


def _describe_data(data: dict[str, Any]) -> dict[str, Any]:
    described = dict(data)
    names = [Path(p).name for p in data.get("sources", [])]
    described["licenses"] = [LICENSE_NOTE.get(n, n) for n in names]
    return described


def build_spec(
    ckpt: dict[str, Any],
    model: Classifier,
    *,
    version: str,
    ood_quantile: float,
    ood_margin: float,
    weights_hash: str,
    metrics: dict[str, Any] | None,
    command: str,
) -> ModelSpec:
    pre = ckpt.get("preprocess", {})
    val_dist = ckpt.get("val_ood_distance")
    ood_threshold = float(np.quantile(val_dist, ood_quantile)) * ood_margin if val_dist else None
    names = [Path(p).name for p in ckpt.get("data", {}).get("sources", [])]
    return ModelSpec(
        id=f"{model.info.name}-{weights_hash[:10]}",
        version=version,
        architecture=model.info.name,
        input_size=int(pre.get("input_size", model.info.input_size)),
        mean=tuple(pre.get("mean", model.info.mean)),
        std=tuple(pre.get("std", model.info.std)),
        colour_constancy=pre.get("colour_constancy", "shades_of_gray"),
        crop=pre.get("crop", "center_square"),
        temperature=float(ckpt.get("temperature", 1.0)),
        logit_bias=float(ckpt.get("logit_bias", 0.0)),
        threshold=float(ckpt.get("threshold", 0.5)),
        target_sensitivity=float(ckpt.get("target_sensitivity", 0.9)),
        ood_threshold=ood_threshold,
        quality=dict(ckpt.get("quality_limits") or asdict(QualityLimits())),
        training_data={
            **_describe_data(ckpt.get("data", {})),
            "best_epoch": ckpt.get("best_epoch", {}),
            "val_auc": ckpt.get("val_auc"),
            "ood_quantile": ood_quantile,
            "ood_margin": ood_margin,
        },
        metrics=metrics or {},
        created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        license="Research and non-commercial use only (inherits HAM10000's CC BY-NC-SA 4.0)"
        if "ham10000" in names
        else "See the licences of the training data",
        intended_use=INTENDED_USE,
        command=command,
    )


def export_model(
    model: Classifier,
    ckpt: dict[str, Any],
    out_dir: str | Path,
    *,
    version: str = "1.0.0",
    ood_quantile: float = 0.99,
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
    module = ExportModule(model.eval(), ckpt.get("feature_gaussian"))
    raw = to_onnx_bytes(module, model.info.input_size)
    proto = onnx.load_from_string(raw)
    weights_hash = hashlib.sha256(b"".join(t.raw_data for t in proto.graph.initializer)).hexdigest()
    spec = build_spec(
        ckpt,
        model,
        version=version,
        ood_quantile=ood_quantile,
        ood_margin=ood_margin,
        weights_hash=weights_hash,
        metrics=metrics,
        command=command,
    )
    cam = module(torch.zeros(1, 3, spec.input_size, spec.input_size))[1]
    spec = ModelSpec.from_dict({**spec.to_dict(), "cam_size": list(cam.shape[1:])})
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec.to_json()
    proto.producer_name = "skinscan"
    onnx.checker.check_model(proto)
    tmp = out / "model.onnx.tmp"
    tmp.write_bytes(proto.SerializeToString())
    tmp.replace(out / "model.onnx")
    write_spec(spec, out / "model.json")
    return spec


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, **kwargs: Any) -> ModelSpec:
    """Export a training checkpoint (best.pt) as an ONNX model with its spec."""
    model, ckpt = load_checkpoint(checkpoint)
    if ckpt.get("format") != "skinscan-checkpoint-1":
        raise ModelFormatError(f"{checkpoint} is not a skinscan best.pt checkpoint (a last.pt cannot be exported)")
    return export_model(model, ckpt, out_dir, **kwargs)
