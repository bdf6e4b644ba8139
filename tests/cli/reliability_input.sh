#!/usr/bin/env bash
# Issue 12, hostile or careless inputs (docs/RELIABILITY.md, "Careless and
# hostile use"): secrets beside or linked into IN (item 2), FIFOs where files
# belong (4), endless text (5), files beyond their reader's bound (6), empty
# or NUL-cut indexes (13), configs the runtime refuses (14), NaN weights in
# generate (15), missing inputs (17). Each case: the exit code, a message
# naming the file and the cause, no OUT and no temporary folder left.
set -u
. "$(dirname "$0")/lib/reliability.bash"
need_data
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
nothing_left() { [ ! -e "$T/o" ] && ! ls -a "$T" | grep -q qtool-tmp || fail "output or temporary folder left"; }
fresh() { rm -rf "$T/in" "$T/o"; cp -r "$M" "$T/in"; }

# item 2: only the known model files are copied, never more readable than at the source
fresh
echo 'root:$6$secret' > "$T/shadow" && chmod 0640 "$T/shadow"
ln -sf "$T/shadow" "$T/in/tokenizer.model"
expect 2 "'$T/in/tokenizer.model' is a symlink leading out of the model folder (I6" \
  "$Q" convert --quiet "$T/in" "$T/o"
nothing_left
echo secret > "$T/in/secret.txt"
chmod 0600 "$T/in/tokenizer_config.json"
"$Q" convert --quiet --follow-symlinks "$T/in" "$T/o" || fail "--follow-symlinks"
[ ! -e "$T/o/secret.txt" ] || fail "secret.txt copied"
[ "$(stat -c %a "$T/o/tokenizer_config.json")" = 600 ] || fail "a 0600 file copied $(stat -c %a "$T/o/tokenizer_config.json")"
m=$(stat -c %a "$T/o/tokenizer.model")
[ $((0$m & 077)) = 0 ] || [ "$(stat -c %g "$T/shadow")" = "$(stat -c %g "$T/o/tokenizer.model")" ] \
  || fail "a 0640 file of another group copied $m"
rm -rf "$T/o"
rm "$T/in/tokenizer.model" && cp "$M/tokenizer.model" "$T/in/"
sed 's/^{/{"token": "secret", /' "$M/config.json" > "$T/secret.json"   # a valid config elsewhere
mv "$T/in/config.json" "$T/config.json"; ln -s "$T/secret.json" "$T/in/config.json"
expect 2 "'$T/in/config.json' is a symlink leading out of the model folder (I6" \
  "$Q" convert --quiet "$T/in" "$T/o"
nothing_left
rm "$T/in/config.json"; mv "$T/config.json" "$T/in/config.json"
chmod 0600 "$T/in/config.json"; chmod 0750 "$T/in"  # the rewritten config and OUT itself too
"$Q" convert --quiet --follow-symlinks "$T/in" "$T/o" || fail "modes"
[ "$(stat -c %a "$T/o/config.json")" = 600 ] || fail "a 0600 config.json written $(stat -c %a "$T/o/config.json")"
[ "$(stat -c %a "$T/o")" = 750 ] || fail "OUT of a 0750 IN is $(stat -c %a "$T/o")"
rm -rf "$T/o"
( umask 077; "$Q" convert --quiet "$T/in" "$T/o" ) || fail "umask 077"   # and the umask holds
[ "$(stat -c %a "$T/o")" = 700 ] && [ $((0$(stat -c %a "$T/o/tokenizer.json") & 077)) = 0 ] \
  || fail "umask 077: OUT $(stat -c %a "$T/o"), tokenizer.json $(stat -c %a "$T/o/tokenizer.json")"
chmod 0755 "$T/in"; rm -rf "$T/o"
ln -sf tokenizer.json "$T/in/tokenizer.model"   # a symlink inside IN is fine
"$Q" convert --quiet "$T/in" "$T/o" || fail "symlink inside IN refused"
cmp -s "$T/o/tokenizer.model" "$M/tokenizer.json" || fail "symlink inside IN: not its target"

# item 4: a FIFO as config.json, model.safetensors or a shard never hangs
fresh; rm "$T/in/config.json"; mkfifo "$T/in/config.json"
expect 2 "config.json' is a FIFO, not a regular file" "$Q" inspect "$T/in"
expect 2 "config.json' is a FIFO, not a regular file" "$Q" convert --quiet "$T/in" "$T/o"
nothing_left
fresh; rm "$T/in/model.safetensors"; mkfifo "$T/in/model.safetensors"
for cmd in "inspect" "convert --quiet" "generate -n 2" "bench ppl --text $TXT --no-cache"; do
  out=; [ "${cmd%% *}" = convert ] && out=$T/o
  expect 2 "model.safetensors' is a FIFO, not a regular file" "$Q" $cmd "$T/in" $out
