#!/usr/bin/env bash
# tests/cli/lora.sh: PEFT LoRA adapters on the command line: `qtool logits`
# with --adapter and MODEL+ADAPTER gives the same logits, independent of the
# thread count; generate, validate and bench ppl take an adapter; merge onto the
# quantized or original base, bytes independent of threads; an adapter_model.bin,
# a missing adapter and two adapters for one model exit 2 with the reason.
# Exit 0 pass, 77 skip, other fail.
set -u
QTOOL=${QTOOL:-build/qtool}
DATA=${QT_DATA:-../shared/data}
MODEL="$DATA/models/stories260K-f32"
G="$DATA/golden/peft-lora"
[ -d "$MODEL" ] && [ -d "$G/adapter" ] || { echo "no $MODEL or $G"; exit 77; }
[ -x "$QTOOL" ] || { echo "no $QTOOL"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
DATA_BYTES=$((160 * 512 * 4 + 160 * 4)) # logits [160, 512] F32 + ids [160] I32, at the end

# logits: --adapter and MODEL+ADAPTER, 1 and 2 threads: the same values
"$QTOOL" logits "$MODEL" --adapter "$G/adapter" --ids "$G/ids.json" -o "$tmp/a.st" -j 1 2>"$tmp/err" ||
  { echo "logits --adapter failed"; cat "$tmp/err"; exit 1; }
grep -q "35 LoRA modules" "$tmp/err" || { echo "no adapter summary"; cat "$tmp/err"; exit 1; }
"$QTOOL" logits "$MODEL+$G/adapter" --ids "$G/ids.json" -o "$tmp/b.st" -j 2 2>/dev/null ||
  { echo "logits MODEL+ADAPTER failed"; exit 1; }
cmp <(tail -c $DATA_BYTES "$tmp/a.st") <(tail -c $DATA_BYTES "$tmp/b.st") ||
  { echo "logits differ between --adapter -j1 and MODEL+ADAPTER -j2"; exit 1; }
"$QTOOL" logits "$MODEL" --ids "$G/ids.json" -o "$tmp/base.st" 2>/dev/null || exit 1
cmp -s <(tail -c $DATA_BYTES "$tmp/a.st") <(tail -c $DATA_BYTES "$tmp/base.st") &&
  { echo "the adapter changed nothing"; exit 1; }
grep -q "qtool.adapter_fingerprint" "$tmp/a.st" || { echo "no adapter provenance"; exit 1; }

# generate and bench ppl run with an adapter
"$QTOOL" generate "$MODEL" --adapter "$G/adapter" -n 8 >/dev/null 2>&1 || { echo "generate --adapter"; exit 1; }
"$QTOOL" bench ppl "$MODEL" "$MODEL+$G/adapter" --text "$DATA/text/tinystories_sample.txt" \
  --ctx 128 --chunks 2 --no-cache -q >"$tmp/ppl.txt" 2>&1 || { echo "bench ppl"; cat "$tmp/ppl.txt"; exit 1; }
[ "$(grep -c '^\.\.\.' "$tmp/ppl.txt")" = 2 ] || { echo "bench ppl: expected 2 rows"; cat "$tmp/ppl.txt"; exit 1; }
[ "$(grep '^\.\.\.' "$tmp/ppl.txt" | awk '{print $3}' | sort -u | wc -l)" = 2 ] ||
  { echo "bench ppl: the adapter row has the base's PPL"; cat "$tmp/ppl.txt"; exit 1; }

# validate --adapter: activations captured with the adapter (another cache fingerprint)
V="$DATA/text/tinystories_sample.txt"
"$QTOOL" convert "$MODEL" "$tmp/nf4v" --quiet || exit 1
"$QTOOL" validate "$MODEL" "$tmp/nf4v" --calib "$V" --calib-tokens 64 --calib-cache "$tmp/c.zc" --quiet >"$tmp/v0" 2>&1 || { echo "validate"; exit 1; }
"$QTOOL" validate "$MODEL" "$tmp/nf4v" --calib "$V" --calib-tokens 64 --calib-cache "$tmp/c.zc" --adapter "$G/adapter" \
  >"$tmp/v1" 2>&1 || { echo "validate --adapter"; cat "$tmp/v1"; exit 1; }
grep -q "cache stale" "$tmp/v1" || { echo "validate --adapter reused the adapter-less cache"; cat "$tmp/v1"; exit 1; }
cmp -s <(grep "^model:" "$tmp/v0") <(grep "^model:" "$tmp/v1") && { echo "validate --adapter changed nothing"; exit 1; }

# refusals: exit 2 with the reason
mkdir "$tmp/bin" && cp "$G/adapter/adapter_config.json" "$tmp/bin/" && echo x >"$tmp/bin/adapter_model.bin"
"$QTOOL" logits "$MODEL" --adapter "$tmp/bin" --ids "$G/ids.json" -o "$tmp/x.st" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "safetensors.torch" "$tmp/err" || { echo "pickle: exit $rc"; cat "$tmp/err"; exit 1; }
"$QTOOL" logits "$MODEL" --adapter "$tmp/none" --ids "$G/ids.json" -o "$tmp/x.st" 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "missing adapter: exit $rc"; exit 1; }
"$QTOOL" logits "$MODEL+$G/adapter" --adapter "$G/adapter" --ids "$G/ids.json" -o "$tmp/x.st" 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "two adapters: exit $rc"; exit 1; }
"$QTOOL" logits "$MODEL" --ids "$G/ids.json" --text "$DATA/text/tinystories_sample.txt" -o "$tmp/x.st" 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "--ids and --text: exit $rc"; exit 1; }
echo '[1, -3]' >"$tmp/bad.json"
"$QTOOL" logits "$MODEL" --ids "$tmp/bad.json" -o "$tmp/x.st" 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "negative id: exit $rc"; exit 1; }
[ ! -e "$tmp/x.st" ] || { echo "a refused run left $tmp/x.st"; exit 1; }
# merge: onto the quantized base (as trained) and onto the original; refusals exit 2
"$QTOOL" convert "$MODEL" "$tmp/nf4" --compute-dtype fp32 --quiet || { echo "convert"; exit 1; }
"$QTOOL" merge "$tmp/nf4" "$G/adapter" "$tmp/m" >/dev/null 2>&1; rc=$?
[ $rc = 2 ] || { echo "merge without --onto: exit $rc"; exit 1; }
"$QTOOL" merge "$tmp/nf4" "$G/adapter" "$tmp/m" --onto original 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "needs the original" "$tmp/err" || { echo "onto original of nf4: exit $rc"; cat "$tmp/err"; exit 1; }
[ ! -e "$tmp/m" ] || { echo "a refused merge left OUT"; exit 1; }
"$QTOOL" merge "$tmp/nf4" "$G/adapter" "$tmp/m" --onto quantized --report "$tmp/m.json" --quiet ||
  { echo "merge --onto quantized failed"; exit 1; }
