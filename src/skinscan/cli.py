"""The `skinscan` command: thin subcommands over library functions, with lazy imports so that
`predict` and `serve` never load torch."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from skinscan import DISCLAIMER, __version__
from skinscan.core.errors import ConfigError, MissingExtraError, SkinscanError

EXIT_ERROR = 1
EXIT_USAGE = 2
# what a shell reports for a command killed by SIGPIPE (128 + 13), as `cat big | head -1` gives: scripts that allow
# for a reader closing early already expect it, and it is not 1, which says that some images failed
EXIT_BROKEN_PIPE = 141

_EXTRA_OF = {
    "torch": "train", "onnx": "train", "fastapi": "serve", "uvicorn": "serve", "python_multipart": "serve",
    "qtpy": "gui", "PyQt5": "gui", "h5py": "train", "sklearn": "evaluate", "matplotlib": "evaluate",
    "pydantic_settings": "serve", "prometheus_client": "serve", "tqdm": "evaluate",
}  # fmt: skip


def probability(text: str) -> float:
    """An argparse type: a finite number from 0 to 1 (a threshold, a quantile), else a usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:  # false for nan too, which would otherwise pass every comparison as "benign"
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, not {text!r}")
    return value


def positive_number(text: str) -> float:
    """An argparse type: a finite number above 0 (a size, a factor), else a usage error."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
    return value


def _require(module: str) -> None:
    """Fail with an install hint, not a traceback, when an optional dependency is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(module, _EXTRA_OF.get(module, "dev"))


# --- train ------------------------------------------------------------------------------------------


def _add_train(sub: Any) -> None:
    from skinscan.training.config import TrainConfig

    p = sub.add_parser("train", help="train a model (needs the [train] extra)", description="Train a model.")
    p.add_argument("data", nargs="*", help="training data (folders or CSVs); default: the bundled model's data")
    p.add_argument("--config", help="a TOML file of training settings")
    for f in fields(TrainConfig):
        if f.name == "data":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        help_text = f"(default: {default})" if default is not None else ""
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif str(f.type).startswith("list"):
            p.add_argument(flag, dest=f.name, action="append", default=None, help=help_text + " (repeatable)")
        else:
            kind: Callable[[str], Any] = float if "float" in str(f.type) else int if f.type == "int" else str
            p.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    _require("torch")
    from skinscan.training.config import TrainConfig, config_from
    from skinscan.training.train import train

    overrides = {f.name: getattr(args, f.name, None) for f in fields(TrainConfig) if f.name != "data"}
    if args.data:
        overrides["data"] = args.data
    cfg = config_from(args.config, **overrides)
    best = train(cfg)
    print(f"best checkpoint: {best}")
    return 0


# --- evaluate ---------------------------------------------------------------------------------------


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on labelled data and write a report")
    p.add_argument("data", help="a dataset folder or CSV")
    p.add_argument("--split", help="split of the data (e.g. train, test)")
    p.add_argument("--model", help="an exported model (.onnx or its folder) or a checkpoint (.pt); default: bundled")
    p.add_argument("--out", required=True, help="folder for metrics.json, plots and report.html")
    p.add_argument("--threshold", type=probability, help="override the model's operating threshold (0 to 1)")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (flips and rotations)")
    p.add_argument("--exclude-same-as", action="append", default=[], help="drop images that duplicate this data")
    p.add_argument("--exclude-split", help="split of the --exclude-same-as data (default: all of it)")
    p.add_argument("--duplicates", action="append", default=[], help="a same_image_as manifest (repeatable)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images with a warning")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    _add_site_option(p)
    p.set_defaults(func=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> int:
    _require("sklearn")
    _require("matplotlib")
    from skinscan.evaluation.evaluate import evaluate

    if args.n_boot < 0:
        raise ConfigError(f"--n-boot must be 0 or more, not {args.n_boot}")

    metrics = evaluate(
        args.data,
        split=args.split,
        model=args.model,
        out=args.out,
        threshold=args.threshold,
        tta=args.tta,
        exclude_same_as=args.exclude_same_as,
        exclude_split=args.exclude_split,
        duplicates=args.duplicates,
        skip_bad=args.skip_bad,
        n_boot=args.n_boot,
        site=args.site,
    )
    keys = ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "precision", "npv", "f1", "ece")
    print(f"n={metrics['n']} ({metrics['n_malignant']} malignant), threshold {metrics['threshold']:.3f}")
    for k in keys:
        value, ci = metrics.get(k), metrics.get(f"{k}_ci")
        shown = "n/a" if value is None else f"{value:.4f}"
        interval = f"  (95% CI {ci[0]:.4f}–{ci[1]:.4f})" if ci else ""
        print(f"  {k:<18} {shown}{interval}")
    if metrics.get("by_diagnosis"):
        print("called malignant, by diagnosis (sensitivity for a malignant one, false alarms for a benign one):")
        for row in metrics["by_diagnosis"]:
            low, high = row["rate_ci"]
            print(f"  {row['group']:<8} {row['kind']:<9} {row['called_malignant']:>5}/{row['n']:<5} {row['rate']:.3f}  "
                  f"(95% CI {low:.3f}–{high:.3f})")  # fmt: skip
    print(f"report: {Path(args.out) / 'report.html'}")  # not report//report.html for --out report/
    return 0


