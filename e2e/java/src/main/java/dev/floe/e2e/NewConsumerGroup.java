package dev.floe.e2e;

import static dev.floe.e2e.EventLine.event;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RetriableCommitFailedException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedMemberEpochException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.StaleMemberEpochException;
import org.apache.kafka.common.errors.UnknownMemberIdException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * The KIP-848 consumer group protocol ({@code group.protocol=consumer}, the assignment computed by
 * the broker) through the Apache Kafka Java consumer. Three members {@code m0}, {@code m1},
 * {@code m2} join one group, each polling in its own thread and committing synchronously what it
 * consumed; then {@code m1} leaves and {@code m3} joins. After each membership change it waits for
 * the members' assignments to be disjoint and to cover every partition of the topic, then consumes
 * until the expected number of distinct records was read, closes the members and reads the group's
 * committed offsets and description back with an Admin client.
 *
 * <p>Every step prints one JSON object per line on stdout ({@code {"event":"...",...}}):
 * {@code assigned}, {@code revoked} and {@code lost} from the rebalance listeners (the partition
 * numbers of the topic, sorted), {@code record}, {@code committed} (or {@code commit_failed} when
 * the coordinator rejected a commit during a rebalance; the member goes on), {@code balanced} per
 * phase, {@code left}, {@code done}, {@code offsets}, {@code described} or {@code admin_error}, and
 * {@code member_error}, {@code timeout} or {@code aborted} when something went wrong. It checks
 * nothing about the data: the Rust suite does. Logs go to stderr.
 *
 * <p>Only a member's own thread touches its KafkaConsumer; the main thread reads the assignments
 * the members publish (from their listeners and after every poll).
 *
 * <p>Exit status: 0 when every step completed, 1 when a member failed or a step timed out (each
 * waiting step has 60 s, the whole program 180 s), 2 on bad usage.
 */
public final class NewConsumerGroup {

    static final String USAGE =
            "usage: java -cp 'floe-e2e-java.jar:libs/*' dev.floe.e2e.NewConsumerGroup <bootstrap> <topic> <group> <expected-records>";

    static final Duration POLL = Duration.ofMillis(100);
    static final long CHECK_EVERY_MS = 100;
    static final long STEP_TIMEOUT_MS = 60_000;
    static final long PROGRAM_TIMEOUT_MS = 180_000;
    static final Duration CLIENT_CALL_TIMEOUT = Duration.ofSeconds(30);
    /** How long the main thread waits for a member to commit, close (leave the group) and stop. */
    static final long MEMBER_STOP_TIMEOUT_MS = 45_000;

    /** Bad command line: exit status 2. */
    static final class UsageError extends RuntimeException {
        UsageError(String message) {
            super(message);
        }
    }

    /** A (partition, offset) pair consumed by some member. */
    record Position(int partition, long offset) {
    }

    static String bootstrap;
    static String topic;
    static String group;
    static long expected;
    /** System.nanoTime() after which the whole program gives up. */
    static long programDeadline;

    static final Set<Position> DISTINCT = ConcurrentHashMap.newKeySet();
    static final AtomicLong TOTAL = new AtomicLong();
    static final AtomicBoolean MEMBER_FAILED = new AtomicBoolean();
    /** Every member started so far, by name, in start order. */
    static final Map<String, Member> MEMBERS = new ConcurrentHashMap<>();

    public static void main(String[] argv) {
        int status;
        try {
            status = run(argv);
        } catch (UsageError e) {
            System.err.println("usage error: " + e.getMessage());
            System.err.println(USAGE);
            status = 2;
        } catch (Throwable t) {
            System.err.println("new-consumer-group cannot go on: " + t);
            t.printStackTrace(System.err);
            status = 1;
        }
        System.out.flush();
        System.err.flush();
        // The clients are closed by now, but never let a straggling client thread keep the JVM alive.
        System.exit(status);
    }

