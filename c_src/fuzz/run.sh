#!/bin/sh
# Runs libFuzzer targets one after another, and sums up each run.
#
#   sh c_src/fuzz/run.sh long|smoke BIN...
#
# Each BIN is a target built by mk/fuzz.mk; its seeds are the checked-in
# c_src/fuzz/corpus/<name>/, which the fuzzer reads but never writes.
#
#   long   FUZZ_RUNS executions (default 10000000), or FUZZ_SECONDS
#          seconds when only that is given (both: whichever ends first).
#          The working corpus build/fuzz/corpus/<name>/ is kept, so a
#          later run goes on from what this one found.
#   smoke  FUZZ_SMOKE_SECONDS seconds (default 15) from the seeds alone,
#          in a fresh working corpus under build/fuzz/smoke/.
#
# FUZZ_JOBS (default 1) runs that many jobs per target in parallel
# (-jobs/-workers); FUZZ_FLAGS adds libFuzzer flags.  Every run is niced
# (the machine is shared).  The full output of each target is in
# build/fuzz/logs/<name>.log; a crashing input is left in
# build/fuzz/artifacts/<name>/, and the line that reproduces it printed.
#
# The last line printed is "N passed, N failed", one per target, and when
# CN_TEST_SUMMARY names a file "PASSED FAILED" is appended to it, as
# c_src/tests/run.sh does, so that `make test` can count the targets.

mode=$1
shift
case $mode in
long | smoke) ;;
*)
  echo "usage: run.sh long|smoke BIN..." >&2
  exit 2
  ;;
esac

build=${FUZZ_BUILD:-build/fuzz}
jobs=${FUZZ_JOBS:-1}
smoke_secs=${FUZZ_SMOKE_SECONDS:-15}
root=$(pwd)
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
export UBSAN_OPTIONS

# What to run for: libFuzzer flags.
if [ "$mode" = smoke ]; then
  limits="-max_total_time=$smoke_secs"
elif [ -n "${FUZZ_SECONDS:-}" ] && [ -z "${FUZZ_RUNS:-}" ]; then
  limits="-max_total_time=$FUZZ_SECONDS"
else
  limits="-runs=${FUZZ_RUNS:-10000000}"
  if [ -n "${FUZZ_SECONDS:-}" ]; then
    limits="$limits -max_total_time=$FUZZ_SECONDS"
  fi
fi

# Sums one libFuzzer final statistic over every job's output.
final_stat() {
  sed -n "s/^stat::$1: *//p" "$2" | awk '{ s += $1 } END { print s + 0 }'
}

passed=0
failed=0
failures=""
summary=""

for bin in "$@"; do
  name=${bin##*/}
  seeds=c_src/fuzz/corpus/$name
  logs=$build/logs
  log=$logs/$name.log
  art=$build/artifacts/$name
  if [ "$mode" = smoke ]; then
    work=$build/smoke/$name
    rm -rf "$work"
  else
    work=$build/corpus/$name
  fi
  mkdir -p "$work" "$art" "$logs"
  echo "==== $name ($mode: $limits, $jobs job(s))"

  if [ ! -x "$bin" ] || [ ! -d "$seeds" ] || [ -z "$(ls -A "$seeds")" ]; then
    echo "---- $name: FAILED (no binary, or no seeds in $seeds)"
    failed=$((failed + 1))
    failures="$failures $name"
    continue
  fi

  dict=""
  if [ -f "c_src/fuzz/$name.dict" ]; then
    dict="-dict=$root/c_src/fuzz/$name.dict"
  fi
  # Crashes are told apart from older ones by this marker's time.
  marker=$build/.run-$name
  touch "$marker"
  start=$(date +%s)
  if [ "$jobs" -gt 1 ]; then
    # With -jobs, libFuzzer writes fuzz-<n>.log in the current directory,
    # and copies each to its own output when that job ends.
    jobdir=$logs/$name.jobs
    rm -rf "$jobdir"
    mkdir -p "$jobdir"
    (cd "$jobdir" && nice -n 19 "$root/$bin" -print_final_stats=1 \
      -timeout=25 -artifact_prefix="$root/$art/" -jobs="$jobs" \
      -workers="$jobs" $limits $dict $FUZZ_FLAGS \
      "$root/$work" "$root/$seeds") >"$log" 2>&1
    rc=$?
  else
    nice -n 19 "$bin" -print_final_stats=1 -timeout=25 \
      -artifact_prefix="$art/" $limits $dict $FUZZ_FLAGS \
      "$work" "$seeds" >"$log" 2>&1
    rc=$?
  fi
  secs=$(($(date +%s) - start))

  execs=$(final_stat number_of_executed_units "$log")
  eps=$(final_stat average_exec_per_sec "$log")
  crashes=$(find "$art" -type f -newer "$marker" \
    \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
    -o -name 'oom-*' \) | wc -l)
  files=$(find "$work" -type f | wc -l)
  kb=$(find "$work" -type f -exec cat {} + | wc -c |
    awk '{ print int(($1 + 1023) / 1024) }')
  line="$name: $execs execs in ${secs}s ($eps exec/s),"
  line="$line $crashes crash(es), corpus $files files ($kb KB)"
  summary="$summary
$line"

  if [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]; then
    echo "---- $line: ok"
    passed=$((passed + 1))
  else
    echo "---- $line: FAILED (exit status $rc)"
    tail -n 60 "$log"
    for f in $(find "$art" -type f -newer "$marker"); do
      echo "---- reproduce with: $bin $f"
    done
    failed=$((failed + 1))
    failures="$failures $name"
  fi
done

if [ -n "${CN_TEST_SUMMARY:-}" ]; then
  echo "$passed $failed" >>"$CN_TEST_SUMMARY"
fi

echo
echo "fuzz ($mode):$summary"
if [ "$failed" -ne 0 ]; then
  echo "failed:$failures"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
