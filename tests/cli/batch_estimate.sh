#!/usr/bin/env bash
# CLI test of the memory / output estimate (convert/estimate.c) that
# `qtool convert --dry-run` and `qtool batch-plan --estimate` print and
# `qtool-batch --slurm` turns into --mem: its value from the model's shapes
# (8 MiB + 12 MiB per thread + 1.5 x the largest tensor's need, here the
# embedding, kept: vocab x hidden x bytes), the same from both commands, and
# an upper bound of the peak RSS (/usr/bin/time) and of OUT's size, on
# stories260K and on a synthetic bf16 model.
set -u
. "$(dirname "$0")/lib/batch.sh"
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
MiB=1048576

"$Q" bench synth "$T/syn" --hidden 512 --intermediate 1376 --layers 2 --heads 8 --kv-heads 4 \
  --vocab 16000 --dtype bf16 > /dev/null 2>&1 || fail "bench synth"
cp -r "$D/stories260K-f32" "$T/st"
# model, vocab x hidden x bytes per value of its embedding
for case in "st 512 64 4" "syn 16000 512 2"; do
  set -- $case
  m=$1 emb=$(($2 * $3 * $4))
  for th in 1 2; do
    line=$("$Q" convert --dry-run --threads $th "$T/$m" "$T/o" | grep '^needs: ') || fail "$m: no needs line"
    peak=$(sed -n 's/^needs: peak memory \([0-9]*\) bytes.*/\1/p' <<< "$line")
    out=$(sed -n 's/.*; output \([0-9]*\) bytes.*/\1/p' <<< "$line")
    want=$((8 * MiB + th * 12 * MiB + emb + emb / 2))
    [ "$peak" = "$want" ] || fail "$m, $th threads: peak $peak, expected $want from the shapes ($line)"
  done
  # batch-plan --estimate says the same (2 threads)
  printf '{"models": ["%s"], "schemes": ["nf4"], "outputs": "x/{model}-{scheme}"}\n' "$T/$m" > "$T/b.json"
  "$Q" batch-plan "$T/b.json" --estimate --threads 2 > "$T/est" || fail "batch-plan --estimate"
  grep -q "^0	$m	nf4	$peak	$out$" "$T/est" || { cat "$T/est"; fail "$m: batch-plan --estimate differs from convert --dry-run"; }
  grep -q "^#max_peak_bytes	$peak$" "$T/est" || fail "$m: #max_peak_bytes"
  # the real run stays under both estimates
  rm -rf "$T/o"
  if [ -x /usr/bin/time ] && [ "${SAN:-0}" != 1 ]; then  # (ASan's shadow memory is not qtool's)
    /usr/bin/time -f '%M' -o "$T/rss" "$Q" convert --quiet --threads 2 "$T/$m" "$T/o" || fail "$m: convert"
    rss=$(( $(tail -1 "$T/rss") * 1024 ))
    [ "$rss" -le "$peak" ] || fail "$m: peak RSS $rss above the estimate $peak"
  else
    echo "note: /usr/bin/time is absent or this is a sanitizer build: RSS not checked"
    "$Q" convert --quiet --threads 2 "$T/$m" "$T/o" || fail "$m: convert"
  fi
  size=$(find "$T/o" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
  [ "$size" -le "$out" ] || fail "$m: OUT is $size bytes, above the estimate $out"
  [ $((size * 105 / 100)) -ge "$out" ] || fail "$m: estimate $out more than 5% above OUT's $size bytes"
  rm -rf "$T/o"
done
echo ok
