#!/usr/bin/env bash
# One GPU lease: the bundled recipe (experiments/bundled.toml) from four seeds, shortened to fit the lease,
# for a weight soup made back here (experiments/gpu/soup.py). Sends back each run's averaged weights only.
#   bash experiments/gpu/soup.sh PACK OUTDIR [EPOCHS] [MINUTES]
set -uo pipefail
pack=${1:-.pack}; out=${2:-${OUT:-runs/soup}}; epochs=${3:-24}; minutes=${4:-3}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 SKINSCAN_IMAGENET_WEIGHTS=$pack/imagenet-fp16.pth
mkdir -p "$out" /tmp/soup
start=$(date +%s)
for seed in 0 1 2 3; do
  python3 experiments/gpu/train_pack.py "$pack" --config experiments/bundled.toml --set seed=$seed \
      --set epochs=$epochs --set time_limit=$minutes --set threads=3 --set feature_images=256 \
      --out /tmp/soup/s$seed > /tmp/soup/s$seed.log 2>&1 &
done
wait
echo "training done after $(( $(date +%s) - start )) s"
python3 - "$out" <<'PY'
import json, sys, torch
from pathlib import Path
out = Path(sys.argv[1]); results = {}
for run in sorted(Path("/tmp/soup").glob("s*")):
    if not run.is_dir():
        continue
    log = (run.parent / f"{run.name}.log").read_text(errors="replace").replace("\r", "\n")
    lines = [l for l in log.splitlines() if l.startswith(("epoch ", "best", "time", "Traceback", "  File", "RuntimeError"))]
    entry = {"log": lines[-40:]}
    if (run / "best.pt").exists():
        ckpt = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
        entry.update(val_auc=ckpt["val_auc"], best_epoch=ckpt["best_epoch"], history=ckpt["history"])
        torch.save(ckpt["model"], out / f"{run.name}.pt")
    results[run.name] = entry
    print(run.name, entry.get("val_auc"), (entry.get("best_epoch") or {}).get("epoch"), lines[-1:])
(out / "results.json").write_text(json.dumps(results, indent=1, default=str))
PY
echo "all done after $(( $(date +%s) - start )) s"
