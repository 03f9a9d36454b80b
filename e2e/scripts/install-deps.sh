#!/usr/bin/env bash
# Install the machine prerequisites for Floe's end-to-end tests.
#
#   e2e/scripts/install-deps.sh
#
# Idempotent and fast when everything is already present. Prints what it
# installs. Works from any cwd.
#
#  * Debian packages (apt-get; `apt-get update` only if something is missing), chromium included
#    for the console test
#  * Python venv at ${FLOE_CACHE:-$HOME/.cache/floe}/venv with the pinned
#    e2e/python/requirements.txt (skipped when the stamp for the requirements
#    hash exists), plus matplotlib for the bench chart
#  * java + mvn (default-jdk-headless, maven) if missing
#  * builds the Java e2e client (e2e/java) if its pom.xml exists and the jar is
#    older than any source file
#  * builds the franz-go driver (e2e/go) and the bench's sarama probe (e2e/sarama) into
#    target/e2e-bin when their sources or the Go version changed (needs `go` on PATH; modules
#    from the Go proxy)
#  * installs the kafkajs driver's pinned packages (e2e/node/package-lock.json)
#    into e2e/node/node_modules when the lock file or Node version changed
#  * fetches the Apache Kafka 4.1.1 jars (clients, tools, server) once into
#    ${FLOE_CACHE}/kafka-4.1.1/libs for the Kafka CLI tool suite
#  * with FLOE_K8S=1 only: builds the kubelet-less Kubernetes tier (e2e/k8s/build.sh; ~20 min
#    cold, a no-op once cached)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
CACHE="${FLOE_CACHE:-$HOME/.cache/floe}"
VENV="$CACHE/venv"
REQS="$ROOT/e2e/python/requirements.txt"

