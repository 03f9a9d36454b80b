#!/usr/bin/env python3
"""Check the chart's Grafana dashboard and Prometheus alerts (monitoring.* values) offline.

    monitoring.py check ROOT YAML2JSON RENDERING [--list]
        RENDERING is `helm template` of charts/floe with the dashboard, the PrometheusRule and the
        PodMonitors enabled (charts/floe/ci/monitoring-values.yaml). Checks:
        - every PromQL expression (dashboard panel targets, the dashboard's query variables,
          PrometheusRule `expr`s) parses with promql-parser (GreptimeTeam's Rust PromQL parser,
          which also type-checks function arguments), after Grafana's variables are replaced by
          the values the dashboard itself defines;
        - every metric an expression selects (read from the parser's AST: vector selectors' names
          and `__name__="..."` matchers) is one the agent or the operator exports, as found in
          the Rust sources (ROOT/{agent,operator,meta}/src): names given to the prometheus crate's
          constructors, plus _bucket/_sum/_count for histograms (never the bare histogram name);
        - the dashboard: the ConfigMap holds charts/floe/dashboards/floe-overview.json unchanged;
          schemaVersion 39; a `datasource` variable (type datasource, prometheus) that every
          panel and target uses; unique panel ids; every panel has a query; no external assets
          (no http(s) URL anywhere, no __inputs/__requires);
        - the PrometheusRule (kubeconform already validates it against the Prometheus Operator's
          CRD): unique group and alert names, each rule an alert with a `for` that parses as a
          duration, a `severity` label, `summary` and `description` annotations, and an
          expression that returns an instant vector or a scalar;
        - the PodMonitors: the agents' selects only labels the operator puts on agent pods
          (operator/src/labels.rs) on a container port it declares (agent_pool/build.rs); the
          operator's selects the operator Deployment's pod labels on one of its container ports;
          both scrape /metrics.
        With --list, also prints the metrics each panel and alert uses.

    monitoring.py self-test ROOT
        The checks above must reject an expression naming floe_no_such_metric_total, one with a
        syntax error, a bare histogram name, an unknown Grafana variable, and a dashboard and a
        PrometheusRule carrying such expressions; and accept good ones.

Needs promql-parser (pinned in e2e/python/requirements.txt; check.sh provides it). Exit 1 on a
failure, with one line per problem naming the file, the panel or alert, the expression and the
missing metric.
"""
import importlib.metadata
import json
import os
import re
import subprocess
import sys

try:
    import promql_parser
except ImportError:  # pragma: no cover - reported, not tested
    sys.exit("monitoring.py: the Python package promql-parser is missing (pip install -r e2e/python/requirements.txt)")

DASHBOARD_FILE = "charts/floe/dashboards/floe-overview.json"
RULE_TEMPLATE = "charts/floe/templates/monitoring/prometheusrule.yaml"
SOURCE_DIRS = ("agent/src", "operator/src", "meta/src")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")

# Values for Grafana's built-in variables while parsing (any valid duration would do).
GRAFANA_BUILTINS = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "6h",
    "__range_s": "21600",
    "__range_ms": "21600000",
    "__interval_ms": "60000",
}
# $name, ${name}, ${name:format}, [[name]] (Grafana's variable syntaxes).
GRAFANA_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


# --- What the agent and the operator export ----------------------------------------------------
def rust_files(root):
    for top in SOURCE_DIRS:
        for directory, _, files in os.walk(os.path.join(root, top)):
            for name in sorted(files):
                if name.endswith(".rs"):
                    yield os.path.join(directory, name)


