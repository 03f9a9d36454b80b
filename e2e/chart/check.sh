#!/usr/bin/env bash
# Check charts/floe offline: helm lint --strict and helm template | kubeconform -strict for every
# value set, no wildcard RBAC, a misspelt value rejected, the CRD examples validated against the
# real CRD schemas (with deliberately broken objects that must be rejected), and the dashboard's and
# alerts' PromQL parsed and checked against the metrics Floe exports. See README.md.
#
#   e2e/chart/check.sh          # or: make chart
#
# Environment (all optional):
#   FLOE_CACHE         cache root (default $HOME/.cache/floe)
#   FLOE_CHART_TOOLS   where helm and kubeconform come from:
#                        auto (default): e2e/k8s/build.sh when it exists, else `go install`
#                        go:             `go install` into $FLOE_CACHE/tools/bin
#                        /some/dir:      that directory
#   GO                 the go binary (default: go on PATH, else /usr/local/go/bin/go)
set -euo pipefail

# --- Versions ---------------------------------------------------------------------------------
HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.7.0
# Schemas come from this Kubernetes release's OpenAPI spec; charts render for --kube-version.
K8S_VERSION=v1.36.4
KUBE_VERSION=1.36.0
# The chart's optional Certificate and Issuer (cert-manager.io/v1) are checked against this
# release's CRDs.
CERT_MANAGER_VERSION=v1.21.2
# The chart's optional PodMonitors and PrometheusRule (monitoring.coreos.com/v1) are checked against
# this Prometheus Operator release's CRDs.
PROMETHEUS_OPERATOR_VERSION=v0.85.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/e2e/chart"
CHART="$ROOT/charts/floe"
CACHE="${FLOE_CACHE:-$HOME/.cache/floe}"
RELEASE=floe
NAMESPACE=floe-system

log() { echo "[chart] $*" >&2; }
die() {
    echo "[chart] ERROR: $*" >&2
    exit 1
}

if [[ -z "${GO:-}" ]]; then
    GO="$(command -v go || true)"
    [[ -n "$GO" ]] || GO=/usr/local/go/bin/go
fi
[[ -x "$GO" ]] || die "go not found (set GO=/path/to/go): it fetches the Kubernetes and cert-manager modules"
command -v python3 >/dev/null || die "python3 not found"

T0=$SECONDS
WORK="$(mktemp -d "${TMPDIR:-/tmp}/floe-chart.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
# Helm reads no user configuration, repositories or plugins.
export HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data"

# with_lock NAME COMMAND...: run COMMAND holding $CACHE/locks/NAME.lock, so concurrent checks
# build each cached thing once.
with_lock() {
    local name="$1"
    shift
    mkdir -p "$CACHE/locks"
    (
        flock 9
        "$@"
    ) 9>"$CACHE/locks/$name.lock"
}

# module_dir MODULE VERSION: download a Go module (through the Go module proxy, verified against
# go.sum's database) and print its directory in the module cache.
module_dir() {
    local json
    json="$(cd "$WORK" && "$GO" mod download -json "$1@$2")" ||
        die "go mod download $1@$2 failed: $json"
    python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])' <<<"$json"
}

# --- Tools ------------------------------------------------------------------------------------
# has_tool BINARY MODULE VERSION: BINARY exists and Go built it from MODULE at VERSION.
has_tool() {
    [[ -x "$1" ]] && "$GO" version -m "$1" 2>/dev/null | awk -v m="$2" -v v="$3" '
        $1 == "mod" && $2 == m && $3 == v { ok = 1 } END { exit !ok }'
}

go_install_tools() {
    local bin="$CACHE/tools/bin"
    has_tool "$bin/helm" helm.sh/helm/v3 "$HELM_VERSION" &&
        has_tool "$bin/kubeconform" github.com/yannh/kubeconform "$KUBECONFORM_VERSION" && return 0
    mkdir -p "$bin"
    # Flags as e2e/k8s/build.sh uses them, so either reuses the other's Go build cache.
    if ! has_tool "$bin/helm" helm.sh/helm/v3 "$HELM_VERSION"; then
        log "go install helm $HELM_VERSION into $bin"
        GOBIN="$bin" CGO_ENABLED=0 nice -n 10 "$GO" install -trimpath \
            -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
            "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    fi
    if ! has_tool "$bin/kubeconform" github.com/yannh/kubeconform "$KUBECONFORM_VERSION"; then
        log "go install kubeconform $KUBECONFORM_VERSION into $bin"
        GOBIN="$bin" CGO_ENABLED=0 nice -n 10 "$GO" install -trimpath -ldflags "-s -w" \
            "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
    fi
}

