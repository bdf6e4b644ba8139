#!/usr/bin/env bash
# bench/budget-ablation.sh: how well the calibration output error e^2 that
# --budget ranks modules by predicts each module's own effect on the model:
# for every quantizable Linear, a conversion quantizing only that module
# (the others kept), its KL divergence to BASE on TEXT (bench ppl), beside
# the e^2 convert measured for it. Prints "tensor e2 kl" rows and the
# Spearman rank correlation (docs/CALIBRATION.md).
#   bash bench/budget-ablation.sh BASE CAL TEXT [CHUNKS] [QTOOL]
set -eu
base=$1 cal=$2 text=$3 chunks=${4:-10} q=${5:-build/qtool}
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
# e^2 of every module: a --budget run's report (the smallest budget keeps none)
"$q" convert --quiet "$base" "$t/all" --calib "$cal" --no-calib-cache --budget 5.7 \
  --report "$t/all.json" 2>/dev/null
grep -o '"tensor": "[^"]*", "sensitivity": [^,]*' "$t/all.json" \
  | sed 's/"tensor": "\([^"]*\)", "sensitivity": \(.*\)/\1 \2/' > "$t/e2"
paths=()
while read -r name e2; do
  skips=()
  while read -r other _; do [ "$other" = "$name" ] || skips+=(--skip "$other"); done < "$t/e2"
  o="$t/only-$(echo "$name" | tr '.' '_')"
  "$q" convert --quiet "$base" "$o" "${skips[@]}" 2>/dev/null
  paths+=("$o")
done < "$t/e2"
"$q" bench ppl "$base" "${paths[@]}" --text "$text" --ctx 512 --chunks "$chunks" --no-cache \
  --json "$t/ppl.json" >/dev/null 2>&1
i=0
while read -r name e2; do
  o=${paths[$i]}; i=$((i + 1))
  kl=$(grep -F "\"path\": \"$o\"" "$t/ppl.json" | grep -o '"kl_mean": [^,]*' | cut -d' ' -f2)
  echo "$name $e2 $kl"
done < "$t/e2" > "$t/rows"
cat "$t/rows"
# Spearman: Pearson correlation of the ranks (no ties expected)
awk '{ print NR, $2, $3 }' "$t/rows" | sort -g -k2 | awk '{ print $0, NR }' | sort -g -k3 \
  | awk '{ print $0, NR }' | awk '{ d = $4 - $5; s += d * d; n++ }
      END { printf "spearman(e2, kl) = %.3f over %d modules\n", 1 - 6 * s / (n * (n * n - 1)), n }'