def exported_metrics(root):
    """{series name: (defining file, metric name)} of every series the agent and operator
    export. A metric is a name passed as the first argument of a prometheus-crate constructor
    (Opts::new, HistogramOpts::new, IntCounter::new, Gauge::new, ...) or of a local helper that
    builds HistogramOpts (agent/src/metrics.rs's `latency`). Histograms export name_bucket,
    name_sum and name_count, and nothing under the bare name."""
    sources = {path: open(path, encoding="utf-8").read() for path in rust_files(root)}
    histogram_helpers = set()
    for text in sources.values():
        histogram_helpers.update(re.findall(r"let\s+(\w+)\s*=\s*\|[^|]*\|\s*HistogramOpts::new\(", text))
        histogram_helpers.update(re.findall(r"fn\s+(\w+)\s*\([^)]*\)\s*->\s*HistogramOpts\b", text))
    plain = r"(?:Opts|(?:Int)?Counter|(?:Int)?Gauge)::new|register_(?:int_)?(?:counter|gauge)(?:_vec)?!"
    histogram = r"HistogramOpts::new|register_histogram(?:_vec)?!" + "".join(
        rf"|\b{re.escape(h)}" for h in sorted(histogram_helpers)
    )
    call = re.compile(rf"(?:(?P<hist>{histogram})|(?P<plain>{plain}))\(\s*\"(?P<name>[^\"]+)\"")
    series = {}
    for path, text in sources.items():
        rel = os.path.relpath(path, root)
        for m in call.finditer(text):
            name = m.group("name")
            if not METRIC_NAME.match(name):
                continue
            names = [name + s for s in HISTOGRAM_SUFFIXES] if m.group("hist") else [name]
            for s in names:
                series[s] = (rel, name)
        # A namespace or subsystem would prefix the names; this extraction does not model it.
        if re.search(r"\.(namespace|subsystem)\(\s*\"", text) and call.search(text):
            raise SystemExit(f"monitoring.py: {rel} sets a metric namespace/subsystem; teach exported_metrics() about it")
    return series


# --- PromQL ------------------------------------------------------------------------------------
def selected_metrics(ast):
    """(metric names, problems) of every vector selector in a parsed expression."""
    names, problems = [], []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers + [m for group in node.matchers.or_matchers for m in group]
            by_name = [m for m in matchers if m.name == "__name__"]
            if node.name:
                names.append(node.name)
            elif by_name and all(m.op == promql_parser.MatchOp.Equal for m in by_name):
                names.extend(m.value for m in by_name)
            else:
                problems.append(f"selector {node} names no metric literally (a __name__ regex cannot be checked)")
        return True

    promql_parser.walk(ast, pre_visit=visit)
    return names, problems


def check_expr(expr, where, exported, *, alert=False, shown=None):
    """Problems with one PromQL expression (an empty list when it is fine), and the metrics it
    uses. `shown` is the expression as written (before Grafana's variables were replaced), for
    the messages."""
    shown = shown or expr
    try:
        ast = promql_parser.parse(expr)
    except Exception as error:  # the parser raises ValueError with the reason
        return [f"{where}: PromQL syntax error: {error}: {shown!r}"], []
    names, problems = selected_metrics(ast)
    problems = [f"{where}: {p}: {shown!r}" for p in problems]
    for name in names:
        if name not in exported:
            hint = ""
            if name + "_bucket" in exported:
                hint = f" ({name} is a histogram: use {name}_bucket, _sum or _count)"
            problems.append(
                f"{where}: metric {name} is not exported by the agent or the operator{hint}: {shown!r}"
            )
    if alert:
        top = ast
        while isinstance(top, promql_parser.ParenExpr):
            top = top.expr
        if isinstance(top, (promql_parser.MatrixSelector, promql_parser.SubqueryExpr, promql_parser.StringLiteral)):
            problems.append(f"{where}: an alert expression must return an instant vector or a scalar: {shown!r}")
    return problems, sorted(set(names))


# --- Grafana dashboard -------------------------------------------------------------------------
def variable_values(dashboard):
    """Grafana variable -> the text that stands for it while parsing: the dashboard's own value
    for textbox/constant/custom variables, `.*` (the All value) for query variables."""
    values = dict(GRAFANA_BUILTINS)
    for var in dashboard.get("templating", {}).get("list", []):
        kind, name = var.get("type"), var.get("name")
        if kind == "datasource":
            continue  # only ever a panel's datasource uid, never inside an expression
        if kind == "query":
            values[name] = var.get("allValue") or ".*"
        elif kind in ("textbox", "constant"):
            values[name] = str(var.get("query", ""))
        elif kind == "custom":
            values[name] = str((var.get("current") or {}).get("value") or str(var.get("query", "")).split(",")[0])
        elif kind == "interval":
            values[name] = "5m"
    return values


