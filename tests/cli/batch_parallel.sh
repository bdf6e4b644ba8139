#!/usr/bin/env bash
# CLI test of the GNU parallel path of docs/BATCH.md: shards run by
# `parallel --sshlogin` (here the local machine, ':'), each keeping its rows
# with --results-to, merged by `qtool-batch --merge`: every job done once,
# and the merged summary is what one machine prints (the seconds aside).
set -u
. "$(dirname "$0")/lib/batch.sh"
command -v parallel > /dev/null || { echo "skipped: GNU parallel is not installed (make test-slurm installs it)"; exit 77; }
parallel --version 2> /dev/null | grep -q 'GNU parallel' || { echo "skipped: 'parallel' is not GNU parallel"; exit 77; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT

for d in local par; do
  mkdir -p "$T/$d/in"
  for v in f32 f16; do cp -r "$D/stories260K-$v" "$T/$d/in/"; done
  chmod -R u+w "$T/$d/in"
  printf '{"outputs": "out/{model}-{scheme}", "models": ["in/stories260K-f32", "in/stories260K-f16"], "schemes": ["nf4", "int8", "q8"]}\n' > "$T/$d/m.json"
done
(cd "$T/local" && "$B" m.json > table 2> err) || { cat "$T/local/err"; fail "single-machine run"; }

# 3 shards over 2 job slots of the local "host" ':' (as over ssh hosts)
(cd "$T/par" && mkdir shards &&
  parallel --will-cite --sshlogin 2/: --workdir . \
    "$B" m.json --shard {#}/3 --summary shards/s-{#}-of-3 --results-to shards/{#}-of-3.results \
    ::: a b c > /dev/null 2> err) || { cat "$T/par/err"; fail "parallel run"; }
ls "$T/par/shards/"{1,2,3}-of-3.results > /dev/null || fail "a shard's results are missing"
(cd "$T/par" && "$B" m.json --merge shards > table 2> err2) || { cat "$T/par/err2"; fail "merge"; }
grep -q '^6 jobs: 6 converted, 0 up to date, 0 failed' "$T/par/table" || { cat "$T/par/table"; fail "merged tally"; }
for o in stories260K-f32-nf4 stories260K-f16-int8 stories260K-f16-q8; do
  cmp -s "$T/local/out/$o/model.safetensors" "$T/par/out/$o/model.safetensors" || fail "$o differs"
done
cmp -s <(mask_table "$T/local/table") <(mask_table "$T/par/table") ||
  { diff <(mask_table "$T/local/table") <(mask_table "$T/par/table"); fail "merged table differs"; }
cmp -s <(mask_csv "$T/local/batch-summary.csv") <(mask_csv "$T/par/batch-summary.csv") || fail "merged CSV differs"
cmp -s <(mask_json "$T/local/batch-summary.json") <(mask_json "$T/par/batch-summary.json") ||
  { diff "$T/local/batch-summary.json" "$T/par/batch-summary.json"; fail "merged JSON differs"; }
# a shard that never ran: its jobs are 'interrupted', exit 1
rm "$T/par/shards/2-of-3.results"
(cd "$T/par" && "$B" m.json --merge shards --summary partial > t3 2>&1); rc=$?
[ $rc = 1 ] || fail "merge with a missing shard: exit $rc, expected 1"
grep -q '^6 jobs: 4 converted, 0 up to date, 0 failed, 2 interrupted' "$T/par/t3" || { cat "$T/par/t3"; fail "missing shard tally"; }
echo ok
