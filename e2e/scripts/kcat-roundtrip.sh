#!/usr/bin/env bash
# Floe e2e: produce/consume round trip with kcat (Debian's kcat 1.7.1 on
# librdkafka 2.0.2).
#
#   kcat-roundtrip.sh HOST:PORT TOPIC N
#
# The caller has already created TOPIC (fresh, e.g. 12 partitions). KCAT_CONFIG names a librdkafka
# properties file every kcat run reads (-F), e.g. security.protocol=sasl_ssl and its settings.
#
# Produce: N records, split across five kcat runs, one per codec
#   none, gzip, snappy, lz4, zstd; records i in [c*N/5, (c+1)*N/5) use codec c.
#   key   = "key-%08d" % i
#   value = "value-<i>-" + a deterministic a-z pattern of length i % 300
#           (chr(97 + (i*31 + j) % 26) for j in range(i % 300)); kcat reads
#           line-delimited input, so values are printable.
#   headers: kcat's -H applies to every message of a run, so headers are
#           constant per codec run: [h-client=kcat, h-codec=<codec>]. The
#           per-record index is carried by the key, not by a header.
#   -X acks=all (request.required.acks=-1). kcat exits 1 when any delivery
#   report failed (stats.tx_err_dr) and, without -E, also terminates with 1 on
#   errors such as "all brokers down". message.timeout.ms bounds how long a
#   failed delivery takes to surface (KCAT_MSG_TIMEOUT_MS, default 60000).
#
# Consume, three passes, each kcat wrapped in `timeout` (KCAT_TIMEOUT, 120 s):
#   1. kcat -C (simple consumer, all partitions, -o beginning -e): full
#      verification of the log.
#   2. kcat -G GROUP -o beginning -e: a real consumer group (JoinGroup/
#      SyncGroup/Heartbeat/OffsetCommit/LeaveGroup); kcat 1.7.1 -e in -G mode
#      exits once every *assigned* partition reached EOF, which is reliable with
#      a single member. Same full verification on its output. kcat commits the
#      consumed offsets (enable.auto.commit) when it closes.
#   3. kcat -G GROUP -e again, without -o and with auto.offset.reset=earliest:
#      must resume from the committed offsets and therefore see 0 records
#      (if the commits were lost it would re-read everything and fail; checked
#      by resetting the group's offsets to 0 between passes 2 and 3).
#      Note the "topic." prefix: kcat 1.7.1 routes some -X names to the topic
#      config (e.g. `-X enable.auto.commit=false` lands on the legacy topic
#      property auto.commit.enable and leaves the global one true; check with
#      `-X dump`), so the topic-level property is set explicitly.
#
# Full verification (python3): exactly N distinct keys, values byte-for-byte
# (also against kcat's %S length), headers exactly h-client=kcat,h-codec=<c>
# matching the key's codec, per partition offsets contiguous from 0 (fresh,
# non-transactional topic), and per partition per codec strictly increasing
# index in consumed order.
#
# Prints "OK kcat roundtrip N records" on success; exit 1 with the reason on
# stderr otherwise.
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
FMT='%p\t%o\t%k\t%h\t%S\t%s\n'

WORK="$(mktemp -d "${TMPDIR:-/tmp}/kcat-roundtrip.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

fail() {
    echo "FAIL kcat roundtrip: $*" >&2
    exit 1
}

# run_kcat LOGNAME kcat-args... : runs kcat with a timeout, stderr to a log;
# on failure shows the log tail.
run_kcat() {
    local name="$1"; shift
    local rc=0
    timeout --kill-after=10 "$KCAT_TIMEOUT" "$KCAT" -b "$BOOT" ${KCAT_CONFIG:+-F "$KCAT_CONFIG"} -X client.id=floe-e2e-kcat "$@" \
        2>"$WORK/$name.log" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "--- kcat $name stderr (tail) ---" >&2
        tail -n 20 "$WORK/$name.log" >&2 || true
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            fail "kcat $name timed out after ${KCAT_TIMEOUT}s"
        fi
        fail "kcat $name exited with $rc"
    fi
}

# ---------------------------------------------------------------- the checker
cat >"$WORK/check.py" <<'PYEOF'
import sys

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def key(i):
    return "key-%08d" % i


def value(i):
    return "value-%d-" % i + "".join(chr(97 + (i * 31 + j) % 26) for j in range(i % 300))


def codec_of(i, n):
    for c in range(len(CODECS)):
        if i < (c + 1) * n // len(CODECS):
            return c
    raise AssertionError(i)


def gen(n, outdir):
    for c, name in enumerate(CODECS):
        lo, hi = c * n // 5, (c + 1) * n // 5
        with open("%s/in-%s.txt" % (outdir, name), "w") as f:
            for i in range(lo, hi):
                f.write("%s\t%s\n" % (key(i), value(i)))


