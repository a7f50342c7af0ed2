"""The on-device web app's two ONNX graphs, built from the bundled model with the `onnx` package (the [train] extra).

- `models/device/`: the bundled float model with smaller weights for the download: 8-bit (per output channel,
  dequantised to float when the session loads) where that keeps the float model's outputs, 16-bit elsewhere. The
  arithmetic stays float, so the float model's calibration, threshold and input checks hold, and unlike the
  int8 model's integer kernels it computes the same in ONNX Runtime Web's WebAssembly as on any CPU.
- `src/skinscan/api/static/prepare.onnx`: the model-independent pixel steps the browser runs before the model, so
  that they exist once in Python (core/preprocess.py, core/quality.py) and once in a graph checked against them
  (tests/test_device.py), not a third time in JavaScript: Shades-of-Gray colour constancy, the quality measures
  behind the input checks, and the normalisation into the model's input.

Both are committed; `--check` rebuilds them and fails when the committed files differ (tests/test_device.py runs
it). `--measure FOLDER` prints how far the device model's outputs lie from the float model's on the images of FOLDER
for each size limit, the measurement behind FP16_BELOW (run on the ISIC 2017 validation images, never a test set).

Usage: python scripts/build_device_model.py [--check] [--measure FOLDER [--split val]]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from skinscan.core.preprocess import SHADES_OF_GRAY_POWER  # noqa: E402
from skinscan.core.spec import METADATA_KEY, ModelSpec  # noqa: E402

SOURCE = ROOT / "models" / "model.onnx"
DEVICE_DIR = ROOT / "models" / "device"
PREPARE = ROOT / "src" / "skinscan" / "api" / "static" / "prepare.onnx"
# Weight tensors with fewer values than this stay 16-bit, the rest are 8-bit. The small ones are the depthwise and
# projection convolutions of the early blocks, where 8-bit rounding moves the logit most for the bytes it saves. On
# the 150 ISIC 2017 validation images (`--measure ../shared/data/isic2017`): all 8-bit (4.4 MB) moved the logit by up
# to 0.21 (mean 0.063), this limit (5.9 MB) by up to 0.073 (mean 0.012), under 0.006 in probability at the
# threshold, and the input-check score by under 0.005; 300,000 (7.5 MB) by up to 0.020.
FP16_BELOW = 200_000
SMALLEST = 4096  # biases, scales and the heads' small matrices stay float32: they weigh little
OPSET = 17
IR_VERSION = 8  # what ONNX Runtime Web 1.31 reads, and fixed so that a rebuild gives the same bytes


def compress_weights(model: onnx.ModelProto, fp16_below: int = FP16_BELOW) -> onnx.ModelProto:
    """The model with each large float32 weight stored as int8 (symmetric, one scale per output channel) or float16,
    and a DequantizeLinear or Cast node in front that gives the float32 tensor back, as the graph expects it."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    decoders, kept = [], []
    for tensor in graph.initializer:
        weights = numpy_helper.to_array(tensor)
        if weights.dtype != np.float32 or weights.size < SMALLEST or weights.ndim < 2:
            kept.append(tensor)
            continue
        name = tensor.name
        if weights.size < fp16_below:
            kept.append(numpy_helper.from_array(weights.astype(np.float16), f"{name}.f16"))
            decoders.append(
                helper.make_node("Cast", [f"{name}.f16"], [name], to=TensorProto.FLOAT, name=f"{name}.cast")
            )
            continue
        rows = weights.reshape(weights.shape[0], -1)
        scale = np.abs(rows).max(axis=1) / 127.0
        scale[scale == 0] = 1.0
        quantised = np.clip(np.round(rows / scale[:, None]), -127, 127).astype(np.int8).reshape(weights.shape)
        kept += [
            numpy_helper.from_array(quantised, f"{name}.q"),
            numpy_helper.from_array(scale.astype(np.float32), f"{name}.scale"),
            numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{name}.zero"),
        ]
        decoders.append(
            helper.make_node("DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zero"], [name], axis=0,
                             name=f"{name}.dequantize")
        )  # fmt: skip
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(decoders + nodes)
    return model


def weights_digest(model: onnx.ModelProto) -> str:
    return hashlib.sha256(b"".join(t.raw_data for t in model.graph.initializer)).hexdigest()


