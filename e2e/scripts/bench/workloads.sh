# The workloads: each runs Kafka's own load generators (pinned to CLIENT_CPUS) against the running
# system and emits its figures with `emit SYSTEM WORKLOAD key value ...`. Sourced by bench.sh.
#
#   run_throughput SYSTEM WORKLOAD TOPIC PARTITIONS COMPRESSION [BATCH_SIZE]  W1/W2: ProducerPerformance, max rate
#   run_consume SYSTEM TOPIC RECORDS [WORKLOAD]                   ConsumerPerformance over W1's records
#   run_catchup SYSTEM TOPIC RECORDS W2_PUTS W2_MIB               a fresh group reads CATCHUP_MIB of W2's topic
#   run_fixed_rate SYSTEM WORKLOAD TOPIC PERCENT MAX_RPS [IN_FLIGHT [BATCH_SIZE]]  W3: ProducerPerformance at PERCENT of max
#   run_light_rate SYSTEM WORKLOAD TOPIC RATE                     W3 light: RATE records/s, Java defaults
#   run_end_to_end SYSTEM TOPIC                                   W4: EndToEndLatency (one record in flight)
#   run_sarama_sync SYSTEM TOPIC                                  sarama's SyncProducer, one record at a time

# The producer settings every produce workload shares. BATCH_SIZE defaults to the bench's
# BATCH_SIZE; the Java-defaults workloads (w1-defaults, w3-light) give JAVA_BATCH_SIZE. Each run
# names its batch.size exactly once, so the command in commands.txt says what the client used.
producer_props() { # producer_props COMPRESSION [BATCH_SIZE]
    echo "acks=all linger.ms=5 batch.size=${2:-$BATCH_SIZE} compression.type=$1"
}