# tool_dir: print the directory holding helm and kubeconform at the pinned versions.
tool_dir() {
    local dir mode="${FLOE_CHART_TOOLS:-auto}"
    if [[ "$mode" == auto && -f "$ROOT/e2e/k8s/build.sh" ]]; then
        # The Kubernetes test tier's tools (helm and kubeconform among them). Its last line of
        # stdout is the bin dir; logs go to stderr.
        dir="$(bash "$ROOT/e2e/k8s/build.sh" | tail -n 1)" || die "e2e/k8s/build.sh failed"
    elif [[ "$mode" == auto || "$mode" == go ]]; then
        with_lock tools go_install_tools || die "go install of helm/kubeconform failed"
        dir="$CACHE/tools/bin"
    else
        dir="$mode"
    fi
    has_tool "$dir/helm" helm.sh/helm/v3 "$HELM_VERSION" ||
        die "$dir/helm is missing or not helm $HELM_VERSION"
    has_tool "$dir/kubeconform" github.com/yannh/kubeconform "$KUBECONFORM_VERSION" ||
        die "$dir/kubeconform is missing or not kubeconform $KUBECONFORM_VERSION"
    echo "$dir"
}

# yaml2json: the small Go converter next to this script, built once per source version.
yaml2json_bin() {
    local hash out
    hash="$(cat "$HERE"/yaml2json/{main.go,go.mod,go.sum} | sha256sum | cut -c1-16)"
    out="$CACHE/tools/yaml2json-$hash/yaml2json"
    if [[ ! -x "$out" ]]; then
        log "building yaml2json into $out"
        mkdir -p "$(dirname "$out")"
        (cd "$HERE/yaml2json" && CGO_ENABLED=0 "$GO" build -trimpath -o "$out.tmp" .) || die "building yaml2json failed"
        mv "$out.tmp" "$out"
    fi
    echo "$out"
}

# --- Schemas ----------------------------------------------------------------------------------
# A cached schema directory is complete when its .complete stamp holds the hash of the generator
# (and of any input named in $2), so a changed schemas.py regenerates it.
stamp_of() { cat "$HERE/schemas.py" "$@" | sha256sum | cut -c1-16; }

# k8s_schemas: kubeconform's "standalone-strict" schemas for $K8S_VERSION, from the swagger.json in
# the k8s.io/kubernetes module (no GitHub download).
K8S_SCHEMAS="$CACHE/kubeconform-schemas/$K8S_VERSION-standalone-strict"
make_k8s_schemas() {
    local stamp
    stamp="$(stamp_of)"
    [[ -f "$K8S_SCHEMAS/.complete" && "$(cat "$K8S_SCHEMAS/.complete")" == "$stamp" ]] && return 0
    local swagger
    swagger="$(module_dir k8s.io/kubernetes "$K8S_VERSION")/api/openapi-spec/swagger.json"
    [[ -f "$swagger" ]] || die "no $swagger"
    log "generating Kubernetes $K8S_VERSION schemas from $swagger"
    rm -rf "$K8S_SCHEMAS.tmp" "$K8S_SCHEMAS"
    python3 "$HERE/schemas.py" k8s "$swagger" "$K8S_SCHEMAS.tmp" >&2
    echo "$stamp" >"$K8S_SCHEMAS.tmp/.complete"
    mv "$K8S_SCHEMAS.tmp" "$K8S_SCHEMAS"
}

