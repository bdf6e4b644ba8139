#!/usr/bin/env bash
# CLI test of `qtool convert --format gguf` on stories260K: every type this
# build writes, identical bytes for any thread count and ISA, --dry-run,
# the fallback count, and every refusal (exit 2 naming the key or tensor,
# nothing written).
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
TOK=${QT_DATA:-../shared/data}/tokenizers
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
M=$D/stories260K-f32

# every scheme the build can write: one file, inspect reads it, generate runs it
for s in f32 f16 bf16 q8_0 Q8_0; do
  "$Q" convert "$M" "$T/$s.gguf" --scheme $s --quiet || fail "convert $s"
  "$Q" inspect "$T/$s.gguf" > "$T/i" || fail "inspect $s"
  "$Q" generate "$T/$s.gguf" -n 8 > /dev/null 2>&1 || fail "generate $s"
done
grep -q 'general.file_type = 7' "$T/i" || fail "Q8_0 ftype"
ls "$T" | grep -q tmp && fail "temporary file left"

# the format is taken from --format, or from a .gguf OUT
"$Q" convert "$M" "$T/explicit" --format gguf --scheme f32 --quiet || fail "--format gguf"
cmp -s "$T/explicit" "$T/f32.gguf" || fail "--format gguf and .gguf OUT differ"

# determinism: threads and ISAs
for isa in ref avx2 avx512; do
  grep -q "avx512f" /proc/cpuinfo || [ $isa != avx512 ] || continue
  for th in 1 3; do
    QT_ISA=$isa "$Q" convert "$M" "$T/d.gguf" --scheme q8_0 --threads $th --quiet --force \
      || fail "q8_0 $isa $th"
    cmp -s "$T/d.gguf" "$T/q8_0.gguf" || fail "q8_0 bytes differ with QT_ISA=$isa --threads $th"
  done
done

# K-quant blocks (a synthetic model whose rows are whole 256-blocks): the same
# bytes for every ISA and thread count, and the runtime reads them
"$Q" bench synth "$T/syn" --hidden 256 --intermediate 512 --layers 2 --heads 4 --kv-heads 2 \
  --vocab 512 --dtype bf16 > /dev/null 2>&1 || fail "bench synth"
cp "$M/tokenizer.model" "$T/syn/"
for s in Q4_K_M q2_k q3_k q4_k q5_k q6_k q4_0 q4_1 q5_0 q5_1; do
  "$Q" convert "$T/syn" "$T/k.gguf" --scheme $s --threads 2 --quiet --force || fail "synth $s"
  "$Q" generate "$T/k.gguf" -n 4 > /dev/null 2>&1 || fail "generate synth $s"
  for isa in ref avx2 avx512; do
    grep -q "avx512f" /proc/cpuinfo || [ $isa != avx512 ] || continue
    QT_ISA=$isa "$Q" convert "$T/syn" "$T/k2.gguf" --scheme $s --threads 1 --quiet --force \
      || fail "synth $s $isa"
    cmp -s "$T/k.gguf" "$T/k2.gguf" || fail "$s bytes differ with QT_ISA=$isa --threads 1"
  done
done
"$Q" inspect "$T/k.gguf" | grep -q 'Q5_1' || fail "inspect: Q5_1 type"

# fallbacks are counted; --dry-run prints types and the size, writes nothing
"$Q" convert "$M" "$T/fb.gguf" --scheme q8_0 2> "$T/e" || fail "q8_0 summary"
grep -q '31 quantized, 5 fallbacks' "$T/e" || fail "fallback count: $(cat "$T/e")"
"$Q" convert "$M" "$T/dry.gguf" --scheme Q4_K_M --dry-run > "$T/o" || fail "dry-run"
[ -e "$T/dry.gguf" ] && fail "dry-run wrote a file"
grep -q '^token_embd.weight  *Q8_0 ' "$T/o" || fail "dry-run: tied embedding should be Q8_0"
grep -q '^blk.0.ffn_down.weight  *F16 .*fallback' "$T/o" || fail "dry-run: ffn_down fallback"
grep -q '^file size: [0-9]' "$T/o" || fail "dry-run: no size"

# refusals: exit 2, the message names the key / tensor, nothing written
expect2() { # name, then the command; stderr must contain $WANT
  local name=$1; shift
  "$@" > /dev/null 2> "$T/err"; local rc=$?
  [ $rc = 2 ] || fail "$name: exit $rc, expected 2: $(cat "$T/err")"
  grep -q -- "$WANT" "$T/err" || fail "$name: message lacks '$WANT': $(cat "$T/err")"
  [ -e "$T/bad.gguf" ] && fail "$name: output written"
  return 0
}
mkmodel() { rm -rf "$T/m"; mkdir "$T/m"; cp "$M"/* "$T/m/"; }
WANT="exists" expect2 "existing OUT" "$Q" convert "$M" "$T/f32.gguf" --scheme f32
WANT="not a GGUF scheme" expect2 "bad scheme" "$Q" convert "$M" "$T/bad.gguf" --scheme q9
mkmodel; sed -i 's/LlamaForCausalLM/GPTNeoXForCausalLM/' "$T/m/config.json"
WANT="GPTNeoXForCausalLM" expect2 "architecture" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i 's/"rope_theta": 10000.0,/"rope_theta": 10000.0, "rope_scaling": {"type": "dynamic", "factor": 2.0},/' "$T/m/config.json"
WANT="rope_scaling.type" expect2 "rope scaling" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i 's/"rope_theta": 10000.0,/"rope_theta": 10000.0, "rope_scaling": {"rope_type": "yarn", "factor": 4.0},/' "$T/m/config.json"
WANT="'yarn'" expect2 "yarn on llama" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i 's/"num_key_value_heads": 4/"num_key_value_heads": 3/' "$T/m/config.json"
WANT="num_key_value_heads" expect2 "kv heads" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i 's/"intermediate_size": 172/"intermediate_size": 176/' "$T/m/config.json"
WANT="model.layers.0.mlp.gate_proj.weight" expect2 "shape" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i 's/"vocab_size": 512/"vocab_size": 600/' "$T/m/config.json"
WANT="vocab_size" expect2 "vocab" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
mkmodel; sed -i '/rms_norm_eps/d' "$T/m/config.json"
WANT="rms_norm_eps" expect2 "eps" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
# a BPE vocabulary whose pre-tokenizer is not identified; then stated
if [ -f "$TOK/gpt2/tokenizer.json" ]; then
  mkmodel; rm "$T/m/tokenizer.model"; cp "$TOK/gpt2/tokenizer.json" "$T/m/"
  WANT="pre-tokenizer 'gpt2'" expect2 "pre-tokenizer" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32
  WANT="embedding rows" expect2 "gpt2 vocab > rows" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32 --gguf-pre gpt-2
  WANT="--gguf-pre 'nonsense'" expect2 "unknown pre" "$Q" convert "$T/m" "$T/bad.gguf" --scheme f32 --gguf-pre nonsense
fi
echo "ok"
