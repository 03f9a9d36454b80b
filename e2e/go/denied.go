package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// deniedStepTimeout bounds each step of the denied mode.
const deniedStepTimeout = 15 * time.Second

// errNoAnswer is a step that saw neither an error nor a success within deniedStepTimeout.
var errNoAnswer = errors.New("no answer")

// deniedStep is one call of the denied mode: a client with clientOpts, then run on it.
type deniedStep struct {
	operation, resource string
	clientOpts          []kgo.Opt
	run                 func(ctx context.Context, client *kgo.Client) error
}

// denied makes, with the client's ordinary API, one call of each kind a user makes on topic T,
// group G and a new topic N, and reports each as one admin_result (its Kafka error name, or null
// when it succeeded): produce to T, fetch T by assignment, join G, commit G's offset without
// joining, create N, alter T's retention.ms. Each step has a client of its own and 15 s. The Rust
// suite runs it as a user the server's ACLs allow nothing and as a super user, and holds the
// expectations; an error is an event, not a failure.
func denied(ctx context.Context, opts options) error {
	steps := []deniedStep{
		deniedProduce(opts),
		deniedFetch(opts),
		deniedJoin(opts),
		deniedCommit(opts),
		deniedCreate(opts),
		deniedAlter(opts),
	}
	for _, step := range steps {
		client, err := newClient(opts, step.clientOpts...)
		if err != nil {
			return fmt.Errorf("%s: %w", step.operation, err)
		}
		stepCtx, cancel := context.WithTimeout(ctx, deniedStepTimeout)
		start := time.Now()
		answer := step.run(stepCtx, client)
		cancel()
		client.Close()
		fmt.Fprintf(os.Stderr, "%s %s: %v after %.1f s\n", step.operation, step.resource, answer, time.Since(start).Seconds())
		emit("admin_result", map[string]any{
			"operation": step.operation, "resource": step.resource, "error": deniedErrorName(answer), "result": map[string]any{},
		})
	}
	return nil
}

// deniedErrorName is the Kafka error name of what a step answered: null for success, the
// kerr.Error's name, TIMED_OUT when the step's 15 s passed without an answer, or
// "CLIENT_ERROR: ..." for an error of the client that is no Kafka error code.
func deniedErrorName(answer error) any {
	var kafkaErr *kerr.Error
	switch {
	case answer == nil:
		return nil
	case errors.As(answer, &kafkaErr):
		return kafkaErr.Message
	case errors.Is(answer, errNoAnswer) || errors.Is(answer, context.DeadlineExceeded):
		return "TIMED_OUT"
	default:
		message := answer.Error()
		if len(message) > 200 {
			message = message[:200]
		}
		return "CLIENT_ERROR: " + message
	}
}

// deniedProduce produces one record (key "k", value "v") to partition 0 with acks=all. The
// idempotent producer does not give up a record whose request is in flight when the context ends,
// so the step stops waiting itself (closing the client then fails the record).
func deniedProduce(opts options) deniedStep {
	return deniedStep{operation: "produce", resource: opts.topic,
		clientOpts: []kgo.Opt{kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordPartitioner(kgo.ManualPartitioner())},
		run: func(ctx context.Context, client *kgo.Client) error {
			record := &kgo.Record{Topic: opts.topic, Partition: 0, Key: []byte("k"), Value: []byte("v")}
			produced := make(chan error, 1)
			go func() { produced <- client.ProduceSync(ctx, record).FirstErr() }()
			select {
			case err := <-produced:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}}
}

// deniedFetch reads partition 0 from offset 0 by assignment (no group) until a poll returns a
// record (success) or an error.
func deniedFetch(opts options) deniedStep {
	return deniedStep{operation: "fetch", resource: opts.topic,
		clientOpts: []kgo.Opt{
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{opts.topic: {0: kgo.NewOffset().At(0)}}),
			kgo.FetchMaxWait(500 * time.Millisecond),
		},
		run: func(ctx context.Context, client *kgo.Client) error {
			for ctx.Err() == nil {
				fetches := client.PollFetches(ctx)
				for _, fetchErr := range fetches.Errors() {
					if !isPollDeadline(fetchErr.Err) {
						return fetchErr.Err
					}
				}
				if fetches.NumRecords() > 0 {
					return nil
				}
			}
			return errNoAnswer
		}}
}

