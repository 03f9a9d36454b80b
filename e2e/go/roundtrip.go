package main

import (
	"context"
	"fmt"
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

// codecOf is the codec producer that sent record i: records [c*n/5, (c+1)*n/5) go through codec c.
func codecOf(i, n int) int {
	for c := range codecs {
		if i < (c+1)*n/len(codecs) {
			return c
		}
	}
	return len(codecs) - 1
}

// acked is where the server said a record landed.
type acked struct {
	partition int32
	offset    int64
}

// roundtrip creates the topic, produces N records through five concurrent producers (one per
// codec, acks=all, idempotent as franz-go is by default), reads them back in one consumer group and
// checks bytes, headers, acked positions, per-partition order and the committed offsets.
func roundtrip(ctx context.Context, opts options) error {
	n := opts.records
	start := time.Now()
	if err := createTopic(ctx, opts, int32(opts.partitions), nil); err != nil {
		return err
	}
	positions, err := produceInCodecs(ctx, opts, n)
	if err != nil {
		return err
	}
	fmt.Printf("produced %d records (none/gzip/snappy/lz4/zstd) in %.1f s\n", n, time.Since(start).Seconds())

	group := opts.topic + "-group"
	consumer, err := newClient(opts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(opts.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer consumer.Close()

	var bad problems
	seen := make([]bool, n)
	distinct, total := 0, 0
	lastOffset := map[int32]int64{}
	lastIndex := map[[2]int]int{}
	deadline := time.Now().Add(150 * time.Second)
	var drainUntil time.Time
	for {
		now := time.Now()
		if now.After(deadline) || (!drainUntil.IsZero() && now.After(drainUntil)) {
			break
		}
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := consumer.PollFetches(pollCtx)
		cancel()
		fetches.EachError(func(topic string, partition int32, err error) {
			if err != context.DeadlineExceeded && err != context.Canceled {
				bad.add("fetch error on %s/%d: %v", topic, partition, err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			total++
			if previous, ok := lastOffset[r.Partition]; ok && r.Offset <= previous {
				bad.add("partition %d: offset %d delivered after offset %d", r.Partition, r.Offset, previous)
			}
			lastOffset[r.Partition] = r.Offset
			i := parseKey(r.Key)
			if r.Topic != opts.topic || i < 0 || i >= n {
				bad.add("unexpected record %s/%d@%d key %q", r.Topic, r.Partition, r.Offset, r.Key)
				return
			}
			if seen[i] {
				bad.add("record %d delivered twice (partition %d offset %d)", i, r.Partition, r.Offset)
				return
			}
			seen[i] = true
			distinct++
			if want := positions[i]; want.partition != r.Partition || want.offset != r.Offset {
				bad.add("record %d read at %d@%d but acknowledged at %d@%d", i, r.Partition, r.Offset, want.partition, want.offset)
			}
			if problem := checkPayload(i, r); problem != "" {
				bad.add("record %d (%s, partition %d offset %d): %s", i, codecs[codecOf(i, n)].name, r.Partition, r.Offset, problem)
			}
			key := [2]int{int(r.Partition), codecOf(i, n)}
			if previous, ok := lastIndex[key]; ok && i <= previous {
				bad.add("partition %d: record %d of the %s producer read after record %d: send order lost", r.Partition, i, codecs[key[1]].name, previous)
			}
			lastIndex[key] = i
		})
		if distinct == n && drainUntil.IsZero() {
			// Keep polling a little to catch duplicates or extra records.
			drainUntil = time.Now().Add(1500 * time.Millisecond)
		}
	}
	if distinct < n {
		var missing []int
		for i := 0; i < n && len(missing) < 10; i++ {
			if !seen[i] {
				missing = append(missing, i)
			}
		}
		bad.add("only %d of %d records read within the deadline; first missing: %v", distinct, n, missing)
		return bad.err(fmt.Sprintf("roundtrip on %s (%d records read)", opts.topic, total))
	}
	if err := consumer.CommitUncommittedOffsets(ctx); err != nil {
		bad.add("committing the group's offsets failed: %v", err)
	}

	// The group's committed offsets, read back through kadm, must equal the log end offsets.
	admin := kadm.NewClient(consumer)
	committed, err := admin.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("OffsetFetch(%s): %w", group, err)
	}
	ends, err := admin.ListEndOffsets(ctx, opts.topic)
	if err != nil {
		return fmt.Errorf("ListOffsets(%s): %w", opts.topic, err)
	}
	sum := int64(0)
	for p := int32(0); p < int32(opts.partitions); p++ {
		end, ok := ends.Lookup(opts.topic, p)
		if !ok || end.Err != nil {
			bad.add("no end offset for partition %d: %v", p, end.Err)
			continue
		}
		sum += end.Offset
		commit, ok := committed.Lookup(opts.topic, p)
		if !ok || commit.Err != nil || commit.At != end.Offset {
			bad.add("partition %d: committed offset %d (found %v, error %v), end offset %d", p, commit.At, ok, commit.Err, end.Offset)
		}
	}
	if sum != int64(n) {
		bad.add("the end offsets add up to %d, want %d (duplicates or losses in the log)", sum, n)
	}
	if err := bad.err(fmt.Sprintf("roundtrip on %s (%d records read)", opts.topic, total)); err != nil {
		return err
	}
	fmt.Printf("read %d records in group %s and committed %d offsets in %.1f s\n", total, group, opts.partitions, time.Since(start).Seconds())
	fmt.Printf("OK franz-go roundtrip %d records\n", n)
	return nil
}

// produceInCodecs sends records [0, n) through five concurrent producers, one per codec, and
// returns where each record was acknowledged.
func produceInCodecs(ctx context.Context, opts options, n int) ([]acked, error) {
	positions := make([]acked, n)
	var mu sync.Mutex
	var bad problems
	var wg sync.WaitGroup
	for c, codec := range codecs {
		from, to := c*n/len(codecs), (c+1)*n/len(codecs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			producer, err := newClient(opts,
				kgo.ProducerBatchCompression(codec.codec),
				kgo.RequiredAcks(kgo.AllISRAcks()),
			)
			if err != nil {
				mu.Lock()
				bad.add("%s producer: %v", codec.name, err)
				mu.Unlock()
				return
			}
			defer producer.Close()
			for i := from; i < to; i++ {
				producer.Produce(ctx, newRecord(opts.topic, i), func(r *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						bad.add("record %d (%s): %v", i, codec.name, err)
						return
					}
					positions[i] = acked{r.Partition, r.Offset}
				})
			}
			if err := producer.Flush(ctx); err != nil {
				mu.Lock()
				bad.add("%s producer flush: %v", codec.name, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return positions, bad.err("producing " + opts.topic)
}
