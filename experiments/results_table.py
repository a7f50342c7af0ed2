"""Print the Markdown results tables of models/README.md from `skinscan evaluate` outputs.

Usage: python experiments/results_table.py reports/   (each subfolder holds a metrics.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KEYS = ("auc", "sensitivity", "specificity", "accuracy", "balanced_accuracy", "f1", "ece")


def cell(metrics: dict, key: str) -> str:
    value, ci = metrics.get(key), metrics.get(f"{key}_ci")
    if value is None:
        return "n/a"
    return f"{value:.3f} ({ci[0]:.3f}–{ci[1]:.3f})" if ci else f"{value:.3f}"


def main(folder: str) -> None:
    rows = []
    for path in sorted(Path(folder).glob("*/metrics.json")):
        m = json.loads(path.read_text())
        rows.append((path.parent.name, m))
    print("| run | n (malignant) | threshold | " + " | ".join(KEYS) + " | refused by input checks |")
    print("|---|---|---|" + "---|" * len(KEYS) + "---|")
    for name, m in rows:
        cells = " | ".join(cell(m, k) for k in KEYS)
        refused = m.get("rejected_fraction")
        print(f"| {name} | {m['n']} ({m['n_malignant']}) | {m['threshold']:.3f} | {cells} | "
              f"{'' if refused is None else f'{refused:.1%}'} |")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reports")
