#!/usr/bin/env bash
# bench/loftq-sweep.sh: per-module relative Frobenius error of plain NF4+DQ
# and of LoftQ (base + s.B.A) for every rank x iteration count, from the
# --report of `qtool convert --loftq R --loftq-iter T` (docs/LOFTQ.md).
#   bash bench/loftq-sweep.sh MODEL "8 16 32" "1 2 5" [QTOOL]
# Prints one markdown row per (R, T): modules, mean / min / max relative
# error plain and LoftQ, how many kept LoftQ, the wall time.
set -eu
model=$1 ranks=${2:-"8 16 64"} iters=${3:-"1 2 5"} qtool=${4:-build/qtool}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "| R | T | modules | plain mean | LoftQ mean | LoftQ min | LoftQ max | kept LoftQ | seconds |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $ranks; do
  for t in $iters; do
    t0=$(date +%s.%N)
    if ! "$qtool" convert "$model" "$tmp/o" --loftq "$r" --loftq-iter "$t" --quiet \
         --report "$tmp/r.json" 2>"$tmp/err"; then
      echo "| $r | $t | refused: $(tail -1 "$tmp/err" | cut -c1-80) |"; continue
    fi
    t1=$(date +%s.%N)
    awk -v r="$r" -v t="$t" -v secs="$(echo "$t1 - $t0" | bc)" '
      /"rel_error_plain"/ {
        match($0, /"rel_error_plain": [^,]*/); p = substr($0, RSTART + 19, RLENGTH - 19) + 0
        match($0, /"rel_error_loftq": [^,]*/); l = substr($0, RSTART + 19, RLENGTH - 19) + 0
        kept = ($0 ~ /"kept": "loftq"/); if (!kept) l = p
        n++; sp += p; sl += l; k += kept
        if (n == 1 || l < mn) mn = l; if (n == 1 || l > mx) mx = l }
      END { printf "| %s | %s | %d | %.5f | %.5f | %.5f | %.5f | %d | %.1f |\n",
            r, t, n, sp / n, sl / n, mn, mx, k, secs }' "$tmp/r.json"
    rm -rf "$tmp/o"
  done
done
