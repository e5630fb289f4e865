#!/bin/sh
# Runs test binaries and example programs, one after another.
#
#   sh c_src/tests/run.sh BIN...
#
# Each BIN is a cmocka program or an example that exits 0 on success.  Each
# gets a timeout of CN_TEST_TIMEOUT (default 120) seconds times
# CN_TEST_TIMEOUT_MULT (default 1; sanitizer runs use 3).  The multiplier is
# exported so that tests can scale their own internal timeouts too.
#
# The last line printed is exactly "N passed, N failed"; CI reads it to know
# that tests ran.  The exit status is 1 when any binary failed.  When
# CN_TEST_SUMMARY names a file, "PASSED FAILED" is appended to it, so that
# `make test` can print one total over all its configurations.

CN_TEST_TIMEOUT_MULT=${CN_TEST_TIMEOUT_MULT:-1}
export CN_TEST_TIMEOUT_MULT
base=${CN_TEST_TIMEOUT:-120}

# The multiplier may be fractional (1.5); the timeout is whole seconds.
limit=$(awk -v b="$base" -v m="$CN_TEST_TIMEOUT_MULT" \
  'BEGIN { t = int(b * m); if (t < 1) t = 1; print t }')

# Sanitizer defaults, used only by instrumented binaries; a caller's own
# settings win.
: "${ASAN_OPTIONS:=detect_leaks=1}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
: "${TSAN_OPTIONS:=second_deadlock_stack=1}"
export ASAN_OPTIONS UBSAN_OPTIONS TSAN_OPTIONS

if command -v timeout >/dev/null 2>&1; then
  run_limited() { timeout -k 10 "$limit" "$@"; }
else
  echo "run.sh: no timeout command; running without a time limit" >&2
  run_limited() { "$@"; }
fi

passed=0
failed=0
failures=""

for bin in "$@"; do
  name=${bin##*/}
  echo "==== $name (${bin}, timeout ${limit}s)"
  if [ ! -x "$bin" ]; then
    echo "---- $name: FAILED (not found or not executable)"
    failed=$((failed + 1))
    failures="$failures $name"
    continue
  fi
  start=$(date +%s)
  run_limited "$bin"
  rc=$?
  secs=$(($(date +%s) - start))
  if [ "$rc" -eq 0 ]; then
    echo "---- $name: ok (${secs}s)"
    passed=$((passed + 1))
  else
    case $rc in
    124) why="timed out after ${limit}s" ;;
    137) why="killed by signal 9, a hung test or out of memory" ;;
    *) if [ "$rc" -gt 128 ]; then
         why="killed by signal $((rc - 128))"
       else
         why="exit status $rc"
       fi ;;
    esac
    echo "---- $name: FAILED ($why, ${secs}s)"
    failed=$((failed + 1))
    failures="$failures $name"
  fi
done

if [ -n "${CN_TEST_SUMMARY:-}" ]; then
  echo "$passed $failed" >>"$CN_TEST_SUMMARY"
fi

echo
if [ "$failed" -ne 0 ]; then
  echo "failed:$failures"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
