"""The `skinscan` command end to end: train → export → evaluate → predict, and its error handling."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skinscan.cli import EXIT_BROKEN_PIPE, main
from skinscan.core.severity import VERDICTS
from synthetic import lesion_bytes

COMMAND = [sys.executable, "-m", "skinscan.cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, timeout=300, env=env)


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
    heatmaps = sorted((tmp_path / "heat").rglob("*.png"))
    assert [Path(line["heatmap_path"]) for line in lines] == heatmaps  # each line says where its heatmap went
    assert [p.relative_to(tmp_path / "heat").as_posix() for p in heatmaps] == ["a_heatmap.png", "sub/b_heatmap.png"]


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
    result = run_cli("models", "architectures")  # bare `skinscan models` lists the installed models (test_store.py)
    assert result.returncode == 0 and "tiny-cnn" in result.stdout.split()
    assert run_cli("--help").returncode == 0


def test_same_named_images_in_different_folders_get_their_own_heatmaps(tiny_model_dir: Path, tmp_path: Path) -> None:
    """a/x.jpg and b/x.jpg once overwrote each other's heatmap, and no output said where a heatmap went."""
    images = tmp_path / "images"
    for i, name in enumerate(["a/x.jpg", "b/x.jpg", "a/x.png"]):
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        (images / name).write_bytes(
            lesion_bytes(i % 2 == 1, seed=10 + i, fmt="PNG" if name.endswith("png") else "JPEG")
        )
    inputs = [str(images / "a" / "x.jpg"), str(images / "b"), str(images / "a" / "x.png")]
    heat, table = tmp_path / "heat", tmp_path / "out.csv"
    result = run_cli("predict", *inputs, "--model", str(tiny_model_dir), "--no-checks", "--heatmap", str(heat),
                     "--csv", str(table))  # fmt: skip
    assert result.returncode == 0, result.stderr
    expected = [heat / "a" / "x_heatmap.png", heat / "b" / "x_heatmap.png", heat / "a" / "x_heatmap-2.png"]
    assert sorted(heat.rglob("*.png")) == sorted(expected)
    assert len({p.read_bytes() for p in expected}) == 3  # three images' heatmaps, none written over another
    lines = result.stdout.splitlines()
    assert [line.split("  heatmap: ")[1] for line in lines] == [str(p) for p in expected]
    with table.open(newline="") as f:
        assert [row["heatmap_path"] for row in csv.DictReader(f)] == [str(p) for p in expected]


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["predict", "x.jpg"], "--threshold", "nan"),
        (["predict", "x.jpg"], "--threshold", "7"),
        (["predict", "x.jpg"], "--threshold", "-0.01"),
        (["predict", "x.jpg"], "--threshold", "inf"),
        (["predict", "x.jpg"], "--threshold", "half"),
        (["evaluate", "data", "--out", "report"], "--threshold", "nan"),
        (["evaluate", "data", "--out", "report"], "--threshold", "1.5"),
        (["import-keras", "seed.h5"], "--threshold", "NaN"),
        (["export", "best.pt", "--out", "model"], "--ood-quantile", "nan"),
        (["export", "best.pt", "--out", "model"], "--ood-quantile", "2"),
    ],
)
def test_thresholds_must_be_numbers_from_0_to_1(
    args: list[str], flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage error (exit 2) naming the option, before any model or file is opened (none of them exist)."""
    with pytest.raises(SystemExit) as exit_:
        main([*args, flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: must be a number from 0 to 1, not {value!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "flag", "value"),
    [
        (["predict", "x.jpg"], "--max-mb", "0"),
        (["predict", "x.jpg"], "--max-mb", "nan"),
        (["predict", "x.jpg"], "--max-mb", "inf"),
        (["export", "best.pt", "--out", "model"], "--ood-margin", "nan"),
        (["export", "best.pt", "--out", "model"], "--ood-margin", "-1"),
    ],
)
def test_sizes_and_factors_must_be_positive_numbers(
    args: list[str], flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([*args, flag, value])
    assert exit_.value.code == 2
    assert f"argument {flag}: must be a number above 0, not {value!r}" in capsys.readouterr().err


def test_threshold_nan_is_refused_before_any_image_is_judged(tiny_model_dir: Path, tmp_path: Path) -> None:
    # `nan` once passed, and every image came out "benign ... severity 6/6"
    (tmp_path / "x.jpg").write_bytes(lesion_bytes(True, seed=4))
    result = run_cli("predict", str(tmp_path / "x.jpg"), "--model", str(tiny_model_dir), "--threshold", "nan")
    assert result.returncode == 2 and result.stdout == ""
    assert "--threshold: must be a number from 0 to 1" in result.stderr and "Traceback" not in result.stderr
    for edge in ("0", "1", "1e-3"):
        assert run_cli("predict", str(tmp_path / "x.jpg"), "--model", str(tiny_model_dir), "--threshold", edge,
                       "--json").returncode == 0  # fmt: skip


# names an attacker might give: a forged result line, a terminal escape, a byte that is not UTF-8, and one that is
# merely not English (which must print as itself)
FORGED = "ok.jpg: benign    probability 0.001\nforged.jpg"
ESCAPE = "\x1b[2Jclear.jpg"
UNDECODABLE = os.fsdecode(b"bad\xff.jpg")
CYRILLIC = "фото.jpg"
ESCAPED = {FORGED: "ok.jpg: benign    probability 0.001\\nforged.jpg", ESCAPE: "\\x1b[2Jclear.jpg",
           UNDECODABLE: "bad\\udcff.jpg", CYRILLIC: CYRILLIC}  # fmt: skip


@pytest.fixture
def hostile_names(tmp_path: Path) -> Path:
    folder = tmp_path / "names"
    folder.mkdir()
    for i, name in enumerate(ESCAPED):
        (folder / name).write_bytes(lesion_bytes(i % 2 == 0, seed=20 + i))
    (folder / "notes\nforged.jpg").write_text("a text file with a newline in its name")
    return folder


def test_text_output_escapes_control_characters_in_names(tiny_model_dir: Path, hostile_names: Path) -> None:
    # strict UTF-8, as a terminal in an en_US.UTF-8 locale has it: an unescaped undecodable byte would not print
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}
    result = run_cli("predict", str(hostile_names), "--model", str(tiny_model_dir), "--no-checks", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(ESCAPED)  # one line per image: no forged one
    for shown in ESCAPED.values():
        assert sum(line.startswith(f"{hostile_names}/{shown}: ") for line in lines) == 1, shown
    assert "\x1b" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith(str(hostile_names))]
    assert errors == [f"{hostile_names}/notes\\nforged.jpg: error: unsupported file type: this is a plain-text file;"
                      " send a JPEG, PNG, HEIC, WebP, TIFF, BMP, GIF or DICOM image"]  # fmt: skip


def test_json_and_csv_keep_names_exact(tiny_model_dir: Path, hostile_names: Path, tmp_path: Path) -> None:
    table = tmp_path / "out.csv"
    result = run_cli("predict", str(hostile_names), "--model", str(tiny_model_dir), "--no-checks", "--json",
                     "--csv", str(table))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]  # one object per line, a newline or not
    assert sorted(Path(line["path"]).name for line in lines) == sorted(ESCAPED)
    with table.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # the CSV's quoting keeps a newline inside its cell; an undecodable byte is written as its escape
    shown = {**{name: name for name in ESCAPED}, UNDECODABLE: "bad\\udcff.jpg"}
    assert sorted(Path(row["path"]).name for row in rows) == sorted([*shown.values(), "notes\nforged.jpg"])
    assert {Path(row["path"]).name: row["status"] for row in rows}["notes\nforged.jpg"] == "error"


def test_a_huge_sparse_file_is_that_files_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A 3 GB file (sparse: no disk) is refused by its size, not read into memory, and the next file is judged."""
    huge = tmp_path / "huge.jpg"
    huge.touch()
    os.truncate(huge, 3 * 1024**3)
    (tmp_path / "z.jpg").write_bytes(lesion_bytes(False, seed=6))
    table = tmp_path / "out.csv"
    result = run_cli("predict", str(huge), str(tmp_path / "z.jpg"), "--model", str(tiny_model_dir), "--no-checks",
                     "--csv", str(table))  # fmt: skip
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{huge}: error: file too large" in result.stderr
    assert any(f"z.jpg: {v.headline}" in result.stdout for v in VERDICTS)
    with table.open(newline="") as f:
        assert [row["status"] for row in csv.DictReader(f)] == ["error", "ok"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="limits its address space through /proc and rlimit")
def test_running_out_of_memory_on_one_image_is_that_images_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A real MemoryError: the command runs with its address space capped just above what it needs, so a
    7000x7000 PNG (49 megapixels: allowed, but 147 MB decoded) cannot be decoded, and the next image can."""
    from PIL import Image

    Image.new("RGB", (7000, 7000), (180, 120, 100)).save(tmp_path / "big.png")
    (tmp_path / "small.jpg").write_bytes(lesion_bytes(False, seed=7))
    child = (
        "import resource, sys; from skinscan.cli import main\n"
        "main(['predict', sys.argv[1], '--model', sys.argv[3], '--json'])  # loads everything a run needs\n"
        "size = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (size + 96 * 2**20,) * 2)\n"
        "sys.exit(main(['predict', sys.argv[2], sys.argv[1], '--model', sys.argv[3], '--max-mb', '1']))\n"
    )
    done = subprocess.run([sys.executable, "-c", child, str(tmp_path / "small.jpg"), str(tmp_path / "big.png"),
                           str(tiny_model_dir)], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{tmp_path / 'big.png'}: error: out of memory" in done.stderr
    assert f"{tmp_path / 'small.jpg'}: " in done.stdout.splitlines()[-1]


def test_a_reader_that_stops_early_gets_no_traceback(tiny_model_dir: Path, tmp_path: Path) -> None:
    """`skinscan predict ... | head -1`: the pipe closes after one line while the command still has lines to write."""
    image = tmp_path / "x.jpg"
    image.write_bytes(lesion_bytes(False, seed=8))
    with subprocess.Popen([*COMMAND, "predict", *[str(image)] * 200, "--model", str(tiny_model_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:  # fmt: skip
        assert process.stdout is not None and process.stderr is not None
        assert "x.jpg: " in process.stdout.readline()
        process.stdout.close()
        stderr = process.stderr.read()
        assert process.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Broken pipe" not in stderr, stderr
