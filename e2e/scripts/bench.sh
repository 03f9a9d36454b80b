#!/usr/bin/env bash
# Side-by-side benchmark: Apache Kafka 4.1.1, the Floe playground (plaintext, and with TLS + SASL
# SCRAM-SHA-512 for W1 only) and a 3-agent Floe cluster on etcd + s3s-fs (and the same cluster with
# S3 Standard's latency injected by a proxy in front of s3s-fs), driven by the same Kafka 4.1.1
# load generators on this machine. `make bench`.
#
#   bench.sh                    # full run (about 15-20 minutes on 2 cores)
#   BENCH_QUICK=1 bench.sh      # smoke: every system and workload with tiny counts (about a minute)
#
# Workloads (1 KiB records; producers use acks=all linger.ms=5 batch.size=262144 except where said):
#   w1-none, w1-lz4   1 topic x 16 partitions, max rate (ProducerPerformance --throughput -1)
#   consume           ConsumerPerformance over w1-none's records
#   w3-50, w3-80      fixed rate at 50% / 80% of w1-none's max, on the w1 topic: p50/p99/p99.9
#   w3-50-pipelined   w3-50 with 50 requests in flight per connection (idempotence off), so the
#                     client's own 5-request pipeline does not queue records behind a flush
#   w1-defaults       w1-none with the Java producer's default batch.size=16384 (the rest as in
#                     w1-none, Kafka 4's producer defaults too: linger.ms=5, 5 in flight, idempotent)
#   w3-light          fixed rate of 1,000 records/s (a constant, so no w1-none needed), with
#                     w1-defaults' settings, on the w1 topic: p50/p99/p99.9
#   w3-defaults-50    fixed rate at 50% of w1-defaults' max, with w1-defaults' settings: the
#                     latency an untuned client sees at half load (p50/p99/p99.9); then the same
#                     rate from a fresh producer (bench/WarmLatency.java), timed only after a
#                     warm-up (BENCH_WARM_SECONDS): the first seconds of every producer (JIT,
#                     metadata, connections) hold a spike of several hundred ms, on Kafka too
#   w2-none, w2-lz4   1 topic x 1,000 partitions, max rate
#   catchup           a fresh consumer group reads BENCH_CATCHUP_MIB (1 GiB) of w2-none's topic
#                     from the start (ConsumerPerformance; when w2-none wrote less, an unmeasured
#                     producer tops the topic up first; quick mode reads what w2-none wrote):
#                     MiB/s, and on Floe the bucket GETs per GiB read against the objects
#                     w2-none's run PUT per GiB (its read amplification)
#   e2e               EndToEndLatency: one record at a time, acks=all, a tailing consumer
#   sarama-sync       Go's sarama SyncProducer (e2e/sarama, built by install-deps.sh), its defaults
#                     but acks=all: one record at a time for BENCH_E2E_SECONDS, send-to-ack
#                     percentiles and records/s (what a Go service that produces synchronously sees)
# Servers (and etcd, s3s-fs, the S3 latency proxy) run on SERVER_CPUS, clients on CLIENT_CPUS
# (taskset). Server CPU comes from /proc/<pid>/stat, RSS from VmHWM, Floe's object PUTs and GETs and
# etcd transactions from /metrics.
#
# Output: $BENCH_OUT/<timestamp>/{results.json,scoreboard.md,chart.png,commands.txt,logs/}, and
# $BENCH_OUT/latest pointing at it. Exits non-zero if any step fails or any figure is missing.
#
# Environment:
#   BENCH_QUICK=1            smoke mode (tiny counts; the figures mean nothing)
#   BENCH_SYSTEMS            subset, in order (default "kafka floe-playground floe-playground-secure
#                            floe-cluster floe-cluster-s3lat"; floe-playground-secure runs W1 only;
#                            floe-cluster-s3lat is floe-cluster with the agents' S3 endpoint behind
#                            e2e/scripts/s3-latency-proxy; with a baseline, "kafka
#                            floe-playground-baseline floe-playground floe-cluster")
#   BENCH_WORKLOADS          subset (default all: w1-none consume w3-50 w3-80 w3-50-pipelined
#                            w1-defaults w3-light w3-defaults-50 w1-lz4 w2-none catchup w2-lz4 e2e
#                            sarama-sync),
#                            run in that order whatever the order given; consume, w3-50, w3-80 and
#                            w3-50-pipelined use w1-none's records and rate, so they need w1-none
#                            listed too, w3-defaults-50 needs w1-defaults (its rate), and catchup
#                            reads w2-none's records, so it needs w2-none (the run refuses to start
#                            otherwise; w1-defaults and w3-light stand alone).
#                            E.g. BENCH_WORKLOADS=w1-lz4
#   BENCH_BASELINE_REF       a git ref (commit, tag, branch) of this clone: its release floe is built
#                            once into $FLOE_CACHE/bench-baseline/<full sha>/floe (a temporary
#                            `git worktree add --detach`, CARGO_TARGET_DIR $FLOE_CACHE/bench-baseline/target,
#                            then the worktree is removed) and reused from then on. Enables the system
#                            floe-playground-baseline: the playground again, from that binary, labelled
#                            with the commit. When it and floe-playground both run, the scoreboard gets a
#                            "Before / after" section (MiB/s per server core of each, change in percent).
#   BENCH_BASELINE_BIN       a floe binary for floe-playground-baseline instead of building
#                            BENCH_BASELINE_REF (which, if also set, only names the commit)
#   BENCH_SECONDS            target length of each max-rate run (default 30): a 100,000-record probe
#                            measures the rate, the run is sized to it (capped by BENCH_MAX_RECORDS,
#                            default 2,000,000, so disk use stays bounded)
#   BENCH_FIXED_SECONDS      length of each fixed-rate run (default 20)
#   BENCH_WARM_SECONDS       warm-up before w3-defaults-50's second, timed run (default 10)
#   BENCH_E2E_SECONDS        rough length of the end-to-end run and of sarama-sync (default 15)
#   BENCH_CATCHUP_MIB        how much catchup reads, in MiB of 1 KiB records (default 1024)
#   BENCH_SERVER_CPUS        taskset CPU list for servers (default 1; empty = no pinning)
#   BENCH_CLIENT_CPUS        taskset CPU list for clients (default 0; empty = no pinning)
#   BENCH_OUT                output root (default <repo>/target/bench)
#   BENCH_PUBLISH            full runs only: also copy scoreboard.md there (make bench: docs/bench/latest.md)
#   FLOE_BIN                 floe binary to measure, used as is (default: target/release/floe, built
#                            with cargo when missing or older than the sources)
#   BENCH_SKIP_BUILD=1       use target/release/floe as is
#   BENCH_FLOE_FLUSH_INTERVAL  --flush-interval of every Floe system: the least time between two
#                            flushes, the same knob as BENCH_FLOE_MAX_PUTS_PER_SECOND (1 / interval);
#                            give one of them. Unset: no flag, the agent's default. 250ms gives the
#                            old fixed-interval pace (4 PUTs/s)
#   BENCH_FLOE_MAX_PUTS_PER_SECOND  --max-puts-per-second of every Floe system but the baseline
#                            (an older build without the flag); unset: no flag, the agent's default
#                            (250 on the playground's file bucket, 10 on the cluster's s3://)
#   BENCH_S3_MEDIAN          floe-cluster-s3lat: median delay the proxy adds to each S3 request, a
#                            Go duration (default 20ms, S3 Standard's typical first byte)
#   BENCH_S3_P99             floe-cluster-s3lat: its 99th percentile (default 100ms); the delays are
#                            log-normal, capped at 1s, from a fixed seed. The proxy is built once into
#                            $FLOE_CACHE/bin/s3-latency-proxy (install-deps.sh, or here when missing
#                            or older than its sources; needs go)
#   BENCH_DISK_CACHE_BYTES   the cluster agents' --disk-cache-bytes, each with --disk-cache-dir
#                            under the run directory (default 2GiB, the agent's default budget);
#                            off: no disk cache, every read the memory cache misses is a bucket GET
#   BENCH_FLOE_LOG           the agents' --log filter (default warn); e.g.
#                            warn,floe_agent::handlers::fetch=debug,floe_agent::storage::reader=debug
#                            logs every fetch's plan and every bucket GET (object and range)
#   FLOE_CACHE, JAVA, MVN    as for kafka-reference.sh (Kafka jars are fetched once)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BENCH_DIR="$SCRIPT_DIR/bench"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_VERSION=4.1.1
JAVA="${JAVA:-java}"
CACHE="${FLOE_CACHE:-$HOME/.cache/floe}"
PYTHON="$CACHE/venv/bin/python"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
# shellcheck source=bench/systems.sh
source "$BENCH_DIR/systems.sh"
# shellcheck source=bench/workloads.sh
source "$BENCH_DIR/workloads.sh"

