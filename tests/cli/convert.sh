#!/usr/bin/env bash
# CLI test of convert / dequant / inspect on stories260K: every scheme from
# f32, f16 and bf16; the layout inspect reports; dequant back; identical
# bytes with 1 and 2 threads; sharded output; refusals with exit 2.
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for src in f32 f16 bf16; do
  for s in nf4 fp4 int8 q8; do
    "$Q" convert --quiet --scheme $s "$D/stories260K-$src" "$T/$src-$s" || fail "convert $src $s"
    "$Q" inspect --json "$T/$src-$s" > "$T/j" || fail "inspect $src $s"
    grep -q '"parameters": 260032' "$T/j" || fail "$src $s: parameter count"
    case $s in
      nf4) want='"scheme": "nf4+dq"';; fp4) want='"scheme": "fp4+dq"';;
      int8) want='"scheme": "int8"';; q8) want='"scheme": "q8"';;
    esac
    [ "$(grep -o "$want" "$T/j" | wc -l)" = 35 ] || fail "$src $s: expected 35 quantized Linears"
    "$Q" dequant --quiet --dtype fp32 "$T/$src-$s" "$T/$src-$s-deq" || fail "dequant $src $s"
    "$Q" inspect --json "$T/$src-$s-deq" | grep -q '"bits_per_weight": 32.0}}' || fail "dequant $src $s: not fp32"
  done
done
"$Q" convert --quiet --no-double-quant "$D/stories260K-bf16" "$T/nodq" || fail "no-dq"
"$Q" inspect "$T/nodq" | grep -q ' nf4/64 ' || fail "no-dq layout"
grep -q '"bnb_4bit_use_double_quant": false' "$T/nodq/config.json" || fail "no-dq config"
grep -q '"lm_head"' "$T/f32-nf4/config.json" || fail "lm_head not in llm_int8_skip_modules"
cmp -s "$D/stories260K-f32/tokenizer.json" "$T/f32-nf4/tokenizer.json" || fail "tokenizer not copied"

# determinism across thread counts and ISAs
"$Q" convert --quiet --threads 1 "$D/stories260K-f32" "$T/t1" || fail "t1"
"$Q" convert --quiet --threads 2 "$D/stories260K-f32" "$T/t2" || fail "t2"
QT_ISA=ref "$Q" convert --quiet "$D/stories260K-f32" "$T/tref" || fail "tref"
cmp "$T/t1/model.safetensors" "$T/t2/model.safetensors" || fail "bytes differ with 1 and 2 threads"
cmp "$T/t1/model.safetensors" "$T/tref/model.safetensors" || fail "bytes differ between ISAs"

# sharded output, read back
"$Q" convert --quiet --max-shard-size 100K "$D/stories260K-f32" "$T/sh" || fail "sharded"
[ -f "$T/sh/model.safetensors.index.json" ] || fail "no index"
ls "$T/sh"/model-0000*-of-*.safetensors >/dev/null || fail "no shards"
"$Q" inspect --json "$T/sh" | grep -q '"parameters": 260032' || fail "sharded read back"
# a sharded input converts too
"$Q" convert --quiet "$T/sh-in-dummy" "$T/x" 2>/dev/null && fail "missing input accepted"
"$Q" dequant --quiet --dtype bf16 "$T/sh" "$T/sh-deq" || fail "dequant of sharded"
"$Q" convert --quiet --max-shard-size 200K "$T/sh-deq" "$T/sh2" || fail "convert of sharded input"

# dry run writes nothing
"$Q" convert --dry-run "$D/stories260K-f32" "$T/dry" | grep -q 'nothing written' || fail "dry-run"
[ ! -e "$T/dry" ] || fail "dry-run wrote something"

# refusals: exit 2, nothing written
"$Q" convert --quiet "$D/stories260K-f32" "$T/t1"; [ $? = 2 ] || fail "existing OUT not refused with 2"
"$Q" convert --quiet --force "$D/stories260K-f32" "$T/t1" || fail "--force"
"$Q" convert --quiet --scheme nf5 "$D/stories260K-f32" "$T/bad"; [ $? = 2 ] || fail "bad scheme"
"$Q" convert --quiet --block 48 "$D/stories260K-f32" "$T/bad"; [ $? = 2 ] || fail "bad block"
"$Q" convert --quiet --scheme q4_k "$D/stories260K-f32" "$T/bad"; [ $? = 2 ] || fail "GGUF-only scheme for safetensors"
"$Q" convert --quiet "$T/f32-nf4" "$T/bad"; [ $? = 2 ] || fail "re-quantizing accepted"
[ ! -e "$T/bad" ] || fail "output left after a refusal"
ls -a "$T" | grep -q 'qtool-tmp' && fail "temporary folder left behind"
echo ok
