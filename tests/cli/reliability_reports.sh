#!/usr/bin/env bash
# Issue 12 item 8, report files (docs/RELIABILITY.md, "Careless and hostile
# use"): a report path that cannot be written is refused before any work
# (exit 2, the file, the folder and errno named, no OUT written); on a full
# disk a report is not left empty or cut and an older one stays whole
# (written to a temporary file, then renamed), exit 1 naming the file.
# The full-disk part needs root and a tmpfs mount; skipped (saying so)
# otherwise.
set -u
. "$(dirname "$0")/lib/reliability.bash"
need_data
T=$(mktemp -d)
MNT=""
cleanup() { [ -n "$MNT" ] && umount "$MNT" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

# checked before the work: nothing written, exit 2
bad="cannot write into the folder '/nonexistent': No such file or directory"
expect 2 "--report '/nonexistent/r.json': $bad" "$Q" convert --quiet "$M" "$T/o" --report /nonexistent/r.json
[ ! -e "$T/o" ] || fail "OUT written although the report cannot be"
expect 2 "--json '/nonexistent/p.json': $bad" "$Q" bench ppl "$M" --text "$TXT" --no-cache --json /nonexistent/p.json
expect 2 "--plot '/nonexistent/p.svg': $bad" "$Q" bench ppl "$M" --text "$TXT" --no-cache --plot /nonexistent/p.svg
expect 2 "--report '/nonexistent/v.json': $bad" "$Q" validate "$M" "$M" --calib "$TXT" --no-calib-cache --report /nonexistent/v.json
expect 2 "--html '/nonexistent/v.html': $bad" "$Q" validate "$M" "$M" --calib "$TXT" --no-calib-cache --html /nonexistent/v.html
expect 2 "--report '$T': is a folder" "$Q" convert --quiet "$M" "$T/o" --report "$T"
"$Q" convert --quiet "$M" "$T/o" --report "$T/r.json" || fail "a good report path"
grep -q '"tensors"' "$T/r.json" || fail "report content"

# full disk: an older report stays whole, no temporary file left
if [ "$(id -u)" != 0 ]; then echo "skipped the full-disk part: needs root (tmpfs mount)"; echo ok; exit 0; fi
mkdir -p "$T/full"
mount -t tmpfs -o size=64k tmpfs "$T/full" 2>/dev/null || { echo "skipped the full-disk part: cannot mount a tmpfs"; echo ok; exit 0; }
MNT=$T/full
for f in r.json p.json p.svg v.json v.html; do echo old > "$T/full/$f"; done
dd if=/dev/zero of="$T/full/fill" bs=4k 2>/dev/null
check_old() { # the older report is whole, nothing else was left
  [ "$(cat "$T/full/$1")" = old ] || fail "$1 overwritten or emptied: $(head -c 80 "$T/full/$1")"
  [ "$(ls -A "$T/full" | sort | tr '\n' ' ')" = "fill p.json p.svg r.json v.html v.json " ] \
    || fail "left behind: $(ls -A "$T/full")"
}
rm -rf "$T/o"
expect 1 "No space left on device (writing '$T/full/r.json')" "$Q" convert --quiet "$M" "$T/o" --report "$T/full/r.json"
check_old r.json
expect 1 "No space left on device (writing '$T/full/p.json')" "$Q" bench ppl "$M" --text "$TXT" --no-cache --json "$T/full/p.json"
check_old p.json
expect 1 "cannot write '$T/full/p.svg.tmp.[0-9]*': No space left on device" "$Q" bench ppl "$M" --text "$TXT" --no-cache --plot "$T/full/p.svg"
check_old p.svg
expect 1 "No space left on device (writing '$T/full/v.json')" "$Q" validate "$M" "$M" --calib "$TXT" --no-calib-cache --report "$T/full/v.json"
check_old v.json
echo ok
