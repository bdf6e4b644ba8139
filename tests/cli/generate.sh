#!/usr/bin/env bash
# tests/cli/generate.sh: `qtool generate` on stories260K: greedy decoding of
# 256 tokens from BOS prints llama2.c's sample text exactly (the GGUF copy
# too), and bad usage exits 2. Exit 0 pass, 77 skip, other fail.
set -u
QTOOL=${QTOOL:-build/qtool}
DATA=${QT_DATA:-../shared/data}
MODEL="$DATA/models/stories260K-f32"
[ -d "$MODEL" ] || { echo "no $MODEL"; exit 77; }
[ -x "$QTOOL" ] || { echo "no $QTOOL"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

"$QTOOL" generate "$MODEL" -n 256 >"$tmp/out.txt" 2>"$tmp/err.txt" ||
  { echo "generate failed"; cat "$tmp/err.txt"; exit 1; }
cmp "$tmp/out.txt" "$DATA/text/lily_story.txt" ||
  { echo "output differs from lily_story.txt"; diff "$tmp/out.txt" "$DATA/text/lily_story.txt" | head; exit 1; }
grep -q "tokens/s" "$tmp/err.txt" || { echo "no speed on stderr"; exit 1; }

GGUF="$DATA/models/stories260K-gguf/stories260K.gguf"
if [ -f "$GGUF" ]; then
  "$QTOOL" generate "$GGUF" -n 256 --threads 1 >"$tmp/gguf.txt" 2>"$tmp/err.txt" ||
    { echo "generate (gguf) failed"; cat "$tmp/err.txt"; exit 1; }
  cmp "$tmp/gguf.txt" "$DATA/text/lily_story.txt" || { echo "gguf output differs"; exit 1; }
fi

# a prompt is echoed and continued; sampling with a seed is repeatable
"$QTOOL" generate "$MODEL" -p "Once upon a time" -n 16 >"$tmp/p.txt" 2>/dev/null || exit 1
head -c 16 "$tmp/p.txt" | grep -q "^Once upon a time$" || { echo "prompt not echoed"; exit 1; }
"$QTOOL" generate "$MODEL" -n 40 --temp 0.9 --seed 7 >"$tmp/s1.txt" 2>/dev/null || exit 1
"$QTOOL" generate "$MODEL" -n 40 --temp 0.9 --seed 7 >"$tmp/s2.txt" 2>/dev/null || exit 1
cmp -s "$tmp/s1.txt" "$tmp/s2.txt" || { echo "seeded sampling not repeatable"; exit 1; }

# a context capped by a sliding window: the message does not offer --ctx
mkdir "$tmp/sw" && cp "$MODEL"/*.safetensors "$MODEL"/tokenizer* "$tmp/sw/" &&
  sed 's/^{/{"sliding_window": 64, /' "$MODEL/config.json" >"$tmp/sw/config.json" || exit 1
"$QTOOL" generate "$tmp/sw" -n 100 >/dev/null 2>"$tmp/sw.txt"; rc=$?
[ $rc = 2 ] && grep -q "sliding window" "$tmp/sw.txt" && ! grep -q -- "--ctx" "$tmp/sw.txt" ||
  { echo "window-capped context: exit $rc"; cat "$tmp/sw.txt"; exit 1; }

# usage errors exit 2, a missing model exits 2 (bad input)
"$QTOOL" generate >/dev/null 2>&1; [ $? = 2 ] || { echo "no MODEL: expected exit 2"; exit 1; }
"$QTOOL" generate "$MODEL" -n x >/dev/null 2>&1; [ $? = 2 ] || { echo "bad -n: expected exit 2"; exit 1; }
"$QTOOL" generate "$tmp/none" >/dev/null 2>&1; rc=$?
[ $rc = 1 ] || [ $rc = 2 ] || { echo "missing model: exit $rc"; exit 1; }
echo ok