# --- export -----------------------------------------------------------------------------------------


def _add_export(sub: Any) -> None:
    p = sub.add_parser("export", help="export a checkpoint as model.onnx + model.json (needs [train])")
    p.add_argument("checkpoint", help="a best.pt written by skinscan train")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--version", default="1.0.0", help="the model's version")
    p.add_argument(
        "--ood-quantile",
        type=probability,
        default=0.999,  # export.OOD_QUANTILE (not imported: the CLI loads torch only when it runs a command)
        help="validation quantile of each input-check distance (features, texture) above which images are refused",
    )
    p.add_argument("--ood-margin", type=positive_number, default=1.0, help="multiplies those distance thresholds")
    _add_metrics_option(p)
    p.set_defaults(func=_run_export)


def _add_metrics_option(p: Any) -> None:
    p.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="NAME=METRICS_JSON",
        help="attach test metrics (from skinscan evaluate) to the model card; repeatable",
    )


def _read_metrics(items: list[str]) -> dict[str, Any]:
    import json

    metrics = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--metrics takes NAME=PATH, not {item!r}")
        try:
            metrics[name] = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--metrics {name}: cannot read {path}: {exc}") from exc
    return metrics


def _command_line() -> str:
    """This invocation as a shell command, for the spec of the model it writes."""
    import shlex

    return "skinscan " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _run_export(args: argparse.Namespace) -> int:
    _require("torch")
    _require("onnx")
    from skinscan.training.export import export_checkpoint

    spec = export_checkpoint(
        args.checkpoint,
        args.out,
        version=args.version,
        ood_quantile=args.ood_quantile,
        ood_margin=args.ood_margin,
        metrics=_read_metrics(args.metrics),
        command=_command_line(),
    )
    print(f"exported {spec.id} (threshold {spec.threshold:.3f}, temperature {spec.temperature:.3f}) to {args.out}")
    return 0


# --- refit ------------------------------------------------------------------------------------------


def _add_refit(sub: Any) -> None:
    p = sub.add_parser(
        "refit",
        help="refit calibration, threshold and input checks of a checkpoint on its validation images (needs [train])",
        description="Refit a checkpoint's validation-only extras on the original images of its own split "
        "(for a model trained from a compressed pack on another machine).",
    )
    p.add_argument("checkpoint", help="a best.pt written by skinscan train")
    p.add_argument("--out", required=True, help="the refitted checkpoint to write")
    p.add_argument(
        "--feature-images", type=int, default=0, help="training images for the input-check Gaussians (0 = all)"
    )
    p.set_defaults(func=_run_refit)


def _run_refit(args: argparse.Namespace) -> int:
    _require("torch")
    from skinscan.training.train import refit

    refit(args.checkpoint, args.out, args.feature_images)
    return 0


# --- quantize ---------------------------------------------------------------------------------------


