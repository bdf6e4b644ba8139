#!/usr/bin/env bash
# bench/run-bench.sh: qtool's benchmarks, run by `make bench`.
#   kernels: `qtool bench kernels` (quantize / dequantize / matmul throughput
#            on synthetic Llama-7B shapes, each result checked against _ref);
#            table on stdout and in $OUT/kernels.txt, JSON lines in
#            $OUT/kernels.jsonl. KERNELS_ARGS replaces the default options
#            "--threads 2" (the issue 14 targets are 2-thread figures; set
#            KERNELS_ARGS= for 1 and 2 threads, --small for a quick run).
# Figures and the command line are recorded in docs/BENCHMARKS.md.
set -euo pipefail
BUILD=${BUILD:-build}
QTOOL=${QTOOL:-$BUILD/qtool}
OUT=${OUT:-$BUILD/bench}
mkdir -p "$OUT"
QT_GIT_DESCRIBE=$(git describe --always --dirty 2>/dev/null || echo unknown)
export QT_GIT_DESCRIBE

KERNELS_ARGS=${KERNELS_ARGS---threads 2}
echo "== kernels (qtool bench kernels ${KERNELS_ARGS})"
# shellcheck disable=SC2086
"$QTOOL" bench kernels ${KERNELS_ARGS:-} | tee "$OUT/kernels.txt"
# shellcheck disable=SC2086
"$QTOOL" bench kernels --json --no-matmul --src bf16 --scheme nf4-dq ${KERNELS_ARGS:-} \
  > "$OUT/kernels.jsonl"
echo "kernels: $OUT/kernels.txt, $OUT/kernels.jsonl"

# ---- convert -----------------------------------------------------------------
# (section of the convert pipeline; figures in docs/BENCHMARKS.md "Convert")
#   A SYNTHETIC TinyLlama-1.1B-shaped checkpoint (qtool bench synth: hidden
#   2048, intermediate 5632, 22 layers, 32/4 heads, vocab 32000, bf16, seed 1;
#   generated once under $OUT and reused) converted to NF4 + double
#   quantization on 2 threads, CONVERT_REPS times (default 3), next to `cp`
#   of the same input in the same run (page cache warm for both). Reports
#   wall time, the phases (prepass, quantize+write, fsync+rename), GB/s of
#   input over the conversion proper (prepass + quantize+write) and peak RSS
#   (GNU time). Lines in $OUT/convert.txt.
SYN="$OUT/synth-tinyllama-bf16"
if [ ! -f "$SYN/config.json" ]; then
  "$QTOOL" bench synth "$SYN" --hidden 2048 --intermediate 5632 --layers 22 --heads 32 \
    --kv-heads 4 --vocab 32000 --dtype bf16 --seed 1
fi
IN_BYTES=$(stat -c %s "$SYN/model.safetensors")
cat "$SYN/model.safetensors" > /dev/null
{
  echo "== convert (synthetic TinyLlama-1.1B shapes, bf16 -> nf4+dq, --threads 2; input $IN_BYTES bytes; load $(cut -d' ' -f1-3 /proc/loadavg))"
  for r in $(seq "${CONVERT_REPS:-3}"); do
    rm -rf "$OUT/convert-cp" "$OUT/convert-nf4"
    t0=$(date +%s.%N); cp -r "$SYN" "$OUT/convert-cp"; t1=$(date +%s.%N)
    cp_s=$(echo "$t1 - $t0" | bc -l)
    if [ -x /usr/bin/time ]; then
      /usr/bin/time -f "maxrss_kb %M" "$QTOOL" convert --threads 2 "$SYN" "$OUT/convert-nf4" 2> "$OUT/convert.err"
    else
      "$QTOOL" convert --threads 2 "$SYN" "$OUT/convert-nf4" 2> "$OUT/convert.err"
    fi
    wall=$(sed -n 's/.* in \([0-9.]*\)s$/\1/p' "$OUT/convert.err")
    pp=$(sed -n 's/.*prepass \([0-9.]*\)s.*/\1/p' "$OUT/convert.err")
    pw=$(sed -n 's/.*quantize+write \([0-9.]*\)s.*/\1/p' "$OUT/convert.err")
    pf=$(sed -n 's/.*fsync+rename \([0-9.]*\)s.*/\1/p' "$OUT/convert.err")
    rss=$(sed -n 's/^maxrss_kb //p' "$OUT/convert.err")
    proper=$(echo "$pp + $pw" | bc -l)
    printf 'run %s: convert %.2fs (prepass %.3fs, quantize+write %.3fs, fsync+rename %.3fs), proper %.2fs = %.2f GB/s, peak RSS %s MiB; cp %.2fs = %.2f GB/s\n' \
      "$r" "$wall" "$pp" "$pw" "$pf" "$proper" "$(echo "$IN_BYTES / $proper / 1000000000" | bc -l)" \
      "$(( ${rss:-0} / 1024 ))" "$cp_s" "$(echo "$IN_BYTES / $cp_s / 1000000000" | bc -l)"
  done
  echo "targets: conversion proper <= 2 s; peak RSS <= 2 x largest tensor (131072000 bytes) + 64 MiB = 314 MiB"
} | tee "$OUT/convert.txt"
rm -rf "$OUT/convert-cp" "$OUT/convert-nf4"

