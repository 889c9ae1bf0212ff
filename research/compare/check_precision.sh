#!/usr/bin/env bash
# Does training in bfloat16 mixed precision change the result? One row of the full
# comparison (AlexNet unless CHECK_ARCH says otherwise), already trained in float32, is
# trained a second time with --precision bf16 into another folder (the same split, seed
# and budget), and the two are paired image by image on the test split (exact McNemar per
# dataset). Resumable like research/compare/compare_full.sh (Ctrl-C/SIGTERM, then the same command).
# Output: runs/compare-bf16-check/, research/evaluation/precision-check.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
FULL=${COMPARE_OUT:-runs/compare-full}
OUT=${CHECK_OUT:-runs/compare-bf16-check}
ARCH=${CHECK_ARCH:-alexnet}
REPORT=${CHECK_REPORT:-research/evaluation/precision-check.md}

if [ ! -f "$FULL/$ARCH/result.json" ]; then
  echo "The float32 $ARCH row is not finished in $FULL: train it first (research/compare/compare_full.sh)." >&2
  exit 1
fi
mkdir -p "$OUT"
for f in split.csv split_meta.json; do  # the full run's split, not a new one
  [ -f "$OUT/$f" ] || cp "$FULL/$f" "$OUT/$f"
done

# the full run's command and budget, for this one row, into $OUT, docs left alone
COMPARE_OUT="$OUT" COMPARE_DOCS=0 COMPARE_ROWS= bash research/compare/compare_full.sh \
  --archs "$ARCH" --no-efficientnet --precision bf16

if [ ! -f "$FULL/$ARCH/test.per_image.csv" ]; then  # rows from before the file existed
  research/compare/compare_full.sh --table-only
fi
{
  echo "# Float32 against bfloat16 training: $ARCH, paired on the test split"
  echo
  echo "\`research/compare/check_precision.sh\` (the float32 row of \`$FULL\` against the same network"
  echo "trained with \`--precision bf16\` in \`$OUT\`: same split, seed and budget)."
  echo
  .venv/bin/python research/compare/pair_models.py "$FULL/$ARCH" "$OUT/$ARCH" --names fp32,bf16
  echo
  .venv/bin/python - "$FULL/$ARCH/result.json" "$OUT/$ARCH/result.json" <<'PY'
import json, sys
rows = [json.load(open(p, encoding="utf-8")) for p in sys.argv[1:]]
for name, r in zip(("fp32", "bf16"), rows):
    print(f"- {name}: {r['epochs_run']} epochs (best {r.get('best_epoch')}), "
          f"{r['train_seconds'] / 3600:.2f} h of training, test accuracy "
          f"{100 * r['test']['accuracy']:.1f} %, F1 {100 * r['test']['f1']:.1f} %")
PY
} > "$REPORT"
cat "$REPORT"
