#!/usr/bin/env bash
# Fails when a file includes a module header against the dependency direction
# of docs/ARCHITECTURE.md (cli -> convert -> calib -> model -> formats ->
# quant -> common; bench uses calib, model, formats, quant).
set -u
cd "$(dirname "$0")/.."
declare -A allowed=(
  [common]="common"
  [quant]="common quant"
  [formats]="common quant formats"
  [model]="common quant formats model"
  [calib]="common quant formats model calib"
  [convert]="common quant formats model calib convert"
  [bench]="common quant formats model calib bench"
  [cli]="common quant formats model calib convert bench cli"
)
bad=0
for mod in "${!allowed[@]}"; do
  [ -d "$mod" ] || continue
  for f in "$mod"/*.c "$mod"/*.h; do
    [ -f "$f" ] || continue
    while IFS= read -r inc; do
      dep=${inc%%/*}
      case " ${allowed[$mod]} " in
        *" $dep "*) ;;
        *) echo "check-deps: $f includes \"$inc\": $mod may not depend on $dep" >&2; bad=1 ;;
      esac
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z]*\/[^"]*\)".*/\1/p' "$f")
    # cJSON / zstd stay inside formats
    if grep -qE '#[[:space:]]*include[[:space:]]*<(cjson/)?cJSON\.h>' "$f" && [ "$mod" != formats ]; then
      echo "check-deps: $f includes cJSON: only formats/ may" >&2; bad=1
    fi
    if grep -qE '#[[:space:]]*include[[:space:]]*<zstd\.h>' "$f" && [ "$mod" != formats ]; then
      echo "check-deps: $f includes zstd: only formats/ may" >&2; bad=1
    fi
  done
done
[ $bad = 0 ] && echo "check-deps: ok"
exit $bad
