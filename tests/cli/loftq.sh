#!/usr/bin/env bash
# convert --loftq (issue 17): the NF4+DQ base of one iteration is byte for
# byte the plain conversion; OUT/loftq-adapter/ is a PEFT adapter of the
# quantized Linears; every module's error is below plain NF4's; the bytes do
# not depend on threads or the SIMD path; bad options exit 2 and write
# nothing; qtool's own --adapter runs it and it lowers the KL divergence to
# the original model.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}
M=$D/models/stories260K-f32
[ -d "$M" ] || { echo "skipped: $M is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The tensor data of a safetensors file (what follows the header).
data_of() {
  local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  tail -c +$((9 + n)) "$1"
}

"$Q" convert --quiet "$M" "$T/plain" || fail "plain convert"
"$Q" convert --quiet "$M" "$T/lq" --loftq 8 --report "$T/r.json" || fail "convert --loftq 8"
cmp -s <(data_of "$T/plain/model.safetensors") <(data_of "$T/lq/model.safetensors") \
  || fail "T=1 base differs from plain NF4+DQ"
A=$T/lq/loftq-adapter
[ -f "$A/adapter_config.json" ] && [ -f "$A/adapter_model.safetensors" ] || fail "no adapter"
grep -q '"r": 8' "$A/adapter_config.json" || fail "r"
grep -q '"lora_alpha": 8' "$A/adapter_config.json" || fail "lora_alpha"
grep -q '"init_lora_weights": true' "$A/adapter_config.json" || fail "init_lora_weights"
for p in q_proj k_proj v_proj o_proj gate_proj up_proj down_proj; do
  grep -q "\"$p\"" "$A/adapter_config.json" || fail "target_modules lacks $p"
done
n=$(grep -c '"rel_error_plain"' "$T/r.json"); [ "$n" = 35 ] || fail "$n modules in the report"
awk '/"rel_error_plain"/ {
       match($0, /"rel_error_plain": [^,]*/); p = substr($0, RSTART + 19, RLENGTH - 19) + 0
       match($0, /"rel_error_loftq": [^,]*/); l = substr($0, RSTART + 19, RLENGTH - 19) + 0
       if (!(l < p) || $0 !~ /"kept": "loftq"/) bad++ }
     END { exit bad > 0 }' "$T/r.json" || fail "a module's LoftQ error is not below plain"

# Same bytes with one thread, on AVX2 and on the scalar path; T = 2 too.
"$Q" convert --quiet "$M" "$T/lq2" --loftq 8 --loftq-iter 2 || fail "T=2"
"$Q" convert --quiet --threads 1 "$M" "$T/lq2-t1" --loftq 8 --loftq-iter 2 || fail "T=2 1 thread"
QT_ISA=avx2 "$Q" convert --quiet "$M" "$T/lq2-avx2" --loftq 8 --loftq-iter 2 || fail "T=2 avx2"
QT_ISA=ref "$Q" convert --quiet "$M" "$T/lq2-ref" --loftq 8 --loftq-iter 2 || fail "T=2 ref"
for v in t1 avx2 ref; do
  diff -r "$T/lq2" "$T/lq2-$v" >/dev/null || fail "bytes differ: $v"
done
cmp -s <(data_of "$T/plain/model.safetensors") <(data_of "$T/lq2/model.safetensors") \
  && fail "T=2 base equals plain (the alternation did nothing)"

# qtool's own forward runs the adapter, and it brings the model closer to the
# original than the NF4 base alone (KL divergence on in-domain text).
"$Q" bench ppl "$M" "$T/lq" "$T/lq+$A" --text "$D/text/tinystories_sample.txt" --ctx 128 \
  --chunks 8 --no-cache --json "$T/ppl.json" >/dev/null 2>"$T/err" || fail "bench ppl: $(cat "$T/err")"
kl() { grep -F "\"path\": \"$1\"" "$T/ppl.json" | grep -o '"kl_mean": [^,]*' | cut -d' ' -f2; }
awk -v a="$(kl "$T/lq")" -v b="$(kl "$T/lq+$A")" 'BEGIN { exit !(b < 0.8 * a) }' \
  || fail "the LoftQ adapter does not lower KL: base $(kl "$T/lq"), with adapter $(kl "$T/lq+$A")"

# Refusals: exit 2, nothing written.
refuse() {
  "$Q" convert --quiet "$M" "$T/bad" "$@" 2>"$T/err"; rc=$?
  [ "$rc" = 2 ] || fail "$* exited $rc (want 2): $(cat "$T/err")"
  [ ! -e "$T/bad" ] || fail "$* left an output"
}
refuse --loftq 0
refuse --loftq 33                      # k_proj is 32 x 64
grep -q "min(rows, cols) = 32" "$T/err" || fail "rank refusal does not name the bound"
refuse --loftq 8 --loftq-iter 0
refuse --loftq 8 --loftq-alpha -1
refuse --loftq 8 --scheme int8
grep -q "nf4 and fp4" "$T/err" || fail "scheme refusal: $(cat "$T/err")"
echo ok
