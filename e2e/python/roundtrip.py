#!/usr/bin/env python3
"""Floe e2e: produce/consume round trip with kafka-python.

    roundtrip.py --bootstrap HOST:PORT --topic T --partitions 12 --records N
        [--tls-ca-file CA.pem] [--sasl-mechanism PLAIN|SCRAM-SHA-256|SCRAM-SHA-512
         --sasl-user U --sasl-password P]

Run it with the venv created by e2e/scripts/install-deps.sh:
    ${FLOE_CACHE:-$HOME/.cache/floe}/venv/bin/python e2e/python/roundtrip.py ...

1. Creates topic T (partitions, RF 1) with KafkaAdminClient (an existing topic
   is accepted if its partition count matches).
2. Produces N records with acks=all through five producers, one per codec
   (None, gzip, snappy, lz4, zstd); records i in [c*N//5, (c+1)*N//5) go
   through codec c. The five producers run concurrently (one thread each).
   Every send future is checked; its (partition, offset) is remembered.
3. Consumes with group T+"-group" (earliest, no auto commit) until N records
   or 120 s, then polls ~1 s more to catch extra/duplicate records, commits,
   and checks the committed offsets equal the log end offsets.
4. Verifies: exactly the N distinct keys, byte-for-byte values and headers,
   each record at the partition/offset its produce future reported, offsets
   strictly increasing per partition, and per partition, for records of the
   same codec-producer, the index strictly increasing in consumed order.

The check assumes T is fresh (or at least that the group has no committed
offsets and T held no other records). Prints "OK python roundtrip N records"
and exits 0; otherwise prints the reasons on stderr and exits 1.

api_version is deliberately NOT pinned: kafka-python 3.x discovers the broker's
API versions with ApiVersionsRequest and negotiates per request type, which is
exactly what we want to exercise.
"""

import argparse
import logging
import re
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError
import kafka

CLIENT_ID = "floe-e2e-python"
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
CONSUME_TIMEOUT_S = 120.0
EXTRA_POLL_S = 1.0
MAX_REPORTED = 25
KEY_RE = re.compile(rb"^key-(\d{8})$")


def record_key(i):
    return b"key-%08d" % i


def record_value(i):
    return b"value-%d-" % i + bytes((i * 31 + j) % 251 for j in range(i % 300))


def record_headers(i):
    return [("h-index", str(i).encode()), ("h-client", b"python")]


def codec_of(i, n):
    # inverse of the chunking [c*n//5, (c+1)*n//5)
    for c in range(len(CODECS)):
        if i < (c + 1) * n // len(CODECS):
            return c
    raise AssertionError(i)


def info(msg):
    print("[roundtrip.py] %s" % msg, file=sys.stderr, flush=True)


class Failure(Exception):
    pass


# TLS and SASL settings (--tls-ca-file, --sasl-*) for every client this run makes.
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


def create_topic(bootstrap, topic, partitions):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=CLIENT_ID, **SECURITY)
    try:
        try:
            admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}})
            info("created topic %s with %d partitions" % (topic, partitions))
        except TopicAlreadyExistsError:
            info("topic %s already exists; the checks assume a fresh topic and group" % topic)
        admin.wait_for_topics([topic], timeout_ms=30000)
        desc = admin.describe_topics([topic])
        got = len(desc[0]["partitions"]) if desc else 0
        if got != partitions:
            raise Failure("topic %s has %d partitions, expected %d" % (topic, got, partitions))
        try:
            info("broker API version detected by kafka-python: %s" % (admin._manager.broker_version,))
        except Exception:  # private attribute, informational only
            pass
    finally:
        admin.close()


