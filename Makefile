# cnode: build, test, bench, install.
#
#   make                 build libcnode (static and shared), tests, examples
#   make test            install missing deps, build, run every test
#   make check           run the C tests and examples in this configuration
#   make run             install missing deps, build and start the node
#   make bench           side-by-side benchmarks against the BEAM
#   make bench-remote    only the remote ones (calls over distribution)
#   make install         PREFIX=/usr/local DESTDIR= (library, headers,
#                        cnode.pc, the cnode program and its man page)
#   make uninstall       removes what make install put there
#   make install-check   install into a scratch dir, build examples with it
#   make deps            check the Debian packages (apt-get install as root)
#   make format          clang-format every C file; format-check only checks
#   make SANITIZER=address|undefined|thread ...   instrumented build
#
# Each configuration builds into its own directory under build/.
#
# EI_DIR and the libuv flags are computed when this file is read.  Targets
# that may first install Erlang (test, run, bench) therefore run `deps` and
# then call $(MAKE) again for the real work, so the second make sees erl.

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SANITIZER ?=
V ?= 0

ERL ?= erl
EI_DIR := $(shell $(ERL) -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null)
UV_CFLAGS := $(shell pkg-config --cflags libuv 2>/dev/null)
UV_LIBS := $(shell pkg-config --libs libuv 2>/dev/null)

# Without erl there is no ei to build against.  Say so up front, unless the
# goals are ones that work without it (or install it first).
NO_ERL_GOALS := deps clean format format-check test run bench bench-remote
ifeq ($(EI_DIR),)
ifneq ($(filter-out $(NO_ERL_GOALS),$(or $(MAKECMDGOALS),all)),)
$(warning erl was not found, so ei cannot be found either: run `make deps` \
(or `make test` / `make run`, which run it first))
endif
endif

# The version lives in one place: CN_VERSION_* in the public header.
VERSION_H := c_src/include/cnode/common.h
VERSION_MAJOR := $(shell sed -n 's/.*define CN_VERSION_MAJOR *//p' $(VERSION_H))
VERSION_MINOR := $(shell sed -n 's/.*define CN_VERSION_MINOR *//p' $(VERSION_H))
VERSION_PATCH := $(shell sed -n 's/.*define CN_VERSION_PATCH *//p' $(VERSION_H))
VERSION := $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)
# Before 1.0 every minor version may break the ABI, so it is part of the
# soname (libcnode.so.0.2); from 1.0 on, only the major version is.
ifeq ($(VERSION_MAJOR),0)
SONAME := libcnode.so.$(VERSION_MAJOR).$(VERSION_MINOR)
else
SONAME := libcnode.so.$(VERSION_MAJOR)
endif

CC ?= cc
OPT ?= -O2
JOBS ?= 2
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
        -Wno-unused-parameter -Werror
BASE_CFLAGS := -std=c11 $(OPT) -g -fPIC -fvisibility=hidden -pthread \
        -D_REENTRANT -D_GNU_SOURCE $(WARN) \
        -Ic_src/include -Ic_src -I$(EI_DIR)/include $(UV_CFLAGS)

ifeq ($(SANITIZER),)
BUILD := build/release
SAN_FLAGS :=
else ifeq ($(SANITIZER),address)
BUILD := build/asan
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
        -fno-sanitize-recover=all
else ifeq ($(SANITIZER),undefined)
BUILD := build/ubsan
SAN_FLAGS := -fsanitize=undefined -fno-sanitize-recover=all
else ifeq ($(SANITIZER),thread)
BUILD := build/tsan
SAN_FLAGS := -fsanitize=thread
else
$(error SANITIZER must be address, undefined or thread)
endif

# Release builds of libcnode are optimised across its files (see LIB_PARTS
# below) when the compiler is gcc; sanitizer builds are not, and LTO=
# turns it off.
ifeq ($(SANITIZER),)
ifneq ($(shell $(CC) --version 2>/dev/null | grep -c 'Free Software Foundation'),0)
LTO ?= -flto=auto
endif
else
LTO :=
endif

