# cnode: build, test, bench, install.
#
#   make                 build libcnode (static and shared), tests, examples
#   make test            install missing deps, build, run every test
#   make check           run the C tests and examples in this configuration
#   make run             install missing deps, build and start the node
#   make bench           side-by-side benchmarks against the BEAM
#   make install         PREFIX=/usr/local DESTDIR=
#   make SANITIZER=address|undefined|thread ...   instrumented build
#
# Each configuration builds into its own directory under build/.

PREFIX ?= /usr/local
DESTDIR ?=
SANITIZER ?=
V ?= 0

ERL ?= erl
EI_DIR := $(shell $(ERL) -noshell -eval 'io:format("~s",[code:lib_dir(erl_interface)]),halt().' 2>/dev/null)
UV_CFLAGS := $(shell pkg-config --cflags libuv 2>/dev/null)
UV_LIBS := $(shell pkg-config --libs libuv 2>/dev/null)

CC ?= cc
OPT ?= -O2
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

CFLAGS += $(BASE_CFLAGS) $(SAN_FLAGS)
LDFLAGS += $(SAN_FLAGS) -pthread
LIBS := -L$(EI_DIR)/lib -lei $(UV_LIBS) -lcrypto -lm -lpthread

ifeq ($(V),0)
Q := @
else
Q :=
endif

# The library, layer by layer: util <- term <- runtime <- dist.
LIB_SRCS := $(sort $(wildcard c_src/util/*.c c_src/term/*.c \
        c_src/runtime/*.c c_src/dist/*.c))
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB_A := $(BUILD)/libcnode.a
LIB_SO := $(BUILD)/libcnode.so

TEST_SRCS := $(sort $(wildcard c_src/tests/test-*.c))
TEST_BINS := $(TEST_SRCS:c_src/tests/%.c=$(BUILD)/tests/%)
TEST_HELPERS := $(filter-out $(TEST_SRCS),$(wildcard c_src/tests/*.c))

EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/examples/%)

NODE_SRCS := $(sort $(wildcard cnode/*.c))
NODE_BIN := $(BUILD)/cnode

BENCH_SRCS := $(sort $(wildcard bench/*.c))
BENCH_BINS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

DEPFLAGS = -MMD -MP

.PHONY: all lib tests examples check test run bench install uninstall \
        clean deps format tsan-check
.DEFAULT_GOAL := all

all: lib tests examples $(if $(NODE_SRCS),$(NODE_BIN)) $(BENCH_BINS)

lib: $(LIB_A) $(LIB_SO)
tests: $(TEST_BINS)
examples: $(EXAMPLE_BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(DEPFLAGS) -c $< -o $@

$(LIB_A): $(LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(LIB_SO): $(LIB_OBJS)
	@echo "  LD      $@"
	$(Q)$(CC) -shared -Wl,-soname,libcnode.so.0 $(LDFLAGS) -o $@ $^ $(LIBS)

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

$(NODE_BIN): $(NODE_SRCS:%.c=$(BUILD)/%.o) $(LIB_A)
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $(NODE_SRCS:%.c=$(BUILD)/%.o) $(LIB_A) $(LIBS)

# Per-test timeouts scale with CN_TEST_TIMEOUT_MULT (sanitizer runs are slow).
check: all
	$(Q)CN_BUILD=$(BUILD) sh c_src/tests/run.sh $(TEST_BINS) $(EXAMPLE_BINS)

-include $(LIB_OBJS:.o=.d) $(TEST_BINS:=.d) $(EXAMPLE_BINS:=.d) \
        $(BENCH_BINS:=.d)

clean:
	rm -rf build _build
