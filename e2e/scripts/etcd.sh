#!/usr/bin/env bash
# Install/start/stop a real single-node etcd (Debian bookworm's etcd-server 3.4.x) for cluster-mode tests.
#
#   etcd.sh install                          # apt-get install etcd-server etcd-client if missing; print etcd path
#   etcd.sh path                             # print just the etcd binary path (fails if not installed)
#   etcd.sh start DIR CLIENT_PORT PEER_PORT  # data in DIR/data, log DIR/etcd.log, pid DIR/etcd.pid
#   etcd.sh stop DIR                         # SIGTERM, wait up to 15s, then SIGKILL
#   etcd.sh status DIR
#
# Environment:
#   ETCD_EXTRA_ARGS       extra etcd flags, word-split (e.g. "--auto-compaction-retention=1")
#   ETCD_START_TIMEOUT    seconds to wait for 'etcdctl endpoint health' (default 30)
#   ETCD_BIN, ETCDCTL_BIN override the binaries (default: /usr/bin/etcd, /usr/bin/etcdctl or from PATH)
#
# Client URL http://127.0.0.1:CLIENT_PORT, peer URL http://127.0.0.1:PEER_PORT, member name floe-test.
# Idempotent: start on a running etcd (same DIR, same port) is a no-op, stop on a stopped one is a no-op.
# start after stop on the same DIR reuses DIR/data (keys persist).
set -euo pipefail

NAME=floe-test

die() { echo "etcd.sh: $*" >&2; exit 1; }
log() { echo "etcd.sh: $*" >&2; }

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

find_bin() {
    local override="$1" name="$2"
    if [[ -n "$override" ]]; then
        [[ -x "$override" ]] || return 1
        echo "$override"
    elif [[ -x "/usr/bin/$name" ]]; then
        echo "/usr/bin/$name"
    else
        command -v "$name" 2>/dev/null
    fi
}
etcd_bin() { find_bin "${ETCD_BIN:-}" etcd; }
etcdctl_bin() { find_bin "${ETCDCTL_BIN:-}" etcdctl; }

cmd_install() {
    if etcd_bin >/dev/null && etcdctl_bin >/dev/null; then
        log "etcd already installed: $("$(etcd_bin)" --version | sed -n 1p)"
        etcd_bin
        return 0
    fi
    # Serialize concurrent installs (e.g. parallel test processes); apt's own lock would just fail.
    local lock_dir="${FLOE_CACHE:-$HOME/.cache/floe}"
    mkdir -p "$lock_dir"
    exec 9>"$lock_dir/etcd-install.lock"
    flock 9
    if etcd_bin >/dev/null && etcdctl_bin >/dev/null; then
        log "etcd already installed (concurrently): $("$(etcd_bin)" --version | sed -n 1p)"
        etcd_bin
        return 0
    fi
    local sudo=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install etcd-server etcd-client"
        sudo=(sudo)
    fi
    local pkgs=(etcd-server etcd-client)
    log "installing ${pkgs[*]} via apt-get"
    # Only refresh the package lists if apt doesn't know the packages yet.
    if ! apt-cache show "${pkgs[@]}" >/dev/null 2>&1; then
        log "apt-get update"
        "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
    fi
    # The package's postinst tries to start a system etcd service on :2379 where systemd runs;
    # we never use it (our instances run on their own ports).
    local install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${pkgs[@]}")
    if ! "${install[@]}" >&2; then
        log "apt-get install failed; refreshing package lists (apt-get update) and retrying"
        "${sudo[@]}" apt-get update -q >&2 || die "apt-get update failed"
        "${install[@]}" >&2 || die "apt-get install ${pkgs[*]} failed"
    fi
    etcd_bin >/dev/null || die "etcd binary not found after install"
    etcdctl_bin >/dev/null || die "etcdctl binary not found after install"
    log "installed: $("$(etcd_bin)" --version | sed -n 1p)"
    etcd_bin
}

cmd_path() {
    etcd_bin || die "etcd not installed (run: $0 install)"
}

# True if the process exists and is not a zombie (a dead server reparented to an init that reaps
# lazily stays visible to kill -0 as a zombie for a while).
running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ -n "$stat" && "${stat:0:1}" != Z && "${stat:0:1}" != X ]]
}

pid_alive() {
    local pid_file="$1"
    [[ -f "$pid_file" ]] || return 1
    local pid
    pid="$(cat "$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    running "$pid" || return 1
    # Guard against PID reuse: it must be an etcd for this DIR.
    local cmdline
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"--data-dir $(dirname "$pid_file")/data "* ]]
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

healthy() {
    ETCDCTL_API=3 "$ETCDCTL" --endpoints="127.0.0.1:$1" --dial-timeout=1s --command-timeout=2s \
        endpoint health >/dev/null 2>&1
}

# etcd 3.4 refuses to run on architectures other than amd64/ppc64le (arm64 included) unless
# ETCD_UNSUPPORTED_ARCH=<GOARCH> is set. Not needed (and not set) on amd64.
unsupported_arch_env() {
    local arch
    arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
    case "$arch" in
        amd64 | x86_64 | ppc64el | ppc64le) ;;
        aarch64) echo "ETCD_UNSUPPORTED_ARCH=arm64" ;;
        *) echo "ETCD_UNSUPPORTED_ARCH=$arch" ;;
    esac
}

