#!/usr/bin/env bash
# make demo: qtool's main job on a sample model (MODEL=DIR for another).
set -eu
BUILD=${BUILD:-build}
MODEL=${MODEL:-../shared/data/models/stories260K-f32}
Q="$BUILD/qtool"
if [ ! -d "$MODEL" ] && [ ! -f "$MODEL" ]; then
  echo "demo: no model at '$MODEL'; see samples/README.md for where to get one, then: make demo MODEL=DIR" >&2
  exit 2
fi
echo "== qtool inspect $MODEL"
"$Q" inspect "$MODEL"
