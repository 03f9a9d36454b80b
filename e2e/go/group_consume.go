package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// assignmentDeadline bounds the wait for the whole group's assignment before reading.
	assignmentDeadline = 60 * time.Second
	// consumeDeadline bounds the reading.
	consumeDeadline = 150 * time.Second
	// drainAfterAll is how long the members go on reading after the last expected record, so a
	// duplicate shows.
	drainAfterAll = 1500 * time.Millisecond
)

// groupMember is one member of the group-consume mode's group: its own client and its current
// assignment of the topic, as the rebalance callbacks left it.
type groupMember struct {
	name   string
	client *kgo.Client

	mu    sync.Mutex
	owned map[int32]bool
}

// groupConsume runs --members group members (one kgo.Client each, in group --group) on an existing
// topic with the KIP-848 consumer group protocol (ServerSideBalancer; franz-go falls back to the
// classic protocol with the cooperative-sticky balancer when the broker does not serve
// ConsumerGroupHeartbeat v1). Like the Java driver's mode of the same name, no member reads before
// the group's assignment is complete (each member owns a partition, none is owned twice, all are
// owned) or 60 s passed, so no record is read by a member about to lose it; then they read until
// --records records came back in all and 1.5 s more (or 150 s), each commits what it read, the
// group's commits are read back with kadm, and the members close. Records and assignments name
// their member (member-<m>).
func groupConsume(ctx context.Context, opts options) error {
	admin, err := newClient(opts)
	if err != nil {
		return err
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	topics, err := adm.ListTopics(ctx, opts.topic)
	if err == nil {
		err = topics.Error()
	}
	if err != nil {
		return fmt.Errorf("Metadata(%s): %w", opts.topic, err)
	}
	partitions := len(topics[opts.topic].Partitions)
	if partitions < opts.members {
		return fmt.Errorf("%s has %d partitions, fewer than %d members", opts.topic, partitions, opts.members)
	}

	var (
		protocol groupProtocolHook
		// closing stops the reports of assignment changes: closing a member revokes its
		// partitions and hands them to the others, which is no assignment the group read with.
		closing atomic.Bool
		members []*groupMember
	)
	closeAll := func() {
		closing.Store(true)
		var wg sync.WaitGroup
		for _, m := range members {
			wg.Go(m.client.Close)
		}
		wg.Wait()
	}
	defer func() {
		if !closing.Load() {
			closeAll()
		}
	}()
	for i := range opts.members {
		m := &groupMember{name: fmt.Sprintf("member-%d", i), owned: map[int32]bool{}}
		m.client, err = newClient(opts,
			kgo.ClientID(clientID+"-"+m.name),
			kgo.WithHooks(&protocol),
			kgo.ConsumerGroup(opts.group),
			kgo.ConsumeTopics(opts.topic),
			// ServerSideBalancer takes the KIP-848 protocol only with a sticky or range balancer
			// first (should848 in kgo/consumer_group_848.go); cooperative-sticky asks for the
			// server's uniform assignor, and is cooperative should franz-go fall back to classic.
			kgo.Balancers(kgo.CooperativeStickyBalancer()),
			kgo.ServerSideBalancer(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
			kgo.FetchMaxWait(500*time.Millisecond),
			// The classic protocol's timeouts, as the Java driver's members have; the KIP-848
			// protocol takes both from the broker.
			kgo.SessionTimeout(10*time.Second),
			kgo.HeartbeatInterval(time.Second),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
				m.change(opts.topic, assigned[opts.topic], nil, &closing)
			}),
			kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
				// Commit what was read so the next owner resumes exactly after it.
				if !closing.Load() && len(revoked[opts.topic]) > 0 && len(cl.UncommittedOffsets()) > 0 {
					if err := cl.CommitUncommittedOffsets(ctx); err != nil {
						fmt.Fprintf(os.Stderr, "%s: committing before a revocation: %v\n", m.name, err)
					}
				}
				m.change(opts.topic, nil, revoked[opts.topic], &closing)
			}),
			kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
				fmt.Fprintf(os.Stderr, "%s lost partitions %v\n", m.name, lost[opts.topic])
				m.change(opts.topic, nil, lost[opts.topic], &closing)
			}),
		)
		if err != nil {
			return fmt.Errorf("%s: %w", m.name, err)
		}
		members = append(members, m)
	}

	// The members join and are assigned in the background; none polls before the assignment is
	// complete, so none reads (or commits) a partition it is about to lose.
	start := time.Now()
	incomplete := "no member has joined"
	for time.Since(start) < assignmentDeadline && ctx.Err() == nil {
		if incomplete = assignmentIncomplete(members, partitions); incomplete == "" {
			fmt.Fprintf(os.Stderr, "complete assignment after %.1f s: %s\n", time.Since(start).Seconds(), describeAssignment(members))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if incomplete != "" {
		fmt.Fprintf(os.Stderr, "no complete assignment within %s (%s); reading anyway\n", assignmentDeadline, incomplete)
	}
	fmt.Fprintln(os.Stderr, protocol.describe(ctx, adm))

	var (
		read atomic.Int64
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	for _, m := range members {
		wg.Go(func() { m.consume(ctx, &stop, &read) })
	}
	deadline := time.Now().Add(consumeDeadline)
	var drainUntil time.Time
	for now := time.Now(); now.Before(deadline) && (drainUntil.IsZero() || now.Before(drainUntil)) && ctx.Err() == nil; now = time.Now() {
		if drainUntil.IsZero() && read.Load() >= int64(opts.records) {
			drainUntil = now.Add(drainAfterAll)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()

	// Every member commits before any leaves, so no leave-triggered rebalance meets a commit.
	for _, m := range members {
		wg.Go(func() {
			commitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if err := m.client.CommitUncommittedOffsets(commitCtx); err != nil {
				emit("consumer_error", map[string]any{"error": fmt.Sprintf("committing: %v", err), "consumer": m.name})
			}
		})
	}
	wg.Wait()
	committed, err := adm.FetchOffsets(ctx, opts.group)
	if err != nil {
		return fmt.Errorf("OffsetFetch(%s): %w", opts.group, err)
	}
	offsets := []map[string]any{}
	for _, o := range committed.Sorted() {
		if o.Topic == opts.topic && o.Err == nil && o.At >= 0 {
			offsets = append(offsets, map[string]any{"partition": o.Partition, "offset": o.At})
		}
	}
	emit("offsets_committed", map[string]any{"group": opts.group, "topic": opts.topic, "offsets": offsets})
	closeAll()
	fmt.Fprintf(os.Stderr, "the group read %d records in %.1f s\n", read.Load(), time.Since(start).Seconds())
	return nil
}

// change applies an assignment change of the topic (partitions added, partitions removed) and
// reports the member's whole assignment when it changed, unless the members are closing.
func (m *groupMember) change(topic string, added, removed []int32, closing *atomic.Bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := false
	for _, p := range added {
		changed = changed || !m.owned[p]
		m.owned[p] = true
	}
	for _, p := range removed {
		changed = changed || m.owned[p]
		delete(m.owned, p)
	}
	if !changed || closing.Load() {
		return
	}
	emit("partitions_assigned", map[string]any{"topic": topic, "partitions": m.ownedLocked(), "consumer": m.name})
}

// ownedLocked is the member's partitions, sorted; m.mu is held.
func (m *groupMember) ownedLocked() []int32 {
	owned := make([]int32, 0, len(m.owned))
	for p := range m.owned {
		owned = append(owned, p)
	}
	slices.Sort(owned)
	return owned
}

func (m *groupMember) ownedNow() []int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ownedLocked()
}

// consume polls until stop is set, reporting every record (read counts them over all members)
// and every fetch error as this member's.
func (m *groupMember) consume(ctx context.Context, stop *atomic.Bool, read *atomic.Int64) {
	for !stop.Load() && ctx.Err() == nil {
		pollCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := m.client.PollFetches(pollCtx)
		cancel()
		if fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !isPollDeadline(err) {
				emit("consumer_error", map[string]any{"error": fmt.Sprintf("%s/%d: %v", topic, partition, err), "consumer": m.name})
			}
		})
		// Every polled record is reported, also after stop: the final commit covers it.
		fetches.EachRecord(func(r *kgo.Record) {
			emitMemberConsumed(r, m.name)
			read.Add(1)
		})
	}
}

// emitMemberConsumed reports one record a member returned, with the fields of the Java driver's
// group-consume mode (no producer id or epoch).
func emitMemberConsumed(r *kgo.Record, member string) {
	headers := make([]map[string]any, len(r.Headers))
	for i, h := range r.Headers {
		headers[i] = map[string]any{"key": h.Key, "value": hexOrNull(h.Value)}
	}
	emit("record_consumed", map[string]any{
		"topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
		"key": hexOrNull(r.Key), "value": hexOrNull(r.Value), "headers": headers, "consumer": member,
	})
}

// assignmentIncomplete is "" when every member owns a partition, none is owned twice and all
// are owned, else why not.
func assignmentIncomplete(members []*groupMember, partitions int) string {
	owners := map[int32]string{}
	for _, m := range members {
		owned := m.ownedNow()
		if len(owned) == 0 {
			return m.name + " owns no partition"
		}
		for _, p := range owned {
			if other, twice := owners[p]; twice {
				return fmt.Sprintf("partition %d is owned by %s and %s", p, other, m.name)
			}
			owners[p] = m.name
		}
	}
	if len(owners) != partitions {
		return fmt.Sprintf("only %d of %d partitions assigned", len(owners), partitions)
	}
	return ""
}

func describeAssignment(members []*groupMember) string {
	parts := make([]string, len(members))
	for i, m := range members {
		parts[i] = fmt.Sprintf("%s %v", m.name, m.ownedNow())
	}
	return strings.Join(parts, ", ")
}

// groupProtocolHook counts the group requests the members wrote: ConsumerGroupHeartbeat means
// the KIP-848 protocol, JoinGroup the classic one.
type groupProtocolHook struct {
	heartbeats atomic.Int64
	joins      atomic.Int64
}

func (h *groupProtocolHook) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		return
	}
	switch kmsg.Key(key) {
	case kmsg.ConsumerGroupHeartbeat:
		h.heartbeats.Add(1)
	case kmsg.JoinGroup:
		h.joins.Add(1)
	}
}

