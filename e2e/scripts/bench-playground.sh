#!/usr/bin/env bash
# Benchmark a single-process `floe playground` with Apache Kafka 4.1.1's own perf tools.
#
#   bench-playground.sh            # full run: 1,000,000 x 1 KiB records
#   BENCH_QUICK=1 bench-playground.sh   # smoke: 20,000 records, 5 s fixed-rate run
#
# Steps: build target/release/floe if missing or stale; start a playground on a fresh temp data dir
# and free loopback ports; create topic bench-w1 (16 partitions); ProducerPerformance at max
# throughput (acks=all, linger.ms=5, batch.size=262144, no compression) while sampling the server's
# CPU from /proc; ProducerPerformance at ~50% of the measured max rate for latency percentiles;
# ConsumerPerformance over the first BENCH_RECORDS records; stop the server, delete the temp dir and
# print/write a Markdown table and a JSON object. Exits non-zero if any step fails or any number
# can't be parsed.
#
# Environment:
#   BENCH_RECORDS         records for the max-throughput producer and the consumer (default 1000000;
#                         20000 with BENCH_QUICK=1)
#   BENCH_RECORD_SIZE     record size in bytes (default 1024)
#   BENCH_FIXED_SECONDS   length of the fixed-rate latency run (default 30; 5 with BENCH_QUICK=1)
#   BENCH_FLUSH_INTERVAL  passed to --flush-interval (default: the server's default, 250ms)
#   BENCH_PORT_BASE       first port tried for the Kafka/HTTP listeners (default 19500)
#   BENCH_OUT             where the .md/.json reports go (default <repo>/target/bench)
#   BENCH_SKIP_BUILD=1    use the existing target/release/floe as is (fail if missing), no cargo
#   BENCH_KEEP=1          keep the temp dir (server + tool logs) instead of deleting it
#   FLOE_CACHE, JAVA, MVN as for kafka-reference.sh (which fetches the Kafka jars once)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
[[ "$TARGET_DIR" = /* ]] || TARGET_DIR="$REPO_ROOT/$TARGET_DIR"
FLOE_BIN="$TARGET_DIR/release/floe"
JAVA="${JAVA:-java}"
TOPIC=bench-w1
PARTITIONS=16

QUICK="${BENCH_QUICK:-0}"
[[ "$QUICK" == 0 || -z "$QUICK" ]] && QUICK=0 || QUICK=1
if ((QUICK)); then
    RECORDS="${BENCH_RECORDS:-20000}"
    FIXED_SECONDS="${BENCH_FIXED_SECONDS:-5}"
    MODE=quick
else
    RECORDS="${BENCH_RECORDS:-1000000}"
    FIXED_SECONDS="${BENCH_FIXED_SECONDS:-30}"
    MODE=full
fi
RECORD_SIZE="${BENCH_RECORD_SIZE:-1024}"
PORT_BASE="${BENCH_PORT_BASE:-19500}"
OUT_DIR="${BENCH_OUT:-$REPO_ROOT/target/bench}"
FLUSH_INTERVAL="${BENCH_FLUSH_INTERVAL:-}"

log() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

for v in RECORDS FIXED_SECONDS RECORD_SIZE PORT_BASE; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
done
command -v "$JAVA" >/dev/null || die "java not found"
command -v curl >/dev/null || die "curl not found"

START_EPOCH=$(date +%s)
TIMESTAMP="$(date -u +%Y%m%dT%H%M%SZ)"
COMMANDS=()   # exact commands, for the report
WORK=""
SERVER_PID=""

# ---------------------------------------------------------------------------------------------
# Cleanup: stop the server by PID, delete the temp dir; on failure show the logs first.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 100; i++)); do
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            log "server pid $SERVER_PID ignored SIGTERM for 10s; sending SIGKILL"
            kill -KILL "$SERVER_PID" 2>/dev/null || true
        fi
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n "$WORK" && -d "$WORK" ]]; then
        if ((rc != 0)); then
            local f
            for f in "$WORK"/*.log; do
                [[ -s "$f" ]] || continue
                echo "----- tail of $(basename "$f") -----" >&2
                tail -n 30 "$f" >&2 || true
            done
        fi
        if [[ "${BENCH_KEEP:-0}" == 1 ]]; then
            log "keeping $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    if ((rc != 0)); then
        log "FAILED (exit $rc)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Print a command as a copy-pasteable shell line and remember it for the report.
record_cmd() {
    local line
    line="$(printf '%q ' "$@")"
    COMMANDS+=("${line% }")
}

# ---------------------------------------------------------------------------------------------
# 1. Release binary.
build_if_needed() {
    local reason=""
    if [[ "${BENCH_SKIP_BUILD:-0}" == 1 ]]; then
        [[ -x "$FLOE_BIN" ]] || die "BENCH_SKIP_BUILD=1 but $FLOE_BIN does not exist"
        log "BENCH_SKIP_BUILD=1: using $FLOE_BIN as is (built $(date -u -r "$FLOE_BIN" +%FT%TZ))"
        return 0
    fi
    if [[ ! -x "$FLOE_BIN" ]]; then
        reason="missing"
    elif [[ -n "$(find "$REPO_ROOT/agent" "$REPO_ROOT/third_party" "$REPO_ROOT/Cargo.toml" "$REPO_ROOT/Cargo.lock" \
                    "$REPO_ROOT/rust-toolchain.toml" -newer "$FLOE_BIN" \
                    \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' -o -name 'rust-toolchain.toml' \) \
                    -print -quit 2>/dev/null)" ]]; then
        reason="older than the sources"
    fi
    if [[ -n "$reason" ]]; then
        log "release binary $FLOE_BIN is $reason: running 'cargo build --release --bin floe' (takes ~5 minutes cold)"
        (cd "$REPO_ROOT" && cargo build --release --bin floe) >&2 || die "cargo build --release failed"
        [[ -x "$FLOE_BIN" ]] || die "cargo build succeeded but $FLOE_BIN does not exist"
    fi
}

# ---------------------------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 2. Start the playground on the first free pair of ports from PORT_BASE (retrying on bind races).
start_server() {
    local port=$PORT_BASE attempt kport hport
    local extra=()
    [[ -n "$FLUSH_INTERVAL" ]] && extra=(--flush-interval "$FLUSH_INTERVAL")
    for ((attempt = 0; attempt < 20; attempt++)); do
        while port_open "$port" || port_open $((port + 1)); do
            port=$((port + 2))
            ((port < 65000)) || die "no free port pair found from $PORT_BASE"
        done
        kport=$port
        hport=$((port + 1))
        local cmd=("$FLOE_BIN" playground --data-dir "$WORK/data" --kafka-listen "127.0.0.1:$kport"
            --http-listen "127.0.0.1:$hport" --group-initial-rebalance-delay 0s "${extra[@]}")
        : >"$WORK/server.log"
        "${cmd[@]}" >"$WORK/server.log" 2>&1 </dev/null &
        SERVER_PID=$!
        local i
        for ((i = 0; i < 600; i++)); do
            if ! kill -0 "$SERVER_PID" 2>/dev/null; then
                break
            fi
            if grep -q "Kafka bootstrap:" "$WORK/server.log" &&
                [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$hport/readyz" || true)" == 200 ]]; then
                BOOTSTRAP="$(sed -n 's/.*Kafka bootstrap: *\([^ ]*\).*/\1/p' "$WORK/server.log" | head -n 1)"
                [[ -n "$BOOTSTRAP" ]] || die "could not parse the bootstrap address from the server output"
                HTTP_PORT=$hport
                record_cmd "${cmd[@]}"
                log "playground ready on $BOOTSTRAP (pid $SERVER_PID, http 127.0.0.1:$hport, $((i / 10)).$((i % 10))s)"
                return 0
            fi
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            die "playground (pid $SERVER_PID) not ready within 60s"
        fi
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
        if grep -qiE "bind|address (already )?in use" "$WORK/server.log"; then
            log "ports $kport/$hport taken (race?); trying the next pair"
            port=$((port + 2))
            continue
        fi
        die "playground exited during startup"
    done
    die "could not start the playground after 20 attempts"
}

# ---------------------------------------------------------------------------------------------
# /proc helpers for the server process.
proc_cpu_ticks() { # utime+stime in clock ticks (fields 14 and 15; comm may contain spaces)
    local stat
    stat="$(cat "/proc/$1/stat")" || die "cannot read /proc/$1/stat"
    stat="${stat##*) }"
    # after "comm) ", field 3 (state) is index 0, so utime (14) is index 11 and stime (15) is index 12
    awk '{ print $12 + $13 }' <<<"$stat"
}
proc_status_kib() { # e.g. VmHWM -> value in KiB
    awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"
}
now_s() { date +%s.%N; }

# Check that a value is a plain (decimal) number.
need_num() {
    local name="$1" value="$2"
    [[ "$value" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] || die "could not parse $name (got '$value')"
}
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }

# ---------------------------------------------------------------------------------------------
# Kafka tools.
run_tool() { # run_tool LOGNAME CLASS ARGS...
    local logname="$1" class="$2"
    shift 2
    local cmd=("$JAVA" -Xmx512M -Dlog4j2.configurationFile="$WORK/log4j2-tools.properties" -cp "$LIBS/*" "$class" "$@")
    record_cmd "${cmd[@]}"
    local rc=0
    "${cmd[@]}" >"$WORK/$logname.log" 2>"$WORK/$logname.err.log" </dev/null || rc=$?
    # Exceptions/errors from the tools are worth reporting even when the tool exits 0.
    if grep -qE 'Exception|ERROR|WARN' "$WORK/$logname.err.log" "$WORK/$logname.log" 2>/dev/null; then
        local n
        n="$(grep -cE 'Exception|ERROR|WARN' "$WORK/$logname.err.log" "$WORK/$logname.log" | awk -F: '{ s += $NF } END { print s }')"
        ODDITIES+=("$logname: $n warning/error/exception lines, first: $(grep -hE 'Exception|ERROR|WARN' "$WORK/$logname.err.log" "$WORK/$logname.log" | head -n 1 | cut -c1-240)")
    fi
    ((rc == 0)) || die "$class exited with $rc (see $logname logs)"
}

# Parse ProducerPerformance's final summary line into P_* variables.
#   N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, a ms 50th, b ms 95th, c ms 99th, d ms 99.9th.
parse_producer() {
    local logfile="$1" expected="$2" line
    line="$(grep -E '^[0-9]+ records sent, .* 99\.9th\.?$' "$logfile" | tail -n 1 || true)"
    [[ -n "$line" ]] || die "no ProducerPerformance summary line in $(basename "$logfile")"
    P_LINE="$line"
    local re='^([0-9]+) records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\), ([0-9.]+) ms avg latency, ([0-9.]+) ms max latency, ([0-9]+) ms 50th, ([0-9]+) ms 95th, ([0-9]+) ms 99th, ([0-9]+) ms 99\.9th'
    [[ "$line" =~ $re ]] || die "cannot parse ProducerPerformance summary: $line"
    P_SENT="${BASH_REMATCH[1]}"
    P_RPS="${BASH_REMATCH[2]}"
    P_MBS="${BASH_REMATCH[3]}"
    P_AVG="${BASH_REMATCH[4]}"
    P_MAX="${BASH_REMATCH[5]}"
    P_P50="${BASH_REMATCH[6]}"
    P_P95="${BASH_REMATCH[7]}"
    P_P99="${BASH_REMATCH[8]}"
    P_P999="${BASH_REMATCH[9]}"
    local v
    for v in P_SENT P_RPS P_MBS P_AVG P_MAX P_P50 P_P95 P_P99 P_P999; do need_num "$v" "${!v}"; done
    [[ "$P_SENT" == "$expected" ]] || die "producer acknowledged $P_SENT of $expected records"
}

# ---------------------------------------------------------------------------------------------
main() {
    ODDITIES=()
    build_if_needed
    LIBS="$("$SCRIPT_DIR/kafka-reference.sh" jars | tail -n 1)"
    [[ -f "$LIBS/kafka-tools-4.1.1.jar" && -f "$LIBS/kafka-clients-4.1.1.jar" ]] || die "Kafka tools jars missing in $LIBS"

    WORK="$(mktemp -d "${TMPDIR:-/tmp}/floe-bench.XXXXXX")"
    cat >"$WORK/log4j2-tools.properties" <<EOF
name = floe-bench-tools
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = STDERR
EOF
    log "mode $MODE: $RECORDS x $RECORD_SIZE B records, fixed-rate run ${FIXED_SECONDS}s, work dir $WORK"

    start_server

    # 3. Topic.
    log "creating topic $TOPIC ($PARTITIONS partitions)"
    run_tool topic org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create \
        --topic "$TOPIC" --partitions "$PARTITIONS" --replication-factor 1

    local props=(acks=all linger.ms=5 batch.size=262144 compression.type=none)

    # 4 + 7. Max-throughput producer with server CPU sampling.
    log "producer, max throughput: $RECORDS records"
    local ticks0 ticks1 t0 t1 clk
    clk="$(getconf CLK_TCK)"
    ticks0="$(proc_cpu_ticks "$SERVER_PID")"
    t0="$(now_s)"
    run_tool producer-max org.apache.kafka.tools.ProducerPerformance --topic "$TOPIC" \
        --num-records "$RECORDS" --record-size "$RECORD_SIZE" --throughput -1 \
        --producer-props bootstrap.servers="$BOOTSTRAP" "${props[@]}"
    t1="$(now_s)"
    ticks1="$(proc_cpu_ticks "$SERVER_PID")"
    parse_producer "$WORK/producer-max.log" "$RECORDS"
    MAX_LINE="$P_LINE"; MAX_RPS="$P_RPS"; MAX_MBS="$P_MBS"; MAX_AVG="$P_AVG"; MAX_MAX="$P_MAX"
    MAX_P50="$P_P50"; MAX_P95="$P_P95"; MAX_P99="$P_P99"; MAX_P999="$P_P999"
    need_num ticks0 "$ticks0"; need_num ticks1 "$ticks1"
    CPU_SECONDS="$(calc "($ticks1 - $ticks0) / $clk" 2)"
    WINDOW_SECONDS="$(calc "$t1 - $t0" 2)"
    # The producer's own elapsed time (records / records-per-second) excludes JVM start-up.
    PRODUCE_SECONDS="$(calc "$RECORDS / $MAX_RPS" 2)"
    CORES_USED="$(calc "$CPU_SECONDS / $PRODUCE_SECONDS" 2)"
    CORES_USED_WINDOW="$(calc "$CPU_SECONDS / $WINDOW_SECONDS" 2)"
    MIB_TOTAL="$(calc "$RECORDS * $RECORD_SIZE / 1048576" 2)"
    awk "BEGIN { exit !($CPU_SECONDS > 0) }" || die "server used no CPU during the producer run?"
    MIB_PER_CORE="$(calc "$MIB_TOTAL / $CPU_SECONDS" 2)"
    local v
    for v in CPU_SECONDS WINDOW_SECONDS PRODUCE_SECONDS CORES_USED CORES_USED_WINDOW MIB_TOTAL MIB_PER_CORE; do
        need_num "$v" "${!v}"
    done

    # 5. Fixed-rate latency run at ~50% of max.
    FIXED_RATE="$(awk -v r="$MAX_RPS" 'BEGIN { x = int(r / 2); if (x < 1) x = 1; print x }')"
    FIXED_RECORDS=$((FIXED_RATE * FIXED_SECONDS))
    log "producer, fixed rate: $FIXED_RATE records/s for ${FIXED_SECONDS}s ($FIXED_RECORDS records)"
    run_tool producer-fixed org.apache.kafka.tools.ProducerPerformance --topic "$TOPIC" \
        --num-records "$FIXED_RECORDS" --record-size "$RECORD_SIZE" --throughput "$FIXED_RATE" \
        --producer-props bootstrap.servers="$BOOTSTRAP" "${props[@]}"
    parse_producer "$WORK/producer-fixed.log" "$FIXED_RECORDS"
    FIX_LINE="$P_LINE"; FIX_RPS="$P_RPS"; FIX_MBS="$P_MBS"; FIX_AVG="$P_AVG"; FIX_MAX="$P_MAX"
    FIX_P50="$P_P50"; FIX_P95="$P_P95"; FIX_P99="$P_P99"; FIX_P999="$P_P999"

    # 6. Consumer.
    local group="bench-consumer-$TIMESTAMP-$$"
    log "consumer: $RECORDS records, group $group"
    run_tool consumer org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$BOOTSTRAP" \
        --topic "$TOPIC" --messages "$RECORDS" --group "$group" --timeout 30000
    if grep -q "Exiting before consuming the expected number of messages" "$WORK/consumer.log" "$WORK/consumer.err.log"; then
        die "ConsumerPerformance timed out before consuming $RECORDS records"
    fi
    # header: start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    #         rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    local cline
    cline="$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} ' "$WORK/consumer.log" | tail -n 1 || true)"
    [[ -n "$cline" ]] || die "no ConsumerPerformance result line"
    CONS_LINE="$cline"
    IFS=',' read -r _ _ C_MB C_MBS C_NMSG C_NMSGS C_REBAL C_FETCHMS C_FMBS C_FNMSGS <<<"$cline"
    for v in C_MB C_MBS C_NMSG C_NMSGS C_REBAL C_FETCHMS C_FMBS C_FNMSGS; do
        printf -v "$v" '%s' "$(tr -d ' ' <<<"${!v}")"
        need_num "$v" "${!v}"
    done
    awk "BEGIN { exit !($C_NMSG >= $RECORDS) }" || die "consumer read $C_NMSG of $RECORDS records"

    # 7b. Server memory.
    RSS_HWM_KIB="$(proc_status_kib "$SERVER_PID" VmHWM)"
    RSS_KIB="$(proc_status_kib "$SERVER_PID" VmRSS)"
    need_num VmHWM "$RSS_HWM_KIB"; need_num VmRSS "$RSS_KIB"
    RSS_HWM_MIB="$(calc "$RSS_HWM_KIB / 1024" 1)"
    RSS_MIB="$(calc "$RSS_KIB / 1024" 1)"
    if grep -qiE '\b(ERROR|panicked)\b' "$WORK/server.log"; then
        ODDITIES+=("server log: $(grep -ciE '\b(ERROR|panicked)\b' "$WORK/server.log") ERROR/panic lines, first: $(grep -iE '\b(ERROR|panicked)\b' "$WORK/server.log" | head -n 1 | cut -c1-240)")
    fi

    # 8. Stop the server (cleanup also does this, but the report wants a clean shutdown first).
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        ODDITIES+=("server did not exit within 10s of SIGTERM")
    else
        local src=0
        wait "$SERVER_PID" 2>/dev/null || src=$?
        ((src == 0)) || ODDITIES+=("server exited with status $src after SIGTERM")
        SERVER_PID=""
    fi

    DURATION=$(($(date +%s) - START_EPOCH))
    report
}

report() {
    local flush="${FLUSH_INTERVAL:-250ms (default)}"
    local rows=(
        "mode|$MODE"
        "floe binary|$FLOE_BIN (built $(date -u -r "$FLOE_BIN" +%FT%TZ))"
        "flush interval|$flush"
        "record size (bytes)|$RECORD_SIZE"
        "topic partitions|$PARTITIONS"
        "max producer: records|$RECORDS"
        "max producer: records/sec|$MAX_RPS"
        "max producer: MB/sec (MiB/s)|$MAX_MBS"
        "max producer: avg latency (ms)|$MAX_AVG"
        "max producer: max latency (ms)|$MAX_MAX"
        "max producer: p50 / p95 / p99 / p99.9 (ms)|$MAX_P50 / $MAX_P95 / $MAX_P99 / $MAX_P999"
        "server CPU-seconds during max producer|$CPU_SECONDS"
        "server cores used (CPU-s / producer elapsed ${PRODUCE_SECONDS}s)|$CORES_USED"
        "server cores used (CPU-s / wall window ${WINDOW_SECONDS}s incl. JVM start)|$CORES_USED_WINDOW"
        "MiB/s per server core (MiB produced / server CPU-s)|$MIB_PER_CORE"
        "fixed-rate producer: target records/sec|$FIXED_RATE"
        "fixed-rate producer: records|$FIXED_RECORDS"
        "fixed-rate producer: achieved records/sec|$FIX_RPS"
        "fixed-rate producer: MB/sec (MiB/s)|$FIX_MBS"
        "fixed-rate producer: avg latency (ms)|$FIX_AVG"
        "fixed-rate producer: max latency (ms)|$FIX_MAX"
        "fixed-rate producer: p50 / p95 / p99 / p99.9 (ms)|$FIX_P50 / $FIX_P95 / $FIX_P99 / $FIX_P999"
        "consumer: records|$C_NMSG"
        "consumer: MB.sec (incl. group join)|$C_MBS"
        "consumer: nMsg.sec (incl. group join)|$C_NMSGS"
        "consumer: rebalance.time.ms|$C_REBAL"
        "consumer: fetch.MB.sec|$C_FMBS"
        "consumer: fetch.nMsg.sec|$C_FNMSGS"
        "server RSS high-water mark VmHWM (MiB)|$RSS_HWM_MIB"
        "server RSS at end VmRSS (MiB)|$RSS_MIB"
        "bench wall time (s)|$DURATION"
    )
    local md row
    md="## Floe playground benchmark ($MODE, $TIMESTAMP)"$'\n\n'
    md+="Host: $(nproc) cores, $(uname -sr), $("$JAVA" -version 2>&1 | head -n 1)"$'\n\n'
    md+="| metric | value |"$'\n'"|---|---|"$'\n'
    for row in "${rows[@]}"; do
        md+="| ${row%%|*} | ${row#*|} |"$'\n'
    done
    md+=$'\n'"Raw tool output:"$'\n\n'"\`\`\`"$'\n'"max:      $MAX_LINE"$'\n'"fixed:    $FIX_LINE"$'\n'"consumer: $CONS_LINE"$'\n'"\`\`\`"$'\n'
    if ((${#ODDITIES[@]})); then
        md+=$'\n'"Notes:"$'\n\n'
        for row in "${ODDITIES[@]}"; do md+="- $row"$'\n'; done
    fi
    md+=$'\n'"Commands (in order; \$WORK was a temp dir, deleted afterwards):"$'\n\n'"\`\`\`sh"$'\n'
    for row in "${COMMANDS[@]}"; do md+="${row//$WORK/\$WORK}"$'\n'; done
    md+="\`\`\`"$'\n'

    json_str() { # JSON string literal
        local s="$1"
        s="${s//\\/\\\\}"; s="${s//\"/\\\"}"; s="${s//$'\t'/\\t}"; s="${s//$'\n'/\\n}"
        printf '"%s"' "$s"
    }
    local json cmds="" c odd=""
    for c in "${COMMANDS[@]}"; do cmds+="${cmds:+, }$(json_str "${c//$WORK/\$WORK}")"; done
    for c in "${ODDITIES[@]}"; do odd+="${odd:+, }$(json_str "$c")"; done
    json=$(cat <<EOF
{
  "timestamp": "$TIMESTAMP",
  "mode": "$MODE",
  "host_cores": $(nproc),
  "flush_interval": $(json_str "$flush"),
  "record_size": $RECORD_SIZE,
  "partitions": $PARTITIONS,
  "producer_max": {"records": $RECORDS, "records_per_sec": $MAX_RPS, "mib_per_sec": $MAX_MBS, "avg_latency_ms": $MAX_AVG, "max_latency_ms": $MAX_MAX, "p50_ms": $MAX_P50, "p95_ms": $MAX_P95, "p99_ms": $MAX_P99, "p999_ms": $MAX_P999},
  "server_cpu": {"cpu_seconds": $CPU_SECONDS, "producer_elapsed_seconds": $PRODUCE_SECONDS, "window_seconds": $WINDOW_SECONDS, "cores_used": $CORES_USED, "cores_used_window": $CORES_USED_WINDOW, "mib_per_sec_per_core": $MIB_PER_CORE},
  "producer_fixed": {"target_records_per_sec": $FIXED_RATE, "records": $FIXED_RECORDS, "records_per_sec": $FIX_RPS, "mib_per_sec": $FIX_MBS, "avg_latency_ms": $FIX_AVG, "max_latency_ms": $FIX_MAX, "p50_ms": $FIX_P50, "p95_ms": $FIX_P95, "p99_ms": $FIX_P99, "p999_ms": $FIX_P999},
  "consumer": {"records": $C_NMSG, "mb": $C_MB, "mb_per_sec": $C_MBS, "records_per_sec": $C_NMSGS, "rebalance_ms": $C_REBAL, "fetch_ms": $C_FETCHMS, "fetch_mb_per_sec": $C_FMBS, "fetch_records_per_sec": $C_FNMSGS},
  "server_rss": {"vmhwm_mib": $RSS_HWM_MIB, "vmrss_mib": $RSS_MIB},
  "wall_seconds": $DURATION,
  "notes": [$odd],
  "commands": [$cmds]
}
EOF
)
    if command -v jq >/dev/null; then
        jq -e . >/dev/null <<<"$json" || die "generated JSON is invalid"
    fi
    mkdir -p "$OUT_DIR"
    local base="$OUT_DIR/playground-$TIMESTAMP"
    printf '%s' "$md" >"$base.md"
    printf '%s\n' "$json" >"$base.json"
    printf '%s\n' "$md"
    log "wrote $base.md and $base.json (${DURATION}s)"
}

main "$@"
