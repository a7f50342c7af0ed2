"""A run's history files: JSON and CSV of every epoch, and the curves."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from skinscan.training.history import write_history

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_history_is_written_as_json_csv_and_curves(tmp_path: Path) -> None:
    history = [
        {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 1 - 0.5 / e, "val_accuracy": 0.7}
        for e in range(1, 6)
    ]
    history[2]["val_loss"] = None  # a gap is drawn as a gap, not a failure
    write_history(history, tmp_path)
    assert json.loads((tmp_path / "history.json").read_text()) == history
    with (tmp_path / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)
