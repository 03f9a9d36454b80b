# The systems under test: start_<system> DIR and stop_system. Sourced by bench.sh.
#
# start_<system> sets, for the workloads:
#   BOOTSTRAP     Kafka bootstrap list (loopback only)
#   SERVER_PIDS   the broker/agent processes whose CPU and RSS are the server's
#   INFRA_PIDS    processes the system needs besides its servers (etcd, s3s-fs, the S3 latency
#                 proxy), measured apart
#   METRICS_URLS  Floe agents' /metrics (empty for Kafka)
#   SYSTEM_LABEL  a human name for the report
#   CLIENT_CONFIG_FILE  Kafka client properties every tool reads (TLS and SASL), or empty
#   ADMIN_SECURITY      kafka-python settings for admin.py as KEY=VALUE words (env), or empty
#   PROXY_STATS_URL     the S3 latency proxy's /__proxy/stats (floe-cluster-s3lat), or empty
# Every server process runs on SERVER_CPUS (taskset; children inherit the affinity). stop_system
# stops exactly what the last start_<system> started, by PID, and is safe to call twice.

SYSTEMS_ALL=(kafka floe-playground floe-playground-secure floe-cluster floe-cluster-s3lat)
# The secure playground runs only these (its figure is throughput over TLS against plaintext).
SECURE_SYSTEM=floe-playground-secure
SECURE_WORKLOADS=(w1-none w1-lz4)
# Valid in BENCH_SYSTEMS only with BENCH_BASELINE_REF or BENCH_BASELINE_BIN (bench.sh checks): the
# playground again, run from the baseline binary, for a before/after of one change.
SYSTEM_BASELINE=floe-playground-baseline

reset_system_state() {
    BOOTSTRAP=""
    SERVER_PIDS=()
    INFRA_PIDS=()
    METRICS_URLS=()
    SYSTEM_LABEL=""
    CLIENT_CONFIG_FILE=""
    ADMIN_SECURITY=""
    PROXY_STATS_URL=""
    STOP_ACTIONS=()
}
reset_system_state