def _add_quantize(sub: Any) -> None:
    p = sub.add_parser(
        "quantize",
        help="make an 8-bit copy of an exported model, refitted on its validation images (needs [train])",
        description="Quantise an exported model to 8 bits (its network about twice as fast on CPUs with VNNI) and "
        "refit its calibration and thresholds on the validation split of the checkpoint it came from.",
    )
    p.add_argument("model", help="the exported float model (model.onnx or its folder)")
    p.add_argument("--checkpoint", required=True, help="the best.pt it was exported from")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--calibration-images", type=int, default=256, help="training images that set activation ranges")
    _add_metrics_option(p)
    p.set_defaults(func=_run_quantize)


def _run_quantize(args: argparse.Namespace) -> int:
    _require("torch")
    _require("onnx")
    from skinscan.training.quantize import quantize_model

    spec = quantize_model(
        args.model,
        args.checkpoint,
        args.out,
        calibration_images=args.calibration_images,
        metrics=_read_metrics(args.metrics),
        command=_command_line(),
    )
    auc = spec.training_data["quantisation"]["val_auc"]
    print(f"quantised {spec.id} (validation AUC {auc:.4f}, threshold {spec.threshold:.3f}) to {args.out}")
    return 0


# --- import-keras -----------------------------------------------------------------------------------


def _add_import_keras(sub: Any) -> None:
    p = sub.add_parser("import-keras", help="import the seed's Keras .h5 weights as an exported model")
    p.add_argument("h5", metavar="FILE.h5", help="Keras HDF5 weights of the seed network")
    p.add_argument("--out", default="models/seed-keras", help="output folder (default: models/seed-keras)")
    p.add_argument("--threshold", type=probability, default=0.5, help="operating threshold (the seed used 0.5)")
    p.set_defaults(func=_run_import_keras)


def _run_import_keras(args: argparse.Namespace) -> int:
    _require("torch")
    _require("h5py")
    from skinscan.training.keras_import import import_keras

    spec = import_keras(args.h5, args.out, threshold=args.threshold, command=_command_line())
    print(f"imported {args.h5} as {spec.id} into {args.out}")
    return 0


# --- predict ----------------------------------------------------------------------------------------


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="judge images or folders of images")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", help="model.onnx or its folder (default: $SKINSCAN_MODEL, else the bundled model)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--heatmap", metavar="DIR", help="write a heatmap overlay PNG per image into DIR, mirroring the input folders"
    )
    p.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
    p.add_argument("--threshold", type=probability, help="override the model's operating threshold (0 to 1)")
    p.add_argument(
        "--max-mb", type=positive_number, help="refuse image files larger than this many MB (default: the decoder's)"
    )
    p.add_argument("--no-checks", action="store_true", help="judge even images that fail the input checks")
    _add_site_option(p)
    p.set_defaults(func=_run_predict)


def _add_site_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--site", default=os.environ.get("SKINSCAN_SITE") or None, metavar="SITE_JSON",
        help="a site profile from `skinscan calibrate-site` (default: $SKINSCAN_SITE): the clinic's calibration "
        "and threshold",
    )  # fmt: skip


# --- calibrate-site ---------------------------------------------------------------------------------


def _add_calibrate_site(sub: Any) -> None:
    p = sub.add_parser(
        "calibrate-site", help="fit a clinic's own calibration and threshold on its labelled photos",
        description="Fit a site profile on a clinic's labelled images and report what to expect, measured on "
        "held-out folds of those images.",
    )  # fmt: skip
    p.add_argument("data", help="the clinic's labelled images: a dataset folder or CSV (any layout skinscan reads)")
    p.add_argument("--out", required=True, help="the site profile to write (site.json); report.html goes beside it")
    p.add_argument("--sensitivity", type=probability, default=0.90, help="the sensitivity to aim for (default 0.90)")
    p.add_argument("--model", help="model.onnx or its folder (default: the bundled model)")
    p.add_argument("--split", help="only this split of the data")
    p.add_argument("--name", help="the profile's name (default: the data folder's name)")
    p.add_argument("--adapt", choices=("auto", "always", "never"), default="auto",
                   help="fit a new head on the model's features: auto (with enough images, when it beats "
                   "recalibration on held-out folds), always, or never")  # fmt: skip
    p.add_argument("--refit-checks", action="store_true",
                   help="widen the input checks' limit so that 99%% of the site's images pass")  # fmt: skip
    p.add_argument("--folds", type=int, default=5, help="cross-fitting folds (default 5)")
    p.set_defaults(func=_run_calibrate_site)


