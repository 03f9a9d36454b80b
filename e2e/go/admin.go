package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// admin drives kadm against a fresh topic and reports each call as an admin_result event (the
// Rust test holds the expectations): create (and create again), create partitions (grow, then
// shrink), describe and incrementally alter configs, list/describe/lag/offsets of a live group,
// delete it while it has a member and once it is empty (twice), and delete the topic. The waits
// between steps (metadata catching up, the group emptying) are the only conditions it checks.
func admin(ctx context.Context, opts options) error {
	client, err := newClient(opts)
	if err != nil {
		return err
	}
	defer client.Close()
	adm := kadm.NewClient(client)
	topic := opts.topic

	// Topics.
	created, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic)
	report("create_topics", topic, err, map[string]any{"partitions": created.NumPartitions})
	again, err := adm.CreateTopic(ctx, 3, 1, nil, topic)
	report("create_topics", topic, err, map[string]any{"partitions": again.NumPartitions})
	reportPartitions(ctx, adm, topic, 3)
	grown, err := adm.CreatePartitions(ctx, 2, topic)
	report("create_partitions", topic, firstErr(err, grown[topic].Err), map[string]any{"add": 2})
	reportPartitions(ctx, adm, topic, 5)
	shrunk, err := adm.UpdatePartitions(ctx, 3, topic)
	report("create_partitions", topic, firstErr(err, shrunk[topic].Err), map[string]any{"total": 3})

	// Configs: described after creation, after SET and after DELETE.
	reportConfigs(ctx, adm, topic)
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")},
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("1048576")},
	}, topic)
	report("incremental_alter_configs", topic, firstErr(err, alterErr(altered, topic)), map[string]any{"op": "set"})
	reportConfigs(ctx, adm, topic)
	altered, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "retention.bytes"}}, topic)
	report("incremental_alter_configs", topic, firstErr(err, alterErr(altered, topic)), map[string]any{"op": "delete"})
	reportConfigs(ctx, adm, topic)

	if err := groupAdmin(ctx, opts, adm); err != nil {
		return err
	}

	// Delete the topic, then report whether the metadata still lists it once it should not.
	deleted, err := adm.DeleteTopic(ctx, topic)
	report("delete_topics", topic, firstErr(err, deleted.Err), map[string]any{})
	listed := true
	waitFor(ctx, "topic "+topic+" to disappear", 30*time.Second, func() error {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return err
		}
		if listed = topics.Has(topic); listed {
			return fmt.Errorf("%s is still listed", topic)
		}
		return nil
	})
	report("list_topics", topic, nil, map[string]any{"listed": listed})
	return nil
}

// report emits one admin_result; the error is the Kafka error name when err is one.
func report(operation, resource string, err error, result map[string]any) {
	var errorName any
	if err != nil {
		var kafkaErr *kerr.Error
		if errors.As(err, &kafkaErr) {
			errorName = kafkaErr.Message
		} else {
			errorName = err.Error()
		}
	}
	emit("admin_result", map[string]any{"operation": operation, "resource": resource, "error": errorName, "result": result})
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func alterErr(altered kadm.AlterConfigsResponses, topic string) error {
	_, err := altered.On(topic, func(r *kadm.AlterConfigsResponse) error { return r.Err })
	return err
}

// reportPartitions waits up to 30 s for the metadata to show want partitions of topic, each with
// a leader, and reports the partitions and leaders it last saw.
func reportPartitions(ctx context.Context, adm *kadm.Client, topic string, want int) {
	var partitions, leaders []int32
	var lastErr error
	waitFor(ctx, fmt.Sprintf("%s to show %d partitions", topic, want), 30*time.Second, func() error {
		topics, err := adm.ListTopics(ctx, topic)
		if lastErr = err; err != nil {
			return err
		}
		detail := topics[topic]
		if lastErr = detail.Err; detail.Err != nil {
			return detail.Err
		}
		partitions, leaders = nil, nil
		for _, p := range detail.Partitions.Sorted() {
			partitions, leaders = append(partitions, p.Partition), append(leaders, p.Leader)
			if p.Err != nil || p.Leader < 0 {
				return fmt.Errorf("partition %d: leader %d, error %v", p.Partition, p.Leader, p.Err)
			}
		}
		if len(partitions) != want {
			return fmt.Errorf("%d partitions", len(partitions))
		}
		return nil
	})
	report("metadata", topic, lastErr, map[string]any{"partitions": partitions, "leaders": leaders})
}

// reportConfigs reports every config DescribeConfigs answers for topic: name -> value, source.
func reportConfigs(ctx context.Context, adm *kadm.Client, topic string) {
	configs := map[string]any{}
	described, err := adm.DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var resource kadm.ResourceConfig
		resource, err = described.On(topic, nil)
		err = firstErr(err, resource.Err)
		for _, config := range resource.Configs {
			configs[config.Key] = map[string]any{"value": config.MaybeValue(), "source": config.Source.String()}
		}
	}
	report("describe_configs", topic, err, map[string]any{"configs": configs})
}

