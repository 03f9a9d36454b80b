#!/usr/bin/env python3
"""Assemble a bench run's figures and render them.

    render.py RUN_DIR

Reads RUN_DIR/raw/<system>/<workload>.env (key=value lines written by bench.sh), checks that every
system has every figure (null only where a figure does not apply to that system), and writes
RUN_DIR/results.json, RUN_DIR/scoreboard.md and RUN_DIR/chart.png. Exits non-zero, naming the
missing figures, when the run is incomplete. Only the workloads the run selected (settings
"workloads", BENCH_WORKLOADS) are required. When both floe-playground-baseline and floe-playground
ran, results.json has "before_after" and the scoreboard a "Before / after" section: MiB/s per server
core of each for every workload both ran, and the change in percent. When floe-playground-secure
(TLS + SCRAM-SHA-512, W1 only) and floe-playground both ran, "secure_over_plaintext" and a section
give its MiB/s per server core against plaintext (issue 18: at least 70%). floe-cluster-s3lat (the
cluster with S3 latency injected by a proxy) carries the delays the proxy measured (s3_proxy_*), which
the scoreboard's notes repeat; the catchup workload gets its own table (MiB/s, bucket GETs per GiB
read against the objects per GiB W2 wrote).
"""

import json
import pathlib
import sys
import textwrap

BASELINE = "floe-playground-baseline"
SECURE = "floe-playground-secure"
S3LAT = "floe-cluster-s3lat"
SYSTEMS = ["kafka", BASELINE, "floe-playground", SECURE, "floe-cluster", S3LAT]
SHORT_NAMES = {"kafka": "Kafka", BASELINE: "Floe playground baseline", "floe-playground": "Floe playground",
               SECURE: "Floe playground, TLS + SCRAM", "floe-cluster": "Floe cluster (3 agents)",
               S3LAT: "Floe cluster (3 agents), S3 latency"}
# The secure playground runs only these; its figure is MiB/s per server core against plaintext.
SECURE_WORKLOADS = ["w1-none", "w1-lz4"]
# Issue 18: produce over TLS + SCRAM keeps at least this share of plaintext's MiB/s per server core.
SECURE_TARGET = 0.70
ALL_WORKLOADS = ["w1-none", "consume", "w3-50", "w3-80", "w3-50-pipelined", "w1-defaults", "w3-light", "w3-defaults-50",
                 "w1-lz4", "w2-none", "catchup", "w2-lz4", "e2e", "sarama-sync"]
PRODUCE_WORKLOADS = ["w1-none", "w1-defaults", "w1-lz4", "w2-none", "w2-lz4"]
# Fixed-rate runs. The PERCENT ones run at a share of the system's own W1 max, so each has a rate
# column; w3-light's rate is a constant (settings light_records_per_sec), named in its header.
PERCENT_WORKLOADS = ["w3-50", "w3-80", "w3-50-pipelined"]
FIXED_WORKLOADS = [*PERCENT_WORKLOADS, "w3-light"]
# Half of W1 Java defaults' max, with the Java producer's defaults: its own table (issue 20: p99 at
# half load with the default client <= the flush spacing + 20 ms).
DEFAULTS_HALF_LOAD = "w3-defaults-50"
WORKLOAD_NAMES = {
    "w1-none": "W1 16 partitions, none",
    "w1-defaults": "W1 Java defaults (16 KiB batches), none",
    "w1-lz4": "W1 16 partitions, lz4",
    "w2-none": "W2 1,000 partitions, none",
    "w2-lz4": "W2 1,000 partitions, lz4",
    "w3-50": "W3 50% of W1 max",
    "w3-80": "W3 80% of W1 max",
    "w3-50-pipelined": "W3 50%, 50 in flight",
    "w3-light": "W3 light, Java defaults",
    "w3-defaults-50": "W3 50% of W1 Java defaults' max, Java defaults",
    "consume": "consume (MiB read per core)",
    "catchup": "catch-up read, 1,000 partitions (MiB read per core)",
}