def device_spec(source: dict[str, Any], model: onnx.ModelProto, fp16_below: int) -> dict[str, Any]:
    """The float model's spec under the device copy's own id: the same calibration, threshold and input checks (the
    arithmetic is the float model's), and test metrics measured on the copy itself (models/device/metrics.json,
    written by `skinscan evaluate --model models/device`) where they have been."""
    metrics_file = DEVICE_DIR / "metrics.json"
    compression = {
        "method": f"weights of {fp16_below:,} values or more as int8 (symmetric, per output channel), smaller ones "
        "as float16; dequantised to float32 when the session loads, so the arithmetic is float",
        "from_model": source["id"],
        "fp16_below": fp16_below,
    }
    return {
        **source,
        "id": f"{source['architecture']}-device-{weights_digest(model)[:10]}",
        "training_data": {**source["training_data"], "compression": compression},
        "metrics": json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        "command": "python scripts/build_device_model.py",
    }


def build_device_model(fp16_below: int = FP16_BELOW) -> tuple[bytes, str]:
    """The device model's ONNX bytes (spec embedded) and its model.json text."""
    source = onnx.load(str(SOURCE))
    model = compress_weights(source, fp16_below)
    # the spec as a dict, not a ModelSpec: a rebuild gives the same bytes whatever fields this checkout's ModelSpec has
    spec = json.dumps(device_spec(json.loads(SOURCE.with_name("model.json").read_text()), model, fp16_below), indent=2)
    ModelSpec.from_json(spec)  # still a valid spec
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, spec
    model.producer_name = "skinscan"
    onnx.checker.check_model(model)
    return model.SerializeToString(), spec + "\n"


# --- the pixel steps ------------------------------------------------------------------------------------------


def _const(name: str, value: Any, dtype: Any) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype), name))


