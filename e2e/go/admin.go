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
	"github.com/twmb/franz-go/pkg/kmsg"
)

// admin drives the topic, config and group administration of kadm against a fresh topic:
// create (and create again), create partitions (grow, refuse to shrink), describe and
// incrementally alter configs, list/describe/lag a live group, refuse to delete it while it has a
// member, delete it once empty, and delete the topic.
func admin(ctx context.Context, opts options) error {
	client, err := newClient(opts)
	if err != nil {
		return err
	}
	defer client.Close()
	adm := kadm.NewClient(client)
	topic := opts.topic

	// Topics.
	if err := createTopic(ctx, opts, 3, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}); err != nil {
		return err
	}
	again, err := adm.CreateTopic(ctx, 3, 1, nil, topic)
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("creating %s twice: want TOPIC_ALREADY_EXISTS, got %v (%s)", topic, err, again.ErrMessage)
	}
	if err := waitForPartitions(ctx, adm, topic, 3); err != nil {
		return err
	}
	grown, err := adm.CreatePartitions(ctx, 2, topic)
	if err != nil || grown[topic].Err != nil {
		return fmt.Errorf("CreatePartitions(%s, +2): %v %v (%s)", topic, err, grown[topic].Err, grown[topic].ErrMessage)
	}
	if err := waitForPartitions(ctx, adm, topic, 5); err != nil {
		return err
	}
	shrunk, err := adm.UpdatePartitions(ctx, 3, topic)
	if err != nil {
		return fmt.Errorf("CreatePartitions(%s, 3): %w", topic, err)
	}
	if !errors.Is(shrunk[topic].Err, kerr.InvalidPartitions) {
		return fmt.Errorf("shrinking %s to 3 partitions: want INVALID_PARTITIONS, got %v", topic, shrunk[topic].Err)
	}
	fmt.Printf("topic %s: created with 3 partitions, grown to 5, shrinking refused\n", topic)

	// Configs: the creation config is dynamic, the rest are defaults; SET and DELETE apply.
	if err := expectConfigs(ctx, adm, topic, map[string]configWant{
		"retention.ms":   {"3600000", kmsg.ConfigSourceDynamicTopicConfig},
		"cleanup.policy": {"delete", kmsg.ConfigSourceDefaultConfig},
	}); err != nil {
		return err
	}
	altered, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("7200000")},
		{Op: kadm.SetConfig, Name: "retention.bytes", Value: kadm.StringPtr("1048576")},
	}, topic)
	if err != nil {
		return fmt.Errorf("IncrementalAlterConfigs(%s): %w", topic, err)
	}
	if _, err := altered.On(topic, func(r *kadm.AlterConfigsResponse) error { return r.Err }); err != nil {
		return fmt.Errorf("IncrementalAlterConfigs(%s) SET: %w", topic, err)
	}
	if err := expectConfigs(ctx, adm, topic, map[string]configWant{
		"retention.ms":    {"7200000", kmsg.ConfigSourceDynamicTopicConfig},
		"retention.bytes": {"1048576", kmsg.ConfigSourceDynamicTopicConfig},
	}); err != nil {
		return err
	}
	altered, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.DeleteConfig, Name: "retention.bytes"}}, topic)
	if err != nil {
		return fmt.Errorf("IncrementalAlterConfigs(%s) DELETE: %w", topic, err)
	}
	if _, err := altered.On(topic, func(r *kadm.AlterConfigsResponse) error { return r.Err }); err != nil {
		return fmt.Errorf("IncrementalAlterConfigs(%s) DELETE: %w", topic, err)
	}
	if err := expectConfigs(ctx, adm, topic, map[string]configWant{
		"retention.ms":    {"7200000", kmsg.ConfigSourceDynamicTopicConfig},
		"retention.bytes": {"-1", kmsg.ConfigSourceDefaultConfig},
	}); err != nil {
		return err
	}
	fmt.Printf("configs of %s described, set and deleted incrementally\n", topic)

	// Groups.
	if err := groupAdmin(ctx, opts, adm); err != nil {
		return err
	}

	// Delete the topic: it disappears from the metadata.
	deleted, err := adm.DeleteTopic(ctx, topic)
	if err != nil {
		return fmt.Errorf("DeleteTopics(%s): %w (%s)", topic, err, deleted.ErrMessage)
	}
	err = waitFor(ctx, "topic "+topic+" to disappear", 30*time.Second, func() error {
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			return err
		}
		if topics.Has(topic) {
			return fmt.Errorf("%s is still listed", topic)
		}
		return nil
	})
	if err != nil {
		return err
	}
	fmt.Printf("topic %s deleted\n", topic)
	fmt.Println("OK franz-go admin")
	return nil
}

func waitForPartitions(ctx context.Context, adm *kadm.Client, topic string, want int) error {
	return waitFor(ctx, fmt.Sprintf("%s to show %d partitions", topic, want), 30*time.Second, func() error {
		topics, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return err
		}
		detail, ok := topics[topic]
		if !ok || detail.Err != nil {
			return fmt.Errorf("%s not listed: %v", topic, detail.Err)
		}
		if len(detail.Partitions) != want {
			return fmt.Errorf("%d partitions", len(detail.Partitions))
		}
		for _, p := range detail.Partitions.Sorted() {
			if p.Err != nil || p.Leader < 0 || int(p.Partition) >= want {
				return fmt.Errorf("partition %d: leader %d, error %v", p.Partition, p.Leader, p.Err)
			}
		}
		return nil
	})
}