    static int run(String[] argv) throws InterruptedException {
        if (argv.length != 4) {
            throw new UsageError("expected 4 arguments, got " + argv.length);
        }
        bootstrap = argv[0];
        topic = argv[1];
        group = argv[2];
        try {
            expected = Long.parseLong(argv[3]);
        } catch (NumberFormatException e) {
            throw new UsageError("expected-records must be a number, got '" + argv[3] + "'");
        }
        if (expected < 0) {
            throw new UsageError("expected-records must be >= 0, got " + argv[3]);
        }
        programDeadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(PROGRAM_TIMEOUT_MS);
        startWatchdog();

        try (Admin admin = admin()) {
            int partitions = partitionCount(admin);
            if (partitions < 0) {
                return 1;
            }
            log("topic " + topic + " has " + partitions + " partitions");
            boolean ok = true;

            // Phase 1: three members.
            Member m0 = Member.start("m0");
            Member m1 = Member.start("m1");
            Member m2 = Member.start("m2");
            if (!awaitBalance("phase 1", 1, List.of(m0, m1, m2), partitions, true)) {
                return abort(List.of(m0, m1, m2));
            }

            // Phase 2: m1 commits, closes (leaves the group) and stops.
            if (!m1.stop(MEMBER_STOP_TIMEOUT_MS)) {
                event("timeout", "step", "m1 leave", "assignments", assignments(List.of(m0, m1, m2)));
                return abort(List.of(m0, m1, m2));
            }
            event("left", "member", "m1");
            if (!awaitBalance("phase 2", 2, List.of(m0, m2), partitions, false)) {
                return abort(List.of(m0, m2));
            }

            // Phase 3: m3 joins.
            Member m3 = Member.start("m3");
            List<Member> remaining = List.of(m0, m2, m3);
            if (!awaitBalance("phase 3", 3, remaining, partitions, true)) {
                return abort(remaining);
            }

            // Consume until every expected record was read, then one more poll round per member.
            long recordsDeadline = stepDeadline();
            while (DISTINCT.size() < expected && !anyFinished(remaining) && before(recordsDeadline)) {
                Thread.sleep(CHECK_EVERY_MS);
            }
            if (DISTINCT.size() < expected) {
                event("timeout", "step", "records", "distinct", DISTINCT.size(), "expected", expected,
                        "assignments", assignments(remaining));
                ok = false;
            }
            Map<Member, Long> roundsThen = new LinkedHashMap<>();
            for (Member member : remaining) {
                roundsThen.put(member, member.rounds.get());
            }
            // Two more completed rounds: at least one poll that started after the count was reached.
            while (before(programDeadline) && roundsThen.entrySet().stream()
                    .anyMatch(entry -> !entry.getKey().finished && entry.getKey().rounds.get() < entry.getValue() + 2)) {
                Thread.sleep(CHECK_EVERY_MS);
            }
            for (Member member : remaining) {
                member.stopping = true; // all of them commit and close at once
            }
            for (Member member : remaining) {
                if (!member.stop(MEMBER_STOP_TIMEOUT_MS)) {
                    event("timeout", "step", member.name + " close", "assignments", assignments(remaining));
                    ok = false;
                }
            }
            event("done", "distinct", DISTINCT.size(), "total", TOTAL.get());

            offsets(admin);
            describe(admin);

            if (MEMBER_FAILED.get()) {
                ok = false;
            }
            return ok ? 0 : 1;
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Members
    // ---------------------------------------------------------------------------------------------

    /** One group member: a KafkaConsumer polling in its own thread until it is asked to stop. */
    static final class Member implements Runnable {
        final String name;
        final Thread thread;
        /** Completed poll rounds. */
        final AtomicLong rounds = new AtomicLong();
        /** The partitions of the topic this member owns, sorted; published for the main thread. */
        volatile List<Integer> assignment = List.of();
        volatile boolean stopping;
        volatile boolean finished;

        private Member(String name) {
            this.name = name;
            this.thread = new Thread(this, "member-" + name);
            this.thread.setDaemon(true);
        }

        static Member start(String name) {
            Member member = new Member(name);
            MEMBERS.put(name, member);
            log("starting " + name);
            member.thread.start();
            return member;
        }

        /** Asks the member to commit, close and stop; true once its thread ended within the timeout. */
        boolean stop(long timeoutMs) throws InterruptedException {
            stopping = true;
            thread.join(Math.max(1, Math.min(timeoutMs, remainingMs(programDeadline))));
            return !thread.isAlive();
        }

        @Override
        public void run() {
            KafkaConsumer<String, String> consumer = null;
            try {
                consumer = new KafkaConsumer<>(config(name));
                consumer.subscribe(List.of(topic), new Listener(consumer));
                while (!stopping) {
                    ConsumerRecords<String, String> records = consumer.poll(POLL);
                    for (ConsumerRecord<String, String> record : records) {
                        event("record", "member", name, "partition", record.partition(), "offset", record.offset(),
                                "value", record.value());
                        DISTINCT.add(new Position(record.partition(), record.offset()));
                        TOTAL.incrementAndGet();
                    }
                    if (!records.isEmpty()) {
                        commit(consumer);
                    }
                    assignment = numbers(consumer.assignment());
                    rounds.incrementAndGet();
                }
                commit(consumer);
                log(name + " closing");
                // Leaves the group: the listener sees the revocation of what the member still owns.
                KafkaConsumer<String, String> closing = consumer;
                consumer = null;
                closing.close();
                log(name + " closed");
            } catch (Throwable t) {
                MEMBER_FAILED.set(true);
                event("member_error", "member", name, "error", describe(t));
                System.err.println("member " + name + " failed: " + t);
                t.printStackTrace(System.err);
            } finally {
                if (consumer != null) {
                    try {
                        consumer.close(Duration.ZERO);
                    } catch (Throwable t) {
                        log(name + " close after its failure failed too: " + describe(t));
                    }
                }
                assignment = List.of();
                finished = true;
            }
        }

        /**
         * commitSync() of the consumed positions. A commit the coordinator rejects because the
         * group is rebalancing (the member's epoch moved on, or it lost its partitions) is reported
         * and skipped: the partitions' next owner reads from the last committed offset.
         */
        void commit(KafkaConsumer<String, String> consumer) {
            try {
                consumer.commitSync();
                event("committed", "member", name);
            } catch (CommitFailedException | RetriableCommitFailedException | RebalanceInProgressException
                     | StaleMemberEpochException | FencedMemberEpochException | UnknownMemberIdException e) {
                log(name + " commit rejected: " + describe(e));
                event("commit_failed", "member", name, "error", describe(e));
            }
        }

        /** Prints and publishes the assignment changes; called from poll() and close() in this thread. */
        final class Listener implements ConsumerRebalanceListener {
            private final KafkaConsumer<String, String> consumer;

            Listener(KafkaConsumer<String, String> consumer) {
                this.consumer = consumer;
            }

            @Override
            public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
                List<Integer> revoked = numbers(partitions);
                assignment = without(assignment, revoked);
                event("revoked", "member", name, "partitions", revoked);
            }

            @Override
            public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
                // With the consumer protocol the argument holds only the added partitions.
                List<Integer> owned = numbers(consumer.assignment());
                assignment = owned;
                event("assigned", "member", name, "partitions", owned);
            }

            @Override
            public void onPartitionsLost(Collection<TopicPartition> partitions) {
                List<Integer> lost = numbers(partitions);
                assignment = without(assignment, lost);
                event("lost", "member", name, "partitions", lost);
            }
        }
    }