def rss(figures):
    """Peak RSS summed over the server processes, and the largest one's when that differs."""
    total, largest = figures.get("rss_hwm_mib"), figures.get("rss_hwm_process_mib")
    if largest is None or total is None or abs(total - largest) < 0.5:
        return number(total, 0)
    return f"{number(total, 0)} ({number(largest, 0)})"


# Figures every produce run reports; the sets below may be null where they do not apply.
SERVER_FIELDS = [
    "server_cpu_seconds", "server_cores", "mib_per_sec_per_core", "infra_cpu_seconds",
    "mib_per_sec_per_core_incl_infra", "client_cpu_seconds", "client_cores", "object_puts",
    "object_puts_per_sec", "segments", "flush_ms_mean", "etcd_txn_per_segment", "rss_hwm_mib", "rss_hwm_process_mib",
]
# The half-load rate again after a warm-up (WarmLatency.java).
WARM_FIELDS = ["warm_seconds", "warm_records", "warm_p50_ms", "warm_p99_ms", "warm_p999_ms", "warm_max_ms"]
LATENCY_FIELDS = ["records_per_sec", "mib_per_sec", "avg_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"]
# infra_cpu_seconds: etcd's and s3s-fs's CPU over the read (the cluster only; they share the
# server core, and on a loopback store s3s-fs serving the GETs can cost more than the agents).
CONSUME_FIELDS = ["records", "mib_per_sec", "fetch_mib_per_sec", "rebalance_ms", "server_cpu_seconds", "mib_per_sec_per_core",
                  "infra_cpu_seconds"]
# catchup's bucket figures (Floe only): GETs and MiB read from the bucket over the read, GETs per GiB
# read, objects per GiB as w2-none wrote them, and the ratio of the two.
CATCHUP_FIELDS = ["object_gets", "object_get_mib", "gets_per_gib", "objects_per_gib", "gets_per_object"]
# The delays the S3 latency proxy applied over floe-cluster-s3lat's run (its /__proxy/stats).
PROXY_FIELDS = ["s3_proxy_requests", "s3_proxy_delay_p50_ms", "s3_proxy_delay_p99_ms"]
REQUIRED = {
    **{w: ["partitions", "compression", "records", "elapsed_seconds", *LATENCY_FIELDS, *SERVER_FIELDS] for w in PRODUCE_WORKLOADS},
    **{w: ["percent_of_max", "max_in_flight", "target_records_per_sec", "records", *LATENCY_FIELDS, *SERVER_FIELDS]
       for w in FIXED_WORKLOADS},
    DEFAULTS_HALF_LOAD: ["percent_of_max", "max_in_flight", "target_records_per_sec", "records", *LATENCY_FIELDS,
                         *SERVER_FIELDS, *WARM_FIELDS],
    "consume": CONSUME_FIELDS,
    "catchup": [*CONSUME_FIELDS, "mib_read", *CATCHUP_FIELDS],
    "e2e": ["messages", "avg_ms", "p50_ms", "p99_ms", "p999_ms"],
    "sarama-sync": ["messages", "records_per_sec", "first_ms", "p50_ms", "p99_ms", "p999_ms", "max_ms"],
    "system": ["label", "server_processes", "rss_hwm_mib", "rss_hwm_process_mib", "infra_rss_hwm_mib", *PROXY_FIELDS],
}
NOT_APPLICABLE = {  # (system) -> fields that are null for it
    "kafka": {"infra_cpu_seconds", "mib_per_sec_per_core_incl_infra", "object_puts", "object_puts_per_sec", "segments",
              "flush_ms_mean", "etcd_txn_per_segment", "infra_rss_hwm_mib", *CATCHUP_FIELDS, *PROXY_FIELDS},
    "floe-playground": {"infra_cpu_seconds", "mib_per_sec_per_core_incl_infra", "etcd_txn_per_segment", "infra_rss_hwm_mib",
                        *PROXY_FIELDS},
    BASELINE: {"infra_cpu_seconds", "mib_per_sec_per_core_incl_infra", "etcd_txn_per_segment", "infra_rss_hwm_mib",
               *PROXY_FIELDS},
    SECURE: {"infra_cpu_seconds", "mib_per_sec_per_core_incl_infra", "etcd_txn_per_segment", "infra_rss_hwm_mib",
             *PROXY_FIELDS},
    "floe-cluster": set(PROXY_FIELDS),
    S3LAT: set(),
}
NOT_APPLICABLE_TO_WORKLOAD = {  # (workload) -> fields that are null for it on every system
    "w3-light": {"percent_of_max"},  # its rate is a constant, not a share of W1's max
}
MACHINE_FIELDS = ["nproc", "cpu_model", "memory_gib", "kernel", "os", "java_version", "kafka_version", "floe_commit",
                  "floe_worktree_dirty", "floe_binary", "load_average_at_start", "load_average_at_end", "wall_seconds"]