# ---------------------------------------------------------------------------------------------
# Settings.
QUICK="${BENCH_QUICK:-0}"
# Empty: no --flush-interval, the agent's default spacing (its PUT cap).
FLUSH_INTERVAL="${BENCH_FLOE_FLUSH_INTERVAL:-}"
# Empty: no --max-puts-per-second (systems.sh), the agent's default. The agent also reads
# FLOE_MAX_PUTS_PER_SECOND from its environment: an exported one would cap every floe process
# (the baseline's too, if it knows it) while the settings say "default", so it goes.
FLOE_MAX_PUTS="${BENCH_FLOE_MAX_PUTS_PER_SECOND:-}"
# The same for FLOE_FLUSH_INTERVAL (an exported one would also clash with the cap flag).
unset FLOE_MAX_PUTS_PER_SECOND FLOE_FLUSH_INTERVAL
# floe-cluster-s3lat's injected S3 latency (Go durations, given to the proxy as they are).
S3_MEDIAN="${BENCH_S3_MEDIAN:-20ms}"
S3_P99="${BENCH_S3_P99:-100ms}"
DISK_CACHE_BYTES="${BENCH_DISK_CACHE_BYTES:-2GiB}"
LATENCY_PROXY=""
[[ "$QUICK" == 0 || -z "$QUICK" ]] && QUICK=0 || QUICK=1
RECORD_SIZE=1024
# Producer batch.size: the bench's, and the Java producer's default (w1-defaults, w3-light).
BATCH_SIZE=262144
JAVA_BATCH_SIZE=16384
# w3-light's rate in records/s: a constant, the same on every system, and in quick mode too
# (where FIXED_SECONDS is 1: 1,000 records).
LIGHT_RATE=1000
W1_PARTITIONS=16
W2_PARTITIONS=1000
if ((QUICK)); then
    MODE=quick
    QUICK_RECORDS=3000
    QUICK_E2E_MESSAGES=5
    CATCHUP_MIB="" # quick mode's catchup reads what w2-none wrote
    THROUGHPUT_SECONDS=10 # only bounds the tools' timeouts in quick mode
    FIXED_SECONDS=1
    WARM_SECONDS=1
    E2E_SECONDS=5