def produce(bootstrap, topic, n):
    """Returns list meta[i] = (partition, offset)."""
    meta = [None] * n
    errors = []

    def run(c):
        codec = CODECS[c]
        lo, hi = c * n // len(CODECS), (c + 1) * n // len(CODECS)
        producer = None
        try:
            producer = KafkaProducer(
                **SECURITY,
                bootstrap_servers=bootstrap,
                client_id=CLIENT_ID,
                acks="all",
                compression_type=codec,
                linger_ms=5,
            )
            futures = []
            for i in range(lo, hi):
                futures.append(producer.send(topic, key=record_key(i), value=record_value(i),
                                             headers=record_headers(i)))
            producer.flush(timeout=120)
            for i, fut in zip(range(lo, hi), futures):
                try:
                    md = fut.get(timeout=60)
                except Exception as e:  # noqa: BLE001 - report every failure precisely
                    errors.append("produce of record %d (codec %s) failed: %r" % (i, codec, e))
                    if len(errors) > MAX_REPORTED:
                        return
                    continue
                if md.topic != topic:
                    errors.append("record %d acked for topic %r" % (i, md.topic))
                meta[i] = (md.partition, md.offset)
        except Exception as e:  # noqa: BLE001
            errors.append("producer for codec %s failed: %r" % (codec, e))
        finally:
            if producer is not None:
                producer.close(timeout=30)

    threads = [threading.Thread(target=run, args=(c,), name="producer-%s" % CODECS[c])
               for c in range(len(CODECS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise Failure("produce failed (%d+ errors):\n  %s" % (len(errors), "\n  ".join(errors[:MAX_REPORTED])))
    missing = [i for i in range(n) if meta[i] is None]
    if missing:
        raise Failure("no produce metadata for %d records, e.g. %s" % (len(missing), missing[:10]))
    return meta


def consume(bootstrap, topic, n, partitions):
    consumer = KafkaConsumer(
        topic,
        **SECURITY,
        bootstrap_servers=bootstrap,
        client_id=CLIENT_ID,
        group_id=topic + "-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    records = []
    try:
        deadline = time.monotonic() + CONSUME_TIMEOUT_S
        extra_deadline = None
        while True:
            now = time.monotonic()
            if extra_deadline is None and len(records) >= n:
                extra_deadline = now + EXTRA_POLL_S
            if extra_deadline is not None and now >= extra_deadline:
                break
            if now >= deadline:
                break
            batch = consumer.poll(timeout_ms=200)
            for tp, recs in batch.items():
                records.extend(recs)
        timed_out = len(records) < n
        consumer.commit()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        end = consumer.end_offsets(tps)
        commit_errors = []
        for tp in tps:
            committed = consumer.committed(tp)
            if not timed_out and committed != end[tp]:
                commit_errors.append("partition %d: committed offset %s != log end offset %s"
                                     % (tp.partition, committed, end[tp]))
        return records, timed_out, commit_errors, end
    finally:
        consumer.close(autocommit=False)


def verify(records, meta, n, partitions, timed_out, commit_errors, end):
    errs = []

    def err(msg):
        errs.append(msg)

    if timed_out:
        err("timed out after %.0f s: consumed %d of %d records" % (CONSUME_TIMEOUT_S, len(records), n))
    if len(records) != n:
        err("consumed %d records, expected exactly %d" % (len(records), n))
    total_end = sum(end.values())
    if total_end != n:
        err("sum of log end offsets is %d, expected %d (topic not fresh?)" % (total_end, n))
    seen = [False] * n
    last_index = {}   # (partition, codec) -> last index
    last_offset = {}  # partition -> last offset
    for r in records:
        m = KEY_RE.match(r.key or b"")
        if not m:
            err("unexpected key %r at partition %d offset %d" % (r.key, r.partition, r.offset))
            continue
        i = int(m.group(1))
        where = "record %d (partition %d offset %d)" % (i, r.partition, r.offset)
        if i >= n:
            err("%s: index out of range" % where)
            continue
        if seen[i]:
            err("%s: duplicate" % where)
            continue
        seen[i] = True
        if r.partition < 0 or r.partition >= partitions:
            err("%s: partition out of range" % where)
        if (r.partition, r.offset) != meta[i]:
            err("%s: produced at partition %d offset %d" % (where, meta[i][0], meta[i][1]))
        exp = record_value(i)
        if r.value != exp:
            if r.value is None:
                err("%s: value is None" % where)
            else:
                first = next((k for k in range(min(len(r.value), len(exp))) if r.value[k] != exp[k]),
                             min(len(r.value), len(exp)))
                err("%s: value mismatch (len %d, expected %d, first difference at byte %d)"
                    % (where, len(r.value), len(exp), first))
        hdrs = [(k, v) for k, v in (r.headers or [])]
        if hdrs != record_headers(i):
            err("%s: headers %r, expected %r" % (where, hdrs, record_headers(i)))
        if r.partition in last_offset and r.offset <= last_offset[r.partition]:
            err("%s: offset not increasing (previous %d)" % (where, last_offset[r.partition]))
        last_offset[r.partition] = r.offset
        c = codec_of(i, n)
        k = (r.partition, c)
        if k in last_index and i <= last_index[k]:
            err("%s: codec %s index not increasing in partition (previous %d)"
                % (where, CODECS[c], last_index[k]))
        last_index[k] = i
    missing = [i for i in range(n) if not seen[i]]
    if missing:
        err("%d records missing, e.g. %s" % (len(missing), missing[:10]))
    errs.extend(commit_errors)
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", required=True, help="HOST:PORT")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--records", type=int, required=True)
    ap.add_argument("--log-level", default="WARNING", help="python logging level (e.g. INFO, DEBUG)")
    ap.add_argument("--tls-ca-file", help="connect with TLS, trusting this CA (PEM)")
    ap.add_argument("--sasl-mechanism", choices=["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
    ap.add_argument("--sasl-user")
    ap.add_argument("--sasl-password")
    args = ap.parse_args()
    SECURITY.update(security_settings(args))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.INFO:
        # kafka-python 3.x warns whenever an event-loop task runs >100 ms, which
        # five producer threads sharing the GIL on a small machine trigger all
        # the time; it is noise here, not a protocol problem.
        logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    n = args.records
    if n < 0 or args.partitions < 1:
        ap.error("bad --records/--partitions")

    try:
        info("kafka-python %s, bootstrap %s, topic %s, %d partitions, %d records"
             % (kafka.__version__, args.bootstrap, args.topic, args.partitions, n))
        t0 = time.monotonic()
        create_topic(args.bootstrap, args.topic, args.partitions)
        t1 = time.monotonic()
        meta = produce(args.bootstrap, args.topic, n)
        t2 = time.monotonic()
        info("produced %d records in %.1f s" % (n, t2 - t1))
        records, timed_out, commit_errors, end = consume(args.bootstrap, args.topic, n, args.partitions)
        t3 = time.monotonic()
        info("consumed %d records in %.1f s" % (len(records), t3 - t2))
        errs = verify(records, meta, n, args.partitions, timed_out, commit_errors, end)
    except Failure as e:
        print("FAIL python roundtrip: %s" % e, file=sys.stderr)
        return 1
    if errs:
        print("FAIL python roundtrip: %d problem(s):" % len(errs), file=sys.stderr)
        for e in errs[:MAX_REPORTED]:
            print("  " + e, file=sys.stderr)
        if len(errs) > MAX_REPORTED:
            print("  ... and %d more" % (len(errs) - MAX_REPORTED), file=sys.stderr)
        return 1
    print("OK python roundtrip %d records" % n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
