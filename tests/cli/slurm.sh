#!/usr/bin/env bash
# `make test-slurm`: scripts/qtool-batch --slurm against a live one-node
# Slurm started here (munged, slurmctld, slurmd as root, state in a mktemp
# folder, stopped by PID and removed at the end, even on failure).
# Over copies of stories260K f32/f16/bf16 and one broken input, x nf4/int8:
# every output equals a plain `qtool convert`; the broken input fails alone
# and is reported in the merged summary, which is exactly what one machine
# prints (table, CSV, JSON; the seconds aside); a rerun converts nothing; a
# task cancelled with scancel while its convert writes (a synthetic model)
# leaves no temporary folder and is redone by the next run; a missing sbatch, a refused submission and a
# manifest with colliding files are refused, with nothing left behind.
# Skipped (77) unless QT_TEST_SLURM=1, as root, with Slurm and munge.
set -u
[ "${QT_TEST_SLURM:-0}" = 1 ] || { echo "skipped: set QT_TEST_SLURM=1 (make test-slurm)"; exit 77; }
[ "$(id -u)" = 0 ] || { echo "skipped: starting slurmd needs root"; exit 77; }
for c in munged slurmctld slurmd sbatch squeue scancel sinfo; do
  command -v $c > /dev/null 2>&1 || { echo "skipped: $c is not installed (make test-slurm installs it)"; exit 77; }
done
. "$(dirname "$0")/lib/batch.sh"
t_start=$(date +%s)

