#!/bin/sh
# make install-check: proves that an installed libcnode is usable with
# nothing but pkg-config.
#
#   MAKE=make CC=cc sh .ci/install-check.sh BUILD
#
# 1. `make install DESTDIR=<scratch> PREFIX=/opt/cnode`, and checks the tree
#    and that libcnode.so exports only cn_* names.
# 2. Copies a smoke program, every examples/*.c and every complete C program
#    in README.md (a ```c block with a main) to a scratch directory
#    outside the source tree and builds each one twice from there:
#      dynamic:  cc x.c $(pkg-config --cflags --libs cnode)
#      static:   cc x.c $(pkg-config --cflags --static --libs cnode), with
#                -lcnode pointed at libcnode.a (-l:libcnode.a).
#    The DESTDIR tree is used through pkg-config's
#    --define-variable=prefix=..., exactly as a relocated install would be.
# 3. Builds dlopen-smoke, which is not linked against libcnode and
#    dlopens the installed libcnode.so to run a server and two calls.
# 4. Runs every binary with c_src/tests/run.sh (so the counts add up in
#    `make test`), then `make uninstall` and checks that nothing is left.
set -eu

build=${1:?usage: install-check.sh BUILD}
MAKE=${MAKE:-make}
CC=${CC:-cc}
top=$(pwd)
prefix=/opt/cnode

