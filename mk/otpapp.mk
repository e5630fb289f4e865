# The OTP application cnode (src/, mix.exs, rebar.config): the node program
# it starts, and the tests of it as a dependency.
#
# make all copies the release node program to priv/cnode, where
# cnode:start_link/1 finds it through code:priv_dir(cnode) (rebar3 and mix
# link priv/ into their _build).  Only the release build does: a sanitizer
# build leaves priv/ alone.
#
# make otpapp-test: builds the small mix and rebar3 applications under
# test_erl/apps/ in copies under $(BUILD)/otpapp/, each depending on this
# tree by path (mix: path:, rebar3: _checkouts/cnode), offline, and runs
# each one's check: start the node under the app's supervisor, call kv,
# kill -9 the C process, see the supervisor restart it, call kv again.
# Part of make test; appends "PASSED FAILED" (one per application) to
# $$CN_TEST_SUMMARY.

OTPAPP_PRIV := priv/cnode
OTPAPP_DIR := $(BUILD)/otpapp

ifeq ($(SANITIZER),)
all: $(OTPAPP_PRIV)
endif

# What the application needs and nothing more: libcnode, the node program
# and its copy in priv/.  rebar3's pre_hook and mix's compiler run it, so
# that a project that depends on cnode builds no tests or examples.
app: $(OTPAPP_PRIV)

$(OTPAPP_PRIV): $(NODE_BIN)
	@mkdir -p $(dir $@)
	@echo "  CP      $@"
	$(Q)cp -f $< $@.tmp && mv -f $@.tmp $@

TEST_EXTRAS += otpapp-test

.PHONY: app otpapp-test otpapp-clean

otpapp-test: all
	$(Q)CN_ROOT=$(CURDIR) sh .ci/otpapp-test.sh $(CURDIR)/$(OTPAPP_DIR)

clean: otpapp-clean

otpapp-clean:
	rm -f $(OTPAPP_PRIV)
