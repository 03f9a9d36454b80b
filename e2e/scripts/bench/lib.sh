# Helpers shared by bench.sh, systems.sh and workloads.sh: logging, /proc sampling, Prometheus
# scraping, the Kafka tool runner and the parsers of the tools' summary lines.
#
# Sourced, not run. Expects from bench.sh: RUN_DIR, LOG_DIR, LIBS, JAVA, CLIENT_CPUS, TOOL_LOG4J,
# and SCRIPT_DIR and CACHE for ensure_latency_proxy.

log() { echo "bench [$((SECONDS / 60))m$(printf '%02d' $((SECONDS % 60)))s]: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

# Check that a value is a plain decimal number.
need_num() {
    local name="$1" value="$2"
    [[ "$value" =~ ^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]] || die "could not parse $name (got '$value')"
}
calc() { awk "BEGIN { printf \"%.${2:-2}f\", $1 }"; }
now_s() { date +%s.%N; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A free loopback port (bound and released by the kernel; the race with other processes is small
# and every caller fails loudly if it loses it).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The S3 latency proxy (e2e/scripts/s3-latency-proxy, Go standard library only) for the system
# floe-cluster-s3lat: $CACHE/bin/s3-latency-proxy, built with go when missing or older than its
# sources (a few seconds, only for a run that includes floe-cluster-s3lat, so `make test` never
# pays for it). Prints the binary's path.
ensure_latency_proxy() {
    local source="$SCRIPT_DIR/s3-latency-proxy" binary="$CACHE/bin/s3-latency-proxy"
    if [[ ! -x "$binary" || "$source/main.go" -nt "$binary" || "$source/go.mod" -nt "$binary" ]]; then
        command -v go >/dev/null || die "go not found: it builds $source (make deps installs the prerequisites)"
        log "building the S3 latency proxy ($source) into $binary"
        mkdir -p "$(dirname "$binary")"
        (cd "$source" && go build -trimpath -o "$binary.tmp.$$" . && mv -f "$binary.tmp.$$" "$binary") >&2 \
            || die "go build of the S3 latency proxy ($source) failed"
    fi
    echo "$binary"
}

# Prefix for a command that must run on the given CPU list (empty when pinning is off).
pin() {
    local cpus="$1"
    if [[ -n "$cpus" ]]; then
        printf '%s\n' taskset -c "$cpus"
    fi
}

# ---------------------------------------------------------------------------------------------
# /proc sampling.

# utime+stime (clock ticks) summed over the given PIDs. comm may contain spaces, so cut after ") ".
cpu_ticks() {
    local pid stat total=0 ticks
    for pid in "$@"; do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || die "process $pid is gone (cannot read /proc/$pid/stat)"
        stat="${stat##*) }"
        # after "comm) ", state is field 1, so utime (14) is field 12 and stime (15) is field 13
        ticks="$(awk '{ print $12 + $13 }' <<<"$stat")"
        total=$((total + ticks))
    done
    echo "$total"
}

# VmHWM (peak resident set) in MiB summed over the given PIDs.
rss_hwm_mib() {
    local pid kib total=0
    for pid in "$@"; do
        kib="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null)" || die "process $pid is gone"
        need_num "VmHWM of $pid" "$kib"
        total=$((total + kib))
    done
    calc "$total / 1024" 1
}

# VmHWM of the largest of the given PIDs, in MiB (the figure a per-agent memory limit must fit).
rss_hwm_max_mib() {
    local pid kib largest=0
    for pid in "$@"; do
        kib="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null)" || die "process $pid is gone"
        need_num "VmHWM of $pid" "$kib"
        ((kib > largest)) && largest="$kib"
    done
    calc "$largest / 1024" 1
}

# The peaks of the run so far (summed over the server processes, and of the largest one): folded
# in before every reset, so the system row still reports the peak through the whole run.
RSS_RUN_PEAK_MIB=0
RSS_RUN_PEAK_PROCESS_MIB=0
fold_rss_peaks() {
    local sum largest
    sum="$(rss_hwm_mib "$@")" largest="$(rss_hwm_max_mib "$@")"
    RSS_RUN_PEAK_MIB="$(calc "($sum > $RSS_RUN_PEAK_MIB ? $sum : $RSS_RUN_PEAK_MIB)" 1)"
    RSS_RUN_PEAK_PROCESS_MIB="$(calc "($largest > $RSS_RUN_PEAK_PROCESS_MIB ? $largest : $RSS_RUN_PEAK_PROCESS_MIB)" 1)"
}

# Starts a new peak measurement for the given PIDs: writing 5 to clear_refs resets VmHWM to the
# current RSS (Linux 4.0+), so each workload reports its own peak, not the peak so far.
reset_rss_peaks() {
    local pid
    fold_rss_peaks "$@"
    for pid in "$@"; do
        echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || die "cannot reset the peak RSS of process $pid (/proc/$pid/clear_refs)"
    done
}

# CPU seconds of this shell's waited-for children (the client JVMs), from bash's `times`, into
# the named variable. `times` must run in this shell: a $(...) subshell has no children yet.
children_cpu_seconds() {
    local into="$1" line
    times >"$RUN_DIR/.times"
    line="$(tail -n 1 "$RUN_DIR/.times")" # "0m1.234s 0m0.100s" (children user, children system)
    printf -v "$into" '%s' "$(awk '{ total = 0
           for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); total += p[1] * 60 + p[2] }
           printf "%.2f", total }' <<<"$line")"
}

