"""`skinscan import-keras`: the seed's Keras HDF5 weights → `seed-cnn` → an exported model (h5py, no TensorFlow).

Weights are matched by shape, which is unambiguous for the seed network, so any layer naming works (Keras 2
`model.save("x.h5")`, Keras 3 legacy `.h5`, or Keras 3 `.weights.h5`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from skinscan.core.errors import ModelFormatError
from skinscan.core.preprocess import PreprocessSpec
from skinscan.training.checkpoint import Checkpoint
from skinscan.training.models import SeedCNN

# (keras shape, torch parameter) for each tensor of the seed network
_SEED_TENSORS = {
    (3, 3, 3, 32): "conv1.weight",
    (32,): "conv1.bias",
    (3, 3, 32, 64): "conv2.weight",
    (64,): "conv2.bias",
    (3, 3, 64, 128): "conv3.weight",
    (128,): "conv3.bias",
    (26 * 26 * 128, 512): "fc1.weight",
    (512,): "fc1.bias",
    (512, 1): "fc2.weight",
    (1,): "fc2.bias",
}
# The seed resized the whole photo to 224x224 (no crop) and scaled it to [0, 1], with no colour correction.
SEED_PREPROCESS = PreprocessSpec(input_size=224, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), colour_constancy=None,
                                 crop="resize")  # fmt: skip


def read_keras_arrays(path: str | Path) -> dict[tuple[int, ...], np.ndarray]:
    """Every weight array in a Keras HDF5 file, keyed by shape (seed-cnn's shapes are all distinct)."""
    import h5py

    found: dict[tuple[int, ...], np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset) and obj.ndim >= 1 and "optimizer" not in name:
                    shape = tuple(int(s) for s in obj.shape)
                    if shape in _SEED_TENSORS:
                        if shape in found:
                            raise ModelFormatError(
                                f"{path}: more than one weight of shape {shape}; not the seed network"
                            )
                        found[shape] = np.asarray(obj[()])

            f.visititems(visit)
    except OSError as exc:
        raise ModelFormatError(f"{path} is not a readable HDF5 file: {exc}") from exc
    missing = [name for shape, name in _SEED_TENSORS.items() if shape not in found]
    if missing:
        raise ModelFormatError(
            f"{path} does not hold the seed network (Conv 32-64-128, Dense 512, Dense 1 on 224x224 RGB): "
            f"missing {', '.join(missing)}"
        )
    return found


def seed_cnn_from_keras(path: str | Path) -> SeedCNN:
    arrays = read_keras_arrays(path)
    state: dict[str, torch.Tensor] = {}
    for shape, name in _SEED_TENSORS.items():
        a = arrays[shape]
        if name.startswith("conv") and name.endswith("weight"):
            a = a.transpose(3, 2, 0, 1)  # kh, kw, in, out → out, in, kh, kw
        elif name == "fc1.weight":
            # Keras flattens channels-last (h, w, c); torch flattens (c, h, w)
            a = a.reshape(26, 26, 128, 512).transpose(2, 0, 1, 3).reshape(-1, 512).T
        elif name == "fc2.weight":
            a = a.T
        state[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    model = SeedCNN(pretrained=False)
    model.load_state_dict(state)
    return model.eval()


def import_keras(path: str | Path, out_dir: str | Path, *, threshold: float = 0.5, command: str = "") -> Any:
    """Import seed weights and export them as an ONNX model with a spec (no calibration data: T = 1)."""
    from skinscan.training.export import export_model

    model = seed_cnn_from_keras(path)
    ckpt = Checkpoint(
        model_name="seed-cnn",
        model=model.state_dict(),
        preprocess=SEED_PREPROCESS,
        threshold=threshold,
        data={"sources": [], "note": f"imported from Keras weights {Path(path).name}; training data unknown"},
    )
    return export_model(model, ckpt, out_dir, command=command)
