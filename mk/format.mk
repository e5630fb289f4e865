# The checked-in .clang-format holds for every C file: `make test` fails
# when one differs (fix it with `make format`).

TEST_EXTRAS += format-test

.PHONY: format-test

format-test:
	$(Q)if $(MAKE) --no-print-directory format-check >/dev/null 2>&1; then \
	  echo "format: every C file is as clang-format writes it"; \
	  [ -z "$$CN_TEST_SUMMARY" ] || echo "1 0" >>"$$CN_TEST_SUMMARY"; \
	else \
	  $(MAKE) --no-print-directory format-check 2>&1 | grep 'error:' | head -20; \
	  echo "format: run make format"; \
	  [ -z "$$CN_TEST_SUMMARY" ] || echo "0 1" >>"$$CN_TEST_SUMMARY"; \
	  exit 1; \
	fi
