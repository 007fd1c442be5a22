# byok-operator — every target installs what it needs (Python venv, Go-built Kubernetes
# binaries, the LiteLLM test bed), so `make demo` and `make test` work on a fresh machine.

SHELL        := /bin/bash
PYTHON       ?= python3
VENV         := .venv
BIN          := $(VENV)/bin
SHARED       ?= $(abspath ../shared)
TESTBED      := $(SHARED)/litellm-testbed
STATE        ?= $(abspath .state)
PYTEST_ARGS  ?=

export BYOK_SHARED_DIR := $(SHARED)

.PHONY: help venv tools testbed lint test test-fast test-unit test-contract test-cluster test-e2e cluster-up cluster-down demo bench bench-scale soak clean

help:
	@echo "make demo   - local control plane + LiteLLM + operator + example tenants (enable -> rotate -> revert)"
	@echo "make test   - lint, type-check and the whole test suite (real kube-apiserver, real LiteLLM)"
	@echo "make bench  - apply N tenants at once and report throughput, latency and RSS"
	@echo "make bench-scale - the 1,000- and 10,000-tenant runs (about an hour)"
	@echo "make soak   - the randomized crash and chaos tests at several times their size (~25 min)"
	@echo "make cluster-up / cluster-down - a local kube-apiserver + etcd for your own experiments"

$(BIN)/.installed: pyproject.toml dev/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]' -e ./dev
	@touch $@

venv: $(BIN)/.installed

# kube-apiserver, etcd and kubectl, built once with the machine's Go into ~/.cache/byok-operator
# (or taken from BYOK_K8S_BIN_DIR), linked into .venv/bin so `source .venv/bin/activate` has them.
tools: venv
	@bindir=$${BYOK_K8S_BIN_DIR:-$$(./hack/build-k8s-binaries.sh)} && \
	  for tool in kubectl kube-apiserver kube-controller-manager etcd; do ln -sf "$$bindir/$$tool" $(BIN)/$$tool; done
	@./hack/install-helm.sh $(BIN)

testbed:
	@if [ -z "$$LITELLM_URL" ]; then $(TESTBED)/install; fi

lint: venv
	$(BIN)/ruff check operator dev tests hack
	$(BIN)/ruff format --check operator dev tests hack
	$(BIN)/mypy
	$(BIN)/mypy hack/*.py
	$(BIN)/lint-imports

test: venv tools testbed lint
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest $(PYTEST_ARGS)

test-fast: venv
	$(BIN)/pytest -m "not cluster and not gateway and not slow" $(PYTEST_ARGS)

# One tier at a time (README, "Tests in tiers"): unit needs nothing, contract runs its
# double-backed half without servers, cluster and e2e start the servers they need.
test-unit: venv
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-contract: venv tools testbed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest tests/contract $(PYTEST_ARGS)

test-cluster: venv tools
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest tests/cluster $(PYTEST_ARGS)

test-e2e: venv tools testbed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest tests/e2e $(PYTEST_ARGS)

cluster-up: tools
	@mkdir -p $(STATE)
	@PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m byok_dev.stack up $(STATE)

cluster-down: venv
	@$(BIN)/python -m byok_dev.stack down $(STATE)

demo: tools testbed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python hack/demo.py --state $(STATE)/demo

bench: tools testbed
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python hack/bench.py --state $(STATE)/bench $(BENCH_ARGS)

# The long randomized tests at several times their `make test` size: 40 SIGKILL rounds and a
# 60-tenant chaos run, each with a fresh seed (printed, so a failure can be replayed).
soak: tools testbed
	PATH=$(abspath $(BIN)):$$PATH BYOK_CRASH_ROUNDS=40 BYOK_CRASH_SEED=$$RANDOM BYOK_CHAOS_TENANTS=60 \
	  $(BIN)/pytest -p no:randomly -s \
	  tests/e2e/test_e2e_resilience.py::test_sigkill_at_random_moments_always_converges \
	  tests/e2e/test_e2e_chaos.py $(PYTEST_ARGS)

# The scale runs of issue 7: 1,000 and 10,000 tenants (half BYOK), 5 minutes idle, a restart.
# About an hour on 2 cores; each run prints its table and writes STATE/bench-scale-N.json.
bench-scale: tools testbed
	for n in 1000 10000; do \
	  PATH=$(abspath $(BIN)):$$PATH $(BIN)/python hack/bench.py --state $(STATE)/bench-scale \
	    --tenants $$n --namespaces 50 --timeout 7200 --settle 300 --restart 120 \
	    --out $(STATE)/bench-scale-$$n.json $(BENCH_ARGS) || exit $$?; \
	done

clean:
	rm -rf $(VENV) $(STATE) .mypy_cache .ruff_cache .pytest_cache
