# The short version of `make bench` that `make test` runs: every figure but
# million (the BEAM side alone takes ~20 s), one round, small N, nothing
# pinned.  It checks that each figure is measured on both sides (no FAIL,
# the exit status of bench/run.sh); the figures themselves mean nothing at
# this size and are not compared with any target.

TEST_EXTRAS += bench-smoke

BENCH_SMOKE_FIGURES := local_call process_call idle_memory spawn call_seq \
        call_16 call_64 call_64k_payload call_1m_payload cast \
        syscalls_per_call_16 hol_p99 c_client_call fanin_30

.PHONY: bench-smoke

bench-smoke: lib $(BENCH_BINS) $(NODE_BIN)
	$(Q)out=$(BUILD)/bench-smoke.out; \
	if BENCH_ROUNDS=1 BENCH_PLACEMENT=free BENCH_SCALE=0.05 BENCH_HOL_MB=5 \
	        BENCH_FANIN_NODES=2 BENCH_FIGURES="$(BENCH_SMOKE_FIGURES)" \
	        sh bench/run.sh $(BUILD) >$$out 2>&1 && \
	        n=$$(grep -c '^[a-z_0-9]*: cnode=[0-9.]* beam=[0-9.]* ratio=' $$out) && \
	        [ "$$n" -ge $(words $(BENCH_SMOKE_FIGURES)) ]; then \
	  echo "bench-smoke: $$n figures measured on both sides (see $$out)"; \
	  [ -z "$$CN_TEST_SUMMARY" ] || echo "1 0" >>"$$CN_TEST_SUMMARY"; \
	else \
	  grep -v '^#' $$out | tail -20; \
	  echo "bench-smoke: a figure failed (full output in $$out)"; \
	  [ -z "$$CN_TEST_SUMMARY" ] || echo "0 1" >>"$$CN_TEST_SUMMARY"; \
	  exit 1; \
	fi
