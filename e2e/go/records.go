package main

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The record format every Floe e2e driver shares: key, value and headers are a function of the
// index (see e2e/src/lib.rs, records).

func recordKey(i int) []byte { return []byte(fmt.Sprintf("key-%08d", i)) }

func recordValue(i int) []byte {
	value := []byte(fmt.Sprintf("value-%d-", i))
	for j := 0; j < i%300; j++ {
		value = append(value, byte((i*31+j)%251))
	}
	return value
}

func recordHeaders(i int) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: "h-index", Value: []byte(strconv.Itoa(i))},
		{Key: "h-client", Value: []byte("franz-go")},
	}
}

func newRecord(topic string, i int) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: recordKey(i), Value: recordValue(i), Headers: recordHeaders(i)}
}

// parseKey returns the index a key encodes, or -1.
func parseKey(key []byte) int {
	text := string(key)
	if !strings.HasPrefix(text, "key-") || len(text) != 12 {
		return -1
	}
	i, err := strconv.Atoi(text[4:])
	if err != nil || i < 0 {
		return -1
	}
	return i
}

// checkPayload returns "" when the value and headers are what record i must carry.
func checkPayload(i int, r *kgo.Record) string {
	want := recordValue(i)
	if !bytes.Equal(r.Value, want) {
		at := 0
		for at < len(want) && at < len(r.Value) && want[at] == r.Value[at] {
			at++
		}
		return fmt.Sprintf("value differs (got %d bytes, want %d, first difference at byte %d)", len(r.Value), len(want), at)
	}
	wantHeaders := recordHeaders(i)
	if len(r.Headers) != len(wantHeaders) {
		return fmt.Sprintf("%d headers, want %d", len(r.Headers), len(wantHeaders))
	}
	for k, h := range wantHeaders {
		if r.Headers[k].Key != h.Key || !bytes.Equal(r.Headers[k].Value, h.Value) {
			return fmt.Sprintf("header %d is %s=%q, want %s=%q", k, r.Headers[k].Key, r.Headers[k].Value, h.Key, h.Value)
		}
	}
	return ""
}

// problems collects check failures and reports the first few with the total.
type problems struct {
	first []string
	count int
}

func (p *problems) add(format string, args ...any) {
	p.count++
	if len(p.first) < 20 {
		p.first = append(p.first, fmt.Sprintf(format, args...))
	}
}

func (p *problems) err(what string) error {
	if p.count == 0 {
		return nil
	}
	text := fmt.Sprintf("%s: %d problem(s)", what, p.count)
	for _, line := range p.first {
		text += "\n  - " + line
	}
	if p.count > len(p.first) {
		text += fmt.Sprintf("\n  ... and %d more", p.count-len(p.first))
	}
	return fmt.Errorf("%s", text)
}
