package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// idempotence produces records [0, N) with franz-go's default idempotent producer (acks=all,
// producer id and sequence numbers on every batch, several requests in flight), reporting each
// acknowledgement with its producer id and epoch, then reads every partition from offset 0
// without a group up to the end offsets ListOffsets answers, reporting each record.
func idempotence(ctx context.Context, opts options) error {
	if err := createTopic(ctx, opts, int32(opts.partitions), nil); err != nil {
		return err
	}
	producer, err := newClient(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	for i := 0; i < opts.records; i++ {
		producer.Produce(ctx, newRecord(opts.topic, i), func(r *kgo.Record, err error) { emitSent(i, "idempotent", r, err) })
	}
	if err := producer.Flush(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "flush: %v\n", err)
	}
	producer.Close()

	admin, err := newClient(opts)
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, opts.topic)
	admin.Close()
	if err != nil {
		return fmt.Errorf("ListOffsets(%s): %w", opts.topic, err)
	}
	total := int64(0)
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	starts := map[int32]kgo.Offset{}
	for p := int32(0); p < int32(opts.partitions); p++ {
		starts[p] = kgo.NewOffset().At(0)
	}
	consumer, err := newClient(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.topic: starts}), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		return err
	}
	defer consumer.Close()
	read := int64(0)
	err = waitFor(ctx, "reading the topic back", 120*time.Second, func() error {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		fetches := consumer.PollFetches(pollCtx)
		emitFetchErrors(fetches)
		fetches.EachRecord(func(r *kgo.Record) {
			read++
			emitConsumed(r)
		})
		if read < total {
			return fmt.Errorf("read %d of %d", read, total)
		}
		return nil
	})
	if err != nil {
		// What was read is reported; the checks name what is missing.
		fmt.Fprintln(os.Stderr, err)
	}
	fmt.Fprintf(os.Stderr, "read %d records of the %d the end offsets hold\n", read, total)
	return nil
}
