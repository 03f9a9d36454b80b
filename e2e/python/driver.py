#!/usr/bin/env python3
"""Floe e2e: a verifiable-client adapter for kafka-python (the contract is e2e/README.md).

    driver.py roundtrip   --bootstrap HOST:PORT --topic T [--partitions 12] --records N
    driver.py idempotence --bootstrap HOST:PORT --topic T [--partitions 6] --records N
    driver.py admin       --bootstrap HOST:PORT --topic T
    driver.py denied      --bootstrap HOST:PORT --topic T --group G --new-topic N
    driver.py transactions --bootstrap HOST:PORT --topic T [--partitions 12] --records N --transactional-id X
        [--tls-ca-file CA.pem] [--sasl-mechanism PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
         --sasl-user U --sasl-password P]

Run it with the venv created by e2e/scripts/install-deps.sh:
    ${FLOE_CACHE:-$HOME/.cache/floe}/venv/bin/python e2e/python/driver.py ...

It reports what kafka-python did as JSON events on stdout and checks nothing about the data; the
Rust suites (clients.rs, client_features.rs, sasl.rs, acls.rs) check the events with
floe_e2e::verifiable. Logs go to stderr. It exits 0 after shutdown_complete, 1 when it cannot go
on, 2 on bad usage.

roundtrip: five producers, one per codec (none, gzip, snappy, lz4, zstd), each in its own thread,
records [c*N//5, (c+1)*N//5) through codec c, acks=all; one group member (T-group, earliest, manual
commits) until N records and 1 s more, or 120 s; commit; committed offsets read back.
idempotence: one KafkaProducer(enable_idempotence=True, acks='all'); the partitions read from the
beginning without a group up to their end offsets.
admin: KafkaAdminClient calls, each reported as an admin_result.
denied: as a user without ACLs on T (1 partition), G and N: produce to T, fetch T by assignment, join
G, commit to G without joining, create N, alter T's retention.ms; each an admin_result carrying the
error kafka-python raised (or the error code it answered), bounded to 15 s. For such a user
kafka-python stops before Produce and Fetch (Metadata answers TOPIC_AUTHORIZATION_FAILED) and before
JoinGroup and OffsetCommit (FindCoordinator answers GROUP_AUTHORIZATION_FAILED), as Java's does.
transactions: one KafkaProducer(transactional_id=X, acks='all', enable_idempotence=True,
transaction_timeout_ms=60000); init_transactions, then transactions of 10 records, the even ones
committed and the odd ones (and any with a failed send) aborted, each an admin_result; the
partitions read from offset 0 without a group with isolation_level='read_committed' until each
position reached its end offset (the last stable offset) and no record came for 1.5 s, or 60 s.

api_version is deliberately NOT pinned: kafka-python 3.x discovers the broker's API versions with
ApiVersionsRequest and negotiates per request type, which is exactly what we want to exercise.
"""

import argparse
import json
import logging
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, OffsetSpec
from kafka.consumer.subscription_state import ConsumerRebalanceListener
import kafka
import kafka.errors

CLIENT_ID = "floe-e2e-python"
CLIENT_NAME = "python"  # the h-client header and startup_complete's client
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]

_events_lock = threading.Lock()


def emit(name, **fields):
    """One event, one line on stdout, written whole."""
    fields["name"] = name
    line = json.dumps(fields, separators=(",", ":")) + "\n"
    with _events_lock:
        sys.stdout.write(line)


def hex_or_none(data):
    return None if data is None else data.hex()


def info(message):
    print("[driver.py] %s" % message, file=sys.stderr, flush=True)


# Record i of the shared format; floe_e2e::records (e2e/src/lib.rs) is the one the checks use.
def record_key(i):
    return b"key-%08d" % i


def record_value(i):
    return b"value-%d-" % i + bytes((i * 31 + j) % 251 for j in range(i % 300))


def record_headers(i):
    return [("h-index", str(i).encode()), ("h-client", CLIENT_NAME.encode())]


def send(producer, topic, i, producer_name):
    """Sends record i and reports its acknowledgement or error when it arrives."""
    future = producer.send(topic, key=record_key(i), value=record_value(i), headers=record_headers(i))
    future.add_callback(lambda md: emit("producer_send_success", topic=md.topic, partition=md.partition,
                                        offset=md.offset, index=i, producer=producer_name))
    future.add_errback(lambda error: emit("producer_send_error", topic=topic, index=i, error=repr(error)))