# ---- perplexity (qtool bench ppl; figures in docs/BENCHMARKS.md "Perplexity") ----
#   stories260K f32 (BASE) against fp16, bf16, int8, q8, nf4, nf4+dq, fp4+dq
#   made by `qtool convert`, on the full wikitext-2 test set at ctx 512;
#   table in $OUT/ppl.txt, JSON in $OUT/ppl.json, chart in $OUT/ppl.svg.
#   PPL_ARGS adds options (e.g. "--chunks 100" for a quick run); PPL_THREADS
#   sets the thread count (default: all cores). BASE's log-probs are cached
#   in $OUT/ppl-cache, so a rerun only evaluates the quantized models.
PPL_MODEL=${PPL_MODEL:-${DATA:-../shared/data}/models/stories260K-f32}
PPL_TEXT=${PPL_TEXT:-${DATA:-../shared/data}/text/wiki.test.raw}
if [ -d "$PPL_MODEL" ] && [ -f "$PPL_TEXT" ]; then
  echo "== perplexity (qtool bench ppl, $(basename "$PPL_MODEL"), $(basename "$PPL_TEXT"))"
  mkdir -p "$OUT/ppl"
  ppl_models=("$PPL_MODEL")
  for spec in fp16:fp16 bf16:bf16 int8:int8 q8:q8 nf4:"nf4 --no-double-quant" nf4-dq:nf4 fp4-dq:fp4; do
    name=${spec%%:*}; args=${spec#*:}
    # shellcheck disable=SC2086
    "$QTOOL" convert --quiet --if-changed --scheme $args "$PPL_MODEL" "$OUT/ppl/$name" >/dev/null
    ppl_models+=("$OUT/ppl/$name")
  done
  # BASE alone, no cache: the evaluation speed figure (llama-perplexity's job)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$QTOOL" bench ppl "$PPL_MODEL" --text "$PPL_TEXT" --ctx 512 --no-cache -q \
    ${PPL_THREADS:+--threads "$PPL_THREADS"} ${PPL_ARGS:-} > "$OUT/ppl-base.txt"
  t1=$(date +%s.%N)
  printf 'bench ppl BASE only (no cache): %.1f s wall (load %s)\n' "$(echo "$t1 - $t0" | bc -l)" "$load" |
    tee -a "$OUT/ppl-base.txt"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  "$QTOOL" bench ppl "${ppl_models[@]}" --text "$PPL_TEXT" --ctx 512 --cache "$OUT/ppl-cache" \
    ${PPL_THREADS:+--threads "$PPL_THREADS"} --json "$OUT/ppl.json" --plot "$OUT/ppl.svg" \
    ${PPL_ARGS:-} | tee "$OUT/ppl.txt"
  t1=$(date +%s.%N)
  printf 'bench ppl: %.1f s wall in all\n' "$(echo "$t1 - $t0" | bc -l)" | tee -a "$OUT/ppl.txt"
  echo "perplexity: $OUT/ppl.txt, $OUT/ppl.json, $OUT/ppl.svg"
else
  echo "== perplexity: skipped ($PPL_MODEL or $PPL_TEXT absent)"
fi

# ---- model (forward-pass speed; figures in docs/BENCHMARKS.md "Model runtime") ----
#   `qtool generate MODEL --bench` (512-token prompt in one chunk, then greedy
#   decoding of --bench-tg tokens) at MODEL_THREADS (default "2") threads on
#   the SYNTHETIC TinyLlama-1.1B-shaped checkpoint of the convert section
#   (bf16; generated under $OUT if absent) and its nf4 (+double quant) and
#   int8 (LLM.int8) conversions, and on stories260K f32 and nf4, on the
#   native ISA and on AVX2 (QT_ISA=avx2; MODEL_ISAS sets the list). Each line
#   gives tokens/s with the fraction of peak FMA (pp) and of the read-
#   bandwidth roofline (tg) against probes of the same run, the probes, and
#   the load average at its start. Lines in $OUT/model.txt. MODEL_ARGS adds
#   options (e.g. "--bench-tg 32" for a quick run).
SYN="$OUT/synth-tinyllama-bf16"
if [ ! -f "$SYN/config.json" ]; then
  "$QTOOL" bench synth "$SYN" --hidden 2048 --intermediate 5632 --layers 22 --heads 32 \
    --kv-heads 4 --vocab 32000 --dtype bf16 --seed 1
fi
"$QTOOL" convert --quiet --if-changed --threads 2 --scheme nf4 "$SYN" "$OUT/model-synth-nf4" >/dev/null
"$QTOOL" convert --quiet --if-changed --threads 2 --scheme int8 "$SYN" "$OUT/model-synth-int8" >/dev/null
model_list=("$SYN" "$OUT/model-synth-nf4" "$OUT/model-synth-int8")
ST_MODEL=${DATA:-../shared/data}/models/stories260K-f32
if [ -d "$ST_MODEL" ]; then
  "$QTOOL" convert --quiet --if-changed --scheme nf4 "$ST_MODEL" "$OUT/model-stories260K-nf4" >/dev/null
  model_list+=("$ST_MODEL" "$OUT/model-stories260K-nf4")
fi
{
  echo "== model runtime (qtool generate --bench: pp 512 tokens in one chunk, tg ${MODEL_ARGS:-128 tokens}; same-run probes)"
  for m in "${model_list[@]}"; do
    cat "$m"/*.safetensors > /dev/null
    for isa in ${MODEL_ISAS:-native avx2}; do
      for th in ${MODEL_THREADS:-2}; do
        load=$(cut -d' ' -f1-3 /proc/loadavg)
        isa_env=(); [ "$isa" = native ] || isa_env=(env "QT_ISA=$isa")
        # shellcheck disable=SC2086
        out=$("${isa_env[@]}" "$QTOOL" generate "$m" --bench --threads "$th" ${MODEL_ARGS:-} 2>/dev/null)
        pp=$(sed -n 's/^prompt processing: .*: \([0-9.]*\) tokens\/s, .* = \([0-9.]*\) of peak FMA$/pp \1 tok\/s (\2 of peak FMA)/p' <<<"$out")
        tg=$(sed -n 's/^decoding: .*: \([0-9.]*\) tokens\/s, .* = \([0-9.]*\) of the read-bandwidth roofline$/tg \1 tok\/s (\2 of read roofline)/p' <<<"$out")
        probes=$(sed -n 's/^probes: //p' <<<"$out")
        used=$(sed -n 's/^isa: //p' <<<"$out")
        printf '%-28s %-6s threads %s: %s  %s  [%s; load %s]\n' "$(basename "$m")" "$used" "$th" "$pp" "$tg" "$probes" "$load"
      done
    done
  done
} | tee "$OUT/model.txt"
echo "model: $OUT/model.txt"
