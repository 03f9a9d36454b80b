#!/usr/bin/env python3
"""Floe e2e: kafka-python's admin client and idempotent producer.

    features.py admin       --bootstrap HOST:PORT --topic T
    features.py idempotence --bootstrap HOST:PORT --topic T [--partitions 6] --records N

Run it with the venv created by e2e/scripts/install-deps.sh:
    ${FLOE_CACHE:-$HOME/.cache/floe}/venv/bin/python e2e/python/features.py ...

admin: KafkaAdminClient against a fresh topic T.
  Topics: create_topics with retention.ms (a second create raises
  TopicAlreadyExistsError), list_topics, describe_topics, create_partitions
  3 -> 5 (shrinking to 3 raises InvalidPartitionsError), delete_topics.
  Configs: describe_configs (values and sources), alter_configs with SET and
  DELETE operations (kafka-python sends IncrementalAlterConfigs).
  Groups: one live KafkaConsumer member that read and committed 50 records:
  list_groups (Stable), describe_groups (1 member owning partitions 0-4),
  list_group_offsets equal to the log end offsets (list_partition_offsets),
  delete_groups answered NonEmptyGroupError; after the member leaves: Empty,
  deleted, a second delete answered GroupIdNotFoundError, no longer listed.

idempotence: one KafkaProducer(enable_idempotence=True, acks='all') sends N
  records; every future is checked. The partitions are read from the
  beginning without a group: every record exactly once at its acknowledged
  partition and offset, offsets gapless up to the end offsets. (The Rust test
  also checks the stored batches' producer id and sequence numbers.)

Prints "OK python <mode> ..." and exits 0; otherwise prints the reasons on
stderr and exits 1 (2 = usage error).
"""

import argparse
import logging
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, OffsetSpec
from kafka.errors import (GroupIdNotFoundError, InvalidPartitionsError, NonEmptyGroupError,
                          TopicAlreadyExistsError)

CLIENT_ID = "floe-e2e-python"
MAX_REPORTED = 20


class Failure(Exception):
    pass


def record_key(i):
    return b"key-%08d" % i


def record_value(i):
    return b"value-%d-" % i + bytes((i * 31 + j) % 251 for j in range(i % 300))


def record_headers(i):
    return [("h-index", str(i).encode()), ("h-client", b"python")]


class Problems:
    def __init__(self):
        self.first = []
        self.count = 0

    def add(self, text):
        self.count += 1
        if len(self.first) < MAX_REPORTED:
            self.first.append(text)

    def raise_if_any(self, what):
        if self.count:
            more = "\n  ... and %d more" % (self.count - len(self.first)) if self.count > len(self.first) else ""
            raise Failure("%s: %d problem(s)\n  - %s%s" % (what, self.count, "\n  - ".join(self.first), more))


