// Send-to-acknowledgement latency of one Java producer at a fixed rate, measured only after a
// warm-up: ProducerPerformance counts its first seconds too (the client's JIT, its first metadata
// and connections), which on this machine put a 400-500 ms spike into every run's p99, Kafka's
// included. Run by bench.sh in source-file mode against Kafka's own client jars:
//   java -cp "$LIBS/*" WarmLatency.java BOOTSTRAP TOPIC RATE WARMUP_SECONDS SECONDS RECORD_SIZE [CONFIG_FILE|-] [KEY=VALUE...]
// Prints a line per second of the timed window ("second K: records N, max X ms, gc G ms", by the
// second each record was sent, with the producer JVM's own GC time in that second), so that a stall
// can be placed in time and told apart from a pause of the load generator itself; then one summary
// line: "warm: records N, p50 X ms, p99 Y ms, p99.9 Z ms, max M ms, rate R/s".

import java.io.FileInputStream;
import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class WarmLatency {
    public static void main(String[] args) throws IOException {
        if (args.length < 6) {
            System.err.println("usage: WarmLatency BOOTSTRAP TOPIC RATE WARMUP_SECONDS SECONDS RECORD_SIZE [CONFIG_FILE|-] [KEY=VALUE...]");
            System.exit(2);
        }
        String bootstrap = args[0], topic = args[1];
        long rate = Long.parseLong(args[2]);
        double warmupSeconds = Double.parseDouble(args[3]), seconds = Double.parseDouble(args[4]);
        int recordSize = Integer.parseInt(args[5]);
        Properties props = new Properties();
        if (args.length > 6 && !args[6].equals("-")) {
            try (FileInputStream in = new FileInputStream(args[6])) {
                props.load(in);
            }
        }
        for (int i = 7; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            props.put(args[i].substring(0, eq), args[i].substring(eq + 1));
        }
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());

        long total = (long) Math.ceil(rate * (warmupSeconds + seconds));
        long measuredFrom = (long) Math.ceil(rate * warmupSeconds);
        long[] latencies = new long[(int) (total - measuredFrom)];
        AtomicInteger measured = new AtomicInteger();
        AtomicLong failed = new AtomicLong();
        byte[] payload = new byte[recordSize];
        Arrays.fill(payload, (byte) 'x');
        int windowSeconds = (int) Math.ceil(seconds);
        // Written only by the producer's I/O thread (callbacks) and read after close().
        long[] secondMax = new long[windowSeconds + 1];
        int[] secondRecords = new int[windowSeconds + 1];
        long[] gcAtSecond = new long[windowSeconds + 2];
        long[] measureStartHolder = new long[1];
        long measureStart = 0;
        int nextSecond = 0;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            long start = System.nanoTime();
            for (long i = 0; i < total; i++) {
                // Paced by schedule, as ProducerPerformance's throttler is: a stall is caught up
                // afterwards, so the records it delayed count in the latencies.
                long due = start + i * 1_000_000_000L / rate;
                long wait = due - System.nanoTime();
                if (wait > 0) {
                    LockSupport.parkNanos(wait);
                }
                if (i == measuredFrom) {
                    measureStart = System.nanoTime();
                    measureStartHolder[0] = measureStart;
                }
                boolean counted = i >= measuredFrom;
                long sent = System.nanoTime();
                if (counted) {
                    while (nextSecond <= windowSeconds && sent - measureStart >= nextSecond * 1_000_000_000L) {
                        gcAtSecond[nextSecond++] = gcMillis();
                    }
                }
                producer.send(new ProducerRecord<>(topic, payload), (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                    } else if (counted) {
                        int slot = measured.getAndIncrement();
                        long latency = System.nanoTime() - sent;
                        if (slot < latencies.length) {
                            latencies[slot] = latency;
                        }
                        int second = (int) Math.min(windowSeconds, (sent - measureStartHolder[0]) / 1_000_000_000L);
                        secondRecords[second]++;
                        secondMax[second] = Math.max(secondMax[second], latency);
                    }
                });
            }
            producer.flush();
            while (nextSecond <= windowSeconds + 1) {
                gcAtSecond[nextSecond++] = gcMillis();
            }
        }
        double elapsed = (System.nanoTime() - measureStart) / 1e9;
        int n = Math.min(measured.get(), latencies.length);
        if (failed.get() > 0 || n == 0) {
            System.err.println("warm: " + failed.get() + " sends failed, " + n + " measured");
            System.exit(1);
        }
        for (int second = 0; second <= windowSeconds; second++) {
            if (secondRecords[second] > 0) {
                System.out.printf("second %d: records %d, max %.1f ms, gc %d ms%n", second, secondRecords[second], secondMax[second] / 1e6,
                        gcAtSecond[second + 1] - gcAtSecond[second]);
            }
        }
        long[] sorted = Arrays.copyOf(latencies, n);
        Arrays.sort(sorted);
        System.out.printf("warm: records %d, p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms, rate %.0f/s%n", n,
                percentile(sorted, 0.50), percentile(sorted, 0.99), percentile(sorted, 0.999), sorted[n - 1] / 1e6, n / elapsed);
    }

    // The JVM's accumulated collection time over all collectors, in ms.
    private static long gcMillis() {
        long total = 0;
        for (GarbageCollectorMXBean collector : ManagementFactory.getGarbageCollectorMXBeans()) {
            total += Math.max(0, collector.getCollectionTime());
        }
        return total;
    }

    private static double percentile(long[] sorted, double quantile) {
        int index = (int) Math.min(sorted.length - 1, Math.floor(quantile * sorted.length));
        return sorted[index] / 1e6;
    }
}
