#!/usr/bin/env bash
# Floe e2e: a verifiable-client adapter for kcat (Debian's kcat 1.7.1 on librdkafka 2.0.2); the
# contract is e2e/README.md. It reports what kcat did as JSON events on stdout and checks nothing
# about the data; the Rust suites (clients.rs, sasl.rs) check the events with floe_e2e::verifiable.
#
#   kcat-roundtrip.sh HOST:PORT TOPIC N
#
# The caller has already created TOPIC (fresh). KCAT_CONFIG names a librdkafka properties file
# every kcat run reads (-F), e.g. security.protocol=sasl_ssl and its settings.
#
# Produce: records [0, N) of the shared format, five kcat -P runs, one per codec (none, gzip,
#   snappy, lz4, zstd), records [c*N/5, (c+1)*N/5) through codec c, -X acks=all. Keys and values
#   are binary-safe: the input separates key and value by the byte 0xfe and records by 0xff
#   (-K '\xfe' -D '\xff'), bytes no key or value of the format holds. kcat's -H applies to every
#   message of a run, so the headers are per run: h-client=kcat, h-codec=<codec>
#   (floe_e2e::records::run_headers). kcat prints no offsets of what it produced: a run that exits
#   0 had every delivery report succeed, and each of its records is reported acknowledged without
#   a partition and offset; a run that fails reports each of its records as a send error.
# Consume: three kcat runs, each wrapped in `timeout` (KCAT_TIMEOUT, 120 s), each record reported
#   with "consumer" naming the run:
#   simple         kcat -C -o beginning -e: every partition from the start.
#   group          kcat -G GROUP -o beginning -e: a consumer group (JoinGroup, SyncGroup,
#                  OffsetCommit, LeaveGroup; kcat commits what it consumed when it closes).
#   group-resumed  kcat -G GROUP -e again, auto.offset.reset=earliest: it resumes from the commits
#                  (a lost commit would re-read everything). Note the "topic." prefix: kcat 1.7.1
#                  routes some -X names to the topic config.
#   kcat -f prints '%p %o %K %S %h' and then the key and value bytes, whose lengths make the output
#   binary-safe; a kcat run that fails is reported as a consumer_error.
#
# Exit 0 after shutdown_complete; 1 when it cannot go on (no topic), 2 on bad usage.
set -euo pipefail

if [ $# -ne 3 ]; then
    echo "usage: $0 HOST:PORT TOPIC N" >&2
    exit 2
fi
BOOT="$1"
TOPIC="$2"
N="$3"
case "$N" in ''|*[!0-9]*) echo "N must be a non-negative integer" >&2; exit 2 ;; esac

PY="${PYTHON:-python3}"
KCAT="${KCAT:-kcat}"
KCAT_TIMEOUT="${KCAT_TIMEOUT:-120}"
MSG_TIMEOUT_MS="${KCAT_MSG_TIMEOUT_MS:-60000}"
GROUP="${TOPIC}-kcat-group"
CODECS=(none gzip snappy lz4 zstd)
FMT='%p %o %K %S %h\n%k%s\n'

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kcat-roundtrip.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

info() { echo "[kcat-roundtrip] $*" >&2; }

# kcat_run LOGNAME kcat-args...: runs kcat with a timeout, its stderr to the log and to ours; the
# exit status is kcat's (124/137 on a timeout).
kcat_run() {
    local name="$1"; shift
    local rc=0
    timeout --kill-after=10 "$KCAT_TIMEOUT" "$KCAT" -b "$BOOT" ${KCAT_CONFIG:+-F "$KCAT_CONFIG"} -X client.id=floe-e2e-kcat "$@" \
        2>"$WORK/$name.log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        info "kcat $name exited with $rc; the end of its stderr:"
        tail -n 20 "$WORK/$name.log" >&2 || true
    fi
    return "$rc"
}

# --------------------------------------------------- events (and the inputs kcat -P reads)
cat >"$WORK/events.py" <<'PYEOF'
import json
import sys

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def emit(name, **fields):
    fields["name"] = name
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")


# Record i of the shared format; floe_e2e::records (e2e/src/lib.rs) is the one the checks use.
def key(i):
    return b"key-%08d" % i


def value(i):
    return b"value-%d-" % i + bytes((i * 31 + j) % 251 for j in range(i % 300))


