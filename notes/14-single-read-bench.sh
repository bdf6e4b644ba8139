#!/bin/bash
# cp -r + sync, base (two reads) and single-read convert, each ending with the output fsync'd (convert fsyncs);
# page cache warm; sync before each; order alternated. %R = minor page faults (pages of the mapped input touched).
cd /tmp/struct-bench
cat synth-bf16/* > /dev/null
for round in 1 2 3; do
  echo "round $round load $(cut -d' ' -f1-3 /proc/loadavg)"
  rm -rf cpy; sync; s=$(date +%s.%N); cp -r synth-bf16 cpy; sync; e=$(date +%s.%N); echo "cp -r + sync $(echo "$e - $s" | bc) s"; rm -rf cpy
  order="base new"; [ $round = 2 ] && order="new base"
  for b in $order; do
    q=/tmp/struct-base/build/qtool; [ $b = new ] && q=/work/wt-struct/build/qtool
    rm -rf out-$b; sync
    /usr/bin/time -f "$b wall %e s, maxrss %M KiB, minor faults %R, major %F" $q convert --threads 2 synth-bf16 out-$b 2>&1 | grep -v "^$"
  done
  cmp out-base/model.safetensors out-new/model.safetensors && cmp out-base/config.json out-new/config.json && echo "outputs identical"
  rm -rf out-base out-new
done