def _run_calibrate_site(args: argparse.Namespace) -> int:
    _require("sklearn")
    _require("matplotlib")
    from skinscan.evaluation.site import calibrate_site

    if args.folds < 2:
        raise ConfigError(f"--folds must be 2 or more, not {args.folds}")
    summary = calibrate_site(
        args.data, args.out, model=args.model, sensitivity=args.sensitivity, split=args.split, name=args.name,
        adapt=args.adapt, refit_checks=args.refit_checks, folds=args.folds,
    )  # fmt: skip
    active = summary["profile"]["active"]
    for key in ("before", "recalibrated", "adapted"):
        m = summary.get(key)
        if m is None:
            continue
        tag = " (active)" if key == active else ""
        sens, spec = m["sensitivity"], m["specificity"]
        print(f"{key + tag:<22} sensitivity {sens:.3f} {_ci(m['sensitivity_ci'])}  specificity {spec:.3f} "
              f"{_ci(m['specificity_ci'])}  AUC {_opt(m['auc'])}  ECE {_opt(m['ece'])}")  # fmt: skip
    for note in summary["notes"]:
        print(f"note: {note}")
    out = Path(args.out)
    print(f"wrote {out} and {out.with_name('report.html')} (held-out folds: {summary['folds']})")
    return 0


# --- drift-reference --------------------------------------------------------------------------------


def _add_drift_reference(sub: Any) -> None:
    p = sub.add_parser(
        "drift-reference", help="record a model's probabilities and input-check distances on reference images",
        description="Run a model over reference images (its validation images, say) and write what its "
        "probabilities and input-check distances look like into its model.json: the server's drift monitor "
        "compares recent images with it (/health, /metrics).",
    )  # fmt: skip
    p.add_argument("data", nargs="+", help="dataset folders or CSVs (any layout skinscan reads)")
    p.add_argument("--split", help="only this split of each dataset (e.g. val)")
    p.add_argument("--model", help="model.onnx or its folder (default: the bundled model); its model.json is updated")
    p.set_defaults(func=_run_drift_reference)


def _run_drift_reference(args: argparse.Namespace) -> int:
    _require("tqdm")  # the data loaders' progress bars
    from skinscan.evaluation.evaluate import load_split
    from skinscan.evaluation.reference import reference_of, write_reference
    from skinscan.runtime.engine import Engine

    records = [r for data in args.data for r in load_split(data, args.split)]
    engine = Engine(args.model)
    beside = engine.path.with_name("model.json")
    if not beside.is_file():
        raise ConfigError(f"{engine.path} has no model.json beside it to write the reference into")
    names = ", ".join(Path(d).name for d in args.data)
    reference = reference_of(engine, records, source=names + (f" ({args.split})" if args.split else ""))
    write_reference(beside, reference)
    for name, measure in reference.measures.items():
        print(f"{name:<14} median {measure.deciles[4]:.4f}  90th percentile {measure.deciles[8]:.4f}  "
              f"99th {measure.p99:.4f}")  # fmt: skip
    print(f"wrote the reference of {reference.images} images into {beside}")
    return 0


def _ci(ci: Sequence[float] | None) -> str:
    return f"({ci[0]:.3f}–{ci[1]:.3f})" if ci else "(no interval)"


def _opt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _run_predict(args: argparse.Namespace) -> int:
    from skinscan.runtime.predict import run_predict

    return run_predict(args)


# --- models -----------------------------------------------------------------------------------------