work=$(mktemp -d "${TMPDIR:-/tmp}/cnode-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/root
mkdir -p "$work/src" "$work/bin"

fail() {
  echo "install-check: $*" >&2
  exit 1
}

echo "install-check: make install DESTDIR=$root PREFIX=$prefix"
if ! $MAKE --no-print-directory install DESTDIR="$root" PREFIX="$prefix" \
  >"$work/install.log" 2>&1; then
  cat "$work/install.log"
  fail "make install failed"
fi

for f in include/cnode.h include/cnode/common.h lib/libcnode.a \
  lib/libcnode.so lib/pkgconfig/cnode.pc bin/cnode share/man/man1/cnode.1; do
  [ -e "$root$prefix/$f" ] || fail "$prefix/$f was not installed"
done
find "$root$prefix" -name 'libcnode.so.*.*.*' -type f | grep -q . ||
  fail "no versioned libcnode.so.X.Y.Z"
soname=$(objdump -p "$root$prefix/lib/libcnode.so" | awk '/SONAME/ { print $2 }')
[ -e "$root$prefix/lib/$soname" ] ||
  fail "the soname $soname is not installed"

# The shared library exports the public API and nothing else: cn_ names
# (CN_EXTERN and -fvisibility=hidden), not cn__ internals nor ei.
stray=$(nm -D --defined-only "$root$prefix/lib/libcnode.so" |
  awk '{ print $NF }' | grep -v '^cn_[a-z0-9]' || true)
[ -z "$stray" ] ||
  fail "libcnode.so exports names outside the public API:" $stray

# The installed program runs from its own directory, with no
# LD_LIBRARY_PATH: it serves (the ready line) and stops cleanly on SIGTERM.
node=$root$prefix/bin/cnode
env -u LD_LIBRARY_PATH "$node" --help >"$work/help.txt" ||
  fail "the installed cnode --help failed"
env -u LD_LIBRARY_PATH "$node" --no-dist --log-level error \
  >"$work/ready.txt" 2>"$work/node.err" &
npid=$!
i=0
until grep -q '^cnode: ready as ' "$work/ready.txt"; do
  i=$((i + 1))
  if [ $i -gt 100 ] || ! kill -0 $npid 2>/dev/null; then
    cat "$work/node.err" >&2
    fail "the installed cnode did not print its ready line"
  fi
  sleep 0.1
done
kill -TERM $npid
st=0
wait $npid || st=$?
[ $st -eq 0 ] || fail "the installed cnode exited $st after SIGTERM, not 0"
echo "install-check: $prefix/bin/cnode serves and stops (exit 0)"

# Its manual renders without warnings and names every flag that
# `cnode --help` names; so does the README.
man1=$root$prefix/share/man/man1/cnode.1
warn=$(groff -man -Tutf8 -ww -z "$man1" 2>&1) ||
  fail "cnode.1 does not render: $warn"
[ -z "$warn" ] || fail "cnode.1 renders with warnings: $warn"
flags=$(grep -o -- '--[a-z][a-z-]*' "$work/help.txt" | sort -u)
[ -n "$flags" ] || fail "cnode --help names no flags"
for f in $flags; do
  # troff writes each - of a flag as \-
  grep -qF -- "$(printf '%s' "$f" | sed 's/-/\\-/g')" "$man1" ||
    fail "cnode.1 does not document $f"
  grep -qF -- "$f" "$top/README.md" || fail "README.md does not document $f"
done
echo "install-check: cnode.1 and README.md document all" \
  "$(echo "$flags" | wc -l) flags of cnode --help"

export PKG_CONFIG_PATH="$root$prefix/lib/pkgconfig"
got=$(pkg-config --variable=prefix cnode)
[ "$got" = "$prefix" ] || fail "cnode.pc says prefix=$got, not $prefix"

pc() {
  pkg-config --define-variable=prefix="$root$prefix" "$@" cnode
}
cflags=$(pc --cflags)
libs=$(pc --libs)
slibs=$(echo " $(pc --static --libs) " | sed 's/ -lcnode / -l:libcnode.a /')
echo "install-check: pkg-config --cflags --libs cnode: $cflags $libs"
echo "install-check: pkg-config --static --libs cnode: $(pc --static --libs)"

# A program that needs nothing but the installed headers and library, so
# that this check has something to build before examples/ has programs.
cat >"$work/src/install-smoke.c" <<'EOF'
#include <cnode.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  if (strcmp(cn_err_name(CN_ENOPROC), "CN_ENOPROC") != 0)
    return 1;
  printf("libcnode %d.%d.%d: %s\n", CN_VERSION_MAJOR, CN_VERSION_MINOR,
         CN_VERSION_PATCH, cn_strerror(CN_ENOPROC));
  return 0;
}
EOF
# Every ```c block in README.md that has a main() is a program a reader
# will copy, so it is built and run like an example.
awk -v dir="$work/src" '
  /^```c$/ { n++; f = dir "/readme-" n ".c"; body = ""; inblock = 1; next }
  /^```$/ && inblock { inblock = 0; if (body ~ /main\(/) printf "%s", body > f; next }
  inblock { body = body $0 "\n" }' "$top/README.md"
for f in "$top"/examples/*.c "$top"/examples/*.h; do
  if [ -e "$f" ]; then cp "$f" "$work/src/"; fi
done

cd "$work"
for src in src/*.c; do
  name=$(basename "$src" .c)
  echo "  CC      $name (pkg-config, dynamic)"
  # shellcheck disable=SC2086 # the flags are lists of words
  $CC -O2 -Wall -o "bin/$name" "$src" $cflags $libs \
    -Wl,-rpath,"$root$prefix/lib" || fail "$name: dynamic build failed"
  readelf -d "bin/$name" | grep -q 'NEEDED.*libcnode\.so\.' ||
    fail "$name: not linked against libcnode.so"
  echo "  CC      $name-static (pkg-config --static)"
  # shellcheck disable=SC2086
  $CC -O2 -Wall -o "bin/$name-static" "$src" $cflags $slibs ||
    fail "$name: static build failed"
  if readelf -d "bin/$name-static" | grep -q 'NEEDED.*libcnode'; then
    fail "$name-static: still needs libcnode.so"
  fi
done

# libcnode.so keeps its thread-local state in the static TLS block
# (-ftls-model=initial-exec, which spares each access a __tls_get_addr
# call).  A program that was not linked against it may still dlopen it:
# glibc keeps spare static TLS for such libraries.  This program does, and
# runs a server and a call in two threads through what dlsym finds.
cat >"$work/dlopen-smoke.c" <<'EOF2'
#include <cnode.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

static int (*rt_new)(const cn_runtime_options *, cn_runtime **);
static void (*rt_free)(cn_runtime *);
static int (*start)(cn_runtime *, const cn_server_ops *, void *,
                    const cn_start_options *, cn_pid *);
static int (*call)(cn_runtime *, cn_dest, cn_term, cn_ms, cn_buf *);
static int (*build)(cn_buf *, const char *, ...);
static int (*match)(cn_term, const char *, ...);
static void (*buf_free)(cn_buf *);
static cn_runtime *rt;
static cn_pid server;

static int handle_call(cn_proc *self, void *state, cn_term req,
                       cn_from *from, cn_buf *reply) {
  int64_t n;
  (void)self, (void)state, (void)from;
  if (match(req, "{get, ~i}", &n) != 0 || build(reply, "{ok, ~i}", n) != 0)
    return CN_STOP;
  return CN_REPLY;
}

static const cn_server_ops ops = {.name = "smoke", .handle_call = handle_call};

/* Calls the server with {get, n}; 0 when the reply is {ok, n}. */
static int get(int64_t n) {
  cn_buf req = CN_BUF_INIT, reply = CN_BUF_INIT;
  int64_t got = -1;
  int rc = build(&req, "{get, ~i}", n);
  if (rc == 0)
    rc = call(rt, cn_to_pid(server), cn_buf_term(&req), 5000, &reply);
  if (rc == 0 && (match(cn_buf_term(&reply), "{ok, ~i}", &got) != 0 ||
                  got != n))
    rc = -1;
  buf_free(&req);
  buf_free(&reply);
  return rc;
}

static void *thread_main(void *arg) {
  (void)arg;
  return (void *)(long)get(2);
}

int main(void) {
  void *h = dlopen(CNODE_SO, RTLD_NOW | RTLD_LOCAL), *trc = NULL;
  pthread_t th;
  if (h == NULL) {
    fprintf(stderr, "dlopen-smoke: %s\n", dlerror());
    return 1;
  }
  *(void **)&rt_new = dlsym(h, "cn_runtime_new");
  *(void **)&rt_free = dlsym(h, "cn_runtime_free");
  *(void **)&start = dlsym(h, "cn_start");
  *(void **)&call = dlsym(h, "cn_call");
  *(void **)&build = dlsym(h, "cn_build");
  *(void **)&match = dlsym(h, "cn_match");
  *(void **)&buf_free = dlsym(h, "cn_buf_free");
  if (!rt_new || !rt_free || !start || !call || !build || !match ||
      !buf_free || rt_new(NULL, &rt) != 0 ||
      start(rt, &ops, NULL, NULL, &server) != 0 || get(1) != 0 ||
      pthread_create(&th, NULL, thread_main, NULL) != 0 ||
      pthread_join(th, &trc) != 0 || trc != NULL) {
    fprintf(stderr, "dlopen-smoke: a call through the dlopened library failed\n");
    return 1;
  }
  rt_free(rt);
  printf("dlopen-smoke: two calls through a dlopened %s\n", CNODE_SO);
  return 0;
}
EOF2
echo "  CC      dlopen-smoke (no libcnode at link time)"
$CC -O2 -Wall -o bin/dlopen-smoke "$work/dlopen-smoke.c" $cflags \
  -DCNODE_SO="\"$root$prefix/lib/$soname\"" -ldl -pthread ||
  fail "dlopen-smoke: build failed"
if readelf -d bin/dlopen-smoke | grep -q 'NEEDED.*libcnode'; then
  fail "dlopen-smoke: linked against libcnode"
fi

status=0
sh "$top/c_src/tests/run.sh" bin/* || status=$?

cd "$top"
$MAKE --no-print-directory uninstall DESTDIR="$root" PREFIX="$prefix" \
  >"$work/uninstall.log" 2>&1 || {
  cat "$work/uninstall.log"
  fail "make uninstall failed"
}
left=$(find "$root" -type f -o -type l)
[ -z "$left" ] || fail "make uninstall left: $left"
exit $status
