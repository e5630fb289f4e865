#!/bin/sh
# make otpapp-test: cnode as a dependency of a mix project and of a rebar3
# project, offline, each under its own supervisor.
#
#   CN_ROOT=/path/to/tree sh .ci/otpapp-test.sh OUTDIR
#
# Copies test_erl/apps/mix_app and test_erl/apps/rebar_app to OUTDIR,
# points each at CN_ROOT (mix: CNODE_PATH for its path: dependency;
# rebar3: the link _checkouts/cnode), builds them with no network and no
# hex (HEX_OFFLINE), and runs each one's check (see its main/0).  Then
# both again with cnode as a git dependency on CN_ROOT's repository.  Prints
# one "==== otpapp" line per application; appends "PASSED FAILED" (one per
# application) to $CN_TEST_SUMMARY when set.  Logs: OUTDIR/*.log.
out=${1:?usage: otpapp-test.sh OUTDIR}
root=${CN_ROOT:?CN_ROOT is not set}
unset MAKEFLAGS MFLAGS MAKELEVEL
HEX_OFFLINE=1
MIX_ENV=dev
REBAR_COLOR=none
REBAR_OFFLINE=1
export HEX_OFFLINE MIX_ENV REBAR_COLOR REBAR_OFFLINE
passed=0
failed=0
start=$(date +%s)
mkdir -p "$out"

# check NAME CMD...: runs CMD in OUTDIR/NAME, logging to OUTDIR/NAME.log.
check() {
  name=$1
  shift
  if (cd "$out/$name" && "$@") >"$out/$name.log" 2>&1; then
    passed=$((passed + 1))
    echo "==== otpapp $name: passed ($(($(date +%s) - start)) s)"
  else
    failed=$((failed + 1))
    echo "==== otpapp $name: FAILED; the end of $out/$name.log:"
    tail -n 30 "$out/$name.log"
  fi
}

rm -rf "$out/mix_app" "$out/rebar_app"
cp -r "$root/test_erl/apps/mix_app" "$root/test_erl/apps/rebar_app" "$out/"
mkdir -p "$out/rebar_app/_checkouts"
ln -s "$root" "$out/rebar_app/_checkouts/cnode"

check mix_app sh -c 'CNODE_PATH="$0" mix compile &&
  CNODE_PATH="$0" mix run -e "CnodeMixCheck.main()"' "$root"
check rebar_app sh -c 'rebar3 compile &&
  erl -noshell -pa _build/default/lib/*/ebin _build/default/checkouts/*/ebin \
    -eval "cnode_rebar_check:main()"'

# The same two, with cnode as a git dependency: a clone of this tree's
# repository at its HEAD, fetched over file:// (no network), built from
# scratch by the dependency's own hook (make app).
if rev=$(git -C "$root" rev-parse HEAD 2>/dev/null); then
  rm -rf "$out/mix_git_app" "$out/rebar_git_app"
  cp -r "$root/test_erl/apps/mix_app" "$out/mix_git_app"
  cp -r "$root/test_erl/apps/rebar_app" "$out/rebar_git_app"
  sed -i "s|^{deps, \[cnode\]}\.|{deps, [{cnode, {git, \"file://$root\", {ref, \"$rev\"}}}]}.|" \
    "$out/rebar_git_app/rebar.config"
  grep -q "{git, \"file://" "$out/rebar_git_app/rebar.config" || {
    echo "otpapp: cannot point rebar_git_app at the repository" >&2
    failed=$((failed + 1))
  }
  check mix_git_app sh -c 'CNODE_GIT="$0" CNODE_REF="$1" mix deps.get &&
    CNODE_GIT="$0" CNODE_REF="$1" mix compile &&
    CNODE_GIT="$0" CNODE_REF="$1" mix run -e "CnodeMixCheck.main()"' \
    "file://$root" "$rev"
  # rebar3's offline mode refuses git fetches, even from file://.
  check rebar_git_app env -u REBAR_OFFLINE sh -c 'rebar3 compile &&
    erl -noshell -pa _build/default/lib/*/ebin -eval "cnode_rebar_check:main()"'
else
  echo "==== otpapp: $root is not a git checkout; the git dependencies are not tried"
fi

echo "otpapp: $passed passed, $failed failed"
if [ -n "${CN_TEST_SUMMARY:-}" ]; then
  echo "$passed $failed" >>"$CN_TEST_SUMMARY"
fi
[ "$failed" -eq 0 ]
