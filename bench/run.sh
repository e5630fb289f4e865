#!/bin/sh
# cnode benchmarks, side by side with the BEAM in the same run.
#
#   sh bench/run.sh [BUILD_DIR]          (make bench runs this)
#
# For each figure, runs the cnode program (BUILD_DIR/bench/bench_cnode) and
# the same code on a fresh `erl` (bench/beam_bench.erl), alternating, for a
# few rounds, and prints the medians as one line per figure:
#
#   <figure>: cnode=<x> beam=<y> ratio=<r>
#
# r > 1 means cnode is better: beam/cnode for times and bytes, cnode/beam
# for rates.  Every other line starts with '#'.  See bench/README.md.
#
# Then the remote figures (bench/remote_bench.erl): a BEAM client node
# calling the node program's echo (BUILD_DIR/cnode) and, alternately, the
# same echo on a BEAM peer node, once with nothing pinned and once with
# the client on CPU 0 and the servers on CPU 1 (names suffixed @pinned).
#
# Environment:
#   BENCH_ROUNDS=5            rounds for each figure (million: see below)
#   BENCH_MILLION_ROUNDS=1    rounds for million (the BEAM takes ~20 s)
#   BENCH_FIGURES="..."       run only these figures (remote: run names,
#                             see bench/README.md)
#   BENCH_SUITE=all           local, remote or all
#   BENCH_PLACEMENT="free pinned"  placements of the remote figures
#   BENCH_SCALE=1             multiplies the remote figures' N (0.1: smoke)
#   BENCH_HOL_MB=100          hol_p99's big message, in MB
#   BENCH_FANIN_NODES=30      fanin_30's client nodes
#   BENCH_VERBOSE=1           also show the programs' '#' diagnostics
#
# Exits 1 if any run failed (its figure then shows FAIL, never a number).

set -u

BUILD=${1:-build/release}
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$BUILD/bench/bench_cnode
ROUNDS=${BENCH_ROUNDS:-5}
MILLION_ROUNDS=${BENCH_MILLION_ROUNDS:-1}
LOCAL_FIGURES="local_call process_call idle_memory spawn million"
REMOTE_FIGURES="call_seq call_16 call_64 call_64k_payload call_1m_payload cast
  syscalls_per_call_16 hol_p99 c_client_call fanin_30"
SUITE=${BENCH_SUITE:-all}
case $SUITE in
  all) DEFAULT_FIGURES="$LOCAL_FIGURES $REMOTE_FIGURES" ;;
  local) DEFAULT_FIGURES=$LOCAL_FIGURES ;;
  remote) DEFAULT_FIGURES=$REMOTE_FIGURES ;;
  *) echo "bench/run.sh: BENCH_SUITE must be all, local or remote" >&2; exit 2 ;;
esac
FIGURES=$(echo ${BENCH_FIGURES:-$DEFAULT_FIGURES})
PLACEMENTS=${BENCH_PLACEMENT:-"free pinned"}
VERBOSE=${BENCH_VERBOSE:-0}
ERL=${ERL:-erl}
ERLC=${ERLC:-erlc}
RUN_TIMEOUT=300 # seconds for one run of one side

TMP=$(mktemp -d "${TMPDIR:-/tmp}/cnode-bench.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT INT TERM

if [ ! -x "$BIN" ]; then
  echo "bench/run.sh: $BIN is missing; build it first (make bench)" >&2
  exit 1
fi
if ! "$ERLC" -o "$TMP" "$HERE/beam_bench.erl" "$HERE/remote_bench.erl"; then
  echo "bench/run.sh: erlc failed" >&2
  exit 1
fi

status=0

# is_number STRING: true if STRING is a plain decimal number.
is_number() {
  case $1 in
    '' | *[!0-9.]* | *.*.*) return 1 ;;
    *) return 0 ;;
  esac
}

# run_side SIDE FIGURE N ERLFLAGS: runs one side once and prints its
# number, or nothing (after '#' lines with the error) when it failed.
run_side() {
  side=$1 fig=$2 n=$3 erlflags=$4
  out=$TMP/out err=$TMP/err
  if [ "$side" = cnode ]; then
    timeout "$RUN_TIMEOUT" "$BIN" "$fig" "$n" >"$out" 2>"$err"
  else
    # shellcheck disable=SC2086 # erlflags is a word list on purpose
    timeout "$RUN_TIMEOUT" "$ERL" $erlflags -noshell -pa "$TMP" \
      -eval "beam_bench:run($fig, $n)" >"$out" 2>"$err"
  fi
  rc=$?
  v=$(tr -d ' \n' <"$out")
  if [ $rc -ne 0 ] || ! is_number "$v"; then
    echo "# $fig: $side run failed (exit $rc):" >>"$TMP/diag"
    sed 's/^/#   /' "$err" | head -20 >>"$TMP/diag"
    return 0
  fi
  if [ "$VERBOSE" = 1 ]; then
    grep '^#' "$err" | sed "s/^# */# $side: /" >>"$TMP/diag"
  fi
  echo "$v"
}

