package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// idempotence produces N records with franz-go's default idempotent producer (acks=all, producer
// id and sequence numbers on every batch, several requests in flight) and reads the partitions
// back from the start without a group: every record exactly once, offsets gapless from 0, every
// record stamped with the one producer id and epoch the producer was given.
func idempotence(ctx context.Context, opts options) error {
	n := opts.records
	if err := createTopic(ctx, opts, int32(opts.partitions), nil); err != nil {
		return err
	}
	producer, err := newClient(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	positions := make([]acked, n)
	var mu sync.Mutex
	var bad problems
	producerIDs := map[[2]int64]int{} // (producer id, epoch) -> acknowledged records
	for i := 0; i < n; i++ {
		producer.Produce(ctx, newRecord(opts.topic, i), func(r *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				bad.add("record %d: %v", i, err)
				return
			}
			positions[i] = acked{r.Partition, r.Offset}
			producerIDs[[2]int64{r.ProducerID, int64(r.ProducerEpoch)}]++
		})
	}
	if err := producer.Flush(ctx); err != nil {
		bad.add("flush: %v", err)
	}
	producer.Close()
	if err := bad.err("producing " + opts.topic); err != nil {
		return err
	}
	if len(producerIDs) != 1 {
		return fmt.Errorf("acknowledged records carry %d (producer id, epoch) pairs %v, want exactly one", len(producerIDs), producerIDs)
	}
	var producerID, epoch int64
	for id := range producerIDs {
		producerID, epoch = id[0], id[1]
	}
	if producerID < 0 || epoch < 0 {
		return fmt.Errorf("the producer was not idempotent: producer id %d epoch %d", producerID, epoch)
	}
	fmt.Printf("produced %d records as producer id %d epoch %d\n", n, producerID, epoch)

	// Read every partition from offset 0, without a group.
	admin, err := newClient(opts)
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, opts.topic)
	admin.Close()
	if err != nil {
		return fmt.Errorf("ListOffsets(%s): %w", opts.topic, err)
	}
	endOf := map[int32]int64{}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) {
		endOf[o.Partition] = o.Offset
		total += o.Offset
	})
	if total != int64(n) {
		bad.add("the log holds %d records, want exactly %d", total, n)
	}
	starts := map[int32]kgo.Offset{}
	for p := int32(0); p < int32(opts.partitions); p++ {
		starts[p] = kgo.NewOffset().At(0)
	}
	consumer, err := newClient(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.topic: starts}), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer consumer.Close()
	seen := make([]int, n)
	next := map[int32]int64{}
	read := int64(0)
	err = waitFor(ctx, "reading the topic back", 120*time.Second, func() error {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		consumer.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) {
			read++
			if r.Offset != next[r.Partition] {
				bad.add("partition %d: offset %d follows %d (gap or repeat)", r.Partition, r.Offset, next[r.Partition]-1)
			}
			next[r.Partition] = r.Offset + 1
			if r.ProducerID != producerID || int64(r.ProducerEpoch) != epoch {
				bad.add("partition %d offset %d carries producer %d epoch %d, want %d epoch %d", r.Partition, r.Offset, r.ProducerID, r.ProducerEpoch, producerID, epoch)
			}
			i := parseKey(r.Key)
			if i < 0 || i >= n {
				bad.add("partition %d offset %d: unexpected key %q", r.Partition, r.Offset, r.Key)
				return
			}
			seen[i]++
			if positions[i] != (acked{r.Partition, r.Offset}) {
				bad.add("record %d read at %d@%d, acknowledged at %d@%d", i, r.Partition, r.Offset, positions[i].partition, positions[i].offset)
			}
			if problem := checkPayload(i, r); problem != "" {
				bad.add("record %d: %s", i, problem)
			}
		})
		if read < total {
			return fmt.Errorf("read %d of %d", read, total)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for p, end := range endOf {
		if next[p] != end {
			bad.add("partition %d read up to offset %d, its end offset is %d", p, next[p], end)
		}
	}
	duplicates, missing := 0, 0
	for _, times := range seen {
		if times == 0 {
			missing++
		} else if times > 1 {
			duplicates += times - 1
		}
	}
	if duplicates > 0 || missing > 0 {
		bad.add("%d duplicates and %d missing records", duplicates, missing)
	}
	if err := bad.err(fmt.Sprintf("idempotence on %s (%d records read)", opts.topic, read)); err != nil {
		return err
	}
	fmt.Printf("read %d records: each exactly once, offsets gapless in %d partitions\n", read, len(endOf))
	fmt.Printf("OK franz-go idempotence %d records\n", n)
	return nil
}