def emit_consumed(records):
    for r in records:
        emit("record_consumed", topic=r.topic, partition=r.partition, offset=r.offset,
             key=hex_or_none(r.key), value=hex_or_none(r.value),
             headers=[{"key": k, "value": hex_or_none(v)} for k, v in (r.headers or [])])


def error_name(error):
    """The Kafka error name of a kafka-python exception (TOPIC_ALREADY_EXISTS), else its repr."""
    message = getattr(error, "message", None)
    return message if isinstance(message, str) and message.isupper() else repr(error)


def report(operation, resource, call, result=lambda answer: {}):
    """Runs call(), reports it as an admin_result and returns its answer (None on error)."""
    try:
        answer = call()
    except Exception as error:  # noqa: BLE001 - every outcome is an event
        emit("admin_result", operation=operation, resource=resource, error=error_name(error), result={})
        return None
    emit("admin_result", operation=operation, resource=resource, error=None, result=result(answer))
    return answer


def wait_for(timeout_s, check):
    """Polls check() until it is true or the deadline passes (what it saw is reported after)."""
    deadline = time.monotonic() + timeout_s
    while not check() and time.monotonic() < deadline:
        time.sleep(0.1)


SECURITY = {}


def security_settings(args):
    settings = {}
    if args.tls_ca_file:
        settings.update(security_protocol="SSL", ssl_cafile=args.tls_ca_file)
    if args.sasl_mechanism:
        settings.update(
            security_protocol="SASL_SSL" if args.tls_ca_file else "SASL_PLAINTEXT",
            sasl_mechanism=args.sasl_mechanism,
            sasl_plain_username=args.sasl_user,
            sasl_plain_password=args.sasl_password,
        )
    return settings


def client_settings(args):
    return dict(SECURITY, bootstrap_servers=args.bootstrap, client_id=CLIENT_ID)


def create_topic(args, partitions, configs=None):
    admin = KafkaAdminClient(**client_settings(args))
    try:
        spec = {"num_partitions": partitions, "replication_factor": 1}
        if configs:
            spec["configs"] = configs
        admin.create_topics({args.topic: spec}, wait_for_metadata=True)
    finally:
        admin.close()


