#!/usr/bin/env bash
# Install/start/stop a local S3-compatible server for cluster-mode tests.
#
#   s3.sh install                                      # build s3s-fs once (fallback: moto); print server path
#   s3.sh path                                         # print just the server binary path
#   s3.sh backend                                      # print the installed backend: s3s-fs or moto
#   s3.sh start DIR PORT [ACCESS_KEY SECRET_KEY]       # serve DIR/root on 127.0.0.1:PORT; pid DIR/s3.pid, log DIR/s3.log
#   s3.sh create-bucket PORT BUCKET [ACCESS_KEY SECRET_KEY]  # signed CreateBucket; existing bucket is OK
#   s3.sh stop DIR                                     # SIGTERM, wait up to 15s, then SIGKILL
#   s3.sh status DIR
#
# Credentials default to floe / floe-secret, region us-east-1, path-style addressing.
# Backend s3s-fs (default) persists objects as plain files under DIR/root (bucket = directory,
# key = relative path), so stop/start on the same DIR keeps all objects. The fallback backend,
# moto[server], is in-memory only (objects are lost on stop) and does not check credentials.
#
# Environment:
#   FLOE_CACHE        cache root (default $HOME/.cache/floe): s3s-fs goes to $FLOE_CACHE/s3s-fs/bin,
#                     moto to the venv $FLOE_CACHE/venv; the chosen backend is recorded in $FLOE_CACHE/s3-backend
#   S3_BACKEND        force a backend for install/path/start: s3s-fs or moto
#   S3_START_TIMEOUT  seconds to wait for the port (default 30)
#   S3_RUST_LOG       s3s-fs log filter (default "s3s_fs=info,s3s=warn"; e.g. "s3s=debug" to trace requests)
#   PYTHON            python3 used for create-bucket and the moto venv (default python3)
set -euo pipefail

S3S_VERSION=0.14.1
MOTO_VERSION=5.2.5
CACHE_ROOT="${FLOE_CACHE:-$HOME/.cache/floe}"
S3S_ROOT="$CACHE_ROOT/s3s-fs"
S3S_BIN="$S3S_ROOT/bin/s3s-fs"
VENV="$CACHE_ROOT/venv"
MOTO_BIN="$VENV/bin/moto_server"
BACKEND_FILE="$CACHE_ROOT/s3-backend"
PYTHON="${PYTHON:-python3}"
DEFAULT_AK=floe
DEFAULT_SK=floe-secret

die() { echo "s3.sh: $*" >&2; exit 1; }
log() { echo "s3.sh: $*" >&2; }

usage() {
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

s3s_installed() { [[ -x "$S3S_BIN" && "$("$S3S_BIN" --version 2>/dev/null)" == *" $S3S_VERSION"* ]]; }
moto_installed() { [[ -x "$MOTO_BIN" ]] && "$VENV/bin/python" -c 'import moto, flask' 2>/dev/null; }

# Which backend to use: $S3_BACKEND, else the recorded one, else whichever is installed (s3s-fs first).
current_backend() {
    local b="${S3_BACKEND:-}"
    if [[ -z "$b" && -f "$BACKEND_FILE" ]]; then
        b="$(cat "$BACKEND_FILE")"
    fi
    if [[ -z "$b" ]]; then
        if s3s_installed; then b=s3s-fs; elif moto_installed; then b=moto; fi
    fi
    case "$b" in
        s3s-fs) s3s_installed || return 1 ;;
        moto) moto_installed || return 1 ;;
        "") return 1 ;;
        *) die "unknown S3_BACKEND '$b' (expected s3s-fs or moto)" ;;
    esac
    echo "$b"
}

backend_bin() {
    case "$1" in
        s3s-fs) echo "$S3S_BIN" ;;
        moto) echo "$MOTO_BIN" ;;
    esac
}

