# scripts/qtool-batch-slurm.sh: the --slurm path of scripts/qtool-batch
# (sourced by it; docs/BATCH.md). Submits one Slurm array job, task i
# running `qtool-batch MANIFEST --shard i/N -j J`, and a job depending on
# the whole array (afterany) that runs `qtool-batch MANIFEST --merge RUN`,
# which writes the summary exactly as one machine would. Each submission
# gets its own folder RUN under --slurm-dir with the task scripts, the
# tasks' logs (task-I.log), their results (shard-I-of-N.results) and the
# merge's log (merge.log).
#
# Uses the variables of qtool-batch: manifest, jobs, njobs, cpus, tasks,
# array_par, slurm_dir, wait_opt, summary, sbatch_opts, Q, self, S, prog,
# bench_opt, BENCH_CTX.

# The --mem request in MiB for a task running `jobs` conversions at a time:
# jobs x the largest job's estimated peak x 1.25, plus 256 MiB for the
# script, xargs and `qtool inspect` (measurements: docs/BATCH.md).
slurm_mem_mib() {
  local peak
  "$Q" batch-plan "$manifest" --estimate --threads "$cpus" > "$S/estimate" ||
    die "cannot estimate the jobs' memory (qtool batch-plan --estimate)"
  peak=$(sed -n 's/^#max_peak_bytes\t//p' "$S/estimate")
  [ -n "$peak" ] || die "qtool batch-plan --estimate gave no #max_peak_bytes (too old)"
  awk -v j="$jobs" -v p="$peak" 'BEGIN { m = (j * p * 1.25) / 1048576 + 256; printf "%d", m == int(m) ? m : int(m) + 1 }'
}

# The command line of a qtool-batch run, shell-quoted, for a task script.
slurm_cmd() {
  local a out=""
  for a in "$@"; do out+=" $(printf '%q' "$a")"; done
  printf '%s' "${out# }"
}

# slurm_script FILE COMMAND: a batch script that runs COMMAND (already quoted).
slurm_script() {
  { echo '#!/usr/bin/env bash'
    echo "# written by $prog --slurm; see docs/BATCH.md"
    echo "export OMP_NUM_THREADS=$cpus"
    echo "exec $2"
  } > "$1" || return 1
  chmod +x "$1"
}

slurm_submit() {
  command -v sbatch > /dev/null 2>&1 ||
    die "sbatch not found on PATH: --slurm needs Slurm's client commands (Debian: slurm-client), or run without --slurm"
  [ "$njobs" -gt 0 ] || die "the manifest has no jobs"
  local ntasks mem run extra=() aid mid rc
  ntasks=${tasks:-$(( (njobs + jobs - 1) / jobs ))}
  [ "$ntasks" -gt "$njobs" ] && ntasks=$njobs
  mem=$(slurm_mem_mib) || exit $?
  [ -n "$bench_opt" ] && extra+=(--bench "$bench_opt")
  [ -n "${BENCH_CTX:-}" ] && extra+=(--bench-ctx "$BENCH_CTX")

  # 1. the submission's folder and its two scripts
  mkdir -p -- "$slurm_dir" || fail "cannot create --slurm-dir '$slurm_dir'"
  run=$(mktemp -d "$slurm_dir/run.XXXXXX") || fail "cannot create a folder in '$slurm_dir'"
  run=$(cd "$run" && pwd)
  local qabs
  qabs=$(cd "$(dirname -- "$Q")" && pwd)/$(basename -- "$Q")
  slurm_script "$run/task.sh" "$(slurm_cmd bash "$self" "$manifest" -j "$jobs" \
      --qtool "$qabs" "${extra[@]}")"' --shard "$SLURM_ARRAY_TASK_ID/'"$ntasks"'"'` \
      `' --summary '"$(printf '%q' "$run")"'/shard-"$SLURM_ARRAY_TASK_ID"-of-'"$ntasks"` \
      `' --results-to '"$(printf '%q' "$run")"'/shard-"$SLURM_ARRAY_TASK_ID"-of-'"$ntasks"'.results' &&
  slurm_script "$run/merge.sh" "$(slurm_cmd bash "$self" "$manifest" --merge "$run" \
      --summary "$summary" --qtool "$qabs" "${extra[@]}")" ||
    { rm -rf "$run"; fail "cannot write the task scripts in '$run'"; }

  # 2. the array: our --mem first, so that one in SBATCH-OPTIONS wins
  aid=$(sbatch --parsable --chdir="$PWD" --job-name=qtool-batch \
          --array="1-$ntasks${array_par:+%$array_par}" --cpus-per-task="$cpus" --mem="${mem}M" \
          --output="$run/task-%a.log" "${sbatch_opts[@]}" "$run/task.sh" 2> "$S/sbatch.err")
  if [ $? != 0 ] || [ -z "$aid" ]; then
    rm -rf "$run"
    fail "sbatch refused the array job: $(tr '\n' ' ' < "$S/sbatch.err")"
  fi
  aid=${aid%%;*}
  echo "$prog: array job $aid: $ntasks tasks (shard I/$ntasks, $jobs at a time, $cpus cpus," \
       "--mem ${mem}M each), $njobs jobs; logs in $run" >&2

  # 3. the merge, once every task has ended (done, failed or cancelled)
  local wflag=()
  [ "$wait_opt" = 1 ] && wflag=(--wait)
  sbatch --parsable "${wflag[@]}" --chdir="$PWD" --job-name=qtool-batch-merge \
    --dependency="afterany:$aid" --cpus-per-task=1 --mem=256M --output="$run/merge.log" \
    "${sbatch_opts[@]}" "$run/merge.sh" > "$S/merge.id" 2> "$S/sbatch.err"
  rc=$?
  mid=$(head -1 "$S/merge.id"); mid=${mid%%;*}
  if [ -z "$mid" ]; then
    scancel "$aid" 2> /dev/null
    rm -rf "$run"
    fail "sbatch refused the merge job (array job $aid cancelled): $(tr '\n' ' ' < "$S/sbatch.err")"
  fi
  echo "$prog: merge job $mid (after $aid) writes $summary.csv, $summary.json; its table in $run/merge.log" >&2
  [ "$wait_opt" = 1 ] || return 0
  # 4. --wait: the merge's table and the batch's status
  [ -f "$run/merge.log" ] && cat "$run/merge.log"
  [ $rc = 0 ] && return 0
  return 1
}
