# make test-erl-asan: builds the node program with SANITIZER=address
# (AddressSanitizer + UndefinedBehaviorSanitizer, in build/asan/) and runs
# every Common Test suite and ExUnit script of test_erl/ against
# build/asan/cnode; fails when any node's log (its stderr) holds a
# sanitizer report.  See .ci/test-erl-asan.sh.  Part of make test.

TEST_EXTRAS += test-erl-asan

.PHONY: test-erl-asan

test-erl-asan:
	+$(Q)$(MAKE) --no-print-directory SANITIZER=address build/asan/cnode \
	        build/asan/examples/my_node
	$(Q)sh .ci/test-erl-asan.sh build/asan
