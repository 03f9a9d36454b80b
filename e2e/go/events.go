package main

// The verifiable-client events (e2e/README.md): one JSON object per line on stdout, written
// whole under a lock so concurrent producers' callbacks never interleave. Logs go to stderr.

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	eventsMu  sync.Mutex
	eventsOut = bufio.NewWriterSize(os.Stdout, 1<<20)
)

// emit writes event name with its fields as one line.
func emit(name string, fields map[string]any) {
	fields["name"] = name
	line, err := json.Marshal(fields)
	if err != nil {
		panic(fmt.Sprintf("event %s does not encode: %v", name, err))
	}
	eventsMu.Lock()
	defer eventsMu.Unlock()
	eventsOut.Write(line)
	eventsOut.WriteByte('\n')
}

// flushEvents writes what emit buffered; called before exiting.
func flushEvents() {
	eventsMu.Lock()
	defer eventsMu.Unlock()
	eventsOut.Flush()
}

// hexOrNull is bytes as lowercase hex, or JSON null for nil.
func hexOrNull(bytes []byte) any {
	if bytes == nil {
		return nil
	}
	return hex.EncodeToString(bytes)
}

// emitSent reports the outcome of producing record index (producer names the producer instance).
func emitSent(index int, producer string, r *kgo.Record, err error) {
	if err != nil {
		emit("producer_send_error", map[string]any{"topic": r.Topic, "index": index, "error": err.Error()})
		return
	}
	emit("producer_send_success", map[string]any{
		"topic": r.Topic, "partition": r.Partition, "offset": r.Offset, "index": index,
		"producer": producer, "producer_id": r.ProducerID, "producer_epoch": r.ProducerEpoch,
	})
}

// emitConsumed reports one record the consumer returned, bytes and all.
func emitConsumed(r *kgo.Record) {
	headers := make([]map[string]any, len(r.Headers))
	for i, h := range r.Headers {
		headers[i] = map[string]any{"key": h.Key, "value": hexOrNull(h.Value)}
	}
	emit("record_consumed", map[string]any{
		"topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		"key": hexOrNull(r.Key), "value": hexOrNull(r.Value), "headers": headers,
		"producer_id": r.ProducerID, "producer_epoch": r.ProducerEpoch,
	})
}

// emitFetchErrors reports the fetch errors of one poll (a poll's own deadline is not one).
func emitFetchErrors(fetches kgo.Fetches) {
	fetches.EachError(func(topic string, partition int32, err error) {
		if !isPollDeadline(err) {
			emit("consumer_error", map[string]any{"error": fmt.Sprintf("%s/%d: %v", topic, partition, err)})
		}
	})
}
