#!/usr/bin/env bash
# Build (once) the binaries of the kubelet-less Kubernetes test tier and print their directory.
#
#   e2e/k8s/build.sh            # prints the bin dir as the LAST line of stdout; logs go to stderr
#
# Everything is built from Go modules (the only thing reachable here besides package registries):
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  from k8s.io/kubernetes
#   etcd                                                             from go.etcd.io/etcd/server/v3
#   kwok, metrics-server, helm, kubeconform                          with `go install`
# into ${FLOE_CACHE:-$HOME/.cache/floe}/k8s/<version-key>/bin. The key names every version below,
# so changing one builds a fresh directory; an existing complete directory (stamp present) makes
# this script exit in well under a second. A flock serialises concurrent callers, so two test
# processes starting together build once.
#
# Environment (all optional):
#   FLOE_CACHE              cache root (default $HOME/.cache/floe)
#   FLOE_K8S_BUILD_JOBS     go build -p (default 2: this is a 2-core machine and each compile of
#                           the big Kubernetes packages takes ~1 GB)
#   FLOE_K8S_GOMEMLIMIT     soft memory limit per Go compiler/linker process (default 2500MiB)
#   GO                      the go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# Cold run ~22 min on 2 cores (see README.md); warm run well under a second.
set -euo pipefail

# --- Versions --------------------------------------------------------------------------------
# k8s.io/kubernetes v1.36.5 is listed by the proxy but its go.mod checksum is not in the checksum
# database we can reach (sum.golang.org lookup 404), so v1.36.4 is the newest verifiable 1.36.
K8S_VERSION=v1.36.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
METRICS_SERVER_VERSION=v0.9.0
HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
# Bump when the build recipe (flags, layout, copied assets) changes so old caches are not reused.
RECIPE=1

STAGING_VERSION="v0${K8S_VERSION#v1}" # v1.36.4 -> v0.36.4: the staging modules' tag
K8S_MAJOR=1
K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"

CACHE="${FLOE_CACHE:-$HOME/.cache/floe}"
KEY="k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}-ms-${METRICS_SERVER_VERSION}-helm-${HELM_VERSION}-kc-${KUBECONFORM_VERSION}-r${RECIPE}"
ROOT="$CACHE/k8s/$KEY"
BIN="$ROOT/bin"
STAMP="$BIN/.complete"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok metrics-server helm kubeconform)

log() { echo "[k8s/build] $*" >&2; }
die() { echo "[k8s/build] ERROR: $*" >&2; exit 1; }

complete() {
    [[ -f "$STAMP" ]] || return 1
    local b
    for b in "${BINARIES[@]}"; do [[ -x "$BIN/$b" ]] || return 1; done
    # kwok's stage definitions are copied next to the binaries (up.sh applies them).
    [[ -d "$ROOT/kwok-stages" ]] || return 1
}

# Fast path without the lock: a finished build is never modified again.
if complete; then
    echo "$BIN"
    exit 0
fi

if [[ -z "${GO:-}" ]]; then
    GO="$(command -v go || true)"
    [[ -n "$GO" ]] || GO=/usr/local/go/bin/go
fi
[[ -x "$GO" ]] || die "go not found (set GO=/path/to/go); Go 1.26+ is needed for Kubernetes 1.36"

mkdir -p "$CACHE/k8s"
exec 9>"$CACHE/k8s/$KEY.lock"
if ! flock -n 9; then
    log "another build.sh holds $CACHE/k8s/$KEY.lock; waiting for it"
    flock 9
fi
if complete; then # the other caller finished it
    echo "$BIN"
    exit 0
fi

T0=$SECONDS
mkdir -p "$BIN" "$ROOT/src"
JOBS="${FLOE_K8S_BUILD_JOBS:-2}"
# Stay friendly to the other work on the machine (Rust builds): lower priority, bounded
# parallelism, and a soft heap limit on each compiler so peak RSS stays a few GB.
export GOMEMLIMIT="${FLOE_K8S_GOMEMLIMIT:-2500MiB}"
export CGO_ENABLED=0
# The default GOPATH/GOMODCACHE/GOCACHE are kept on purpose: a second build (e.g. after a recipe
# bump) reuses the module downloads and compiled packages.
GO_RUN=(nice -n 10 "$GO")
log "Go: $("$GO" version); building into $BIN (jobs=$JOBS, GOMEMLIMIT=$GOMEMLIMIT)"