log() { echo "[install-deps] $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

APT_UPDATED=0
apt_install() {
    # apt_install pkg... : installs only the packages that are not installed.
    local missing=()
    local p
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]; then
            missing+=("$p")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    log "installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# --- 0. Rust toolchain ----------------------------------------------------------
# rustup's own downloads are not reachable from every machine, and Debian's rustc is too old for
# the workspace, so the toolchain must already be there; say so clearly when it is not.
if ! command -v cargo >/dev/null 2>&1; then
    echo "[install-deps] cargo not found: install Rust 1.89+ with rustup (rust-toolchain.toml pins the version)" >&2
    exit 1
fi

# --- 1. Debian packages -------------------------------------------------------
# Building the workspace needs the first line (cmake, curl and OpenSSL for the bundled librdkafka
# the e2e crate uses, built with TLS for tests/tls.rs); the tests need kcat (librdkafka 2.0.2), a Python venv and libfaketime (the fault
# tier's clock skew).
apt_install build-essential pkg-config zlib1g-dev cmake libcurl4-openssl-dev libssl-dev protobuf-compiler libprotobuf-dev
if [ "${1:-}" = "--build-only" ]; then
    exit 0
fi
apt_install kcat python3-venv faketime
# The console test (e2e/tests/console.rs) loads every console page in headless Chromium.
apt_install chromium

# --- 2. Java toolchain --------------------------------------------------------
if ! command -v java >/dev/null 2>&1 || ! command -v mvn >/dev/null 2>&1; then
    apt_install default-jdk-headless maven
fi

# --- 3. Python venv -------------------------------------------------------------
# Prefer Debian's interpreter (the one python3-venv belongs to); fall back to
# whatever python3 is on PATH.
if [ -x /usr/bin/python3 ]; then
    PY=/usr/bin/python3
else
    PY="$(command -v python3)"
fi
REQ_HASH="$( (cat "$REQS"; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-16)"
STAMP="$VENV/.floe-requirements-$REQ_HASH"
if [ -f "$STAMP" ] && [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import kafka' >/dev/null 2>&1; then
    :
else
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        log "creating Python venv $VENV (with $PY)"
        mkdir -p "$CACHE"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV"
    fi
    log "installing Python packages from $REQS into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS"
    "$VENV/bin/python" - <<'EOF'
import kafka.codec as c
missing = [n for n, ok in (("snappy", c.has_snappy()), ("lz4", c.has_lz4()), ("zstd", c.has_zstd())) if not ok]
if missing:
    raise SystemExit("kafka-python is missing codecs: %s" % missing)
import kafka
print("[install-deps] kafka-python %s with gzip/snappy/lz4/zstd" % kafka.__version__)
EOF
    rm -f "$VENV"/.floe-requirements-*
    touch "$STAMP"
fi

# --- 3b. Bench renderer: matplotlib for `make bench`'s chart (kept out of requirements.txt so the
# suites' pinned set stays small; checked on every run, installed once).
MATPLOTLIB_VERSION=3.10.9
if ! "$VENV/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$MATPLOTLIB_VERSION')" >/dev/null 2>&1; then
    log "installing matplotlib $MATPLOTLIB_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check "matplotlib==$MATPLOTLIB_VERSION"
fi

# --- 4. Java e2e client --------------------------------------------------------
POM="$ROOT/e2e/java/pom.xml"
JAR="$ROOT/e2e/java/target/floe-e2e-java.jar"
if [ -f "$POM" ]; then
    need_build=1
    if [ -f "$JAR" ]; then
        newer="$(find "$POM" "$ROOT/e2e/java/src" -newer "$JAR" -type f -print -quit 2>/dev/null || true)"
        if [ -z "$newer" ]; then
            need_build=0
        fi
    fi
    if [ "$need_build" -eq 1 ]; then
        log "building Java e2e client ($POM)"
        (cd "$ROOT" && mvn -q -f e2e/java/pom.xml -DskipTests package dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory=target/libs)
        if [ ! -f "$JAR" ]; then
            log "WARNING: mvn succeeded but $JAR does not exist (check finalName in pom.xml)"
        fi
    fi
fi

# --- 5. Go programs: the franz-go driver (e2e/go) and the bench's sarama probe (e2e/sarama) -------
# Each module's go directive names the Go version it needs; a Go 1.21+ on PATH fetches that
# toolchain from the module proxy by itself (GOTOOLCHAIN=auto).
# The binaries go under the worktree's target directory, not the shared cache: two worktrees on
# different sources must not overwrite each other's (Go's build cache keeps rebuilds quick).
if ! command -v go >/dev/null 2>&1; then
    echo "[install-deps] go not found: install Go 1.21+ (https://go.dev/dl); the franz-go suite and the bench's sarama probe need it" >&2
    exit 1
fi
build_go() { # build_go MODULE_DIR BINARY_NAME: rebuilt when the sources or the Go version changed
    local dir="$1" bin
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/e2e-bin/$2"
    local hash stamp
    hash="$( (cd "$dir" && cat go.mod go.sum ./*.go; go version) | sha256sum | cut -c1-16)"
    stamp="$(dirname "$bin")/.$2-$hash"
    if [ ! -f "$stamp" ] || [ ! -x "$bin" ]; then
        log "building $2 ($dir) into $bin"
        mkdir -p "$(dirname "$bin")"
        (cd "$dir" && go build -trimpath -o "$bin.tmp" . && mv "$bin.tmp" "$bin")
        rm -f "$(dirname "$bin")/.$2-"*
        touch "$stamp"
    fi
}
build_go "$ROOT/e2e/go" floe-e2e-franz-go
build_go "$ROOT/e2e/sarama" floe-bench-sarama-sync

# --- 6. kafkajs driver (Node) --------------------------------------------------------------------
NODE_DIR="$ROOT/e2e/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
NODE_HASH="$( (cat "$NODE_DIR/package-lock.json"; node --version) | sha256sum | cut -c1-16)"
NODE_STAMP="$NODE_DIR/node_modules/.floe-lock-$NODE_HASH"
if [ ! -f "$NODE_STAMP" ]; then
    log "installing the kafkajs driver's packages into $NODE_DIR/node_modules (npm ci)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$NODE_STAMP"
fi

# --- 7. Apache Kafka 4.1.1 jars (the CLI tools suite runs kafka-topics & co. from them) ----------
"$SCRIPT_DIR/kafka-reference.sh" jars >/dev/null

# --- 8. Cluster-mode servers: etcd (Debian) and an S3-compatible server (s3s-fs) ---------------
"$SCRIPT_DIR/etcd.sh" install >/dev/null
"$SCRIPT_DIR/s3.sh" install >/dev/null

# --- 9. Kubernetes tier (opt-in: the cold build of kube-apiserver & co. takes ~20 minutes) ------
if [ "${FLOE_K8S:-0}" = 1 ]; then
    # Assigned first so a failed build stops this script (set -e ignores a failing substitution
    # inside another command's arguments).
    k8s_binaries=$("$ROOT/e2e/k8s/build.sh" | tail -n 1)
    log "Kubernetes tier binaries: $k8s_binaries"
fi

log "ok"
