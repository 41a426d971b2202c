# Every target installs what it needs by itself: a fresh clone needs only
# python3 (3.11+), and for the interop tests node/npm; system tools come from
# apt-get when we run as root and they are missing.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
JS_DIR  := tests/interop/js
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: run test bench soak venv node model clean

# constraints.txt pins the AWS SDK (botocore/boto3/awscli) the tests and `make model` use.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "rolecall needs Python 3.11 or newer"; exit 1; }
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing python3-venv (Debian's python3 has no ensurepip without it)"; \
			$(APT_GET) install -y -qq python3-venv >/dev/null 2>&1 || \
			($(APT_GET) update -qq >/dev/null 2>&1 && $(APT_GET) install -y -qq python3-venv >/dev/null 2>&1); \
		else echo "$(PYTHON) cannot create a venv (no ensurepip): install python3-venv"; exit 1; fi; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

venv: $(VENV)/.installed

# Regenerate sts_backend/model/{sts,iam}.json from the pinned botocore's service models
# (tests/test_validation.py fails when they differ); after changing the pin in constraints.txt.
model: venv
	$(PY) tools/gen_model_constraints.py

# JS SDK for the interop tests; skipped (tests say why) without npm or with node < 20
# (the AWS SDK for JavaScript v3 declares engines node >= 20).
$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json
	@if ! command -v npm >/dev/null 2>&1; then \
		echo "npm not found: JS SDK interop tests will be skipped"; \
	elif ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then \
		echo "node $$(node --version) < 20: JS SDK interop tests will be skipped"; \
	else cd $(JS_DIR) && npm install --no-audit --no-fund --loglevel=error && touch node_modules/.installed; fi

node: $(JS_DIR)/node_modules/.installed

# Debian tools used by tests/benchmarks: installed when root and missing. The PostgreSQL tests
# start their own throwaway cluster with Debian's server binaries (package postgresql). The laptop tests use
# tmux (a terminal to type MFA codes into), dbus-run-session and gnome-keyring (a real Secret
# Service) and Debian's AWS CLI v2 at /usr/bin/aws (the PyPI one in .venv is v1); the guides'
# blocks (tests/test_guides.py) run curl and openssl.
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
	$(call need_deb,ip,iproute2)
	$(call need_deb,systemd-analyze,systemd)
	$(call need_deb,tmux,tmux)
	$(call need_deb,dbus-run-session,dbus-daemon)
	$(call need_deb,gnome-keyring-daemon,gnome-keyring)
	$(call need_deb,/usr/bin/aws,awscli)
	$(call need_deb,pg_ctlcluster,postgresql)
	$(call need_deb,curl,curl)
	$(call need_deb,openssl,openssl)
	$(PY) -m pytest

run: venv
	$(VENV)/bin/rolecall up

bench: venv
	$(call need_deb,wrk,wrk)
	$(call need_deb,taskset,util-linux)
	$(PY) bench/run.py

# A million generated requests against `rolecall up` over real sockets (tools/soak.py):
# not in CI, about ten minutes; fails on a crash, an undocumented 5xx or a leaked secret.
soak: venv
	$(PY) tools/soak.py

clean:
	rm -rf $(VENV) $(JS_DIR)/node_modules .pytest_cache .hypothesis
