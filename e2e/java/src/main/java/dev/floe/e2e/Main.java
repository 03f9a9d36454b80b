package dev.floe.e2e;

import java.io.BufferedWriter;
import java.io.FileOutputStream;
import java.io.FileDescriptor;
import java.io.IOException;
import java.io.OutputStreamWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.HexFormat;
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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
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
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.protocol.Errors;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * A verifiable-client adapter for the Apache Kafka Java client (the contract is e2e/README.md):
 * each mode drives kafka-clients and reports what it did as JSON events on stdout. It checks
 * nothing about the data; the Rust suites do, with {@code floe_e2e::verifiable}. Logs go to
 * stderr. Exit status: 0 after shutdown_complete, 1 when it cannot go on, 2 on bad usage.
 */
public final class Main {

    static final String CLIENT = "java"; // the h-client header and startup_complete's client
    static final String CLIENT_ID = "floe-e2e-java";
    static final int REQUEST_TIMEOUT_MS = 30_000;
    static final String[] CODECS = {"none", "gzip", "snappy", "lz4", "zstd"};
    static final Duration CONSUME_DEADLINE = Duration.ofSeconds(150);
    static final Duration ASSIGNMENT_DEADLINE = Duration.ofSeconds(60);
    /** After the expected number of records came back, keep polling this long so a duplicate shows. */
    static final Duration DRAIN = Duration.ofMillis(1500);

    /** Bad command line: exit status 2. */
    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    /** What a mode does once its arguments were read. */
    interface Body {
        void run() throws Exception;
    }

    public static void main(String[] argv) {
        int status;
        String mode = argv.length > 0 ? argv[0] : "";
        try {
            Args args = Args.parse(Arrays.copyOfRange(argv, Math.min(1, argv.length), argv.length));
            Body body = switch (mode) {
                case "roundtrip" -> roundtrip(args);
                case "produce-range" -> produceRange(args);
                case "produce-until" -> produceUntil(args);
                case "group-consume" -> groupConsume(args);
                case "admin" -> adminMode(args);
                case "idempotence" -> idempotence(args);
                case "read" -> read(args);
                default -> throw new UsageError("unknown mode '" + mode + "'");
            };
            Events.emit("startup_complete", "client", CLIENT);
            body.run();
            Events.emit("shutdown_complete");
            status = 0;
        } catch (UsageError e) {
            System.err.println("usage error: " + e.getMessage());
            System.err.println(USAGE);
            status = 2;
        } catch (Throwable t) {
            System.err.println("java " + mode + " cannot go on: " + t);
            t.printStackTrace(System.err);
            status = 1;
        }
        Events.flush();
        System.err.flush();
        // Kafka client threads are all closed by now, but never let a straggler keep the JVM alive.
        System.exit(status);
    }

    static final String USAGE = String.join("\n",
            "usage: java -cp 'floe-e2e-java.jar:libs/*' dev.floe.e2e.Main <mode> [--name value ...]",
            "  roundtrip     --bootstrap HOST:PORT --topic T [--partitions 12] --records N",
            "  produce-range --bootstrap HOST:PORT --topic T [--partitions 12] --start S --count C",
            "  produce-until --bootstrap HOST:PORT --topic T [--partitions 12] --rate R --stop-file F [--idempotent true|false]",
            "  group-consume --bootstrap HOST:PORT --topic T --group G [--members 3] --records C",
            "  admin         --bootstrap HOST:PORT --topic T",
            "  idempotence   --bootstrap HOST:PORT --topic T [--partitions 6] --records N",
            "  read          --bootstrap HOST:PORT --topic T");

    // ---------------------------------------------------------------------------------------------
    // Arguments
    // ---------------------------------------------------------------------------------------------

    static final class Args {
        private final Map<String, String> values = new HashMap<>();

        static Args parse(String[] argv) {
            Args args = new Args();
            for (int k = 0; k < argv.length; k++) {
                String name = argv[k];
                if (!name.startsWith("--") || name.length() <= 2) {
                    throw new UsageError("expected --name, got '" + name + "'");
                }
                if (k + 1 >= argv.length) {
                    throw new UsageError("missing value for " + name);
                }
                args.values.put(name.substring(2), argv[++k]);
            }
            return args;
        }

        String text(String name) {
            String value = values.get(name);
            if (value == null || value.isEmpty()) {
                throw new UsageError("missing required --" + name);
            }
            return value;
        }

