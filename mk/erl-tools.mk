# The Erlang programs that mk/soak.mk and mk/leak.mk run: test_erl/cn_soak.erl
# and test_erl/cn_leak.erl, with the cn_node helper they share with the
# Common Test suites, compiled with erlc into $(BUILD)/erl-tools/.  (rebar3
# compiles the same files for `make test-erl`; this keeps the soak and the
# leak checks out of that run and lets them start in a second.)

ERLC ?= erlc
ERL_TOOLS_EBIN := $(BUILD)/erl-tools
ERL_TOOLS_BEAMS := $(patsubst %,$(ERL_TOOLS_EBIN)/%.beam,cn_node cn_soak cn_leak)

$(ERL_TOOLS_EBIN)/%.beam: test_erl/%.erl
	@mkdir -p $(dir $@)
	@echo "  ERLC    $<"
	$(Q)$(ERLC) -Werror -o $(dir $@) $<

# Runs one of them: $(call cn_erl_tool,MODULE,VAR=VALUE ...).  The tools
# find the node program through CN_BUILD and append "PASSED FAILED" to
# $$CN_TEST_SUMMARY themselves.
cn_erl_tool = CN_BUILD=$(CURDIR)/$(BUILD) $(2) \
        $(ERL) -noshell -pa $(CURDIR)/$(ERL_TOOLS_EBIN) -eval '$(1):main()'
