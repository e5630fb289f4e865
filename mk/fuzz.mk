# Fuzzing: the libFuzzer targets in c_src/fuzz/ (one fuzz_*.c per target,
# seed corpora in c_src/fuzz/corpus/<target>/).
#
#   make fuzz          the long run: each target for FUZZ_RUNS executions
#                      (default 10000000), or for FUZZ_SECONDS seconds when
#                      that is given instead; FUZZ_JOBS parallel jobs per
#                      target (default 1).  Prints executions, exec/s and
#                      crashes per target; a crash fails it and leaves the
#                      input under build/fuzz/artifacts/<target>/.
#   make fuzz-smoke    each target for FUZZ_SMOKE_SECONDS (default 15) from
#                      the checked-in corpus; part of `make test`.
#   make fuzz-build    only build the targets.
#   make fuzz-seeds    regenerate the seed corpora from a real OTP node
#                      (c_src/fuzz/seeds.escript; needs erl and epmd).
#
# The targets and the library sources they exercise are built with clang
# (-fsanitize=fuzzer,address,undefined) into build/fuzz/, apart from the
# gcc builds.  Only the library sources the targets reach are built: the
# term layer, and the I/O-free protocol code of the distribution layer.

FUZZ_CC ?= clang
FUZZ_OPT ?= -O2
FUZZ_BUILD := build/fuzz
FUZZ_RUNS ?=
FUZZ_SECONDS ?=
FUZZ_JOBS ?= 1
FUZZ_SMOKE_SECONDS ?= 15
FUZZ_FLAGS ?=

FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all \
        -fno-omit-frame-pointer
# The library is instrumented for coverage (fuzzer-no-link); the harnesses
# are not, so that the fuzzer's feedback is about library code and not
# about the checks around it (which also runs them faster).
FUZZ_CFLAGS := -std=c11 $(FUZZ_OPT) -g -pthread -D_REENTRANT -D_GNU_SOURCE \
        $(WARN) -Ic_src/include -Ic_src -I$(EI_DIR)/include $(FUZZ_SAN)
FUZZ_COV := -fsanitize=fuzzer-no-link

FUZZ_LIB_SRCS := $(sort $(wildcard c_src/util/*.c c_src/term/*.c)) \
        c_src/dist/handshake.c c_src/dist/control.c c_src/dist/epmd.c \
        c_src/dist/frag.c c_src/runtime/blocks.c
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.c=$(FUZZ_BUILD)/obj/%.o)
FUZZ_LIB_A := $(FUZZ_BUILD)/libcnode-fuzz.a
FUZZ_SRCS := $(sort $(wildcard c_src/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRCS:c_src/fuzz/%.c=%)
FUZZ_BINS := $(FUZZ_NAMES:%=$(FUZZ_BUILD)/%)

TEST_EXTRAS += fuzz-smoke

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-seeds

fuzz-build: $(FUZZ_BINS)

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (fuzz)"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_COV) $(DEPFLAGS) -c $< -o $@

$(FUZZ_BUILD)/obj/c_src/fuzz/%.o: c_src/fuzz/%.c
	@mkdir -p $(dir $@)
	@echo "  CC      $< (fuzz harness)"
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) $(DEPFLAGS) -c $< -o $@

$(FUZZ_LIB_A): $(FUZZ_LIB_OBJS)
	@echo "  AR      $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(FUZZ_BINS): $(FUZZ_BUILD)/%: $(FUZZ_BUILD)/obj/c_src/fuzz/%.o $(FUZZ_LIB_A)
	@echo "  LD      $@"
	$(Q)$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ \
	        -L$(EI_DIR)/lib -lei -lssl -lcrypto -lm -pthread

# The runs go through c_src/fuzz/run.sh, which reads libFuzzer's final
# statistics and keeps the working corpora and any crash under build/fuzz/.
FUZZ_ENV = FUZZ_BUILD=$(FUZZ_BUILD) FUZZ_RUNS=$(FUZZ_RUNS) \
        FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) \
        FUZZ_SMOKE_SECONDS=$(FUZZ_SMOKE_SECONDS) FUZZ_FLAGS="$(FUZZ_FLAGS)"

fuzz: $(FUZZ_BINS)
	$(Q)$(FUZZ_ENV) sh c_src/fuzz/run.sh long $(FUZZ_BINS)

fuzz-smoke: $(FUZZ_BINS)
	$(Q)$(FUZZ_ENV) sh c_src/fuzz/run.sh smoke $(FUZZ_BINS)

fuzz-seeds:
	$(Q)escript c_src/fuzz/seeds.escript

-include $(FUZZ_LIB_OBJS:.o=.d) $(FUZZ_NAMES:%=$(FUZZ_BUILD)/obj/c_src/fuzz/%.d)
