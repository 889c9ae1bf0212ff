#!/usr/bin/env bash
# Train the shipped default model (models/heritage-default) on ../shared/data, on this
# machine's CPU. Resumable: re-run the same command after an interruption (it continues
# from the last checkpoint in the run folder). Run from the repository root.
# Learning rate 1e-3 instead of the paper's 1e-4: the paper fine-tunes ImageNet weights,
# we train from scratch (no ImageNet MobileNetV3 weights offline); see docs/training.md.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
RUN=${RUN_DIR:-../runs/heritage-default-run}
OUT=${OUT_DIR:-../runs/heritage-default}
exec .venv/bin/heritage train \
  $D/brickwork-cracks $D/sdnet2018-walls $D/ozgenel-concrete-crack $D/saltspot-salt-damage \
  --extra-positives $D/dais-masonry/images \
  -o "$OUT" --run-dir "$RUN" \
  --arch mobilenet_v3_small --stage2-arch resnet18 \
  --epochs 15 --lr 1e-3 --batch-size 32 --patience 4 \
  --stage2-epochs 2 --stage2-batch-size 16 --stage2-lr 5e-5 \
  --threshold auto --cache-images --workers 1 --threads 2 \
  --model-id heritage-default --model-version 0.1.0 \
  --resume "$@"
