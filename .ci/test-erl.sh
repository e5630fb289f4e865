#!/bin/sh
# make test-erl: runs the tests in test_erl/ against the built node.
#
#   sh .ci/test-erl.sh BUILD
#
# Common Test suites (*_SUITE.erl) run through `rebar3 ct` from the top of
# the tree; ExUnit scripts (*_test.exs, each calling ExUnit.start()) run
# with `elixir`.  They find what they test through two absolute paths in
# the environment: CN_ROOT (the top of the tree) and CN_BUILD (the build
# directory, holding the node program as $CN_BUILD/cnode).  rebar3's
# pre_hook runs make again, so this make's flags (MAKEFLAGS and friends)
# are dropped first.  When CN_TEST_SUMMARY names a file, the counts read
# off each runner's closing line are appended to it, as
# c_src/tests/run.sh does.  Logs go to BUILD/test-erl/.
build=${1:?usage: test-erl.sh BUILD}
CN_ROOT=$(pwd)
CN_BUILD=$(cd "$build" && pwd)
export CN_ROOT CN_BUILD
logdir=$CN_BUILD/test-erl
mkdir -p "$logdir"
unset MAKEFLAGS MFLAGS MAKELEVEL
REBAR_COLOR=none
export REBAR_COLOR

status=0

# count LOG: prints "PASSED FAILED" read off a CT or ExUnit closing line.
count() {
  awk '
    /^All [0-9]+ tests? passed/ { p += $2 }
    /^Failed [0-9]+ tests?\. Passed [0-9]+ tests?/ { f += $2; p += $5 }
    /^[0-9]+ tests?, [0-9]+ failures?/ { f += $3; p += $1 - $3 }
    /^[0-9]+ doctests?, [0-9]+ tests?, [0-9]+ failures?/ {
      f += $5; p += $1 + $3 - $5 }
    END { printf "%d %d\n", p, f }' "$1"
}

# run NAME CMD...: runs one runner, keeps its output in a log and its counts.
run() {
  name=$1
  shift
  echo "==== $name: $*"
  { "$@"; echo $? >"$logdir/$name.rc"; } 2>&1 | tee "$logdir/$name.log"
  rc=$(cat "$logdir/$name.rc")
  counts=$(count "$logdir/$name.log")
  if [ "$rc" -ne 0 ]; then
    status=1
    # A runner that failed before its closing line still counts as failed.
    case $counts in *" 0") counts="${counts% 0} 1" ;; esac
  fi
  if [ -n "${CN_TEST_SUMMARY:-}" ]; then
    echo "$counts" >>"$CN_TEST_SUMMARY"
  fi
}

if ls test_erl/*_SUITE.erl >/dev/null 2>&1; then
  # rebar3 copies test_erl/ under _build and never deletes from the copy,
  # so a removed or renamed suite would live on there.  (Since src/ made
  # the tree the application cnode, it keeps a second copy in its lib.)
  rm -rf _build/test/extras _build/test/lib/cnode/test_erl
  run ct rebar3 ct
fi
for t in test_erl/*_test.exs; do
  [ -e "$t" ] || continue
  run "$(basename "$t" .exs)" elixir "$t"
done
exit $status