// deniedJoin subscribes to the topic in the group and polls until the group assigns partitions
// (success) or the client reports an error. franz-go starts managing the group (FindCoordinator,
// JoinGroup) only once the metadata shows a partition of a subscribed topic: a user who may not
// describe the topic gets its TOPIC_AUTHORIZATION_FAILED and never reaches the group.
func deniedJoin(opts options) deniedStep {
	assigned := make(chan struct{}, 1)
	return deniedStep{operation: "join_group", resource: opts.group,
		clientOpts: []kgo.Opt{
			kgo.ConsumerGroup(opts.group),
			kgo.ConsumeTopics(opts.topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
			kgo.FetchMaxWait(500 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
				select {
				case assigned <- struct{}{}:
				default:
				}
			}),
		},
		run: func(ctx context.Context, client *kgo.Client) error {
			for ctx.Err() == nil {
				pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				fetches := client.PollFetches(pollCtx)
				cancel()
				for _, fetchErr := range fetches.Errors() {
					if !isPollDeadline(fetchErr.Err) {
						// A group error comes as *kgo.ErrGroupSession, which unwraps to the kerr.Error.
						return fetchErr.Err
					}
				}
				select {
				case <-assigned:
					return nil
				default:
				}
			}
			return errNoAnswer
		}}
}

// deniedCommit commits offset 0 of partition 0 for the group without joining it (generation -1,
// no member id), with an OffsetCommit request that kgo sends to the group's coordinator. Not
// kadm's CommitOffsets: it first looks the topic's id up in Metadata and, when the topic is not
// described (a user without ACLs), answers UNKNOWN_TOPIC_OR_PARTITION itself without sending
// OffsetCommit at all. The id goes with the name when Metadata gives it (OffsetCommit v10+).
func deniedCommit(opts options) deniedStep {
	return deniedStep{operation: "commit_offsets", resource: opts.group,
		run: func(ctx context.Context, client *kgo.Client) error {
			req := kmsg.NewPtrOffsetCommitRequest()
			req.Group = opts.group
			topic := kmsg.NewOffsetCommitRequestTopic()
			topic.Topic = opts.topic
			if described, err := kadm.NewClient(client).Metadata(ctx, opts.topic); err == nil && described.Topics[opts.topic].Err == nil {
				topic.TopicID = described.Topics[opts.topic].ID
			}
			partition := kmsg.NewOffsetCommitRequestTopicPartition()
			partition.Partition, partition.Offset, partition.LeaderEpoch = 0, 0, -1
			topic.Partitions = append(topic.Partitions, partition)
			req.Topics = append(req.Topics, topic)
			resp, err := req.RequestWith(ctx, client)
			if err != nil {
				return err
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if p.Partition == 0 {
						return kerr.ErrorForCode(p.ErrorCode)
					}
				}
			}
			return errors.New("OffsetCommit answered no partition 0")
		}}
}

// deniedCreate creates the new topic with 1 partition.
func deniedCreate(opts options) deniedStep {
	return deniedStep{operation: "create_topics", resource: opts.newTopic,
		run: func(ctx context.Context, client *kgo.Client) error {
			created, err := kadm.NewClient(client).CreateTopics(ctx, 1, 1, nil, opts.newTopic)
			return firstErr(err, created.Error())
		}}
}

// deniedAlter sets retention.ms=1000 on the topic with IncrementalAlterConfigs.
func deniedAlter(opts options) deniedStep {
	return deniedStep{operation: "alter_configs", resource: opts.topic,
		run: func(ctx context.Context, client *kgo.Client) error {
			altered, err := kadm.NewClient(client).AlterTopicConfigs(ctx, []kadm.AlterConfig{
				{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")},
			}, opts.topic)
			return firstErr(err, alterErr(altered, opts.topic))
		}}
}
