"""Users of the seed keep their model: a real Keras 3 .h5 of the seed network imports with the same outputs."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
if importlib.util.find_spec("keras") is None:  # not imported here: it would pick a backend for this process
    pytest.skip("keras (a dev dependency) is not installed", allow_module_level=True)

from skinscan.core.errors import ModelFormatError
from skinscan.core.preprocess import prepare_pixels
from skinscan.runtime.engine import Engine
from skinscan.runtime.imaging import load_image
from skinscan.training.keras_import import SEED_PREPROCESS, import_keras, read_keras_arrays
from synthetic import lesion_bytes

# The seed's network, as its training script built it, saved in the HDF5 format it used.
KERAS_SCRIPT = """
import sys, numpy as np, keras
from keras import layers
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((224, 224, 3)),
    layers.Conv2D(32, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
    layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
    layers.Conv2D(128, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
    layers.Flatten(), layers.Dense(512, activation="relu"), layers.Dropout(0.5),
    layers.Dense(1, activation="sigmoid"),
])
# random biases too (Keras starts them at zero), so every tensor's layout is checked
rng = np.random.default_rng(1)
for layer in model.layers:
    ws = layer.get_weights()
    if ws:
        layer.set_weights([ws[0], rng.normal(0, 0.05, ws[1].shape).astype("float32")])
model.save(sys.argv[1])
x = np.load(sys.argv[2])
np.save(sys.argv[3], model.predict(x, verbose=0).ravel())
"""


@pytest.fixture(scope="module")
def keras_seed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    folder = tmp_path_factory.mktemp("keras")
    images = [load_image(lesion_bytes(m, seed=s, size=180)) for m in (False, True) for s in range(3)]
    x = np.stack([prepare_pixels(im, SEED_PREPROCESS) for im in images]).astype(np.float32) / 255.0
    np.save(folder / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    subprocess.run(
        [sys.executable, "-c", KERAS_SCRIPT, str(folder / "seed.h5"), str(folder / "x.npy"), str(folder / "y.npy")],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    return folder / "seed.h5", x, np.load(folder / "y.npy")


def test_imported_model_gives_the_keras_probabilities(keras_seed: tuple[Path, np.ndarray, np.ndarray],
                                                      tmp_path: Path) -> None:  # fmt: skip
    h5, x, keras_prob = keras_seed
    spec = import_keras(h5, tmp_path / "model")
    assert spec.architecture == "seed-cnn" and spec.colour_constancy is None and spec.temperature == 1.0
    engine = Engine(tmp_path / "model", check_inputs=False)
    prob = engine.probabilities(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    assert keras_prob.std() > 1e-3  # the images really give different outputs
    np.testing.assert_allclose(prob, keras_prob, rtol=1e-4, atol=1e-5)


def test_cli_import_keras(
    keras_seed: tuple[Path, np.ndarray, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import shlex

    from skinscan.cli import main

    out = tmp_path / "my models" / "seed"  # a space: the recorded command must still run as it reads
    args = ["import-keras", str(keras_seed[0]), "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["skinscan", *args])
    assert main(args) == 0
    assert (out / "model.onnx").is_file()
    assert shlex.split(json.loads((out / "model.json").read_text())["command"]) == ["skinscan", *args]


def test_not_the_seed_network_is_refused(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("dense/kernel", data=np.zeros((10, 3), np.float32))
    with pytest.raises(ModelFormatError, match="does not hold the seed network"):
        read_keras_arrays(path)
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(ModelFormatError, match="not a readable HDF5"):
        read_keras_arrays(tmp_path / "junk.h5")
