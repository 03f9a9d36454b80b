package dev.floe.e2e;

import static dev.floe.e2e.EventLine.event;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.InterruptException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Kafka transactions through the Apache Kafka Java client, one scenario per mode. Each mode prints
 * one JSON object per line on stdout ({@code {"event":"...",...}}); the client's logs and this
 * program's progress go to stderr. It checks nothing about the data: the Rust suite compares what
 * was reported committed, aborted and read back.
 *
 * <ul>
 *   <li>{@code produce}: one transactional producer alternates committed (even) and aborted (odd)
 *       transactions. Proves InitProducerId, AddPartitionsToTxn, transactional produce and EndTxn
 *       with both outcomes, i.e. that the coordinator writes commit and abort markers.</li>
 *   <li>{@code consume}: reads every partition from the beginning without a group at the given
 *       isolation level. With read_committed it proves aborted records and control records are
 *       hidden and that the end offsets are the last stable offset; with read_uncommitted that
 *       aborted records are stored and returned.</li>
 *   <li>{@code fence}: a second producer with the same transactional.id fences the first (the
 *       zombie) and aborts its open transaction; the zombie's next send or commit fails, and the
 *       new producer commits normally.</li>
 *   <li>{@code timeout}: a transaction left open past transaction.timeout.ms is aborted by the
 *       coordinator; the producer's late commit fails.</li>
 * </ul>
 *
 * <p>The fence and timeout modes write to partition 0 only, so which request the broker must
 * reject first (the zombie's produce on a partition whose producer epoch was bumped) does not
 * depend on the partitioner.
 *
 * <p>Exit status: 0 when the mode ran to its end (whatever the outcome events say), 1 when
 * something unexpected happened (a fatal producer error, a commit still in doubt, a read that did
 * not finish in time; the reason is on stderr), 2 on bad usage.
 */
public final class Transactions {

    static final String USAGE = String.join("\n",
            "usage: java -cp 'floe-e2e-java.jar:libs/*' dev.floe.e2e.Transactions <mode> <args...>",
            "  produce <bootstrap> <topic> <transactional-id> <transactions> <records-per-transaction> [<pause-ms>]",
            "  consume <bootstrap> <topic> <read_committed|read_uncommitted> <idle-ms>",
            "  fence   <bootstrap> <topic> <transactional-id>",
            "  timeout <bootstrap> <topic> <transactional-id> <transaction-timeout-ms> [<hold-ms>]");

    static final int TRANSACTION_TIMEOUT_MS = 60_000;
    /** How many times a commit (or abort) that timed out is retried before it is reported in doubt. */
    static final int COMMIT_RETRIES = 5;
    static final Duration CONSUME_DEADLINE = Duration.ofSeconds(120);
    static final Duration CLIENT_CALL_TIMEOUT = Duration.ofSeconds(30);
    static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(10);

    /** Bad command line: exit status 2. */
    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    /** The mode cannot go on; what happened was already printed as an event where there is one. */
    static final class Failure extends RuntimeException {
        Failure(String message, Throwable cause) {
            super(message, cause);
        }
    }

    public static void main(String[] argv) {
        String mode = argv.length > 0 ? argv[0] : "";
        String[] args = argv.length > 0 ? Arrays.copyOfRange(argv, 1, argv.length) : argv;
        int status;
        try {
            switch (mode) {
                case "produce" -> produce(args);
                case "consume" -> consume(args);
                case "fence" -> fence(args);
                case "timeout" -> timeout(args);
                default -> throw new UsageError("unknown mode '" + mode + "'");
            }
            status = 0;
        } catch (UsageError e) {
            System.err.println("usage error: " + e.getMessage());
            System.err.println(USAGE);
            status = 2;
        } catch (Failure e) {
            System.err.println("transactions " + mode + " failed: " + e.getMessage());
            if (e.getCause() != null) {
                e.getCause().printStackTrace(System.err);
            }
            status = 1;
        } catch (Throwable t) {
            System.err.println("transactions " + mode + " cannot go on: " + t);
            t.printStackTrace(System.err);
            status = 1;
        }
        System.out.flush();
        System.err.flush();
        // The clients are closed by now, but never let a straggling client thread keep the JVM alive.
        System.exit(status);
    }

    // ---------------------------------------------------------------------------------------------
    // produce
    // ---------------------------------------------------------------------------------------------

    static void produce(String[] args) throws InterruptedException {
        if (args.length != 5 && args.length != 6) {
            throw new UsageError("produce takes 5 or 6 arguments, got " + args.length);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String transactionalId = args[2];
        int transactions = (int) number(args[3], "transactions");
        int perTransaction = (int) number(args[4], "records-per-transaction");
        long pauseMs = args.length == 6 ? number(args[5], "pause-ms") : 0;

        KafkaProducer<String, String> producer =
                producer(bootstrap, transactionalId, "floe-e2e-txn-produce", TRANSACTION_TIMEOUT_MS);
        try {
            try {
                producer.initTransactions();
            } catch (RuntimeException e) {
                throw fatal("initTransactions", e);
            }
            log("initialized transactional.id " + transactionalId);
            for (int i = 0; i < transactions; i++) {
                if (i > 0 && pauseMs > 0) {
                    Thread.sleep(pauseMs);
                }
                transaction(producer, topic, i, perTransaction);
            }
            event("done");
        } finally {
            producer.close(CLOSE_TIMEOUT);
        }
    }

    /** Transaction {@code i}: committed when even, aborted when odd; an abortable error aborts it. */
    static void transaction(KafkaProducer<String, String> producer, String topic, int i, int records) {
        boolean commit = i % 2 == 0;
        List<String> values = new ArrayList<>(records);
        for (int j = 0; j < records; j++) {
            values.add((commit ? "c-" : "a-") + i + "-" + j);
        }
        try {
            producer.beginTransaction();
            for (int j = 0; j < records; j++) {
                // No partition: the default partitioner spreads the keys over the topic's partitions.
                producer.send(new ProducerRecord<>(topic, "k-" + j, values.get(j)));
            }
            if (commit) {
                // commitTransaction flushes first and fails if any of the sends failed.
                finish(producer::commitTransaction, "commitTransaction", i, values);
                event("committed", "transaction", i, "values", values);
            } else {
                // The records reach the partitions first (abortTransaction alone would drop unsent
                // batches): what is proved is that written records stay invisible.
                producer.flush();
                finish(producer::abortTransaction, "abortTransaction", i, values);
                event("aborted", "transaction", i, "values", values);
            }
        } catch (Failure e) {
            throw e;
        } catch (RuntimeException e) {
            if (!abortable(e)) {
                throw fatal("transaction " + i, e);
            }
            log("transaction " + i + " failed with an abortable error, aborting: " + describe(e));
            try {
                finish(producer::abortTransaction, "abortTransaction", i, values);
            } catch (Failure abortFailure) {
                throw abortFailure;
            } catch (RuntimeException abortError) {
                throw fatal("abortTransaction after " + describe(e), abortError);
            }
            event("aborted", "transaction", i, "values", values, "error", describe(e));
        }
    }

    /**
     * Runs commitTransaction or abortTransaction, retrying it when it times out (the javadoc says
     * both can be retried then). Still timing out after the retries: the outcome is in doubt, which
     * is reported and ends the run. Any other exception is the caller's.
     */
    static void finish(Runnable call, String what, int i, List<String> values) {
        TimeoutException last = null;
        for (int attempt = 0; attempt <= COMMIT_RETRIES; attempt++) {
            try {
                call.run();
                return;
            } catch (TimeoutException e) {
                last = e;
                log(what + " of transaction " + i + " timed out (attempt " + (attempt + 1) + "): " + e.getMessage());
            }
        }
        event("in_doubt", "transaction", i, "values", values, "error", describe(last));
        throw new Failure(what + " of transaction " + i + " still timing out after " + COMMIT_RETRIES + " retries", last);
    }

    /**
     * The KafkaProducer javadoc's rule: a KafkaException other than these fatal ones leaves the
     * producer usable once the transaction is aborted.
     */
    static boolean abortable(Throwable e) {
        if (!(e instanceof KafkaException)) {
            return false;
        }
        for (Throwable t = e; t != null; t = t.getCause() == t ? null : t.getCause()) {
            if (t instanceof ProducerFencedException
                    || t instanceof OutOfOrderSequenceException
                    || t instanceof AuthorizationException
                    || t instanceof UnsupportedVersionException
                    || t instanceof InterruptException) {
                return false;
            }
        }
        return true;
    }

    /** Reports a fatal producer error and returns the failure to throw. */
    static Failure fatal(String where, Throwable e) {
        event("fatal", "error", describe(e));
        return new Failure("fatal error in " + where + ": " + describe(e), e);
    }

    // ---------------------------------------------------------------------------------------------
    // consume
    // ---------------------------------------------------------------------------------------------

    static void consume(String[] args) {
        if (args.length != 4) {
            throw new UsageError("consume takes 4 arguments, got " + args.length);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String isolation = args[2];
        if (!isolation.equals("read_committed") && !isolation.equals("read_uncommitted")) {
            throw new UsageError("isolation level must be read_committed or read_uncommitted, got '" + isolation + "'");
        }
        long idleNanos = TimeUnit.MILLISECONDS.toNanos(number(args[3], "idle-ms"));
        long start = System.nanoTime();
        long deadline = start + CONSUME_DEADLINE.toNanos();

        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, "floe-e2e-txn-consume");
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, false);

        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(config)) {
            List<TopicPartition> partitions = partitions(consumer, topic, deadline);
            consumer.assign(partitions);
            consumer.seekToBeginning(partitions);
            // ListOffsets at the consumer's isolation level: the last stable offset for read_committed.
            Map<TopicPartition, Long> end = consumer.endOffsets(partitions, CLIENT_CALL_TIMEOUT);
            log("reading " + topic + " (" + isolation + ") up to " + end);

            Set<TopicPartition> behind = new HashSet<>(partitions);
            long count = 0;
            long lastArrival = start;
            while (true) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(100));
                long now = System.nanoTime();
                for (ConsumerRecord<String, String> record : records) {
                    event("record", "partition", record.partition(), "offset", record.offset(), "value", record.value());
                    count++;
                }
                if (!records.isEmpty()) {
                    lastArrival = now;
                }
                // The position also moves past control records and (read_committed) aborted ones.
                behind.removeIf(tp -> consumer.position(tp, CLIENT_CALL_TIMEOUT) >= end.get(tp));
                if (behind.isEmpty() && now - lastArrival >= idleNanos) {
                    break;
                }
                if (now - deadline > 0) {
                    Map<Integer, String> positions = new TreeMap<>();
                    for (TopicPartition tp : behind) {
                        positions.put(tp.partition(), consumer.position(tp, CLIENT_CALL_TIMEOUT) + " of " + end.get(tp));
                    }
                    throw new Failure("gave up after " + CONSUME_DEADLINE.toSeconds() + " s with " + count
                            + " records read; partitions not at their end offset (position of end): " + positions, null);
                }
            }

            Map<String, Object> endOffsets = new LinkedHashMap<>();
            new TreeMap<Integer, Long>(end.entrySet().stream().collect(
                    java.util.stream.Collectors.toMap(entry -> entry.getKey().partition(), Map.Entry::getValue)))
                    .forEach((partition, offset) -> endOffsets.put(String.valueOf(partition), offset));
            event("end", "count", count, "end_offsets", endOffsets);
        }
    }

    /** All partitions of {@code topic}, waiting for its metadata until the deadline. */
    static List<TopicPartition> partitions(KafkaConsumer<String, String> consumer, String topic, long deadline) {
        while (true) {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, CLIENT_CALL_TIMEOUT);
            if (infos != null && !infos.isEmpty()) {
                List<TopicPartition> partitions = new ArrayList<>();
                for (PartitionInfo info : infos) {
                    partitions.add(new TopicPartition(topic, info.partition()));
                }
                partitions.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
                return partitions;
            }
            if (System.nanoTime() - deadline > 0) {
                throw new Failure("topic " + topic + " has no partitions (does it exist?)", null);
            }
            sleep(200);
        }
    }

    // ---------------------------------------------------------------------------------------------
    // fence
    // ---------------------------------------------------------------------------------------------

    static void fence(String[] args) throws ExecutionException, InterruptedException {
        if (args.length != 3) {
            throw new UsageError("fence takes 3 arguments, got " + args.length);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String transactionalId = args[2];

        KafkaProducer<String, String> zombie =
                producer(bootstrap, transactionalId, "floe-e2e-txn-zombie", TRANSACTION_TIMEOUT_MS);
        KafkaProducer<String, String> fresh = null;
        try {
            zombie.initTransactions();
            zombie.beginTransaction();
            zombie.send(record(topic, "zombie-0")).get();
            log("zombie sent zombie-0 in an open transaction");

            fresh = producer(bootstrap, transactionalId, "floe-e2e-txn-fresh", TRANSACTION_TIMEOUT_MS);
            // Bumps the epoch of the transactional.id: fences the zombie and aborts its transaction.
            fresh.initTransactions();
            event("new_producer_initialized");

            String stage = "send";
            try {
                zombie.send(record(topic, "zombie-1")).get();
                log("the broker accepted zombie-1 from the fenced producer; committing");
                stage = "commit";
                zombie.commitTransaction();
                event("not_fenced");
            } catch (ExecutionException e) {
                Throwable cause = e.getCause() != null ? e.getCause() : e;
                log("zombie failed at " + stage + ": " + describe(cause));
                event("fenced", "error", names(cause));
            } catch (KafkaException | IllegalStateException e) {
                log("zombie failed at " + stage + ": " + describe(e));
                event("fenced", "error", names(e));
            }

            fresh.beginTransaction();
            fresh.send(record(topic, "fresh-0"));
            fresh.commitTransaction();
            event("committed", "values", List.of("fresh-0"));

            zombie.close(Duration.ZERO);
            zombie = null;
            fresh.close(CLOSE_TIMEOUT);
            fresh = null;
            event("done");
        } finally {
            if (zombie != null) {
                zombie.close(Duration.ZERO);
            }
            if (fresh != null) {
                fresh.close(Duration.ZERO);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // timeout
    // ---------------------------------------------------------------------------------------------

    static void timeout(String[] args) throws ExecutionException, InterruptedException {
        if (args.length != 4 && args.length != 5) {
            throw new UsageError("timeout takes 4 or 5 arguments, got " + args.length);
        }
        String bootstrap = args[0];
        String topic = args[1];
        String transactionalId = args[2];
        long timeoutMs = number(args[3], "transaction-timeout-ms");
        if (timeoutMs < 1 || timeoutMs > Integer.MAX_VALUE) {
            throw new UsageError("transaction-timeout-ms must be between 1 and " + Integer.MAX_VALUE);
        }

        KafkaProducer<String, String> producer =
                producer(bootstrap, transactionalId, "floe-e2e-txn-timeout", (int) timeoutMs);
        try {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(record(topic, "expired-0")).get();
            event("sent");
            // Optionally held for a given time instead (shorter than the timeout: the commit must
            // then succeed).
            long sleepMs = args.length == 5 ? number(args[4], "hold-ms") : 3 * timeoutMs + 2000;
            log("leaving the transaction open for " + sleepMs + " ms");
            Thread.sleep(sleepMs);
            try {
                producer.send(record(topic, "expired-1"));
                producer.commitTransaction();
                event("committed");
            } catch (KafkaException | IllegalStateException e) {
                log("the late commit failed: " + describe(e));
                event("aborted_by_coordinator", "error", describe(e));
            }
        } finally {
            producer.close(Duration.ZERO);
        }
        event("done");
    }

    // ---------------------------------------------------------------------------------------------
    // Clients
    // ---------------------------------------------------------------------------------------------

    static KafkaProducer<String, String> producer(String bootstrap, String transactionalId, String clientId,
                                                  int transactionTimeoutMs) {
        Properties config = new Properties();
        config.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        // Distinct client ids: the fence mode runs two producers with one transactional.id in this JVM.
        config.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        config.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId);
        config.put(ProducerConfig.ACKS_CONFIG, "all");
        config.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        config.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        config.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 120_000);
        config.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 15_000);
        config.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, transactionTimeoutMs);
        config.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 120_000);
        return new KafkaProducer<>(config);
    }

    /** A record without a key on partition 0 (the fence and timeout modes). */
    static ProducerRecord<String, String> record(String topic, String value) {
        return new ProducerRecord<>(topic, 0, null, value);
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------

    /** The simple class names of {@code e} and its causes: {@code KafkaException caused by ProducerFencedException}. */
    static String names(Throwable e) {
        StringBuilder names = new StringBuilder();
        int depth = 0;
        for (Throwable t = e; t != null && depth < 8; t = t.getCause() == t ? null : t.getCause(), depth++) {
            if (depth > 0) {
                names.append(" caused by ");
            }
            names.append(t.getClass().getSimpleName());
        }
        return names.toString();
    }

    /** {@link #names} and the exception's message. */
    static String describe(Throwable e) {
        return names(e) + ": " + e.getMessage();
    }

    static long number(String text, String what) {
        try {
            long value = Long.parseLong(text);
            if (value < 0 || value > Integer.MAX_VALUE) {
                throw new UsageError(what + " must be between 0 and " + Integer.MAX_VALUE + ", got " + text);
            }
            return value;
        } catch (NumberFormatException e) {
            throw new UsageError(what + " must be a number, got '" + text + "'");
        }
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Failure("interrupted", e);
        }
    }

    static void log(String message) {
        System.err.println("[transactions] " + message);
        System.err.flush();
    }
}
