// floe-bench-sarama-sync: the bench's latency probe with Go's sarama (issue 20). One SyncProducer
// sends records one at a time, each waiting for its acknowledgement, for a fixed time or count,
// and prints one JSON line with the rate and the send-to-ack percentiles. sarama's defaults apply
// except what a SyncProducer needs (Return.Successes) and acks=all, the bench's setting for every
// producer (on one broker, or on Floe, acks=1 waits for the same thing).
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
)

type result struct {
	Messages      int     `json:"messages"`
	Seconds       float64 `json:"seconds"`
	MessagesPerS  float64 `json:"messages_per_sec"`
	FirstMs       float64 `json:"first_ms"`
	P50Ms         float64 `json:"p50_ms"`
	P99Ms         float64 `json:"p99_ms"`
	P999Ms        float64 `json:"p999_ms"`
	MaxMs         float64 `json:"max_ms"`
	SaramaVersion string  `json:"protocol_version"`
}

// percentile of sorted latencies by the nearest-rank rule, in milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	if rank < 0 {
		rank = 0
	}
	return float64(sorted[rank].Microseconds()) / 1000
}

func run() error {
	brokers := flag.String("bootstrap-server", "", "host:port[,host:port...]")
	topic := flag.String("topic", "", "topic to produce to (must exist)")
	seconds := flag.Float64("seconds", 10, "stop sending after this long")
	maxMessages := flag.Int("max-messages", 20000, "stop after this many records")
	size := flag.Int("record-size", 1024, "value bytes per record")
	flag.Parse()
	if *brokers == "" || *topic == "" {
		return fmt.Errorf("--bootstrap-server and --topic are required")
	}
	if *seconds <= 0 || *maxMessages < 2 || *size < 0 {
		return fmt.Errorf("--seconds must be positive, --max-messages at least 2, --record-size not negative")
	}
	config := sarama.NewConfig()
	config.ClientID = "floe-bench-sarama-sync"
	config.Producer.Return.Successes = true
	config.Producer.RequiredAcks = sarama.WaitForAll
	producer, err := sarama.NewSyncProducer(strings.Split(*brokers, ","), config)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", *brokers, err)
	}
	defer producer.Close()
	value := sarama.ByteEncoder(make([]byte, *size))
	send := func() (time.Duration, error) {
		start := time.Now()
		_, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: *topic, Value: value})
		return time.Since(start), err
	}
	// The first record pays for metadata and the partition leader's connection: apart.
	first, err := send()
	if err != nil {
		return fmt.Errorf("first record: %w", err)
	}
	latencies := make([]time.Duration, 0, *maxMessages)
	began := time.Now()
	deadline := began.Add(time.Duration(*seconds * float64(time.Second)))
	for len(latencies) < *maxMessages-1 && time.Now().Before(deadline) {
		latency, err := send()
		if err != nil {
			return fmt.Errorf("record %d: %w", len(latencies)+2, err)
		}
		latencies = append(latencies, latency)
	}
	elapsed := time.Since(began).Seconds()
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	out := result{
		Messages:      len(latencies) + 1,
		Seconds:       elapsed,
		MessagesPerS:  float64(len(latencies)) / elapsed,
		FirstMs:       float64(first.Microseconds()) / 1000,
		P50Ms:         percentile(latencies, 50),
		P99Ms:         percentile(latencies, 99),
		P999Ms:        percentile(latencies, 99.9),
		MaxMs:         percentile(latencies, 100),
		SaramaVersion: config.Version.String(),
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floe-bench-sarama-sync:", err)
		os.Exit(1)
	}
}