# Snapshot the server-side counters into S_<name>_<field> (S_before_ticks, ...).
snapshot() {
    local name="$1"
    # Each workload's RSS is its own peak.
    [[ "$name" != before ]] || reset_rss_peaks "${SERVER_PIDS[@]}"
    printf -v "S_${name}_ticks" '%s' "$(cpu_ticks "${SERVER_PIDS[@]}")"
    if ((${#INFRA_PIDS[@]})); then
        printf -v "S_${name}_infra" '%s' "$(cpu_ticks "${INFRA_PIDS[@]}")"
    else
        printf -v "S_${name}_infra" '%s' null
    fi
    printf -v "S_${name}_puts" '%s' "$(metric_sum 'floe_object_store_operations_total{operation="put",outcome="ok"}')"
    printf -v "S_${name}_flushes" '%s' "$(metric_sum 'floe_flushes_total')"
    printf -v "S_${name}_flushsec" '%s' "$(metric_sum_real 'floe_flush_duration_seconds_sum')"
    printf -v "S_${name}_etcd" '%s' "$(metric_sum 'floe_etcd_transactions_total')"
    children_cpu_seconds "S_${name}_client"
    printf -v "S_${name}_time" '%s' "$(now_s)"
    local field value
    for field in ticks infra puts flushes flushsec etcd client time; do
        value="S_${name}_${field}"
        [[ "${!value}" == null ]] || need_num "$value" "${!value}"
    done
}

# Differences between two snapshots over ELAPSED seconds of load (the tool's own elapsed time,
# which excludes JVM start-up): sets D_* for emit.
difference() {
    local elapsed="$1" records="$2" clk
    clk="$(getconf CLK_TCK)"
    D_CPU="$(calc "($S_after_ticks - $S_before_ticks) / $clk" 2)"
    if ! awk "BEGIN { exit !($D_CPU > 0) }"; then
        # /proc counts CPU in ticks (10 ms): a smoke run of a second at a low fixed rate can fall
        # below one. Count it as one tick there; in a full run it means the measurement is broken.
        ((QUICK)) || die "the server used no CPU during the run?"
        D_CPU="$(calc "1 / $clk" 2)"
    fi
    D_CORES="$(calc "$D_CPU / $elapsed" 2)"
    D_MIB="$(calc "$records * $RECORD_SIZE / 1048576" 2)"
    D_MIB_PER_CORE="$(calc "$D_MIB / $D_CPU" 2)"
    D_CLIENT_CPU="$(calc "$S_after_client - $S_before_client" 2)"
    D_CLIENT_CORES="$(calc "$D_CLIENT_CPU / ($S_after_time - $S_before_time)" 2)"
    if [[ "$S_before_infra" == null ]]; then
        D_INFRA_CPU=null D_MIB_PER_CORE_ALL=null
    else
        D_INFRA_CPU="$(calc "($S_after_infra - $S_before_infra) / $clk" 2)"
        D_MIB_PER_CORE_ALL="$(calc "$D_MIB / ($D_CPU + $D_INFRA_CPU)" 2)"
    fi
    if [[ "$S_before_puts" == null ]]; then
        D_PUTS=null D_PUTS_PER_SEC=null D_SEGMENTS=null D_ETCD_PER_SEGMENT=null D_FLUSH_MS=null
    else
        D_PUTS=$((S_after_puts - S_before_puts))
        D_PUTS_PER_SEC="$(calc "$D_PUTS / $elapsed" 1)"
        D_SEGMENTS=$((S_after_flushes - S_before_flushes))
        # Mean time from a flush's start to its journal commit (the object PUT, the commit, and any
        # wait behind the previous commit): what a produce waits once its segment is flushed.
        if ((D_SEGMENTS > 0)); then
            D_FLUSH_MS="$(calc "($S_after_flushsec - $S_before_flushsec) * 1000 / $D_SEGMENTS" 2)"
        else
            D_FLUSH_MS=null
        fi
        if metric_present floe_etcd_transactions_total && ((D_SEGMENTS > 0)); then
            D_ETCD_PER_SEGMENT="$(calc "($S_after_etcd - $S_before_etcd) / $D_SEGMENTS" 3)"
        else
            D_ETCD_PER_SEGMENT=null # embedded metadata: no etcd
        fi
    fi
}

emit_server_figures() { # the server-side figures every produce workload reports
    local system="$1" workload="$2"
    emit "$system" "$workload" \
        server_cpu_seconds "$D_CPU" server_cores "$D_CORES" mib_per_sec_per_core "$D_MIB_PER_CORE" \
        infra_cpu_seconds "$D_INFRA_CPU" mib_per_sec_per_core_incl_infra "$D_MIB_PER_CORE_ALL" \
        client_cpu_seconds "$D_CLIENT_CPU" client_cores "$D_CLIENT_CORES" \
        object_puts "$D_PUTS" object_puts_per_sec "$D_PUTS_PER_SEC" segments "$D_SEGMENTS" flush_ms_mean "$D_FLUSH_MS" \
        etcd_txn_per_segment "$D_ETCD_PER_SEGMENT" rss_hwm_mib "$(rss_hwm_mib "${SERVER_PIDS[@]}")" \
        rss_hwm_process_mib "$(rss_hwm_max_mib "${SERVER_PIDS[@]}")"
}

# One ProducerPerformance run; sets P_* (see parse_producer). EXTRA_PROPS are more producer settings
# (none of them a key producer_props already gives).
produce() { # produce LOGNAME TOPIC RECORDS THROUGHPUT COMPRESSION BATCH_SIZE TIMEOUT [EXTRA_PROPS...]
    local logname="$1" topic="$2" records="$3" throughput="$4" compression="$5" batch_size="$6" timeout_seconds="$7" props
    shift 7
    read -ra props <<<"$(producer_props "$compression" "$batch_size") $*"
    local security=()
    [[ -z "$CLIENT_CONFIG_FILE" ]] || security=(--producer.config "$CLIENT_CONFIG_FILE")
    run_tool "$timeout_seconds" "$logname" org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
        --num-records "$records" --record-size "$RECORD_SIZE" --throughput "$throughput" "${security[@]}" \
        --producer-props bootstrap.servers="$BOOTSTRAP" "${props[@]}"
    parse_producer "$LOG_DIR/$logname.out" "$records"
}

# BATCH_SIZE (default the bench's BATCH_SIZE) is the producer's batch.size for the probe and the run.
# Sets T_RECORDS: the records every produce of this call (probe, run, any re-run) added to TOPIC.
run_throughput() {
    local system="$1" workload="$2" topic="$3" partitions="$4" compression="$5" batch_size="${6:-$BATCH_SIZE}" records
    T_RECORDS=0
    if ((QUICK)); then
        records="$QUICK_RECORDS"
    else
        # Size the run to about THROUGHPUT_SECONDS from a short probe at full speed.
        produce "$system-$workload-probe" "$topic" "$PROBE_RECORDS" -1 "$compression" "$batch_size" 300
        T_RECORDS=$((T_RECORDS + P_SENT))
        records="$(awk -v rate="$P_RPS" -v seconds="$THROUGHPUT_SECONDS" -v low="$PROBE_RECORDS" -v high="$MAX_RECORDS" \
            'BEGIN { n = int(rate * seconds); if (n < low) n = low; if (n > high) n = high; print n }')"
    fi
    log "$system $workload: $records records, $partitions partitions, compression $compression, batch.size $batch_size"
    snapshot before
    produce "$system-$workload" "$topic" "$records" -1 "$compression" "$batch_size" $((THROUGHPUT_SECONDS * 5 + 120))
    T_RECORDS=$((T_RECORDS + P_SENT))
    snapshot after
    local elapsed
    elapsed="$(calc "$records / $P_RPS" 3)"
    # A cold probe (a JIT warming up, connections opening) can underestimate the rate several
    # times over; a run shorter than half its target is then redone, sized by its own rate (the
    # first run served as the warm-up).
    if ((!QUICK && records < MAX_RECORDS)) && awk "BEGIN { exit !($elapsed < $THROUGHPUT_SECONDS / 2) }"; then
        records="$(awk -v rate="$P_RPS" -v seconds="$THROUGHPUT_SECONDS" -v high="$MAX_RECORDS" \
            'BEGIN { n = int(rate * seconds); if (n > high) n = high; print n }')"
        log "$system $workload: run took ${elapsed}s, redoing it with $records records"
        snapshot before
        produce "$system-$workload-sized" "$topic" "$records" -1 "$compression" "$batch_size" $((THROUGHPUT_SECONDS * 5 + 120))
        T_RECORDS=$((T_RECORDS + P_SENT))
        snapshot after
        elapsed="$(calc "$records / $P_RPS" 3)"
    fi
    difference "$elapsed" "$records"
    emit "$system" "$workload" partitions "$partitions" compression "$compression" records "$records" \
        elapsed_seconds "$elapsed" records_per_sec "$P_RPS" mib_per_sec "$P_MBS" \
        avg_ms "$P_AVG" p50_ms "$P_P50" p99_ms "$P_P99" p999_ms "$P_P999" max_ms "$P_MAX"
    emit_server_figures "$system" "$workload"
    log "$system $workload: $P_MBS MiB/s, server $D_CORES cores, $D_MIB_PER_CORE MiB/s per core"
}

# IN_FLIGHT (default 5, the Java producer's default and the most an idempotent producer may use)
# caps the requests a connection has waiting for an answer; BATCH_SIZE defaults to the bench's
# (w3-defaults-50 gives the Java producer's default). Above 5 idempotence is turned off: that
# run shows the server's latency when the client's pipeline is not what queues the records.
run_fixed_rate() {
    local system="$1" workload="$2" topic="$3" percent="$4" max_rps="$5" in_flight="${6:-5}" batch_size="${7:-$BATCH_SIZE}" rate
    rate="$(awk -v r="$max_rps" -v p="$percent" 'BEGIN { x = int(r * p / 100); if (x < 1) x = 1; print x }')"
    produce_at_rate "$system" "$workload" "$topic" "$rate" "$percent" "$in_flight" "$batch_size" "$percent% of $max_rps"
}

# The rate of w3-defaults-50 again, from a fresh Java producer with the same settings, timed only
# after WARM_SECONDS (bench/WarmLatency.java). ProducerPerformance's percentiles include its first
# seconds (the client's JIT, first metadata and connections), where every system, Kafka too, showed
# a 400-500 ms spike that set the p99; this is the latency a running application sees.
run_warm_latency() {
    local system="$1" workload="$2" topic="$3" percent="$4" max_rps="$5" rate props line
    rate="$(awk -v r="$max_rps" -v p="$percent" 'BEGIN { x = int(r * p / 100); if (x < 1) x = 1; print x }')"
    read -ra props <<<"$(producer_props none "$JAVA_BATCH_SIZE") max.in.flight.requests.per.connection=5"
    log "$system $workload: $rate records/s again after a ${WARM_SECONDS}s warm-up, for ${FIXED_SECONDS}s"
    run_tool $(((WARM_SECONDS + FIXED_SECONDS) * 5 + 120)) "$system-$workload-warm" "$SCRIPT_DIR/bench/WarmLatency.java" \
        "$BOOTSTRAP" "$topic" "$rate" "$WARM_SECONDS" "$FIXED_SECONDS" "$RECORD_SIZE" "${CLIENT_CONFIG_FILE:--}" "${props[@]}"
    line="$(grep '^warm:' "$LOG_DIR/$system-$workload-warm.out" | tail -n 1)"
    local re='^warm: records ([0-9]+), p50 ([0-9.]+) ms, p99 ([0-9.]+) ms, p99.9 ([0-9.]+) ms, max ([0-9.]+) ms'
    [[ "$line" =~ $re ]] || die "no WarmLatency summary in $LOG_DIR/$system-$workload-warm.out"
    emit "$system" "$workload" warm_seconds "$WARM_SECONDS" warm_records "${BASH_REMATCH[1]}" warm_p50_ms "${BASH_REMATCH[2]}" \
        warm_p99_ms "${BASH_REMATCH[3]}" warm_p999_ms "${BASH_REMATCH[4]}" warm_max_ms "${BASH_REMATCH[5]}"
    log "$system $workload after warm-up: p50 ${BASH_REMATCH[2]} ms, p99 ${BASH_REMATCH[3]} ms, p99.9 ${BASH_REMATCH[4]} ms"
}

# W3 light: RATE records/s, a constant rather than a share of the system's own W1 max (so it needs
# no w1-none), with the Java producer's defaults (JAVA_BATCH_SIZE, linger 5 ms, 5 requests in
# flight, idempotent): the latency an untuned client sees on a lightly loaded server, at the same
# rate on every system and in every run.
run_light_rate() {
    local system="$1" workload="$2" topic="$3" rate="$4"
    produce_at_rate "$system" "$workload" "$topic" "$rate" null 5 "$JAVA_BATCH_SIZE" "a constant rate, Java defaults"
}

# produce_at_rate SYSTEM WORKLOAD TOPIC RATE PERCENT IN_FLIGHT BATCH_SIZE WHAT: FIXED_SECONDS of
# ProducerPerformance at RATE records/s, uncompressed. PERCENT is RATE's share of W1's max, or null
# when RATE is a constant; WHAT says where RATE came from, for the log.
produce_at_rate() {
    local system="$1" workload="$2" topic="$3" rate="$4" percent="$5" in_flight="$6" batch_size="$7" what="$8" records extra=()
    records=$((rate * FIXED_SECONDS))
    ((in_flight <= 5)) || extra=(enable.idempotence=false)
    extra+=("max.in.flight.requests.per.connection=$in_flight")
    log "$system $workload: $rate records/s ($what) for ${FIXED_SECONDS}s, $in_flight requests in flight, batch.size $batch_size"
    snapshot before
    produce "$system-$workload" "$topic" "$records" "$rate" none "$batch_size" $((FIXED_SECONDS * 5 + 120)) "${extra[@]}"
    snapshot after
    local elapsed
    elapsed="$(calc "$records / $P_RPS" 3)"
    difference "$elapsed" "$records"
    emit "$system" "$workload" percent_of_max "$percent" max_in_flight "$in_flight" target_records_per_sec "$rate" records "$records" \
        records_per_sec "$P_RPS" mib_per_sec "$P_MBS" avg_ms "$P_AVG" p50_ms "$P_P50" p99_ms "$P_P99" \
        p999_ms "$P_P999" max_ms "$P_MAX"
    emit_server_figures "$system" "$workload"
    log "$system $workload: p50 $P_P50 ms, p99 $P_P99 ms, p99.9 $P_P999 ms"
}

# WORKLOAD (default consume) names the group, the logs and the figures. catchup gets twice the
# time: it reads 1 GiB of w2-none's topic over 1,000 partitions, on floe-cluster-s3lat with every
# bucket read delayed. Sets C_MIB (the MiB the tool read).
run_consume() {
    local system="$1" topic="$2" records="$3" workload="${4:-consume}" timeout_seconds=$((THROUGHPUT_SECONDS * 5 + 120))
    [[ "$workload" == consume ]] || timeout_seconds=$((THROUGHPUT_SECONDS * 10 + 120))
    local group="bench-$workload-$RUN_ID"
    log "$system $workload: $records records from $topic"
    snapshot before
    local security=()
    [[ -z "$CLIENT_CONFIG_FILE" ]] || security=(--consumer.config "$CLIENT_CONFIG_FILE")
    run_tool "$timeout_seconds" "$system-$workload" org.apache.kafka.tools.ConsumerPerformance \
        --bootstrap-server "$BOOTSTRAP" --topic "$topic" --messages "$records" --group "$group" --timeout 30000 "${security[@]}"
    snapshot after
    local out="$LOG_DIR/$system-$workload.out"
    if grep -q "Exiting before consuming the expected number of messages" "$out" "$LOG_DIR/$system-$workload.err"; then
        die "ConsumerPerformance timed out before consuming $records records ($system $workload)"
    fi
    # start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec,
    # rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
    local line c_mb c_mbs c_n c_ns c_rebalance c_fetch_ms c_fmbs c_fns v
    line="$(grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2} ' "$out" | tail -n 1 || true)"
    [[ -n "$line" ]] || die "no ConsumerPerformance result line ($system $workload)"
    IFS=',' read -r _ _ c_mb c_mbs c_n c_ns c_rebalance c_fetch_ms c_fmbs c_fns <<<"$line"
    for v in c_mb c_mbs c_n c_ns c_rebalance c_fetch_ms c_fmbs c_fns; do
        printf -v "$v" '%s' "$(tr -d ' ' <<<"${!v}")"
        need_num "$v" "${!v}"
    done
    awk "BEGIN { exit !($c_n >= $records) }" || die "consumer read $c_n of $records records ($system $workload)"
    # Fetch time excludes the group join; the server's CPU covers the whole window.
    local seconds
    seconds="$(calc "$c_fetch_ms / 1000" 3)"
    awk "BEGIN { exit !($seconds > 0) }" || seconds="$(calc "$S_after_time - $S_before_time" 3)"
    difference "$seconds" "$records"
    C_MIB="$c_mb"
    emit "$system" "$workload" records "$c_n" mib_per_sec "$c_mbs" fetch_mib_per_sec "$c_fmbs" \
        rebalance_ms "$c_rebalance" server_cpu_seconds "$D_CPU" mib_per_sec_per_core "$D_MIB_PER_CORE" \
        infra_cpu_seconds "$D_INFRA_CPU"
    log "$system $workload: $c_fmbs MiB/s (fetch), $c_mbs MiB/s incl. group join"
}

# catchup: a consumer that was away reads a 1,000-partition topic from the start: CATCHUP_MIB of
# 1 KiB records, the same volume on every system (the issue's 1 GiB), so the client's warm-up
# weighs the same everywhere; when w2-none wrote less (RECORDS, probe and re-runs included), an
# unmeasured producer first adds the rest. Quick mode (no CATCHUP_MIB) reads what w2-none wrote.
# Most fetches miss the agents' memory cache and read their disk cache or the bucket. Besides
# run_consume's figures: the bucket GETs and bytes the agents' /metrics count over the read, the
# GETs per GiB read, and the objects per GiB the data was written in (W2_PUTS objects PUT for
# W2_MIB MiB by w2-none's measured run). GETs per object above 1 means an object is fetched
# piecemeal (a range per partition or per fetch); below 1, some of it came from the agents' cache.
# Kafka has no bucket: null there.
run_catchup() {
    local system="$1" topic="$2" records="$3" w2_puts="$4" w2_mib="$5"
    if [[ -n "$CATCHUP_MIB" ]]; then
        local wanted=$((CATCHUP_MIB * 1048576 / RECORD_SIZE))
        if ((records < wanted)); then
            log "$system catchup: w2-none wrote $records records, $((wanted - records)) more first (unmeasured)"
            produce "$system-catchup-fill" "$topic" $((wanted - records)) -1 none "$BATCH_SIZE" $((THROUGHPUT_SECONDS * 5 + 120))
        fi
        records="$wanted"
    fi
    local gets_metric='floe_object_store_operations_total{operation="get",outcome="ok"}'
    local bytes_metric='floe_object_store_bytes_total{operation="get"}'
    local gets_before bytes_before
    gets_before="$(metric_sum "$gets_metric")"
    bytes_before="$(metric_sum "$bytes_metric")"
    run_consume "$system" "$topic" "$records" catchup
    local gets_after bytes_after
    gets_after="$(metric_sum "$gets_metric")"
    bytes_after="$(metric_sum "$bytes_metric")"
    local gets=null get_mib=null gets_per_gib=null objects_per_gib=null gets_per_object=null
    if [[ "$gets_before" != null ]]; then
        [[ "$w2_puts" =~ ^[1-9][0-9]*$ ]] || die "w2-none's run PUT no objects ($system): nothing to compare catchup's GETs with"
        gets=$((gets_after - gets_before))
        get_mib="$(calc "($bytes_after - $bytes_before) / 1048576" 2)"
        gets_per_gib="$(calc "$gets * 1024 / $C_MIB" 1)"
        objects_per_gib="$(calc "$w2_puts * 1024 / $w2_mib" 1)"
        gets_per_object="$(calc "($gets / $C_MIB) / ($w2_puts / $w2_mib)" 2)" # unrounded, unlike the two above
    fi
    emit "$system" catchup mib_read "$C_MIB" object_gets "$gets" object_get_mib "$get_mib" gets_per_gib "$gets_per_gib" \
        objects_per_gib "$objects_per_gib" gets_per_object "$gets_per_object"
    [[ "$gets" == null ]] || log "$system catchup: $gets GETs ($get_mib MiB) from the bucket, $gets_per_gib per GiB read; w2-none wrote $objects_per_gib objects per GiB"
}

# EndToEndLatency's summary into E_AVG, E_P50, E_P99, E_P999.
parse_end_to_end() {
    local out="$1"
    E_AVG="$(sed -n 's/^Avg latency: *\([0-9.]*\) *ms.*/\1/p' "$out" | tail -n 1)"
    local re='Percentiles: 50th = ([0-9]+), 99th = ([0-9]+), 99\.9th = ([0-9]+)'
    [[ "$(grep -E 'Percentiles:' "$out" | tail -n 1)" =~ $re ]] || die "no EndToEndLatency percentiles in $out"
    E_P50="${BASH_REMATCH[1]}" E_P99="${BASH_REMATCH[2]}" E_P999="${BASH_REMATCH[3]}"
    local v
    for v in E_AVG E_P50 E_P99 E_P999; do need_num "$v" "${!v}"; done
}

run_end_to_end() {
    local system="$1" topic="$2" messages
    if ((QUICK)); then
        messages="$QUICK_E2E_MESSAGES"
    else
        # One record is in flight at a time, so the count that fits E2E_SECONDS depends on the
        # latency itself: probe with a few records first.
        run_tool 300 "$system-e2e-probe" org.apache.kafka.tools.EndToEndLatency "$BOOTSTRAP" "$topic" 20 all "$RECORD_SIZE" \
            ${CLIENT_CONFIG_FILE:+"$CLIENT_CONFIG_FILE"}
        parse_end_to_end "$LOG_DIR/$system-e2e-probe.out"
        messages="$(awk -v avg="$E_AVG" -v seconds="$E2E_SECONDS" \
            'BEGIN { n = int(seconds * 1000 / (avg > 0.1 ? avg : 0.1)); if (n < 50) n = 50; if (n > 5000) n = 5000; print n }')"
    fi
    log "$system e2e: $messages records, one at a time (acks=all, consumer tailing)"
    run_tool $((E2E_SECONDS * 10 + 120)) "$system-e2e" org.apache.kafka.tools.EndToEndLatency \
        "$BOOTSTRAP" "$topic" "$messages" all "$RECORD_SIZE" ${CLIENT_CONFIG_FILE:+"$CLIENT_CONFIG_FILE"}
    parse_end_to_end "$LOG_DIR/$system-e2e.out"
    emit "$system" e2e messages "$messages" avg_ms "$E_AVG" p50_ms "$E_P50" p99_ms "$E_P99" p999_ms "$E_P999"
    log "$system e2e: p50 $E_P50 ms, p99 $E_P99 ms"
}

# sarama-sync: Go's sarama SyncProducer (e2e/sarama), one record at a time for E2E_SECONDS (quick
# mode: 20 records), each waiting for its acknowledgement: what a Go service that produces
# synchronously sees per record. The first record (metadata, connection) is reported apart.
run_sarama_sync() {
    local system="$1" topic="$2" seconds="$E2E_SECONDS" limit=()
    # Quick mode: exactly 20 records (the time limit only guards against a hang).
    ((QUICK)) && seconds=60 limit=(--max-messages 20)
    if [[ -n "$CLIENT_CONFIG_FILE" ]]; then
        die "sarama-sync has no TLS/SASL settings ($system): run it on a plaintext system"
    fi
    log "$system sarama-sync: one record at a time for ${seconds}s ${limit[*]}"
    run_client $((seconds * 2 + 60)) "$system-sarama-sync" sarama-sync "$SARAMA_BIN" \
        --bootstrap-server "$BOOTSTRAP" --topic "$topic" --seconds "$seconds" --record-size "$RECORD_SIZE" "${limit[@]}"
    local out="$LOG_DIR/$system-sarama-sync.out" figures
    figures="$("$PYTHON" -c '
import json, sys
d = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
print(" ".join(str(d[k]) for k in ["messages", "messages_per_sec", "first_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"]))
' "$out")" || die "no sarama-sync result in $out"
    local messages per_sec first p50 p99 p999 max v
    read -r messages per_sec first p50 p99 p999 max <<<"$figures"
    for v in messages per_sec first p50 p99 p999 max; do need_num "$v" "${!v}"; done
    emit "$system" sarama-sync messages "$messages" records_per_sec "$(calc "$per_sec" 1)" first_ms "$first" \
        p50_ms "$p50" p99_ms "$p99" p999_ms "$p999" max_ms "$max"
    log "$system sarama-sync: $messages records, p50 $p50 ms, p99 $p99 ms"
}
