#!/bin/sh
# Instruction counts of the term layer's calls (see bench/term_insn.c).
#
#   sh bench/term_insn.sh [BUILD_DIR]
#
# Prints one line per op_* function of term_insn: the instructions inside
# it (callees included) per round, under callgrind.
set -eu
BUILD=${1:-build/release}
OUT=$(mktemp "${TMPDIR:-/tmp}/term_insn.XXXXXX")
trap 'rm -f "$OUT"' EXIT INT TERM
valgrind -q --tool=callgrind --callgrind-out-file="$OUT" \
  --toggle-collect='op_*' "$BUILD/bench/term_insn" >/dev/null
callgrind_annotate --inclusive=yes --threshold=100 "$OUT" 2>/dev/null |
  sed -n 's/^ *\([0-9,]*\) ([^)]*)  [^ ]*:op_\([a-z]*\) .*/\2 \1/p' |
  tr -d , | awk '{ printf "%-10s %10.0f\n", $1, $2 / 200 }'
