#!/usr/bin/env bash
# Every number in models/README.md, from scratch, on a 2-core CPU (hours; a CUDA GPU makes it minutes).
# Run from the repository root after `make install`. Data: ../shared/data (see its README).
set -euo pipefail
D=../shared/data
S=.venv/bin/skinscan

# 1. The bundled model: HAM10000 train + Kaggle train, minus any photograph that is (a copy of) a test image.
#    It was trained on a GPU lease from a WebP pack of the same preprocessed images (experiments/gpu/), then
#    refitted here on the original images; on a machine that sees the data, train directly:
$S train --config experiments/bundled.toml --out runs/bundled
$S refit runs/bundled/best.pt --out runs/bundled/refit.pt   # a no-op in effect when trained from the originals
#    That was model 1.1.0. Model 1.2.0 fine-tunes it here on the CPU (4 epochs, about 30 minutes) with batches
#    balanced within each source and an auxiliary diagnosis loss; the best epoch by the mean AUC within each
#    validation source. Refit applies the current threshold rule to a checkpoint trained before it.
$S train --config experiments/finetune.toml --init runs/bundled/refit.pt --out runs/ft
$S refit runs/ft/best.pt --out runs/ft/refit.pt
$S export runs/ft/refit.pt --out runs/ft/export
$S evaluate $D/ham10000 --split test --model runs/ft/export --out reports/bundled-isic2018
$S evaluate $D/isic-mvb --split test --model runs/ft/export --out reports/bundled-kaggle

# 2. The seed's network trained the same way: the baseline (16 epochs, about 75 minutes here).
$S train --config experiments/seed.toml --out runs/seed-long
$S evaluate $D/ham10000 --split test --model runs/seed-long/best.pt --out reports/seed-isic2018
$S evaluate $D/isic-mvb --split test --model runs/seed-long/best.pt --out reports/seed-kaggle

# 3. Cross-source: train on one collection, test on the other's test images that are not copies of training ones.
$S train $D/ham10000 --holdout $D/isic-mvb --epochs 3 --out runs/ham-only
$S evaluate $D/isic-mvb --split test --model runs/ham-only/best.pt --exclude-same-as $D/ham10000 \
  --exclude-split train --out reports/ham-only-on-kaggle
# (the Kaggle set is ISIC-archive images, 1,588 of them HAM10000 photographs: all HAM10000 copies are left out)
$S train $D/isic-mvb --holdout $D/ham10000 --holdout-split "" --epochs 5 --out runs/kaggle-only
$S evaluate $D/ham10000 --split test --model runs/kaggle-only/best.pt --out reports/kaggle-only-on-isic2018

# 4. Ship: export with the test metrics in the model card.
$S export runs/ft/refit.pt --out models --version 1.2.0 \
  --metrics isic2018_test=reports/bundled-isic2018/metrics.json --metrics kaggle_test=reports/bundled-kaggle/metrics.json

# 5. The 8-bit variant (models/int8): quantised from the float model, refitted on the same validation images,
#    then evaluated on the same test sets and re-made with its own metrics attached (the same graph, bit for bit).
$S quantize models --checkpoint runs/ft/refit.pt --out models/int8
$S evaluate $D/ham10000 --split test --model models/int8 --out reports/int8-isic2018
$S evaluate $D/isic-mvb --split test --model models/int8 --out reports/int8-kaggle
$S quantize models --checkpoint runs/ft/refit.pt --out models/int8 \
  --metrics isic2018_test=reports/int8-isic2018/metrics.json --metrics kaggle_test=reports/int8-kaggle/metrics.json
