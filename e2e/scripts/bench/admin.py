#!/usr/bin/env python3
"""Admin steps of the benchmark, with kafka-python (starts in a fraction of a JVM's time).

    admin.py wait-brokers BOOTSTRAP COUNT TIMEOUT_SECONDS
    admin.py create-topics BOOTSTRAP NAME:PARTITIONS [NAME:PARTITIONS ...]

create-topics creates every topic (replication factor 1) and returns once the cluster's metadata
lists all their partitions with a leader. Exits non-zero with a message on failure.

With BENCH_SASL_USER, BENCH_SASL_PASSWORD and BENCH_SSL_CAFILE set, it connects over SASL_SSL with
SCRAM-SHA-512 (the secure playground).
"""

import os
import sys
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic

TIMEOUT_SECONDS = 120


def security():
    user = os.environ.get("BENCH_SASL_USER")
    if not user:
        return {}
    return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": user,
            "sasl_plain_password": os.environ["BENCH_SASL_PASSWORD"], "ssl_cafile": os.environ["BENCH_SSL_CAFILE"]}


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="floe-bench-admin", request_timeout_ms=60000,
                            **security())


def wait_brokers(bootstrap, count, timeout_seconds):
    deadline = time.monotonic() + float(timeout_seconds)
    seen = None
    while time.monotonic() < deadline:
        client = admin(bootstrap)
        try:
            seen = len(client.describe_cluster()["brokers"])
        finally:
            client.close()
        if seen >= int(count):
            print(f"{seen} brokers")
            return
        time.sleep(0.2)
    sys.exit(f"admin.py: {seen} brokers advertised, expected {count}")


def leaders_ready(client, wanted):
    described = {topic["name"]: topic for topic in client.describe_topics(list(wanted))}
    for name, partitions in wanted.items():
        topic = described.get(name)
        if topic is None or topic.get("error_code", 0) != 0:
            return False
        with_leader = [p for p in topic["partitions"] if p.get("leader_id", -1) >= 0 and p.get("error_code", 0) == 0]
        if len(with_leader) != partitions:
            return False
    return True


def create_topics(bootstrap, specs):
    wanted = {}
    for spec in specs:
        name, _, partitions = spec.partition(":")
        wanted[name] = int(partitions)
    client = admin(bootstrap)
    try:
        client.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1) for name, partitions in wanted.items()],
            timeout_ms=60000,
        )
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while not leaders_ready(client, wanted):
            if time.monotonic() > deadline:
                sys.exit(f"admin.py: topics {sorted(wanted)} have no leader for every partition after {TIMEOUT_SECONDS}s")
            time.sleep(0.2)
    finally:
        client.close()
    print("created " + ", ".join(f"{name} ({partitions} partitions)" for name, partitions in wanted.items()))


def main(arguments):
    if len(arguments) == 4 and arguments[0] == "wait-brokers":
        wait_brokers(*arguments[1:])
    elif len(arguments) >= 3 and arguments[0] == "create-topics":
        create_topics(arguments[1], arguments[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
