#!/usr/bin/env python3
"""Hand-built record batches against a broker, to compare Floe's produce validation with Apache
Kafka's (agent/DESIGN.md, "Produce validation"). Prints each probe's partition error code.

    kafka-reference.sh start DIR 19392   # a real Kafka 4.1.1, loopback only
    (create topic "probes" with 1 partition)
    ~/.cache/floe/venv/bin/python e2e/scripts/record-probes.py 127.0.0.1:19392 probes

Needs the e2e venv (zstandard, crc32c). Produce v9, acks=all, partition 0.
"""
import socket, struct, sys, zlib, time
import zstandard, crc32c

def varint(value):
    raw = (value << 1) ^ (value >> 63)
    raw &= (1 << 64) - 1
    out = bytearray()
    while raw >= 0x80:
        out.append((raw & 0x7f) | 0x80); raw >>= 7
    out.append(raw)
    return bytes(out)

def record(index, key=b"k", value=b"v", offset_delta=None, length=None, headers=(), extra=b""):
    body = bytes([0]) + varint(0) + varint(index if offset_delta is None else offset_delta)
    body += (varint(-1) if key is None else varint(len(key)) + key)
    body += (varint(-1) if value is None else varint(len(value)) + value)
    body += varint(len(headers))
    for hk, hv in headers:
        body += varint(len(hk)) + hk + varint(len(hv)) + hv
    body += extra
    return varint(len(body) if length is None else length) + body

def batch(payload, count, codec=0):
    ts = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", codec, count - 1, ts, ts, -1, -1, -1, count) + payload
    crc = crc32c.crc32c(after_crc)
    head = struct.pack(">ib", 0, 2) + struct.pack(">I", crc)
    body = head + after_crc
    return struct.pack(">qi", 0, len(body)) + body

def zstd(data):
    return zstandard.ZstdCompressor(level=3).compress(data)

def compact_string(s):
    return varint_u(len(s) + 1) + s
def varint_u(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7f) | 0x80); v >>= 7
    out.append(v); return bytes(out)

def produce(addr, topic, batches, correlation=1):
    # Produce v9 (flexible): transactional_id compact nullable, acks, timeout, topics compact array
    body = varint_u(0) + struct.pack(">hi", -1, 30000) + varint_u(2)
    body += compact_string(topic.encode()) + varint_u(len(batches) + 1)
    for index, records in batches:
        body += struct.pack(">i", index) + varint_u(len(records) + 1) + records + varint_u(0)
    body += varint_u(0) + varint_u(0)
    header = struct.pack(">hhi", 0, 9, correlation) + struct.pack(">h", 5) + b"probe" + varint_u(0)
    frame = header + body
    sock = socket.create_connection(addr.split(":") and (addr.split(":")[0], int(addr.split(":")[1])))
    sock.settimeout(60)
    sock.sendall(struct.pack(">i", len(frame)) + frame)
    size = struct.unpack(">i", recvn(sock, 4))[0]
    data = recvn(sock, size)
    sock.close()
    # response header v1: correlation id + tagged fields
    pos = 4 + 1
    n_topics = data[pos] - 1; pos += 1
    results = []
    for _ in range(n_topics):
        name_len = data[pos] - 1; pos += 1 + name_len
        n_parts = data[pos] - 1; pos += 1
        for _ in range(n_parts):
            index, code, base = struct.unpack(">ihq", data[pos:pos + 14]); pos += 14
            results.append((index, code, base))
            pos += 8 + 8  # log_append_time, log_start_offset
            n_rec_err = data[pos] - 1; pos += 1
            for _ in range(max(n_rec_err, 0)):
                pos += 4
                l = data[pos] - 1; pos += 1 + max(l, 0); pos += 1
            l, = (data[pos] - 1,); pos += 1
            msg = data[pos:pos + max(l, 0)]; pos += max(l, 0)
            pos += 1  # tags
            results[-1] = results[-1] + (msg.decode(errors="replace"),)
    return results

def recvn(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk: raise EOFError
        out += chunk
    return out

if __name__ == "__main__":
    addr, topic = sys.argv[1], sys.argv[2]
    three = record(0) + record(1) + record(2)
    probes = {
        "valid-none": batch(three, 3),
        "valid-zstd": batch(zstd(three), 3, 4),
        "poison-pill-zstd": batch(zstd(bytes(60_000_000)), 60_000_000, 4),
        "empty-records-none": batch(bytes(10), 10),
        "offset-delta-wrong-none": batch(record(0) + record(1, offset_delta=5) + record(2), 3),
        "offset-delta-wrong-zstd": batch(zstd(record(0) + record(1, offset_delta=5) + record(2)), 3, 4),
        "trailing-bytes-none": batch(three + b"\x00\x00", 3),
        "trailing-bytes-zstd": batch(zstd(three + bytes(1 << 20)), 3, 4),
        "fewer-records-none": batch(three, 4),
        "fewer-records-zstd": batch(zstd(three), 4, 4),
        "bytes-after-headers-none": batch(record(0) + record(1, extra=b"\x00\x00") + record(2), 3),
        "key-past-end-zstd": batch(zstd(record(0) + record(1, length=4) + record(2)), 3, 4),
        "negative-header-count-none": batch(record(0)[:-1] + b"\x01" , 1),
        "bad-crc-none": batch(three, 3)[:-1] + b"\x01",
    }
    for name, records in probes.items():
        try:
            print(name, len(records), produce(addr, topic, [(0, records)]), flush=True)
        except Exception as error:
            print(name, "ERROR", repr(error), flush=True)