def run_range(n, c):
    return range(c * n // len(CODECS), (c + 1) * n // len(CODECS))


def inputs(n, directory):
    for c, codec in enumerate(CODECS):
        with open("%s/in-%s.bin" % (directory, codec), "wb") as f:
            for i in run_range(n, c):
                f.write(key(i) + b"\xfe" + value(i) + b"\xff")


def produced(topic, n, codec, status, log):
    for i in run_range(n, CODECS.index(codec)):
        if status == "0":
            emit("producer_send_success", topic=topic, partition=None, offset=None, index=i, producer=codec)
        else:
            emit("producer_send_error", topic=topic, index=i, error="kcat -P (%s) exited with %s: %s" % (codec, status, log))


def consumed(topic, consumer, path):
    """kcat -f '%p %o %K %S %h\\n%k%s\\n' output as record_consumed events."""
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        partition, offset, key_length, value_length, headers = data[at:end].decode().split(" ", 4)
        at = end + 1
        key_length, value_length = int(key_length), int(value_length)
        record_key = data[at:at + key_length] if key_length >= 0 else None
        at += max(key_length, 0)
        record_value = data[at:at + value_length] if value_length >= 0 else None
        at += max(value_length, 0) + 1
        pairs = [pair.split("=", 1) for pair in headers.split(",") if pair] if headers else []
        emit("record_consumed", topic=topic, partition=int(partition), offset=int(offset),
             key=None if record_key is None else record_key.hex(),
             value=None if record_value is None else record_value.hex(),
             headers=[{"key": k, "value": v.encode().hex()} for k, v in pairs], consumer=consumer)


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "emit":
        emit(args[0], **json.loads(args[1]))
    elif command == "inputs":
        inputs(int(args[0]), args[1])
    elif command == "produced":
        produced(args[0], int(args[1]), args[2], args[3], args[4])
    elif command == "consumed":
        consumed(args[0], args[1], args[2])
    else:
        raise SystemExit("bad command %s" % command)
PYEOF
events() { "$PY" "$WORK/events.py" "$@"; }

events emit startup_complete '{"client": "kcat"}'
info "$("$KCAT" -V 2>&1 | grep -m1 Version), bootstrap $BOOT, topic $TOPIC, $N records"

# The topic must exist (created by the caller).
kcat_run metadata -L -t "$TOPIC" -J -m 30 >"$WORK/metadata.json" || { echo "FAIL kcat roundtrip: no metadata" >&2; exit 1; }
"$PY" -c '
import json, sys
md = json.load(open(sys.argv[1]))
t = [t for t in md.get("topics", []) if t.get("topic") == sys.argv[2]]
if not t or t[0].get("error") or not t[0].get("partitions"):
    sys.exit("FAIL kcat roundtrip: topic %s not found in metadata: %r" % (sys.argv[2], t))
' "$WORK/metadata.json" "$TOPIC"

# ------------------------------------------------------------------- produce
events inputs "$N" "$WORK"
for c in "${CODECS[@]}"; do
    rc=0
    kcat_run "produce-$c" -P -t "$TOPIC" -z "$c" -K '\xfe' -D '\xff' \
        -H h-client=kcat -H "h-codec=$c" \
        -X acks=all -X "message.timeout.ms=$MSG_TIMEOUT_MS" <"$WORK/in-$c.bin" || rc=$?
    events produced "$TOPIC" "$N" "$c" "$rc" "$(tail -n 1 "$WORK/produce-$c.log")"
done

# ------------------------------------------------------------------- consume
# consume NAME kcat-args...: one consumer run, its records (or its failure) as events.
consume() {
    local name="$1"; shift
    local rc=0
    kcat_run "consume-$name" "$@" -e -f "$FMT" >"$WORK/out-$name.bin" || rc=$?
    events consumed "$TOPIC" "$name" "$WORK/out-$name.bin"
    if [ "$rc" -ne 0 ]; then
        events emit consumer_error "{\"consumer\": \"$name\", \"error\": \"kcat exited with $rc\"}"
    fi
}
consume simple -C -t "$TOPIC" -o beginning
consume group -G "$GROUP" -o beginning -X topic.auto.offset.reset=earliest "$TOPIC"
consume group-resumed -G "$GROUP" -X topic.auto.offset.reset=earliest "$TOPIC"

events emit shutdown_complete '{}'
