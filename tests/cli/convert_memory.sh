#!/usr/bin/env bash
# Peak memory of `qtool convert`: on a synthetic model (qtool bench synth,
# ~300 MB bf16, largest tensor the 32000 x 1024 embedding = 62.5 MiB) the
# maximum resident set size (GNU time -v, which counts the mapped input
# pages too) stays <= 2 x the largest tensor + 64 MiB, with 1 and 2
# threads, for NF4 + double quantization and for int8, and for GGUF output
# (Q4_K_M, f16; `convert --format gguf`). Converting without releasing the
# input pages would hold the whole ~300 MB model.
set -u
Q=${QTOOL:-build/qtool}
TIME=/usr/bin/time
[ -x "$TIME" ] && "$TIME" -v true > /dev/null 2>&1 || { echo "skipped: GNU $TIME -v is absent"; exit 77; }
[ "${SAN:-0}" = 1 ] && { echo "skipped: sanitizer builds inflate RSS (ASan shadow memory and quarantine)"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

H=1024 V=32000
"$Q" bench synth "$T/in" --hidden $H --intermediate 2816 --layers 8 --heads 16 --kv-heads 4 \
  --vocab $V --dtype bf16 --seed 3 2>/dev/null || fail "bench synth"
largest=$((V * H * 2))
limit_kb=$(( (2 * largest + 64 * 1024 * 1024) / 1024 ))
total_kb=$(( $(stat -c %s "$T/in/model.safetensors") / 1024 ))
[ "$total_kb" -gt "$limit_kb" ] || fail "test model too small to tell ($total_kb KiB <= $limit_kb KiB)"

# peak RSS of one `qtool convert` into OUT ($1) with the options that follow
check_rss() {
  local out=$1; shift
  rm -rf "$out"
  "$TIME" -v "$Q" convert --quiet "$@" "$T/in" "$out" 2> "$T/time" || fail "convert $*: $(tail -3 "$T/time")"
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$T/time")
  [ -n "$rss" ] || fail "no RSS figure from $TIME"
  echo "convert $*: max RSS $rss KiB (limit $limit_kb KiB, model $total_kb KiB)"
  [ "$rss" -le "$limit_kb" ] || fail "convert $*: max RSS $rss KiB > 2 x largest tensor + 64 MiB = $limit_kb KiB"
}

for args in "--threads 1" "--threads 2" "--threads 2 --scheme int8" "--threads 2 --compute-dtype fp32"; do
  # shellcheck disable=SC2086
  check_rss "$T/out" $args
done
# GGUF output needs a vocabulary: Llama 2's tokenizer.model (32000 pieces)
TOK=${QT_DATA:-../shared/data}/tokenizers/llama2/tokenizer.model
if [ -f "$TOK" ]; then
  cp "$TOK" "$T/in/"
  check_rss "$T/out.gguf" --scheme Q4_K_M --threads 2
  check_rss "$T/out.gguf" --scheme f16 --threads 1
else
  echo "gguf cases skipped: $TOK is absent"
fi
echo ok
