#!/usr/bin/env bash
# Lists the N longest C functions (lines from the signature to the closing
# brace) of the project outside tests/, longest first: "LINES FILE FUNCTION".
# Usage: bash notes/longest-functions.sh [N]   (from the worktree root)
n=${1:-10}
git ls-files '*.c' | grep -v '^tests/' |
  xargs ctags --c-kinds=f --fields=+ne -o - 2>/dev/null |
  awk -F'\t' '{ s = ""; e = "";
      for (i = 4; i <= NF; i++) { if ($i ~ /^line:/) s = substr($i, 6); if ($i ~ /^end:/) e = substr($i, 5) }
      if (s != "" && e != "") printf "%d %s %s\n", e - s + 1, $2, $1 }' |
  sort -rn | head -n "$n"