        int integer(String name, Integer byDefault, int minimum) {
            String value = values.get(name);
            if (value == null) {
                if (byDefault == null) {
                    throw new UsageError("missing required --" + name);
                }
                return byDefault;
            }
            int number;
            try {
                number = Integer.parseInt(value);
            } catch (NumberFormatException e) {
                throw new UsageError("--" + name + " is not an integer: '" + value + "'");
            }
            if (number < minimum) {
                throw new UsageError("--" + name + " must be >= " + minimum + ", got " + value);
            }
            return number;
        }

        boolean bool(String name, boolean byDefault) {
            String value = values.getOrDefault(name, Boolean.toString(byDefault));
            if (!value.equals("true") && !value.equals("false")) {
                throw new UsageError("--" + name + " must be true or false, got '" + value + "'");
            }
            return Boolean.parseBoolean(value);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Events: one JSON object per line on stdout, written whole
    // ---------------------------------------------------------------------------------------------

    static final class Events {
        private static final BufferedWriter OUT = new BufferedWriter(
                new OutputStreamWriter(new FileOutputStream(FileDescriptor.out), StandardCharsets.UTF_8), 1 << 20);

        /** Emits event {@code name} with the given field names and values, alternating. */
        static void emit(String name, Object... fields) {
            StringBuilder line = new StringBuilder(256).append("{\"name\":");
            EventLine.json(line, name);
            for (int k = 0; k < fields.length; k += 2) {
                line.append(',');
                EventLine.json(line, fields[k]);
                line.append(':');
                EventLine.json(line, fields[k + 1]);
            }
            line.append("}\n");
            synchronized (OUT) {
                try {
                    OUT.write(line.toString());
                } catch (IOException e) {
                    throw new IllegalStateException("failed to write an event to stdout", e);
                }
            }
        }

        static void flush() {
            synchronized (OUT) {
                try {
                    OUT.flush();
                } catch (IOException e) {
                    throw new IllegalStateException("failed to flush the events", e);
                }
            }
        }

        static void sent(String topic, long index, String producer, RecordMetadata metadata,
                         Exception error) {
            if (error != null) {
                emit("producer_send_error", "topic", topic, "index", index, "error", error.toString());
            } else {
                emit("producer_send_success", "topic", topic, "partition", metadata.partition(), "offset", metadata.offset(),
                        "index", index, "producer", producer);
            }
        }

        static void consumed(ConsumerRecord<byte[], byte[]> record, String consumer) {
            List<Object> headers = new ArrayList<>();
            for (Header header : record.headers()) {
                headers.add(Json.object("key", header.key(), "value", Json.hex(header.value())));
            }
            if (consumer == null) {
                emit("record_consumed", "topic", record.topic(), "partition", record.partition(), "offset", record.offset(),
                        "key", Json.hex(record.key()), "value", Json.hex(record.value()), "headers", headers);
            } else {
                emit("record_consumed", "topic", record.topic(), "partition", record.partition(), "offset", record.offset(),
                        "key", Json.hex(record.key()), "value", Json.hex(record.value()), "headers", headers, "consumer", consumer);
            }
        }

        static void assigned(String topic, Collection<TopicPartition> partitions, String consumer) {
            List<Integer> numbers = new ArrayList<>(new TreeSet<>(partitions.stream().map(TopicPartition::partition).toList()));
            if (consumer == null) {
                emit("partitions_assigned", "topic", topic, "partitions", numbers);
            } else {
                emit("partitions_assigned", "topic", topic, "partitions", numbers, "consumer", consumer);
            }
        }

        static void committed(String group, String topic, Map<TopicPartition, OffsetAndMetadata> committed) {
            List<Object> offsets = new ArrayList<>();
            new TreeMap<Integer, OffsetAndMetadata>(committed.entrySet().stream()
                    .filter(entry -> entry.getValue() != null && entry.getKey().topic().equals(topic))
                    .collect(java.util.stream.Collectors.toMap(entry -> entry.getKey().partition(), Map.Entry::getValue)))
                    .forEach((partition, offset) -> offsets.add(Json.object("partition", partition, "offset", offset.offset())));
            emit("offsets_committed", "group", group, "topic", topic, "offsets", offsets);
        }
    }

    /** Values for the event lines (EventLine.json writes them): insertion-ordered maps and hex bytes. */
    static final class Json {
        static Map<String, Object> object(Object... fields) {
            Map<String, Object> map = new LinkedHashMap<>();
            for (int k = 0; k < fields.length; k += 2) {
                map.put((String) fields[k], fields[k + 1]);
            }
            return map;
        }

        static String hex(byte[] bytes) {
            return bytes == null ? null : HexFormat.of().formatHex(bytes);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Record i of the shared format; floe_e2e::records (e2e/src/lib.rs) is the one the checks use
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
        RecordHeaders headers = new RecordHeaders();
        headers.add("h-index", Long.toString(i).getBytes(StandardCharsets.UTF_8));
        headers.add("h-client", CLIENT.getBytes(StandardCharsets.UTF_8));
        return headers;
    }

    static ProducerRecord<byte[], byte[]> record(String topic, long i) {
        return new ProducerRecord<>(topic, null, null, key(i), value(i), headers(i));
    }

    // ---------------------------------------------------------------------------------------------
    // Clients
    // ---------------------------------------------------------------------------------------------

    static Properties common(String bootstrap) {
        Properties properties = new Properties();
        properties.put("bootstrap.servers", bootstrap);
        properties.put("client.id", CLIENT_ID);
        properties.put("request.timeout.ms", Integer.toString(REQUEST_TIMEOUT_MS));
        return properties;
    }

    static Admin admin(String bootstrap) {
        Properties properties = common(bootstrap);
        properties.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "60000");
        return Admin.create(properties);
    }

    /** acks=all; enable.idempotence left at its default (true) unless {@code idempotent} says otherwise. */
    static KafkaProducer<byte[], byte[]> producer(String bootstrap, String codec, Map<String, String> extra) {
        Properties properties = common(bootstrap);
        properties.put(ProducerConfig.ACKS_CONFIG, "all");
        properties.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        properties.putAll(extra);
        return new KafkaProducer<>(properties, new ByteArraySerializer(), new ByteArraySerializer());
    }

    static KafkaConsumer<byte[], byte[]> groupConsumer(String bootstrap, String group, boolean groupTimeouts) {
        return groupConsumer(bootstrap, group, groupTimeouts, null);
    }

    /** A group member; {@code assignor} (a class name) replaces the default assignors when given. */
    static KafkaConsumer<byte[], byte[]> groupConsumer(String bootstrap, String group, boolean groupTimeouts, String assignor) {
        Properties properties = common(bootstrap);
        if (assignor != null) {
            properties.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
        }
        properties.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        properties.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        properties.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        if (groupTimeouts) {
            properties.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
            properties.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        }
        return new KafkaConsumer<>(properties, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** Creates the topic (RF 1); one that already exists is used as it is (the checks see its partitions). */
    static void createTopic(String bootstrap, String topic, int partitions) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(60, TimeUnit.SECONDS);
            System.err.println("created topic " + topic + " with " + partitions + " partitions");
        } catch (ExecutionException e) {
            if (Errors.forException(e.getCause()) != Errors.TOPIC_ALREADY_EXISTS) {
                throw e;
            }
            System.err.println("topic " + topic + " already exists");
        }
    }

    static int partitionCount(String bootstrap, String topic) throws Exception {
        try (Admin admin = admin(bootstrap)) {
            return admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS).get(topic).partitions().size();
        }
    }