// groupAdmin runs one live group member on the topic (50 records, read and committed) and
// reports what kadm says of the group while it lives and after it leaves.
func groupAdmin(ctx context.Context, opts options, adm *kadm.Client) error {
	topic, group := opts.topic, opts.topic+"-admin-group"
	const records = 50
	producer, err := newClient(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	if err != nil {
		return err
	}
	batch := make([]*kgo.Record, records)
	for i := range batch {
		batch[i] = newRecord(topic, i)
	}
	for i, result := range producer.ProduceSync(ctx, batch...) {
		emitSent(i, "admin", result.Record, result.Err)
	}
	producer.Close()

	member, err := newClient(opts,
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	if err != nil {
		return err
	}
	memberOpen := true
	defer func() {
		if memberOpen {
			member.Close()
		}
	}()
	read := 0
	waitFor(ctx, "the group member to read every record", 60*time.Second, func() error {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		read += member.PollFetches(pollCtx).NumRecords()
		if read < records {
			return fmt.Errorf("read %d of %d", read, records)
		}
		return nil
	})
	report("commit", group, member.CommitUncommittedOffsets(ctx), map[string]any{"read": read})

	// While the member is alive.
	reportListed(ctx, adm, group)
	reportDescribed(ctx, adm, group, topic)
	lags, err := adm.Lag(ctx, group)
	lag := lags[group]
	report("lag", group, firstErr(err, lag.Error()), map[string]any{"total": lag.Lag.Total()})
	committed, err := adm.FetchOffsets(ctx, group)
	offsets := map[string]int64{}
	committed.Each(func(o kadm.OffsetResponse) { offsets[fmt.Sprint(o.Partition)] = o.At })
	report("offset_fetch", group, err, map[string]any{"offsets": offsets})
	busy, err := adm.DeleteGroup(ctx, group)
	report("delete_groups", group, firstErr(err, busy.Err), map[string]any{})

	// Once the member leaves.
	member.Close()
	memberOpen = false
	waitFor(ctx, group+" to become Empty", 30*time.Second, func() error {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		if state := described[group].State; state != "Empty" {
			return fmt.Errorf("state %q", state)
		}
		return nil
	})
	reportDescribed(ctx, adm, group, topic)
	removed, err := adm.DeleteGroup(ctx, group)
	report("delete_groups", group, firstErr(err, removed.Err), map[string]any{})
	removedAgain, err := adm.DeleteGroup(ctx, group)
	report("delete_groups", group, firstErr(err, removedAgain.Err), map[string]any{})
	reportListed(ctx, adm, group)
	return nil
}

func reportListed(ctx context.Context, adm *kadm.Client, group string) {
	listed, err := adm.ListGroups(ctx)
	g, ok := listed[group]
	report("list_groups", group, err, map[string]any{"listed": ok, "state": g.State, "protocol_type": g.ProtocolType})
}

func reportDescribed(ctx context.Context, adm *kadm.Client, group, topic string) {
	described, err := adm.DescribeGroups(ctx, group)
	g := described[group]
	members := []map[string]any{}
	for _, m := range g.Members {
		partitions := []int{}
		if assigned, ok := m.Assigned.AsConsumer(); ok {
			for _, t := range assigned.Topics {
				if t.Topic == topic {
					for _, p := range t.Partitions {
						partitions = append(partitions, int(p))
					}
				}
			}
		}
		sort.Ints(partitions)
		members = append(members, map[string]any{"client_id": m.ClientID, "partitions": partitions})
	}
	report("describe_groups", group, firstErr(err, g.Err), map[string]any{"state": g.State, "protocol_type": g.ProtocolType, "members": members})
}