def wait_for(what, timeout_s, check):
    """Polls check() until it returns None (holds) or the deadline passes; raises with its last answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        failure = check()
        if failure is None:
            return
        if time.monotonic() > deadline:
            raise Failure("%s: still not true after %d s: %s" % (what, timeout_s, failure))
        time.sleep(0.1)


def outcome_name(outcome):
    """delete_groups answers per group with "OK" or an error name (older releases: an error object)."""
    return outcome if isinstance(outcome, str) else type(outcome).__name__


def expect_error(error_class, what, call):
    try:
        call()
    except error_class:
        return
    except Exception as e:  # noqa: BLE001
        raise Failure("%s: expected %s, got %r" % (what, error_class.__name__, e))
    raise Failure("%s: expected %s, but it succeeded" % (what, error_class.__name__))


def partition_count(admin, topic):
    described = admin.describe_topics([topic])
    if not described or described[0]["error_code"] != 0:
        return "not described: %r" % (described,)
    partitions = described[0]["partitions"]
    for p in partitions:
        if p["error_code"] != 0 or p["leader_id"] < 0 or p["replica_nodes"] != p["isr_nodes"]:
            return "partition %r" % (p,)
    return len(partitions)


def expect_configs(admin, topic, want):
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    configs = described["topic"][topic]
    problems = Problems()
    for key, (value, source) in want.items():
        got = configs.get(key)
        if got is None:
            problems.add("%s is not described" % key)
        elif got["value"] != value or got["config_source"] != source:
            problems.add("%s = %r (%s), expected %r (%s)" % (key, got["value"], got["config_source"], value, source))
    problems.raise_if_any("configs of %s" % topic)


def admin_mode(args):
    topic = args.topic
    group = topic + "-admin-group"
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id=CLIENT_ID)
    try:
        # Topics.
        admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                     "configs": {"retention.ms": "3600000"}}}, wait_for_metadata=True)
        expect_error(TopicAlreadyExistsError, "creating %s twice" % topic,
                     lambda: admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}}))
        if topic not in admin.list_topics():
            raise Failure("list_topics does not list %s" % topic)
        wait_for("%s to show 3 partitions" % topic, 30,
                 lambda: None if partition_count(admin, topic) == 3 else partition_count(admin, topic))
        admin.create_partitions({topic: 5})
        wait_for("%s to show 5 partitions" % topic, 30,
                 lambda: None if partition_count(admin, topic) == 5 else partition_count(admin, topic))
        expect_error(InvalidPartitionsError, "shrinking %s to 3 partitions" % topic,
                     lambda: admin.create_partitions({topic: 3}))
        print("topic %s: created with 3 partitions, grown to 5, shrinking refused" % topic)

        # Configs.
        expect_configs(admin, topic, {"retention.ms": ("3600000", "DYNAMIC_TOPIC_CONFIG"),
                                      "cleanup.policy": ("delete", "DEFAULT_CONFIG")})
        resource = lambda configs: ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)  # noqa: E731
        admin.alter_configs([resource({"retention.ms": (AlterConfigOp.SET, "7200000"),
                                       "retention.bytes": (AlterConfigOp.SET, "1048576")})])
        expect_configs(admin, topic, {"retention.ms": ("7200000", "DYNAMIC_TOPIC_CONFIG"),
                                      "retention.bytes": ("1048576", "DYNAMIC_TOPIC_CONFIG")})
        admin.alter_configs([resource({"retention.bytes": (AlterConfigOp.DELETE, None)})])
        expect_configs(admin, topic, {"retention.ms": ("7200000", "DYNAMIC_TOPIC_CONFIG"),
                                      "retention.bytes": ("-1", "DEFAULT_CONFIG")})
        print("configs of %s described, set and deleted" % topic)

        group_admin(args, admin, topic, group)

        admin.delete_topics([topic])
        wait_for("%s to disappear" % topic, 30, lambda: "still listed" if topic in admin.list_topics() else None)
        print("topic %s deleted" % topic)
    finally:
        admin.close()
    print("OK python admin")


def group_admin(args, admin, topic, group):
    records = 50
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, client_id=CLIENT_ID, acks="all")
    try:
        futures = [producer.send(topic, key=record_key(i), value=record_value(i), headers=record_headers(i))
                   for i in range(records)]
        producer.flush()
        for f in futures:
            f.get(timeout=0)
    finally:
        producer.close()

    consumer = KafkaConsumer(topic, bootstrap_servers=args.bootstrap, client_id=CLIENT_ID, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False)
    closed = False
    try:
        read = 0
        deadline = time.monotonic() + 60
        while read < records:
            if time.monotonic() > deadline:
                raise Failure("the group member read %d of %d records within 60 s" % (read, records))
            read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
        consumer.commit()

        listed = {g["group_id"]: g for g in admin.list_groups()}
        if group not in listed or listed[group]["group_state"] != "Stable" or listed[group]["protocol_type"] != "consumer":
            raise Failure("list_groups: %s listed as %r, expected Stable/consumer" % (group, listed.get(group)))
        described = admin.describe_groups([group])[group]
        members = described["members"]
        if described["group_state"] != "Stable" or described["protocol_type"] != "consumer" or len(members) != 1:
            raise Failure("describe_groups(%s): %r" % (group, described))
        assigned = sorted(p for t in members[0]["member_assignment"]["assigned_partitions"] if t["topic"] == topic
                          for p in t["partitions"])
        if assigned != [0, 1, 2, 3, 4] or members[0]["client_id"] != CLIENT_ID:
            raise Failure("describe_groups(%s): member %r assigned %r, expected %s with 0-4"
                          % (group, members[0]["client_id"], assigned, CLIENT_ID))
        committed = admin.list_group_offsets({group: None})[group]
        partitions = [TopicPartition(topic, p) for p in range(5)]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        problems = Problems()
        for tp in partitions:
            if tp not in committed or committed[tp].offset != ends[tp].offset:
                problems.add("%s: committed %r, log end offset %d" % (tp, committed.get(tp), ends[tp].offset))
        if sum(ends[tp].offset for tp in partitions) != records:
            problems.add("the log end offsets add up to %d, expected %d" % (sum(ends[tp].offset for tp in partitions), records))
        problems.raise_if_any("committed offsets of %s" % group)
        results = dict(admin.delete_groups([group]))
        if outcome_name(results.get(group)) != NonEmptyGroupError.__name__:
            raise Failure("deleting %s while it has a member answered %r, expected NonEmptyGroupError" % (group, results))
        consumer.close(autocommit=False)
        closed = True
    finally:
        if not closed:
            consumer.close(autocommit=False)

    wait_for("%s to become Empty" % group, 30,
             lambda: None if admin.describe_groups([group])[group]["group_state"] == "Empty"
             else admin.describe_groups([group])[group]["group_state"])
    results = dict(admin.delete_groups([group]))
    if outcome_name(results.get(group)) != "OK":
        raise Failure("delete_groups(%s) answered %r" % (group, results))
    results = dict(admin.delete_groups([group]))
    if outcome_name(results.get(group)) != GroupIdNotFoundError.__name__:
        raise Failure("deleting %s twice answered %r, expected GroupIdNotFoundError" % (group, results))
    if any(g["group_id"] == group for g in admin.list_groups()):
        raise Failure("list_groups still lists the deleted group %s" % group)
    print("group %s listed, described (1 member, 5 partitions), offsets read back, refused deletion while live, "
          "deleted when empty" % group)


def idempotence(args):
    n, topic, partitions = args.records, args.topic, args.partitions
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id=CLIENT_ID)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}}, wait_for_metadata=True)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=args.bootstrap, client_id=CLIENT_ID, acks="all",
                             enable_idempotence=True, linger_ms=5)
    problems = Problems()
    acked = [None] * n
    try:
        futures = [producer.send(topic, key=record_key(i), value=record_value(i), headers=record_headers(i))
                   for i in range(n)]
        producer.flush()
        for i, f in enumerate(futures):
            try:
                md = f.get(timeout=0)
                acked[i] = (md.partition, md.offset)
            except Exception as e:  # noqa: BLE001
                problems.add("record %d: %r" % (i, e))
    finally:
        producer.close()
    problems.raise_if_any("idempotent producer on %s" % topic)
    print("produced %d records with enable_idempotence=True" % n)

    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, client_id=CLIENT_ID, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        total = sum(ends.values())
        if total != n:
            problems.add("the log holds %d records, expected exactly %d" % (total, n))
        seen = [0] * n
        next_offset = {}
        read = 0
        deadline = time.monotonic() + 120
        while read < total and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=200).items():
                for r in batch:
                    read += 1
                    expected = next_offset.get(r.partition, 0)
                    if r.offset != expected:
                        problems.add("partition %d: offset %d where %d was next (gap or repeat)" % (r.partition, r.offset, expected))
                    next_offset[r.partition] = r.offset + 1
                    key = r.key or b""
                    i = int(key[4:]) if key.startswith(b"key-") and key[4:].isdigit() else -1
                    if not 0 <= i < n:
                        problems.add("partition %d offset %d: unexpected key %r" % (r.partition, r.offset, key))
                        continue
                    seen[i] += 1
                    if acked[i] != (r.partition, r.offset):
                        problems.add("record %d read at %d@%d, acknowledged at %r" % (i, r.partition, r.offset, acked[i]))
                    if r.value != record_value(i) or list(r.headers or []) != record_headers(i):
                        problems.add("record %d: value or headers differ" % i)
    finally:
        consumer.close()
    for tp in tps:
        if next_offset.get(tp.partition, 0) != ends[tp]:
            problems.add("%s read up to %d, its end offset is %d" % (tp, next_offset.get(tp.partition, 0), ends[tp]))
    duplicates = sum(t - 1 for t in seen if t > 1)
    missing = sum(1 for t in seen if t == 0)
    if duplicates or missing:
        problems.add("%d duplicates and %d missing records" % (duplicates, missing))
    problems.raise_if_any("idempotence on %s (%d records read)" % (topic, read))
    print("read %d records: each exactly once, offsets gapless in %d partitions" % (read, partitions))
    print("OK python idempotence %d records" % n)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["admin", "idempotence"])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--log-level", default="WARNING", help="python logging level (e.g. INFO, DEBUG)")
    args = ap.parse_args()
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.partitions < 1 or args.records < 0:
        ap.error("bad --records/--partitions")
    try:
        {"admin": admin_mode, "idempotence": idempotence}[args.mode](args)
    except Failure as e:
        print("FAIL python %s: %s" % (args.mode, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