# ---- a one-node cluster --------------------------------------------------------
W=$(mktemp -d /tmp/qtool-slurm.XXXXXX)
stop_daemons() {
  local f p
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    p=$(cat "$W/$f" 2> /dev/null) || continue
    kill "$p" 2> /dev/null
    for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.2; done
    kill -9 "$p" 2> /dev/null
  done
  rm -rf "$W"
}
trap stop_daemons EXIT
fail() {
  echo "FAIL: $*"
  for l in "$W"/log/*.log; do echo "--- $l"; tail -5 "$l"; done
  exit 1
}
mkdir -p "$W/munge" "$W/spool/ctld" "$W/spool/d" "$W/log" "$W/tmp"
chmod 700 "$W/munge"
head -c 128 /dev/urandom > "$W/munge/munge.key"
chmod 600 "$W/munge/munge.key"
munged --force --key-file="$W/munge/munge.key" --socket="$W/munge/sock" \
  --pid-file="$W/munge/munged.pid" --log-file="$W/log/munged.log" --seed-file="$W/munge/seed" ||
  fail "munged did not start"
H=$(hostname -s) P=$((20000 + RANDOM % 20000))
MEM=$(( $(awk '/MemTotal/ { print $2 }' /proc/meminfo) / 1024 - 512 ))
cat > "$W/slurm.conf" <<EOC
ClusterName=qtooltest
SlurmctldHost=$H
SlurmctldPort=$P
SlurmdPort=$((P + 1))
AuthType=auth/munge
AuthInfo=socket=$W/munge/sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$W/spool/ctld
SlurmdSpoolDir=$W/spool/d
SlurmctldPidFile=$W/slurmctld.pid
SlurmdPidFile=$W/slurmd.pid
SlurmctldLogFile=$W/log/slurmctld.log
SlurmdLogFile=$W/log/slurmd.log
# a container: no cgroup plugins
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
KillWait=5
MinJobAge=2
NodeName=$H CPUs=$(nproc) RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOC
export SLURM_CONF=$W/slurm.conf
slurmctld -f "$SLURM_CONF" || fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || fail "slurmd did not start"
for _ in $(seq 100); do sinfo -h -o %t 2> /dev/null | grep -q idle && break; sleep 0.2; done
sinfo -h -o %t | grep -q idle || fail "the node never became idle: $(sinfo 2>&1)"
echo "slurm up after $(( $(date +%s) - t_start )) s"
export TMPDIR=$W/tmp

# ---- the inputs, twice: one folder for a single-machine run, one for Slurm --------
mk_inputs() {
  mkdir -p "$1/in"
  for v in f32 f16 bf16; do cp -r "$D/stories260K-$v" "$1/in/"; done
  cp -r "$D/stories260K-f32" "$1/in/broken"
  chmod -R u+w "$1/in"
  head -c 3000 "$D/stories260K-f32/model.safetensors" > "$1/in/broken/model.safetensors"
  cat > "$1/m.json" <<'EOJ'
{"outputs": "out/{model}-{scheme}",
 "models": [{"name": "f32", "path": "in/stories260K-f32"},
            {"name": "broken", "path": "in/broken"},
            {"name": "f16", "path": "in/stories260K-f16"},
            {"name": "bf16", "path": "in/stories260K-bf16"}],
 "schemes": ["nf4", {"scheme": "int8"}]}
EOJ
}
mk_inputs "$W/local"
mk_inputs "$W/sl"
(cd "$W/local" && "$B" m.json -j 2 > table 2> err); rc=$?
[ $rc = 1 ] || fail "single-machine run: exit $rc, expected 1"

# ---- the array: 4 tasks of 2 jobs, merged --------------------------------------------
t0=$(date +%s)
(cd "$W/sl" && "$B" m.json --slurm --wait -j 2 --slurm-dir slurm -- --partition=debug > table 2> err); rc=$?
cat "$W/sl/err" "$W/sl/table"
echo "array + merge (8 jobs): $(( $(date +%s) - t0 )) s"
[ $rc = 1 ] || { cat "$W/sl/err" "$W/sl/table"; fail "--slurm --wait: exit $rc, expected 1 (one broken input)"; }
grep -q 'array job [0-9]*: 4 tasks (shard I/4, 2 at a time, 1 cpus, --mem [0-9]*M each)' "$W/sl/err" ||
  { cat "$W/sl/err"; fail "no array job line"; }
ls "$W"/sl/slurm/run.*/task-{1,2,3,4}.log > /dev/null || fail "task logs missing"
for v in f32 f16 bf16; do
  for s in nf4 int8; do
    "$Q" convert --quiet --scheme $s "$W/sl/in/stories260K-$v" "$W/ref-$v-$s" || fail "reference $v $s"
    cmp -s "$W/ref-$v-$s/model.safetensors" "$W/sl/out/$v-$s/model.safetensors" ||
      fail "$v-$s: bytes differ from a plain qtool convert"
  done
done
for s in nf4 int8; do
  [ -e "$W/sl/out/broken-$s" ] && fail "broken-$s: output left"
  grep -q "^\"broken\",\"$s\",failed," "$W/sl/batch-summary.csv" || fail "broken-$s not failed in the merged CSV"
done
[ "$(grep -c ',failed,' "$W/sl/batch-summary.csv")" = 2 ] || fail "not exactly the broken input failed"
# the merged summary is what one machine prints, the seconds aside
cmp -s <(mask_table "$W/local/table") <(mask_table "$W/sl/table") ||
  { diff <(mask_table "$W/local/table") <(mask_table "$W/sl/table"); fail "merged table differs from a single-machine run"; }
cmp -s <(mask_csv "$W/local/batch-summary.csv") <(mask_csv "$W/sl/batch-summary.csv") ||
  { diff "$W/local/batch-summary.csv" "$W/sl/batch-summary.csv"; fail "merged CSV differs"; }
cmp -s <(mask_json "$W/local/batch-summary.json") <(mask_json "$W/sl/batch-summary.json") ||
  { diff "$W/local/batch-summary.json" "$W/sl/batch-summary.json"; fail "merged JSON differs"; }
grep -q '^8 jobs: 6 converted, 0 up to date, 2 failed' "$W/sl/table" || fail "merged tally"

# ---- a rerun converts nothing -------------------------------------------------------------
(cd "$W/sl" && "$B" m.json --slurm --wait -j 2 --slurm-dir slurm > table2 2> err2); rc=$?
[ $rc = 1 ] || fail "rerun: exit $rc, expected 1"
grep -q '^8 jobs: 0 converted, 6 up to date, 2 failed' "$W/sl/table2" || { cat "$W/sl/table2"; fail "rerun converted something"; }

# ---- scancel of a task mid-conversion: no temporary folder, redone by the next run -------------
# a 423 MB synthetic fp32 model, converted on one thread with the scalar
# kernels (several seconds), is job 0 = task 1; cancelled once convert's
# temporary folder exists
"$Q" bench synth "$W/sl/in/syn" --hidden 1024 --intermediate 2816 --layers 4 --heads 16 \
  --kv-heads 4 --vocab 32000 --dtype fp32 > /dev/null 2>&1 || fail "bench synth"
printf '{"outputs": "can/{model}-{scheme}", "models": [{"name": "syn", "path": "in/syn"}, {"name": "f32", "path": "in/stories260K-f32"}], "schemes": ["nf4"]}\n' > "$W/sl/c.json"
(cd "$W/sl" && QT_ISA=ref "$B" c.json --slurm -j 1 --slurm-dir slurm --summary cs > /dev/null 2> err3) ||
  { cat "$W/sl/err3"; fail "submission for scancel"; }
aid=$(sed -n 's/.*array job \([0-9]*\):.*/\1/p' "$W/sl/err3")
[ -n "$aid" ] || fail "no job id: $(cat "$W/sl/err3")"
for _ in $(seq 600); do ls -a "$W/sl/can" 2> /dev/null | grep -q '^\.syn-nf4\.qtool-tmp' && break; sleep 0.05; done
ls -a "$W/sl/can" 2> /dev/null | grep -q '^\.syn-nf4\.qtool-tmp' || fail "syn-nf4 never started converting"
scancel "${aid}_1" || fail "scancel ${aid}_1"
for _ in $(seq 300); do squeue -h 2> /dev/null | grep -q . || break; sleep 0.5; done
squeue -h | grep -q . && fail "jobs still queued: $(squeue)"
ls -a "$W/sl/can" | grep -q 'qtool-tmp' && fail "scancel left a temporary folder: $(ls -a "$W/sl/can")"
ls "$TMPDIR" | grep -q 'qtool-batch' && fail "scancel left a qtool-batch temporary folder"
pgrep -f "$W/sl/in/syn" > /dev/null && fail "processes of the cancelled task still run"
[ -e "$W/sl/can/syn-nf4" ] && fail "the cancelled job left an output"
grep -q '^"syn","nf4",interrupted,' "$W/sl/cs.csv" || { cat "$W/sl/cs.csv"; fail "the cancelled job is not 'interrupted' in the merged summary"; }
grep -q '^"f32","nf4",converted,' "$W/sl/cs.csv" || { cat "$W/sl/cs.csv"; fail "the other task did not convert"; }
(cd "$W/sl" && "$B" c.json --slurm --wait -j 1 --slurm-dir slurm --summary cs > table4 2> err4) ||
  { cat "$W/sl/table4" "$W/sl/err4"; fail "rerun after scancel"; }
grep -q '^2 jobs: 1 converted, 1 up to date, 0 failed' "$W/sl/table4" || { cat "$W/sl/table4"; fail "after scancel: tally"; }
"$Q" convert --quiet "$W/sl/in/syn" "$W/ref-syn" || fail "reference syn"
cmp -s "$W/ref-syn/model.safetensors" "$W/sl/can/syn-nf4/model.safetensors" || fail "redone syn-nf4 differs"

# ---- refusals: nothing submitted, nothing written -------------------------------------------
n_before=$(ls "$W/sl/slurm" | wc -l)
mkdir "$W/bin"   # every command but sbatch
ln -s /usr/bin/* /bin/* "$W/bin/" 2> /dev/null
rm -f "$W/bin/sbatch"
(cd "$W/sl" && PATH=$W/bin "$BASH" "$B" m.json --slurm --slurm-dir slurm > /dev/null 2> e5); rc=$?
[ $rc = 2 ] || fail "no sbatch: exit $rc, expected 2"
grep -q 'sbatch not found' "$W/sl/e5" || { cat "$W/sl/e5"; fail "no sbatch: message"; }
(cd "$W/sl" && "$B" m.json --slurm --slurm-dir slurm -- --partition=nosuchpartition > /dev/null 2> e6); rc=$?
[ $rc = 1 ] || fail "refused submission: exit $rc, expected 1"
grep -q 'sbatch refused the array job: .*[Pp]artition' "$W/sl/e6" || { cat "$W/sl/e6"; fail "refused submission: message"; }
[ "$(ls "$W/sl/slurm" | wc -l)" = "$n_before" ] || fail "a refused submission left its folder"
printf '{"models": ["m"], "schemes": ["nf4", {"scheme": "nf4", "name": "nf4.log"}]}\n' > "$W/sl/c.json"
(cd "$W/sl" && "$B" c.json --slurm --slurm-dir slurm > /dev/null 2> e7); rc=$?
[ $rc = 2 ] || fail "colliding manifest: exit $rc, expected 2"
grep -q 'is written twice' "$W/sl/e7" || { cat "$W/sl/e7"; fail "colliding manifest: message"; }
[ "$(ls "$W/sl/slurm" | wc -l)" = "$n_before" ] || fail "a refused manifest left a folder"
[ -z "$(squeue -h)" ] || fail "a refusal submitted a job"
echo "test-slurm: $(( $(date +%s) - t_start )) s"
echo ok
