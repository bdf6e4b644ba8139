#!/usr/bin/env bash
# Peak memory of `qtool convert --format gguf`: on a synthetic model (qtool
# bench synth, ~300 MB bf16, largest tensor the 32000 x 1024 embedding =
# 62.5 MiB) the maximum resident set size (GNU time -v, mapped input pages
# included) stays <= 2 x the largest tensor + 64 MiB for Q4_K_M (2 threads)
# and f16 (1 thread). Holding the input pages would take the whole model.
set -u
Q=${QTOOL:-build/qtool}
TIME=/usr/bin/time
TOK=${QT_DATA:-../shared/data}/tokenizers/llama2/tokenizer.model
[ -f "$TOK" ] || { echo "skipped: $TOK is absent"; exit 77; }
[ -x "$TIME" ] && "$TIME" -v true > /dev/null 2>&1 || { echo "skipped: GNU $TIME -v is absent"; exit 77; }
[ "${SAN:-0}" = 1 ] && { echo "skipped: sanitizer builds inflate RSS"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

H=1024 V=32000
"$Q" bench synth "$T/in" --hidden $H --intermediate 2816 --layers 8 --heads 16 --kv-heads 4 \
  --vocab $V --dtype bf16 --seed 3 2>/dev/null || fail "bench synth"
cp "$TOK" "$T/in/"
largest=$((V * H * 2))
limit_kb=$(( (2 * largest + 64 * 1024 * 1024) / 1024 ))
total_kb=$(( $(stat -c %s "$T/in/model.safetensors") / 1024 ))
[ "$total_kb" -gt "$limit_kb" ] || fail "test model too small to tell ($total_kb KiB <= $limit_kb KiB)"

for args in "--scheme Q4_K_M --threads 2" "--scheme f16 --threads 1"; do
  rm -f "$T/out.gguf"
  # shellcheck disable=SC2086
  "$TIME" -v "$Q" convert --quiet $args "$T/in" "$T/out.gguf" 2> "$T/time" || fail "convert $args: $(tail -3 "$T/time")"
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$T/time")
  [ -n "$rss" ] || fail "no RSS figure from $TIME"
  echo "gguf $args: max RSS $rss KiB (limit $limit_kb KiB, model $total_kb KiB)"
  [ "$rss" -le "$limit_kb" ] || fail "gguf $args: max RSS $rss KiB > 2 x largest tensor + 64 MiB = $limit_kb KiB"
done
echo ok
