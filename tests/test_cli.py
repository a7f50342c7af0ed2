"""The `skinscan` command end to end: train → export → evaluate → predict, and its error handling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from skinscan.cli import main
from synthetic import lesion_bytes


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "skinscan.cli", *args], capture_output=True, text=True, timeout=300)


def test_train_export_evaluate_end_to_end(synthetic_data: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    run = tmp_path / "run"
    code = main(["train", str(synthetic_data), "--model", "tiny-cnn", "--no-pretrained", "--epochs", "2",
                 "--holdout", str(synthetic_data), "--batch-size", "16", "--val-fraction", "0.3",
                 "--feature-images", "40", "--threads", "1", "--out", str(run)])  # fmt: skip
    assert code == 0 and (run / "best.pt").is_file()
    assert main(["export", str(run / "best.pt"), "--out", str(tmp_path / "model")]) == 0
    report = tmp_path / "report"
    assert main(["evaluate", str(synthetic_data), "--split", "test", "--model", str(tmp_path / "model"),
                 "--out", str(report), "--n-boot", "200"]) == 0  # fmt: skip
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "f1", "ece",
                "threshold", "n", "n_malignant", "auc_ci", "rejected_fraction"):  # fmt: skip
        assert key in metrics, key
    assert metrics["n"] == 24 and metrics["n_malignant"] == 12
    for name in ("report.html", "roc.png", "pr.png", "reliability.png", "confusion.png", "grid.png"):
        assert (report / name).is_file(), name
    import csv

    with (report / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["label"] for r in rows} == {"benign", "malignant"}
    called = sum(r["call"] == r["label"] for r in rows) / len(rows)
    assert called == pytest.approx(metrics["accuracy"], abs=1e-3)  # the rows are the cases the metrics count
    assert all((float(r["probability"]) >= metrics["threshold"]) == (r["call"] == "malignant") for r in rows)
    # a checkpoint evaluates too, and agrees with its export
    assert main(["evaluate", str(synthetic_data), "--split", "test", "--model", str(run / "best.pt"),
                 "--out", str(tmp_path / "report_ckpt"), "--n-boot", "0"]) == 0  # fmt: skip
    from_ckpt = json.loads((tmp_path / "report_ckpt" / "metrics.json").read_text())
    assert from_ckpt["auc"] == pytest.approx(metrics["auc"], abs=1e-3)


def test_evaluate_reports_each_diagnosis(synthetic_data: Path, tiny_model_dir: Path, tmp_path: Path) -> None:
    # a clinic's own CSV with a diagnosis column, scored by a real exported model in a fresh process
    rows = ["path,label,dx"]
    for i, image in enumerate(sorted((synthetic_data / "test").glob("*/*.png"))):
        label = image.parent.name
        rows.append(f"{image},{label},{'mel' if label == 'malignant' else ('nv', 'bkl')[i % 2]}")
    (tmp_path / "cases.csv").write_text("\n".join(rows) + "\n")
    result = run_cli("evaluate", str(tmp_path / "cases.csv"), "--model", str(tiny_model_dir),
                     "--out", str(tmp_path / "report"), "--n-boot", "0")  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    by_dx = {r["group"]: r for r in metrics["by_diagnosis"]}
    assert {k: (r["n"], r["n_malignant"]) for k, r in by_dx.items()} == {"mel": (12, 12), "nv": (6, 0), "bkl": (6, 0)}
    fp, tp = metrics["confusion_matrix"][0][1], metrics["confusion_matrix"][1][1]
    assert by_dx["mel"]["called_malignant"] == tp
    assert by_dx["nv"]["called_malignant"] + by_dx["bkl"]["called_malignant"] == fp
    assert f"mel      malignant {tp:>5}/12" in result.stdout
    import csv

    with (tmp_path / "report" / "predictions.csv").open() as f:
        assert {r["diagnosis"] for r in csv.DictReader(f)} == {"mel", "nv", "bkl"}
    assert "By diagnosis" in (tmp_path / "report" / "report.html").read_text()


def test_predict_files_folders_json_csv_heatmaps(tiny_model_dir: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / "a.jpg").write_bytes(lesion_bytes(False, seed=1))
    (images / "sub" / "b.png").write_bytes(lesion_bytes(True, seed=2, fmt="PNG"))
    result = run_cli("predict", str(images), "--model", str(tiny_model_dir), "--json",
                     "--csv", str(tmp_path / "out.csv"), "--heatmap", str(tmp_path / "heat"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(line["path"]).name for line in lines] == ["a.jpg", "b.png"]
    assert (tmp_path / "out.csv").read_text().count("\n") == 3
    assert len(list((tmp_path / "heat").glob("*.png"))) == 2


def test_predict_reports_bad_files_and_exits_nonzero(tiny_model_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.jpg"
    good.write_bytes(lesion_bytes(True, seed=3))
    bad = tmp_path / "notes.jpg"
    bad.write_text("shopping list")
    result = run_cli("predict", str(good), str(bad), str(tmp_path / "missing.jpg"), "--model", str(tiny_model_dir))
    assert result.returncode == 1
    assert "good.jpg: " in result.stdout and "probability" in result.stdout
    assert "notes.jpg: error: unsupported file type: this is a plain-text file" in result.stderr
    assert "missing.jpg: error:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "not a diagnosis" in result.stderr


def test_predict_loads_neither_torch_nor_scipy_sklearn_matplotlib(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`skinscan predict` end to end, then what it imported: the runtime path stays light."""
    image = tmp_path / "x.jpg"
    image.write_bytes(lesion_bytes(False, seed=5))
    code = (
        "import sys; from skinscan.cli import main; status = main(['predict', sys.argv[1], '--model', sys.argv[2]]); "
        "heavy = [m for m in ('torch', 'scipy', 'sklearn', 'matplotlib', 'onnx') if m in sys.modules]; "
        "print('heavy:', heavy); sys.exit(status or (3 if heavy else 0))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(image), str(tiny_model_dir)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and "heavy: []" in done.stdout, done.stdout + done.stderr
    assert "x.jpg:" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--schedule", "step"], "unknown schedule 'step'; valid: cosine, plateau"),
        (["train", "--balance", "sources"], "valid: pos_weight, sampler, source, none"),
        (["train", "--device", "tpu"], "unknown device 'tpu'"),
        (["train", "--config", "/nonexistent.toml"], "cannot read training settings"),
        (["export", "x.pt", "--out", "/tmp/x", "--metrics", "no-equals-sign"], "--metrics takes NAME=PATH"),
    ],
)
def test_bad_settings_are_usage_errors_before_any_work(args: list[str], message: str) -> None:
    """Exit status 2 and one line, before a single image is decoded (the data here do not even exist)."""
    pytest.importorskip("torch")
    result = run_cli(*args, *(["--out", "/nonexistent/run"] if args[0] == "train" else []))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_gpu_that_is_not_there_is_a_usage_error() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    result = run_cli("train", "--device", "cuda", "--out", "/nonexistent/run")
    assert result.returncode == 2 and "no CUDA GPU" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "/nonexistent/data", "--out", "/tmp/x"], "does not exist"),
        (["predict", "x.jpg", "--model", "/nonexistent/model.onnx"], "no model at"),
        (["train", "--model", "resnet-9000", "--epochs", "1"], "unknown model 'resnet-9000'"),
    ],
)
def test_errors_are_one_clear_line(args: list[str], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_models_and_help() -> None:
    pytest.importorskip("torch")
    result = run_cli("models")
    assert result.returncode == 0 and "efficientnet-lite0" in result.stdout
    assert run_cli("--help").returncode == 0
