"""`skinscan evaluate`'s scoring: its refusals are the engine's, on the same images and the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skinscan.cli import EXIT_USAGE, main
from skinscan.core.errors import ConfigError
from skinscan.evaluation.evaluate import Scorer, load_split, score_records
from skinscan.runtime.checks import NOT_A_LESION
from skinscan.runtime.engine import Engine
from skinscan.runtime.result import Prediction
from skinscan.training.records import Record, load_records
from synthetic import make_lesion


def write_images(folder: Path) -> list[Path]:
    """Lesions the engine judges, and images it refuses for each of its reasons."""
    rng = np.random.default_rng(7)
    images = {f"lesion{i}.png": make_lesion(rng, malignant=i % 2 == 1) for i in range(6)}
    images["noise.png"] = Image.fromarray(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8))  # not a lesion
    images["dark.png"] = Image.new("RGB", (128, 128), (6, 5, 7))  # too dark
    images["blank.png"] = Image.new("RGB", (128, 128), (180, 140, 120))  # skin colour without any detail
    paths = []
    for name, image in images.items():
        image.save(folder / name)
        paths.append(folder / name)
    return paths


def test_evaluate_refuses_what_the_engine_refuses(engine: Engine, tiny_model_dir: Path, tmp_path: Path) -> None:
    paths = write_images(tmp_path)
    records = [Record(path=p, label=0, key=f"test:{p.stem}", group=p.stem) for p in paths]
    scored = score_records(records, Scorer(str(tiny_model_dir)), batch_size=4)  # batches cut across the kinds
    results = engine.predict_batch(paths)
    assert all(isinstance(r, Prediction) for r in results)
    verdicts = [r for r in results if isinstance(r, Prediction)]
    assert [r.path for r in scored["records"]] == paths
    assert scored["rejected"].tolist() == [p.status == "rejected" for p in verdicts]
    # both parts of the rule are exercised: a refusal for the quality and one for the feature distance
    reasons = {p.path.stem: v.reason for p, v in zip(records, verdicts, strict=True)}
    assert reasons["noise"] == NOT_A_LESION
    assert reasons["dark"] is not None and "dark" in reasons["dark"]
    assert not any(reasons[f"lesion{i}"] for i in range(6))


# --- the command's usage errors and its output (issue 15, item 7) ---------------------------------------------------


def write_layouts(root: Path) -> dict[str, tuple[Path, list[str]]]:
    """The same few lesions in each layout `load_records` reads: name → (data, the splits it has)."""
    rng = np.random.default_rng(3)
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(4):
        make_lesion(rng, malignant=i % 2 == 1).save(images / f"{i}.png")
    rows = [(f"images/{i}.png", "malignant" if i % 2 else "benign", "test" if i >= 2 else "train") for i in range(4)]
    (root / "plain.csv").write_text("path,label\n" + "".join(f"{p},{lab}\n" for p, lab, _ in rows))
    (root / "split.csv").write_text("path,label,split\n" + "".join(f"{p},{lab},{s}\n" for p, lab, s in rows))
    classes = root / "classes"
    for i, (path, label, _) in enumerate(rows):
        (classes / label).mkdir(parents=True, exist_ok=True)
        (classes / label / f"{i}.png").write_bytes((root / path).read_bytes())
    split_folders = root / "split_folders"
    for i, (path, label, split) in enumerate(rows):
        (split_folders / split / label).mkdir(parents=True, exist_ok=True)
        (split_folders / split / label / f"{i}.png").write_bytes((root / path).read_bytes())
    return {
        "csv without a split column": (root / "plain.csv", []),
        "csv with splits": (root / "split.csv", ["test", "train"]),
        "a folder per class": (classes, []),
        "split folders": (split_folders, ["test", "train"]),
    }


@pytest.mark.parametrize("layout", ["csv without a split column", "csv with splits", "a folder per class",
                                    "split folders"])  # fmt: skip
def test_an_unknown_split_is_a_usage_error_naming_the_splits(
    layout: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, splits = write_layouts(tmp_path)[layout]
    with pytest.raises(ConfigError, match="no split 'banana'") as caught:
        load_split(data, "banana")
    message = str(caught.value)
    assert (f"it has: {', '.join(splits)}" if splits else "it has no splits") in message
    # the command: a usage error (exit 2) and one line, before any model is loaded or a report written
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--split", "banana", "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == f"skinscan: error: {message}" and "Traceback" not in err
    assert not out.exists()


def test_a_known_split_still_reads_the_same_records(tmp_path: Path) -> None:
    layouts = write_layouts(tmp_path)
    for name in ("csv with splits", "split folders"):
        data, _ = layouts[name]
        assert {r.split for r in load_split(data, "test")} == {"test"} and len(load_split(data, "test")) == 2
        assert load_split(data, "test") == load_records(data, "test")
    assert len(load_split(layouts["a folder per class"][0], None)) == 4


def test_the_report_path_is_printed_clean(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = write_layouts(tmp_path / "data")["a folder per class"]
    out = tmp_path / "report"
    assert main(["evaluate", str(data), "--model", str(tiny_model_dir), "--out", f"{out}/", "--n-boot", "20"]) == 0
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed == f"report: {out / 'report.html'}" and "//" not in printed
    assert (out / "report.html").is_file()
