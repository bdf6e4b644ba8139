# tests/cli/lib/batch.sh: sourced by the batch tests (tests/cli/batch*.sh,
# tests/cli/slurm.sh), not a test itself. Sets Q (the qtool binary), B
# (scripts/qtool-batch) and D (the stories260K models' folder, or exits 77
# saying it is absent), exports QTOOL; defines fail, slow_qtool and the
# masks that compare two summaries with the seconds column aside.
Q=${QTOOL:-build/qtool}
case $Q in /*) ;; *) Q=$PWD/$Q ;; esac
B=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/qtool-batch
D=${QT_DATA:-../shared/data}/models
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
D=$(cd "$D" && pwd)
export QTOOL=$Q

fail() { echo "FAIL: $*"; exit 1; }

# slow_qtool FILE SECONDS: a qtool wrapper at FILE whose conversions start
# SECONDS late (a window to interrupt a batch in).
slow_qtool() {
  printf '#!/usr/bin/env bash\n[ "$1" = convert ] && [ "$2" != -h ] && sleep %s\nexec %q "$@"\n' \
    "$2" "$Q" > "$1"
  chmod +x "$1"
}

# A summary's table, JSON or CSV with each job's seconds replaced by S.
mask_table() { awk 'NF >= 7 && $1 != "MODEL" && $3 != "jobs:" { $7 = "S" } { print }' "$1"; }
mask_json() { sed -E 's/"seconds": [0-9.]+/"seconds": S/' "$1"; }
mask_csv() { sed -E 's/,[0-9]+\.[0-9]{2},,,/,S,,,/' "$1"; }