def verify(n, nparts, path, what):
    errs = []
    seen = [False] * n
    next_offset = {}
    last_index = {}
    lines = 0
    with open(path, "rb") as f:
        data = f.read()
    for lineno, raw in enumerate(data.split(b"\n")[:-1] if data else [], 1):
        lines += 1
        if len(errs) > 25:
            break
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            errs.append("line %d: not ASCII: %r" % (lineno, raw[:80]))
            continue
        parts = line.split("\t", 5)
        if len(parts) != 6:
            errs.append("line %d: malformed kcat output %r" % (lineno, line[:120]))
            continue
        p, o, k, h, slen, v = parts
        p, o = int(p), int(o)
        if not (k.startswith("key-") and len(k) == 12 and k[4:].isdigit()):
            errs.append("partition %d offset %d: unexpected key %r" % (p, o, k))
            continue
        i = int(k[4:])
        where = "record %d (partition %d offset %d)" % (i, p, o)
        if not 0 <= p < nparts:
            errs.append("%s: partition out of range [0, %d)" % (where, nparts))
        if i >= n:
            errs.append("%s: index out of range" % where)
            continue
        if seen[i]:
            errs.append("%s: duplicate" % where)
            continue
        seen[i] = True
        exp = value(i)
        if v != exp:
            first = next((x for x in range(min(len(v), len(exp))) if v[x] != exp[x]), min(len(v), len(exp)))
            errs.append("%s: value mismatch (len %d, expected %d, first difference at byte %d)"
                        % (where, len(v), len(exp), first))
        if slen != str(len(exp)):
            errs.append("%s: kcat reports value length %s, expected %d" % (where, slen, len(exp)))
        c = codec_of(i, n)
        exp_h = "h-client=kcat,h-codec=%s" % CODECS[c]
        if h != exp_h:
            errs.append("%s: headers %r, expected %r" % (where, h, exp_h))
        want = next_offset.get(p, 0)
        if o != want:
            errs.append("%s: offset %d, expected %d (gap, reorder or duplicate)" % (where, o, want))
        next_offset[p] = o + 1
        kk = (p, c)
        if kk in last_index and i <= last_index[kk]:
            errs.append("%s: codec %s index not increasing in partition (previous %d)"
                        % (where, CODECS[c], last_index[kk]))
        last_index[kk] = i
    if lines != n:
        errs.append("consumed %d records, expected exactly %d" % (lines, n))
    missing = [i for i in range(n) if not seen[i]]
    if missing:
        errs.append("%d records missing, e.g. %s" % (len(missing), missing[:10]))
    if errs:
        print("FAIL kcat roundtrip (%s): %d problem(s):" % (what, len(errs)), file=sys.stderr)
        for e in errs[:25]:
            print("  " + e, file=sys.stderr)
        sys.exit(1)
    print("[kcat-roundtrip] %s: %d records verified in %d partitions"
          % (what, n, len(next_offset)), file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "verify":
        verify(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        raise SystemExit("bad mode")
PYEOF

info() { echo "[kcat-roundtrip] $*" >&2; }

info "$("$KCAT" -V 2>&1 | grep -m1 Version), bootstrap $BOOT, topic $TOPIC, $N records"

# The topic must exist (created by the caller).
run_kcat metadata -L -t "$TOPIC" -J -m 30 >"$WORK/metadata.json"
PARTS="$("$PY" -c '
import json, sys
md = json.load(open(sys.argv[1]))
t = [t for t in md.get("topics", []) if t.get("topic") == sys.argv[2]]
if not t or t[0].get("error") or not t[0].get("partitions"):
    sys.exit("topic %s not found in metadata: %r" % (sys.argv[2], t))
print(len(t[0]["partitions"]))
' "$WORK/metadata.json" "$TOPIC")" || fail "topic $TOPIC does not exist"
info "topic $TOPIC has $PARTS partitions"

# ------------------------------------------------------------------- produce
"$PY" "$WORK/check.py" gen "$N" "$WORK"
t0=$(date +%s%N)
for c in "${CODECS[@]}"; do
    run_kcat "produce-$c" -P -t "$TOPIC" -z "$c" -K '\t' \
        -H h-client=kcat -H "h-codec=$c" \
        -X acks=all -X "message.timeout.ms=$MSG_TIMEOUT_MS" \
        <"$WORK/in-$c.txt"
done
t1=$(date +%s%N)
info "produced $N records in $(( (t1 - t0) / 1000000 )) ms"

# ------------------------------------------------------- consume 1: simple -C
run_kcat consume-C -C -t "$TOPIC" -o beginning -e -f "$FMT" >"$WORK/out-C.txt"
"$PY" "$WORK/check.py" verify "$N" "$PARTS" "$WORK/out-C.txt" "kcat -C"

# ---------------------------------------------- consume 2: consumer group -G
run_kcat consume-G -G "$GROUP" -o beginning -e -f "$FMT" \
    -X topic.auto.offset.reset=earliest "$TOPIC" >"$WORK/out-G.txt"
"$PY" "$WORK/check.py" verify "$N" "$PARTS" "$WORK/out-G.txt" "kcat -G $GROUP"

# ---------------------- consume 3: same group resumes from committed offsets
run_kcat consume-G2 -G "$GROUP" -e -f "$FMT" \
    -X topic.auto.offset.reset=earliest "$TOPIC" >"$WORK/out-G2.txt"
again="$(wc -l <"$WORK/out-G2.txt")"
if [ "$again" -ne 0 ]; then
    fail "group $GROUP re-consumed $again records after committing (committed offsets not honoured)"
fi
info "group $GROUP resumed at committed offsets (0 records re-consumed)"
t2=$(date +%s%N)
info "consumed and verified 3 passes in $(( (t2 - t1) / 1000000 )) ms"

echo "OK kcat roundtrip $N records"