find_cargo() {
    if command -v cargo >/dev/null 2>&1; then
        command -v cargo
    elif [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        echo "$HOME/.cargo/bin/cargo"
    else
        return 1
    fi
}

install_s3s() {
    s3s_installed && return 0
    local cargo
    cargo="$(find_cargo)" || { log "cargo not found; cannot build s3s-fs"; return 1; }
    log "building s3s-fs $S3S_VERSION with cargo install (takes a few CPU-minutes, once) into $S3S_ROOT"
    local start=$SECONDS
    if ! nice -n 10 "$cargo" install s3s-fs --version "$S3S_VERSION" --locked --features binary \
            --root "$S3S_ROOT" >"$CACHE_ROOT/s3s-fs-install.log" 2>&1; then
        tail -n 30 "$CACHE_ROOT/s3s-fs-install.log" >&2 || true
        log "cargo install s3s-fs failed (full log: $CACHE_ROOT/s3s-fs-install.log)"
        return 1
    fi
    s3s_installed || { log "s3s-fs missing after cargo install"; return 1; }
    log "built $S3S_BIN in $((SECONDS - start))s"
}

install_moto() {
    moto_installed && return 0
    if [[ ! -x "$VENV/bin/pip" ]]; then
        log "creating Python venv $VENV"
        "$PYTHON" -m venv "$VENV" >&2 || { log "python venv creation failed"; return 1; }
    fi
    log "installing moto[server]==$MOTO_VERSION into $VENV"
    "$VENV/bin/pip" install -q "moto[server]==$MOTO_VERSION" >&2 || { log "pip install moto failed"; return 1; }
    moto_installed || { log "moto_server missing after pip install"; return 1; }
}

cmd_install() {
    mkdir -p "$CACHE_ROOT"
    # Serialize concurrent installs (e.g. parallel test processes).
    exec 9>"$CACHE_ROOT/s3-install.lock"
    flock 9
    local b
    case "${S3_BACKEND:-}" in
        moto)
            install_moto || die "installing moto failed"
            b=moto
            ;;
        s3s-fs)
            install_s3s || die "building s3s-fs failed"
            b=s3s-fs
            ;;
        "")
            if install_s3s; then
                b=s3s-fs
            else
                log "falling back to moto[server] $MOTO_VERSION (in-memory: objects do NOT survive a restart)"
                install_moto || die "neither s3s-fs nor moto could be installed"
                b=moto
            fi
            ;;
        *) die "unknown S3_BACKEND '$S3_BACKEND' (expected s3s-fs or moto)" ;;
    esac
    echo "$b" >"$BACKEND_FILE"
    flock -u 9
    log "backend: $b ($(backend_bin "$b"))"
    backend_bin "$b"
}

cmd_path() {
    local b
    b="$(current_backend)" || die "no S3 server installed (run: $0 install)"
    backend_bin "$b"
}

cmd_backend() {
    current_backend || die "no S3 server installed (run: $0 install)"
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
    # Guard against PID reuse: it must be the server we started for this DIR
    # (s3s-fs has DIR/root on its command line, moto gets a marker env var).
    local dir
    dir="$(dirname "$pid_file")"
    local cmdline environ
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *" $dir/root "* ]] && return 0
    environ="$(tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null)" || return 1
    [[ $'\n'"$environ"$'\n' == *$'\n'"FLOE_S3_DIR=$dir"$'\n'* ]]
}

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_start() {
    [[ $# -eq 2 || $# -eq 4 ]] || usage
    local dir="$1" port="$2" ak="${3:-$DEFAULT_AK}" sk="${4:-$DEFAULT_SK}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port '$port'"
    [[ -n "$ak" && -n "$sk" ]] || die "access key and secret key must be non-empty"
    local backend bin
    backend="$(current_backend)" || die "no S3 server installed (run: $0 install)"
    bin="$(backend_bin "$backend")"
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    local pid_file="$dir/s3.pid" log_file="$dir/s3.log"

    if pid_alive "$pid_file"; then
        if [[ "$(cat "$dir/s3.port" 2>/dev/null)" == "$port" ]]; then
            log "already running (pid $(cat "$pid_file")) on 127.0.0.1:$port"
            return 0
        fi
        die "an S3 server from $dir is already running (pid $(cat "$pid_file")) on another port; stop it first"
    fi
    rm -f "$pid_file"
    port_open "$port" && die "127.0.0.1:$port is already in use by another process"

    mkdir -p "$dir/root"
    echo "=== $(date -u +%FT%TZ) s3.sh start $backend $port ===" >>"$log_file"
    # setsid: the server must not die with (or hold on to) the caller's terminal/process group/pipes.
    case "$backend" in
        s3s-fs)
            log "starting s3s-fs $S3S_VERSION on 127.0.0.1:$port, root $dir/root (persistent), access key '$ak'"
            setsid env RUST_LOG="${S3_RUST_LOG:-s3s_fs=info,s3s=warn}" NO_COLOR=1 "$bin" \
                --host 127.0.0.1 --port "$port" \
                --access-key "$ak" --secret-key "$sk" \
                "$dir/root" \
                >>"$log_file" 2>&1 </dev/null &
            ;;
        moto)
            log "starting moto_server $MOTO_VERSION on 127.0.0.1:$port (IN-MEMORY: objects are lost on stop; credentials not checked)"
            setsid env FLOE_S3_DIR="$dir" "$bin" -H 127.0.0.1 -p "$port" \
                >>"$log_file" 2>&1 </dev/null &
            ;;
    esac
    local pid=$!
    echo "$pid" >"$pid_file"
    echo "$port" >"$dir/s3.port"
    echo "$backend" >"$dir/s3.backend"
    cat >"$dir/s3.env" <<EOF
# Environment for object_store's AmazonS3Builder::from_env() (written by s3.sh start)
AWS_ENDPOINT=http://127.0.0.1:$port
AWS_ACCESS_KEY_ID=$ak
AWS_SECRET_ACCESS_KEY=$sk
AWS_REGION=us-east-1
AWS_ALLOW_HTTP=true
EOF

    local timeout="${S3_START_TIMEOUT:-30}" start=$SECONDS t0=${EPOCHREALTIME/./}
    while ! port_open "$port"; do
        if ! running "$pid"; then
            tail -n 30 "$log_file" >&2 || true
            rm -f "$pid_file"
            die "$backend exited during startup (see $log_file)"
        fi
        if ((SECONDS - start >= timeout)); then
            tail -n 30 "$log_file" >&2 || true
            die "$backend did not open 127.0.0.1:$port within ${timeout}s (pid $pid still running; run '$0 stop $dir')"
        fi
        sleep 0.1
    done
    log "ready: http://127.0.0.1:$port (pid $pid, backend $backend, $(( (${EPOCHREALTIME/./} - t0) / 1000 ))ms)"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir="$1"
    [[ -d "$dir" ]] && dir="$(cd "$dir" && pwd)"
    local pid_file="$dir/s3.pid"
    if ! pid_alive "$pid_file"; then
        rm -f "$pid_file"
        log "not running ($dir)"
        return 0
    fi
    local pid i
    pid="$(cat "$pid_file")"
    log "stopping S3 server pid $pid"
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
    if pid_alive "$dir/s3.pid"; then
        echo "running (pid $(cat "$dir/s3.pid"), port $(cat "$dir/s3.port" 2>/dev/null), backend $(cat "$dir/s3.backend" 2>/dev/null))"
    else
        echo "stopped"
        return 1
    fi
}