    static Properties config(String member) {
        Properties config = new Properties();
        config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
        config.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, "uniform");
        config.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        config.put(ConsumerConfig.CLIENT_ID_CONFIG, group + "-" + member);
        config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        config.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        config.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        config.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return config;
    }

    // ---------------------------------------------------------------------------------------------
    // Waiting for the group
    // ---------------------------------------------------------------------------------------------

    /**
     * Waits until the members' assignments are disjoint, cover partitions 0..partitions-1, differ
     * in size by at most one (and each is non-empty when {@code nonEmpty}), then prints
     * {@code balanced}. On timeout, or when one of the members stopped, prints {@code timeout} or
     * {@code aborted} and returns false.
     */
    static boolean awaitBalance(String step, int phase, List<Member> members, int partitions, boolean nonEmpty)
            throws InterruptedException {
        log("waiting for " + step + ": " + names(members));
        boolean balanced = waitFor(step, members, stepDeadline(), () -> balanced(members, partitions, nonEmpty));
        if (balanced) {
            event("balanced", "phase", phase, "assignments", assignments(members));
        }
        return balanced;
    }

    static boolean balanced(List<Member> members, int partitions, boolean nonEmpty) {
        Set<Integer> union = new TreeSet<>();
        int fewest = Integer.MAX_VALUE;
        int most = 0;
        for (Member member : members) {
            List<Integer> owned = member.assignment;
            if (nonEmpty && owned.isEmpty()) {
                return false;
            }
            fewest = Math.min(fewest, owned.size());
            most = Math.max(most, owned.size());
            for (int partition : owned) {
                if (partition < 0 || partition >= partitions || !union.add(partition)) {
                    return false;
                }
            }
        }
        // An incremental rebalance passes through states that cover every partition once but are
        // not yet the uniform assignor's target (a partition being revoked from one member is not
        // yet another's): the phase ends only when the sizes differ by at most one.
        return union.size() == partitions && most - fewest <= 1;
    }

    /** Checks {@code condition} every 100 ms until it holds, the deadline passes or a member stopped. */
    static boolean waitFor(String step, List<Member> members, long deadline, BooleanSupplier condition)
            throws InterruptedException {
        while (true) {
            if (condition.getAsBoolean()) {
                return true;
            }
            for (Member member : members) {
                if (member.finished) {
                    event("aborted", "step", step, "reason", "member " + member.name + " stopped",
                            "assignments", assignments(members));
                    return false;
                }
            }
            if (!before(deadline)) {
                event("timeout", "step", step, "assignments", assignments(members));
                return false;
            }
            Thread.sleep(CHECK_EVERY_MS);
        }
    }

    static boolean anyFinished(List<Member> members) {
        return members.stream().anyMatch(member -> member.finished);
    }

    /** Stops the members (each commits and closes) after a failed step; exit status 1. */
    static int abort(List<Member> members) throws InterruptedException {
        for (Member member : members) {
            member.stopping = true;
        }
        for (Member member : members) {
            member.stop(MEMBER_STOP_TIMEOUT_MS);
        }
        return 1;
    }

    /** {"m0":[...],"m2":[...]} for the given members. */
    static Map<String, Object> assignments(List<Member> members) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (Member member : members) {
            map.put(member.name, member.assignment);
        }
        return map;
    }

    static List<String> names(List<Member> members) {
        return members.stream().map(member -> member.name).toList();
    }

    /** Kills the program when it runs past its deadline (a close or an admin call that hangs). */
    static void startWatchdog() {
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(remainingMs(programDeadline) + 1000);
            } catch (InterruptedException e) {
                return;
            }
            List<Member> members = new ArrayList<>(MEMBERS.values());
            members.sort((a, b) -> a.name.compareTo(b.name));
            members.removeIf(member -> member.finished);
            event("timeout", "step", "program", "assignments", assignments(members));
            System.err.println("new-consumer-group: still running after " + PROGRAM_TIMEOUT_MS / 1000 + " s, giving up");
            System.err.flush();
            System.exit(1);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
    }

    // ---------------------------------------------------------------------------------------------
    // Admin
    // ---------------------------------------------------------------------------------------------

    static Admin admin() {
        Properties config = new Properties();
        config.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        config.put(AdminClientConfig.CLIENT_ID_CONFIG, group + "-admin");
        config.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, (int) CLIENT_CALL_TIMEOUT.toMillis());
        config.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) CLIENT_CALL_TIMEOUT.toMillis());
        return Admin.create(config);
    }

    /** The topic's partition count (waiting for its metadata up to a step), or -1 after admin_error. */
    static int partitionCount(Admin admin) throws InterruptedException {
        long deadline = stepDeadline();
        while (true) {
            try {
                TopicDescription description = admin.describeTopics(List.of(topic)).allTopicNames()
                        .get(CLIENT_CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS).get(topic);
                if (description != null && !description.partitions().isEmpty()) {
                    return description.partitions().size();
                }
                if (!before(deadline)) {
                    event("admin_error", "call", "describeTopics", "error", "topic " + topic + " has no partitions");
                    return -1;
                }
            } catch (ExecutionException | java.util.concurrent.TimeoutException e) {
                Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
                if (!(cause instanceof UnknownTopicOrPartitionException) || !before(deadline)) {
                    event("admin_error", "call", "describeTopics", "error", describe(cause));
                    return -1;
                }
            }
            Thread.sleep(200);
        }
    }

    /** Prints the group's committed offsets on the topic: {"offsets":{"0":123,...}}. */
    static void offsets(Admin admin) throws InterruptedException {
        try {
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(CLIENT_CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            Map<Integer, Long> sorted = new TreeMap<>();
            committed.forEach((tp, offset) -> {
                if (offset != null && tp.topic().equals(topic)) {
                    sorted.put(tp.partition(), offset.offset());
                }
            });
            Map<String, Object> offsets = new LinkedHashMap<>();
            sorted.forEach((partition, offset) -> offsets.put(String.valueOf(partition), offset));
            event("offsets", "offsets", offsets);
        } catch (ExecutionException | java.util.concurrent.TimeoutException | RuntimeException e) {
            Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            event("admin_error", "call", "listConsumerGroupOffsets", "error", describe(cause));
        }
    }

    /** Prints the state and type of the group, described after its members closed. */
    static void describe(Admin admin) throws InterruptedException {
        try {
            ConsumerGroupDescription description = admin.describeConsumerGroups(List.of(group)).describedGroups()
                    .get(group).get(CLIENT_CALL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
            event("described", "state", String.valueOf(description.groupState()),
                    "type", String.valueOf(description.type()), "members", description.members().size());
        } catch (ExecutionException | java.util.concurrent.TimeoutException | RuntimeException e) {
            Throwable cause = e instanceof ExecutionException && e.getCause() != null ? e.getCause() : e;
            event("admin_error", "call", "describeConsumerGroups", "error", describe(cause));
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers
    // ---------------------------------------------------------------------------------------------

    /** The partition numbers of the topic among {@code partitions}, sorted. */
    static List<Integer> numbers(Collection<TopicPartition> partitions) {
        Set<Integer> numbers = new TreeSet<>();
        for (TopicPartition tp : partitions) {
            if (tp.topic().equals(topic)) {
                numbers.add(tp.partition());
            }
        }
        return List.copyOf(numbers);
    }

    static List<Integer> without(List<Integer> owned, List<Integer> removed) {
        List<Integer> rest = new ArrayList<>(owned);
        rest.removeAll(removed);
        return List.copyOf(rest);
    }

    /** Now + one step's timeout, capped by the program's deadline. */
    static long stepDeadline() {
        long step = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(STEP_TIMEOUT_MS);
        return step - programDeadline < 0 ? step : programDeadline;
    }

    static boolean before(long deadline) {
        return System.nanoTime() - deadline < 0;
    }

    static long remainingMs(long deadline) {
        return Math.max(0, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()));
    }

    /** {@code SimpleClassName: message}. */
    static String describe(Throwable e) {
        return e.getClass().getSimpleName() + ": " + e.getMessage();
    }

    static void log(String message) {
        System.err.println("[new-consumer-group] " + message);
        System.err.flush();
    }
}
