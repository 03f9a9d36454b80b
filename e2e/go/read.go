package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// readTimeout bounds how long read waits for every partition to reach its end offset.
const readTimeout = 60 * time.Second

// read reads every partition of a topic another client (or an earlier run) produced, by
// assignment without a group from offset 0 (from the log start offset when the log starts above
// 0) up to the end offsets ListOffsets answers (read_uncommitted), reporting each record. It fails
// when the topic does not exist or a partition has not reached its end offset after 60 s.
//
// A partition is done once the offset after the last record the client returned reached its end
// offset. The client keeps the control records (transaction markers) so that a partition whose
// newest entry is a marker still gets there; they are not reported. The records compaction
// removed leave gaps, but the broker never removes the newest record of a partition, so the last
// one returned is still at end - 1. A partition whose start offset is already at its end offset
// (empty, or everything deleted) is done before anything is read.
func read(ctx context.Context, opts options) error {
	start, end, err := topicOffsets(ctx, opts)
	if err != nil {
		return err
	}
	// next is, for each partition still being read, the offset after the last record returned.
	next := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for p, e := range end {
		offsets[p] = kgo.NewOffset().At(0)
		if start[p] < e {
			next[p] = 0
		}
	}
	fmt.Fprintf(os.Stderr, "topic %s: %d partitions, start offsets %v, end offsets %v\n", opts.topic, len(end), start, end)

	consumer, err := newClient(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.topic: offsets}),
		// Offset 0 is out of range when the log starts above it: franz-go then resets to the start.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer consumer.Close()
	consumed := 0
	deadline := time.Now().Add(readTimeout)
	for len(next) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := consumer.PollFetches(pollCtx)
		cancel()
		emitFetchErrors(fetches)
		fetches.EachRecord(func(r *kgo.Record) {
			if position, reading := next[r.Partition]; reading {
				if r.Offset+1 >= end[r.Partition] {
					delete(next, r.Partition)
				} else if r.Offset+1 > position {
					next[r.Partition] = r.Offset + 1
				}
			}
			if r.Attrs.IsControl() {
				return
			}
			consumed++
			emitConsumed(r)
		})
	}
	fmt.Fprintf(os.Stderr, "read %d records\n", consumed)
	if len(next) > 0 {
		return fmt.Errorf("after %s, partitions short of their end offsets %v (offset after the last record read: %v)", readTimeout, end, next)
	}
	return nil
}

// topicOffsets lists the topic's partitions with their start and end offsets (read_uncommitted),
// failing when the topic does not exist or a partition's offsets cannot be listed.
func topicOffsets(ctx context.Context, opts options) (start, end map[int32]int64, err error) {
	client, err := newClient(opts)
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	admin := kadm.NewClient(client)
	topics, err := admin.ListTopics(ctx, opts.topic)
	if err != nil {
		return nil, nil, fmt.Errorf("Metadata(%s): %w", opts.topic, err)
	}
	detail, ok := topics[opts.topic]
	if !ok {
		return nil, nil, fmt.Errorf("Metadata(%s) did not answer for the topic", opts.topic)
	}
	if detail.Err != nil {
		return nil, nil, fmt.Errorf("topic %s: %w", opts.topic, detail.Err)
	}
	if len(detail.Partitions) == 0 {
		return nil, nil, fmt.Errorf("topic %s has no partitions", opts.topic)
	}
	list := func(what string, call func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
		listed, err := call(ctx, opts.topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("ListOffsets(%s, %s): %w", opts.topic, what, err)
		}
		offsets := map[int32]int64{}
		listed.Each(func(o kadm.ListedOffset) { offsets[o.Partition] = o.Offset })
		for p := range detail.Partitions {
			if _, ok := offsets[p]; !ok {
				return nil, fmt.Errorf("ListOffsets(%s, %s) did not answer for partition %d", opts.topic, what, p)
			}
		}
		return offsets, nil
	}
	if start, err = list("earliest", admin.ListStartOffsets); err != nil {
		return nil, nil, err
	}
	if end, err = list("latest", admin.ListEndOffsets); err != nil {
		return nil, nil, err
	}
	return start, end, nil
}
