#!/usr/bin/env bash
# One GPU lease: smoke-test the CUDA path, train several configurations in parallel from the pack,
# keep the one with the best validation score, the mean AUC within each source (validation only; the test
# sets never travel).
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
# Session 3's recipe from the start: batches balanced within each source, the auxiliary diagnosis loss, the
# best epoch by the mean AUC within each validation source (see experiments/finetune.toml for why)
src=(--set balance=source --set monitor=val_auc_sources --set ema=0.998 --set epochs=40 --set dropout=0.3)
declare -A runs=(
  [a]="${src[*]} --set lr=5e-4 --set weight_decay=0.02 --set aux_weight=0.3"
  [b]="${src[*]} --set lr=5e-4 --set weight_decay=0.05 --set aux_weight=0.3"
  [c]="${src[*]} --set lr=5e-4 --set weight_decay=0.02 --set aux_weight=1.0"
  [d]="${src[*]} --set lr=1e-3 --set weight_decay=0.02 --set aux_weight=0.3"
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
        # chosen by what the runs' monitor chose epochs by: the within-source AUC where they logged it
        score = ckpt["best_epoch"].get("val_auc_sources", ckpt["val_auc"])
        entry.update(val_score=score, val_auc=ckpt["val_auc"], best_epoch=ckpt["best_epoch"], config=ckpt["config"],
                     history=ckpt["history"])
    results[run.name] = entry
    print(run.name, entry.get("val_score"), entry.get("val_auc"), (entry.get("best_epoch") or {}).get("epoch"), lines[-1:])
(out / "results.json").write_text(json.dumps(results, indent=1, default=str))
done = {k: v for k, v in results.items() if "val_score" in v}
if done:
    win = max(done, key=lambda k: done[k]["val_score"])
    print("winner", win)
    shutil.copy(Path("/tmp/gpu") / win / "best.pt", out / "best.pt")
    shutil.copy(Path("/tmp/gpu") / win / "curves.png", out / "curves.png")
PY
echo "all done after $(( $(date +%s) - start )) s"