def parse_value(text):
    if text == "null":
        return None
    if text in ("true", "false"):
        return text == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_env(path):
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition("=")
        values[key] = parse_value(value)
    return values


def selected_workloads(settings):
    """The workloads the run selected, in run order (every one when settings do not say)."""
    chosen = str(settings.get("workloads") or " ".join(ALL_WORKLOADS)).split()
    return [w for w in ALL_WORKLOADS if w in chosen]


def short_name(system, machine):
    if system == BASELINE:
        commit = str(machine.get("baseline_commit") or "unknown")
        return f"{SHORT_NAMES[system]} ({commit if commit == 'unknown' else commit[:12]})"
    return SHORT_NAMES[system]


def before_after(systems, workloads):
    """MiB/s per server core of the baseline and the current playground, and the change in percent,
    for every workload both ran."""
    if BASELINE not in systems or "floe-playground" not in systems:
        return {}
    before, after = systems[BASELINE]["workloads"], systems["floe-playground"]["workloads"]
    rows = {}
    for workload in workloads:
        b = before.get(workload, {}).get("mib_per_sec_per_core")
        a = after.get(workload, {}).get("mib_per_sec_per_core")
        if b is None or a is None or workload not in WORKLOAD_NAMES:
            continue
        rows[workload] = {
            "before_mib_per_sec_per_core": b,
            "after_mib_per_sec_per_core": a,
            "before_mib_per_sec": before[workload].get("mib_per_sec"),
            "after_mib_per_sec": after[workload].get("mib_per_sec"),
            "change_percent": round((a - b) / b * 100, 2) if b else None,
        }
    return rows


def secure_over_plaintext(systems, workloads):
    """MiB/s per server core of the secure playground over the plaintext one's, per W1 workload."""
    if SECURE not in systems or "floe-playground" not in systems:
        return {}
    plain, secure = systems["floe-playground"]["workloads"], systems[SECURE]["workloads"]
    rows = {}
    for workload in workloads:
        p = plain.get(workload, {}).get("mib_per_sec_per_core")
        s = secure.get(workload, {}).get("mib_per_sec_per_core")
        if workload not in SECURE_WORKLOADS or not p or s is None:
            continue
        rows[workload] = {"plaintext_mib_per_sec_per_core": p, "secure_mib_per_sec_per_core": s,
                          "plaintext_mib_per_sec": plain[workload].get("mib_per_sec"),
                          "secure_mib_per_sec": secure[workload].get("mib_per_sec"), "ratio": round(s / p, 3),
                          "meets_target": s / p >= SECURE_TARGET}
    return rows