CFLAGS += $(BASE_CFLAGS) $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS) -pthread
LIBS := -L$(EI_DIR)/lib -lei $(UV_LIBS) -lssl -lcrypto -lm -lpthread

# libei.a (static only, built PIC) goes inside libcnode.so.  Its symbols
# stay hidden there: the public headers do not expose ei, and a program
# that links its own libei must not pick up ours.  The release .so must
# also resolve every symbol itself; sanitizer runtimes are left alone.
SO_LDFLAGS := -Wl,--exclude-libs,libei.a -Wl,-Bsymbolic-functions
ifeq ($(SANITIZER),)
SO_LDFLAGS += -Wl,--no-undefined
endif

ifeq ($(V),0)
Q := @
else
Q :=
endif

# The library, layer by layer: util <- term <- runtime <- dist <- node.
LIB_SRCS := $(sort $(wildcard c_src/util/*.c c_src/term/*.c \
        c_src/runtime/*.c c_src/dist/*.c c_src/node/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB_A := $(BUILD)/libcnode.a
LIB_SO := $(BUILD)/libcnode.so

TEST_SRCS := $(sort $(wildcard c_src/tests/test-*.c))
TEST_BINS := $(TEST_SRCS:c_src/tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRCS),$(wildcard c_src/tests/*.c))

EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)
# Server modules for the node program: examples/modules/NAME.c is built
# as NAME.so, and with -DCOUNTER_VSN=2 as NAME_v2.so too (two versions of
# one module, for the live upgrade).
MODULE_SRCS := $(sort $(wildcard examples/modules/*.c))
MODULE_SOS := $(MODULE_SRCS:examples/%.c=$(BUILD)/examples/%.so) \
        $(MODULE_SRCS:examples/%.c=$(BUILD)/examples/%_v2.so)


NODE_SRCS := $(sort $(wildcard cnode/*.c))
NODE_OBJS := $(NODE_SRCS:cnode/%.c=$(BUILD)/node/%.o)
NODE_BIN := $(BUILD)/cnode

BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

DEPFLAGS = -MMD -MP

# The threaded tests that also run under ThreadSanitizer in `make test`.
TSAN_TEST_NAMES := test-runtime test-sched test-server test-supervisor \
        test-stress test-dist test-cluster
TSAN_TEST_BINS := $(filter $(TSAN_TEST_NAMES:%=$(BUILD)/tests/%%),$(TEST_BINS))

ERL_SUITES := $(wildcard test_erl/*_SUITE.erl)
ERL_SCRIPTS := $(wildcard test_erl/*_test.exs)

FORMAT_SRCS := $(sort $(wildcard c_src/include/*.h c_src/include/*/*.h \
        c_src/*/*.[ch] cnode/*.[ch] examples/*.[ch] examples/modules/*.[ch] \
        bench/*.[ch]))
CLANG_FORMAT ?= clang-format

# What `make deps` checks for (and installs when run as root).
DEPS_PKGS := gcc make pkg-config erlang-nox erlang-dev elixir rebar3 \
        erlang-common-test erlang-observer xvfb libuv1-dev libcmocka-dev \
        libssl-dev openssl \
        clang clang-format libclang-rt-14-dev valgrind groff-base tmux strace

.PHONY: all lib tests examples check check-tsan test test-erl run run-node \
        bench bench-remote bench-run install install-check uninstall pc clean deps \
        format format-check
.DEFAULT_GOAL := all

all: lib tests examples $(NODE_BIN) $(BENCH_BINS)

lib: $(LIB_A) $(LIB_SO)
tests: $(TEST_BINS)
examples: $(EXAMPLE_BINS) $(MODULE_SOS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# libcnode's thread-local state (the current process, record caches, the
# format cache) sits in the static TLS block: a dynamic-model access costs
# a __tls_get_addr call, which made a local call through libcnode.so 20%
# slower than through libcnode.a.  A program may still dlopen
# libcnode.so: glibc keeps spare static TLS for that, more than the 144
# bytes libcnode uses (install-check's dlopen-smoke proves it).
#
# The library's calls to its own cn_* functions are bound inside it: the
# compiler may inline them (-fno-semantic-interposition) and the linker
# calls them directly instead of through the PLT (-Bsymbolic-functions,
# in SO_LDFLAGS).  A program cannot interpose a cn_* function on the
# library's own calls; it never could on libcnode.a's.
LIB_CFLAGS := -ftls-model=initial-exec -fno-semantic-interposition
$(LIB_OBJS): CFLAGS += $(LIB_CFLAGS) $(LTO)

# With LTO, the library's objects are optimised together once, into one
# relocatable object (an incremental link, -flinker-output=nolto-rel),
# and libcnode.a and libcnode.so are made of it.  A local cn_call
# crosses a dozen small functions in other files of the runtime (the
# process lookup, references, the record caches, the term checks), and
# inlining them where they are called made it 11-16% faster
# (bench/README, "Profiling").  Programs, tests included, link ordinary
# code: they need no -flto, and their links cost nothing more, where an
# LTO of every test binary added 85 s to a build.  The price: a static
# link takes all of libcnode, not only the files it uses.
ifneq ($(LTO),)
LIB_PARTS := $(BUILD)/libcnode.o
$(LIB_PARTS): $(LIB_OBJS)
	@echo "  LTO     $@"
	$(Q)$(CC) $(CFLAGS) $(LIB_CFLAGS) $(LTO) -r -flinker-output=nolto-rel \
	        -o $@ $^
else
LIB_PARTS := $(LIB_OBJS)
endif

$(LIB_A): $(LIB_PARTS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_PARTS)
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,$(SONAME) $(LDFLAGS) $(SO_LDFLAGS) -o $@ $^ \
	        $(LIBS)

$(BUILD)/tests/%: c_src/tests/%.c $(TEST_HELPERS) $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(TEST_HELPERS) $(LIB_A) $(LDFLAGS) \
	        $(LIBS) -lcmocka

$(BUILD)/examples/%: examples/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(LIB_A)
	@mkdir -p $(dir $@)
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(LIBS)

# The node's objects go to $(BUILD)/node/, since $(BUILD)/cnode is the
# program itself.
$(BUILD)/node/%.o: cnode/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

# The node program carries all of libcnode and exports its cn_* API, so
# that the server modules it loads (--load; cnode/module.h) link nothing.
NODE_LDFLAGS := -Wl,--export-dynamic-symbol=cn_* -Wl,--whole-archive \
        $(LIB_A) -Wl,--no-whole-archive

$(NODE_BIN): $(NODE_OBJS) $(LIB_A)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(NODE_OBJS) $(NODE_LDFLAGS) $(LIBS) -ldl

# The rules for the server modules (MODULE_SOS, above).
$(BUILD)/examples/modules/%.so: examples/modules/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@ (module)"
	$(Q)$(CC) $(CFLAGS) -fPIC -shared -o $@ $<

$(BUILD)/examples/modules/%_v2.so: examples/modules/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $@ (module, version 2)"
	$(Q)$(CC) $(CFLAGS) -DCOUNTER_VSN=2 -fPIC -shared -o $@ $<

# ---- Tests ----------------------------------------------------------------

# Per-test timeouts scale with CN_TEST_TIMEOUT_MULT (sanitizer runs are slow).
check: all
	$(Q)CN_BUILD=$(BUILD) sh c_src/tests/run.sh $(TEST_BINS) $(EXAMPLE_BINS)

# The threaded runtime tests only; `make test` runs this under TSan.
check-tsan: $(TSAN_TEST_BINS)
	$(Q)CN_BUILD=$(BUILD) sh c_src/tests/run.sh $(TSAN_TEST_BINS)

# Everything, in every configuration.  Each run.sh appends its counts to
# TEST_SUMMARY, and the last line is the total over all of them.
TEST_SUMMARY := $(CURDIR)/build/test-summary
SAN_MULT := CN_TEST_TIMEOUT_MULT=$${CN_TEST_TIMEOUT_MULT:-3}
# -j$(JOBS) unless make was already given -j (then the jobserver is shared).
SUBMAKE = $(MAKE) --no-print-directory \
        $(if $(findstring -j,$(MAKEFLAGS))$(findstring jobserver,$(MAKEFLAGS)),,-j$(JOBS))

test: deps
	@mkdir -p build && rm -f $(TEST_SUMMARY) && date +%s >$(TEST_SUMMARY).start
	@echo "==== make test: release build, C tests and examples"
	+$(Q)CN_TEST_SUMMARY=$(TEST_SUMMARY) $(SUBMAKE) SANITIZER= check
	@echo "==== make test: make install, then the examples built outside the tree"
	+$(Q)CN_TEST_SUMMARY=$(TEST_SUMMARY) $(SUBMAKE) SANITIZER= install-check
	@echo "==== make test: AddressSanitizer + UndefinedBehaviorSanitizer," \
	        "each group's tests in reverse order"
	+$(Q)CN_TEST_SUMMARY=$(TEST_SUMMARY) $(SAN_MULT) CN_TEST_ORDER=reverse \
	        $(SUBMAKE) SANITIZER=address check
	@echo "==== make test: ThreadSanitizer, runtime tests, shuffled"
	+$(Q)CN_TEST_SUMMARY=$(TEST_SUMMARY) $(SAN_MULT) CN_TEST_ORDER=shuffle \
	        $(SUBMAKE) SANITIZER=thread check-tsan
	@echo "==== make test: Erlang and Elixir tests against the node"
	$(Q)CN_TEST_SUMMARY=$(TEST_SUMMARY) $(MAKE) --no-print-directory SANITIZER= test-erl
	+$(Q)for t in $(TEST_EXTRAS); do \
	  echo "==== make test: $$t"; \
	  CN_TEST_SUMMARY=$(TEST_SUMMARY) $(MAKE) --no-print-directory \
	          SANITIZER= $$t || echo "0 1" >>$(TEST_SUMMARY); \
	done
	@echo "==== make test: total over all configurations" \
	        "($$(( $$(date +%s) - $$(cat $(TEST_SUMMARY).start) )) s)"
	@awk '{ p += $$1; f += $$2 } END { printf "%d passed, %d failed\n", p, f; \
	        exit f != 0 }' $(TEST_SUMMARY)

# Common Test suites run through rebar3 (rebar.config points it at
# test_erl/), ExUnit scripts with elixir; see .ci/test-erl.sh.  The node is
# built first.
test-erl: all
	$(Q)sh .ci/test-erl.sh $(BUILD)

# ---- Install --------------------------------------------------------------

# In cnode.pc, paths under PREFIX are written relative to ${prefix}.
PC_LIBDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR := $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

# Rewritten on every call: it depends on PREFIX, not on any file.
pc:
	@mkdir -p $(BUILD)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(PC_LIBDIR)|' \
	        -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|' -e 's|@EI_DIR@|$(EI_DIR)|' \
	        -e 's|@VERSION@|$(VERSION)|' cnode.pc.in >$(BUILD)/cnode.pc

# The cnode program links libcnode statically, so it runs from BINDIR
# without LD_LIBRARY_PATH; its manual is man/cnode.1.
install: lib pc $(NODE_BIN)
	install -d $(DESTDIR)$(INCLUDEDIR)/cnode $(DESTDIR)$(LIBDIR) \
	        $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(BINDIR) \
	        $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(NODE_BIN) $(DESTDIR)$(BINDIR)/cnode
	install -m 644 man/cnode.1 $(DESTDIR)$(MANDIR)/man1/cnode.1
	install -m 644 c_src/include/cnode.h $(DESTDIR)$(INCLUDEDIR)/cnode.h
	install -m 644 c_src/include/cnode/*.h $(DESTDIR)$(INCLUDEDIR)/cnode/
	install -m 644 $(LIB_A) $(DESTDIR)$(LIBDIR)/libcnode.a
	install -m 755 $(LIB_SO) $(DESTDIR)$(LIBDIR)/libcnode.so.$(VERSION)
	ln -sf libcnode.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libcnode.so
	install -m 644 $(BUILD)/cnode.pc $(DESTDIR)$(PKGCONFIGDIR)/cnode.pc

uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/cnode.h
	rm -f $(addprefix $(DESTDIR)$(INCLUDEDIR)/cnode/, \
	        $(notdir $(wildcard c_src/include/cnode/*.h)))
	-rmdir $(DESTDIR)$(INCLUDEDIR)/cnode 2>/dev/null
	rm -f $(DESTDIR)$(LIBDIR)/libcnode.a $(DESTDIR)$(LIBDIR)/libcnode.so \
	        $(DESTDIR)$(LIBDIR)/$(SONAME) \
	        $(DESTDIR)$(LIBDIR)/libcnode.so.$(VERSION)
	rm -f $(DESTDIR)$(PKGCONFIGDIR)/cnode.pc
	rm -f $(DESTDIR)$(BINDIR)/cnode $(DESTDIR)$(MANDIR)/man1/cnode.1

# Installs into a scratch DESTDIR, then builds each example (and a smoke
# program, so that the check has something to build before examples exist)
# outside the tree with nothing but `pkg-config cnode`: once against
# libcnode.so, once against libcnode.a with `pkg-config --static`.
install-check: lib pc $(NODE_BIN)
	$(Q)MAKE="$(MAKE)" CC="$(CC)" sh .ci/install-check.sh $(BUILD)

# ---- Run, bench, format, clean ---------------------------------------------

RUN_ARGS ?=

# make run builds only the node program (libcnode and cnode/), printing
# nothing but errors, then runs it: its ready line is the first thing on
# stdout.
run: deps
	+$(Q)$(SUBMAKE) -s SANITIZER= $(NODE_BIN) >/dev/null
	+$(Q)$(SUBMAKE) SANITIZER= run-node

run-node: $(NODE_BIN)
	$(Q)exec ./$(NODE_BIN) $(RUN_ARGS)

# Benchmarks run in the optimised release configuration.  bench/run.sh
# measures each figure side by side with the BEAM in the same run: the
# local figures, then the remote ones (a BEAM client calling the node
# program, and a BEAM peer).  bench-remote runs only the remote ones.
bench: deps
	+$(Q)$(SUBMAKE) SANITIZER= OPT=-O2 bench-run

bench-remote: deps
	+$(Q)$(SUBMAKE) SANITIZER= OPT=-O2 BENCH_SUITE=remote bench-run

bench-run: lib $(BENCH_BINS) $(NODE_BIN)
	$(Q)BENCH_SUITE=$(or $(BENCH_SUITE),all) sh bench/run.sh $(BUILD)

format:
	$(CLANG_FORMAT) -i $(FORMAT_SRCS)

format-check:
	$(CLANG_FORMAT) --dry-run -Werror $(FORMAT_SRCS)

# Checks the Debian packages the build and the tests need.  As root it
# installs what is missing; otherwise it prints the command and fails.
deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
	  echo "deps: not a Debian system; make sure these (or their" \
	       "equivalents) are installed: $(DEPS_PKGS)"; exit 0; \
	fi; \
	missing=""; \
	for p in $(DEPS_PKGS); do \
	  case "$$(dpkg-query -W -f='$${Status}' $$p 2>/dev/null)" in \
	  *" ok installed") ;; \
	  *) missing="$$missing $$p" ;; \
	  esac; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then \
	  echo "deps: installing$$missing"; \
	  apt-get update && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	else \
	  echo "deps: missing Debian packages:$$missing"; \
	  echo "Install them with:"; \
	  echo "  sudo apt-get install -y$$missing"; \
	  exit 1; \
	fi

clean:
	rm -rf build _build

# Optional parts, each in its own file under mk/ (fuzzing, soak, leak
# checks).  A part that `make test` should run in a short form adds the
# name of that target to TEST_EXTRAS; the target appends "PASSED FAILED"
# to $$CN_TEST_SUMMARY, as c_src/tests/run.sh does.
TEST_EXTRAS :=
include $(sort $(wildcard mk/*.mk))

-include $(LIB_OBJS:.o=.d) $(TEST_BINS:=.d) $(EXAMPLE_BINS:=.d) \
        $(BENCH_BINS:=.d) $(NODE_OBJS:.o=.d)
