#!/usr/bin/env bash
# One GPU lease: smoke-test the CUDA path, train several configurations in parallel from the pack,
# keep the one with the best validation AUC (validation only; the test sets never travel).
#   bash experiments/gpu/run.sh PACK OUTDIR   (with .pack carried; python3 there has torch)
set -uo pipefail
pack=${1:-.pack}; out=${2:-${OUT:-runs/gpu}}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 SKINSCAN_IMAGENET_WEIGHTS=$pack/imagenet-fp16.pth
mkdir -p "$out" /tmp/gpu
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
common=(--set freeze_blocks=0 --set schedule=cosine --set warmup_epochs=2 --set patience=1000
        --set batch_size=64 --set time_limit=5 --set threads=3)
start=$(date +%s)
python3 experiments/gpu/train_pack.py "$pack" "${common[@]}" --set epochs=1 --set max_steps=5 \
    --set ema=0.99 --set feature_images=64 --out /tmp/gpu/smoke > /tmp/gpu/smoke.log 2>&1
rc=$?
tail -5 /tmp/gpu/smoke.log | tr '\r' '\n' | tail -5
if [ $rc -ne 0 ]; then cp /tmp/gpu/smoke.log "$out/"; echo "smoke failed ($rc)"; exit 3; fi
echo "smoke ok after $(( $(date +%s) - start )) s"
declare -A runs=(
  [a]="--set lr=5e-4 --set weight_decay=0.02 --set ema=0.998 --set epochs=40"
  [b]="--set lr=1e-3 --set weight_decay=0.02 --set ema=0.998 --set epochs=40"
  [c]="--set lr=3e-4 --set weight_decay=0.05 --set ema=0.998 --set epochs=50"
  [d]="--set lr=5e-4 --set weight_decay=0.02 --set ema=0.998 --set epochs=40 --set balance=sampler --set dropout=0.3"
)
for name in "${!runs[@]}"; do
  # shellcheck disable=SC2086
  python3 experiments/gpu/train_pack.py "$pack" "${common[@]}" ${runs[$name]} --out /tmp/gpu/$name \
      > /tmp/gpu/$name.log 2>&1 &
done
wait
echo "training done after $(( $(date +%s) - start )) s"
python3 - "$out" <<'PY'
import json, shutil, sys, torch
from pathlib import Path
out = Path(sys.argv[1]); results = {}
for run in sorted(Path("/tmp/gpu").iterdir()):
    if not run.is_dir() or run.name == "smoke":
        continue
    best = run / "best.pt"
    log = (Path("/tmp/gpu") / f"{run.name}.log").read_text(errors="replace").replace("\r", "\n")
    lines = [l for l in log.splitlines() if l.startswith(("epoch ", "best", "time", "Traceback", "  File", "RuntimeError", "Error"))]
    entry = {"log": lines[-60:]}
    if best.exists():
        ckpt = torch.load(best, map_location="cpu", weights_only=False)
        entry.update(val_auc=ckpt["val_auc"], best_epoch=ckpt["best_epoch"], config=ckpt["config"], history=ckpt["history"])
    results[run.name] = entry
    print(run.name, entry.get("val_auc"), (entry.get("best_epoch") or {}).get("epoch"), lines[-1:] )
(out / "results.json").write_text(json.dumps(results, indent=1, default=str))
done = {k: v for k, v in results.items() if "val_auc" in v}
if done:
    win = max(done, key=lambda k: done[k]["val_auc"])
    print("winner", win)
    shutil.copy(Path("/tmp/gpu") / win / "best.pt", out / "best.pt")
    shutil.copy(Path("/tmp/gpu") / win / "curves.png", out / "curves.png")
PY
echo "all done after $(( $(date +%s) - start )) s"
