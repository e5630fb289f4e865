# make leakcheck: LEAK_RSS_CYCLES (3000) connect / calls to kv and echo /
# disconnect cycles from a BEAM node, with the node's VmRSS flat (growth
# under LEAK_MAX_GROWTH_KIB, 64, from cycle LEAK_WARMUP, 300, to the end);
# then LEAK_VALGRIND_CYCLES (300) cycles with the node program under
# valgrind --leak-check=full, a SIGTERM, and 0 bytes definitely and
# indirectly lost.  Prints "leak:" lines.  See test_erl/cn_leak.erl.
#
# make leakcheck-short: 500 RSS cycles (warm-up 100) and 30 under valgrind;
# part of make test.

LEAK_RSS_CYCLES ?= 3000
LEAK_WARMUP ?= 300
LEAK_VALGRIND_CYCLES ?= 300
LEAK_MAX_GROWTH_KIB ?= 64

TEST_EXTRAS += leakcheck-short

.PHONY: leakcheck leakcheck-short

leakcheck: $(NODE_BIN) $(ERL_TOOLS_BEAMS)
	$(Q)$(call cn_erl_tool,cn_leak,LEAK_RSS_CYCLES=$(LEAK_RSS_CYCLES) \
	        LEAK_WARMUP=$(LEAK_WARMUP) \
	        LEAK_VALGRIND_CYCLES=$(LEAK_VALGRIND_CYCLES) \
	        LEAK_MAX_GROWTH_KIB=$(LEAK_MAX_GROWTH_KIB))

leakcheck-short: $(NODE_BIN) $(ERL_TOOLS_BEAMS)
	$(Q)$(call cn_erl_tool,cn_leak,LEAK_RSS_CYCLES=500 LEAK_WARMUP=100 \
	        LEAK_VALGRIND_CYCLES=30 \
	        LEAK_MAX_GROWTH_KIB=$(LEAK_MAX_GROWTH_KIB))
