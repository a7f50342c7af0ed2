#!/usr/bin/env bash
# Every number in models/README.md, from scratch, on a 2-core CPU (a few hours). Run from the repository root
# after `make install`, in a git checkout (step 1 reads 1.2.0 from history). Data: ../shared/data (its README).
set -euo pipefail
D=../shared/data
S=.venv/bin/skinscan
ALL="$D/ham10000 $D/isic-mvb $D/isic2017 $D/isic2020"
TESTS="isic2018_test:ham10000 kaggle_test:isic-mvb isic2017_test:isic2017 isic2020_test:isic2020"

# 1. The starting point: model 1.2.0 (HAM10000 + Kaggle, trained on a GPU lease, then fine-tuned on the CPU; its
#    recipe is in git history: experiments/bundled.toml and finetune.toml at commit 3e16fca), rebuilt from its
#    export as a checkpoint, and its scores on the four test sets.
mkdir -p runs/v1.2.0
git show 3e16fca:models/model.onnx > runs/v1.2.0/model.onnx
git show 3e16fca:models/model.json > runs/v1.2.0/model.json
.venv/bin/python experiments/onnx_to_checkpoint.py runs/v1.2.0 --data $D/ham10000 --out runs/v1.2.0.pt
for t in $TESTS; do $S evaluate "$D/${t#*:}" --split test --model runs/v1.2.0 --out "reports/v1.2.0-${t%%:*}"; done

# 2. Leave-one-source-out, the cheap version that chose the recipe (about 12 minutes per recipe here).
.venv/bin/python experiments/loso.py --config experiments/loso-cheap.toml --name standard --record
.venv/bin/python experiments/loso.py --config experiments/loso-cheap.toml --name clinic --set augmentation='"clinic"' \
  --set crop='"trim_square"' --only ham10000 isic2017 isic2020 --record

# 3. Model 2.0: 1.2.0 fine-tuned on all four collections (every test split and its copies held out), 3 epochs.
$S train --config experiments/bundled-2.toml --out runs/v2
$S export runs/v2/best.pt --version 2.0.0 --out runs/v2/export
METRICS=""
for t in $TESTS; do
  $S evaluate "$D/${t#*:}" --split test --model runs/v2/export --out "reports/v2-${t%%:*}"
  METRICS="$METRICS --metrics ${t%%:*}=reports/v2-${t%%:*}/metrics.json"
done

# 4. Ship: export with the test metrics in the model card; then the 8-bit copy, refitted on the same
#    validation images, evaluated, and re-made with its own metrics attached (the same graph, bit for bit).
$S export runs/v2/best.pt --version 2.0.0 --out models $METRICS
$S quantize models --checkpoint runs/v2/best.pt --out models/int8
INT8=""
for t in $TESTS; do
  $S evaluate "$D/${t#*:}" --split test --model models/int8 --out "reports/int8-${t%%:*}"
  INT8="$INT8 --metrics ${t%%:*}=reports/int8-${t%%:*}/metrics.json"
done
$S quantize models --checkpoint runs/v2/best.pt --out models/int8 $INT8

# 5. The seed's network trained the same way, the baseline (16 epochs on HAM10000 + Kaggle, about 75 minutes).
$S train --config experiments/seed.toml --out runs/seed-long
for t in $TESTS; do $S evaluate "$D/${t#*:}" --split test --model runs/seed-long/best.pt --out "reports/seed-${t%%:*}"; done