def substitute(expr, values, where):
    problems = []

    def replace(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name not in values:
            problems.append(f"{where}: unknown Grafana variable ${name} in {expr!r}")
            return m.group(0)
        return values[name]

    return GRAFANA_VARIABLE.sub(replace, expr), problems


def variable_query_expr(query):
    """The PromQL inside a Prometheus query variable, or None for forms naming no metric."""
    m = re.fullmatch(r"\s*label_values\(\s*(.*?)\s*,\s*\w+\s*\)\s*", query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r"\s*query_result\(\s*(.*)\s*\)\s*", query, re.S)
    if m:
        return m.group(1)
    if re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*|\s*label_names\(\s*\)\s*", query):
        return None
    return query  # anything else is sent to Prometheus as it is


def panels_of(dashboard):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels inside


def check_dashboard(dashboard, source, exported, uses):
    problems = []
    datasource_var = [
        v for v in dashboard.get("templating", {}).get("list", []) if v.get("name") == "datasource"
    ]
    if dashboard.get("schemaVersion") != 39:
        problems.append(f"{source}: schemaVersion is {dashboard.get('schemaVersion')}, not 39")
    for key in ("uid", "title"):
        if not dashboard.get(key):
            problems.append(f"{source}: no {key}")
    if not datasource_var or datasource_var[0].get("type") != "datasource" or datasource_var[0].get("query") != "prometheus":
        problems.append(f"{source}: no `datasource` variable of type datasource for prometheus")
    if dashboard.get("__inputs") or dashboard.get("__requires"):
        problems.append(f"{source}: __inputs/__requires: the dashboard must not need importing")
    text = json.dumps(dashboard)
    for url in sorted(set(re.findall(r"https?://[^\s\"]+", text))):
        problems.append(f"{source}: external reference {url} (no external assets)")
    values = variable_values(dashboard)
    ids, count, variables = set(), 0, 0
    expected_ds = {"type": "prometheus", "uid": "${datasource}"}

    def check_one(expr, where):
        concrete, bad = substitute(expr, values, where)
        problems.extend(bad)
        if not bad:
            found, names = check_expr(concrete, where, exported, shown=expr)
            problems.extend(found)
            uses.setdefault(where, set()).update(names)

    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        where = f"{source} variable {var.get('name')}"
        if var.get("datasource") != expected_ds:
            problems.append(f"{where}: datasource is {var.get('datasource')}, not {expected_ds}")
        query = var.get("query")
        query = query.get("query") if isinstance(query, dict) else query
        inner = variable_query_expr(query or "")
        if inner is not None:
            check_one(inner, where)
            variables += 1
    for panel in panels_of(dashboard):
        where = f"{source} panel {panel.get('title')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate panel id {panel.get('id')}")
        ids.add(panel.get("id"))
        if "gridPos" not in panel:
            problems.append(f"{where}: no gridPos")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource") != expected_ds:
            problems.append(f"{where}: datasource is {panel.get('datasource')}, not {expected_ds}")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no query")
        for target in targets:
            if target.get("datasource") != expected_ds:
                problems.append(f"{where} target {target.get('refId')}: datasource is {target.get('datasource')}")
            if not target.get("expr"):
                problems.append(f"{where} target {target.get('refId')}: no expr")
                continue
            count += 1
            check_one(target["expr"], where)
    return problems, (count, variables)


