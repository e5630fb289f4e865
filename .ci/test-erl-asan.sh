#!/bin/sh
# make test-erl-asan: the Erlang and Elixir tests of test_erl/ (all of
# them, through .ci/test-erl.sh) against the node program built with
# AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   sh .ci/test-erl-asan.sh BUILD        (normally build/asan)
#
# The node's stderr goes to BUILD/test-erl/nodes/NAME.log (cn_node.erl);
# those logs are cleared first, and after the run any sanitizer report in
# them (an ASan or LeakSanitizer error, a UBSan "runtime error:") fails the
# run, with the reports printed.  LeakSanitizer runs when a node exits
# normally, so a node that leaks also fails the suites' clean-stop checks
# (exit status 23 instead of 0).  When CN_TEST_SUMMARY names a file, one
# line "PASSED FAILED" is appended to it: the test counts of the runners
# plus one for the log check.
build=${1:?usage: test-erl-asan.sh BUILD}
if [ ! -x "$build/cnode" ]; then
  echo "test-erl-asan: $build/cnode is not there; build it with" \
       "make SANITIZER=address" >&2
  exit 1
fi
logs=$(cd "$build" && pwd)/test-erl/nodes
rm -rf "$logs"
mkdir -p "$logs"

# Halt at the first error (UBSan too), print stacks; the node's own
# children (none today) would inherit these.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

counts=$(mktemp)
trap 'rm -f "$counts"' EXIT
CN_TEST_SUMMARY=$counts sh .ci/test-erl.sh "$build"
status=$?

pattern='ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (AddressSanitizer|UndefinedBehaviorSanitizer|LeakSanitizer)'
bad=$(grep -l -E "$pattern" "$logs"/*.log 2>/dev/null)
nlogs=$(ls "$logs"/*.log 2>/dev/null | wc -l)
if [ -n "$bad" ]; then
  status=1
  san="0 1"
  for f in $bad; do
    echo "==== test-erl-asan: sanitizer report in $f"
    grep -E -A 30 "$pattern" "$f" | head -80
  done
  echo "test-erl-asan: sanitizer reports in $(echo "$bad" | wc -l) of" \
       "$nlogs node logs"
else
  san="1 0"
  echo "test-erl-asan: no sanitizer report in $nlogs node logs ($logs)"
fi
line=$(awk -v s="$san" '{ p += $1; f += $2 } END {
  split(s, a, " "); printf "%d %d\n", p + a[1], f + a[2] }' "$counts")
echo "test-erl-asan: $line (passed failed, the log check included)"
if [ -n "${CN_TEST_SUMMARY:-}" ]; then
  echo "$line" >>"$CN_TEST_SUMMARY"
fi
exit $status
