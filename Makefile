# Every target installs what it needs by itself: a fresh clone needs only
# python3 (3.11+), and for the interop tests node/npm; system tools come from
# apt-get when we run as root and they are missing.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
JS_DIR  := tests/interop/js
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench venv node clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "rolecall needs Python 3.11 or newer"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# JS SDK for the interop tests; skipped (tests say why) when npm is absent.
$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(JS_DIR) && npm install --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: JS SDK interop tests will be skipped"; fi

node: $(JS_DIR)/node_modules/.installed

# Debian tools used by tests/benchmarks: installed when root and missing.
define need_deb
	@command -v $(1) >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			($(APT_GET) install -y -qq $(2) >/dev/null 2>&1 || \
			 ($(APT_GET) update -qq >/dev/null 2>&1 && $(APT_GET) install -y -qq $(2) >/dev/null 2>&1)) || \
			echo "could not install $(2): tests that need $(1) will be skipped"; \
		else echo "$(1) missing and not root: tests that need it will be skipped"; fi; }
endef

test: venv node
	$(call need_deb,zbarimg,zbar-tools)
	$(call need_deb,ec2-metadata,amazon-ec2-utils)
	$(call need_deb,systemd-analyze,systemd)
	$(PY) -m pytest

run: venv
	$(VENV)/bin/rolecall up

bench: venv
	$(call need_deb,wrk,wrk)
	$(call need_deb,taskset,util-linux)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules .pytest_cache .hypothesis
