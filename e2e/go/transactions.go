package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// transactionSize is the number of records of one transaction: transaction k holds records
// [10k, 10k+10) (the last one may hold fewer).
const transactionSize = 10

// transactions produces records [0, N) with one transactional producer (transactional id X,
// acks=all, idempotent, 60 s transaction timeout) in transactions of 10 records, committing the
// even ones and aborting the odd ones (and any in which a send failed), each end an admin_result
// (commit_transaction or abort_transaction, resource k, result {first, count}); then reads every
// partition from offset 0 without a group with isolation level read_committed until each
// partition's position reached the last stable offset ListOffsets (read_committed) answers and no
// record came for 1.5 s, or 60 s passed, reporting each record.
func transactions(ctx context.Context, opts options) error {
	if err := createTopic(ctx, opts, int32(opts.partitions), nil); err != nil {
		return err
	}
	if err := produceTransactions(ctx, opts); err != nil {
		return err
	}
	return readCommitted(ctx, opts)
}

// produceTransactions sends the transactions and ends each; it fails only when the producer
// cannot be created, its transactional state cannot be initialised or a transaction cannot begin.
func produceTransactions(ctx context.Context, opts options) error {
	producer, err := newClient(opts,
		kgo.TransactionalID(opts.transactionalID),
		kgo.TransactionTimeout(60*time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
	)
	if err != nil {
		return err
	}
	defer producer.Close()
	// franz-go initialises the producer id lazily; ProducerID sends InitProducerId (with the
	// transactional id) now, as Java's initTransactions does.
	id, epoch, err := producer.ProducerID(ctx)
	if err != nil {
		return fmt.Errorf("initialising transactional id %s: %w", opts.transactionalID, err)
	}
	fmt.Fprintf(os.Stderr, "transactional id %s: producer id %d, epoch %d\n", opts.transactionalID, id, epoch)

	type outcome struct {
		r   *kgo.Record
		err error
	}
	for k, first := 0, 0; first < opts.records; k, first = k+1, first+transactionSize {
		count := min(transactionSize, opts.records-first)
		if err := producer.BeginTransaction(); err != nil {
			return fmt.Errorf("beginning transaction %d: %w", k, err)
		}
		outcomes := make([]outcome, count)
		var wg sync.WaitGroup
		wg.Add(count)
		for j := range count {
			producer.Produce(ctx, newRecord(opts.topic, first+j), func(r *kgo.Record, err error) {
				outcomes[j] = outcome{r, err}
				wg.Done()
			})
		}
		wg.Wait()
		failed := false
		for j, o := range outcomes {
			emitSent(first+j, "transactional", o.r, o.err)
			failed = failed || o.err != nil
		}
		commit := k%2 == 0 && !failed
		operation, end := "abort_transaction", kgo.TryAbort
		if commit {
			operation, end = "commit_transaction", kgo.TryCommit
		}
		endErr := producer.EndTransaction(ctx, end)
		fmt.Fprintf(os.Stderr, "transaction %d (records %d..%d): %s: %v\n", k, first, first+count, operation, endErr)
		emit("admin_result", map[string]any{
			"operation": operation, "resource": strconv.Itoa(k), "error": deniedErrorName(endErr),
			"result": map[string]any{"first": first, "count": count},
		})
	}
	return nil
}

// readCommitted reads every partition of the topic from offset 0 by assignment with isolation
// level read_committed. kgo has no position call for a consumer without a group, so the client
// keeps the control records (commit and abort markers) and the position of a partition is one
// past the last record it returned, control or not (franz-go itself skips the aborted records
// and moves on past them); control records are not reported.
func readCommitted(ctx context.Context, opts options) error {
	admin, err := newClient(opts)
	if err != nil {
		return err
	}
	ends, err := kadm.NewClient(admin).ListCommittedOffsets(ctx, opts.topic)
	admin.Close()
	if err != nil {
		return fmt.Errorf("ListOffsets(%s, read_committed): %w", opts.topic, err)
	}
	end := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			fmt.Fprintf(os.Stderr, "ListOffsets(%s, read_committed) partition %d: %v\n", o.Topic, o.Partition, o.Err)
			return
		}
		end[o.Partition] = o.Offset
	})
	fmt.Fprintf(os.Stderr, "last stable offsets: %v\n", end)

	starts := map[int32]kgo.Offset{}
	for p := int32(0); p < int32(opts.partitions); p++ {
		starts[p] = kgo.NewOffset().At(0)
	}
	consumer, err := newClient(opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.topic: starts}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer consumer.Close()
	position := map[int32]int64{}
	reached := func() bool {
		for p, offset := range end {
			if position[p] < offset {
				return false
			}
		}
		return true
	}
	read := 0
	deadline := time.Now().Add(60 * time.Second)
	lastRecord := time.Now()
	for time.Now().Before(deadline) && !(reached() && time.Since(lastRecord) >= 1500*time.Millisecond) {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := consumer.PollFetches(pollCtx)
		cancel()
		emitFetchErrors(fetches)
		fetches.EachRecord(func(r *kgo.Record) {
			if r.Offset+1 > position[r.Partition] {
				position[r.Partition] = r.Offset + 1
			}
			if r.Attrs.IsControl() {
				return
			}
			read++
			lastRecord = time.Now()
			emitConsumed(r)
		})
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(os.Stderr, "read %d committed records; positions %v, last stable offsets %v\n", read, position, end)
	return nil
}