def _add_models(sub: Any) -> None:
    p = sub.add_parser(
        "models", help="installed models: list, pull a newer one, choose which is used",
        description="The models installed in the local store ($SKINSCAN_HOME, else $XDG_DATA_HOME/skinscan, else "
        "~/.local/share/skinscan) and the bundled one. The active one is what predict, serve, evaluate and gui use "
        "unless --model or SKINSCAN_MODEL says otherwise.",
    )  # fmt: skip
    p.set_defaults(func=_run_models_list)
    verbs = p.add_subparsers(metavar="ACTION")
    verbs.add_parser("list", help="the installed models, and which is active (the default)").set_defaults(
        func=_run_models_list
    )
    pull = verbs.add_parser(
        "pull", help="install a model from a folder, a URL of its files or a skinscan server, and use it",
        description="Fetch model.json + model.onnx, check each file's sha256 against what the source publishes (a "
        "server's /model/files, or a SHA256SUMS file beside the files) and against --sha256, check the model (it "
        "loads and runs once on a test image), then install it beside the models installed before and make it "
        "active. A download whose source publishes no sha256 is refused unless --sha256 gives each file's.",
    )  # fmt: skip
    pull.add_argument("source", metavar="URL_OR_PATH",
                      help="a model folder, its model.json or model.onnx, an http(s) URL of them, or a skinscan "
                      "server's base URL (its API key from $SKINSCAN_API_KEY)")  # fmt: skip
    pull.add_argument("--sha256", action="append", default=[], metavar="HEX",
                      help="the sha256 a file must have, as its publisher gives it (once per file)")  # fmt: skip
    pull.add_argument("--no-use", action="store_true", help="install it, but keep the active model as it is")
    pull.add_argument("--max-mb", type=positive_number, default=512, help="refuse a model.onnx larger than this")
    pull.add_argument("--timeout", type=positive_number, default=30,
                      help="seconds to wait for the source to answer or to send more (default 30)")  # fmt: skip
    pull.set_defaults(func=_run_models_pull)
    use = verbs.add_parser("use", help="make an installed version (or `bundled`) the active model")
    use.add_argument("version", metavar="VERSION", help="an installed version (see `skinscan models list`) or bundled")
    use.set_defaults(func=_run_models_use)
    verbs.add_parser(
        "architectures", help="the trainable network architectures (needs the [train] extra)"
    ).set_defaults(func=_run_models_architectures)


def _run_models_list(args: argparse.Namespace) -> int:
    from skinscan.runtime.engine import MODEL_ENV, bundled_model_path
    from skinscan.runtime.store import BUNDLED, ModelStore, read_spec

    store = ModelStore()
    active = store.active_version()
    rows = [(m.version, m.id, f"from {m.source}, {m.installed}" if m.source else str(m.path))
            for m in store.installed()]  # fmt: skip
    try:
        spec = read_spec(bundled_model_path())
        rows.append((BUNDLED, f"{spec.id} {spec.version}", "ships with skinscan"))
    except SkinscanError as exc:
        rows.append((BUNDLED, "(missing)", str(exc)))
    width = max(len(r[0]) for r in rows)
    for version, model_id, where in rows:
        print(f"{'*' if version == active else ' '} {version:<{width}}  {model_id}  {where}")
    if active != BUNDLED and active not in {r[0] for r in rows}:
        print(f"the active model {active} is missing: `skinscan models use VERSION` chooses another", file=sys.stderr)
        return EXIT_ERROR
    print(f"(* active; store: {store.models})")
    if os.environ.get(MODEL_ENV):
        print(f"note: {MODEL_ENV}={os.environ[MODEL_ENV]} is set, and is used instead of the active model")
    return 0


def _run_models_pull(args: argparse.Namespace) -> int:
    from skinscan.runtime.fetch import is_sha256
    from skinscan.runtime.updates import pull_model

    bad = [h for h in args.sha256 if not is_sha256(h.strip())]
    if bad:
        raise ConfigError(f"--sha256 takes 64 hexadecimal digits, not {bad[0]!r}")
    pulled = pull_model(
        args.source, sha256=args.sha256, api_key=os.environ.get("SKINSCAN_API_KEY", "").strip() or None,
        timeout_s=args.timeout, max_bytes=int(args.max_mb * 1024 * 1024), activate=not args.no_use,
    )  # fmt: skip
    model = pulled.model
    checked = ", ".join(f"{name} ({how} sha256)" for name, how in pulled.verified_by.items())
    what = "already installed" if pulled.already else f"installed in {model.path}"
    print(f"{model.id} {model.version}: {what}" + (f"; verified {checked}" if checked else ""))
    print(f"active: {model.version}" if model.active else f"not active: `skinscan models use {model.version}`")
    return 0