# cert-manager's CRDs (deploy/crds in its Go module) as CRDs-catalog schemas.
CM_SCHEMAS="$CACHE/kubeconform-schemas/cert-manager-$CERT_MANAGER_VERSION"
make_cert_manager_schemas() {
    local stamp
    stamp="$(stamp_of "$K8S_SCHEMAS/.complete")"
    [[ -f "$CM_SCHEMAS/.complete" && "$(cat "$CM_SCHEMAS/.complete")" == "$stamp" ]] && return 0
    local crds
    crds="$(module_dir github.com/cert-manager/cert-manager "$CERT_MANAGER_VERSION")/deploy/crds"
    compgen -G "$crds/*.yaml" >/dev/null || die "no CRDs in $crds"
    log "generating cert-manager $CERT_MANAGER_VERSION schemas from $crds"
    rm -rf "$CM_SCHEMAS.tmp" "$CM_SCHEMAS"
    "$YAML2JSON" "$crds"/*.yaml |
        python3 "$HERE/schemas.py" crd "$CM_SCHEMAS.tmp" "$K8S_SCHEMAS/configmap-v1.json" >&2
    echo "$stamp" >"$CM_SCHEMAS.tmp/.complete"
    mv "$CM_SCHEMAS.tmp" "$CM_SCHEMAS"
}

# The Prometheus Operator's PodMonitor, ServiceMonitor and PrometheusRule CRDs
# (example/prometheus-operator-crd in its Go module), as CRDs-catalog schemas.
PO_SCHEMAS="$CACHE/kubeconform-schemas/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
make_prometheus_operator_schemas() {
    local stamp
    stamp="$(stamp_of "$K8S_SCHEMAS/.complete")"
    [[ -f "$PO_SCHEMAS/.complete" && "$(cat "$PO_SCHEMAS/.complete")" == "$stamp" ]] && return 0
    local crds f
    crds="$(module_dir github.com/prometheus-operator/prometheus-operator "$PROMETHEUS_OPERATOR_VERSION")/example/prometheus-operator-crd"
    local files=()
    for f in podmonitors servicemonitors prometheusrules; do
        [[ -f "$crds/monitoring.coreos.com_$f.yaml" ]] || die "no $crds/monitoring.coreos.com_$f.yaml"
        files+=("$crds/monitoring.coreos.com_$f.yaml")
    done
    log "generating Prometheus Operator $PROMETHEUS_OPERATOR_VERSION schemas from $crds"
    rm -rf "$PO_SCHEMAS.tmp" "$PO_SCHEMAS"
    "$YAML2JSON" "${files[@]}" |
        python3 "$HERE/schemas.py" crd "$PO_SCHEMAS.tmp" "$K8S_SCHEMAS/configmap-v1.json" >&2
    echo "$stamp" >"$PO_SCHEMAS.tmp/.complete"
    mv "$PO_SCHEMAS.tmp" "$PO_SCHEMAS"
}

# --- PromQL parser ----------------------------------------------------------------------------
# promql_python: print a Python that has promql-parser at the version e2e/python/requirements.txt
# pins: the e2e venv, which `make deps` fills from that file; when the venv lacks it (a chart-only
# run), pip installs that one package (a prebuilt wheel) into it.
VENV="$CACHE/venv"
promql_python() {
    local want py="$VENV/bin/python"
    want="$(sed -n 's/^promql-parser==\([^ #]*\).*/\1/p' "$ROOT/e2e/python/requirements.txt")"
    [[ -n "$want" ]] || die "no promql-parser==VERSION line in e2e/python/requirements.txt"
    if ! "$py" -c "import importlib.metadata as m, promql_parser, sys; sys.exit(m.version('promql-parser') != '$want')" 2>/dev/null; then
        if [[ ! -x "$py" ]]; then
            log "creating Python venv $VENV"
            python3 -m venv "$VENV" >&2 || die "python3 -m venv $VENV failed (Debian: apt-get install python3-venv)"
        fi
        log "pip install promql-parser==$want into $VENV"
        "$py" -m pip install -q --disable-pip-version-check "promql-parser==$want" >&2 ||
            die "pip install promql-parser==$want into $VENV failed"
    fi
    echo "$py"
}

# --- Checks -----------------------------------------------------------------------------------
FAILED=()
SUMMARY=()
pass() { SUMMARY+=("PASS  $*"); }
failed() {
    SUMMARY+=("FAIL  $*")
    FAILED+=("$*")
}

