#!/usr/bin/env bash
# Stop a control plane started by up.sh: every process listed in <state-dir>/pids, newest first
# (metrics-server and kwok before the apiserver, etcd last), SIGTERM then SIGKILL after a timeout.
#
#   e2e/k8s/down.sh <state-dir>
#
# Idempotent: a missing pids file or already-exited processes are fine. A pid is only signalled if
# its command line still names <state-dir>, so a recycled pid of an unrelated process is never hit.
# The state dir (logs, PKI, etcd data) is kept for inspection; the pids file is removed.
#
# Environment: FLOE_K8S_STOP_TIMEOUT  seconds to wait after SIGTERM (default 10)
set -euo pipefail

[[ $# -eq 1 ]] || { echo "usage: $0 <state-dir>" >&2; exit 2; }
[[ -d "$1" ]] || exit 0
STATE="$(cd "$1" && pwd)"
PIDS="$STATE/pids"
[[ -f "$PIDS" ]] || exit 0
STOP_TIMEOUT="${FLOE_K8S_STOP_TIMEOUT:-10}"
# Finish even when stderr is a closed pipe (e.g. `... 2>&1 | head`): a SIGPIPE or a failed log
# write must not stop us half-way and leave processes running.
trap '' PIPE
say() { echo "[k8s/down] $*" >&2 2>/dev/null || true; }

ours() { # pid: alive and started for this state dir
    [[ "$1" != "$$" ]] && kill -0 "$1" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$STATE"
}

# Newest first: clients stop before the apiserver, the apiserver before etcd.
mapfile -t entries < <(tac "$PIDS")
for entry in "${entries[@]}"; do
    read -r name pid <<<"$entry"
    [[ -n "${pid:-}" ]] || continue
    ours "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while ours "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if ours "$pid"; then
        say "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    say "stopped $name (pid $pid)"
done
rm -f "$PIDS"
