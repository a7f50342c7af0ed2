"""A greedy weight soup (Wortsman et al. 2022) of runs that share one start and recipe: ingredients sorted by
validation AUC, each kept if averaging it in does not lower the soup's validation AUC. Validation only: the
checkpoint's own validation split, read from the original images.

    python experiments/gpu/soup.py BASE.pt INGREDIENT.pt... --out runs/soup/best.pt
(BASE: a full best.pt whose split, config and extras the soup inherits, and an ingredient itself;
INGREDIENT: a state dict or a best.pt). Then `skinscan refit` and `skinscan export` as for any checkpoint.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
from sklearn.metrics import roc_auc_score

from skinscan.training.checkpoint import load_checkpoint
from skinscan.training.dataset import checkpoint_split, prepare
from skinscan.training.scoring import predict_logits


def state_of(path: str) -> dict[str, torch.Tensor]:
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    return loaded["model"] if isinstance(loaded, dict) and "model" in loaded else loaded


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {
        k: (sum(s[k].double() for s in states) / len(states)).to(states[0][k].dtype)
        if states[0][k].is_floating_point()
        else states[0][k]
        for k in states[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("ingredients", nargs="*")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model, ckpt = load_checkpoint(args.base)
    spec = model.info.preprocess
    _, val_records = checkpoint_split(ckpt)
    val = prepare(val_records, spec, False, "validation images")

    def auc(state: dict[str, torch.Tensor]) -> float:
        model.load_state_dict(state)
        logits, _, _ = predict_logits(model, val.pixels, spec, torch.device("cpu"))
        return float(roc_auc_score(val.labels, logits))

    names = [args.base, *args.ingredients]
    states = {name: state_of(name) for name in names}
    scores = {name: auc(states[name]) for name in names}
    for name in names:
        print(f"{scores[name]:.4f}  {name}", flush=True)
    order = sorted(names, key=lambda n: -scores[n])
    soup, best = [order[0]], scores[order[0]]
    log: list[dict[str, Any]] = []
    for name in order[1:]:
        trial = auc(average([states[n] for n in [*soup, name]]))
        kept = trial >= best
        log.append({"ingredient": name, "soup_auc_with_it": trial, "kept": kept})
        print(f"{'kept' if kept else 'left'} {name}: soup {trial:.4f} (best {best:.4f})", flush=True)
        if kept:
            soup, best = [*soup, name], trial
    uniform = auc(average(list(states.values())))
    print(f"uniform soup of all {len(names)}: {uniform:.4f}; greedy soup of {len(soup)}: {best:.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    soup_info = {"ingredients": soup, "val_auc_original_images": best, "single_val_auc": scores,
                 "greedy_log": log, "uniform_val_auc": uniform}  # fmt: skip
    torch.save({**ckpt.to_dict(), "model": average([states[n] for n in soup]), "soup": soup_info}, out)
    (out.parent / "soup.json").write_text(json.dumps(soup_info, indent=2))


if __name__ == "__main__":
    main()