def assemble(run_dir):
    raw = run_dir / "raw"
    machine = read_env(raw / "machine" / "info.env")
    settings = read_env(raw / "settings" / "info.env")
    workloads_run = selected_workloads(settings)
    required = {w: fields for w, fields in REQUIRED.items() if w == "system" or w in workloads_run}
    systems, problems = {}, []
    for system in SYSTEMS:
        directory = raw / system
        if not directory.is_dir():
            continue
        workloads = {path.stem: read_env(path) for path in sorted(directory.glob("*.env"))}
        summary = workloads.pop("system", {})
        for workload, fields in required.items():
            if system == SECURE and workload not in ("system", *SECURE_WORKLOADS):
                continue
            figures = summary if workload == "system" else workloads.get(workload)
            if figures is None:
                problems.append(f"{system}: workload {workload} missing")
                continue
            not_applicable = NOT_APPLICABLE[system] | NOT_APPLICABLE_TO_WORKLOAD.get(workload, set())
            for field in fields:
                if field not in figures:
                    problems.append(f"{system} {workload}: {field} missing")
                elif figures[field] is None and field not in not_applicable:
                    problems.append(f"{system} {workload}: {field} is null")
                elif figures[field] is not None and field in not_applicable:
                    problems.append(f"{system} {workload}: {field} should be null (not applicable)")
        systems[system] = {**summary, "workloads": workloads}
    if not systems:
        problems.append("no system was measured")
    for field in MACHINE_FIELDS:
        if field not in machine:
            problems.append(f"machine: {field} missing")
    ratios = {}
    if "kafka" in systems:
        kafka = systems["kafka"]["workloads"]
        for system in (BASELINE, "floe-playground", SECURE, "floe-cluster", S3LAT):
            if system in systems:
                floe = systems[system]["workloads"]
                ratios[system] = {
                    w: round(floe[w]["mib_per_sec_per_core"] / kafka[w]["mib_per_sec_per_core"], 3)
                    for w in PRODUCE_WORKLOADS
                    if floe.get(w, {}).get("mib_per_sec_per_core") and kafka.get(w, {}).get("mib_per_sec_per_core")
                }
    def lines(name):  # the run directory is abbreviated: commands stay readable and comparable
        text = (run_dir / name).read_text().replace(str(run_dir.resolve()), "$RUN_DIR").replace(str(run_dir), "$RUN_DIR")
        return [line for line in text.splitlines() if line.strip()]

    results = {
        "schema_version": 1,
        "run": run_dir.name,
        "mode": settings.get("mode"),
        "machine": machine,
        "settings": settings,
        "systems": systems,
        "workloads": workloads_run,
        "ratios_mib_per_sec_per_core_floe_over_kafka": ratios,
        "before_after": before_after(systems, workloads_run),
        "secure_over_plaintext": secure_over_plaintext(systems, workloads_run),
        "notes": lines("notes.txt"),
        "commands": lines("commands.txt"),
    }
    return results, problems


def number(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}" if digits else f"{value:,.0f}"
    return str(value)


def put_cap(settings, systems):
    """The scoreboard's words on the flush spacing (BENCH_FLOE_MAX_PUTS_PER_SECOND or
    BENCH_FLOE_FLUSH_INTERVAL, one knob)."""
    cap = settings.get("floe_max_puts_per_second", "default")
    interval = settings.get("floe_flush_interval", "default")
    baseline = "; not the baseline, an older build, which runs at its own defaults" if BASELINE in systems else ""
    if cap != "default":
        return f"segment PUTs capped at {cap}/s per agent (--max-puts-per-second{baseline})"
    if interval != "default":
        return f"flushes at least {interval} apart per agent (--flush-interval{baseline})"
    return ("segment PUTs capped at the agent's default, per agent: 250/s on the playground's file bucket, "
            "10/s on the cluster's s3://" + ("; the baseline at its own defaults" if BASELINE in systems else ""))


