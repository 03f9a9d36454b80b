#!/usr/bin/env bash
# Start a real Kubernetes control plane (no kubelet, no containers) on 127.0.0.1 for the operator's
# end-to-end tests: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK (fake nodes
# whose pods become Running/Ready and report CPU/memory usage) and metrics-server.
#
#   e2e/k8s/up.sh <state-dir>        # then: export KUBECONFIG=<state-dir>/kubeconfig
#   e2e/k8s/down.sh <state-dir>      # stops it
#
# Everything goes into <state-dir> (created if missing; must not hold a running cluster):
#   kubeconfig           admin kubeconfig (O=system:masters, certificates embedded)
#   env                  shell-sourceable: KUBECONFIG, FLOE_K8S_BIN (bin dir, has kubectl/helm/...),
#                        FLOE_K8S_APISERVER (https URL), FLOE_K8S_STATE
#   ports                shell-sourceable KEY=port lines for every listening component
#   pids                 "<component> <pid>" lines, read by down.sh
#   logs/<component>.log one log per process
#   pki/                 CA, front-proxy CA, serving/client certs, service-account key pair
#   kubeconfigs/         per-component kubeconfigs
#   etcd-data/, kwok.yaml, manifests/
# Every listener is bound to 127.0.0.1 on a port picked free at start, so concurrent runs (each
# with its own state dir) do not clash. Nothing binds or advertises another address.
#
# Environment (all optional):
#   FLOE_K8S_BIN                     use these binaries instead of calling build.sh
#   FLOE_K8S_NODES                   number of fake nodes (default 2)
#   FLOE_K8S_NODE_CPU / _MEMORY / _PODS   allocatable per node (default 32 / 256Gi / 110)
#   FLOE_K8S_HPA_SYNC_PERIOD         --horizontal-pod-autoscaler-sync-period (default 5s)
#   FLOE_K8S_HPA_DOWNSCALE_STABILIZATION  --horizontal-pod-autoscaler-downscale-stabilization (30s)
#   FLOE_K8S_METRICS_SERVER          1 (default) starts metrics-server; 0 skips it
#   FLOE_K8S_METRIC_RESOLUTION       metrics-server --metric-resolution (default 10s, its minimum)
#   FLOE_K8S_WAIT_METRICS            1 also waits until metrics.k8s.io serves the probe pod's usage
#                                    (kwok -> metrics-server -> aggregator; adds 1-2 resolutions)
#   FLOE_K8S_TIMEOUT                 seconds allowed for each readiness step (default 90)
#   FLOE_K8S_WATCH_PID               if set, a watchdog runs down.sh when that process exits (a test
#                                    process passes its own pid so a crash does not leak a cluster)
#   FLOE_K8S_ETCD_EXTRA_ARGS, FLOE_K8S_APISERVER_EXTRA_ARGS, FLOE_K8S_KCM_EXTRA_ARGS,
#   FLOE_K8S_SCHEDULER_EXTRA_ARGS, FLOE_K8S_KWOK_EXTRA_ARGS, FLOE_K8S_METRICS_SERVER_EXTRA_ARGS
#                                    extra flags, word-split, appended last
#   FLOE_K8S_KWOK_EXTRA_CONFIG       a YAML file appended to kwok's --config (more Stages,
#                                    ResourceUsage, ...)
#
# On failure: exits non-zero naming the component, prints the last 30 lines of its log and stops
# everything it started.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# -eq 1 ]] || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
mkdir -p "$1"
STATE="$(cd "$1" && pwd)"

NODES="${FLOE_K8S_NODES:-2}"
TIMEOUT="${FLOE_K8S_TIMEOUT:-90}"
METRICS_SERVER="${FLOE_K8S_METRICS_SERVER:-1}"
SERVICE_CIDR=10.96.0.0/16
SERVICE_IP=10.96.0.1 # first address of the range: the `kubernetes` Service (never contacted)

T0=$SECONDS
# A caller that stops reading our output (`up.sh 2>&1 | head`) must not kill us half-way through
# starting or cleaning up: ignore SIGPIPE and let log writes fail quietly.
trap '' PIPE
log() { echo "[k8s/up +$((SECONDS - T0))s] $*" >&2 2>/dev/null || true; }