    /** Sends records [from, to) with one producer, each acknowledgement or error an event as it arrives. */
    static void produce(String bootstrap, String topic, String codec, long from, long to, Map<String, String> extra) {
        try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, codec, extra)) {
            for (long i = from; i < to; i++) {
                final long index = i;
                producer.send(record(topic, i), (metadata, error) -> Events.sent(topic, index, codec, metadata, error));
            }
            producer.flush();
        }
    }

    /** Reads every partition of the topic by assignment from offset 0 up to the end offsets, or 120 s. */
    static void readToEnd(String bootstrap, String topic, int partitions) {
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(common(bootstrap), new ByteArrayDeserializer(),
                new ByteArrayDeserializer())) {
            List<TopicPartition> all = new ArrayList<>();
            for (int partition = 0; partition < partitions; partition++) {
                all.add(new TopicPartition(topic, partition));
            }
            consumer.assign(all);
            consumer.seekToBeginning(all);
            long total = consumer.endOffsets(all, Duration.ofSeconds(60)).values().stream().mapToLong(Long::longValue).sum();
            long read = 0;
            long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
            while (read < total && System.nanoTime() < deadline) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                    read++;
                    Events.consumed(record, null);
                }
            }
            System.err.println("read " + read + " records of the " + total + " the end offsets hold");
        }
    }

    // ---------------------------------------------------------------------------------------------
    // roundtrip: five producers (one per codec), then one group member reads everything back
    // ---------------------------------------------------------------------------------------------

    static Body roundtrip(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        int partitions = args.integer("partitions", 12, 1);
        int records = args.integer("records", null, 0);
        return () -> {
            createTopic(bootstrap, topic, partitions);
            List<Thread> threads = new ArrayList<>();
            Map<String, Throwable> failures = new ConcurrentHashMap<>();
            for (int c = 0; c < CODECS.length; c++) {
                String codec = CODECS[c];
                long from = (long) c * records / CODECS.length;
                long to = (long) (c + 1) * records / CODECS.length;
                Thread thread = new Thread(() -> {
                    try {
                        produce(bootstrap, topic, codec, from, to, Map.of());
                    } catch (Throwable e) {
                        failures.put(codec, e);
                    }
                }, "producer-" + codec);
                thread.start();
                threads.add(thread);
            }
            for (Thread thread : threads) {
                thread.join();
            }
            if (!failures.isEmpty()) {
                throw new IllegalStateException("a producer failed: " + failures);
            }
            String group = topic + "-group";
            try (KafkaConsumer<byte[], byte[]> consumer = groupConsumer(bootstrap, group, false)) {
                consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    @Override
                    public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
                    }

                    @Override
                    public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                        Events.assigned(topic, assigned, null);
                    }
                });
                long read = 0;
                long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
                while (System.nanoTime() < deadline) {
                    for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(200))) {
                        read++;
                        Events.consumed(record, null);
                    }
                    if (read >= records) {
                        deadline = Math.min(deadline, System.nanoTime() + DRAIN.toNanos());
                    }
                }
                consumer.commitSync(Duration.ofSeconds(60));
                Set<TopicPartition> all = new HashSet<>();
                for (int partition = 0; partition < partitions; partition++) {
                    all.add(new TopicPartition(topic, partition));
                }
                Events.committed(group, topic, consumer.committed(all, Duration.ofSeconds(60)));
                System.err.println("read " + read + " records in group " + group);
            }
        };
    }

    // ---------------------------------------------------------------------------------------------
    // produce-range: records [S, S+C) uncompressed, acks=all
    // ---------------------------------------------------------------------------------------------

    static Body produceRange(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        int partitions = args.integer("partitions", 12, 1);
        long start = args.integer("start", null, 0);
        int count = args.integer("count", null, 0);
        return () -> {
            createTopic(bootstrap, topic, partitions);
            produce(bootstrap, topic, "none", start, start + count, Map.of());
        };
    }

    // ---------------------------------------------------------------------------------------------
    // produce-until: records 0, 1, 2, ... at a rate until a file exists
    // ---------------------------------------------------------------------------------------------

    /**
     * Produces records 0, 1, 2, ... at about {@code --rate} per second with one {@code acks=all}
     * producer (idempotent unless {@code --idempotent false}) until {@code --stop-file} exists, then
     * flushes and closes. Each acknowledgement or error is an event, flushed as it happens (the
     * caller reads them while agents come and go); a send the client never completed before close
     * is reported as an error.
     */
    static Body produceUntil(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        int partitions = args.integer("partitions", 12, 1);
        int rate = args.integer("rate", null, 1);
        Path stopFile = Path.of(args.text("stop-file"));
        boolean idempotent = args.bool("idempotent", true);
        return () -> {
            createTopic(bootstrap, topic, partitions);
            Set<Long> pending = ConcurrentHashMap.newKeySet();
            AtomicLong acknowledged = new AtomicLong();
            AtomicLong failed = new AtomicLong();
            long sent = 0;
            long started = System.nanoTime();
            Map<String, String> extra = Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, Boolean.toString(idempotent),
                    ProducerConfig.LINGER_MS_CONFIG, "5");
            try (KafkaProducer<byte[], byte[]> producer = producer(bootstrap, "none", extra)) {
                while (!Files.exists(stopFile)) {
                    long due = (long) ((System.nanoTime() - started) / 1e9 * rate);
                    for (; sent < due; sent++) {
                        final long index = sent;
                        pending.add(index);
                        producer.send(record(topic, index), (metadata, error) -> {
                            Events.sent(topic, index, "none", metadata, error);
                            (error == null ? acknowledged : failed).incrementAndGet();
                            pending.remove(index);
                        });
                    }
                    Events.flush();
                    Thread.sleep(10);
                }
                producer.flush();
            }
            for (long index : new TreeSet<>(pending)) {
                Events.emit("producer_send_error", "topic", topic, "index", index, "error", "no completion before the producer closed");
            }
            System.err.printf("sent %d, acknowledged %d, failed %d in %.1f s%n", sent, acknowledged.get(), failed.get(),
                    (System.nanoTime() - started) / 1e9);
        };
    }

    // ---------------------------------------------------------------------------------------------
    // group-consume: several members of one group read until C records came back
    // ---------------------------------------------------------------------------------------------

    /** What a member last reported about itself (published after every poll). */
    record MemberState(String memberId, int generation, Set<Integer> partitions) {
    }

    /**
     * Runs {@code --members} consumers (threads) in group {@code --group}, classic protocol with the
     * eager range assignor, manual commits. The members stay paused until the group has a complete
     * assignment in one generation (or 60 s passed), so no record is read by a member about to lose
     * it; then they read until {@code --records} records came back in all and 1.5 s more (or 150 s),
     * commit and close. Each member's records and assignments name it ({@code member-<m>}); the
     * group's commits are read back through the Admin API at the end.
     */
    static Body groupConsume(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        String group = args.text("group");
        int members = args.integer("members", 3, 1);
        int records = args.integer("records", null, 0);
        return () -> {
            int partitions = partitionCount(bootstrap, topic);
            if (partitions < members) {
                throw new IllegalStateException(topic + " has " + partitions + " partitions, fewer than " + members + " members");
            }
            AtomicBoolean go = new AtomicBoolean(false);
            AtomicBoolean stop = new AtomicBoolean(false);
            AtomicLong read = new AtomicLong();
            CountDownLatch committed = new CountDownLatch(members);
            @SuppressWarnings("unchecked")
            AtomicReference<MemberState>[] states = new AtomicReference[members];
            List<Thread> threads = new ArrayList<>();
            for (int m = 0; m < members; m++) {
                String name = "member-" + m;
                AtomicReference<MemberState> state = new AtomicReference<>(new MemberState("", -1, Set.of()));
                states[m] = state;
                Thread thread = new Thread(() -> member(bootstrap, topic, group, name, go, stop, read, records, committed, state),
                        name);
                thread.start();
                threads.add(thread);
            }
            long assignmentDeadline = System.nanoTime() + ASSIGNMENT_DEADLINE.toNanos();
            String incomplete = "no member has joined";
            while (System.nanoTime() < assignmentDeadline && !stop.get()) {
                MemberState[] snapshot = new MemberState[members];
                for (int m = 0; m < members; m++) {
                    snapshot[m] = states[m].get();
                }
                incomplete = assignmentIncomplete(snapshot, partitions);
                if (incomplete == null) {
                    System.err.println("complete assignment: " + Arrays.toString(snapshot));
                    break;
                }
                Thread.sleep(100);
            }
            if (incomplete != null) {
                System.err.println("no complete assignment within " + ASSIGNMENT_DEADLINE.toSeconds() + " s (" + incomplete
                        + "); reading anyway");
            }
            go.set(true);
            long deadline = System.nanoTime() + CONSUME_DEADLINE.toNanos();
            while (!stop.get() && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            stop.set(true);
            for (Thread thread : threads) {
                thread.join(TimeUnit.SECONDS.toMillis(180));
                if (thread.isAlive()) {
                    throw new IllegalStateException(thread.getName() + " did not finish within 180 s of being told to stop");
                }
            }
            try (Admin admin = admin(bootstrap)) {
                Events.committed(group, topic,
                        admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS));
            }
            System.err.println("the group read " + read.get() + " records");
        };
    }

    static void member(String bootstrap, String topic, String group, String name, AtomicBoolean go, AtomicBoolean stop,
                       AtomicLong read, int records, CountDownLatch committed, AtomicReference<MemberState> state) {
        boolean counted = false;
        try (KafkaConsumer<byte[], byte[]> consumer = groupConsumer(bootstrap, group, true, RangeAssignor.class.getName())) {
            consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                @Override
                public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
                    // Commit what was read so the next owner resumes exactly after it.
                    if (go.get() && !revoked.isEmpty()) {
                        consumer.commitSync(Duration.ofSeconds(30));
                    }
                }

                @Override
                public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                    Events.assigned(topic, assigned, name);
                    // Hold off fetching until the whole group has its assignment.
                    if (!go.get()) {
                        consumer.pause(assigned);
                    }
                }
            });
            long drainUntil = Long.MAX_VALUE;
            while (System.nanoTime() < drainUntil) {
                for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(100))) {
                    Events.consumed(record, name);
                    read.incrementAndGet();
                }
                if (go.get() && !consumer.paused().isEmpty()) {
                    consumer.resume(consumer.paused());
                }
                Set<Integer> owned = new TreeSet<>();
                consumer.assignment().forEach(partition -> owned.add(partition.partition()));
                state.set(new MemberState(consumer.groupMetadata().memberId(), consumer.groupMetadata().generationId(), owned));
                if (go.get() && read.get() >= records) {
                    stop.set(true);
                }
                if (stop.get() && drainUntil == Long.MAX_VALUE) {
                    drainUntil = System.nanoTime() + DRAIN.toNanos();
                }
            }
            consumer.commitSync(Duration.ofSeconds(60));
            counted = true;
            committed.countDown();
            // Leave only once every member committed, so no LeaveGroup-triggered rebalance can
            // interfere with another member's commit.
            committed.await(90, TimeUnit.SECONDS);
        } catch (Throwable e) {
            Events.emit("consumer_error", "error", e.toString(), "consumer", name);
            stop.set(true);
        } finally {
            if (!counted) {
                committed.countDown();
            }
        }
    }

    /** Returns null if the snapshot is a complete, disjoint assignment in one generation, else why not. */
    static String assignmentIncomplete(MemberState[] snapshot, int partitions) {
        Set<Integer> union = new HashSet<>();
        for (int m = 0; m < snapshot.length; m++) {
            MemberState member = snapshot[m];
            if (member.generation() < 0 || member.memberId().isEmpty()) {
                return "member-" + m + " has not joined";
            }
            if (member.generation() != snapshot[0].generation()) {
                return "members are in different generations";
            }
            if (member.partitions().isEmpty()) {
                return "member-" + m + " owns no partition";
            }
            for (int partition : member.partitions()) {
                if (!union.add(partition)) {
                    return "partition " + partition + " is assigned to more than one member";
                }
            }
        }
        return union.size() == partitions ? null : "only " + union.size() + " of " + partitions + " partitions assigned";
    }

    // ---------------------------------------------------------------------------------------------
    // idempotence and read
    // ---------------------------------------------------------------------------------------------

    /** One explicitly idempotent producer (acks=all, five requests in flight), then every partition read from 0. */
    static Body idempotence(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        int partitions = args.integer("partitions", 6, 1);
        int records = args.integer("records", null, 0);
        return () -> {
            createTopic(bootstrap, topic, partitions);
            Map<String, String> extra = Map.of(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true",
                    ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, "5", ProducerConfig.LINGER_MS_CONFIG, "5");
            produce(bootstrap, topic, "none", 0, records, extra);
            readToEnd(bootstrap, topic, partitions);
        };
    }

    /**
     * Reads every partition of a topic another client (or run) produced, by assignment from offset 0
     * up to the end offsets. The Java consumer decodes every codec with Kafka's own implementation,
     * so the checks catch batches a client compressed in a way only it can read.
     */
    static Body read(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        return () -> readToEnd(bootstrap, topic, partitionCount(bootstrap, topic));
    }

    // ---------------------------------------------------------------------------------------------
    // admin
    // ---------------------------------------------------------------------------------------------

    interface Call {
        Map<String, Object> run() throws Exception;
    }

    /** Runs one administrative call and reports it: the Kafka error name of its failure, or what it answered. */
    static void report(String operation, String resource, Call call) throws InterruptedException {
        Map<String, Object> result = Map.of();
        String error = null;
        try {
            result = call.run();
        } catch (ExecutionException e) {
            error = errorName(e.getCause());
        } catch (InterruptedException e) {
            throw e;
        } catch (Exception e) {
            error = errorName(e);
        }
        Events.emit("admin_result", "operation", operation, "resource", resource, "error", error, "result", result);
    }

    static String errorName(Throwable error) {
        Errors known = Errors.forException(error);
        return known == Errors.UNKNOWN_SERVER_ERROR ? error.toString() : known.name();
    }

    interface Condition {
        boolean holds() throws Exception;
    }

    /** Polls until the condition holds or the timeout passed (then the next report shows what it was). */
    static void waitFor(String what, Duration timeout, Condition condition) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            try {
                if (condition.holds()) {
                    return;
                }
            } catch (Exception e) {
                // Reported by the call that follows.
            }
            Thread.sleep(100);
        }
        System.err.println("waited " + timeout.toSeconds() + " s for " + what + " in vain");
    }

    static Map<String, Object> describePartitions(Admin admin, String topic) throws Exception {
        TopicDescription description = admin.describeTopics(List.of(topic)).allTopicNames().get(60, TimeUnit.SECONDS).get(topic);
        List<Integer> partitions = new ArrayList<>();
        List<Integer> leaders = new ArrayList<>();
        boolean inSync = true;
        for (TopicPartitionInfo partition : description.partitions()) {
            partitions.add(partition.partition());
            leaders.add(partition.leader() == null ? -1 : partition.leader().id());
            inSync &= partition.isr().equals(partition.replicas());
        }
        return Json.object("partitions", partitions, "leaders", leaders, "isr_is_replicas", inSync);
    }

    static Map<String, Object> describeConfigs(Admin admin, ConfigResource resource) throws Exception {
        Config config = admin.describeConfigs(List.of(resource)).all().get(60, TimeUnit.SECONDS).get(resource);
        Map<String, Object> configs = new TreeMap<>();
        for (ConfigEntry entry : config.entries()) {
            configs.put(entry.name(), Json.object("value", entry.value(), "source", entry.source().name()));
        }
        return Json.object("configs", configs);
    }

    @SuppressWarnings("deprecation") // listConsumerGroups is what the issue names; listGroups is its 4.1 successor.
    static Map<String, Object> listGroups(Admin admin, String group) throws Exception {
        Collection<ConsumerGroupListing> listed = admin.listConsumerGroups().all().get(60, TimeUnit.SECONDS);
        for (ConsumerGroupListing listing : listed) {
            if (listing.groupId().equals(group)) {
                return Json.object("listed", true, "state", listing.groupState().map(state -> state.toString()).orElse(null),
                        "protocol_type", listing.isSimpleConsumerGroup() ? "" : "consumer");
            }
        }
        return Json.object("listed", false, "state", null, "protocol_type", "");
    }

    static Map<String, Object> describeGroup(Admin admin, String group, String topic) throws Exception {
        ConsumerGroupDescription described = admin.describeConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS).get(group);
        List<Object> members = new ArrayList<>();
        for (MemberDescription member : described.members()) {
            List<Integer> partitions = new ArrayList<>(new TreeSet<>(member.assignment().topicPartitions().stream()
                    .filter(partition -> partition.topic().equals(topic)).map(TopicPartition::partition).toList()));
            members.add(Json.object("client_id", member.clientId(), "partitions", partitions));
        }
        return Json.object("state", described.groupState().toString(), "protocol_type",
                described.isSimpleConsumerGroup() ? "" : "consumer", "members", members,
                "coordinator", described.coordinator() == null ? -1 : described.coordinator().id(),
                "assignor", described.partitionAssignor());
    }

    /**
     * The Admin API against a fresh topic and a group, each call an admin_result (the Rust test holds
     * the expectations): topics (create, create again, describe, create partitions, shrink, delete),
     * configs (describe, incremental SET and DELETE) and a group with one live member that read and
     * committed 50 records (list, describe, committed offsets, end offsets, delete while it has a
     * member, and once it left, twice). The waits between steps are the only conditions it checks.
     */
    static Body adminMode(Args args) {
        String bootstrap = args.text("bootstrap");
        String topic = args.text("topic");
        String group = topic + "-admin-group";
        return () -> {
            try (Admin admin = admin(bootstrap)) {
                report("create_topics", topic, () -> {
                    admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1).configs(Map.of("retention.ms", "3600000"))))
                            .all().get(60, TimeUnit.SECONDS);
                    return Json.object("partitions", 3);
                });
                report("create_topics", topic, () -> {
                    admin.createTopics(List.of(new NewTopic(topic, 3, (short) 1))).all().get(60, TimeUnit.SECONDS);
                    return Json.object("partitions", 3);
                });
                report("list_topics", topic, () -> Json.object("listed", admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic)));
                waitFor(topic + " to show 3 partitions", Duration.ofSeconds(30),
                        () -> describePartitions(admin, topic).get("partitions").equals(List.of(0, 1, 2)));
                report("metadata", topic, () -> describePartitions(admin, topic));
                report("create_partitions", topic, () -> {
                    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(60, TimeUnit.SECONDS);
                    return Json.object("total", 5);
                });
                waitFor(topic + " to show 5 partitions", Duration.ofSeconds(30),
                        () -> describePartitions(admin, topic).get("partitions").equals(List.of(0, 1, 2, 3, 4)));
                report("metadata", topic, () -> describePartitions(admin, topic));
                report("create_partitions", topic, () -> {
                    admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(3))).all().get(60, TimeUnit.SECONDS);
                    return Json.object("total", 3);
                });

                ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                report("describe_configs", topic, () -> describeConfigs(admin, resource));
                report("incremental_alter_configs", topic, () -> {
                    admin.incrementalAlterConfigs(Map.of(resource, List.of(
                            new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                            new AlterConfigOp(new ConfigEntry("retention.bytes", "1048576"), AlterConfigOp.OpType.SET))))
                            .all().get(60, TimeUnit.SECONDS);
                    return Json.object("op", "set");
                });
                report("describe_configs", topic, () -> describeConfigs(admin, resource));
                report("incremental_alter_configs", topic, () -> {
                    admin.incrementalAlterConfigs(Map.of(resource, List.of(
                            new AlterConfigOp(new ConfigEntry("retention.bytes", ""), AlterConfigOp.OpType.DELETE))))
                            .all().get(60, TimeUnit.SECONDS);
                    return Json.object("op", "delete");
                });
                report("describe_configs", topic, () -> describeConfigs(admin, resource));

                groupAdmin(bootstrap, admin, topic, group);

                report("delete_topics", topic, () -> {
                    admin.deleteTopics(List.of(topic)).all().get(60, TimeUnit.SECONDS);
                    return Map.of();
                });
                waitFor(topic + " to disappear", Duration.ofSeconds(30),
                        () -> !admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic));
                report("list_topics", topic, () -> Json.object("listed", admin.listTopics().names().get(60, TimeUnit.SECONDS).contains(topic)));
            }
        };
    }

    static void groupAdmin(String bootstrap, Admin admin, String topic, String group) throws Exception {
        final int records = 50;
        produce(bootstrap, topic, "none", 0, records, Map.of());
        try (KafkaConsumer<byte[], byte[]> consumer = groupConsumer(bootstrap, group, true)) {
            consumer.subscribe(List.of(topic));
            int[] read = {0};
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            while (read[0] < records && System.nanoTime() < deadline) {
                read[0] += consumer.poll(Duration.ofMillis(200)).count();
            }
            report("commit", group, () -> {
                consumer.commitSync(Duration.ofSeconds(60));
                return Json.object("read", read[0]);
            });

            // While the member is alive.
            report("list_groups", group, () -> listGroups(admin, group));
            report("describe_groups", group, () -> describeGroup(admin, group, topic));
            report("offset_fetch", group, () -> {
                Map<String, Object> offsets = new TreeMap<>();
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS)
                        .forEach((partition, offset) -> offsets.put(Integer.toString(partition.partition()), offset.offset()));
                return Json.object("offsets", offsets);
            });
            report("list_offsets", topic, () -> {
                Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
                for (int partition = 0; partition < 5; partition++) {
                    latest.put(new TopicPartition(topic, partition), OffsetSpec.latest());
                }
                Map<String, Object> offsets = new TreeMap<>();
                admin.listOffsets(latest).all().get(60, TimeUnit.SECONDS)
                        .forEach((partition, offset) -> offsets.put(Integer.toString(partition.partition()), offset.offset()));
                return Json.object("offsets", offsets);
            });
            report("delete_groups", group, () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS);
                return Map.of();
            });
        }
        // Once the member left.
        waitFor(group + " to become Empty", Duration.ofSeconds(30),
                () -> describeGroup(admin, group, topic).get("state").equals("Empty"));
        report("describe_groups", group, () -> describeGroup(admin, group, topic));
        for (int attempt = 0; attempt < 2; attempt++) {
            report("delete_groups", group, () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get(60, TimeUnit.SECONDS);
                return Map.of();
            });
        }
        report("list_groups", group, () -> listGroups(admin, group));
    }

    private Main() {
    }
}