grep -q '"action": "fold"' "$tmp/m.json" || { echo "no folded weight in the report"; exit 1; }
"$QTOOL" merge "$tmp/nf4" "$G/adapter" "$tmp/m1" --onto quantized --quiet --threads 1 || exit 1
cmp "$tmp/m/model.safetensors" "$tmp/m1/model.safetensors" || { echo "merge nf4 depends on threads"; exit 1; }
ls -a "$tmp" | grep -q qtool-merge-spill && { echo "merge left its spill file"; exit 1; }
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/m16" --onto original --scheme bf16 --quiet --threads 1 || exit 1
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/m16b" --onto original --scheme bf16 --quiet --threads 2 || exit 1
cmp "$tmp/m16/model.safetensors" "$tmp/m16b/model.safetensors" || { echo "merge depends on threads"; exit 1; }
"$QTOOL" logits "$tmp/m" --ids "$G/ids.json" -o "$tmp/ml.st" 2>/dev/null || { echo "merged model does not run"; exit 1; }
# to llama.cpp: merge to 16-bit, then convert to GGUF; the GGUF runs; --format gguf says how
"$QTOOL" convert "$tmp/m16" "$tmp/m.gguf" --scheme q8_0 >/dev/null 2>&1 || { echo "merged -> gguf"; exit 1; }
"$QTOOL" logits "$tmp/m.gguf" --ids "$G/ids.json" -o "$tmp/mg.st" 2>/dev/null || { echo "merged gguf does not run"; exit 1; }
# merge --format gguf: the same model as the fp32 merge (F32: KL exactly 0), a
# quantized mix runs, no staging folder is left beside OUT
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/mgg.gguf" --onto original --scheme f32 --quiet \
  || { echo "merge --format gguf f32"; exit 1; }
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/mf32" --onto original --scheme fp32 --quiet \
  || { echo "merge fp32"; exit 1; }
"$QTOOL" bench ppl "$tmp/mf32" "$tmp/mgg.gguf" --text "$DATA/text/tinystories_sample.txt" --ctx 128 \
  --chunks 2 --no-cache --json "$tmp/mgg.json" >/dev/null 2>&1 || { echo "bench ppl on the merged gguf"; exit 1; }
grep -F "\"path\": \"$tmp/mgg.gguf\"" "$tmp/mgg.json" | grep -q '"kl_mean": 0,' \
  || { echo "merged gguf differs from the fp32 merge"; exit 1; }
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/mgq" --onto original --format gguf --scheme Q8_0 --quiet \
  || { echo "merge --format gguf Q8_0"; exit 1; }
"$QTOOL" logits "$tmp/mgq" --ids "$G/ids.json" -o "$tmp/mgq.st" 2>/dev/null || { echo "merged Q8_0 gguf does not run"; exit 1; }
ls -a "$tmp" | grep -q "qtool-tmp" && { echo "merge --format gguf left its staging folder"; exit 1; }
# --eval: the model as trained, OUT and 3 alternatives; JSON and SVG; no temporary folder left
"$QTOOL" merge "$tmp/nf4" "$G/adapter" "$tmp/me" --onto quantized --eval "$DATA/text/tinystories_sample.txt" \
  --eval-original "$MODEL" --ctx 128 --chunks 2 --eval-json "$tmp/me.json" --eval-plot "$tmp/me.svg" \
  --quiet >"$tmp/me.txt" 2>&1 || { echo "merge --eval failed"; cat "$tmp/me.txt"; exit 1; }
for v in onto-quantized-bf16 onto-original-nf4 onto-original-bf16; do
  grep -q "$v" "$tmp/me.txt" || { echo "--eval: no row $v"; cat "$tmp/me.txt"; exit 1; }
done
grep -q '"kl_mean"' "$tmp/me.json" && grep -q "<svg" "$tmp/me.svg" || { echo "--eval: JSON or SVG missing"; exit 1; }
ls -a "$tmp" | grep -q qtool-merge-eval && { echo "--eval left its temporary folder"; exit 1; }
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/mx" --onto original --eval "$DATA/text/tinystories_sample.txt" 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "--onto original --eval without --eval-quantized: exit $rc"; exit 1; }
"$QTOOL" merge "$MODEL" "$G/adapter" "$tmp/m" --onto original --quiet 2>/dev/null; rc=$?
[ $rc = 2 ] || { echo "merge onto an existing OUT: exit $rc"; exit 1; }
echo ok