# Each part has its own marker so an interrupted build resumes where it stopped.
done_marker() { echo "$ROOT/.done-$1"; }

# --- 1. Kubernetes -------------------------------------------------------------------------
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the 33 staging modules
# (k8s.io/api, k8s.io/client-go, ...) with ./staging/... directories, and replace directives are
# only honoured in the main module. So a wrapper main module requires k8s.io/kubernetes and maps
# every staging module to its published v0.X.Y tag.
build_kubernetes() {
    local t=$SECONDS dir="$ROOT/src/kubernetes"
    log "kubernetes $K8S_VERSION: downloading the module"
    local kmod
    kmod="$("$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')"
    [[ -f "$kmod" ]] || die "could not download k8s.io/kubernetes@$K8S_VERSION (no go.mod)"
    local staging
    staging="$(sed -n 's#^\s*\(k8s\.io/[a-z0-9.-]*\) => \./staging/.*#\1#p' "$kmod")"
    local n
    n="$(echo "$staging" | grep -c .)"
    [[ "$n" -ge 20 ]] || die "found only $n staging replaces in $kmod"
    mkdir -p "$dir"
    {
        echo "// Generated by e2e/k8s/build.sh: builds Kubernetes $K8S_VERSION binaries from the module proxy."
        echo "module floe.local/k8s-build"
        echo
        echo "go $("$GO" env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        local m
        for m in $staging; do echo "	$m => $m $STAGING_VERSION"; done
        echo ")"
    } >"$dir/go.mod"
    log "kubernetes: wrapper module with $n staging replaces ($STAGING_VERSION); resolving dependencies"
    local pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    # `go get` on the packages fills go.sum (and any requirement the graph needs) for exactly them.
    # The explicit @version matters: a bare `go get pkg` means @upgrade and would move
    # k8s.io/kubernetes to the newest minor (whose imports the v0.36 staging modules lack).
    (cd "$dir" && "${GO_RUN[@]}" get "${pkgs[@]/%/@$K8S_VERSION}")
    grep -Eq "k8s.io/kubernetes $K8S_VERSION( |$)" "$dir/go.mod" || die "go get moved k8s.io/kubernetes off $K8S_VERSION"
    # The same ldflags hack/lib/version.sh sets; without them the binaries say v0.0.0 and the
    # apiserver's compatibility version logic misbehaves.
    local ld="-s -w" key val
    local build_date
    build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    for kv in "gitVersion=$K8S_VERSION" "gitMajor=$K8S_MAJOR" "gitMinor=$K8S_MINOR" \
        "gitTreeState=clean" "buildDate=$build_date"; do
        key="${kv%%=*}" val="${kv#*=}"
        ld+=" -X k8s.io/component-base/version.$key=$val -X k8s.io/client-go/pkg/version.$key=$val"
    done
    log "kubernetes: go build (one invocation for all four, so shared packages compile once)"
    # Tags as in hack/lib/golang.sh for release builds.
    (cd "$dir" && "${GO_RUN[@]}" build -p "$JOBS" -trimpath -tags selinux,notest,grpcnotrace \
        -ldflags "$ld" -o "$BIN/" "${pkgs[@]}")
    local v
    v="$("$BIN/kube-apiserver" --version)"
    [[ "$v" == "Kubernetes $K8S_VERSION" ]] || die "kube-apiserver reports '$v', expected 'Kubernetes $K8S_VERSION'"
    log "kubernetes: built in $((SECONDS - t)) s ($v)"
}