# ---------------------------------------------------------------------------------------------
# Prometheus: sum of every sample whose "name{labels}" starts with the given prefix, over all
# METRICS_URLS (one per agent), with six decimals (for seconds). Prints 0 when no agent exports
# the sample, "null" without agents (Kafka).
metric_sum_real() {
    local prefix="$1" url total=0 value
    if ((${#METRICS_URLS[@]} == 0)); then
        echo null
        return
    fi
    for url in "${METRICS_URLS[@]}"; do
        value="$(curl -fsS --max-time 10 "$url" | awk -v prefix="$prefix" '
            index($0, "#") != 1 && index($0, prefix) == 1 { sum += $NF } END { printf "%.6f", sum + 0 }')" \
            || die "cannot scrape $url"
        total="$(awk -v a="$total" -v b="$value" 'BEGIN { printf "%.6f", a + b }')"
    done
    echo "$total"
}

# metric_sum_real rounded to a whole number (counters), or null.
metric_sum() {
    local total
    total="$(metric_sum_real "$1")"
    if [[ "$total" == null ]]; then
        echo null
    else
        printf '%.0f\n' "$total"
    fi
}

# Does any agent export a sample with this prefix at all?
metric_present() {
    local prefix="$1" url
    for url in "${METRICS_URLS[@]}"; do
        if [[ "$(curl -fsS --max-time 10 "$url" | grep -c "^$prefix" || true)" != 0 ]]; then
            return 0
        fi
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
# Kafka tools: run_tool TIMEOUT_SECONDS LOGNAME CLASS ARGS... (pinned to the client CPUs). The
# exact command is appended to commands.txt with the run directory abbreviated.
run_tool() {
    local timeout_seconds="$1" logname="$2" class="$3"
    shift 3
    local jvm=(-Xmx1G)
    # Quick mode's tools live for a second or two: skip the optimising JIT to start faster.
    ((QUICK)) && jvm+=(-XX:TieredStopAtLevel=1 -XX:+UseSerialGC)
    run_client "$timeout_seconds" "$logname" "$class" "$JAVA" "${jvm[@]}" -Dlog4j2.configurationFile="$TOOL_LOG4J" -cp "$LIBS/*" "$class" "$@"
}

# run_client TIMEOUT LOGNAME NAME COMMAND...: a load generator (NAME in errors) pinned to
# CLIENT_CPUS, its command line in commands.txt, its output in logs/LOGNAME.{out,err}; dies when it
# fails or overruns.
run_client() {
    local timeout_seconds="$1" logname="$2" name="$3"
    shift 3
    local cmd=("$@")
    local pinned
    mapfile -t pinned < <(pin "$CLIENT_CPUS")
    local line
    line="$(printf '%q ' "${pinned[@]}" "${cmd[@]}")"
    echo "${line% }" >>"$RUN_DIR/commands.txt"
    local rc=0
    timeout --kill-after=10 "$timeout_seconds" "${pinned[@]}" "${cmd[@]}" \
        >"$LOG_DIR/$logname.out" 2>"$LOG_DIR/$logname.err" </dev/null || rc=$?
    if ((rc == 124 || rc == 137)); then
        die "$name did not finish within ${timeout_seconds}s (see $LOG_DIR/$logname.*)"
    fi
    ((rc == 0)) || die "$name exited with $rc (see $LOG_DIR/$logname.*): $(tail -n 3 "$LOG_DIR/$logname.err" | tr '\n' ' ')"
    if grep -qE 'Exception|ERROR' "$LOG_DIR/$logname.err" "$LOG_DIR/$logname.out" 2>/dev/null; then
        note "$logname: $(grep -hE 'Exception|ERROR' "$LOG_DIR/$logname.err" "$LOG_DIR/$logname.out" | head -n 1 | cut -c1-200)"
    fi
}

# A free-text remark for the report (tool warnings, slow shutdowns).
note() { echo "$*" >>"$RUN_DIR/notes.txt"; }

# ProducerPerformance's final line into P_* variables:
#   N records sent, R records/sec (M MB/sec), A ms avg latency, X ms max latency, a ms 50th, b ms 95th, c ms 99th, d ms 99.9th.
parse_producer() {
    local logfile="$1" expected="$2" line
    line="$(grep -E '^[0-9]+ records sent, .* 99\.9th\.?$' "$logfile" | tail -n 1 || true)"
    [[ -n "$line" ]] || die "no ProducerPerformance summary line in $logfile"
    local re='^([0-9]+) records sent, ([0-9.]+) records/sec \(([0-9.]+) MB/sec\), ([0-9.]+) ms avg latency, ([0-9.]+) ms max latency, ([0-9]+) ms 50th, ([0-9]+) ms 95th, ([0-9]+) ms 99th, ([0-9]+) ms 99\.9th'
    [[ "$line" =~ $re ]] || die "cannot parse ProducerPerformance summary: $line"
    P_SENT="${BASH_REMATCH[1]}" P_RPS="${BASH_REMATCH[2]}" P_MBS="${BASH_REMATCH[3]}"
    P_AVG="${BASH_REMATCH[4]}" P_MAX="${BASH_REMATCH[5]}" P_P50="${BASH_REMATCH[6]}"
    P_P95="${BASH_REMATCH[7]}" P_P99="${BASH_REMATCH[8]}" P_P999="${BASH_REMATCH[9]}"
    local v
    for v in P_SENT P_RPS P_MBS P_AVG P_MAX P_P50 P_P95 P_P99 P_P999; do need_num "$v" "${!v}"; done
    [[ "$P_SENT" == "$expected" ]] || die "producer acknowledged $P_SENT of $expected records ($logfile)"
}

# ---------------------------------------------------------------------------------------------
# Results: one key=value file per system and workload, assembled into results.json by render.py.
# Values are numbers, "null" (not applicable to this system) or strings.
emit() { # emit SYSTEM WORKLOAD KEY VALUE [KEY VALUE]...
    local system="$1" workload="$2"
    shift 2
    mkdir -p "$RUN_DIR/raw/$system"
    while (($#)); do
        printf '%s=%s\n' "$1" "$2" >>"$RUN_DIR/raw/$system/$workload.env"
        shift 2
    done
}