type configWant struct {
	value  string
	source kmsg.ConfigSource
}

func expectConfigs(ctx context.Context, adm *kadm.Client, topic string, want map[string]configWant) error {
	described, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("DescribeConfigs(%s): %w", topic, err)
	}
	resource, err := described.On(topic, nil)
	if err != nil || resource.Err != nil {
		return fmt.Errorf("DescribeConfigs(%s): %v %v", topic, err, resource.Err)
	}
	got := map[string]kadm.Config{}
	for _, config := range resource.Configs {
		got[config.Key] = config
	}
	var bad problems
	for key, w := range want {
		config, ok := got[key]
		if !ok {
			bad.add("%s is not described", key)
			continue
		}
		if config.MaybeValue() != w.value || config.Source != w.source {
			bad.add("%s = %q (source %s), want %q (source %s)", key, config.MaybeValue(), config.Source, w.value, w.source)
		}
	}
	return bad.err("configs of " + topic)
}

// groupAdmin runs one live group member and checks what kadm sees of it.
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
	err = producer.ProduceSync(ctx, batch...).FirstErr()
	producer.Close()
	if err != nil {
		return fmt.Errorf("producing %d records: %w", records, err)
	}

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
	err = waitFor(ctx, "the group member to read every record", 60*time.Second, func() error {
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		read += member.PollFetches(pollCtx).NumRecords()
		if read < records {
			return fmt.Errorf("read %d of %d", read, records)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := member.CommitUncommittedOffsets(ctx); err != nil {
		return fmt.Errorf("committing: %w", err)
	}

	// While the member is alive: listed and described as Stable with all 5 partitions, no lag.
	listed, err := adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("ListGroups: %w", err)
	}
	if g, ok := listed[group]; !ok || g.State != "Stable" || g.ProtocolType != "consumer" {
		return fmt.Errorf("ListGroups: %s listed %v as %+v, want Stable/consumer", group, ok, g)
	}
	described, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return fmt.Errorf("DescribeGroups(%s): %w", group, err)
	}
	g := described[group]
	if g.Err != nil || g.State != "Stable" || g.ProtocolType != "consumer" || len(g.Members) != 1 {
		return fmt.Errorf("DescribeGroups(%s): error %v, state %q, protocol type %q, %d members", group, g.Err, g.State, g.ProtocolType, len(g.Members))
	}
	assigned := g.AssignedPartitions()[topic]
	partitions := make([]int, 0, len(assigned))
	for p := range assigned {
		partitions = append(partitions, int(p))
	}
	sort.Ints(partitions)
	if len(partitions) != 5 || partitions[0] != 0 || partitions[4] != 4 {
		return fmt.Errorf("DescribeGroups(%s): the member is assigned %v, want [0 1 2 3 4]", group, partitions)
	}
	if g.Members[0].ClientID != clientID {
		return fmt.Errorf("DescribeGroups(%s): member client id %q, want %q", group, g.Members[0].ClientID, clientID)
	}
	lags, err := adm.Lag(ctx, group)
	if err != nil {
		return fmt.Errorf("lag of %s: %w", group, err)
	}
	lag := lags[group]
	if lag.Error() != nil {
		return fmt.Errorf("lag of %s: %w", group, lag.Error())
	}
	if total := lag.Lag.Total(); total != 0 {
		return fmt.Errorf("lag of %s is %d after committing everything, want 0", group, total)
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return fmt.Errorf("OffsetFetch(%s): %w", group, err)
	}
	sum := int64(0)
	committed.Each(func(o kadm.OffsetResponse) { sum += o.At })
	if sum != records {
		return fmt.Errorf("committed offsets of %s add up to %d, want %d", group, sum, records)
	}
	busy, err := adm.DeleteGroup(ctx, group)
	if !errors.Is(err, kerr.NonEmptyGroup) {
		return fmt.Errorf("deleting %s with a live member: want NON_EMPTY_GROUP, got %v (%s)", group, err, busy.ErrMessage)
	}

	// Once the member leaves: Empty, deletable once, then gone.
	member.Close()
	memberOpen = false
	err = waitFor(ctx, group+" to become Empty", 30*time.Second, func() error {
		described, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return err
		}
		if state := described[group].State; state != "Empty" {
			return fmt.Errorf("state %q", state)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if removed, err := adm.DeleteGroup(ctx, group); err != nil {
		return fmt.Errorf("DeleteGroups(%s): %w (%s)", group, err, removed.ErrMessage)
	}
	if _, err := adm.DeleteGroup(ctx, group); !errors.Is(err, kerr.GroupIDNotFound) {
		return fmt.Errorf("deleting %s twice: want GROUP_ID_NOT_FOUND, got %v", group, err)
	}
	listed, err = adm.ListGroups(ctx)
	if err != nil {
		return fmt.Errorf("ListGroups: %w", err)
	}
	if _, ok := listed[group]; ok {
		return fmt.Errorf("ListGroups still lists the deleted group %s", group)
	}
	fmt.Printf("group %s listed, described (1 member, 5 partitions, lag 0), refused deletion while live, deleted when empty\n", group)
	return nil
}
