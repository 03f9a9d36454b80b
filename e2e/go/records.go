package main

import (
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Record index i of the format every Floe e2e driver produces; the one definition the checks use
// is floe_e2e::records (e2e/src/lib.rs), which compares every byte this driver reads back.

func recordKey(i int) []byte { return []byte(fmt.Sprintf("key-%08d", i)) }

func recordValue(i int) []byte {
	value := []byte(fmt.Sprintf("value-%d-", i))
	for j := 0; j < i%300; j++ {
		value = append(value, byte((i*31+j)%251))
	}
	return value
}

func newRecord(topic string, i int) *kgo.Record {
	return &kgo.Record{Topic: topic, Key: recordKey(i), Value: recordValue(i), Headers: []kgo.RecordHeader{
		{Key: "h-index", Value: []byte(strconv.Itoa(i))},
		{Key: "h-client", Value: []byte(clientName)},
	}}
}