// describe is one line for stderr: which protocol the members spoke and what the brokers
// advertise.
func (h *groupProtocolHook) describe(ctx context.Context, adm *kadm.Client) string {
	heartbeats, joins := h.heartbeats.Load(), h.joins.Load()
	var used string
	switch {
	case heartbeats > 0 && joins == 0:
		used = "KIP-848 consumer protocol"
	case heartbeats == 0 && joins > 0:
		used = "classic protocol"
	case heartbeats > 0:
		used = "both protocols (KIP-848 tried, then classic?)"
	default:
		used = "no group protocol yet"
	}
	advertised := "unknown"
	if versions, err := adm.ApiVersions(ctx); err != nil {
		advertised = err.Error()
	} else {
		var each []string
		for _, v := range versions.Sorted() {
			if v.Err != nil {
				each = append(each, fmt.Sprintf("broker %d: %v", v.NodeID, v.Err))
			} else if lo, hi, ok := v.KeyVersions(int16(kmsg.ConsumerGroupHeartbeat)); ok {
				each = append(each, fmt.Sprintf("broker %d: v%d-v%d", v.NodeID, lo, hi))
			} else {
				each = append(each, fmt.Sprintf("broker %d: none", v.NodeID))
			}
		}
		advertised = strings.Join(each, ", ")
	}
	return fmt.Sprintf("group protocol: %s (ConsumerGroupHeartbeat requests %d, JoinGroup requests %d; ConsumerGroupHeartbeat advertised: %s)",
		used, heartbeats, joins, advertised)
}
