"""How well the engine's input checks separate skin-lesion photos from everything else.

Non-lesion images: the photos that ship with scikit-image (`skimage.data`, the locally bundled ones) and
matplotlib, scipy's sample images when they can be had offline, and synthetic noise, blank and gradient
images. Lesions: the real dermoscopy test sets in ../shared/data.
Targets (engine issue): reject >= 95 % of non-lesion images and <= 2 % of real dermoscopy.
Usage: python benchmarks/bench_input_checks.py [--model PATH] [--int8 PATH] [--quick]"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from common import ROOT, SHARED, bench_parser, write_results


def non_lesion_images() -> Iterator[tuple[str, Image.Image]]:
    import matplotlib
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in {".png", ".jpg", ".gif"}:
            yield f"skimage:{path.name}", Image.open(path).convert("RGB")
    sample = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data"
    for name in ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png"):
        if (sample / name).is_file():
            yield f"matplotlib:{name}", Image.open(sample / name).convert("RGB")
    try:  # scipy's images are downloaded on first use; offline machines skip them
        import scipy.datasets

        yield "scipy:face", Image.fromarray(scipy.datasets.face())
        yield "scipy:ascent", Image.fromarray(scipy.datasets.ascent().astype(np.uint8)).convert("RGB")
    except Exception as exc:
        print(f"scipy sample images unavailable ({type(exc).__name__}); skipped")
    rng = np.random.default_rng(0)
    for i in range(5):
        yield f"noise:uniform{i}", Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))
        gauss = np.clip(rng.normal(128, 40, (300, 300, 3)), 0, 255).astype(np.uint8)
        yield f"noise:gaussian{i}", Image.fromarray(gauss)
    for name, colour in [("white", (255, 255, 255)), ("black", (0, 0, 0)), ("grey", (128, 128, 128)),
                         ("skin", (224, 172, 150)), ("red", (200, 30, 30)), ("blue", (30, 60, 200))]:  # fmt: skip
        yield f"blank:{name}", Image.new("RGB", (300, 300), colour)
    ramp = np.linspace(0, 255, 300, dtype=np.float32)
    yield "gradient:horizontal", Image.fromarray(np.stack([np.tile(ramp, (300, 1))] * 3, -1).astype(np.uint8))
    yield (
        "gradient:colour",
        Image.fromarray(
            np.stack([np.tile(ramp, (300, 1)), np.tile(ramp[:, None], (1, 300)), np.full((300, 300), 90.0)], -1).astype(
                np.uint8
            )
        ),
    )


def lesion_paths(limit: int | None = None) -> dict[str, list[Path]]:
    sets = {}
    if (SHARED / "ham10000").is_dir():
        from skinscan.training.records import load_records

        sets["ISIC 2018 test"] = [r.path for r in load_records(SHARED / "ham10000", "test")][:limit]
        sets["Kaggle test"] = [r.path for r in load_records(SHARED / "isic-mvb", "test")][:limit]
    return sets


def measure(model: str, quick: bool) -> dict[str, Any]:
    """One model's input checks on every non-lesion image and on the real test sets."""
    from skinscan.runtime.engine import Engine

    engine = Engine(model)
    non_lesion: list[dict[str, Any]] = []
    for name, image in non_lesion_images():
        p = engine.predict(image)
        non_lesion.append({"image": name, "rejected": p.status == "rejected", "reason": p.reason,
                           "ood_distance": p.ood_distance})  # fmt: skip
    lesions = {}
    for name, paths in lesion_paths(64 if quick else None).items():
        rejected = 0
        for start in range(0, len(paths), 32):
            results = engine.predict_batch([str(p) for p in paths[start : start + 32]])
            rejected += sum(1 for r in results if getattr(r, "status", "") == "rejected")
        lesions[name] = {"n": len(paths), "rejected": rejected, "rate": round(rejected / len(paths), 4)}
    return {
        "model": engine.spec.id,
        "ood_threshold": engine.spec.ood_threshold,
        "non_lesion_rejection_rate": round(sum(r["rejected"] for r in non_lesion) / len(non_lesion), 4),
        "non_lesion": non_lesion,
        "lesions": lesions,
        "accepted_non_lesion": [r["image"] for r in non_lesion if not r["rejected"]],
    }


def table(result: dict[str, Any]) -> list[str]:
    missed = result["accepted_non_lesion"]
    return [
        "| images | n | rejected | target |",
        "|---|---|---|---|",
        f"| non-lesion (skimage, matplotlib, noise, blank, gradients) | {len(result['non_lesion'])} | "
        f"{result['non_lesion_rejection_rate']:.1%} | ≥ 95 % |",
        *[f"| {k} (real dermoscopy) | {v['n']} | {v['rate']:.1%} | ≤ 2 % |" for k, v in result["lesions"].items()],
        "",
        f"Non-lesion images accepted: {', '.join(missed) if missed else 'none'}",
    ]


def main() -> None:
    parser = bench_parser(__doc__, "a seconds-long smoke run (64 lesions per test set)")
    parser.add_argument("--int8", default=str(ROOT / "models" / "int8"), help="the 8-bit variant ('' leaves it out)")
    args = parser.parse_args()
    result = measure(args.model, args.quick)
    lines = [
        f"# Input checks ({result['model']}; input-check score threshold {result['ood_threshold']:.3g})"
        + (" (quick run: 64 lesions per set)" if args.quick else ""),
        "",
        *table(result),
    ]
    if args.int8 and Path(args.int8).exists():
        # its own threshold, refitted on its own validation scores by `skinscan quantize`
        result["int8"] = measure(args.int8, args.quick)
        lines += ["", f"8-bit variant ({result['int8']['model']}; threshold {result['int8']['ood_threshold']:.3g}):",
                  "", *table(result["int8"])]  # fmt: skip
    write_results("input_checks", {"quick": args.quick, **result}, lines)


if __name__ == "__main__":
    main()