# median: the median of the numbers on standard input, one per line.
median() {
  sort -g | awk '{ a[NR] = $1 }
    END { if (NR == 0) exit 1
          if (NR % 2) print a[(NR + 1) / 2]
          else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# figure NAME N KIND FORMAT UNIT ROUNDS ERLFLAGS
#   KIND is lower (times, bytes: ratio = beam/cnode) or higher (rates:
#   ratio = cnode/beam); FORMAT is the printf format of the values.
figure() {
  name=$1 n=$2 kind=$3 fmt=$4 unit=$5 rounds=$6 erlflags=$7
  case " $FIGURES " in *" $name "*) ;; *) return 0 ;; esac

  : >"$TMP/c.$name"
  : >"$TMP/b.$name"
  : >"$TMP/diag"
  failed=0
  r=1
  while [ $r -le "$rounds" ]; do
    c=$(run_side cnode "$name" "$n" "")
    b=$(run_side beam "$name" "$n" "$erlflags")
    [ -n "$c" ] && echo "$c" >>"$TMP/c.$name" || failed=1
    [ -n "$b" ] && echo "$b" >>"$TMP/b.$name" || failed=1
    r=$((r + 1))
  done

  echo "# $name: $unit; N=$n; median of $rounds round(s)" \
    "(cnode: $(tr '\n' ' ' <"$TMP/c.$name")| beam: $(tr '\n' ' ' \
    <"$TMP/b.$name"))"
  cat "$TMP/diag"
  if [ -s "$TMP/c.$name" ] && [ "$(wc -l <"$TMP/c.$name")" -eq "$rounds" ]
  then
    cm=$(median <"$TMP/c.$name")
    # shellcheck disable=SC2059 # fmt is one of ours
    cs=$(printf "$fmt" "$cm")
  else
    cm='' cs=FAIL
  fi
  if [ -s "$TMP/b.$name" ] && [ "$(wc -l <"$TMP/b.$name")" -eq "$rounds" ]
  then
    bm=$(median <"$TMP/b.$name")
    # shellcheck disable=SC2059
    bs=$(printf "$fmt" "$bm")
  else
    bm='' bs=FAIL
  fi
  if [ -n "$cm" ] && [ -n "$bm" ]; then
    ratio=$(awk -v c="$cm" -v b="$bm" -v k="$kind" 'BEGIN {
      if (k == "lower") { num = b; den = c } else { num = c; den = b }
      if (den <= 0) print "inf"; else printf "%.2f", num / den }')
  else
    ratio=FAIL
  fi
  echo "$name: cnode=$cs beam=$bs ratio=$ratio"
  [ $failed -eq 0 ] || status=1

  if [ "$name" = million ]; then
    if [ -s "$TMP/c.$name" ]; then
      under=$(sort -g "$TMP/c.$name" | tail -1 |
        awk '{ print ($1 < 512) ? "yes" : "no" }')
    else
      under=no
    fi
    echo "# million: peak RSS under 512 MiB: $under"
  fi
}

otp=$("$ERL" -noshell -eval \
  'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null)
echo "# cnode vs BEAM (OTP $otp) on $(nproc) online core(s), not pinned;" \
  "both sides use one scheduler per core"
echo "# ratio > 1: cnode better (beam/cnode for times and bytes," \
  "cnode/beam for rates)"

wants_any() {
  for w in "$@"; do
    case " $FIGURES " in *" $w "*) return 0 ;; esac
  done
  return 1
}

if wants_any $LOCAL_FIGURES; then
figure local_call 200000 lower "%.1f" "ns per call, main thread -> idle server" "$ROUNDS" ""
figure process_call 200000 lower "%.1f" "ns per call, process -> process" "$ROUNDS" ""
figure idle_memory 100000 lower "%.0f" "bytes per idle server" "$ROUNDS" ""
figure spawn 200000 higher "%.0f" "start+stop pairs per second" "$ROUNDS" ""
figure million 1000000 lower "%.1f" "peak RSS in MiB, 1M idle servers" "$MILLION_ROUNDS" "+P 2000000"
fi

# remote PLACEMENT: the remote figures in one placement, by one client
# node (on CPU 0 when pinned; remote_bench.erl puts the servers on CPU 1).
remote() {
  placement=$1
  pin=""
  if [ "$placement" = pinned ]; then
    if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then
      echo "# remote figures @pinned skipped: needs taskset and 2 CPUs"
      return 0
    fi
    pin="taskset -c 0"
  fi
  if [ ! -x "$BUILD/cnode" ] || [ ! -x "$BUILD/bench/bench_cclient" ]; then
    echo "bench/run.sh: $BUILD/cnode or $BUILD/bench/bench_cclient" \
      "is missing; build them first (make bench)" >&2
    status=1
    return 0
  fi
  # shellcheck disable=SC2086 # pin is a word list on purpose
  BENCH_CNODE="$BUILD/cnode" BENCH_CCLIENT="$BUILD/bench/bench_cclient" \
    BENCH_TMP="$TMP" BENCH_PLACEMENT="$placement" BENCH_ROUNDS="$ROUNDS" \
    BENCH_FIGURES="$FIGURES" \
    timeout 7200 $pin "$ERL" -sname "rbclient$$_$placement" -noshell \
    -pa "$TMP" -eval 'remote_bench:main()' || status=1
}

# shellcheck disable=SC2086 # word lists
if wants_any $REMOTE_FIGURES; then
  for p in $PLACEMENTS; do
    case $p in
      free | pinned) remote "$p" ;;
      *) echo "bench/run.sh: unknown placement $p (free, pinned)" >&2
         status=1 ;;
    esac
  done
fi

exit $status
