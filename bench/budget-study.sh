#!/usr/bin/env bash
# bench/budget-study.sh: mixed precision by measurement on a real model
# (docs/CALIBRATION.md "Mixed precision"). Converts BASE uniformly (nf4+dq,
# int8), with the common heuristics (keep every down_proj; keep the first
# and last layers), with qtool's --budget choice at several budgets and at
# the heuristics' own sizes, and with random choices of the same budgets;
# then scores every variant against BASE with bench ppl on EVAL (held out:
# not the calibration text). Prints one markdown row per variant: bits per
# weight of the quantizable Linears, KL mean, top-1.
#   bash bench/budget-study.sh BASE CAL EVAL [CHUNKS] [QTOOL]
set -eu
base=$1 cal=$2 eval=$3 chunks=${4:-40} q=${5:-build/qtool}
layers=$(grep -o '"num_hidden_layers": *[0-9]*' "$base/config.json" | grep -o '[0-9]*$')
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
names=() paths=()
conv() { # name, convert options...
  local n=$1; shift
  "$q" convert --quiet "$base" "$t/$n" --report "$t/$n.json" "$@" >/dev/null 2>"$t/$n.err" \
    || { echo "convert $n failed: $(tail -1 "$t/$n.err")" >&2; return 1; }
  names+=("$n"); paths+=("$t/$n")
}
bpw() { # bits per weight of the quantizable Linears, from a --report
  awk '/_proj\.weight"/ {
         match($0, /"bytes_in": [0-9]+/); bi += substr($0, RSTART + 12, RLENGTH - 12)
         match($0, /"bytes_out": [0-9]+/); bo += substr($0, RSTART + 13, RLENGTH - 13)
         match($0, /"shape": \[[0-9]+, [0-9]+\]/); s = substr($0, RSTART + 10, RLENGTH - 11)
         split(s, d, ", "); p += d[1] * d[2] }
       END { printf "%.3f", 8 * bo / p }' "$1"
}
conv nf4
conv int8 --scheme int8
conv keep-down_proj --skip '*down_proj*'
conv keep-first-last --skip 'model.layers.0.*' --skip "model.layers.$((layers - 1)).*"
budgets="6 6.5 7 8 9 10 $(bpw "$t/keep-down_proj.json") $(bpw "$t/keep-first-last.json")"
for b in $budgets; do
  conv "qtool-$b" --calib "$cal" --no-calib-cache --budget "$b"
  for s in 1 2 3; do conv "random$s-$b" --calib "$cal" --no-calib-cache --budget "$b" --budget-order "random:$s"; done
done
"$q" bench ppl "$base" "${paths[@]}" --text "$eval" --ctx 512 --chunks "$chunks" --no-cache \
  --json "$t/ppl.json" >/dev/null 2>"$t/ppl.err" || { cat "$t/ppl.err" >&2; exit 1; }
echo "| variant | bpw (Linears) | KL mean | top-1 |"
echo "|---|---|---|---|"
for i in "${!names[@]}"; do
  n=${names[$i]} p=${paths[$i]}
  line=$(grep -F "\"path\": \"$p\"" "$t/ppl.json")
  kl=$(echo "$line" | grep -o '"kl_mean": [^,]*' | cut -d' ' -f2)
  top=$(echo "$line" | grep -o '"top1": [^,]*' | cut -d' ' -f2)
  printf '| %s | %s | %.5f | %.4f |\n' "$n" "$(bpw "$t/$n.json")" "$kl" "$top"
done