def scoreboard(results):
    machine, settings, systems = results["machine"], results["settings"], results["systems"]
    ran = results["workloads"]
    produce = [w for w in PRODUCE_WORKLOADS if w in ran]
    java_defaults = ""
    if "w1-defaults" in ran or "w3-light" in ran:
        java_defaults = (f" W1 Java defaults and W3 light: `{settings.get('java_defaults_producer_props')}`, "
                         "5 requests in flight, idempotent (the Java producer's defaults).")
    out = [f"# Floe vs Apache Kafka: bench run {results['run']} ({results['mode']})", ""]
    if results["mode"] != "full":
        out += ["> **Smoke run (BENCH_QUICK=1): tiny counts, the figures mean nothing.**", ""]
    out += [
        f"Machine: {machine['nproc']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB, {machine['kernel']}, "
        f"{machine['os']}; {machine['java_version']}; Kafka {machine['kafka_version']} tools as load generators; "
        f"floe commit `{str(machine['floe_commit'])[:12]}`{' (dirty worktree)' if machine['floe_worktree_dirty'] else ''}; "
        f"load average {machine['load_average_at_start']} at start, {machine['load_average_at_end']} at end; "
        f"wall time {machine['wall_seconds']} s."
        + (f" Baseline: floe commit `{str(machine['baseline_commit'])[:12]}` ({machine['baseline_binary']})."
           if BASELINE in systems else "")
        + ("" if ran == ALL_WORKLOADS else f" Workloads: {', '.join(ran)} (BENCH_WORKLOADS)."),
        "",
        f"Servers pinned to CPU {settings['server_cpus']} (etcd and s3s-fs too), load generators to CPU {settings['client_cpus']}. "
        f"{settings['record_size']}-byte records, `{settings['producer_props']}`.{java_defaults} "
        "MiB/s per server core = MiB produced / server CPU-seconds (from /proc/<pid>/stat over the run; the cluster "
        "sums its agents, etcd and s3s-fs are shown apart). RSS: each workload's own peak (VmHWM, reset as the "
        "workload starts), summed over the agents, the largest agent's in parentheses; the latency table's is the "
        "peak through the whole run. "
        "Client cores near 1.0 mean the load generator, not the server, set the pace; a server far below one core "
        "with a low rate is waiting, not working (Floe acknowledges acks=all produces after their flush, which starts "
        f"as soon as the previous PUT returned and the PUT cap allows; {put_cap(settings, systems)}). Flush ms: mean "
        "time from a flush's start to its journal commit (object PUT and commit).",
        "",
        "## Produce throughput",
        "",
        "| system | workload | MiB/s | server cores | MiB/s per server core | per core incl. etcd+S3 | client cores | PUTs/s | flush ms | etcd txn/segment | RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, data in systems.items():
        for workload in produce:
            if workload not in data["workloads"]:
                continue
            w = data["workloads"][workload]
            out.append(
                f"| {short_name(system, machine)} | {WORKLOAD_NAMES[workload]} | {number(w.get('mib_per_sec'))} | "
                f"{number(w.get('server_cores'), 2)} | {number(w.get('mib_per_sec_per_core'))} | "
                f"{number(w.get('mib_per_sec_per_core_incl_infra'))} | {number(w.get('client_cores'), 2)} | "
                f"{number(w.get('object_puts_per_sec'))} | {number(w.get('flush_ms_mean'))} | "
                f"{number(w.get('etcd_txn_per_segment'), 2)} | "
                f"{rss(w)} |"
            )
    latency_ran = any(w in ran for w in [*FIXED_WORKLOADS, "e2e", "consume"])
    light = number(settings.get("light_records_per_sec"), 0)
    out += [] if not latency_ran else [
        "",
        "## Latency (ms) and consume",
        "",
        "W3: ProducerPerformance at a fixed rate (50% / 80% of the system's own W1 max), 16 partitions, send-to-ack, "
        "5 requests in flight per connection (the Java default); 'pipelined': 50 in flight, idempotence off. "
        f"W3 light: {light} records/s on every system, with the Java producer's defaults "
        "(16 KiB batches). E2E: EndToEndLatency, one record at a time, acks=all, produce-to-consume.",
        "",
        "| system | W3 50%: rate | p50 | p99 | p99.9 | W3 80%: rate | p50 | p99 | p99.9 "
        f"| W3 50% pipelined: rate | p50 | p99 | p99.9 | W3 light {light}/s: p50 | p99 | p99.9 | flush ms "
        "| E2E p50 | E2E p99 | E2E p99.9 | consume MiB/s | RSS MiB |",
        "|---|" + "---:|" * 21,
    ]
    for system, data in systems.items() if latency_ran else ():
        w = data["workloads"]
        if not any(name in w for name in [*FIXED_WORKLOADS, "e2e", "consume"]):
            continue
        cells = []
        for fixed in FIXED_WORKLOADS:
            f = w.get(fixed, {})
            if fixed in PERCENT_WORKLOADS:
                cells.append(number(f.get("target_records_per_sec"), 0) + "/s")
            cells += [number(f.get("p50_ms"), 0), number(f.get("p99_ms"), 0), number(f.get("p999_ms"), 0)]
        # W3 light's p50 set against what the flush itself takes (done-when: p50 <= PUT + commit + 5 ms).
        cells.append(number(w.get("w3-light", {}).get("flush_ms_mean")))
        e = w.get("e2e", {})
        cells += [number(e.get("p50_ms"), 0), number(e.get("p99_ms"), 0), number(e.get("p999_ms"), 0),
                  number(w.get("consume", {}).get("fetch_mib_per_sec")), rss(data)]
        out.append(f"| {short_name(system, machine)} | " + " | ".join(cells) + " |")
    half = [(system, data["workloads"][DEFAULTS_HALF_LOAD]) for system, data in systems.items()
            if DEFAULTS_HALF_LOAD in data["workloads"]]
    if half:
        warm_seconds = number(half[0][1].get("warm_seconds"), 0)
        out += ["", "## Half load with the Java producer's defaults (ms)", "",
                "ProducerPerformance at 50% of the system's own W1 Java defaults max, with the Java producer's "
                "defaults (16 KiB batches, linger.ms 5, idempotent, 5 requests in flight), 16 partitions, send-to-ack. "
                "'Warm': the same rate again from a fresh producer (WarmLatency.java), timed only after a "
                f"{warm_seconds}-second warm-up; ProducerPerformance's figures include its first seconds (the client's JIT, "
                "first metadata and connections), where every system, Kafka too, shows a spike of several hundred ms. "
                "Target (issue 20): p99 at most the flush spacing (1 / PUT cap: 4 ms on the playground, 100 ms on "
                "the cluster) + 20 ms.", "",
                "| system | rate | p50 | p99 | p99.9 | warm p50 | warm p99 | warm p99.9 | warm max | flush ms |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for system, f in half:
            out.append(f"| {short_name(system, machine)} | {number(f.get('target_records_per_sec'), 0)}/s | "
                       f"{number(f.get('p50_ms'), 0)} | {number(f.get('p99_ms'), 0)} | {number(f.get('p999_ms'), 0)} | "
                       f"{number(f.get('warm_p50_ms'))} | {number(f.get('warm_p99_ms'))} | {number(f.get('warm_p999_ms'))} | "
                       f"{number(f.get('warm_max_ms'))} | {number(f.get('flush_ms_mean'))} |")
    catchup = [(system, data["workloads"]["catchup"]) for system, data in systems.items() if "catchup" in data["workloads"]]
    if catchup:
        volume = settings.get("catchup_mib")
        volume = "all of W2 1,000 partitions, none's records" if volume in (None, "all") else \
            f"{number(volume, 0)} MiB of W2 1,000 partitions, none's topic (the same on every system)"
        out += ["", "## Catch-up read (1,000 partitions)", "",
                f"A fresh consumer group reads {volume} from the start "
                "(ConsumerPerformance, fetch MiB/s: group join excluded). GETs per GiB: the agents' bucket GETs during "
                "the read per GiB read; objects per GiB: the objects W2's run PUT per GiB written. GETs / objects "
                "above 1 means objects are read piecemeal; below 1, partly from the agents' cache.", "",
                "| system | MiB read | MiB/s | GETs per GiB | objects per GiB | GETs / objects |",
                "|---|---:|---:|---:|---:|---:|"]
        for system, c in catchup:
            out.append(f"| {short_name(system, machine)} | {number(c.get('mib_read'), 0)} | {number(c.get('fetch_mib_per_sec'))} | "
                       f"{number(c.get('gets_per_gib'))} | {number(c.get('objects_per_gib'))} | "
                       f"{number(c.get('gets_per_object'), 2)} |")
    sarama = [(system, data["workloads"]["sarama-sync"]) for system, data in systems.items()
              if "sarama-sync" in data["workloads"]]
    if sarama:
        out += ["", "## Go's sarama SyncProducer, one record at a time (ms)", "",
                "sarama's defaults but acks=all (`Producer.Return.Successes` on, as a SyncProducer needs), 1 KiB "
                "records to a 1-partition topic, each sent when the previous one was acknowledged, "
                + ("20 records (quick mode)" if settings.get("mode") == "quick"
                   else f"for {number(settings.get('e2e_seconds_target'), 0)} s")
                + ": send-to-ack percentiles, and records/s. 'First': the "
                "first record, which also waits for metadata and the connection (not in the percentiles).", "",
                "| system | records | records/s | first | p50 | p99 | p99.9 | max |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for system, g in sarama:
            out.append(f"| {short_name(system, machine)} | {number(g.get('messages'), 0)} | {number(g.get('records_per_sec'))} | "
                       f"{number(g.get('first_ms'))} | {number(g.get('p50_ms'))} | {number(g.get('p99_ms'))} | "
                       f"{number(g.get('p999_ms'))} | {number(g.get('max_ms'))} |")
    ratios = results["ratios_mib_per_sec_per_core_floe_over_kafka"]
    if ratios:
        out += ["", "## Floe / Kafka, MiB/s per server core", "",
                "| system | " + " | ".join(WORKLOAD_NAMES[w] for w in produce) + " |",
                "|---|" + "---:|" * len(produce)]
        for system, by_workload in ratios.items():
            out.append(f"| {short_name(system, machine)} | " + " | ".join(number(by_workload.get(w), 2) for w in produce) + " |")
    rows = results["before_after"]
    if rows:
        out += ["", "## Before / after: Floe playground, baseline vs this build", "",
                f"The same playground and workloads, from the baseline binary (commit "
                f"`{str(machine.get('baseline_commit'))[:12]}`) and from this run's binary (commit "
                f"`{str(machine['floe_commit'])[:12]}`), one after the other in this run. "
                "Change = (after - before) / before; negative is a fall.", "",
                "| workload | before: MiB/s | after: MiB/s | before: MiB/s per server core | "
                "after: MiB/s per server core | change |",
                "|---|---:|---:|---:|---:|---:|"]
        for workload, row in rows.items():
            change = row["change_percent"]
            out.append(f"| {WORKLOAD_NAMES[workload]} | {number(row['before_mib_per_sec'])} | "
                       f"{number(row['after_mib_per_sec'])} | {number(row['before_mib_per_sec_per_core'])} | "
                       f"{number(row['after_mib_per_sec_per_core'])} | "
                       f"{'–' if change is None else f'{change:+.1f}%'} |")
    secure = results["secure_over_plaintext"]
    if secure:
        out += ["", "## TLS + SCRAM-SHA-512 vs plaintext: Floe playground", "",
                "The same playground and W1 workloads, every connection SASL_SSL (TLS 1.3, a P-256 certificate, "
                "SCRAM-SHA-512), one after the other in this run. Target (issue 18): at least "
                f"{SECURE_TARGET:.0%} of plaintext's MiB/s per server core.", "",
                "| workload | plaintext: MiB/s | TLS + SCRAM: MiB/s | plaintext: MiB/s per server core | "
                "TLS + SCRAM: MiB/s per server core | ratio | target met |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for workload, row in secure.items():
            out.append(f"| {WORKLOAD_NAMES[workload]} | {number(row['plaintext_mib_per_sec'])} | "
                       f"{number(row['secure_mib_per_sec'])} | {number(row['plaintext_mib_per_sec_per_core'])} | "
                       f"{number(row['secure_mib_per_sec_per_core'])} | {row['ratio']:.2f} | "
                       f"{'yes' if row['meets_target'] else 'no'} |")
    cluster = systems.get("floe-cluster")
    if cluster:
        infra = [f"{w}: {number(cluster['workloads'][w].get('infra_cpu_seconds'), 2)} s" for w in produce
                 if w in cluster["workloads"]]
        out += [] if not infra else ["", f"etcd + s3s-fs CPU during the cluster's produce runs: {', '.join(infra)}; "
                f"their peak RSS {number(cluster.get('infra_rss_hwm_mib'), 0)} MiB."]
        reads = [f"{w}: {number(cluster['workloads'][w].get('infra_cpu_seconds'), 2)} s (the agents "
                 f"{number(cluster['workloads'][w].get('server_cpu_seconds'), 2)} s)"
                 for w in ["consume", "catchup"] if w in cluster["workloads"]]
        out += [] if not reads else ["", f"etcd + s3s-fs CPU during the cluster's reads, on the same server core: "
                f"{', '.join(reads)}."]
    notes = [f"{short_name(system, machine)}: injected S3 delay measured: p50 {number(data['s3_proxy_delay_p50_ms'])} ms, "
             f"p99 {number(data['s3_proxy_delay_p99_ms'])} ms over {number(data['s3_proxy_requests'], 0)} requests "
             f"(asked for: median {settings.get('s3_latency_median')}, p99 {settings.get('s3_latency_p99')})"
             for system, data in systems.items() if data.get("s3_proxy_requests") is not None]
    notes += results["notes"]
    if notes:
        out += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    out += ["", "All figures, the exact commands and the tool logs: results.json, commands.txt, logs/ in the run directory.", ""]
    return "\n".join(out)


def tick_label(name):
    """A workload's name wrapped for an x axis: five groups of bars share a panel's width."""
    return "\n".join(line for part in name.split(", ") for line in textwrap.wrap(part, 12))


def chart(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results["systems"])
    machine = results["machine"]
    produce = [w for w in PRODUCE_WORKLOADS if w in results["workloads"]]
    figure, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    width = 0.8 / max(len(systems), 1)
    panels = [("mib_per_sec", "Produce MiB/s"), ("mib_per_sec_per_core", "MiB/s per server core")]
    for axis, (field, title) in zip(axes[:2], panels):
        for index, system in enumerate(systems):
            values = [results["systems"][system]["workloads"].get(w, {}).get(field) or 0 for w in produce]
            positions = [x + (index - (len(systems) - 1) / 2) * width for x in range(len(produce))]
            axis.bar(positions, values, width, label=short_name(system, machine))
        axis.set_xticks(range(len(produce)))
        axis.set_xticklabels([tick_label(WORKLOAD_NAMES[w]) for w in produce], fontsize=8)
        axis.set_title(title)
        axis.grid(axis="y", alpha=0.3)
    latency = [("w3-50", "p99_ms", "W3 50% p99"), ("w3-80", "p99_ms", "W3 80% p99"),
               ("w3-50-pipelined", "p99_ms", "W3 50% pipelined p99"), ("w3-light", "p99_ms", "W3 light p99"),
               ("w3-defaults-50", "p99_ms", "W3 50% Java defaults p99"),
               ("w3-defaults-50", "warm_p99_ms", "W3 50% Java defaults p99, warm"),
               ("e2e", "p99_ms", "E2E p99")]
    latency = [entry for entry in latency if entry[0] in results["workloads"]]
    for index, system in enumerate(systems):
        values = [max(results["systems"][system]["workloads"].get(w, {}).get(f) or 0, 0.5) for w, f, _ in latency]
        positions = [x + (index - (len(systems) - 1) / 2) * width for x in range(len(latency))]
        axes[2].bar(positions, values, width, label=short_name(system, machine))
    axes[2].set_yscale("log")
    axes[2].set_xticks(range(len(latency)))
    axes[2].set_xticklabels([tick_label(name) for _, _, name in latency], fontsize=8)
    axes[2].set_title("Latency p99 (ms, log scale)")
    axes[2].grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    smoke = " — SMOKE RUN, figures meaningless" if results["mode"] != "full" else ""
    figure.suptitle(f"Floe vs Apache Kafka {results['machine']['kafka_version']}, {results['machine']['nproc']} cores, "
                    f"run {results['run']}{smoke}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(arguments):
    if len(arguments) != 1:
        sys.exit(__doc__)
    run_dir = pathlib.Path(arguments[0])
    results, problems = assemble(run_dir)
    (run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if problems:
        sys.exit("render.py: incomplete run:\n  " + "\n  ".join(problems))
    (run_dir / "scoreboard.md").write_text(scoreboard(results))
    chart(results, run_dir / "chart.png")


if __name__ == "__main__":
    main(sys.argv[1:])
