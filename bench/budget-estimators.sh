#!/usr/bin/env bash
# bench/budget-estimators.sh: which estimate chooses better under a budget,
# the calibration output error e^2 that `convert --budget` uses, or a
# per-module ablation (quantize only that module, its KL divergence to BASE
# on the calibration text)? For each budget, both choices fill it greedily
# by estimate per extra byte (modules kept in the compute dtype); both are
# scored by KL against BASE on EVAL (held out). docs/CALIBRATION.md.
#   bash bench/budget-estimators.sh BASE CAL EVAL "7 8 9" [CHUNKS] [QTOOL]
set -eu
base=$1 cal=$2 eval=$3 budgets=${4:-"7 8 9"} chunks=${5:-40} q=${6:-build/qtool}
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
# 1. per module: e^2 and the ablation KL on the calibration text
bash "$here/budget-ablation.sh" "$base" "$cal" "$cal" 8 "$q" | grep -v '^spearman' > "$t/rows"
# 2. per module: quantized bytes, kept bytes (a plain report's bytes_out / bytes_in)
"$q" convert --quiet "$base" "$t/plain" --report "$t/plain.json"
awk '/_proj\.weight"/ {
       match($0, /"name": "[^"]*"/); n = substr($0, RSTART + 9, RLENGTH - 10)
       match($0, /"bytes_in": [0-9]+/); bi = substr($0, RSTART + 12, RLENGTH - 12)
       match($0, /"bytes_out": [0-9]+/); bo = substr($0, RSTART + 13, RLENGTH - 13)
       print n, bo, bi }' "$t/plain.json" | sort > "$t/bytes"
sort "$t/rows" | join - "$t/bytes" > "$t/mods" # name e2 kl bytes_q bytes_kept
paths=() labels=()
for b in $budgets; do
  # 3. the ablation choice: greedy by kl / extra bytes within the budget
  awk -v B="$b" '{ n[NR] = $1; kl[NR] = $3; q[NR] = $4; d[NR] = $5 - $4; p += $5 / 2; sq += $4 }
       END { allow = B * p / 8 - sq
             for (i = 1; i <= NR; i++) o[i] = i
             for (i = 1; i <= NR; i++) for (j = i + 1; j <= NR; j++)
               if (kl[o[j]] * d[o[i]] > kl[o[i]] * d[o[j]]) { x = o[i]; o[i] = o[j]; o[j] = x }
             for (k = 1; k <= NR; k++) { i = o[k]; if (used + d[i] <= allow) { used += d[i]; print n[i] } } }' \
    "$t/mods" > "$t/keep-$b"
  skips=(); while read -r m; do skips+=(--skip "$m"); done < "$t/keep-$b"
  "$q" convert --quiet "$base" "$t/ablation-$b" "${skips[@]}" --report "$t/ablation-$b.json"
  "$q" convert --quiet "$base" "$t/measured-$b" --calib "$cal" --no-calib-cache --budget "$b" \
    --report "$t/measured-$b.json"
  paths+=("$t/ablation-$b" "$t/measured-$b"); labels+=("ablation-$b" "measured-$b")
done
"$q" bench ppl "$base" "${paths[@]}" --text "$eval" --ctx 512 --chunks "$chunks" --no-cache \
  --json "$t/ppl.json" >/dev/null 2>&1
bpw() { awk '/_proj\.weight"/ {
         match($0, /"bytes_in": [0-9]+/); bi += substr($0, RSTART + 12, RLENGTH - 12)
         match($0, /"bytes_out": [0-9]+/); bo += substr($0, RSTART + 13, RLENGTH - 13) }
       END { printf "%.3f", 16 * bo / bi }' "$1"; } # bf16 input: 2 bytes a weight
echo "| choice | budget | bpw (Linears) | KL mean on EVAL |"
echo "|---|---|---|---|"
for i in "${!paths[@]}"; do
  kl=$(grep -F "\"path\": \"${paths[$i]}\"" "$t/ppl.json" | grep -o '"kl_mean": [^,]*' | cut -d' ' -f2)
  printf '| %s | %s | %s | %.5f |\n' "${labels[$i]%-*}" "${labels[$i]##*-}" "$(bpw "${paths[$i]}.json")" "$kl"
done