# Read "Kafka bootstrap:" and "HTTP:" from a Floe banner in LOGFILE, waiting for PID.
# Sets BANNER_BOOTSTRAP and BANNER_HTTP (host:port).
read_floe_banner() {
    local pid="$1" logfile="$2" i
    for ((i = 0; i < 600; i++)); do
        kill -0 "$pid" 2>/dev/null || die "floe (pid $pid) exited during start-up: $(tail -n 5 "$logfile" | tr '\n' ' ')"
        # The background child opens the log itself: on a busy machine it may not exist yet.
        if [[ ! -f "$logfile" ]]; then
            sleep 0.1
            continue
        fi
        BANNER_BOOTSTRAP="$(sed -n 's/^ *Kafka bootstrap: *\([^ ]*\).*/\1/p' "$logfile" | head -n 1)"
        BANNER_HTTP="$(sed -n 's|^ *HTTP: *http://\([^/ ]*\).*|\1|p' "$logfile" | head -n 1)"
        if [[ -n "$BANNER_BOOTSTRAP" && -n "$BANNER_HTTP" ]] &&
            [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$BANNER_HTTP/readyz" || true)" == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    die "floe (pid $pid) not ready within 60s (see $logfile)"
}

# Start one floe process (BINARY) in the background, pinned to the server CPUs; sets STARTED_PID.
spawn_floe() {
    local binary="$1" logfile="$2"
    shift 2
    local pinned
    mapfile -t pinned < <(pin "$SERVER_CPUS")
    local line
    line="$(printf '%q ' "${pinned[@]}" "$binary" "$@")"
    echo "${line% }" >>"$RUN_DIR/commands.txt"
    "${pinned[@]}" "$binary" "$@" >"$logfile" 2>&1 </dev/null &
    STARTED_PID=$!
    STOP_ACTIONS+=("pid $STARTED_PID")
}

# SIGTERM, 15 s grace, SIGKILL.
stop_pid() {
    local pid="$1" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "pid $pid ignored SIGTERM for 15s; sent SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_system() {
    local i action
    # Reverse start order: agents before etcd and S3.
    for ((i = ${#STOP_ACTIONS[@]} - 1; i >= 0; i--)); do
        action="${STOP_ACTIONS[i]}"
        case "$action" in
            pid\ *) stop_pid "${action#pid }" ;;
            script\ *) eval "${action#script }" >/dev/null 2>&1 || note "failed: ${action#script }" ;;
        esac
    done
    reset_system_state
}

# ---------------------------------------------------------------------------------------------
start_kafka() {
    local dir="$1" port cport pinned
    port="$(free_port)"
    cport="$(free_port)"
    mapfile -t pinned < <(pin "$SERVER_CPUS")
    STOP_ACTIONS+=("script $(printf '%q ' "$SCRIPT_DIR/kafka-reference.sh" stop "$dir/kafka")")
    KAFKA_REF_CONTROLLER_PORT="$cport" "${pinned[@]}" "$SCRIPT_DIR/kafka-reference.sh" start "$dir/kafka" "$port" \
        >"$LOG_DIR/kafka-start.log" 2>&1 || die "Kafka did not start: $(tail -n 5 "$LOG_DIR/kafka-start.log" | tr '\n' ' ')"
    echo "KAFKA_REF_CONTROLLER_PORT=$cport $(printf '%q ' "${pinned[@]}")e2e/scripts/kafka-reference.sh start \$DIR $port" >>"$RUN_DIR/commands.txt"
    local pid
    pid="$(cat "$dir/kafka/kafka.pid")"
    SERVER_PIDS=("$pid")
    BOOTSTRAP="127.0.0.1:$port"
    SYSTEM_LABEL="Apache Kafka $KAFKA_VERSION (KRaft, 1 node, defaults)"
    STOP_ACTIONS+=("script cp $(printf '%q' "$dir/kafka/logs/server.log") $(printf '%q' "$LOG_DIR/kafka-server.log")")
    log "kafka ready on $BOOTSTRAP (pid $pid)"
}

# --max-puts-per-second VALUE when BENCH_FLOE_MAX_PUTS_PER_SECOND is set, or --flush-interval VALUE
# when BENCH_FLOE_FLUSH_INTERVAL is (the same knob; bench.sh refuses both), one word a line;
# nothing otherwise, so the agent's own default cap applies (which depends on the object store).
floe_put_cap_flags() {
    [[ -z "$FLOE_MAX_PUTS" ]] || printf '%s\n' --max-puts-per-second "$FLOE_MAX_PUTS"
    [[ -z "$FLUSH_INTERVAL" ]] || printf '%s\n' --flush-interval "$FLUSH_INTERVAL"
}
# ", at most N PUTs/s" for a label when the cap is set, else nothing.
floe_put_cap_label() {
    [[ -z "$FLOE_MAX_PUTS" ]] || printf ', at most %s PUTs/s' "$FLOE_MAX_PUTS"
    [[ -z "$FLUSH_INTERVAL" ]] || printf ', flush interval %s' "$FLUSH_INTERVAL"
}

# start_floe_playground DIR [BINARY NAME LABEL EXTRA_FLAGS...]: the playground from FLOE_BIN, or
# from BINARY.
start_floe_playground() {
    local dir="$1" binary="${2:-$FLOE_BIN}" name="${3:-floe-playground}" label="${4:-Floe playground}" cap=() cap_label=""
    shift $(($# < 4 ? $# : 4))
    # The baseline is an older build that predates --max-puts-per-second (and gave --flush-interval
    # another meaning): it runs at its own defaults whatever the BENCH_FLOE_* knobs say.
    if [[ "$name" != "$SYSTEM_BASELINE" ]]; then
        mapfile -t cap < <(floe_put_cap_flags)
        cap_label="$(floe_put_cap_label)"
    fi
    spawn_floe "$binary" "$LOG_DIR/$name.log" playground --data-dir "$dir/playground" \
        --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --group-initial-rebalance-delay 0s --log "${BENCH_FLOE_LOG:-warn}" \
        "${cap[@]}" "$@"
    local pid="$STARTED_PID"
    read_floe_banner "$pid" "$LOG_DIR/$name.log"
    SERVER_PIDS=("$pid")
    METRICS_URLS=("http://$BANNER_HTTP/metrics")
    BOOTSTRAP="$BANNER_BOOTSTRAP"
    SYSTEM_LABEL="$label (embedded metadata, file bucket$cap_label)"
    log "$name ready on $BOOTSTRAP (pid $pid)"
}

# The playground with TLS (a self-signed ECDSA P-256 certificate for 127.0.0.1, made with openssl)
# and SASL SCRAM-SHA-512 (a bootstrap user): every client connection is SASL_SSL. Its W1 MiB/s per
# server core against the plaintext playground's is the cost of security (issue 18: at least 70%).
start_floe_playground_secure() {
    local dir="$1" tls="$1/tls" password=bench-secret
    mkdir -p "$tls"
    openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 2 -subj /CN=localhost \
        -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -keyout "$tls/tls.key" -out "$tls/tls.crt" \
        >"$LOG_DIR/secure-openssl.log" 2>&1 || die "openssl could not make the bench certificate (see $LOG_DIR/secure-openssl.log)"
    printf '%s\n' "$password" >"$tls/password"
    CLIENT_CONFIG_FILE="$tls/client.properties"
    cat >"$CLIENT_CONFIG_FILE" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="bench" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$tls/tls.crt
PROPERTIES
    ADMIN_SECURITY="BENCH_SASL_USER=bench BENCH_SASL_PASSWORD=$password BENCH_SSL_CAFILE=$tls/tls.crt"
    start_floe_playground "$dir" "$FLOE_BIN" "$SECURE_SYSTEM" "Floe playground, TLS + SCRAM-SHA-512" \
        --tls-cert-file "$tls/tls.crt" --tls-key-file "$tls/tls.key" --sasl-mechanisms SCRAM-SHA-512 \
        --sasl-bootstrap-user bench --sasl-bootstrap-password-file "$tls/password"
}

# The same playground from the baseline binary (BASELINE_BIN, built by bench.sh from
# BENCH_BASELINE_REF or given as BENCH_BASELINE_BIN); the label names its commit.
start_floe_playground_baseline() {
    local dir="$1" commit="$BASELINE_COMMIT"
    [[ "$commit" == unknown ]] || commit="${commit:0:12}"
    start_floe_playground "$dir" "$BASELINE_BIN" "$SYSTEM_BASELINE" "Floe playground baseline, commit $commit"
}

CLUSTER_AGENTS=3
CLUSTER_BUCKET=floe-bench
start_floe_cluster() { start_floe_cluster_with "$1" direct; }
start_floe_cluster_s3lat() { start_floe_cluster_with "$1" latency; }

# start_floe_cluster_with DIR ENDPOINT_MODE: etcd, s3s-fs and CLUSTER_AGENTS agents. ENDPOINT_MODE
# direct: the agents talk to s3s-fs itself (floe-cluster). latency: through the S3 latency proxy
# (floe-cluster-s3lat), which delays each request like S3 Standard (S3_MEDIAN, S3_P99 from
# BENCH_S3_MEDIAN, BENCH_S3_P99) before forwarding it to s3s-fs: a local disk answers in well under
# a millisecond, a real bucket in tens, and a flush or a cache miss waits for that.
start_floe_cluster_with() {
    local dir="$1" mode="$2" name=floe-cluster prefix="" etcd_port etcd_peer s3_port pinned
    # The latency cluster's logs get its name, so a run with both clusters keeps both sets.
    [[ "$mode" == direct ]] || name=floe-cluster-s3lat prefix=floe-cluster-s3lat-
    etcd_port="$(free_port)"
    etcd_peer="$(free_port)"
    s3_port="$(free_port)"
    mapfile -t pinned < <(pin "$SERVER_CPUS")
    STOP_ACTIONS+=("script $(printf '%q ' "$SCRIPT_DIR/etcd.sh" stop "$dir/etcd")")
    "${pinned[@]}" "$SCRIPT_DIR/etcd.sh" start "$dir/etcd" "$etcd_port" "$etcd_peer" >"$LOG_DIR/${prefix}etcd-start.log" 2>&1 \
        || die "etcd did not start: $(tail -n 5 "$LOG_DIR/${prefix}etcd-start.log" | tr '\n' ' ')"
    STOP_ACTIONS+=("script $(printf '%q ' "$SCRIPT_DIR/s3.sh" stop "$dir/s3")")
    "${pinned[@]}" "$SCRIPT_DIR/s3.sh" start "$dir/s3" "$s3_port" >"$LOG_DIR/${prefix}s3-start.log" 2>&1 \
        || die "S3 server did not start: $(tail -n 5 "$LOG_DIR/${prefix}s3-start.log" | tr '\n' ' ')"
    "$SCRIPT_DIR/s3.sh" create-bucket "$s3_port" "$CLUSTER_BUCKET" >>"$LOG_DIR/${prefix}s3-start.log" 2>&1 \
        || die "could not create bucket $CLUSTER_BUCKET"
    echo "$(printf '%q ' "${pinned[@]}")e2e/scripts/etcd.sh start \$DIR/etcd $etcd_port $etcd_peer" >>"$RUN_DIR/commands.txt"
    echo "$(printf '%q ' "${pinned[@]}")e2e/scripts/s3.sh start \$DIR/s3 $s3_port && e2e/scripts/s3.sh create-bucket $s3_port $CLUSTER_BUCKET" >>"$RUN_DIR/commands.txt"
    INFRA_PIDS=("$(cat "$dir/etcd/etcd.pid")" "$(cat "$dir/s3/s3.pid")")
    INFRA_LABEL="etcd $(etcd --version 2>/dev/null | awk '/etcd Version/ { print $3 }') + $("$SCRIPT_DIR/s3.sh" backend 2>/dev/null || echo s3s-fs)"

    local endpoint_port="$s3_port" latency_label=""
    if [[ "$mode" == latency ]]; then
        start_latency_proxy "$s3_port"
        endpoint_port="$PROXY_PORT"
        latency_label=", S3 latency injected: median $(duration_words "$S3_MEDIAN"), p99 $(duration_words "$S3_P99")"
    fi
    export AWS_ENDPOINT="http://127.0.0.1:$endpoint_port" AWS_ACCESS_KEY_ID=floe AWS_SECRET_ACCESS_KEY=floe-secret \
        AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
    echo "export AWS_ENDPOINT=http://127.0.0.1:$endpoint_port AWS_ACCESS_KEY_ID=floe AWS_SECRET_ACCESS_KEY=floe-secret AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true" >>"$RUN_DIR/commands.txt"
    local n pid bootstraps=() cap disk_cache=() disk_label=""
    mapfile -t cap < <(floe_put_cap_flags)
    [[ "$DISK_CACHE_BYTES" == off ]] || disk_label=", disk cache $DISK_CACHE_BYTES per agent"
    for ((n = 1; n <= CLUSTER_AGENTS; n++)); do
        [[ "$DISK_CACHE_BYTES" == off ]] || disk_cache=(--disk-cache-dir "$dir/agent-$n-disk" --disk-cache-bytes "$DISK_CACHE_BYTES")
        spawn_floe "$FLOE_BIN" "$LOG_DIR/${prefix}floe-agent-$n.log" agent --metadata "etcd://127.0.0.1:$etcd_port/floe" \
            --virtual-cluster bench --object-store "s3://$CLUSTER_BUCKET/bench" \
            --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --group-initial-rebalance-delay 0s --log "${BENCH_FLOE_LOG:-warn}" \
            "${cap[@]}" "${disk_cache[@]}"
        pid="$STARTED_PID"
        read_floe_banner "$pid" "$LOG_DIR/${prefix}floe-agent-$n.log"
        SERVER_PIDS+=("$pid")
        METRICS_URLS+=("http://$BANNER_HTTP/metrics")
        bootstraps+=("$BANNER_BOOTSTRAP")
    done
    unset AWS_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_ALLOW_HTTP
    BOOTSTRAP="$(IFS=,; echo "${bootstraps[*]}")"
    "$PYTHON" "$BENCH_DIR/admin.py" wait-brokers "$BOOTSTRAP" "$CLUSTER_AGENTS" 60 >>"$LOG_DIR/admin.log" 2>&1 \
        || die "the cluster did not advertise $CLUSTER_AGENTS brokers within 60s (see $LOG_DIR/admin.log)"
    SYSTEM_LABEL="Floe cluster ($CLUSTER_AGENTS agents, $INFRA_LABEL$(floe_put_cap_label)$disk_label$latency_label)"
    log "$name ready on $BOOTSTRAP (agents ${SERVER_PIDS[*]}, etcd+S3 ${INFRA_PIDS[*]})"
}

# "20ms" -> "20 ms" for a label (a Go duration as BENCH_S3_MEDIAN gives it).
duration_words() { sed -E 's/^([0-9.]+)([a-zµ]+)$/\1 \2/' <<<"$1"; }

# The S3 latency proxy (LATENCY_PROXY, built by bench.sh) in front of s3s-fs on S3_PORT, pinned with
# the servers: a log-normal delay (median S3_MEDIAN, 99th percentile S3_P99, capped at 1 s, a fixed
# seed so runs repeat) before each request. It forwards the Host header as the agents signed it
# (SigV4), so s3s-fs accepts their signatures. An infrastructure process like s3s-fs (INFRA_PIDS),
# stopped by PID. Sets PROXY_PORT and PROXY_STATS_URL.
start_latency_proxy() {
    local s3_port="$1" pinned line i
    PROXY_PORT="$(free_port)"
    mapfile -t pinned < <(pin "$SERVER_CPUS")
    local cmd=("$LATENCY_PROXY" --listen "127.0.0.1:$PROXY_PORT" --upstream "http://127.0.0.1:$s3_port" \
        --median "$S3_MEDIAN" --p99 "$S3_P99")
    line="$(printf '%q ' "${pinned[@]}" "${cmd[@]}")"
    echo "${line% }" >>"$RUN_DIR/commands.txt"
    "${pinned[@]}" "${cmd[@]}" >"$LOG_DIR/s3-latency-proxy.log" 2>&1 </dev/null &
    local pid=$!
    STOP_ACTIONS+=("pid $pid")
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || die "the S3 latency proxy (pid $pid) exited during start-up: $(tail -n 5 "$LOG_DIR/s3-latency-proxy.log" | tr '\n' ' ')"
        port_open "$PROXY_PORT" && break
        sleep 0.1
    done
    port_open "$PROXY_PORT" || die "the S3 latency proxy (pid $pid) did not open 127.0.0.1:$PROXY_PORT within 10s (see $LOG_DIR/s3-latency-proxy.log)"
    INFRA_PIDS+=("$pid")
    PROXY_STATS_URL="http://127.0.0.1:$PROXY_PORT/__proxy/stats"
    log "S3 latency proxy on 127.0.0.1:$PROXY_PORT -> s3s-fs on $s3_port (median $S3_MEDIAN, p99 $S3_P99; pid $pid)"
}

# The delays the S3 latency proxy actually applied over the system's run, into PROXY_REQUESTS,
# PROXY_P50_MS and PROXY_P99_MS; null when the system has no proxy.
latency_proxy_stats() {
    PROXY_REQUESTS=null PROXY_P50_MS=null PROXY_P99_MS=null
    [[ -n "$PROXY_STATS_URL" ]] || return 0
    local stats
    stats="$(curl -fsS --max-time 10 "$PROXY_STATS_URL")" || die "cannot read the S3 latency proxy's stats ($PROXY_STATS_URL)"
    read -r PROXY_REQUESTS PROXY_P50_MS PROXY_P99_MS < <(python3 -c \
        'import json, sys; s = json.load(sys.stdin); print(s["requests"], s["delay_ms_p50"], s["delay_ms_p99"])' <<<"$stats") \
        || die "cannot parse the S3 latency proxy's stats: $stats"
    need_num "the proxy's request count" "$PROXY_REQUESTS"
    need_num "the proxy's p50 delay" "$PROXY_P50_MS"
    need_num "the proxy's p99 delay" "$PROXY_P99_MS"
}
