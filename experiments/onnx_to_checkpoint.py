"""An exported EfficientNet-Lite0 (model.onnx) back into a training checkpoint, so that a later model can be
fine-tuned from it when its best.pt is gone (training runs do not outlive a session; the bundled ONNX does).

The exporter folded each batch norm into the convolution before it, so the graph holds, per convolution, a
weight W' and a bias b'. Each is put back as convolution W' followed by a batch norm that reproduces b' exactly
in eval mode and also behaves in training mode: its running statistics are those of W'x measured on real
training images (the batch statistics that training mode will see), and its affine part undoes them:

    BN(y) = (y - mean) / sqrt(var + eps) * sqrt(var + eps) + (mean + b') = y + b'

(in training mode the batch's own mean and variance stand in for the measured ones, so it is y + b' nearly).

The result is checked against ONNX Runtime on real images before it is written.

    python experiments/onnx_to_checkpoint.py models --data ../shared/data/ham10000 --out runs/v1.2.0.pt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from skinscan.core.preprocess import prepare_pixels, to_input
from skinscan.runtime.engine import Engine
from skinscan.runtime.imaging import load_image
from skinscan.training.checkpoint import Checkpoint
from skinscan.training.models import EfficientNetLite0, MBConv
from skinscan.training.records import load_records


def conv_bn_pairs(model: EfficientNetLite0) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every convolution with the batch norm after it, in the order the forward pass (and the graph) runs them."""
    pairs: list[tuple[nn.Conv2d, nn.BatchNorm2d]] = [(model._conv_stem, model._bn0)]
    for block in model._blocks:
        assert isinstance(block, MBConv)
        if block.expand:
            pairs.append((block._expand_conv, block._bn0))
        pairs += [(block._depthwise_conv, block._bn1), (block._project_conv, block._bn2)]
    return [*pairs, (model._conv_head, model._bn1)]


def folded_weights(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """(weight, bias) of each Conv node in graph order, and the final Gemm's (weight, bias)."""
    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [(inits[n.input[1]], inits[n.input[2]]) for n in graph.node if n.op_type == "Conv"]
    # the malignancy head is the Gemm with one output (a diagnosis head, where there is one, has seven)
    gemm = next(n for n in graph.node if n.op_type == "Gemm" and inits[n.input[1]].size == 1280)
    return convs, (inits[gemm.input[1]], inits[gemm.input[2]])


def rebuild(path: Path, calibration: torch.Tensor) -> EfficientNetLite0:
    model = EfficientNetLite0(pretrained=False).eval()
    pairs = conv_bn_pairs(model)
    convs, (fc_w, fc_b) = folded_weights(path)
    if len(convs) != len(pairs):
        raise SystemExit(f"{path}: {len(convs)} convolutions, EfficientNet-Lite0 has {len(pairs)}")
    with torch.no_grad():
        for (conv, bn), (w, b) in zip(pairs, convs, strict=True):
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)  # sqrt(var + eps) = 1: the norm adds b' and nothing else
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(np.array(b)))
        fc = model._fc
        fc.weight.copy_(torch.from_numpy(fc_w.reshape(fc.weight.shape)))
        fc.bias.copy_(torch.from_numpy(fc_b.reshape(fc.bias.shape)))
        # the statistics of each W'x on real images, gathered in one eval pass (eval output is already exact)
        sums: dict[int, list[torch.Tensor]] = {}

        def keep(i: int):  # type: ignore[no-untyped-def]
            def hook(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
                y = output.double()
                sums.setdefault(i, []).append(torch.stack([y.mean(dim=(0, 2, 3)), (y * y).mean(dim=(0, 2, 3))]))

            return hook

        handles = [conv.register_forward_hook(keep(i)) for i, (conv, _) in enumerate(pairs)]
        for start in range(0, len(calibration), 32):
            model(calibration[start : start + 32])
        for handle in handles:
            handle.remove()
        for i, (_, bn) in enumerate(pairs):
            first, second = torch.stack(sums[i]).mean(dim=0)
            var = (second - first * first).clamp(min=1e-6)
            bn.running_mean.copy_(first.float())
            bn.running_var.copy_(var.float())
            # sqrt(var + eps) undoes the division in eval mode exactly, and in training mode, where the batch's
            # own variance stands in for var, nearly
            bn.weight.copy_(torch.sqrt(bn.running_var + bn.eps))
            bn.bias.add_(bn.running_mean)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="an exported model folder (model.onnx + model.json)")
    parser.add_argument("--data", required=True, help="training images for the batch statistics")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    engine = Engine(args.model, threads=2)
    spec = engine.spec
    if spec.architecture != "efficientnet-lite0":
        raise SystemExit(f"{args.model} is a {spec.architecture}, this reads efficientnet-lite0 only")
    records = load_records(args.data, "train")
    rng = np.random.default_rng(0)
    picked = [records[i] for i in sorted(rng.choice(len(records), size=min(args.images, len(records)), replace=False))]
    pixels = np.stack([prepare_pixels(load_image(r.path, draft_size=spec.input_size), spec.preprocess) for r in picked])
    batch = to_input(pixels, spec.preprocess)
    model = rebuild(args.model / "model.onnx", torch.from_numpy(batch))
    with torch.no_grad():
        ours = model(torch.from_numpy(batch[:64])).numpy()
    theirs = engine.run(batch[:64])[0]
    worst = float(np.abs(ours - theirs).max())
    print(f"logits against ONNX Runtime on 64 real images: max difference {worst:.2e}")
    if worst > 1e-3:
        raise SystemExit("the rebuilt network does not reproduce the exported one")
    ckpt = Checkpoint(
        model_name="efficientnet-lite0",
        model={k: v.contiguous() for k, v in model.state_dict().items()},
        preprocess=spec.preprocess,
        info={"rebuilt_from": f"{spec.id} (v{spec.version})"},
        data={**spec.training_data, "rebuilt_from_onnx": str(args.model)},
        temperature=spec.temperature,
        logit_bias=spec.logit_bias,
        threshold=spec.threshold,
    )
    ckpt.save(args.out)
    print(f"wrote {args.out} ({spec.id} v{spec.version} as a checkpoint to fine-tune from)")


if __name__ == "__main__":
    main()