def roundtrip(args):
    topic, n = args.topic, args.records
    create_topic(args, args.partitions)
    started = time.monotonic()

    def produce(c):
        lo, hi = c * n // len(CODECS), (c + 1) * n // len(CODECS)
        producer = KafkaProducer(**client_settings(args), acks="all", compression_type=CODECS[c], linger_ms=5)
        try:
            for i in range(lo, hi):
                send(producer, topic, i, CODECS[c] or "none")
            producer.flush(timeout=120)
        finally:
            producer.close(timeout=30)

    threads = [threading.Thread(target=produce, args=(c,), name="producer-%s" % c) for c in range(len(CODECS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    info("produced %d records in %.1f s" % (n, time.monotonic() - started))

    class Assignments(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            pass

        def on_partitions_assigned(self, assigned):
            for t in sorted({tp.topic for tp in assigned}):
                emit("partitions_assigned", topic=t, partitions=sorted(tp.partition for tp in assigned if tp.topic == t))

    group = topic + "-group"
    consumer = KafkaConsumer(**client_settings(args), group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    consumer.subscribe([topic], listener=Assignments())
    try:
        read = 0
        deadline = time.monotonic() + 120
        drain_until = None
        while time.monotonic() < deadline and (drain_until is None or time.monotonic() < drain_until):
            for records in consumer.poll(timeout_ms=200).values():
                read += len(records)
                emit_consumed(records)
            if drain_until is None and read >= n:
                drain_until = time.monotonic() + 1.0
        consumer.commit()
        offsets = []
        for p in range(args.partitions):
            committed = consumer.committed(TopicPartition(topic, p))
            if committed is not None and committed >= 0:
                offsets.append({"partition": p, "offset": committed})
        emit("offsets_committed", group=group, topic=topic, offsets=offsets)
        info("read %d records in group %s and committed, %.1f s in all" % (read, group, time.monotonic() - started))
    finally:
        consumer.close(autocommit=False)


def idempotence(args):
    topic = args.topic
    create_topic(args, args.partitions)
    producer = KafkaProducer(**client_settings(args), acks="all", enable_idempotence=True, linger_ms=5)
    try:
        for i in range(args.records):
            send(producer, topic, i, "idempotent")
        producer.flush()
    finally:
        producer.close()
    consumer = KafkaConsumer(**client_settings(args), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        total = sum(consumer.end_offsets(partitions).values())
        read = 0
        deadline = time.monotonic() + 120
        while read < total and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                read += len(records)
                emit_consumed(records)
        info("read %d records of the %d the end offsets hold" % (read, total))
    finally:
        consumer.close()


def admin_mode(args):
    topic, group = args.topic, args.topic + "-admin-group"
    admin = KafkaAdminClient(**client_settings(args))
    try:
        new_topic = {topic: {"num_partitions": 3, "replication_factor": 1, "configs": {"retention.ms": "3600000"}}}
        report("create_topics", topic, lambda: admin.create_topics(new_topic, wait_for_metadata=True))
        report("create_topics", topic, lambda: admin.create_topics({topic: {"num_partitions": 3, "replication_factor": 1}}))
        report_partitions(admin, topic, 3)
        report("create_partitions", topic, lambda: admin.create_partitions({topic: 5}), lambda _: {"total": 5})
        report_partitions(admin, topic, 5)
        report("create_partitions", topic, lambda: admin.create_partitions({topic: 3}), lambda _: {"total": 3})

        resource = lambda configs=None: ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)  # noqa: E731
        report_configs(admin, topic)
        report("incremental_alter_configs", topic,
               lambda: admin.alter_configs([resource({"retention.ms": (AlterConfigOp.SET, "7200000"),
                                                      "retention.bytes": (AlterConfigOp.SET, "1048576")})]),
               lambda _: {"op": "set"})
        report_configs(admin, topic)
        report("incremental_alter_configs", topic,
               lambda: admin.alter_configs([resource({"retention.bytes": (AlterConfigOp.DELETE, None)})]),
               lambda _: {"op": "delete"})
        report_configs(admin, topic)

        group_admin(args, admin, topic, group)

        report("delete_topics", topic, lambda: admin.delete_topics([topic]))
        wait_for(30, lambda: topic not in admin.list_topics())
        report("list_topics", topic, admin.list_topics, lambda topics: {"listed": topic in topics})
    finally:
        admin.close()


def report_partitions(admin, topic, want):
    def described():
        answer = admin.describe_topics([topic])
        return answer[0]["partitions"] if answer and answer[0]["error_code"] == 0 else []

    wait_for(30, lambda: len(described()) == want and all(p["leader_id"] >= 0 for p in described()))
    partitions = sorted(described(), key=lambda p: p["partition_index"])
    report("metadata", topic, lambda: partitions,
           lambda ps: {"partitions": [p["partition_index"] for p in ps], "leaders": [p["leader_id"] for p in ps]})


def report_configs(admin, topic):
    def configs(answer):
        return {"configs": {key: {"value": config["value"], "source": config["config_source"]}
                            for key, config in answer["topic"][topic].items()}}

    report("describe_configs", topic,
           lambda: admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"),
           configs)


def delete_group(admin, group):
    """delete_groups answers per group with "OK" or an error (a name, or an error object)."""
    outcome = dict(admin.delete_groups([group])).get(group)
    if outcome != "OK":
        # A class name (NonEmptyGroupError) becomes its Kafka error name (NON_EMPTY_GROUP).
        error = getattr(kafka.errors, outcome, None) if isinstance(outcome, str) else outcome
        name = error_name(error) if error is not None else outcome
        raise type("GroupError", (Exception,), {"message": name})(name)


def group_admin(args, admin, topic, group):
    records = 50
    producer = KafkaProducer(**client_settings(args), acks="all")
    try:
        for i in range(records):
            send(producer, topic, i, "admin")
        producer.flush()
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, **client_settings(args), group_id=group, auto_offset_reset="earliest",
                             enable_auto_commit=False)
    try:
        read = 0
        deadline = time.monotonic() + 60
        while read < records and time.monotonic() < deadline:
            read += sum(len(batch) for batch in consumer.poll(timeout_ms=200).values())
        report("commit", group, consumer.commit, lambda _: {"read": read})
        report_listed(admin, group)
        report_described(admin, group, topic)
        partitions = [TopicPartition(topic, p) for p in range(5)]
        report("offset_fetch", group, lambda: admin.list_group_offsets({group: None})[group],
                           lambda offsets: {"offsets": {str(tp.partition): m.offset for tp, m in offsets.items()}})
        report("list_offsets", topic, lambda: admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions}),
               lambda ends: {"offsets": {str(tp.partition): info.offset for tp, info in ends.items()}})
        report("delete_groups", group, lambda: delete_group(admin, group))
    finally:
        consumer.close(autocommit=False)
    wait_for(30, lambda: admin.describe_groups([group])[group]["group_state"] == "Empty")
    report_described(admin, group, topic)
    report("delete_groups", group, lambda: delete_group(admin, group))
    report("delete_groups", group, lambda: delete_group(admin, group))
    report_listed(admin, group)


def report_listed(admin, group):
    def listed(groups):
        found = [g for g in groups if g["group_id"] == group]
        g = found[0] if found else {"group_state": "", "protocol_type": ""}
        return {"listed": bool(found), "state": g["group_state"], "protocol_type": g["protocol_type"]}

    report("list_groups", group, admin.list_groups, listed)


def report_described(admin, group, topic):
    def described(answer):
        g = answer[group]
        members = [{"client_id": m["client_id"],
                    "partitions": sorted(p for t in m["member_assignment"]["assigned_partitions"]
                                         if t["topic"] == topic for p in t["partitions"])}
                   for m in g["members"]]
        return {"state": g["group_state"], "protocol_type": g["protocol_type"], "members": members}

    report("describe_groups", group, lambda: admin.describe_groups([group]), described)


DENIED_STEP_S = 15  # each step of the denied mode


# The codes whose kafka-python message differs from the name in Kafka's error table (Errors.java).
PROTOCOL_NAMES = {-1: "UNKNOWN_SERVER_ERROR", 6: "NOT_LEADER_OR_FOLLOWER", 10: "MESSAGE_TOO_LARGE",
                  17: "INVALID_TOPIC_EXCEPTION", 39: "INVALID_REPLICA_ASSIGNMENT"}


def code_name(code):
    """Kafka's name of an error code (None for 0), from kafka-python's error class for it."""
    if code == 0:
        return None
    if code not in kafka.errors.kafka_errors:
        return "CLIENT_ERROR: error code %d unknown to kafka-python" % code
    return PROTOCOL_NAMES.get(code, kafka.errors.for_code(code).message)


def denied_error_name(error):
    """A step's error: a broker error's Kafka name, TIMED_OUT for the client's own timeout, else
    CLIENT_ERROR: <message> (kafka-python's broker errors carry errno and the upper-snake message)."""
    if isinstance(error, kafka.errors.BrokerResponseError) and error.errno is not None:
        return code_name(error.errno)
    if isinstance(error, kafka.errors.KafkaTimeoutError):
        return "TIMED_OUT"
    return "CLIENT_ERROR: %s" % str(error)[:200]


def denied_step(operation, resource, call):
    """Runs call(deadline), which returns the error name or None, as one admin_result."""
    started = time.monotonic()
    try:
        error = call(started + DENIED_STEP_S)
    except Exception as raised:  # noqa: BLE001 - every outcome is an event
        error = denied_error_name(raised)
        info("%s %s raised %r" % (operation, resource, raised))
    info("%s %s: %s after %.1f s" % (operation, resource, error, time.monotonic() - started))
    emit("admin_result", operation=operation, resource=resource, error=error, result={})


def left_ms(deadline):
    return max(100, int((deadline - time.monotonic()) * 1000))


def denied(args):
    topic, group, new_topic = args.topic, args.group, args.new_topic
    tp = TopicPartition(topic, 0)

    def settings(deadline):
        # A client that cannot bootstrap (kafka-python retries a failed SASL login) stops in time.
        return dict(client_settings(args), bootstrap_timeout_ms=left_ms(deadline))

    def produce(deadline):
        producer = KafkaProducer(**settings(deadline), acks="all", max_block_ms=left_ms(deadline))
        try:
            producer.send(topic, key=b"k", value=b"v", partition=0).get(timeout=left_ms(deadline) / 1000)
            return None
        finally:
            producer.close(timeout=5)

    def fetch(deadline):
        consumer = KafkaConsumer(**settings(deadline), enable_auto_commit=False)
        try:
            consumer.assign([tp])
            consumer.seek(tp, 0)
            while time.monotonic() < deadline:
                # Records, or a high watermark: a Fetch of the partition answered without error.
                if consumer.poll(timeout_ms=200) or consumer.highwater(tp) is not None:
                    return None
                # A Metadata answer of TOPIC_AUTHORIZATION_FAILED leaves T without a leader, so no
                # Fetch goes out: kafka-python's consumer (unlike Java's) never raises it from poll,
                # it only files T in its metadata's unauthorized_topics, the set its producer
                # checks before raising TopicAuthorizationFailedError. The driver does the same.
                if topic in consumer._cluster.unauthorized_topics:
                    raise kafka.errors.TopicAuthorizationFailedError(topic)
            return "TIMED_OUT"
        finally:
            consumer.close(autocommit=False)

    def join_group(deadline):
        consumer = KafkaConsumer(**settings(deadline), group_id=group, auto_offset_reset="earliest",
                                 enable_auto_commit=False)
        try:
            consumer.subscribe([topic])
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
                if consumer.assignment():
                    return None
            return "TIMED_OUT"
        finally:
            consumer.close(autocommit=False)

    def commit_offsets(deadline):
        # A manually assigned consumer commits with generation -1 and no member id: no JoinGroup.
        consumer = KafkaConsumer(**settings(deadline), group_id=group, enable_auto_commit=False)
        try:
            consumer.assign([tp])
            consumer.commit({tp: OffsetAndMetadata(0, "", -1)}, timeout_ms=left_ms(deadline))
            return None
        finally:
            consumer.close(autocommit=False)

    def create_topics(deadline):
        admin = KafkaAdminClient(**settings(deadline), request_timeout_ms=left_ms(deadline))
        try:
            answer = admin.create_topics({new_topic: {"num_partitions": 1, "replication_factor": 1}},
                                         timeout_ms=left_ms(deadline), raise_errors=False)
            codes = [t["error_code"] for t in answer["topics"] if t["name"] == new_topic]
            return code_name(codes[0]) if codes else "CLIENT_ERROR: no answer for %s" % new_topic
        finally:
            admin.close()

    def alter_configs(deadline):
        # KafkaAdminClient.alter_configs turns each resource's error code into a string, so the
        # request it builds goes out through its own connection and the code is read back.
        admin = KafkaAdminClient(**settings(deadline), request_timeout_ms=left_ms(deadline))
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic,
                                      configs={"retention.ms": (AlterConfigOp.SET, "1000")})
            incremental = admin._check_incremental_alter_configs_support()
            request = admin._alter_configs_request([resource], incremental=incremental)

            async def send():
                return await admin._manager.send(request)

            codes = [r.error_code for r in admin._manager.run(send).responses if r.resource_name == topic]
            return code_name(codes[0]) if codes else "CLIENT_ERROR: no answer for %s" % topic
        finally:
            admin.close()

    denied_step("produce", topic, produce)
    denied_step("fetch", topic, fetch)
    denied_step("join_group", group, join_group)
    denied_step("commit_offsets", group, commit_offsets)
    denied_step("create_topics", new_topic, create_topics)
    denied_step("alter_configs", topic, alter_configs)


TRANSACTION_SIZE = 10  # records per transaction: transaction k holds [10k, 10k+10)


def transactions(args):
    topic = args.topic
    create_topic(args, args.partitions)
    producer = KafkaProducer(**client_settings(args), transactional_id=args.transactional_id, acks="all",
                             enable_idempotence=True, transaction_timeout_ms=60000)
    try:
        producer.init_transactions()
        for k, first in enumerate(range(0, args.records, TRANSACTION_SIZE)):
            indices = range(first, min(first + TRANSACTION_SIZE, args.records))
            producer.begin_transaction()
            futures = []
            for i in indices:
                try:
                    futures.append((i, producer.send(topic, key=record_key(i), value=record_value(i),
                                                     headers=record_headers(i))))
                except Exception as error:  # noqa: BLE001 - a send refused at once is a failed send
                    futures.append((i, error))
            try:
                producer.flush(timeout=120)
            except kafka.errors.KafkaTimeoutError as error:
                info("transaction %d: flush: %r" % (k, error))
            # Reported here, in index order, once every send of the transaction is done, not from
            # callbacks: kafka-python marks a future done before it runs its callbacks, so a
            # callback's event could come after the transaction's admin_result.
            failed = False
            for i, sent in futures:
                try:
                    if isinstance(sent, Exception):
                        raise sent
                    md = sent.get(timeout=1)
                except Exception as error:  # noqa: BLE001 - every outcome is an event
                    failed = True
                    emit("producer_send_error", topic=topic, index=i, error=repr(error))
                else:
                    emit("producer_send_success", topic=md.topic, partition=md.partition, offset=md.offset,
                         index=i, producer="transactional")
            commit = k % 2 == 0 and not failed
            operation = "commit_transaction" if commit else "abort_transaction"
            try:
                if commit:
                    producer.commit_transaction()
                else:
                    producer.abort_transaction()
                error = None
            except Exception as raised:  # noqa: BLE001 - every outcome is an event
                error = denied_error_name(raised)
                info("transaction %d: %s raised %r" % (k, operation, raised))
            emit("admin_result", operation=operation, resource=str(k), error=error,
                 result={"first": first, "count": len(indices)})
    finally:
        producer.close()

    consumer = KafkaConsumer(**client_settings(args), enable_auto_commit=False, isolation_level="read_committed")
    try:
        partitions = [TopicPartition(topic, p) for p in range(args.partitions)]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, 0)
        # ListOffsets with the consumer's isolation level: the last stable offsets.
        ends = consumer.end_offsets(partitions)
        read = 0
        deadline = time.monotonic() + 60
        last_record = time.monotonic()

        def reached():
            return all((consumer.position(tp) or 0) >= end for tp, end in ends.items())

        while time.monotonic() < deadline and not (reached() and time.monotonic() - last_record >= 1.5):
            for records in consumer.poll(timeout_ms=200).values():
                read += len(records)
                last_record = time.monotonic()
                emit_consumed(records)
        info("read %d committed records; positions %s, last stable offsets %s"
             % (read, {tp.partition: consumer.position(tp) for tp in partitions},
                {tp.partition: end for tp, end in ends.items()}))
    finally:
        consumer.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["roundtrip", "idempotence", "admin", "denied", "transactions"])
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--records", type=int, default=10000)
    ap.add_argument("--group", help="denied: the consumer group the user may not use")
    ap.add_argument("--new-topic", help="denied: the topic the user may not create")
    ap.add_argument("--transactional-id", help="transactions: the producer's transactional id")
    ap.add_argument("--log-level", default="WARNING", help="python logging level (e.g. INFO, DEBUG)")
    ap.add_argument("--tls-ca-file", help="connect with TLS, trusting this CA (PEM)")
    ap.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    ap.add_argument("--sasl-user")
    ap.add_argument("--sasl-password")
    args = ap.parse_args()
    if args.partitions < 1 or args.records < 0:
        ap.error("bad --records/--partitions")
    if args.mode == "denied" and not (args.group and args.new_topic):
        ap.error("denied needs --group and --new-topic")
    if args.mode == "transactions" and not args.transactional_id:
        ap.error("transactions needs --transactional-id")
    SECURITY.update(security_settings(args))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.INFO:
        # kafka-python 3.x warns whenever an event-loop task runs >100 ms, which five producer
        # threads sharing the GIL on a small machine trigger all the time; noise, not a finding.
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    emit("startup_complete", client=CLIENT_NAME)
    info("kafka-python %s, %s on %s" % (kafka.__version__, args.mode, args.topic))
    try:
        {"roundtrip": roundtrip, "idempotence": idempotence, "admin": admin_mode,
         "denied": denied, "transactions": transactions}[args.mode](args)
    except Exception as error:  # noqa: BLE001 - a step that cannot go on ends the run
        sys.stdout.flush()
        print("FAIL python %s: %r" % (args.mode, error), file=sys.stderr)
        return 1
    emit("shutdown_complete")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