def _run_models_use(args: argparse.Namespace) -> int:
    from skinscan.runtime.store import ModelStore

    ModelStore().use(args.version)
    print(f"active: {args.version.strip()}")
    return 0


def _run_models_architectures(args: argparse.Namespace) -> int:
    _require("torch")
    from skinscan.training.models import list_models

    print("\n".join(list_models()))
    return 0


# --- serve ------------------------------------------------------------------------------------------


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="start the prediction service and web client (needs the [serve] extra)",
        description="Serve the REST API and the web client. Settings also come from SKINSCAN_* "
        "variables (SKINSCAN_API_KEY, SKINSCAN_MAX_UPLOAD_MB, SKINSCAN_CORS_ORIGINS, ...).",
    )
    p.add_argument("--host", help="address to listen on (default: $SKINSCAN_HOST, else 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default: $SKINSCAN_PORT, else 9889)")
    p.add_argument("--model", help="model.onnx or its folder (default: $SKINSCAN_MODEL, else the bundled model)")
    p.add_argument("--workers", type=int, help="server processes, each with its own model (default: 1)")
    p.add_argument("--site", metavar="SITE_JSON", help="a site profile from calibrate-site (default: $SKINSCAN_SITE)")
    p.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    _require("fastapi")
    _require("uvicorn")
    _require("python_multipart")
    _require("pydantic_settings")
    _require("prometheus_client")
    from skinscan.api.server import serve
    from skinscan.api.settings import Settings

    given = {k: getattr(args, k) for k in ("host", "port", "model", "workers", "site") if getattr(args, k) is not None}
    return serve(Settings(**given))


# --- gui --------------------------------------------------------------------------------------------


def _add_gui(sub: Any) -> None:
    p = sub.add_parser("gui", help="open the desktop app (needs the [gui] extra)", description="Open the desktop app.")
    p.add_argument(
        "--model", help="a local model.onnx or its folder (default: $SKINSCAN_MODEL, else the bundled model)"
    )
    p.add_argument("--host", help="use the skinscan server on this host instead of a local model")
    p.add_argument("--port", type=int, help="the skinscan server's port (with --host; default: the last one used)")
    p.add_argument(
        "--site", metavar="SITE_JSON",
        help="a site profile from `skinscan calibrate-site` for the local model (default: $SKINSCAN_SITE)",
    )  # fmt: skip
    p.add_argument(
        "--updates", metavar="SOURCE",
        help="where to look for a newer model: a folder, URL or skinscan server (default: $SKINSCAN_UPDATES; the "
        "connected server is always asked)",
    )  # fmt: skip
    p.set_defaults(func=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    _require("qtpy")
    from skinscan.gui.app import run_gui

    return run_gui(model=args.model, host=args.host, port=args.port, site=args.site, updates=args.updates)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="skinscan", description=f"Skin-lesion screening. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"skinscan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS: list[Callable[[Any], None]] = [
    _add_predict, _add_serve, _add_evaluate, _add_calibrate_site, _add_drift_reference, _add_train, _add_export,
    _add_refit, _add_quantize, _add_import_keras, _add_models, _add_gui,
]  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except ConfigError as exc:  # a setting the user gave: a usage error, like argparse's own
        print(f"skinscan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SkinscanError as exc:
        print(f"skinscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # before OSError: the reader of our output (`| head`) has all it wants
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # a file the command needs (an output folder, a data file) cannot be used
        print(f"skinscan: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("skinscan: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    # What is still buffered for the closed pipe would fail again when the interpreter flushes stdout at exit,
    # as an "Exception ignored" message; pointed at devnull, it goes nowhere.
    try:
        stdout = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a caller's capture): nothing to flush at exit
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