done
nothing_left
fresh; mkdir "$T/sh"
"$Q" convert --quiet --scheme fp32 --max-shard-size 300K "$M" "$T/sh/m" || fail "make shards"
s=$(ls "$T/sh/m" | grep -- '-of-' | head -1); rm "$T/sh/m/$s"; mkfifo "$T/sh/m/$s"
expect 2 "$s' is a FIFO, not a regular file" "$Q" convert --quiet "$T/sh/m" "$T/o"
nothing_left

# item 5: one text rule for validate and bench ppl: a regular file under 2 GiB
expect 2 "'/dev/zero' is a character device, not a regular file" "$Q" bench ppl "$M" --text /dev/zero --no-cache
expect 2 "'/dev/zero' is a character device, not a regular file" "$Q" validate "$M" "$M" --calib /dev/zero --no-calib-cache

# item 6: tokenizer.json bounded where its reader is (256 MiB); a FIFO or folder is not left out silently
fresh; rm "$T/in/tokenizer.json"; truncate -s 1G "$T/in/tokenizer.json"
expect 2 "tokenizer.json' is 1073741824 bytes, more than the 256 MiB allowed" "$Q" convert --quiet "$T/in" "$T/o"
nothing_left
rm "$T/in/tokenizer.json"; mkfifo "$T/in/tokenizer.json"
expect 2 "tokenizer.json' is a FIFO, not a regular file" "$Q" convert --quiet "$T/in" "$T/o"
rm "$T/in/tokenizer.json"; mkdir "$T/in/tokenizer.json"
expect 2 "tokenizer.json' is a folder, not a regular file" "$Q" convert --quiet "$T/in" "$T/o"
nothing_left

# item 13: an empty weight_map, a shard name cut by \u0000
mkdir -p "$T/ix"; cp "$M/config.json" "$T/ix/"; cp "$M/model.safetensors" "$T/ix/model-00001-of-00001.safetensors"
echo '{"metadata": {}, "weight_map": {}}' > "$T/ix/model.safetensors.index.json"
expect 2 'model.safetensors.index.json: "weight_map" is empty (I5)' "$Q" convert --quiet "$T/ix" "$T/o"
printf '{"weight_map": {"model.norm.weight": "model-00001-of-00001.safetensors\\u0000x"}}' \
  > "$T/ix/model.safetensors.index.json"
expect 2 'index.json: a string holds a \\u0000 escape' "$Q" convert --quiet "$T/ix" "$T/o"
nothing_left

# item 14: convert applies the runtime's config rules before writing
for kv in '"hidden_size": 0' '"hidden_size": -64' '"hidden_size": "64"' '"hidden_size": 1e12' \
          '"num_key_value_heads": 0' '"num_key_value_heads": 3' '"vocab_size": 100' '"rope_theta": 0'; do
  fresh
  key=${kv%%:*}; sed -i "s/$key: *[^,}]*/$kv/" "$T/in/config.json"
  grep -qF "$kv" "$T/in/config.json" || fail "could not set $kv"
  expect 2 "input '$T/in': .*config.json\|input '$T/in': LlamaForCausalLM" "$Q" convert --quiet "$T/in" "$T/o"
  nothing_left
done

# item 15: generate on NaN weights says so and fails (a block of 0xff bytes: NaN floats)
fresh
size=$(stat -c %s "$T/in/model.safetensors")
head -c 4096 /dev/zero | tr '\0' '\377' | dd of="$T/in/model.safetensors" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect 2 "model '$T/in': the logits at position 1 are not finite\|is not finite" "$Q" generate "$T/in" -n 4

# item 17: a missing input is a usage error (2) for every command
expect 2 "No such file" "$Q" convert --quiet "$T/nope" "$T/o"
expect 2 "No such file" "$Q" dequant --quiet "$T/nope" "$T/o"
expect 2 "No such file" "$Q" inspect "$T/nope"
expect 2 "model '$T/nope': No such file" "$Q" generate "$T/nope" -n 2
expect 2 "model '$T/nope': No such file" "$Q" validate "$T/nope" "$M" --calib "$TXT"
expect 2 "text '$T/nope': No such file" "$Q" validate "$M" "$M" --calib "$T/nope"
expect 2 "model '$T/nope': No such file" "$Q" bench ppl "$M" "$T/nope" --text "$TXT"
expect 2 "text '$T/nope': No such file" "$Q" bench ppl "$M" --text "$T/nope"
nothing_left
echo ok