# --- 2. etcd -------------------------------------------------------------------------------
# go.etcd.io/etcd/server/v3's module root is `package main` (the etcd binary) but its go.mod has
# replace directives (../api etc.), so `go install` refuses it; a wrapper requires it instead. The
# version is a constant in go.etcd.io/etcd/api/v3/version, so no ldflags are needed.
build_etcd() {
    local t=$SECONDS dir="$ROOT/src/etcd"
    mkdir -p "$dir"
    cat >"$dir/go.mod" <<EOF
// Generated by e2e/k8s/build.sh: builds etcd $ETCD_VERSION from the module proxy.
module floe.local/etcd-build

go 1.24

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
    (cd "$dir" && "${GO_RUN[@]}" get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" &&
        "${GO_RUN[@]}" build -p "$JOBS" -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
    # Read the whole output first: `etcd --version | grep -q` fails under pipefail when grep exits
    # at the first line and etcd dies of SIGPIPE writing the next.
    local reported
    reported=$("$BIN/etcd" --version)
    grep -q "etcd Version: ${ETCD_VERSION#v}" <<<"$reported" || die "etcd reports: $reported"
    log "etcd: built in $((SECONDS - t)) s"
}

# --- 3. Plain `go install`s -----------------------------------------------------------------
go_install() { # name pkg@version [ldflags]
    local t=$SECONDS
    GOBIN="$BIN" "${GO_RUN[@]}" install -p "$JOBS" -trimpath -ldflags "-s -w ${3:-}" "$2"
    log "$1: installed in $((SECONDS - t)) s"
}

# kwok 0.8 ships its Stage definitions (how fake nodes/pods move through their lifecycle) and the
# resource-usage objects (per-pod CPU/memory from annotations, served on kwok's metrics endpoint)
# as YAML in the module; up.sh applies them. Copy them next to the binaries so up.sh does not
# depend on the module cache.
copy_kwok_assets() {
    local src
    src="$("$GO" mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')"
    [[ -d "$src/kustomize/stage" ]] || die "kwok module has no kustomize/stage ($src)"
    rm -rf "$ROOT/kwok-stages.tmp"
    mkdir -p "$ROOT/kwok-stages.tmp"
    # stage/ (node and pod lifecycles), metrics/ (usage-from-annotation, resource metrics
    # endpoint), crd/ (Stage, Metric, ClusterResourceUsage, ... definitions).
    cp -r "$src/kustomize/." "$ROOT/kwok-stages.tmp/"
    chmod -R u+w "$ROOT/kwok-stages.tmp"
    rm -rf "$ROOT/kwok-stages"
    mv "$ROOT/kwok-stages.tmp" "$ROOT/kwok-stages"
}

run_part() { # name function
    if [[ -f "$(done_marker "$1")" ]]; then
        log "$1: already built"
        return 0
    fi
    "$2"
    touch "$(done_marker "$1")"
}

# kwok's version is a source constant; the others report "development"/v0.0.0-ish without the
# ldflags their release builds set.
part_kwok() { go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"; copy_kwok_assets; }
part_metrics_server() { go_install metrics-server "sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION" \
    "-X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION"; }
part_helm() { go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"; }
part_kubeconform() { go_install kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" \
    "-X main.version=$KUBECONFORM_VERSION"; }

# Small ones first: a failure in them shows up before the 20-minute Kubernetes build.
run_part etcd build_etcd
run_part kwok part_kwok
run_part metrics-server part_metrics_server
run_part helm part_helm
run_part kubeconform part_kubeconform
run_part kubernetes build_kubernetes

{
    echo "kubernetes $K8S_VERSION (staging $STAGING_VERSION)"
    echo "etcd $ETCD_VERSION"
    echo "kwok $KWOK_VERSION"
    echo "metrics-server $METRICS_SERVER_VERSION"
    echo "helm $HELM_VERSION"
    echo "kubeconform $KUBECONFORM_VERSION"
    echo "go $("$GO" env GOVERSION)"
    echo "finished $(date -u +%Y-%m-%dT%H:%M:%SZ); this run took $((SECONDS - T0)) s"
} >"$BIN/.versions"
touch "$STAMP"
log "done in $((SECONDS - T0)) s: $BIN"
echo "$BIN"