# --- failure handling ---------------------------------------------------------------------------
COMPONENT=setup # the component the current step depends on; named in the failure message
HINT=""         # optional command whose output explains a failed step (an object's status)
OK=0
on_exit() {
    local rc=$?
    [[ $OK -eq 1 ]] && return 0
    set +e # the cleanup must finish even if reporting fails (closed stderr)
    echo "[k8s/up] FAILED (exit $rc) while waiting for: $COMPONENT" >&2
    if [[ -f "$STATE/logs/$COMPONENT.log" ]]; then
        echo "[k8s/up] last 30 lines of $STATE/logs/$COMPONENT.log:" >&2
        tail -n 30 "$STATE/logs/$COMPONENT.log" | sed 's/^/    /' >&2
    fi
    if [[ -n "$HINT" ]]; then
        echo "[k8s/up] $HINT:" >&2
        eval "$HINT" 2>&1 | sed 's/^/    /' >&2 || true
    fi
    echo "[k8s/up] stopping what was started" >&2
    "$HERE/down.sh" "$STATE" >&2 || true
    exit "$rc"
}
trap on_exit EXIT
fail() { echo "[k8s/up] ERROR ($COMPONENT): $*" >&2; exit 1; }

pid_of() { awk -v n="$1" '$1 == n { print $2 }' "$STATE/pids" 2>/dev/null | tail -n 1; }
alive() { local p; p="$(pid_of "$1")"; [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null; }

# wait_for <description> <command...>: poll (every 0.2 s) until the command succeeds; fail early
# when the component under test has exited, or after $TIMEOUT seconds.
wait_for() {
    local what="$1" deadline=$((SECONDS + TIMEOUT))
    shift
    until "$@" >/dev/null 2>&1; do
        if [[ "$(pid_of "$COMPONENT")" != "" ]] && ! alive "$COMPONENT"; then
            fail "$COMPONENT exited while waiting for $what"
        fi
        ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for $what"
        sleep 0.2
    done
    log "$what"
    HINT=""
}

# start <component> <command...>: run in the background, output to logs/<component>.log.
# stdin/stdout/stderr are all redirected so a caller capturing our output (a test's
# Command::output()) is not held open by the long-running processes, and setsid detaches it from
# the caller's process group (like e2e/scripts/etcd.sh): stopping is down.sh's job, or the
# FLOE_K8S_WATCH_PID watchdog's. (A background job of a non-interactive shell is never a process
# group leader, so setsid execs in place and $! is the component's own pid.)
start() {
    local name="$1"
    shift
    # trap - PIPE: give the component the default SIGPIPE disposition back (we ignore it above).
    (trap - PIPE; exec setsid "$@") </dev/null >"$STATE/logs/$name.log" 2>&1 &
    echo "$name $!" >>"$STATE/pids"
    COMPONENT="$name"
}

# --- preconditions ------------------------------------------------------------------------------
if [[ -s "$STATE/pids" ]]; then
    while read -r name pid; do
        if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE"; then
            OK=1 # do not tear down someone else's running cluster
            echo "[k8s/up] ERROR: $STATE already has a running $name (pid $pid); run down.sh $STATE first" >&2
            exit 1
        fi
    done <"$STATE/pids"
fi
# A fresh cluster every time: stale etcd data or certificates would mix two clusters.
rm -rf "$STATE/pki" "$STATE/kubeconfigs" "$STATE/logs" "$STATE/etcd-data" "$STATE/manifests" \
    "$STATE/pids" "$STATE/ports" "$STATE/env" "$STATE/kubeconfig" "$STATE/kwok.yaml" "$STATE"/*-certs
mkdir -p "$STATE/pki" "$STATE/kubeconfigs" "$STATE/logs" "$STATE/manifests"
: >"$STATE/pids"

if [[ -n "${FLOE_K8S_BIN:-}" ]]; then
    BIN="$FLOE_K8S_BIN"
else
    COMPONENT=build
    BIN="$("$HERE/build.sh" | tail -n 1)"
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok metrics-server; do
    [[ -x "$BIN/$b" ]] || fail "missing $BIN/$b (run e2e/k8s/build.sh)"
done
KWOK_ASSETS="$(cd "$BIN/.." && pwd)/kwok-stages"
[[ -d "$KWOK_ASSETS/stage" ]] || fail "missing $KWOK_ASSETS (kwok stages copied by build.sh)"
command -v openssl >/dev/null || fail "openssl not found"
command -v python3 >/dev/null || fail "python3 not found (used to pick free ports)"
command -v curl >/dev/null || fail "curl not found"

# --- ports --------------------------------------------------------------------------------------
# Bind port 0 on 127.0.0.1 to let the kernel pick free ports, all held at once so they differ.
COMPONENT=setup
read -r ETCD_PORT ETCD_PEER_PORT APISERVER_PORT KCM_PORT SCHEDULER_PORT KWOK_PORT METRICS_SERVER_PORT < <(
    python3 -c '
import socket
socks = [socket.socket() for _ in range(7)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
)
cat >"$STATE/ports" <<EOF
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
APISERVER_PORT=$APISERVER_PORT
KCM_PORT=$KCM_PORT
SCHEDULER_PORT=$SCHEDULER_PORT
KWOK_PORT=$KWOK_PORT
METRICS_SERVER_PORT=$METRICS_SERVER_PORT
EOF
APISERVER="https://127.0.0.1:$APISERVER_PORT"

# --- PKI ----------------------------------------------------------------------------------------
# Plain openssl, ECDSA P-256 keys (generated in milliseconds, unlike RSA on a busy 2-core box), 10
# years (test clusters only). Two CAs as in kubeadm: the cluster CA
# signs serving and client certs; the front-proxy CA signs only the aggregator's client cert, which
# extension API servers (metrics-server, an external-metrics adapter) trust via requestheader.
COMPONENT=pki
PKI="$STATE/pki"
mk_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }
mk_ca() { # name CN
    mk_key "$1"
    openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$PKI/$1.crt" 2>/dev/null
}
mk_cert() { # name ca subject extendedKeyUsage [subjectAltName]
    local name="$1" ca="$2" subj="$3" eku="$4" san="${5:-}" ext
    ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=$eku"
    [[ -n "$san" ]] && ext+=$'\n'"subjectAltName=$san"
    mk_key "$name"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" \
        -set_serial "0x$(openssl rand -hex 16)" -days 3650 -sha256 -extfile <(echo "$ext") \
        -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr"
}
mk_ca ca floe-test-ca
mk_ca front-proxy-ca floe-test-front-proxy-ca
mk_cert apiserver ca /CN=kube-apiserver serverAuth \
    "IP:127.0.0.1,IP:$SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
mk_cert admin ca "/O=system:masters/CN=kubernetes-admin" clientAuth
mk_cert controller-manager ca /CN=system:kube-controller-manager clientAuth
mk_cert scheduler ca /CN=system:kube-scheduler clientAuth
# The apiserver talks to "kubelets" (kwok) for logs/exec/port-forward with this.
mk_cert apiserver-kubelet-client ca "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
mk_cert front-proxy-client front-proxy-ca /CN=front-proxy-client clientAuth
# kwok stands in for the kubelets of many nodes and writes their node and pod status, which the Node
# authorizer would only allow per node; like kwokctl, give it cluster-admin rights.
mk_cert kwok ca "/O=system:masters/CN=kwok-controller" clientAuth
mk_cert kwok-serving ca /CN=kwok-kubelet serverAuth "IP:127.0.0.1,DNS:localhost"
mk_cert metrics-server ca /CN=system:metrics-server clientAuth
mk_cert metrics-server-serving ca /CN=metrics-server serverAuth \
    "IP:127.0.0.1,DNS:localhost,DNS:metrics-server.kube-system.svc"
# Service-account token signing key (ES256).
mk_key sa
openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
log "PKI written to $PKI"

# --- kubeconfigs --------------------------------------------------------------------------------
b64() { base64 -w0 <"$1"; }
write_kubeconfig() { # file user cert-name
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: floe-test
  cluster:
    server: $APISERVER
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$PKI/$3.crt")
    client-key-data: $(b64 "$PKI/$3.key")
contexts:
- name: floe-test
  context:
    cluster: floe-test
    user: $2
current-context: floe-test
EOF
    chmod 600 "$1"
}
write_kubeconfig "$STATE/kubeconfig" kubernetes-admin admin
write_kubeconfig "$STATE/kubeconfigs/controller-manager" system:kube-controller-manager controller-manager
write_kubeconfig "$STATE/kubeconfigs/scheduler" system:kube-scheduler scheduler
write_kubeconfig "$STATE/kubeconfigs/kwok" kwok-controller kwok
write_kubeconfig "$STATE/kubeconfigs/metrics-server" system:metrics-server metrics-server
cat >"$STATE/env" <<EOF
export KUBECONFIG=$STATE/kubeconfig
export FLOE_K8S_BIN=$BIN
export FLOE_K8S_APISERVER=$APISERVER
export FLOE_K8S_STATE=$STATE
EOF
KUBECTL=("$BIN/kubectl" --kubeconfig "$STATE/kubeconfig")
kubectl() { "${KUBECTL[@]}" "$@"; }

if [[ -n "${FLOE_K8S_WATCH_PID:-}" ]]; then
    # Runs down.sh once the watched process is gone. Its command line names the state dir so
    # down.sh recognises it as ours.
    # shellcheck disable=SC2016 # expanded by the inner bash
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" "$3"' \
        floe-k8s-watchdog "$FLOE_K8S_WATCH_PID" "$HERE/down.sh" "$STATE" \
        </dev/null >"$STATE/logs/watchdog.log" 2>&1 &
    echo "watchdog $!" >>"$STATE/pids"
fi

# --- etcd ---------------------------------------------------------------------------------------
# --unsafe-no-fsync: a throwaway test store; fsync would make every API write wait on the disk.
# shellcheck disable=SC2086 # EXTRA_ARGS are meant to be word-split
start etcd "$BIN/etcd" --name=floe-test --data-dir="$STATE/etcd-data" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="floe-test=http://127.0.0.1:$ETCD_PEER_PORT" --initial-cluster-state=new \
    --auto-compaction-retention=1 --unsafe-no-fsync=true --log-level=warn ${FLOE_K8S_ETCD_EXTRA_ARGS:-}
wait_for "etcd healthy on 127.0.0.1:$ETCD_PORT" \
    bash -c "curl -sf http://127.0.0.1:$ETCD_PORT/health | grep -q '\"health\":\"true\"'"

# --- kube-apiserver -----------------------------------------------------------------------------
# --endpoint-reconciler-type=none: the `kubernetes` Service's endpoint would be the advertise
# address, and 127.0.0.1 is rejected by Endpoints validation (loopback); nothing in this tier runs
# in-cluster clients, so the Service simply has no endpoints.
# --enable-aggregator-routing=false (the default, spelled out): an APIService whose Service is
# type ExternalName (127.0.0.1 here, as kwokctl does) is then proxied to externalName:port. With
# routing=true the apiserver resolves Services through EndpointSlices only and rejects ExternalName
# ("unsupported service type"), and EndpointSlices may not hold loopback addresses.
# shellcheck disable=SC2086
start kube-apiserver "$BIN/kube-apiserver" \
    --advertise-address=127.0.0.1 --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" --endpoint-reconciler-type=none \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP \
    --requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
    --requestheader-allowed-names=front-proxy-client \
    --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
    --requestheader-extra-headers-prefix=X-Remote-Extra- \
    --proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
    --enable-aggregator-routing=false --allow-privileged=true \
    ${FLOE_K8S_APISERVER_EXTRA_ARGS:-}
wait_for "kube-apiserver /readyz ok on $APISERVER" \
    curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER/readyz"

# --- kube-controller-manager and kube-scheduler -------------------------------------------------
# Both serve /healthz on a loopback secure port (self-signed cert in their --cert-dir).
# shellcheck disable=SC2086
start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig="$STATE/kubeconfigs/controller-manager" \
    --authentication-kubeconfig="$STATE/kubeconfigs/controller-manager" \
    --authorization-kubeconfig="$STATE/kubeconfigs/controller-manager" \
    --bind-address=127.0.0.1 --secure-port="$KCM_PORT" --cert-dir="$STATE/kcm-certs" \
    --controllers='*' --leader-elect=false --use-service-account-credentials=true \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --horizontal-pod-autoscaler-sync-period="${FLOE_K8S_HPA_SYNC_PERIOD:-5s}" \
    --horizontal-pod-autoscaler-downscale-stabilization="${FLOE_K8S_HPA_DOWNSCALE_STABILIZATION:-30s}" \
    --kube-api-qps=100 --kube-api-burst=200 \
    ${FLOE_K8S_KCM_EXTRA_ARGS:-}
# shellcheck disable=SC2086
start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig="$STATE/kubeconfigs/scheduler" \
    --authentication-kubeconfig="$STATE/kubeconfigs/scheduler" \
    --authorization-kubeconfig="$STATE/kubeconfigs/scheduler" \
    --bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --cert-dir="$STATE/scheduler-certs" \
    --leader-elect=false --kube-api-qps=100 --kube-api-burst=200 \
    ${FLOE_K8S_SCHEDULER_EXTRA_ARGS:-}
COMPONENT=kube-controller-manager
wait_for "kube-controller-manager /healthz ok on 127.0.0.1:$KCM_PORT" \
    curl -sfk "https://127.0.0.1:$KCM_PORT/healthz"
COMPONENT=kube-scheduler
wait_for "kube-scheduler /healthz ok on 127.0.0.1:$SCHEDULER_PORT" \
    curl -sfk "https://127.0.0.1:$SCHEDULER_PORT/healthz"

# --- fake nodes ---------------------------------------------------------------------------------
# Created like kwokctl's node template: the annotation kwok selects on, the resource-metrics path
# that kwok serves per node (metrics-server scrapes it instead of a kubelet), InternalIP 127.0.0.1
# (so metrics-server and the apiserver reach kwok on loopback). Nodes accept status on create.
COMPONENT=kube-apiserver
{
    for ((i = 0; i < NODES; i++)); do
        n="kwok-node-$i"
        cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $n
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
    metrics.k8s.io/resource-metrics-path: /metrics/nodes/$n/metrics/resource
  labels:
    kubernetes.io/arch: amd64
    kubernetes.io/hostname: $n
    kubernetes.io/os: linux
    kubernetes.io/role: agent
    node-role.kubernetes.io/agent: ""
    type: kwok
spec: {}
status:
  addresses:
  - type: InternalIP
    address: 127.0.0.1
  - type: Hostname
    address: $n
  allocatable:
    cpu: "${FLOE_K8S_NODE_CPU:-32}"
    memory: ${FLOE_K8S_NODE_MEMORY:-256Gi}
    pods: "${FLOE_K8S_NODE_PODS:-110}"
  capacity:
    cpu: "${FLOE_K8S_NODE_CPU:-32}"
    memory: ${FLOE_K8S_NODE_MEMORY:-256Gi}
    pods: "${FLOE_K8S_NODE_PODS:-110}"
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
EOF
    done
} >"$STATE/manifests/nodes.yaml"
kubectl create -f "$STATE/manifests/nodes.yaml" >/dev/null
log "created $NODES fake nodes"

# --- kwok ---------------------------------------------------------------------------------------
# Stages and usage objects come from kwok's own kustomize/ directory (copied by build.sh), the same
# defaults kwokctl puts into kwok.yaml: node-initialize + node-heartbeat-with-lease, pod-ready /
# pod-complete / pod-delete, the /metrics/resource Metric, and ClusterResourceUsage
# usage-from-annotation (per-pod usage from the kwok.x-k8s.io/usage-cpu and
# kwok.x-k8s.io/usage-memory annotations; default 1m CPU / 1Mi memory).
# No KwokConfiguration document on purpose: kwok 0.8 only applies its option defaults (lease and
# stage parallelism, ...) when the config file has none, and fails with zeros otherwise. Options
# are passed as flags instead.
{
    for f in stage/node/fast/node-initialize.yaml stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
        stage/pod/fast/pod-ready.yaml stage/pod/fast/pod-complete.yaml stage/pod/fast/pod-delete.yaml \
        metrics/resource/metrics-resource.yaml metrics/usage/usage-from-annotation.yaml; do
        cat "$KWOK_ASSETS/$f"
        echo "---"
    done
    if [[ -n "${FLOE_K8S_KWOK_EXTRA_CONFIG:-}" ]]; then
        cat "$FLOE_K8S_KWOK_EXTRA_CONFIG"
    fi
} >"$STATE/kwok.yaml"
# One HTTP(S) server (cmux) on 127.0.0.1:$KWOK_PORT stands in for every node's kubelet port; the
# node-initialize stage writes that port into status.daemonEndpoints.
# shellcheck disable=SC2086
start kwok "$BIN/kwok" --kubeconfig="$STATE/kubeconfigs/kwok" --config="$STATE/kwok.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --node-ip=127.0.0.1 --node-port="$KWOK_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
    --tls-cert-file="$PKI/kwok-serving.crt" --tls-private-key-file="$PKI/kwok-serving.key" \
    --node-lease-duration-seconds=40 --cidr=10.244.0.0/16 \
    ${FLOE_K8S_KWOK_EXTRA_ARGS:-}
nodes_ready() {
    local ready
    ready="$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')"
    [[ "$ready" -eq "$NODES" ]]
}
HINT="kubectl get nodes -o wide"
wait_for "$NODES nodes Ready (kwok on 127.0.0.1:$KWOK_PORT)" nodes_ready

COMPONENT=kube-controller-manager
wait_for "ServiceAccount default/default exists" kubectl get serviceaccount default -n default

# --- metrics-server -----------------------------------------------------------------------------
if [[ "$METRICS_SERVER" == 1 ]]; then
    # RBAC from metrics-server's manifests/base/rbac.yaml, bound to the user of its client cert
    # instead of a ServiceAccount. Its Service is ExternalName 127.0.0.1 with the real port (as
    # kwokctl does), so the aggregator reaches the process on loopback; the APIService trusts our CA.
    cat >"$STATE/manifests/metrics-server.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:aggregated-metrics-reader
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
rules:
- apiGroups: ["metrics.k8s.io"]
  resources: ["pods", "nodes"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: system:metrics-server
rules:
- apiGroups: [""]
  resources: ["nodes/metrics"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods", "nodes"]
  verbs: ["get", "list", "watch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: system:metrics-server
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:metrics-server}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: metrics-server:system:auth-delegator
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: metrics-server-auth-reader
  namespace: kube-system
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: system:metrics-server}
---
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
spec:
  type: ExternalName
  externalName: 127.0.0.1
  ports:
  - name: https
    port: $METRICS_SERVER_PORT
    protocol: TCP
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
spec:
  service:
    name: metrics-server
    namespace: kube-system
    port: $METRICS_SERVER_PORT
  group: metrics.k8s.io
  version: v1beta1
  caBundle: $(b64 "$PKI/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOF
    kubectl apply -f "$STATE/manifests/metrics-server.yaml" >/dev/null
    # kwok's serving cert is signed by our CA for 127.0.0.1, so kubelet TLS is verified (no
    # --kubelet-insecure-tls needed). The request timeout must stay below 90% of the resolution.
    # shellcheck disable=SC2086
    start metrics-server "$BIN/metrics-server" \
        --bind-address=127.0.0.1 --secure-port="$METRICS_SERVER_PORT" \
        --tls-cert-file="$PKI/metrics-server-serving.crt" --tls-private-key-file="$PKI/metrics-server-serving.key" \
        --kubeconfig="$STATE/kubeconfigs/metrics-server" \
        --authentication-kubeconfig="$STATE/kubeconfigs/metrics-server" \
        --authorization-kubeconfig="$STATE/kubeconfigs/metrics-server" \
        --kubelet-preferred-address-types=InternalIP --kubelet-use-node-status-port \
        --kubelet-certificate-authority="$PKI/ca.crt" \
        --metric-resolution="${FLOE_K8S_METRIC_RESOLUTION:-10s}" --kubelet-request-timeout=5s \
        ${FLOE_K8S_METRICS_SERVER_EXTRA_ARGS:-}
    apiservice_available() {
        [[ "$(kubectl get apiservice v1beta1.metrics.k8s.io \
            -o jsonpath='{.status.conditions[?(@.type=="Available")].status}')" == True ]]
    }
    HINT="kubectl get apiservice v1beta1.metrics.k8s.io -o jsonpath='{.status.conditions}'"
    wait_for "APIService v1beta1.metrics.k8s.io Available (metrics-server on 127.0.0.1:$METRICS_SERVER_PORT)" \
        apiservice_available
fi

# --- end-to-end probe ---------------------------------------------------------------------------
# A Deployment's pod must be created (controller-manager), bound (scheduler) and marked Ready
# (kwok) before tests start. The image is never pulled: no kubelet.
COMPONENT=kwok
PROBE=floe-k8s-up-probe
kubectl create deployment "$PROBE" -n default --image=registry.invalid/pause --replicas=1 >/dev/null
# (kwok reports usage only for nodes that have pods: an empty node has no metrics, by design)
HINT="kubectl get deployments,replicasets,pods -n default -o wide; kubectl get events -n default"
wait_for "probe Deployment rolled out (scheduler bound it, kwok made it Ready)" \
    kubectl rollout status "deployment/$PROBE" -n default --timeout=2s
if [[ "$METRICS_SERVER" == 1 && "${FLOE_K8S_WAIT_METRICS:-0}" == 1 ]]; then
    COMPONENT=metrics-server
    probe_metrics() { kubectl get --raw /apis/metrics.k8s.io/v1beta1/namespaces/default/pods | grep -q "\"$PROBE-"; }
    wait_for "metrics.k8s.io serves the probe pod's usage" probe_metrics
    COMPONENT=kwok
fi
kubectl delete deployment "$PROBE" -n default --wait=true >/dev/null
no_probe_pods() { [[ -z "$(kubectl get pods -n default -l "app=$PROBE" -o name)" ]]; }
wait_for "probe pods deleted" no_probe_pods

OK=1
log "control plane ready in $((SECONDS - T0)) s (state in $STATE)"
echo "export KUBECONFIG=$STATE/kubeconfig" 2>/dev/null || true
