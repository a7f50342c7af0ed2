"""`skinscan drift-reference`: what a model's probabilities and input-check distances look like on reference
images (its validation images, say), written into its model.json for the server's drift monitor (core/drift.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from skinscan.core.drift import Reference
from skinscan.core.errors import DataError
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction
from skinscan.training.records import Record


def reference_of(engine: Engine, records: Sequence[Record], *, source: str, batch_size: int = 32) -> Reference:
    """Run the engine over the records as the server would, and keep what the server's drift monitor keeps: the
    probability of each image the checks accept, and the feature distance of each image the model ran on.

    Raises:
        DataError: too few images were read to describe a distribution.
    """
    probabilities: list[float] = []
    distances: list[float] = []
    for start in range(0, len(records), batch_size):
        paths = [r.path for r in records[start : start + batch_size]]
        for outcome in engine.predict_batch(paths):
            if not isinstance(outcome, Prediction):
                continue  # unreadable: the server would have answered an error, and the monitor seen nothing
            if outcome.ood_distance is not None:
                distances.append(outcome.ood_distance)
            if outcome.ok and outcome.probability is not None:
                probabilities.append(outcome.probability)
    reference = Reference.of({"probability": probabilities, "ood_distance": distances}, source=source)
    if len(reference.measures) < 2:
        raise DataError(f"too few readable, accepted images for a drift reference: {len(probabilities)} judged, "
                        f"{len(distances)} with a distance (at least 10 of each)")  # fmt: skip
    return reference


def write_reference(model_json: Path, reference: Reference) -> None:
    """Put the reference into a model.json, leaving the rest of the file as it is."""
    spec = json.loads(model_json.read_text())
    spec["reference"] = reference.to_dict()
    model_json.write_text(json.dumps(spec, indent=2) + "\n")
