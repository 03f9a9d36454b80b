# Floe: the verbs people type. `make help` lists them.
SHELL := /usr/bin/env bash -euo pipefail
.DEFAULT_GOAL := help

CARGO ?= cargo
FLOE_CACHE ?= $(HOME)/.cache/floe
export FLOE_CACHE
# Parallel test binaries share two cores with the servers they start.
TEST_THREADS ?= 2

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install system packages, client libraries and build the e2e clients (idempotent)
	e2e/scripts/install-deps.sh

.PHONY: build
build: ## Build the workspace (debug)
	$(CARGO) build --workspace --all-targets

.PHONY: run
run: ## Start the playground on 127.0.0.1:9092 (data in ./floe-data)
	e2e/scripts/install-deps.sh --build-only
	$(CARGO) build --release --bin floe
	./target/release/floe playground

.PHONY: demo
demo: ## Start the playground with demo traffic; the console is at http://127.0.0.1:8080/
	e2e/scripts/install-deps.sh --build-only
	$(CARGO) build --release --bin floe
	./target/release/floe demo --data-dir ./floe-demo-data

.PHONY: lint
lint: ## rustfmt, clippy with warnings as errors, and the operator's dependency rule
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) operator-deps

# The operator shares formats with the agent through floe-meta (meta/), never through the agent
# crate: linking the agent would bring the Kafka codec and the compression libraries into the
# operator's binary (issue 17). See meta/src/lib.rs for what may go into floe-meta.
OPERATOR_FORBIDDEN_DEPS := kafka-protocol|lz4|zstd|snap|flate2|floe-agent

.PHONY: operator-deps
operator-deps: ## Fail when the operator links the agent, the Kafka codec or a compression crate
	@found="$$($(CARGO) tree -p floe-operator -e normal --prefix none | grep -E '^($(OPERATOR_FORBIDDEN_DEPS)) ' | sed 's/ (\*)$$//' | sort -u || true)"; \
	if [ -n "$$found" ]; then \
		printf 'floe-operator must not depend on these (they belong to the agent; share code through floe-meta in meta/, see meta/src/lib.rs):\n%s\n' "$$found" >&2; \
		exit 1; \
	fi

.PHONY: check
check: ## The fast tier (a few minutes warm): lint, then the shared crate's, agent's and operator's unit and in-process tests; no servers, no Kubernetes
	$(MAKE) lint
	$(CARGO) test -p floe-meta -p floe-agent -p floe-operator -- --test-threads=$(TEST_THREADS)

.PHONY: deps-k8s
deps-k8s: ## deps plus the kubelet-less Kubernetes tier (kube-apiserver & co. from Go modules; ~20 min cold, cached)
	FLOE_K8S=1 e2e/scripts/install-deps.sh

# The soak (e2e/tests/soak.rs) runs 3 minutes in `make test`; `make soak` runs the full ten.
FLOE_SOAK_SECONDS ?= 180

.PHONY: test
test: ## Everything CI runs: lint, generated-file drift, chart check, images, unit and end-to-end suites
	mkdir -p target && rm -f target/stage-times.txt
	e2e/scripts/timed.sh "deps (incl. Kubernetes tier)" $(MAKE) deps-k8s
	e2e/scripts/timed.sh lint $(MAKE) lint
	e2e/scripts/timed.sh crds-check $(MAKE) crds-check
	e2e/scripts/timed.sh chart $(MAKE) chart
	e2e/scripts/timed.sh images $(MAKE) images
	e2e/scripts/timed.sh build $(CARGO) build --workspace --all-targets
	rm -rf target/compat-matrix
	# The suites record the compatibility matrix as they go; render it even when a suite failed,
	# then fail with the suites (or with a failed or missing matrix cell). Per-stage and per-suite
	# times are printed at the end, whatever the outcome.
	status=0; \
	e2e/scripts/timed.sh "cargo test" bash -o pipefail -c 'FLOE_SOAK_SECONDS=$(FLOE_SOAK_SECONDS) $(CARGO) test --workspace --no-fail-fast -- --test-threads=$(TEST_THREADS) 2>&1 | tee target/test-output.log' || status=1; \
	$(CARGO) run --quiet -p floe-e2e --bin compat-matrix > target/compat-matrix.log 2>&1 || status=1; \
	cat target/compat-matrix.log; \
	e2e/scripts/suite-times.sh target/test-output.log || true; \
	printf '\nPer-stage times:\n'; sort -t"$$(printf '\t')" -k1,1nr target/stage-times.txt | awk -F'\t' '{ printf "%8d s\t%s\n", $$1, $$2 }'; \
	printf 'Disk free at the end: %s (a full disk fails builds and tests alike)\n' "$$(df -h . | awk 'NR == 2 { print $$4 }')"; \
	e2e/scripts/failures.sh target/test-output.log || true; \
	grep -E '^(compatibility matrix:|Error:)' target/compat-matrix.log | head -20 || true; \
	exit $$status

