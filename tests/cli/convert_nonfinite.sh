#!/usr/bin/env bash
# CLI test of convert's NaN / Inf policy: stories260K-f32 with one NaN and
# two Inf written into a q_proj weight is refused (exit 2, the counts and
# the tensor named, nothing written) unless --allow-nonfinite; in bf16 too.
# (An Inf block absmax cannot be double-quantized: with Inf, only
# --no-double-quant converts.)
set -u
Q=${QTOOL:-build/qtool}
D=${QT_DATA:-../shared/data}/models
[ -d "$D/stories260K-f32" ] || { echo "skipped: $D/stories260K-f32 is absent"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cp -r "$D/stories260K-f32" "$T/in"
f="$T/in/model.safetensors"
name=model.layers.1.self_attn.q_proj.weight
# the header: u64 length, then JSON with "<name>":{...,"data_offsets":[begin,end]}
hlen=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
begin=$(head -c $((8 + hlen)) "$f" | grep -ao "\"$name\":{[^}]*}" | sed 's/.*"data_offsets":\[\([0-9]*\),.*/\1/')
[ -n "$begin" ] || fail "cannot find $name in the header"
put() { printf "$2" | dd of="$f" bs=1 seek=$((8 + hlen + begin + $1)) conv=notrunc status=none; }
put 0 '\x00\x00\xc0\x7f'   # NaN (fp32 0x7fc00000, little-endian)
put 40 '\x00\x00\x80\x7f'  # +Inf
put 400 '\x00\x00\x80\xff' # -Inf

"$Q" convert --quiet "$T/in" "$T/out" 2> "$T/err"; rc=$?
[ $rc = 2 ] || fail "NaN/Inf not refused with exit 2 (rc $rc): $(cat "$T/err")"
grep -q "tensor '$name': 1 NaN and 2 Inf values" "$T/err" || fail "message: $(cat "$T/err")"
[ -e "$T/out" ] && fail "output written despite the refusal"
"$Q" convert --quiet --compute-dtype bf16 "$T/in" "$T/out" 2> "$T/err"; rc=$?
[ $rc = 2 ] && grep -q "1 NaN and 2 Inf" "$T/err" || fail "bf16 compute: rc $rc $(cat "$T/err")"
"$Q" convert --quiet --allow-nonfinite "$T/in" "$T/out" 2> "$T/err" && fail "Inf double-quantized"
grep -q "double quantization failed" "$T/err" || fail "message: $(cat "$T/err")"
"$Q" convert --quiet --allow-nonfinite --no-double-quant "$T/in" "$T/out" || fail "--allow-nonfinite refused"
"$Q" inspect "$T/out" > /dev/null || fail "output not readable"
echo ok