cmd_start() {
    [[ $# -eq 3 ]] || usage
    local dir="$1" cport="$2" pport="$3"
    [[ "$cport" =~ ^[0-9]+$ ]] || die "bad client port '$cport'"
    [[ "$pport" =~ ^[0-9]+$ ]] || die "bad peer port '$pport'"
    [[ "$cport" != "$pport" ]] || die "client and peer port must differ"
    ETCD="$(etcd_bin)" || die "etcd not installed (run: $0 install)"
    ETCDCTL="$(etcdctl_bin)" || die "etcdctl not installed (run: $0 install)"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local pid_file="$dir/etcd.pid" log_file="$dir/etcd.log"

    if pid_alive "$pid_file"; then
        local cmdline
        cmdline="$(tr '\0' ' ' <"/proc/$(cat "$pid_file")/cmdline" 2>/dev/null)" || true
        if [[ "$cmdline" == *"--listen-client-urls http://127.0.0.1:$cport "* ]]; then
            log "already running (pid $(cat "$pid_file")) on 127.0.0.1:$cport"
            return 0
        fi
        die "an etcd from $dir is already running (pid $(cat "$pid_file")) on another port; stop it first"
    fi
    rm -f "$pid_file"
    port_open "$cport" && die "client port 127.0.0.1:$cport is already in use by another process"
    port_open "$pport" && die "peer port 127.0.0.1:$pport is already in use by another process"

    local state=new
    [[ -d "$dir/data/member" ]] && state=existing
    mkdir -p "$dir/data"
    chmod 700 "$dir/data"   # etcd 3.4 warns (and tightens) otherwise

    local extra=()
    # shellcheck disable=SC2206 # word splitting of ETCD_EXTRA_ARGS is intended
    [[ -n "${ETCD_EXTRA_ARGS:-}" ]] && extra=(${ETCD_EXTRA_ARGS})
    local env_args=(-u ETCD_EXTRA_ARGS -u ETCD_START_TIMEOUT -u ETCD_BIN -u ETCDCTL_BIN)
    local arch_env
    arch_env="$(unsupported_arch_env)"
    [[ -n "$arch_env" ]] && env_args+=("$arch_env")

    log "starting $("$ETCD" --version | sed -n 1p) as '$NAME': client 127.0.0.1:$cport, peer 127.0.0.1:$pport, data $dir/data ($state)"
    echo "=== $(date -u +%FT%TZ) etcd.sh start $cport $pport ===" >>"$log_file"
    # setsid: etcd must not die with (or hold on to) the caller's terminal/process group/pipes.
    # The --initial-* flags are ignored by etcd when DIR/data already holds a member (restart).
    setsid env "${env_args[@]}" "$ETCD" \
        --name "$NAME" \
        --data-dir "$dir/data" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "$NAME=http://127.0.0.1:$pport" \
        --initial-cluster-token "$NAME" \
        --initial-cluster-state "$state" \
        --logger zap --log-outputs stderr \
        "${extra[@]}" \
        >>"$log_file" 2>&1 </dev/null &
    local pid=$!
    echo "$pid" >"$pid_file"

    local timeout="${ETCD_START_TIMEOUT:-30}" start=$SECONDS t0=${EPOCHREALTIME/./}
    while ! healthy "$cport"; do
        if ! running "$pid"; then
            tail -n 30 "$log_file" >&2 || true
            rm -f "$pid_file"
            die "etcd exited during startup (see $log_file)"
        fi
        if ((SECONDS - start >= timeout)); then
            tail -n 30 "$log_file" >&2 || true
            die "etcd not healthy within ${timeout}s (pid $pid still running; run '$0 stop $dir')"
        fi
        sleep 0.2
    done
    log "ready: http://127.0.0.1:$cport (pid $pid, $(( (${EPOCHREALTIME/./} - t0) / 1000 ))ms)"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir="$1"
    local pid_file="$dir/etcd.pid"
    [[ -d "$dir" ]] && dir="$(cd "$dir" && pwd)" && pid_file="$dir/etcd.pid"
    if ! pid_alive "$pid_file"; then
        rm -f "$pid_file"
        log "not running ($dir)"
        return 0
    fi
    local pid i
    pid="$(cat "$pid_file")"
    log "stopping etcd pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        running "$pid" || break
        sleep 0.1
    done
    if running "$pid"; then
        log "pid $pid ignored SIGTERM for 15s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            running "$pid" || break
            sleep 0.1
        done
    fi
    rm -f "$pid_file"
    log "stopped"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir
    dir="$(cd "$1" 2>/dev/null && pwd)" || { echo "stopped"; return 1; }
    if pid_alive "$dir/etcd.pid"; then
        echo "running (pid $(cat "$dir/etcd.pid"))"
    else
        echo "stopped"
        return 1
    fi
}

case "${1:-}" in
    install) shift; cmd_install ;;
    path) shift; cmd_path ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    *) usage ;;
esac
