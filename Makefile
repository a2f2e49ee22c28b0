# swarmlink — two commands do everything on a fresh machine:
#   make run    create .venv, install, run the demo
#   make test   install test deps, lint, type-check, run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.test-installed

.PHONY: run test lint typecheck unit bench natlab clean sysdeps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $(STAMP)

$(TSTAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $(TSTAMP)

run: $(STAMP)
	$(BIN)/swarmlink demo

# System packages the integration tests use: sshd for the SSH-through-tunnel test (and
# netcat-openbsd, ssh's ProxyCommand through the SOCKS5 proxy),
# iproute2 and nftables for the tests that build their own network namespaces and NATs
# (mDNS on a private LAN, the NAT lab, TUN mode), and capsh (libcap2-bin) to show TUN
# mode's error without CAP_NET_ADMIN, and socat (the benchmarks' native TLS relay reference).
# CI runs as root on a clean machine; elsewhere this is skipped when they are present.
sysdeps:
	@need=""; \
	if ! command -v sshd >/dev/null 2>&1 && ! test -x /usr/sbin/sshd; then need="$$need openssh-server openssh-client"; fi; \
	if ! command -v ip >/dev/null 2>&1 && ! test -x /usr/sbin/ip; then need="$$need iproute2"; fi; \
	if ! command -v nft >/dev/null 2>&1 && ! test -x /usr/sbin/nft; then need="$$need nftables"; fi; \
	if ! command -v nc >/dev/null 2>&1; then need="$$need netcat-openbsd"; fi; \
	if ! command -v capsh >/dev/null 2>&1 && ! test -x /usr/sbin/capsh; then need="$$need libcap2-bin"; fi; \
	if ! command -v socat >/dev/null 2>&1; then need="$$need socat"; fi; \
	if [ -n "$$need" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$need >/dev/null; \
	  else echo "note: missing$$need and not root; the tests that need them say so and skip"; fi; \
	fi

lint: $(TSTAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(TSTAMP)
	$(BIN)/mypy --strict src

# Two phases: everything light on two workers (a file stays on one worker), then the
# heavy real-network tests (50 daemons, the NAT lab, big transfers) alone.
unit: $(TSTAMP)
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q -n 2 --dist loadfile -m "not serial and not natlab"
	PYTHONASYNCIODEBUG=1 $(BIN)/pytest -q -m "serial or natlab"

test: sysdeps lint typecheck unit

# The NAT lab alone, with its matrix printed (root: network namespaces + nftables).
natlab: sysdeps $(TSTAMP)
	$(BIN)/pytest -q -s -m natlab tests/test_nat_lab.py

bench: sysdeps $(STAMP)
	@$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