# CreateBucket via a SigV4-signed PUT /BUCKET (path-style, us-east-1), Python stdlib only.
cmd_create_bucket() {
    [[ $# -eq 2 || $# -eq 4 ]] || usage
    local port="$1" bucket="$2" ak="${3:-$DEFAULT_AK}" sk="${4:-$DEFAULT_SK}"
    [[ "$port" =~ ^[0-9]+$ ]] || die "bad port '$port'"
    [[ "$bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "bad bucket name '$bucket'"
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the signed CreateBucket request)"
    log "creating bucket '$bucket' on http://127.0.0.1:$port"
    "$PYTHON" - "$port" "$bucket" "$ak" "$sk" <<'PY'
import datetime, hashlib, hmac, http.client, sys

port, bucket, ak, sk = sys.argv[1:5]
region, service = "us-east-1", "s3"
host = f"127.0.0.1:{port}"
now = datetime.datetime.now(datetime.timezone.utc)
amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
payload_hash = hashlib.sha256(b"").hexdigest()
headers = {"host": host, "x-amz-content-sha256": payload_hash, "x-amz-date": amz_date}
signed = ";".join(sorted(headers))
canonical = "\n".join(["PUT", f"/{bucket}", "",
                       "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload_hash])
scope = f"{day}/{region}/{service}/aws4_request"
to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
key = ("AWS4" + sk).encode()
for part in (day, region, service, "aws4_request"):
    key = hmac.new(key, part.encode(), hashlib.sha256).digest()
sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
headers["content-length"] = "0"
try:
    conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    conn.request("PUT", f"/{bucket}", body=b"", headers=headers)
    resp = conn.getresponse()
    body = resp.read().decode(errors="replace")
except OSError as e:
    sys.exit(f"s3.sh: CreateBucket request to {host} failed: {e}")
if resp.status == 200:
    print(f"s3.sh: bucket '{bucket}' created", file=sys.stderr)
elif resp.status == 409 and ("BucketAlreadyOwnedByYou" in body or "BucketAlreadyExists" in body):
    print(f"s3.sh: bucket '{bucket}' already exists", file=sys.stderr)
else:
    sys.exit(f"s3.sh: CreateBucket '{bucket}' failed: HTTP {resp.status} {resp.reason}\n{body}")
PY
}

case "${1:-}" in
    install) shift; cmd_install ;;
    path) shift; cmd_path ;;
    backend) shift; cmd_backend ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status "$@" ;;
    create-bucket) shift; cmd_create_bucket "$@" ;;
    *) usage ;;
esac