.PHONY: e2e
e2e: deps ## Only the end-to-end suites (real clients against real processes)
	$(CARGO) build --bin floe
	$(CARGO) test -p floe-e2e -- --test-threads=$(TEST_THREADS)

# The fault tier (e2e/tests/faults.rs): `make test` runs each scenario once with short loads; this
# runs each three times with longer ones.
FLOE_FAULTS_REPEAT ?= 3
FLOE_FAULTS_LOAD_SECONDS ?= 60

.PHONY: faults
faults: deps ## Every fault scenario 3 times with 60 s loads (FLOE_FAULTS_REPEAT, FLOE_FAULTS_LOAD_SECONDS); ~30 min
	$(CARGO) build --bin floe
	FLOE_FAULTS_REPEAT=$(FLOE_FAULTS_REPEAT) FLOE_FAULTS_LOAD_SECONDS=$(FLOE_FAULTS_LOAD_SECONDS) \
		$(CARGO) test -p floe-e2e --test faults -- --test-threads=$(TEST_THREADS)

.PHONY: soak
soak: deps ## The etcd-growth soak for ten minutes on 1,000 partitions (make test runs 3 minutes)
	$(CARGO) build --bin floe
	FLOE_SOAK_SECONDS=600 $(CARGO) test -p floe-e2e --test soak -- --nocapture

.PHONY: test-square-wave
test-square-wave: deps-k8s ## The autoscaling suite with the 10-minute square wave (make test runs 3 periods)
	$(CARGO) build --workspace --bins
	FLOE_E2E_SQUARE_WAVE_PERIODS=10 $(CARGO) test -p floe-e2e --test autoscaling -- --nocapture --test-threads=$(TEST_THREADS)

.PHONY: bench
bench: deps ## Floe vs Apache Kafka side by side (release build; ~20 min, BENCH_QUICK=1 for a smoke)
	BENCH_PUBLISH=docs/bench/latest.md e2e/scripts/bench.sh

# Issue 15: the produce per-core figure (W1 lz4) of the playground before the stricter produce
# validation (3f7e59c, the first parent of its merge be33919) and after (this tree), in one run.

.PHONY: bench-validation
bench-validation: deps ## W1 lz4 on the playground before (3f7e59c, built once into the cache) and after the stricter validation
	BENCH_BASELINE_REF=3f7e59c3e7ad5c7a58d61bb7d49ec8ffff33cd02 BENCH_SYSTEMS="floe-playground-baseline floe-playground" BENCH_WORKLOADS="w1-lz4" e2e/scripts/bench.sh

# cargo-fuzz runs on the pinned stable toolchain: RUSTC_BOOTSTRAP=1 unlocks the -Z flags it
# passes (sanitizer, coverage), so no nightly is needed. Installed once into the cache.
FUZZ_SECONDS ?= 60
FUZZ_RSS_LIMIT_MB ?= 2048
FUZZ_TIMEOUT_SECONDS ?= 10
# Extra libFuzzer flags, e.g. FUZZ_FLAGS=-runs=10000000 to stop after ten million inputs.
FUZZ_FLAGS ?=
FUZZ_TARGETS := request_decoder record_batch_decoder record_validator
CARGO_FUZZ_VERSION := 0.13.2
CARGO_FUZZ := $(FLOE_CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION)/bin/cargo-fuzz

$(CARGO_FUZZ):
	$(CARGO) install --locked --version $(CARGO_FUZZ_VERSION) --root $(FLOE_CACHE)/cargo-fuzz-$(CARGO_FUZZ_VERSION) cargo-fuzz

.PHONY: fuzz
fuzz: $(CARGO_FUZZ) ## Run each fuzz target for FUZZ_SECONDS (default 60) on one core; crashes land in fuzz/artifacts/
	cd fuzz && $(CARGO) run --quiet --target-dir ../target --example seed_corpus -- corpus
	cd fuzz && for target in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO_FUZZ) run $$target corpus/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=$(FUZZ_RSS_LIMIT_MB) -timeout=$(FUZZ_TIMEOUT_SECONDS) -print_final_stats=1 $(FUZZ_FLAGS); \
	done

.PHONY: crds
crds: ## Regenerate crds/*.yaml from operator/src/crd (the operator installs the same definitions)
	$(CARGO) run --quiet -p floe-operator -- crds --out-dir crds

.PHONY: crds-check
crds-check: crds ## Fail when the committed CRDs differ from the Rust types
	@git diff --exit-code -- crds || { echo "CRDs drifted from operator/src/crd: run 'make crds' and commit" >&2; exit 1; }

.PHONY: chart
chart: ## helm lint and helm template | kubeconform -strict, offline
	e2e/chart/check.sh

.PHONY: images
images: ## Container images for floe and floe-operator as OCI archives in target/images/ (buildah, no daemon)
	e2e/scripts/images.sh

.PHONY: clean
clean: ## Remove build output (keeps the download cache in $(FLOE_CACHE))
	$(CARGO) clean