BIN="$(tool_dir)"
HELM="$BIN/helm"
KUBECONFORM="$BIN/kubeconform"
YAML2JSON="$(yaml2json_bin)"
with_lock schemas make_k8s_schemas
with_lock schemas make_cert_manager_schemas
with_lock schemas make_prometheus_operator_schemas
PROMQL_PY="$(with_lock venv promql_python)"
FLOE_SCHEMAS="$WORK/floe-schemas"
"$YAML2JSON" "$ROOT"/crds/*.yaml |
    python3 "$HERE/schemas.py" crd "$FLOE_SCHEMAS" "$K8S_SCHEMAS/configmap-v1.json" >/dev/null ||
    die "generating schemas from crds/*.yaml failed"
log "helm $HELM_VERSION and kubeconform $KUBECONFORM_VERSION from $BIN; schemas ready in $((SECONDS - T0)) s"

# Each value set: a label, then helm arguments (no spaces inside an argument).
CASES=(
    "defaults|"
    "etcd-3|--set etcd.enabled=true,etcd.replicas=3"
    "etcd-1|--set etcd.enabled=true"
    "cert-manager|--set metricsApi.certManager.enabled=true"
    "cert-manager-issuer|--set metricsApi.certManager.enabled=true,metricsApi.certManager.issuerRef.name=my-ca,metricsApi.certManager.issuerRef.kind=ClusterIssuer"
    "replicas-2|--set replicaCount=2"
    "no-metrics-api|--set metricsApi.enabled=false"
    "external-crds-and-sa|--set crds.enabled=false,serviceAccount.create=false,serviceAccount.name=existing,leaderElection.enabled=true"
)
for f in "$CHART"/ci/*.yaml; do CASES+=("ci-$(basename "$f" .yaml)|-f $f"); done

KC_LOCATIONS=(
    -schema-location "$K8S_SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json"
    -schema-location "$FLOE_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
    -schema-location "$CM_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
    -schema-location "$PO_SCHEMAS/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"
)
kubeconform_json() { "$KUBECONFORM" -strict -summary -verbose -output json "${KC_LOCATIONS[@]}" "$@"; }

# 1. helm lint --strict and helm template, per value set (in parallel: each helm is one process).
mkdir -p "$WORK/rendered" "$WORK/log"
run_case() { # label args...
    local label="$1"
    shift
    "$HELM" lint "$CHART" --strict "$@" >"$WORK/log/$label.lint" 2>&1 || echo "$?" >"$WORK/log/$label.lint-failed"
    "$HELM" template "$RELEASE" "$CHART" -n "$NAMESPACE" --kube-version "$KUBE_VERSION" "$@" \
        >"$WORK/rendered/$label.yaml" 2>"$WORK/log/$label.template" || echo "$?" >"$WORK/log/$label.template-failed"
}
pids=()
for case in "${CASES[@]}"; do
    read -r -a args <<<"${case#*|}"
    run_case "${case%%|*}" "${args[@]}" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
RENDERED=()
lint_failed=0 template_failed=0
for case in "${CASES[@]}"; do
    label="${case%%|*}" set_args="${case#*|}"
    if [[ -f "$WORK/log/$label.lint-failed" ]]; then
        cat "$WORK/log/$label.lint" >&2
        failed "helm lint --strict [$label] $set_args"
        lint_failed=$((lint_failed + 1))
    fi
    if [[ -f "$WORK/log/$label.template-failed" ]]; then
        cat "$WORK/log/$label.template" >&2
        failed "helm template [$label] $set_args"
        template_failed=$((template_failed + 1))
    else
        RENDERED+=("$WORK/rendered/$label.yaml")
    fi
done
[[ $lint_failed -eq 0 ]] && pass "helm lint --strict: ${#CASES[@]} value sets"
[[ $template_failed -eq 0 ]] && pass "helm template --kube-version $KUBE_VERSION: ${#CASES[@]} value sets"

# 2. kubeconform -strict over every rendering; nothing may be skipped or miss a schema.
if [[ ${#RENDERED[@]} -gt 0 ]]; then
    kubeconform_json "${RENDERED[@]}" >"$WORK/kc.json" || true
    if msg="$(python3 "$HERE/verdict.py" valid "${RENDERED[@]}" <"$WORK/kc.json")"; then
        pass "kubeconform -strict (renderings): $msg"
    else
        failed "kubeconform -strict of the rendered chart"
    fi
fi

# 3. No wildcard RBAC in any rendering.
if [[ ${#RENDERED[@]} -gt 0 ]] && msg="$(python3 "$HERE/verdict.py" rbac "$YAML2JSON" "${RENDERED[@]}")"; then
    pass "RBAC: $msg"
else
    failed "RBAC without wildcards"
fi

# 4. A misspelt value must be rejected (values.schema.json closes every object).
typo_ok=1
for cmd in lint template; do
    if [[ $cmd == lint ]]; then
        set -- "$HELM" lint "$CHART" --strict --set replicaCont=2
    else
        set -- "$HELM" template "$RELEASE" "$CHART" --kube-version "$KUBE_VERSION" --set replicaCont=2
    fi
    if out="$("$@" 2>&1)"; then
        echo "[chart] helm $cmd accepted --set replicaCont=2" >&2
        typo_ok=0
    elif ! grep -q replicaCont <<<"$out"; then
        echo "$out" >&2
        echo "[chart] helm $cmd failed on --set replicaCont=2, but not because of the typo" >&2
        typo_ok=0
    fi
done
if [[ $typo_ok -eq 1 ]]; then
    pass "misspelt value (--set replicaCont=2) rejected by helm lint and helm template"
else
    failed "misspelt value (--set replicaCont=2) must be rejected"
fi

# 5. The CRD examples are valid; each deliberately broken object is rejected for its reason.
EXAMPLES=("$CHART"/examples/*.yaml)
kubeconform_json "${EXAMPLES[@]}" >"$WORK/examples.json" || true
if msg="$(python3 "$HERE/verdict.py" valid "${EXAMPLES[@]}" <"$WORK/examples.json")"; then
    pass "kubeconform -strict (charts/floe/examples): $msg"
else
    failed "kubeconform -strict of charts/floe/examples"
fi
REJECTS=("$HERE"/reject/*.yaml)
kubeconform_json "${REJECTS[@]}" >"$WORK/reject.json" || true
if msg="$(python3 "$HERE/verdict.py" reject "${REJECTS[@]}" <"$WORK/reject.json")"; then
    pass "kubeconform -strict rejects all ${#REJECTS[@]} broken objects in e2e/chart/reject:"
    SUMMARY+=("$msg")
else
    failed "kubeconform -strict must reject every file in e2e/chart/reject"
fi

# 6. The dashboard and the alerts: every PromQL expression parses (promql-parser), and names only
# metrics the agent or the operator exports (read from the Rust sources); the dashboard, the
# PrometheusRule and the PodMonitors are well-formed. The self-test first proves the check rejects
# an unknown metric and a syntax error. The rendering is ci/monitoring-values.yaml's, from step 1.
MONITORING_RENDERING="$WORK/rendered/ci-monitoring-values.yaml"
if msg="$("$PROMQL_PY" "$HERE/monitoring.py" self-test "$ROOT")"; then
    pass "monitoring.py $msg"
else
    failed "monitoring.py self-test: the PromQL check must reject unknown metrics and syntax errors"
fi
if [[ ! -f "$MONITORING_RENDERING" ]]; then
    failed "no rendering of charts/floe/ci/monitoring-values.yaml (see step 1)"
elif msg="$("$PROMQL_PY" "$HERE/monitoring.py" check "$ROOT" "$YAML2JSON" "$MONITORING_RENDERING")"; then
    pass "dashboard and alerts (ci/monitoring-values.yaml): $msg"
else
    failed "dashboard and alert queries must parse and name only exported metrics"
fi

echo
printf '%s\n' "${SUMMARY[@]}"
if [[ ${#FAILED[@]} -gt 0 ]]; then
    echo
    echo "make chart: ${#FAILED[@]} check(s) FAILED in $((SECONDS - T0)) s (details above):" >&2
    printf '  - %s\n' "${FAILED[@]}" >&2
    exit 1
fi
echo "make chart: all checks passed in $((SECONDS - T0)) s"