# --- PrometheusRule ----------------------------------------------------------------------------
def check_rule(doc, source, exported, uses):
    problems, count = [], 0
    groups = (doc.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append(f"{source}: PrometheusRule {doc['metadata'].get('name')} has no groups")
    group_names, alert_names = set(), set()
    for group in groups:
        if group.get("name") in group_names:
            problems.append(f"{source}: duplicate group {group.get('name')}")
        group_names.add(group.get("name"))
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            where = f"{source} alert {name}"
            if not rule.get("alert"):
                problems.append(f"{source} group {group.get('name')}: a rule that is not an alert ({name})")
                continue
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
                problems.append(f"{where}: invalid alert name")
            if name in alert_names:
                problems.append(f"{where}: duplicate alert name")
            alert_names.add(name)
            try:
                promql_parser.parse_duration(str(rule.get("for", "")))
            except Exception as error:
                problems.append(f"{where}: `for: {rule.get('for')}` is not a duration ({error})")
            if not (rule.get("labels") or {}).get("severity"):
                problems.append(f"{where}: no severity label")
            for key in ("summary", "description"):
                if not str((rule.get("annotations") or {}).get(key, "")).strip():
                    problems.append(f"{where}: no {key} annotation")
            count += 1
            found, names = check_expr(str(rule.get("expr", "")), where, exported, alert=True)
            problems.extend(found)
            uses.setdefault(where, set()).update(names)
    return problems, count


# --- PodMonitors -------------------------------------------------------------------------------
def operator_agent_pod_labels(root):
    """(label key, value) pairs the operator sets on agent pods, and the pods' container port
    names, read from operator/src/labels.rs and operator/src/agent_pool/build.rs."""
    labels_rs = open(os.path.join(root, "operator/src/labels.rs"), encoding="utf-8").read()
    consts = dict(re.findall(r"const\s+(\w+)\s*:\s*&str\s*=\s*\"([^\"]*)\"", labels_rs))
    term = r"(?:\"([^\"]*)\"(?:\.to_string\(\))?|(\w+)(?:\.to_string\(\))?)"
    pairs = set()
    for m in re.finditer(rf"\(\s*{term}\s*,\s*{term}\s*\)", labels_rs):
        key = m.group(1) if m.group(1) is not None else consts.get(m.group(2))
        value = m.group(3) if m.group(3) is not None else consts.get(m.group(4))
        if key and value and "/" in key:
            pairs.add((key, value))
    build_rs = open(os.path.join(root, "operator/src/agent_pool/build.rs"), encoding="utf-8").read()
    ports = set(re.findall(r"\"name\":\s*\"([a-z0-9-]+)\",\s*\"containerPort\"", build_rs))
    return pairs, ports


def check_pod_monitors(docs, root):
    problems = []
    monitors = [d for d in docs if d.get("kind") == "PodMonitor"]
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    agent_labels, agent_ports = operator_agent_pod_labels(root)
    if not agent_labels or not agent_ports:
        problems.append("operator/src/labels.rs, agent_pool/build.rs: found no agent pod labels or ports (update monitoring.py)")
    fixed_pool_labels = {(k, v) for k, v in agent_labels if not k.startswith("floe.dev/") and k != "app.kubernetes.io/instance"}
    agents = operator = 0
    for monitor in monitors:
        name = monitor["metadata"]["name"]
        match = set(((monitor["spec"].get("selector") or {}).get("matchLabels") or {}).items())
        endpoints = monitor["spec"].get("podMetricsEndpoints") or []
        if not endpoints or any(e.get("path") != "/metrics" for e in endpoints):
            problems.append(f"PodMonitor {name}: every endpoint must scrape path /metrics")
        targets = [d for d in deployments if match and match <= set(d["spec"]["template"]["metadata"].get("labels", {}).items())]
        if match and match <= fixed_pool_labels:
            agents += 1
            for e in endpoints:
                if e.get("port") not in agent_ports:
                    problems.append(f"PodMonitor {name}: port {e.get('port')} is not an agent container port ({sorted(agent_ports)})")
        elif targets:
            operator += 1
            ports = {p.get("name") for d in targets for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports") or []}
            for e in endpoints:
                if e.get("port") not in ports:
                    problems.append(f"PodMonitor {name}: port {e.get('port')} is not a port of {[d['metadata']['name'] for d in targets]}")
        else:
            problems.append(
                f"PodMonitor {name}: selector {dict(match)} matches neither the agent pods the operator labels "
                f"({dict(sorted(fixed_pool_labels))}) nor a Deployment of the rendering"
            )
    if agents != 1 or operator != 1:
        problems.append(f"expected one PodMonitor for the agents and one for the operator, found {agents} and {operator}")
    return problems


# --- The rendering -----------------------------------------------------------------------------
def load_rendering(yaml2json, path):
    out = subprocess.run([yaml2json, path], check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def check(root, yaml2json, rendering, listing):
    exported = exported_metrics(root)
    agent = {m for f, m in exported.values() if f.startswith("agent/")}
    operator = {m for f, m in exported.values() if f.startswith("operator/")}
    if len(agent) < 20 or len(operator) < 3:
        return fail([f"only {len(agent)} agent and {len(operator)} operator metrics found in the Rust sources: extraction broken?"])
    docs = load_rendering(yaml2json, rendering)
    problems, uses = [], {}
    with open(os.path.join(root, DASHBOARD_FILE), encoding="utf-8") as f:
        shipped = json.load(f)
    dashboards = rules = 0
    exprs = {"dashboard": 0, "variables": 0, "rules": 0}
    for doc in docs:
        kind = doc.get("kind")
        if kind == "ConfigMap" and any(k.endswith(".json") for k in (doc.get("data") or {})):
            for key, text in doc["data"].items():
                if not key.endswith(".json"):
                    continue
                source = f"{DASHBOARD_FILE} (ConfigMap {doc['metadata']['name']} key {key})"
                dashboard = json.loads(text)
                if dashboard != shipped:
                    problems.append(f"{source}: differs from {DASHBOARD_FILE}")
                found, (count, variables) = check_dashboard(dashboard, DASHBOARD_FILE, exported, uses)
                problems.extend(found)
                exprs["dashboard"] += count
                exprs["variables"] += variables
                dashboards += 1
        elif kind == "PrometheusRule":
            found, count = check_rule(doc, RULE_TEMPLATE, exported, uses)
            problems.extend(found)
            exprs["rules"] += count
            rules += 1
    if dashboards != 1 or rules != 1:
        problems.append(f"{rendering}: expected one dashboard ConfigMap and one PrometheusRule, found {dashboards} and {rules}")
    problems.extend(check_pod_monitors(docs, root))
    if listing:
        for where in sorted(uses):
            print(f"  {where}: {', '.join(sorted(uses[where])) or '-'}")
    if problems:
        return fail(problems)
    used = sorted({m for names in uses.values() for m in names})
    version = importlib.metadata.version("promql-parser")
    print(
        f"{exprs['dashboard']} panel queries, {exprs['variables']} variable queries and {exprs['rules']} alert "
        f"expressions parse with promql-parser "
        f"{version} and use {len(used)} series, all exported ({len(agent)} agent and {len(operator)} operator "
        f"metrics in the Rust sources); dashboard, PrometheusRule and PodMonitors well-formed"
    )
    return 0


def fail(problems):
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    return 1


# --- Self-test ---------------------------------------------------------------------------------
def self_test(root):
    exported = exported_metrics(root)
    errors = []

    def expect(cond, message):
        if not cond:
            errors.append(message)

    for name in ("floe_bytes_in_total", "floe_flush_duration_seconds_bucket", "floe_flush_duration_seconds_count",
                 "floe_operator_reconciles_total", "floe_operator_reconcile_duration_seconds_bucket"):
        expect(name in exported, f"{name} should be exported")
    for name in ("floe_flush_duration_seconds", "floe_bytes_in_total_bucket", "floe_no_such_metric_total"):
        expect(name not in exported, f"{name} should not be exported")

    def rejected(expr, needle, **kw):
        problems, _ = check_expr(expr, "self-test", exported, **kw)
        expect(any(needle in p for p in problems), f"{expr!r} should be rejected for {needle!r}, got {problems}")

    def accepted(expr, **kw):
        problems, _ = check_expr(expr, "self-test", exported, **kw)
        expect(not problems, f"{expr!r} should be accepted, got {problems}")

    rejected("sum(rate(floe_no_such_metric_total[5m]))", "metric floe_no_such_metric_total is not exported")
    rejected('{__name__="floe_no_such_metric_total"}', "metric floe_no_such_metric_total is not exported")
    rejected("sum(rate(floe_bytes_in_total[5m])", "PromQL syntax error")
    rejected("rate(floe_bytes_in_total)", "PromQL syntax error")  # a vector where rate needs a range
    rejected("histogram_quantile(0.99, rate(floe_flush_duration_seconds[5m]))", "is a histogram")
    rejected('{__name__=~"floe_.*"}', "names no metric literally")
    rejected("floe_bytes_in_total[5m]", "instant vector or a scalar", alert=True)
    accepted("histogram_quantile(0.99, sum by (le) (rate(floe_journal_commit_duration_seconds_bucket[5m]))) > 0.5", alert=True)
    accepted('sum(rate(floe_operator_reconciles_total{outcome!="ok"}[5m])) or vector(0)')

    # Whole documents, through the same functions `check` uses.
    ds = {"type": "prometheus", "uid": "${datasource}"}

    def dashboard(expr):
        return {
            "schemaVersion": 39, "uid": "t", "title": "t",
            "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus"},
                                    {"name": "pool", "type": "query", "datasource": ds, "allValue": ".*",
                                     "query": {"query": "label_values(floe_bytes_in_total, pool)"}}]},
            "panels": [{"id": 1, "title": "p", "type": "timeseries", "gridPos": {}, "datasource": ds,
                        "targets": [{"refId": "A", "datasource": ds, "expr": expr}]}],
        }

    def dashboard_problems(expr):
        return check_dashboard(dashboard(expr), "self-test.json", exported, {})[0]

    good = 'sum by (pool) (rate(floe_bytes_in_total{pool=~"$pool"}[$__rate_interval]))'
    expect(not dashboard_problems(good), f"good dashboard rejected: {dashboard_problems(good)}")
    for expr, needle in (
        ('sum(rate(floe_no_such_metric_total{pool=~"$pool"}[$__rate_interval]))',
         "self-test.json panel 'p': metric floe_no_such_metric_total is not exported"),
        ("sum(rate(floe_bytes_in_total[$__rate_interval])", "PromQL syntax error"),
        ('sum(rate(floe_bytes_in_total{pool=~"$nope"}[5m]))', "unknown Grafana variable $nope"),
    ):
        found = dashboard_problems(expr)
        expect(any(needle in p for p in found), f"dashboard with {expr!r} should be rejected for {needle!r}, got {found}")

    def rule(expr):
        return {"metadata": {"name": "t"}, "spec": {"groups": [{"name": "g", "rules": [{
            "alert": "A", "expr": expr, "for": "5m", "labels": {"severity": "warning"},
            "annotations": {"summary": "s", "description": "d"}}]}]}}

    expect(not check_rule(rule("increase(floe_unreadable_chunks_total[5m]) > 0"), "t.yaml", exported, {})[0], "good rule rejected")
    for expr, needle in (
        ("increase(floe_no_such_metric_total[5m]) > 0", "t.yaml alert A: metric floe_no_such_metric_total is not exported"),
        ("increase(floe_unreadable_chunks_total[5m] > 0", "PromQL syntax error"),
    ):
        found = check_rule(rule(expr), "t.yaml", exported, {})[0]
        expect(any(needle in p for p in found), f"rule with {expr!r} should be rejected for {needle!r}, got {found}")

    if errors:
        return fail(errors)
    print(f"self-test: floe_no_such_metric_total, syntax errors, bare histogram names, __name__ regexes and "
          f"unknown variables rejected (in expressions, a dashboard and a PrometheusRule); "
          f"{len(exported)} exported series known")
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) in (4, 5) and args[0] == "check" and args[4:] in ([], ["--list"]):
        sys.exit(check(args[1], args[2], args[3], args[4:] == ["--list"]))
    if len(args) == 2 and args[0] in ("self-test", "--self-test"):
        sys.exit(self_test(args[1]))
    sys.exit(__doc__)
