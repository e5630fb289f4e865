# make soak: SOAK_CALLERS (1000) BEAM processes call and cast kv and echo on
# the real node program for SOAK_SECONDS (600), with messages of 1 KiB to
# 1 MiB, then check that nothing was lost and print the figures ("soak:"
# lines: calls sent, received and lost, casts verified, p50/p99/p99.9
# latency, calls/s, peak memory).  See test_erl/cn_soak.erl.
#
# make soak-short: the same for 30 s, with the per-caller lines only in
# $(BUILD)/soak/callers.txt; part of make test.

SOAK_SECONDS ?= 600
SOAK_CALLERS ?= 1000
SOAK_MAX_BIG ?= 16
SOAK_VERBOSE ?= 1
SOAK_SHORT_SECONDS ?= 30

TEST_EXTRAS += soak-short

.PHONY: soak soak-short

soak: $(NODE_BIN) $(ERL_TOOLS_BEAMS)
	$(Q)$(call cn_erl_tool,cn_soak,SOAK_SECONDS=$(SOAK_SECONDS) \
	        SOAK_CALLERS=$(SOAK_CALLERS) SOAK_MAX_BIG=$(SOAK_MAX_BIG) \
	        SOAK_VERBOSE=$(SOAK_VERBOSE))

soak-short: $(NODE_BIN) $(ERL_TOOLS_BEAMS)
	$(Q)$(call cn_erl_tool,cn_soak,SOAK_SECONDS=$(SOAK_SHORT_SECONDS) \
	        SOAK_CALLERS=$(SOAK_CALLERS) SOAK_MAX_BIG=$(SOAK_MAX_BIG) \
	        SOAK_VERBOSE=0)