def build_prepare_graph() -> bytes:
    """uint8 N×S×S×3 pixels (cropped and resized, before colour constancy), mean[3], std[3] and whether the model
    uses Shades-of-Gray colour constancy (bool[1]) → the model's float32
    N×3×S×S input and N×5 quality measures (brightness, contrast, sharpness, chroma, saturation), as
    core.preprocess.shades_of_gray, core.preprocess.to_input and core.quality.measure_quality compute them."""
    n: list[onnx.NodeProto] = []
    add = n.append
    f32, f64 = np.float32, np.float64
    # Shades of Gray: the Minkowski mean in float64 as numpy's histogram sum, the illuminant cast to float32
    add(helper.make_node("Cast", ["pixels"], ["x64"], to=TensorProto.DOUBLE))
    add(_const("power", SHADES_OF_GRAY_POWER, f64))
    add(_const("inverse_power", 1.0 / SHADES_OF_GRAY_POWER, f64))
    add(helper.make_node("Pow", ["x64", "power"], ["x_pow"]))
    add(helper.make_node("ReduceMean", ["x_pow"], ["moments"], axes=[1, 2], keepdims=1))
    add(helper.make_node("Pow", ["moments", "inverse_power"], ["illuminant64"]))
    add(helper.make_node("Cast", ["illuminant64"], ["illuminant"], to=TensorProto.FLOAT))
    add(helper.make_node("Mul", ["illuminant", "illuminant"], ["illuminant_sq"]))
    add(_const("channel_axis", [-1], np.int64))
    add(helper.make_node("ReduceSum", ["illuminant_sq", "channel_axis"], ["norm_sq"], keepdims=1))
    add(helper.make_node("Sqrt", ["norm_sq"], ["norm"]))
    add(helper.make_node("Div", ["illuminant", "norm"], ["ratio32"]))
    # the rest in float64, as numpy promotes it (np.sqrt(3.0) is a float64 scalar)
    add(helper.make_node("Cast", ["ratio32"], ["ratio"], to=TensorProto.DOUBLE))
    add(_const("sqrt3", np.sqrt(3.0), f64))
    add(_const("epsilon", 1e-6, f64))
    add(helper.make_node("Mul", ["ratio", "sqrt3"], ["scaled"]))
    add(helper.make_node("Add", ["scaled", "epsilon"], ["denominator"]))
    add(helper.make_node("Reciprocal", ["denominator"], ["gains"]))
    add(helper.make_node("Mul", ["x64", "gains"], ["balanced"]))
    add(_const("zero64", 0.0, f64))
    add(_const("top64", 255.0, f64))
    add(helper.make_node("Clip", ["balanced", "zero64", "top64"], ["clipped"]))
    add(helper.make_node("Floor", ["clipped"], ["levels"]))  # astype(uint8) of values >= 0
    # a black image has no illuminant to remove: it stays as it is, as does every image of a model without the step
    add(_const("tiny", 1e-6, f32))
    add(helper.make_node("GreaterOrEqual", ["norm", "tiny"], ["lit_enough"]))
    add(helper.make_node("And", ["lit_enough", "colour_constancy"], ["balance"]))
    add(helper.make_node("Where", ["balance", "levels", "x64"], ["corrected64"]))
    add(helper.make_node("Cast", ["corrected64"], ["rgb"], to=TensorProto.FLOAT))
    # the model's input: (x / 255 - mean) / std, channels first
    add(_const("inverse_255", 1.0 / 255.0, f32))
    add(helper.make_node("Mul", ["rgb", "inverse_255"], ["unit"]))
    add(helper.make_node("Sub", ["unit", "mean"], ["centred"]))
    add(helper.make_node("Div", ["centred", "std"], ["scaled_input"]))
    add(helper.make_node("Transpose", ["scaled_input"], ["input"], perm=[0, 3, 1, 2]))
    # quality measures (core/quality.py)
    add(_const("luma", [0.299, 0.587, 0.114], f32))
    add(helper.make_node("MatMul", ["rgb", "luma"], ["lum"]))  # N×S×S
    add(helper.make_node("ReduceMax", ["rgb"], ["value"], axes=[3], keepdims=0))
    add(helper.make_node("ReduceMin", ["rgb"], ["least"], axes=[3], keepdims=0))
    add(helper.make_node("Sub", ["value", "least"], ["spread"]))
    add(helper.make_node("ReduceMean", ["value"], ["brightness"], axes=[1, 2], keepdims=0))
    add(helper.make_node("ReduceMean", ["spread"], ["chroma"], axes=[1, 2], keepdims=0))
    add(helper.make_node("ReduceMean", ["lum"], ["lum_mean"], axes=[1, 2], keepdims=1))
    add(helper.make_node("Sub", ["lum", "lum_mean"], ["lum_dev"]))
    add(helper.make_node("Mul", ["lum_dev", "lum_dev"], ["lum_var_each"]))
    add(helper.make_node("ReduceMean", ["lum_var_each"], ["lum_var"], axes=[1, 2], keepdims=0))
    add(helper.make_node("Sqrt", ["lum_var"], ["contrast"]))
    # the Laplacian on the interior: -4 x[i, j] + its four neighbours
    axes = "spatial_axes"
    add(_const(axes, [1, 2], np.int64))
    big = np.iinfo(np.int64).max
    for name, (top, left) in {"centre": (1, 1), "up": (0, 1), "down": (2, 1), "left": (1, 0), "right": (1, 2)}.items():
        # rows top .. top + S - 2, columns left .. left + S - 2
        add(_const(f"{name}_start", [top, left], np.int64))
        add(_const(f"{name}_end", [top - 2 if top < 2 else big, left - 2 if left < 2 else big], np.int64))
        add(helper.make_node("Slice", ["lum", f"{name}_start", f"{name}_end", axes], [f"lum_{name}"]))
    add(_const("minus_four", -4.0, f32))
    add(helper.make_node("Mul", ["lum_centre", "minus_four"], ["lap0"]))
    add(helper.make_node("Add", ["lap0", "lum_up"], ["lap1"]))
    add(helper.make_node("Add", ["lap1", "lum_down"], ["lap2"]))
    add(helper.make_node("Add", ["lap2", "lum_left"], ["lap3"]))
    add(helper.make_node("Add", ["lap3", "lum_right"], ["lap"]))
    add(helper.make_node("Abs", ["lap"], ["lap_abs"]))
    add(helper.make_node("ReduceMean", ["lap_abs"], ["sharpness"], axes=[1, 2], keepdims=0))
    # saturation: total chroma over total brightness, 0 for an all-black image
    add(_const("pixel_axes", [1, 2], np.int64))
    add(helper.make_node("ReduceSum", ["value", "pixel_axes"], ["total"], keepdims=0))
    add(helper.make_node("ReduceSum", ["spread", "pixel_axes"], ["spread_total"], keepdims=0))
    add(_const("zero32", 0.0, f32))
    add(_const("one32", 1.0, f32))
    add(helper.make_node("Greater", ["total", "zero32"], ["lit"]))
    add(helper.make_node("Where", ["lit", "total", "one32"], ["safe_total"]))
    add(helper.make_node("Div", ["spread_total", "safe_total"], ["ratio_sat"]))
    add(helper.make_node("Where", ["lit", "ratio_sat", "zero32"], ["saturation"]))
    add(_const("last_axis", [1], np.int64))
    for name in ("brightness", "contrast", "sharpness", "chroma", "saturation"):
        add(helper.make_node("Unsqueeze", [name, "last_axis"], [f"{name}_col"]))
    add(helper.make_node("Concat", [f"{m}_col" for m in ("brightness", "contrast", "sharpness", "chroma",
                                                          "saturation")], ["quality"], axis=1))  # fmt: skip
    graph = helper.make_graph(
        n,
        "skinscan_prepare",
        [
            helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", "size", "size", 3]),
            helper.make_tensor_value_info("mean", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("std", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("colour_constancy", TensorProto.BOOL, [1]),
        ],
        [
            helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "size", "size"]),
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, ["batch", 5]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="skinscan",
                              ir_version=IR_VERSION, doc_string=__doc__.split("\n\n")[0])  # fmt: skip
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --- measuring and writing ------------------------------------------------------------------------------------


def measure(
    folder: Path, split: str = "val", limits: tuple[int, ...] = (0, 50_000, 120_000, FP16_BELOW, 300_000)
) -> None:
    """How far each size limit's device model lies from the float model on the photos of `folder`'s labels.csv
    in `split` (or every photo under it, without a labels.csv)."""
    import csv

    import onnxruntime as ort

    from skinscan.core.preprocess import preprocess
    from skinscan.runtime.imaging import load_image

    spec = ModelSpec.from_json(SOURCE.with_name("model.json").read_text())
    labels = folder / "labels.csv"
    if labels.is_file():
        with labels.open() as file:
            photos = [folder / row["path"] for row in csv.DictReader(file) if row["split"] == split]
    else:
        photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    batch = np.stack([preprocess(load_image(p, draft_size=spec.input_size), spec.preprocess) for p in photos])

    def outputs(model: bytes) -> dict[str, np.ndarray]:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        runs = [session.run(None, {"input": batch[i : i + 16]}) for i in range(0, len(batch), 16)]
        return {name: np.concatenate([r[k] for r in runs]) for k, name in enumerate(names)}

    source = onnx.load(str(SOURCE))
    reference = outputs(source.SerializeToString())
    print(f"{len(photos)} photos of {folder} ({split if labels.is_file() else 'all'})")
    for limit in limits:
        model = compress_weights(source, limit)
        got = outputs(model.SerializeToString())
        logit = np.abs(got["logit"] - reference["logit"])
        ood = np.abs(got["ood"] - reference["ood"])
        print(f"fp16 below {limit:>7,}: {len(model.SerializeToString()) / 1e6:.2f} MB; logit moved by at most "
              f"{logit.max():.4f} (mean {logit.mean():.4f}), input-check score by at most {ood.max():.4f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail when the committed graphs differ from a rebuild")
    parser.add_argument("--measure", type=Path, help="print how far each size limit moves the outputs on FOLDER")
    parser.add_argument("--split", default="val", help="the split of FOLDER's labels.csv that --measure reads")
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.split)
        return 0
    model, spec = build_device_model()
    wanted = {
        DEVICE_DIR / "model.onnx": model,
        DEVICE_DIR / "model.json": spec.encode(),
        PREPARE: build_prepare_graph(),
    }
    if args.check:
        stale = [str(p.relative_to(ROOT)) for p, data in wanted.items() if not p.is_file() or p.read_bytes() != data]
        if stale:
            print(f"out of date: {', '.join(stale)}; rebuild with python scripts/build_device_model.py")
            return 1
        print("the device model and the pixel graph are up to date")
        return 0
    for path, data in wanted.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {path.relative_to(ROOT)} ({len(data) / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
