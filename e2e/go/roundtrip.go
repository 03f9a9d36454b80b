package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var codecs = []struct {
	name  string
	codec kgo.CompressionCodec
}{
	{"none", kgo.NoCompression()},
	{"gzip", kgo.GzipCompression()},
	{"snappy", kgo.SnappyCompression()},
	{"lz4", kgo.Lz4Compression()},
	{"zstd", kgo.ZstdCompression()},
}

// roundtrip creates the topic, produces records [0, N) through five concurrent producers (one per
// codec, acks=all, idempotent as franz-go is by default; records [c*N/5, (c+1)*N/5) through codec
// c), reads the topic in one consumer group until N records came back and 1.5 s more (to catch
// duplicates), commits, and reports the commits read back through kadm.
func roundtrip(ctx context.Context, opts options) error {
	start := time.Now()
	if err := createTopic(ctx, opts, int32(opts.partitions), nil); err != nil {
		return err
	}
	if err := produceInCodecs(ctx, opts, opts.records); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "produced %d records (none/gzip/snappy/lz4/zstd) in %.1f s\n", opts.records, time.Since(start).Seconds())

	group := opts.topic + "-group"
	consumer, err := newClient(opts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(opts.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			for topic, partitions := range assigned {
				emit("partitions_assigned", map[string]any{"topic": topic, "partitions": partitions})
			}
		}),
	)
	if err != nil {
		return err
	}
	defer consumer.Close()
	read := 0
	deadline := time.Now().Add(150 * time.Second)
	var drainUntil time.Time
	for now := time.Now(); now.Before(deadline) && (drainUntil.IsZero() || now.Before(drainUntil)); now = time.Now() {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := consumer.PollFetches(pollCtx)
		cancel()
		emitFetchErrors(fetches)
		fetches.EachRecord(func(r *kgo.Record) {
			read++
			emitConsumed(r)
		})
		if read >= opts.records && drainUntil.IsZero() {
			drainUntil = time.Now().Add(1500 * time.Millisecond)
		}
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("committing the offsets of %s: %w", group, err)
	}
	committed, err := kadm.NewClient(consumer).FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("OffsetFetch(%s): %w", group, err)
	}
	offsets := []map[string]any{}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == opts.topic && o.Err == nil && o.At >= 0 {
			offsets = append(offsets, map[string]any{"partition": o.Partition, "offset": o.At})
		}
	})
	emit("offsets_committed", map[string]any{"group": group, "topic": opts.topic, "offsets": offsets})
	fmt.Fprintf(os.Stderr, "read %d records in group %s and committed in %.1f s\n", read, group, time.Since(start).Seconds())
	return nil
}

// produceInCodecs sends records [0, n) through five concurrent producers, one per codec, and
// reports every acknowledgement; it fails only when a producer cannot be created.
func produceInCodecs(ctx context.Context, opts options, n int) error {
	var wg sync.WaitGroup
	failures := make(chan error, len(codecs))
	for c, codec := range codecs {
		from, to := c*n/len(codecs), (c+1)*n/len(codecs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			producer, err := newClient(opts, kgo.ProducerBatchCompression(codec.codec), kgo.RequiredAcks(kgo.AllISRAcks()))
			if err != nil {
				failures <- fmt.Errorf("%s producer: %w", codec.name, err)
				return
			}
			defer producer.Close()
			for i := from; i < to; i++ {
				producer.Produce(ctx, newRecord(opts.topic, i), func(r *kgo.Record, err error) { emitSent(i, codec.name, r, err) })
			}
			if err := producer.Flush(ctx); err != nil {
				fmt.Fprintf(os.Stderr, "%s producer flush: %v\n", codec.name, err)
			}
		}()
	}
	wg.Wait()
	close(failures)
	return <-failures
}