else
    MODE=full
    THROUGHPUT_SECONDS="${BENCH_SECONDS:-30}"
    FIXED_SECONDS="${BENCH_FIXED_SECONDS:-20}"
    WARM_SECONDS="${BENCH_WARM_SECONDS:-10}"
    E2E_SECONDS="${BENCH_E2E_SECONDS:-15}"
    CATCHUP_MIB="${BENCH_CATCHUP_MIB:-1024}"
fi
PROBE_RECORDS=100000
MAX_RECORDS="${BENCH_MAX_RECORDS:-2000000}"
BASELINE_CONFIGURED=0
[[ -n "${BENCH_BASELINE_REF:-}" || -n "${BENCH_BASELINE_BIN:-}" ]] && BASELINE_CONFIGURED=1
if ((BASELINE_CONFIGURED)); then
    SYSTEMS_DEFAULT=(kafka "$SYSTEM_BASELINE" floe-playground floe-cluster)
else
    SYSTEMS_DEFAULT=("${SYSTEMS_ALL[@]}")
fi
read -ra SYSTEMS <<<"${BENCH_SYSTEMS:-${SYSTEMS_DEFAULT[*]}}"
((${#SYSTEMS[@]})) || die "BENCH_SYSTEMS names no system"
# The workloads, in the order they run. consume, w3-50, w3-80 and w3-50-pipelined use w1-none's
# records and rate; w3-light's rate is a constant. catchup reads w2-none's records, before w2-lz4
# adds its own to the same topic.
WORKLOADS_ALL=(w1-none consume w3-50 w3-80 w3-50-pipelined w1-defaults w3-light w3-defaults-50 w1-lz4 w2-none catchup w2-lz4 e2e sarama-sync)
read -ra WORKLOADS_GIVEN <<<"${BENCH_WORKLOADS:-${WORKLOADS_ALL[*]}}"
((${#WORKLOADS_GIVEN[@]})) || die "BENCH_WORKLOADS names no workload"
if (($(nproc) >= 2)); then
    SERVER_CPUS="${BENCH_SERVER_CPUS-1}"
    CLIENT_CPUS="${BENCH_CLIENT_CPUS-0}"
else
    SERVER_CPUS="${BENCH_SERVER_CPUS-}"
    CLIENT_CPUS="${BENCH_CLIENT_CPUS-}"
fi
BENCH_OUT="${BENCH_OUT:-$REPO_ROOT/target/bench}"

for v in THROUGHPUT_SECONDS FIXED_SECONDS E2E_SECONDS MAX_RECORDS ${CATCHUP_MIB:+CATCHUP_MIB}; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
# The agent checks the range (0.1..=1000) at start-up; a typo caught here costs no Kafka run first.
[[ -z "$FLOE_MAX_PUTS" || "$FLOE_MAX_PUTS" =~ ^[0-9]+(\.[0-9]+)?$ ]] \
    || die "BENCH_FLOE_MAX_PUTS_PER_SECOND must be a number of PUTs per second, e.g. 20 (got '$FLOE_MAX_PUTS')"
# --flush-interval is the same knob as --max-puts-per-second (1 / interval): the agent refuses both.
[[ -z "$FLUSH_INTERVAL" || -z "$FLOE_MAX_PUTS" ]] \
    || die "give BENCH_FLOE_FLUSH_INTERVAL or BENCH_FLOE_MAX_PUTS_PER_SECOND, not both (the interval is 1 / the cap)"
# The proxy checks them too (p99 at least the median), but only once the systems before it ran.
for v in S3_MEDIAN S3_P99; do
    [[ "${!v}" =~ ^[0-9]+(\.[0-9]+)?(ns|us|µs|ms|s)$ ]] || die "BENCH_${v} must be a Go duration such as 20ms (got '${!v}')"
done
for s in "${SYSTEMS[@]}"; do
    if [[ "$s" == "$SYSTEM_BASELINE" ]]; then
        ((BASELINE_CONFIGURED)) || die "system '$s' in BENCH_SYSTEMS needs a baseline: set BENCH_BASELINE_REF=<git ref> (built once into the cache) or BENCH_BASELINE_BIN=<floe binary>"
        continue
    fi
    [[ " ${SYSTEMS_ALL[*]} " == *" $s "* ]] || die "unknown system '$s' in BENCH_SYSTEMS (known: ${SYSTEMS_ALL[*]}, and $SYSTEM_BASELINE with BENCH_BASELINE_REF or BENCH_BASELINE_BIN)"
done
for w in "${WORKLOADS_GIVEN[@]}"; do
    [[ " ${WORKLOADS_ALL[*]} " == *" $w "* ]] || die "unknown workload '$w' in BENCH_WORKLOADS (known: ${WORKLOADS_ALL[*]})"
done
# Run in the default order whatever the order given, each once.
WORKLOADS=()
for w in "${WORKLOADS_ALL[@]}"; do
    [[ " ${WORKLOADS_GIVEN[*]} " == *" $w "* ]] && WORKLOADS+=("$w")
done
selected() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }
for w in consume w3-50 w3-80 w3-50-pipelined; do
    if selected "$w" && ! selected w1-none; then
        die "workload $w in BENCH_WORKLOADS needs w1-none (it uses w1-none's records and rate): add w1-none"
    fi
done
if selected w3-defaults-50 && ! selected w1-defaults; then
    die "workload w3-defaults-50 in BENCH_WORKLOADS needs w1-defaults (it runs at half of w1-defaults' rate): add w1-defaults"
fi
if selected catchup && ! selected w2-none; then
    die "workload catchup in BENCH_WORKLOADS needs w2-none (it reads w2-none's records): add w2-none"
fi
for c in "$JAVA" curl taskset timeout python3; do
    command -v "$c" >/dev/null || die "$c not found (make deps installs the prerequisites)"
done
[[ -x "$PYTHON" ]] || die "$PYTHON missing: run e2e/scripts/install-deps.sh (make deps)"
SARAMA_BIN="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/e2e-bin/floe-bench-sarama-sync"
[[ "$SARAMA_BIN" = /* ]] || SARAMA_BIN="$REPO_ROOT/$SARAMA_BIN"
if selected sarama-sync && [[ ! -x "$SARAMA_BIN" ]]; then
    die "$SARAMA_BIN missing (workload sarama-sync): run e2e/scripts/install-deps.sh (make deps), which builds it from e2e/sarama"
fi
"$PYTHON" -c 'import kafka, matplotlib' 2>/dev/null || die "kafka-python or matplotlib missing in $PYTHON: run e2e/scripts/install-deps.sh"

# ---------------------------------------------------------------------------------------------
# The floe binary: FLOE_BIN as given, else the release build, rebuilt when older than the sources.
resolve_floe_binary() {
    if [[ -n "${FLOE_BIN:-}" ]]; then
        [[ -x "$FLOE_BIN" ]] || die "FLOE_BIN=$FLOE_BIN is not an executable"
        return 0
    fi
    local target_dir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
    [[ "$target_dir" = /* ]] || target_dir="$REPO_ROOT/$target_dir"
    FLOE_BIN="$target_dir/release/floe"
    if [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]]; then
        [[ -x "$FLOE_BIN" ]] || die "BENCH_SKIP_BUILD=1 but $FLOE_BIN does not exist"
        return 0
    fi
    local reason=""
    if [[ ! -x "$FLOE_BIN" ]]; then
        reason="missing"
    elif [[ -n "$(find "$REPO_ROOT/agent" "$REPO_ROOT/third_party" "$REPO_ROOT/Cargo.toml" "$REPO_ROOT/Cargo.lock" \
        "$REPO_ROOT/rust-toolchain.toml" -newer "$FLOE_BIN" \
        \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' -o -name 'rust-toolchain.toml' \) \
        -print -quit 2>/dev/null)" ]]; then
        reason="older than the sources"
    fi
    if [[ -n "$reason" ]]; then
        log "release binary $FLOE_BIN is $reason: cargo build --release --bin floe (about 5 minutes cold)"
        (cd "$REPO_ROOT" && cargo build --release --bin floe) >&2 || die "cargo build --release failed"
    fi
    [[ -x "$FLOE_BIN" ]] || die "$FLOE_BIN does not exist"
}

# ---------------------------------------------------------------------------------------------
# The baseline floe binary (system floe-playground-baseline): BENCH_BASELINE_BIN as given, else
# BENCH_BASELINE_REF's release build, made once into $CACHE/bench-baseline/<full sha>/floe from a
# temporary detached worktree (CARGO_TARGET_DIR $CACHE/bench-baseline/target, shared by every
# baseline so dependencies compile once) and reused from then on. Sets BASELINE_BIN and
# BASELINE_COMMIT (the full sha, or "unknown" for a given binary).
BASELINE_BIN=""
BASELINE_COMMIT=""
BASELINE_WORKTREE=""
resolve_baseline_binary() {
    if [[ -n "${BENCH_BASELINE_BIN:-}" ]]; then
        [[ -x "$BENCH_BASELINE_BIN" ]] || die "BENCH_BASELINE_BIN=$BENCH_BASELINE_BIN is not an executable"
        BASELINE_BIN="$(cd "$(dirname "$BENCH_BASELINE_BIN")" && pwd)/$(basename "$BENCH_BASELINE_BIN")"
        BASELINE_COMMIT="${BENCH_BASELINE_REF:+$(git -C "$REPO_ROOT" rev-parse --verify --quiet "${BENCH_BASELINE_REF}^{commit}" || true)}"
        BASELINE_COMMIT="${BASELINE_COMMIT:-unknown}"
        return 0
    fi
    local sha
    sha="$(git -C "$REPO_ROOT" rev-parse --verify --quiet "${BENCH_BASELINE_REF}^{commit}")" \
        || die "BENCH_BASELINE_REF=$BENCH_BASELINE_REF is not a commit of $REPO_ROOT"
    BASELINE_COMMIT="$sha"
    local root="$CACHE/bench-baseline"
    BASELINE_BIN="$root/$sha/floe"
    mkdir -p "$root"
    # One build at a time per cache (a second bench.sh waits, then finds the binary).
    exec 8>"$root/build.lock"
    flock 8
    if [[ -x "$BASELINE_BIN" ]]; then
        log "baseline ${sha:0:12}: reusing $BASELINE_BIN"
        flock -u 8
        return 0
    fi
    BASELINE_WORKTREE="$(mktemp -d "${TMPDIR:-/tmp}/floe-bench-baseline.XXXXXX")"
    log "baseline ${sha:0:12}: cargo build --release --bin floe in a temporary worktree (several minutes cold; cached for later runs)"
    git -C "$REPO_ROOT" worktree add --detach "$BASELINE_WORKTREE" "$sha" >&2 \
        || die "git worktree add of $sha failed"
    (cd "$BASELINE_WORKTREE" && CARGO_TARGET_DIR="$root/target" cargo build --release --bin floe) >&2 \
        || die "cargo build --release of the baseline $sha failed"
    mkdir -p "$root/$sha"
    cp "$root/target/release/floe" "$BASELINE_BIN.tmp.$$"
    mv -f "$BASELINE_BIN.tmp.$$" "$BASELINE_BIN"
    remove_baseline_worktree
    flock -u 8
    log "baseline ${sha:0:12}: built $BASELINE_BIN"
}

remove_baseline_worktree() {
    if [[ -n "$BASELINE_WORKTREE" ]]; then
        git -C "$REPO_ROOT" worktree remove --force "$BASELINE_WORKTREE" >/dev/null 2>&1 || rm -rf "$BASELINE_WORKTREE"
        git -C "$REPO_ROOT" worktree prune >/dev/null 2>&1 || true
        BASELINE_WORKTREE=""
    fi
}

machine_info() {
    local commit dirty
    commit="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
    dirty="$( [[ -z "$(git -C "$REPO_ROOT" status --porcelain 2>/dev/null)" ]] && echo false || echo true)"
    emit machine info \
        nproc "$(nproc)" \
        cpu_model "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
        memory_gib "$(awk '/^MemTotal:/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)" \
        kernel "$(uname -sr)" \
        os "$(if . /etc/os-release 2>/dev/null; then echo "$PRETTY_NAME"; else uname -s; fi)" \
        java_version "$("$JAVA" -version 2>&1 | head -n 1)" \
        kafka_version "$KAFKA_VERSION" \
        floe_commit "$commit" \
        floe_worktree_dirty "$dirty" \
        floe_binary "$FLOE_BIN" \
        floe_binary_built "$( [[ -x "$FLOE_BIN" ]] && date -u -r "$FLOE_BIN" +%FT%TZ || echo none)" \
        load_average_at_start "$(cut -d' ' -f1-3 /proc/loadavg)"
    emit settings info \
        mode "$MODE" record_size "$RECORD_SIZE" producer_props "$(producer_props '<none|lz4>')" \
        java_defaults_producer_props "$(producer_props none "$JAVA_BATCH_SIZE")" light_records_per_sec "$LIGHT_RATE" \
        w1_partitions "$W1_PARTITIONS" w2_partitions "$W2_PARTITIONS" \
        throughput_seconds_target "$THROUGHPUT_SECONDS" fixed_seconds "$FIXED_SECONDS" \
        e2e_seconds_target "$E2E_SECONDS" max_records "$MAX_RECORDS" catchup_mib "${CATCHUP_MIB:-all}" \
        server_cpus "${SERVER_CPUS:-unpinned}" client_cpus "${CLIENT_CPUS:-unpinned}" \
        floe_flush_interval "${FLUSH_INTERVAL:-default}" floe_max_puts_per_second "${FLOE_MAX_PUTS:-default}" \
        s3_latency_median "$S3_MEDIAN" s3_latency_p99 "$S3_P99" workloads "${WORKLOADS[*]}"
    if [[ -n "$BASELINE_BIN" ]]; then
        emit machine info baseline_commit "$BASELINE_COMMIT" baseline_binary "$BASELINE_BIN" \
            baseline_binary_built "$(date -u -r "$BASELINE_BIN" +%FT%TZ)"
    fi
}

# ---------------------------------------------------------------------------------------------
DATA_ROOT=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_system
    remove_baseline_worktree
    [[ -n "$DATA_ROOT" && -d "$DATA_ROOT" ]] && rm -rf "$DATA_ROOT"
    if ((rc != 0)); then
        log "FAILED (exit $rc); logs in ${LOG_DIR:-?}"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

bench_system() {
    local system="$1"
    local dir="$DATA_ROOT/$system"
    mkdir -p "$dir"
    log "=== $system ==="
    RSS_RUN_PEAK_MIB=0 RSS_RUN_PEAK_PROCESS_MIB=0
    case "$system" in
        kafka) start_kafka "$dir" ;;
        floe-playground) start_floe_playground "$dir" ;;
        "$SECURE_SYSTEM") start_floe_playground_secure "$dir" ;;
        "$SYSTEM_BASELINE") start_floe_playground_baseline "$dir" ;;
        floe-cluster) start_floe_cluster "$dir" ;;
        floe-cluster-s3lat) start_floe_cluster_s3lat "$dir" ;;
    esac
    local w1="bench-w1" w2="bench-w2" e2e="bench-e2e" topics=() w workloads=()
    for w in "${WORKLOADS[@]}"; do
        if [[ "$system" != "$SECURE_SYSTEM" || " ${SECURE_WORKLOADS[*]} " == *" $w "* ]]; then
            workloads+=("$w")
        fi
    done
    ((${#workloads[@]})) || { log "$system runs only ${SECURE_WORKLOADS[*]}: none selected"; stop_system; return 0; }
    for w in "${workloads[@]}"; do
        case "$w" in
            w2-* | catchup) [[ " ${topics[*]} " == *" $w2:"* ]] || topics+=("$w2:$W2_PARTITIONS") ;;
            e2e | sarama-sync) [[ " ${topics[*]} " == *" $e2e:"* ]] || topics+=("$e2e:1") ;;
            *) [[ " ${topics[*]} " == *" $w1:"* ]] || topics+=("$w1:$W1_PARTITIONS") ;;
        esac
    done
    env $ADMIN_SECURITY "$PYTHON" "$BENCH_DIR/admin.py" create-topics "$BOOTSTRAP" "${topics[@]}" \
        >>"$LOG_DIR/admin.log" 2>&1 || die "could not create the topics on $system (see $LOG_DIR/admin.log)"

    local max_rps="" defaults_rps="" w1_records="" w2_records="" w2_puts="" w2_mib=""
    for w in "${workloads[@]}"; do
        case "$w" in
            w1-none)
                run_throughput "$system" w1-none "$w1" "$W1_PARTITIONS" none
                max_rps="$P_RPS" w1_records="$P_SENT"
                ;;
            consume) run_consume "$system" "$w1" "$w1_records" ;;
            w3-50) run_fixed_rate "$system" w3-50 "$w1" 50 "$max_rps" ;;
            w3-80) run_fixed_rate "$system" w3-80 "$w1" 80 "$max_rps" ;;
            w3-50-pipelined) run_fixed_rate "$system" w3-50-pipelined "$w1" 50 "$max_rps" 50 ;;
            w1-defaults)
                run_throughput "$system" w1-defaults "$w1" "$W1_PARTITIONS" none "$JAVA_BATCH_SIZE"
                defaults_rps="$P_RPS"
                ;;
            w3-light) run_light_rate "$system" w3-light "$w1" "$LIGHT_RATE" ;;
            w3-defaults-50)
                run_fixed_rate "$system" w3-defaults-50 "$w1" 50 "$defaults_rps" 5 "$JAVA_BATCH_SIZE"
                run_warm_latency "$system" w3-defaults-50 "$w1" 50 "$defaults_rps"
                ;;
            w1-lz4) run_throughput "$system" w1-lz4 "$w1" "$W1_PARTITIONS" lz4 ;;
            w2-none)
                run_throughput "$system" w2-none "$w2" "$W2_PARTITIONS" none
                # Every record of the topic (probe included) for catchup, and the objects the
                # measured run PUT for how much data (null PUTs on Kafka).
                w2_records="$T_RECORDS" w2_puts="$D_PUTS" w2_mib="$D_MIB"
                ;;
            catchup) run_catchup "$system" "$w2" "$w2_records" "$w2_puts" "$w2_mib" ;;
            w2-lz4) run_throughput "$system" w2-lz4 "$w2" "$W2_PARTITIONS" lz4 ;;
            e2e) run_end_to_end "$system" "$e2e" ;;
            sarama-sync) run_sarama_sync "$system" "$e2e" ;;
        esac
    done

    local infra_rss=null
    ((${#INFRA_PIDS[@]})) && infra_rss="$(rss_hwm_mib "${INFRA_PIDS[@]}")"
    latency_proxy_stats
    fold_rss_peaks "${SERVER_PIDS[@]}"
    emit "$system" system label "$SYSTEM_LABEL" server_processes "${#SERVER_PIDS[@]}" \
        rss_hwm_mib "$RSS_RUN_PEAK_MIB" rss_hwm_process_mib "$RSS_RUN_PEAK_PROCESS_MIB" infra_rss_hwm_mib "$infra_rss" \
        s3_proxy_requests "$PROXY_REQUESTS" s3_proxy_delay_p50_ms "$PROXY_P50_MS" s3_proxy_delay_p99_ms "$PROXY_P99_MS"
    stop_system
    rm -rf "$dir"
}

main() {
    local started
    started="$(date +%s)"
    if [[ " ${SYSTEMS[*]} " == *" $SYSTEM_BASELINE "* ]]; then
        resolve_baseline_binary
    elif ((BASELINE_CONFIGURED)); then
        log "a baseline is configured but $SYSTEM_BASELINE is not in BENCH_SYSTEMS: not building or running it"
    fi
    if [[ " ${SYSTEMS[*]} " == *" floe-playground "* || " ${SYSTEMS[*]} " == *" floe-cluster "* ||
        " ${SYSTEMS[*]} " == *" floe-cluster-s3lat "* ]]; then
        resolve_floe_binary
    else
        FLOE_BIN="${FLOE_BIN:-none (no system of this run uses it)}"
    fi
    if [[ " ${SYSTEMS[*]} " == *" floe-cluster-s3lat "* ]]; then
        LATENCY_PROXY="$(ensure_latency_proxy)"
    fi
    LIBS="$("$SCRIPT_DIR/kafka-reference.sh" jars | tail -n 1)"
    [[ -f "$LIBS/kafka-tools-$KAFKA_VERSION.jar" ]] || die "Kafka tools jars missing in $LIBS"

    RUN_ID="$(date -u +%Y%m%dT%H%M%SZ)"
    RUN_DIR="$BENCH_OUT/$RUN_ID"
    [[ -e "$RUN_DIR" ]] && RUN_ID="$RUN_ID-$$" && RUN_DIR="$BENCH_OUT/$RUN_ID"
    LOG_DIR="$RUN_DIR/logs"
    mkdir -p "$LOG_DIR"
    : >"$RUN_DIR/commands.txt"
    : >"$RUN_DIR/notes.txt"
    TOOL_LOG4J="$RUN_DIR/log4j2-tools.properties"
    cat >"$TOOL_LOG4J" <<EOF
name = floe-bench-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
    DATA_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/floe-bench.XXXXXX")"
    log "mode $MODE, systems ${SYSTEMS[*]}, workloads ${WORKLOADS[*]}, servers on CPUs '${SERVER_CPUS:-any}', clients on '${CLIENT_CPUS:-any}', output $RUN_DIR"
    machine_info

    local system
    for system in "${SYSTEMS[@]}"; do
        bench_system "$system"
    done

    emit machine info load_average_at_end "$(cut -d' ' -f1-3 /proc/loadavg)" wall_seconds $(($(date +%s) - started))
    "$PYTHON" "$BENCH_DIR/render.py" "$RUN_DIR" || die "render.py failed"
    ln -sfn "$RUN_ID" "$BENCH_OUT/latest"
    if [[ -n "${BENCH_PUBLISH:-}" ]]; then
        if ((QUICK)); then
            log "quick mode: not copying the scoreboard to $BENCH_PUBLISH"
        else
            mkdir -p "$(dirname "$BENCH_PUBLISH")"
            cp "$RUN_DIR/scoreboard.md" "$BENCH_PUBLISH"
            log "copied the scoreboard to $BENCH_PUBLISH"
        fi
    fi
    echo
    cat "$RUN_DIR/scoreboard.md"
    log "done in $(($(date +%s) - started))s: $RUN_DIR"
}

main "$@"
