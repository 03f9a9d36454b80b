package dev.floe.e2e;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.BitSet;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.Utils;

/**
 * End-to-end checks of a Kafka-compatible server using the real Apache Kafka Java client.
 *
 * <p>Subcommands: {@code roundtrip}, {@code produce-range}, {@code group-consume}, {@code admin},
 * {@code idempotence}. See README.md.
 * Exit status: 0 = all checks passed, 1 = a check failed, 2 = usage error.
 */
public final class Main {

    static final String CLIENT_ID = "floe-e2e-java";
    static final int REQUEST_TIMEOUT_MS = 30_000;
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final Duration CONSUME_DEADLINE = Duration.ofSeconds(120);
    static final Duration ASSIGNMENT_DEADLINE = Duration.ofSeconds(60);
    /** After the expected records are in, keep polling this long to catch duplicates and extras. */
    static final Duration DRAIN = Duration.ofMillis(1500);
    static final int MAX_REPORTED_ERRORS = 20;

    /** A check failed: message is printed to stderr, exit status 1. */
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) {
            super(msg);
        }

        CheckFailed(String msg, Throwable cause) {
            super(msg, cause);
        }
    }

    /** Bad command line: exit status 2. */
    static final class UsageError extends RuntimeException {
        UsageError(String msg) {
            super(msg);
        }
    }

    public static void main(String[] argv) {
        int status;
        String sub = argv.length > 0 ? argv[0] : "";
        try {
            Args args = Args.parse(Arrays.copyOfRange(argv, Math.min(1, argv.length), argv.length));
            switch (sub) {
                case "roundtrip" -> roundtrip(args);
                case "produce-range" -> produceRange(args);
                case "produce-until" -> produceUntil(args);
                case "group-consume" -> groupConsume(args);
                case "admin" -> adminMode(args);
                case "idempotence" -> idempotence(args);
                case "verify-topic" -> verifyTopic(args);
                default -> throw new UsageError("unknown subcommand '" + sub + "'");
            }
            status = 0;
        } catch (UsageError e) {
            System.err.println("usage error: " + e.getMessage());
            System.err.println(USAGE);
            status = 2;
        } catch (CheckFailed e) {
            System.err.println("FAIL java " + sub + ": " + e.getMessage());
            if (e.getCause() != null) {
                e.getCause().printStackTrace(System.err);
            }
            status = 1;
        } catch (Throwable t) {
            System.err.println("FAIL java " + sub + ": unexpected exception: " + t);
            t.printStackTrace(System.err);
            status = 1;
        }
        System.out.flush();
        System.err.flush();
        // Kafka client threads are all closed by now, but never let a straggler keep the JVM alive.
        System.exit(status);
    }

    static final String USAGE = String.join("\n",
            "usage: java -cp 'floe-e2e-java.jar:libs/*' dev.floe.e2e.Main <subcommand> [--name value ...]",
            "  roundtrip     --bootstrap HOST:PORT --topic T [--partitions 12] --records N",
            "  produce-range --bootstrap HOST:PORT --topic T [--partitions 12] --start S --count C",
            "  produce-until --bootstrap HOST:PORT --topic T [--partitions 12] --rate R --stop-file F --acks-file A",
            "                [--idempotent true|false] [--tolerate-failures true|false]",
            "  group-consume --bootstrap HOST:PORT --topic T --group G [--members 3] --expect-start S --expect-count C",
            "  admin         --bootstrap HOST:PORT --topic T",
            "  idempotence   --bootstrap HOST:PORT --topic T [--partitions 6] --records N",
            "  verify-topic  --bootstrap HOST:PORT --topic T --records N --client NAME");

    // ---------------------------------------------------------------------------------------------
    // Argument parsing
    // ---------------------------------------------------------------------------------------------

    static final class Args {
        private final Map<String, String> values = new HashMap<>();

        static Args parse(String[] argv) {
            Args a = new Args();
            for (int k = 0; k < argv.length; k++) {
                String name = argv[k];
                if (!name.startsWith("--") || name.length() <= 2) {
                    throw new UsageError("expected --name, got '" + name + "'");
                }
                if (k + 1 >= argv.length) {
                    throw new UsageError("missing value for " + name);
                }
                a.values.put(name.substring(2), argv[++k]);
            }
            return a;
        }

        String str(String name) {
            String v = values.get(name);
            if (v == null || v.isEmpty()) {
                throw new UsageError("missing required --" + name);
            }
            return v;
        }

        int integer(String name, Integer dflt) {
            String v = values.get(name);
            if (v == null) {
                if (dflt == null) {
                    throw new UsageError("missing required --" + name);
                }
                return dflt;
            }
            try {
                int n = Integer.parseInt(v);
                if (n < 0) {
                    throw new UsageError("--" + name + " must be >= 0, got " + v);
                }
                return n;
            } catch (NumberFormatException e) {
                throw new UsageError("--" + name + " is not an integer: '" + v + "'");
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Record format (shared with the other e2e clients: keep byte-for-byte identical)
    // ---------------------------------------------------------------------------------------------

    static byte[] key(long i) {
        return String.format("key-%08d", i).getBytes(StandardCharsets.UTF_8);
    }

    static byte[] value(long i) {
        byte[] prefix = ("value-" + i + "-").getBytes(StandardCharsets.UTF_8);
        int n = (int) (i % 300);
        byte[] out = Arrays.copyOf(prefix, prefix.length + n);
        for (int j = 0; j < n; j++) {
            out[prefix.length + j] = (byte) ((i * 31 + j) % 251);
        }
        return out;
    }

    static RecordHeaders headers(long i) {
        return headers(i, "java");
    }

    /** The headers record i carries when the client named {@code client} produced it. */
    static RecordHeaders headers(long i, String client) {
        RecordHeaders h = new RecordHeaders();
        h.add("h-index", Long.toString(i).getBytes(StandardCharsets.UTF_8));
        h.add("h-client", client.getBytes(StandardCharsets.UTF_8));
        return h;
    }

    /** Returns the index encoded in a key, or -1 if the key is not of the form key-%08d. */
    static long parseKey(byte[] key) {
        if (key == null) {
            return -1;
        }
        String s = new String(key, StandardCharsets.UTF_8);
        if (!s.startsWith("key-") || s.length() < 12) {
            return -1;
        }
        String digits = s.substring(4);
        for (int k = 0; k < digits.length(); k++) {
            if (!Character.isDigit(digits.charAt(k))) {
                return -1;
            }
        }
        try {
            long i = Long.parseLong(digits);
            return Arrays.equals(key(i), key) ? i : -1;
        } catch (NumberFormatException e) {
            return -1;
        }
    }

    /** Returns null if value and headers are what record i must carry, else a description of the difference. */
    static String checkPayload(long i, ConsumerRecord<byte[], byte[]> r) {
        return checkPayload(i, r, "java");
    }

    static String checkPayload(long i, ConsumerRecord<byte[], byte[]> r, String client) {
        byte[] want = value(i);
        byte[] got = r.value();
        if (got == null) {
            return "value is null";
        }
        if (!Arrays.equals(want, got)) {
            int at = Arrays.mismatch(want, got);
            return "value mismatch (expected " + want.length + " bytes, got " + got.length
                    + " bytes, first difference at byte " + at + ")";
        }
        Header[] hs = r.headers().toArray();
        Header[] wantHs = headers(i, client).toArray();
        if (hs.length != wantHs.length) {
            return "expected " + wantHs.length + " headers, got " + hs.length + ": " + describeHeaders(hs);
        }
        for (int k = 0; k < wantHs.length; k++) {
            if (!wantHs[k].key().equals(hs[k].key()) || !Arrays.equals(wantHs[k].value(), hs[k].value())) {
                return "header mismatch: expected " + describeHeaders(wantHs) + ", got " + describeHeaders(hs);
            }
        }
        return null;
    }

    static String describeHeaders(Header[] hs) {
        List<String> out = new ArrayList<>();
        for (Header h : hs) {
            out.add(h.key() + "=" + (h.value() == null ? "null" : "'" + new String(h.value(), StandardCharsets.UTF_8) + "'"));
        }
        return out.toString();
    }

    /** Partition the default partitioner picks for a keyed record (murmur2, same as the client). */
    static int expectedPartition(byte[] key, int partitions) {
        return Utils.toPositive(Utils.murmur2(key)) % partitions;
    }

    /** Collects check failures; reports the first few and the total. */
    static final class Errors {
        private final List<String> first = new ArrayList<>();
        private int count;

        synchronized void add(String msg) {
            count++;
            if (first.size() < MAX_REPORTED_ERRORS) {
                first.add(msg);
            }
        }

        synchronized boolean isEmpty() {
            return count == 0;
        }

        synchronized void throwIfAny(String what) {
            if (count == 0) {
                return;
            }
            StringBuilder sb = new StringBuilder(what + ": " + count + " problem(s)");
            for (String s : first) {
                sb.append("\n  - ").append(s);
            }
            if (count > first.size()) {
                sb.append("\n  ... and ").append(count - first.size()).append(" more");
            }
            throw new CheckFailed(sb.toString());
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Client configuration
    // ---------------------------------------------------------------------------------------------

    static Properties common(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("client.id", CLIENT_ID);
        p.put("request.timeout.ms", Integer.toString(REQUEST_TIMEOUT_MS));
        return p;
    }

    static Admin admin(String bootstrap) {
        Properties p = common(bootstrap);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        return Admin.create(p);
    }

    static KafkaProducer<byte[], byte[]> producer(String bootstrap, String codec) {
        Properties p = common(bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // enable.idempotence intentionally left at its default (true).
        return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> consumer(String bootstrap, String group, boolean groupTimeouts) {
        Properties p = common(bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (groupTimeouts) {
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        }
        return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    // ---------------------------------------------------------------------------------------------
    // Topic management
    // ---------------------------------------------------------------------------------------------

    /** Creates the topic (RF 1) or accepts an existing one with exactly the wanted partition count. */
    static void ensureTopic(Admin admin, String topic, int partitions) throws Exception {
        try {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(60, TimeUnit.SECONDS);
            System.out.println("created topic " + topic + " with " + partitions + " partitions");
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw new CheckFailed("CreateTopics(" + topic + ") failed: " + e.getCause(), e.getCause());
            }
            int have = partitionCount(admin, topic);
            if (have != partitions) {
                throw new CheckFailed("topic " + topic + " already exists with " + have
                        + " partitions, expected " + partitions);
            }
            System.out.println("topic " + topic + " already exists with " + partitions + " partitions");
        }
    }

    static int partitionCount(Admin admin, String topic) throws Exception {
        try {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS).get(topic);
            return d.partitions().size();
        } catch (ExecutionException e) {
            throw new CheckFailed("DescribeTopics(" + topic + ") failed: " + e.getCause(), e.getCause());
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Producing
    // ---------------------------------------------------------------------------------------------

    /** Where the broker said each record landed, indexed by i - start. */
    static final class Produced {
        final long start;
        final int[] partition;
        final long[] offset;

        Produced(long start, int count) {
            this.start = start;
            this.partition = new int[count];
            this.offset = new long[count];
            Arrays.fill(this.partition, -1);
            Arrays.fill(this.offset, -1);
        }
    }

    /**
     * Produces records [from, to) with one producer using the given codec, then flushes, closes and
     * checks every send future. Metadata is stored into {@code out}.
     */
    static void produce(String bootstrap, String topic, int partitions, String codec, long from, long to,
                        Produced out) {
        List<Future<RecordMetadata>> futures = new ArrayList<>((int) (to - from));
        KafkaProducer<byte[], byte[]> producer = producer(bootstrap, codec);
        try {
            for (long i = from; i < to; i++) {
                futures.add(producer.send(new ProducerRecord<>(topic, null, null, key(i), value(i), headers(i))));
            }
            producer.flush();
        } finally {
            producer.close(Duration.ofSeconds(60));
        }
        Errors errors = new Errors();
        for (long i = from; i < to; i++) {
            Future<RecordMetadata> f = futures.get((int) (i - from));
            try {
                RecordMetadata md = f.get(0, TimeUnit.SECONDS);
                byte[] k = key(i);
                int want = expectedPartition(k, partitions);
                if (md.partition() != want) {
                    errors.add("record " + i + " (" + codec + ") went to partition " + md.partition()
                            + ", default partitioner should pick " + want);
                }
                if (md.offset() < 0) {
                    errors.add("record " + i + " (" + codec + ") acked without an offset (" + md.offset() + ")");
                }
                out.partition[(int) (i - out.start)] = md.partition();
                out.offset[(int) (i - out.start)] = md.offset();
            } catch (ExecutionException e) {
                errors.add("send of record " + i + " (" + codec + ") failed: " + e.getCause());
            } catch (Exception e) {
                errors.add("send of record " + i + " (" + codec + ") did not complete: " + e);
            }
        }
        errors.throwIfAny("producer (compression.type=" + codec + ") on " + topic);
    }

    // ---------------------------------------------------------------------------------------------
    // roundtrip
    // ---------------------------------------------------------------------------------------------

    static int codecOf(long i, long n) {
        for (int c = 0; c < CODECS.length; c++) {
            if (i < (c + 1) * n / CODECS.length) {
                return c;
            }
        }
        return CODECS.length - 1;
    }

    static void roundtrip(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        int partitions = args.integer("partitions", 12);
        int n = args.integer("records", null);
        if (partitions < 1) {
            throw new UsageError("--partitions must be >= 1");
        }
        long t0 = System.nanoTime();

        try (Admin admin = admin(bootstrap)) {
            ensureTopic(admin, topic, partitions);
        }

        // Produce: five producers in parallel, one per codec, each with a contiguous slice.
        Produced produced = new Produced(0, n);
        List<Thread> threads = new ArrayList<>();
        Map<String, Throwable> failures = new ConcurrentHashMap<>();
        for (int c = 0; c < CODECS.length; c++) {
            final String codec = CODECS[c];
            final long from = (long) c * n / CODECS.length;
            final long to = (long) (c + 1) * n / CODECS.length;
            Thread t = new Thread(() -> {
                try {
                    produce(bootstrap, topic, partitions, codec, from, to, produced);
                } catch (Throwable e) {
                    failures.put(codec, e);
                }
            }, "producer-" + codec);
            t.start();
            threads.add(t);
        }
        for (Thread t : threads) {
            t.join();
        }
        if (!failures.isEmpty()) {
            StringBuilder sb = new StringBuilder("producing failed:");
            failures.forEach((codec, e) -> sb.append("\n[").append(codec).append("] ").append(e.getMessage() != null ? e.getMessage() : e.toString()));
            throw new CheckFailed(sb.toString());
        }
        long tProduced = System.nanoTime();
        System.out.printf("produced %d records (%s) in %.1f s%n", n, String.join("/", CODECS), (tProduced - t0) / 1e9);

        // Consume everything back with a single group member.
        Errors errors = new Errors();
        BitSet seen = new BitSet(n);
        int distinct = 0;
        long total = 0;
        long[][] lastIndex = new long[partitions][CODECS.length];
        for (long[] row : lastIndex) {
            Arrays.fill(row, -1);
        }
        Map<Integer, Long> lastOffset = new HashMap<>();
        String group = topic + "-group";
        try (KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, group, false)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
            long drainUntil = Long.MAX_VALUE;
            while (true) {
                long now = System.nanoTime();
                if (now >= deadline || now >= drainUntil) {
                    break;
                }
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    total++;
                    int p = r.partition();
                    if (!topic.equals(r.topic()) || p < 0 || p >= partitions) {
                        errors.add("record from unexpected topic-partition " + r.topic() + "-" + p);
                        continue;
                    }
                    Long prevOff = lastOffset.put(p, r.offset());
                    if (prevOff != null && r.offset() <= prevOff) {
                        errors.add("partition " + p + ": offset " + r.offset() + " delivered after offset " + prevOff);
                    }
                    long i = parseKey(r.key());
                    if (i < 0 || i >= n) {
                        errors.add("partition " + p + " offset " + r.offset() + ": unexpected key "
                                + (r.key() == null ? "null" : "'" + new String(r.key(), StandardCharsets.UTF_8) + "'")
                                + " (expected key-00000000 .. " + String.format("key-%08d", n - 1L) + ")");
                        continue;
                    }
                    int idx = (int) i;
                    if (seen.get(idx)) {
                        errors.add("duplicate record " + i + " (partition " + p + " offset " + r.offset() + ")");
                        continue;
                    }
                    seen.set(idx);
                    distinct++;
                    if (p != produced.partition[idx] || r.offset() != produced.offset[idx]) {
                        errors.add("record " + i + " consumed at partition " + p + " offset " + r.offset()
                                + " but the produce ack said partition " + produced.partition[idx]
                                + " offset " + produced.offset[idx]);
                    }
                    String bad = checkPayload(i, r);
                    if (bad != null) {
                        errors.add("record " + i + " (partition " + p + " offset " + r.offset() + ", "
                                + CODECS[codecOf(i, n)] + "): " + bad);
                    }
                    int c = codecOf(i, n);
                    if (i <= lastIndex[p][c]) {
                        errors.add("partition " + p + ": record " + i + " (" + CODECS[c] + " producer) consumed after record "
                                + lastIndex[p][c] + " from the same producer: send order not preserved");
                    }
                    lastIndex[p][c] = Math.max(lastIndex[p][c], i);
                }
                if (distinct == n && drainUntil == Long.MAX_VALUE) {
                    drainUntil = System.nanoTime() + DRAIN.toNanos();
                }
            }
            if (distinct == n) {
                consumer.commitSync(Duration.ofSeconds(60));
                // Read the commit back (OffsetFetch) and compare it with our positions.
                Set<TopicPartition> assigned = consumer.assignment();
                Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(assigned, Duration.ofSeconds(60));
                for (TopicPartition tp : assigned) {
                    long pos = consumer.position(tp, Duration.ofSeconds(60));
                    OffsetAndMetadata om = committed.get(tp);
                    if (om == null || om.offset() != pos) {
                        errors.add("committed offset for " + tp + " reads back as " + (om == null ? "none" : om.offset())
                                + ", expected position " + pos);
                    }
                }
                if (assigned.size() != partitions) {
                    errors.add("single group member was assigned " + assigned.size() + " partitions, expected " + partitions);
                }
            }
        }
        if (distinct < n) {
            List<Integer> missing = new ArrayList<>();
            for (int i = seen.nextClearBit(0); i < n && missing.size() < 10; i = seen.nextClearBit(i + 1)) {
                missing.add(i);
            }
            errors.add("only " + distinct + " of " + n + " distinct records consumed within "
                    + CONSUME_DEADLINE.toSeconds() + " s; first missing indexes: " + missing);
        }
        errors.throwIfAny("roundtrip on " + topic + " (" + total + " records consumed)");
        System.out.printf("consumed %d records in %.1f s%n", total, (System.nanoTime() - tProduced) / 1e9);
        System.out.println("OK java roundtrip " + n + " records");
    }

    // ---------------------------------------------------------------------------------------------
    // produce-range
    // ---------------------------------------------------------------------------------------------

    static void produceRange(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        int partitions = args.integer("partitions", 12);
        long start = args.integer("start", null);
        int count = args.integer("count", null);
        if (partitions < 1) {
            throw new UsageError("--partitions must be >= 1");
        }
        try (Admin admin = admin(bootstrap)) {
            ensureTopic(admin, topic, partitions);
        }
        produce(bootstrap, topic, partitions, "none", start, start + count, new Produced(start, count));
        System.out.println("OK java produced " + count);
    }

    // ---------------------------------------------------------------------------------------------
    // produce-until
    // ---------------------------------------------------------------------------------------------

    /**
     * Produces records 0, 1, 2, ... at about {@code --rate} per second with one idempotent
     * {@code acks=all} producer until {@code --stop-file} exists, then flushes and closes. Every
     * send must succeed; each acknowledgement is written to {@code --acks-file} as
     * "index partition offset epoch-millis" lines (the last: when the acknowledgement arrived). For
     * tests that stop agents while the load runs: the client's retries must hide every move, so any
     * failed send fails the run. The fault tier passes {@code --idempotent false} for a plain
     * producer and {@code --tolerate-failures true}: under injected faults some sends may fail,
     * and what counts is that every acknowledged record is stored.
     */
    static void produceUntil(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        int partitions = args.integer("partitions", 12);
        int rate = args.integer("rate", null);
        java.nio.file.Path stopFile = java.nio.file.Path.of(args.str("stop-file"));
        java.nio.file.Path acksFile = java.nio.file.Path.of(args.str("acks-file"));
        boolean idempotent = Boolean.parseBoolean(args.values.getOrDefault("idempotent", "true"));
        boolean tolerateFailures = Boolean.parseBoolean(args.values.getOrDefault("tolerate-failures", "false"));
        if (rate < 1) {
            throw new UsageError("--rate must be >= 1");
        }
        try (Admin admin = admin(bootstrap)) {
            ensureTopic(admin, topic, partitions);
        }
        Properties p = common(bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, Boolean.toString(idempotent));
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        Map<Long, long[]> acked = new ConcurrentHashMap<>();
        Map<Long, String> failed = new ConcurrentHashMap<>();
        long sent = 0;
        long started = System.nanoTime();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            while (!java.nio.file.Files.exists(stopFile)) {
                long due = (long) ((System.nanoTime() - started) / 1e9 * rate);
                for (; sent < due; sent++) {
                    final long i = sent;
                    producer.send(new ProducerRecord<>(topic, null, null, key(i), value(i), headers(i)), (md, e) -> {
                        if (e != null) {
                            failed.put(i, e.toString());
                        } else {
                            acked.put(i, new long[] {md.partition(), md.offset(), System.currentTimeMillis()});
                        }
                    });
                }
                Thread.sleep(10);
            }
            producer.flush();
        }
        StringBuilder lines = new StringBuilder();
        for (Map.Entry<Long, long[]> e : new TreeMap<>(acked).entrySet()) {
            lines.append(e.getKey()).append(' ').append(e.getValue()[0]).append(' ').append(e.getValue()[1]).append(' ')
                    .append(e.getValue()[2]).append('\n');
        }
        java.nio.file.Files.writeString(acksFile, lines.toString());
        System.out.printf("sent %d, acknowledged %d, failed %d in %.1f s%n", sent, acked.size(), failed.size(),
                (System.nanoTime() - started) / 1e9);
        if (!failed.isEmpty() && !tolerateFailures) {
            Errors errors = new Errors();
            for (Map.Entry<Long, String> e : new TreeMap<>(failed).entrySet()) {
                errors.add("send of record " + e.getKey() + " failed: " + e.getValue());
            }
            errors.throwIfAny("produce-until on " + topic);
        }
        if (acked.size() + (tolerateFailures ? failed.size() : 0) != sent) {
            throw new CheckFailed(sent + " records sent but only " + acked.size() + " completed");
        }
        System.out.println("OK java produced-until " + (tolerateFailures ? acked.size() : sent));
    }

    // ---------------------------------------------------------------------------------------------
    // group-consume
    // ---------------------------------------------------------------------------------------------

    /** What a member last reported about itself (published after every poll). */
    record MemberState(String memberId, int generation, Set<Integer> partitions) {
    }

    static void groupConsume(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        String group = args.str("group");
        int members = args.integer("members", 3);
        long start = args.integer("expect-start", null);
        int count = args.integer("expect-count", null);
        if (members < 1) {
            throw new UsageError("--members must be >= 1");
        }

        int partitions;
        try (Admin admin = admin(bootstrap)) {
            partitions = partitionCount(admin, topic);
        }
        if (partitions < members) {
            throw new UsageError("topic " + topic + " has " + partitions + " partitions, fewer than " + members + " members");
        }

        AtomicBoolean go = new AtomicBoolean(false);      // stable assignment observed: start fetching
        AtomicBoolean stop = new AtomicBoolean(false);    // target reached or deadline: drain, commit, close
        AtomicBoolean timedOut = new AtomicBoolean(false);
        CountDownLatch committed = new CountDownLatch(members);
        @SuppressWarnings("unchecked")
        AtomicReference<MemberState>[] states = new AtomicReference[members];
        int[] consumedBy = new int[members];
        Map<TopicPartition, Long> finalPositions = new ConcurrentHashMap<>();
        Map<Integer, String> memberErrors = new ConcurrentHashMap<>();
        // Shared record bookkeeping (guarded by 'lock').
        Object lock = new Object();
        Map<Long, Integer> timesSeen = new HashMap<>();
        AtomicInteger inRangeDistinct = new AtomicInteger();
        Errors errors = new Errors();
        Map<Integer, Long> lastOffset = new HashMap<>();
        List<Long> below = new ArrayList<>();
        List<Long> above = new ArrayList<>();
        List<Long> dups = new ArrayList<>();
        long[] counters = new long[2]; // [0] = total records, [1] = unparseable keys

        List<Thread> threads = new ArrayList<>();
        for (int m = 0; m < members; m++) {
            final int me = m;
            states[m] = new AtomicReference<>(new MemberState("", -1, Set.of()));
            Thread t = new Thread(() -> {
                KafkaConsumer<byte[], byte[]> consumer = null;
                boolean counted = false;
                try {
                    consumer = consumer(bootstrap, group, true);
                    final KafkaConsumer<byte[], byte[]> c = consumer;
                    c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                        @Override
                        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
                            // Commit what we consumed so the next owner resumes exactly after it.
                            if (go.get() && !parts.isEmpty()) {
                                c.commitSync(Duration.ofSeconds(30));
                            }
                        }

                        @Override
                        public void onPartitionsAssigned(Collection<TopicPartition> parts) {
                            // Hold off fetching until the whole group has a stable assignment,
                            // so that no record is consumed by a member that is about to lose it.
                            if (!go.get()) {
                                c.pause(parts);
                            }
                        }
                    });
                    boolean draining = false;
                    long drainUntil = 0;
                    while (true) {
                        ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(100));
                        if (go.get() && !c.paused().isEmpty()) {
                            c.resume(c.paused());
                        }
                        for (ConsumerRecord<byte[], byte[]> r : recs) {
                            consumedBy[me]++;
                            synchronized (lock) {
                                counters[0]++;
                                Long prev = lastOffset.put(r.partition(), r.offset());
                                if (prev != null && r.offset() <= prev) {
                                    errors.add("partition " + r.partition() + ": offset " + r.offset()
                                            + " delivered (to member-" + me + ") after offset " + prev);
                                }
                                long i = parseKey(r.key());
                                if (i < 0) {
                                    counters[1]++;
                                    errors.add("partition " + r.partition() + " offset " + r.offset() + ": unparseable key");
                                    continue;
                                }
                                int n = timesSeen.merge(i, 1, Integer::sum);
                                if (n > 1) {
                                    dups.add(i);
                                } else if (i < start) {
                                    below.add(i);
                                } else if (i >= start + count) {
                                    above.add(i);
                                } else {
                                    inRangeDistinct.incrementAndGet();
                                }
                                String bad = checkPayload(i, r);
                                if (bad != null) {
                                    errors.add("record " + i + " (partition " + r.partition() + " offset " + r.offset() + "): " + bad);
                                }
                            }
                        }
                        Set<Integer> ps = new TreeSet<>();
                        for (TopicPartition tp : c.assignment()) {
                            ps.add(tp.partition());
                        }
                        states[me].set(new MemberState(c.groupMetadata().memberId(), c.groupMetadata().generationId(), ps));
                        if (!draining && stop.get()) {
                            draining = true;
                            drainUntil = System.nanoTime() + (timedOut.get() ? 0 : DRAIN.toNanos());
                        }
                        if (draining && System.nanoTime() >= drainUntil) {
                            break;
                        }
                        if (inRangeDistinct.get() >= count && go.get()) {
                            stop.set(true);
                        }
                    }
                    if (go.get()) {
                        c.commitSync(Duration.ofSeconds(60));
                        for (TopicPartition tp : c.assignment()) {
                            finalPositions.put(tp, c.position(tp, Duration.ofSeconds(30)));
                        }
                    }
                    counted = true;
                    committed.countDown();
                    // Wait for everyone's commit before leaving, so no LeaveGroup-triggered rebalance
                    // can interfere with another member's commit.
                    committed.await(90, TimeUnit.SECONDS);
                } catch (Throwable e) {
                    memberErrors.put(me, e.toString());
                    stop.set(true);
                } finally {
                    if (!counted) {
                        committed.countDown();
                    }
                    if (consumer != null) {
                        try {
                            consumer.close(Duration.ofSeconds(30));
                        } catch (Throwable e) {
                            memberErrors.putIfAbsent(me, "close failed: " + e);
                        }
                    }
                }
            }, "member-" + m);
            t.start();
            threads.add(t);
        }

        // Phase 1: wait for a stable assignment covering every partition.
        long t0 = System.nanoTime();
        long assignDeadline = t0 + ASSIGNMENT_DEADLINE.toNanos();
        MemberState[] stable = null;
        while (System.nanoTime() < assignDeadline && memberErrors.isEmpty()) {
            MemberState[] snap = new MemberState[members];
            for (int m = 0; m < members; m++) {
                snap[m] = states[m].get();
            }
            if (assignmentComplete(snap, partitions) == null) {
                stable = snap;
                break;
            }
            Thread.sleep(100);
        }
        if (stable == null) {
            MemberState[] snap = new MemberState[members];
            for (int m = 0; m < members; m++) {
                snap[m] = states[m].get();
            }
            stop.set(true);
            timedOut.set(true);
            joinAll(threads);
            if (!memberErrors.isEmpty()) {
                throw new CheckFailed("group member failed before the group stabilised: " + new TreeMap<>(memberErrors));
            }
            throw new CheckFailed("group " + group + " did not reach a complete assignment within "
                    + ASSIGNMENT_DEADLINE.toSeconds() + " s (" + assignmentComplete(snap, partitions) + "); member states: "
                    + Arrays.toString(snap));
        }
        double assignSecs = (System.nanoTime() - t0) / 1e9;
        go.set(true);

        // Phase 2: consume until the expected number of in-range records is in, or the deadline.
        long consumeDeadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
        while (!stop.get() && System.nanoTime() < consumeDeadline) {
            Thread.sleep(50);
        }
        if (!stop.get()) {
            timedOut.set(true);
            stop.set(true);
        }
        joinAll(threads);

        for (int m = 0; m < members; m++) {
            System.out.printf("member-%d %s generation %d partitions %s consumed %d records%n",
                    m, stable[m].memberId(), stable[m].generation(), stable[m].partitions(), consumedBy[m]);
        }
        System.out.printf("stable assignment after %.1f s%n", assignSecs);

        if (!memberErrors.isEmpty()) {
            throw new CheckFailed("group member(s) failed: " + new TreeMap<>(memberErrors));
        }
        synchronized (lock) {
            if (!below.isEmpty()) {
                Collections.sort(below);
                errors.add(below.size() + " record(s) with keys below --expect-start " + start + " (e.g. "
                        + below.subList(0, Math.min(5, below.size())) + "): the group did not resume from its committed offsets"
                        + " (or the topic holds records beyond the expected range)");
            }
            if (!above.isEmpty()) {
                Collections.sort(above);
                errors.add(above.size() + " record(s) with keys at or beyond " + (start + count) + " (e.g. "
                        + above.subList(0, Math.min(5, above.size())) + "): more records than expected");
            }
            if (!dups.isEmpty()) {
                Collections.sort(dups);
                errors.add(dups.size() + " duplicate deliveries (e.g. keys " + dups.subList(0, Math.min(5, dups.size())) + ")");
            }
            if (inRangeDistinct.get() < count) {
                List<Long> missing = new ArrayList<>();
                for (long i = start; i < start + count && missing.size() < 10; i++) {
                    if (!timesSeen.containsKey(i)) {
                        missing.add(i);
                    }
                }
                errors.add("only " + inRangeDistinct.get() + " of " + count + " expected records [" + start + ", "
                        + (start + count) + ") consumed" + (timedOut.get() ? " within " + CONSUME_DEADLINE.toSeconds() + " s" : "")
                        + "; first missing: " + missing);
            }
        }

        // Read the group's committed offsets back through the admin API.
        try (Admin admin = admin(bootstrap)) {
            Map<TopicPartition, OffsetAndMetadata> offs = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
            for (Map.Entry<TopicPartition, Long> e : finalPositionsSorted(finalPositions).entrySet()) {
                OffsetAndMetadata om = offs.get(e.getKey());
                if (om == null || om.offset() != e.getValue()) {
                    errors.add("committed offset of " + e.getKey() + " reads back as " + (om == null ? "none" : om.offset())
                            + ", but the owning member committed position " + e.getValue());
                }
            }
            if (finalPositions.size() != partitions) {
                errors.add("at the end the members owned " + finalPositions.size() + " partitions, expected " + partitions);
            }
        }
        errors.throwIfAny("group-consume of " + topic + " in group " + group + " (" + counters[0] + " records consumed)");
        System.out.println("OK java group-consume " + count + " records");
    }

    // ---------------------------------------------------------------------------------------------
    // admin
    // ---------------------------------------------------------------------------------------------

    /** A step that must fail with the given exception (as the cause of the future's ExecutionException). */
    interface Step {
        void run() throws Exception;
    }

    static void expectFailure(Step step, Class<? extends Throwable> expected, String what) throws Exception {
        try {
            step.run();
        } catch (ExecutionException e) {
            if (expected.isInstance(e.getCause())) {
                return;
            }
            throw new CheckFailed(what + ": expected " + expected.getSimpleName() + ", got " + e.getCause(), e.getCause());
        }
        throw new CheckFailed(what + ": expected " + expected.getSimpleName() + ", but it succeeded");
    }

    interface Condition {
        String failure() throws Exception;
    }

    /** Polls until the condition reports no failure (null), or throws with its last failure after the timeout. */
    static void waitFor(String what, Duration timeout, Condition condition) throws Exception {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            String failure;
            try {
                failure = condition.failure();
            } catch (ExecutionException e) {
                failure = e.getCause().toString();
            }
            if (failure == null) {
                return;
            }
            if (System.nanoTime() > deadline) {
                throw new CheckFailed(what + ": still not true after " + timeout.toSeconds() + " s: " + failure);
            }
            Thread.sleep(100);
        }
    }

    static String describePartitions(Admin admin, String topic, int want) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS).get(topic);
        if (d.partitions().size() != want) {
            return topic + " has " + d.partitions().size() + " partitions, expected " + want;
        }
        for (TopicPartitionInfo p : d.partitions()) {
            if (p.leader() == null || p.leader().id() < 0 || !p.isr().equals(p.replicas())) {
                return "partition " + p.partition() + " has leader " + p.leader() + ", replicas " + p.replicas() + ", isr " + p.isr();
            }
        }
        return null;
    }

    static void expectConfigs(Admin admin, ConfigResource resource, Map<String, String> values, Map<String, ConfigEntry.ConfigSource> sources)
            throws Exception {
        Config config = admin.describeConfigs(List.of(resource)).all().get(60, TimeUnit.SECONDS).get(resource);
        Errors errors = new Errors();
        for (Map.Entry<String, String> want : values.entrySet()) {
            ConfigEntry entry = config.get(want.getKey());
            if (entry == null) {
                errors.add(want.getKey() + " is not described");
            } else if (!want.getValue().equals(entry.value()) || entry.source() != sources.get(want.getKey())) {
                errors.add(want.getKey() + " = " + entry.value() + " (" + entry.source() + "), expected " + want.getValue() + " ("
                        + sources.get(want.getKey()) + ")");
            }
        }
        errors.throwIfAny("configs of " + resource.name());
    }

    /**
     * Drives the Admin API against a fresh topic: topics (create, create again, describe, create
     * partitions, refuse to shrink, delete), configs (describe, incremental SET and DELETE) and a
     * consumer group (list, describe, committed offsets, refuse to delete while it has a member,
     * delete once empty).
     */
    @SuppressWarnings("deprecation") // listConsumerGroups is what the issue names; listGroups is its 4.1 successor.
    static void adminMode(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        String group = topic + "-admin-group";
        try (Admin admin = admin(bootstrap)) {
            // Topics.
            admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "3600000"))))
                    .all().get(60, TimeUnit.SECONDS);
            expectFailure(() -> admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(60, TimeUnit.SECONDS),
                    TopicExistsException.class, "creating " + topic + " twice");
            if (!admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic)) {
                throw new CheckFailed("listTopics does not list " + topic);
            }
            waitFor(topic + " to show 3 partitions", Duration.ofSeconds(30), () -> describePartitions(admin, topic, 3));
            admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(60, TimeUnit.SECONDS);
            waitFor(topic + " to show 5 partitions", Duration.ofSeconds(30), () -> describePartitions(admin, topic, 5));
            expectFailure(() -> admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(60, TimeUnit.SECONDS),
                    InvalidPartitionsException.class, "shrinking " + topic + " to 3 partitions");
            System.out.println("topic " + topic + ": created with 3 partitions, grown to 5, shrinking refused");

            // Configs.
            ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
            ConfigEntry.ConfigSource dynamic = ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG;
            ConfigEntry.ConfigSource byDefault = ConfigEntry.ConfigSource.DEFAULT_CONFIG;
            expectConfigs(admin, resource, Map.of("retention.ms", "3600000", "cleanup.policy", "delete"),
                    Map.of("retention.ms", dynamic, "cleanup.policy", byDefault));
            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                    new AlterConfigOp(new ConfigEntry("retention.bytes", "1048576"), AlterConfigOp.OpType.SET))))
                    .all().get(60, TimeUnit.SECONDS);
            expectConfigs(admin, resource, Map.of("retention.ms", "7200000", "retention.bytes", "1048576"),
                    Map.of("retention.ms", dynamic, "retention.bytes", dynamic));
            admin.incrementalAlterConfigs(Map.of(resource, List.of(
                    new AlterConfigOp(new ConfigEntry("retention.bytes", ""), AlterConfigOp.OpType.DELETE))))
                    .all().get(60, TimeUnit.SECONDS);
            expectConfigs(admin, resource, Map.of("retention.ms", "7200000", "retention.bytes", "-1"),
                    Map.of("retention.ms", dynamic, "retention.bytes", byDefault));
            System.out.println("configs of " + topic + " described, set and deleted incrementally");

            // Groups: one live member that has read and committed everything.
            final int records = 50;
            produce(bootstrap, topic, 5, "none", 0, records, new Produced(0, records));
            KafkaConsumer<byte[], byte[]> consumer = consumer(bootstrap, group, true);
            boolean open = true;
            try {
                consumer.subscribe(List.of(topic));
                int read = 0;
                long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
                while (read < records) {
                    if (System.nanoTime() > deadline) {
                        throw new CheckFailed("the group member read " + read + " of " + records + " records within 60 s");
                    }
                    read += consumer.poll(Duration.ofMillis(200)).count();
                }
                consumer.commitSync(Duration.ofSeconds(60));

                Collection<ConsumerGroupListing> listed = admin.listConsumerGroups().all().get(60, TimeUnit.SECONDS);
                ConsumerGroupListing listing = listed.stream().filter(l -> l.groupId().equals(group)).findFirst()
                        .orElseThrow(() -> new CheckFailed("listConsumerGroups does not list " + group + ": " + listed));
                if (listing.isSimpleConsumerGroup() || listing.groupState().filter(st -> st == GroupState.STABLE).isEmpty()) {
                    throw new CheckFailed("listConsumerGroups lists " + listing + ", expected a Stable non-simple group");
                }
                ConsumerGroupDescription described = admin.describeConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS).get(group);
                Set<Integer> assigned = new TreeSet<>();
                for (MemberDescription member : described.members()) {
                    member.assignment().topicPartitions().forEach(tp -> assigned.add(tp.partition()));
                }
                if (described.groupState() != GroupState.STABLE || described.members().size() != 1
                        || !assigned.equals(Set.of(0, 1, 2, 3, 4)) || described.coordinator() == null
                        || described.partitionAssignor().isEmpty()) {
                    throw new CheckFailed("describeConsumerGroups: " + described + "; expected Stable, 1 member owning partitions 0-4");
                }
                Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS);
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (int p = 0; p < 5; p++) {
                    latest.put(new TopicPartition(topic, p), OffsetSpec.latest());
                }
                Errors errors = new Errors();
                long sum = 0;
                for (var end : admin.listOffsets(latest).all().get(60, TimeUnit.SECONDS).entrySet()) {
                    OffsetAndMetadata om = committed.get(end.getKey());
                    sum += end.getValue().offset();
                    if (om == null || om.offset() != end.getValue().offset()) {
                        errors.add(end.getKey() + ": committed " + om + ", log end offset " + end.getValue().offset());
                    }
                }
                if (sum != records) {
                    errors.add("the log end offsets add up to " + sum + ", expected " + records);
                }
                errors.throwIfAny("committed offsets of " + group);
                expectFailure(() -> admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS),
                        GroupNotEmptyException.class, "deleting " + group + " while it has a member");
                consumer.close(Duration.ofSeconds(30));
                open = false;
            } finally {
                if (open) {
                    consumer.close(Duration.ofSeconds(30));
                }
            }
            waitFor(group + " to become Empty", Duration.ofSeconds(30), () -> {
                GroupState state = admin.describeConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS).get(group).groupState();
                return state == GroupState.EMPTY ? null : "state " + state;
            });
            admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS);
            expectFailure(() -> admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS),
                    GroupIdNotFoundException.class, "deleting " + group + " twice");
            if (admin.listConsumerGroups().all().get(60, TimeUnit.SECONDS).stream().anyMatch(l -> l.groupId().equals(group))) {
                throw new CheckFailed("listConsumerGroups still lists the deleted group " + group);
            }
            System.out.println("group " + group + " listed, described (1 member, 5 partitions), offsets read back, "
                    + "refused deletion while live, deleted when empty");

            admin.deleteTopics(List.of(topic)).all().get(60, TimeUnit.SECONDS);
            waitFor(topic + " to disappear", Duration.ofSeconds(30),
                    () -> admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic) ? "still listed" : null);
            System.out.println("topic " + topic + " deleted");
        }
        System.out.println("OK java admin");
    }

    // ---------------------------------------------------------------------------------------------
    // idempotence
    // ---------------------------------------------------------------------------------------------

    /**
     * Produces N records with an explicitly idempotent producer (acks=all, five requests in flight)
     * and reads every partition back from the beginning without a group: each record exactly once,
     * at its acknowledged offset, offsets gapless up to the log end.
     */
    static void idempotence(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        int partitions = args.integer("partitions", 6);
        int n = args.integer("records", null);
        try (Admin admin = admin(bootstrap)) {
            ensureTopic(admin, topic, partitions);
        }
        Produced produced = new Produced(0, n);
        List<Future<RecordMetadata>> futures = new ArrayList<>(n);
        Properties p = common(bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer())) {
            for (long i = 0; i < n; i++) {
                futures.add(producer.send(new ProducerRecord<>(topic, null, null, key(i), value(i), headers(i))));
            }
            producer.flush();
        }
        Errors errors = new Errors();
        for (int i = 0; i < n; i++) {
            try {
                RecordMetadata md = futures.get(i).get(0, TimeUnit.SECONDS);
                produced.partition[i] = md.partition();
                produced.offset[i] = md.offset();
            } catch (ExecutionException e) {
                errors.add("send of record " + i + " failed: " + e.getCause());
            }
        }
        errors.throwIfAny("idempotent producer on " + topic);
        System.out.println("produced " + n + " records with enable.idempotence=true");

        int[] seen = new int[n];
        long read = 0;
        Map<Integer, Long> next = new HashMap<>();
        Map<TopicPartition, Long> ends;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(common(bootstrap), new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> all = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                all.add(new TopicPartition(topic, partition));
            }
            consumer.assign(all);
            consumer.seekToBeginning(all);
            ends = consumer.endOffsets(all, Duration.ofSeconds(60));
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            if (total != n) {
                errors.add("the log holds " + total + " records, expected exactly " + n);
            }
            long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
            while (read < total && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    read++;
                    long expected = next.getOrDefault(r.partition(), 0L);
                    if (r.offset() != expected) {
                        errors.add("partition " + r.partition() + ": offset " + r.offset() + " where " + expected + " was next (gap or repeat)");
                    }
                    next.put(r.partition(), r.offset() + 1);
                    long i = parseKey(r.key());
                    if (i < 0 || i >= n) {
                        errors.add("partition " + r.partition() + " offset " + r.offset() + ": unexpected key");
                        continue;
                    }
                    seen[(int) i]++;
                    if (produced.partition[(int) i] != r.partition() || produced.offset[(int) i] != r.offset()) {
                        errors.add("record " + i + " read at " + r.partition() + "@" + r.offset() + ", acknowledged at "
                                + produced.partition[(int) i] + "@" + produced.offset[(int) i]);
                    }
                    String bad = checkPayload(i, r);
                    if (bad != null) {
                        errors.add("record " + i + ": " + bad);
                    }
                }
            }
        }
        for (Map.Entry<TopicPartition, Long> end : ends.entrySet()) {
            long reached = next.getOrDefault(end.getKey().partition(), 0L);
            if (reached != end.getValue()) {
                errors.add(end.getKey() + " read up to offset " + reached + ", its end offset is " + end.getValue());
            }
        }
        int duplicates = 0;
        int missing = 0;
        for (int times : seen) {
            if (times == 0) {
                missing++;
            } else {
                duplicates += times - 1;
            }
        }
        if (duplicates > 0 || missing > 0) {
            errors.add(duplicates + " duplicates and " + missing + " missing records");
        }
        errors.throwIfAny("idempotence on " + topic + " (" + read + " records read)");
        System.out.println("read " + read + " records: each exactly once, offsets gapless in " + ends.size() + " partitions");
        System.out.println("OK java idempotence " + n + " records");
    }

    // ---------------------------------------------------------------------------------------------
    // verify-topic
    // ---------------------------------------------------------------------------------------------

    /**
     * Reads every partition of a topic that another client produced (records 0..N-1 in the shared
     * format, {@code h-client=NAME}) by assignment from the beginning, and checks each record byte
     * for byte, exactly once, with offsets gapless up to the end. The Java consumer decompresses
     * with Kafka's own codecs, so this catches batches a client encoded in a way only it can read.
     */
    static void verifyTopic(Args args) throws Exception {
        String bootstrap = args.str("bootstrap");
        String topic = args.str("topic");
        int n = args.integer("records", null);
        String client = args.str("client");
        int partitions;
        try (Admin admin = admin(bootstrap)) {
            partitions = partitionCount(admin, topic);
        }
        Errors errors = new Errors();
        int[] seen = new int[n];
        long read = 0;
        Map<Integer, Long> next = new HashMap<>();
        Map<TopicPartition, Long> ends;
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(common(bootstrap), new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> all = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                all.add(new TopicPartition(topic, partition));
            }
            consumer.assign(all);
            consumer.seekToBeginning(all);
            ends = consumer.endOffsets(all, Duration.ofSeconds(60));
            long total = ends.values().stream().mapToLong(Long::longValue).sum();
            if (total != n) {
                errors.add("the log holds " + total + " records, expected " + n);
            }
            long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
            while (read < total && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(200))) {
                    read++;
                    long expected = next.getOrDefault(r.partition(), 0L);
                    if (r.offset() != expected) {
                        errors.add("partition " + r.partition() + ": offset " + r.offset() + " where " + expected + " was next");
                    }
                    next.put(r.partition(), r.offset() + 1);
                    long i = parseKey(r.key());
                    if (i < 0 || i >= n) {
                        errors.add("partition " + r.partition() + " offset " + r.offset() + ": unexpected key");
                        continue;
                    }
                    seen[(int) i]++;
                    String bad = checkPayload(i, r, client);
                    if (bad != null) {
                        errors.add("record " + i + " (partition " + r.partition() + " offset " + r.offset() + "): " + bad);
                    }
                }
            }
        }
        int duplicates = 0;
        int missing = 0;
        for (int times : seen) {
            if (times == 0) {
                missing++;
            } else {
                duplicates += times - 1;
            }
        }
        if (duplicates > 0 || missing > 0) {
            errors.add(duplicates + " duplicates and " + missing + " missing records");
        }
        errors.throwIfAny("verify-topic " + topic + " (" + read + " records read by the Java client)");
        System.out.println("OK java verify-topic " + n + " records from " + client);
    }

    /** Returns null if the snapshot is a complete, disjoint assignment in one generation, else why not. */
    static String assignmentComplete(MemberState[] snap, int partitions) {
        Set<Integer> union = new HashSet<>();
        int generation = snap[0].generation();
        for (int m = 0; m < snap.length; m++) {
            MemberState s = snap[m];
            if (s.generation() < 0 || s.memberId().isEmpty()) {
                return "member-" + m + " has not joined";
            }
            if (s.generation() != generation) {
                return "members are in different generations";
            }
            if (s.partitions().isEmpty()) {
                return "member-" + m + " owns no partition";
            }
            for (int p : s.partitions()) {
                if (!union.add(p)) {
                    return "partition " + p + " is assigned to more than one member";
                }
            }
        }
        if (union.size() != partitions) {
            return "only " + union.size() + " of " + partitions + " partitions assigned";
        }
        return null;
    }

    static Map<TopicPartition, Long> finalPositionsSorted(Map<TopicPartition, Long> m) {
        Map<TopicPartition, Long> out = new LinkedHashMap<>();
        m.entrySet().stream()
                .sorted((a, b) -> Integer.compare(a.getKey().partition(), b.getKey().partition()))
                .forEach(e -> out.put(e.getKey(), e.getValue()));
        return out;
    }

    static void joinAll(List<Thread> threads) throws InterruptedException {
        for (Thread t : threads) {
            t.join(TimeUnit.SECONDS.toMillis(180));
            if (t.isAlive()) {
                throw new CheckFailed(t.getName() + " did not finish within 180 s of being told to stop");
            }
        }
    }

    private Main() {
    }
}
