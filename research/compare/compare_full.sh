#!/usr/bin/env bash
# The full backbone comparison (the paper's Table 1 on our data). Hours on a CPU;
# resumable: re-run the same command and finished models are skipped, an unfinished one
# continues from its checkpoint (Ctrl-C/SIGTERM write one after the current batch).
# research/compare/compare_full.sh --table-only: the table of the models finished so far.
# Output: runs/compare-full/ (weights, checkpoints, split), docs/comparison.{md,csv}, and
# research/comparison-rows/ (each finished row's result.json and per-image decisions; commit
# it: a machine that lost runs/ takes those rows back instead of training them again).
# --precision bf16 since 2026-11-25 (after research/compare/check_precision.sh): rows finished in
# float32 are reused, a row started in float32 finishes in float32, the table says which.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${HERITAGE_SHARED_DATA:-../shared/data}
OUT=${COMPARE_OUT:-runs/compare-full}
DOCS=${COMPARE_DOCS:-1}  # 0: leave docs/comparison.{md,csv} alone (research/compare/check_precision.sh)
# the committed figures of the finished rows; COMPARE_ROWS= (empty) for none, as for a
# run that must train its rows itself (check_precision.sh, train_shipped.sh need weights)
ROWS=${COMPARE_ROWS-research/comparison-rows}

.venv/bin/python -m research.compare \
  "$DATA/brickwork-cracks" "$DATA/sdnet2018-walls" "$DATA/ozgenel-concrete-crack" \
  "$DATA/saltspot-salt-damage" \
  --extra-positives "$DATA/dais-masonry/images" \
  -o "$OUT" \
  --archs alexnet,googlenet,vgg16,inception_v3,mobilenet_v3_small,two_stage \
  --epochs 15 --batch-size 32 --lr 1e-4 --scheduler cosine --patience 3 --pretrained none \
  --precision bf16 --device auto --resume ${ROWS:+--rows-dir "$ROWS"} "$@"

[ "$DOCS" = 1 ] || exit 0
cp "$OUT/comparison.csv" research/comparison.csv
# put the table between the markers of research/comparison.md
.venv/bin/python - "$OUT/comparison.md" research/comparison.md <<'PY'
import sys
table, doc = open(sys.argv[1], encoding="utf-8").read(), open(sys.argv[2], encoding="utf-8").read()
start, end = "<!-- full-table:start -->", "<!-- full-table:end -->"
head, rest = doc.split(start, 1)
_, tail = rest.split(end, 1)
open(sys.argv[2], "w", encoding="utf-8").write(f"{head}{start}\n{table}{end}{tail}")
PY
echo "Table written to research/comparison.md and research/comparison.csv"
