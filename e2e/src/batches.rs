//! The record-batch headers a topic holds, read straight off the wire (Fetch over a raw
//! connection), so a suite can check what a client really sent: producer ids, epochs and sequence
//! numbers of idempotent batches, and whether the log holds each batch exactly once.

use crate::wire::RawConnection;
use anyhow::{bail, ensure, Context, Result};
use bytes::Buf;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, BTreeSet};

/// The fixed header of one magic-v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub partition: i32,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub attributes: i16,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64 + 1
    }
}

const FETCH_VERSION: i16 = 11;

/// Reads every batch header of partitions `0..partitions` of `topic`, from offset 0 to the high
/// watermark, in offset order per partition.
pub fn read_batch_headers(bootstrap: &str, topic: &str, partitions: i32) -> Result<Vec<BatchHeader>> {
    let mut connection = RawConnection::connect(bootstrap)?;
    let mut headers = Vec::new();
    for partition in 0..partitions {
        let mut offset = 0i64;
        loop {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(100)
                .with_min_bytes(1)
                .with_max_bytes(64 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(
                    vec![FetchPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(-1)
                        .with_fetch_offset(offset)
                        .with_last_fetched_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(16 << 20)],
                )]);
            let correlation = connection.send(ApiKey::Fetch, FETCH_VERSION, &request)?;
            let response: FetchResponse = connection.receive(ApiKey::Fetch, FETCH_VERSION, correlation)?;
            ensure!(response.error_code == 0, "fetch of {topic}/{partition} failed with error {}", response.error_code);
            let data = response
                .responses
                .first()
                .and_then(|topic| topic.partitions.first())
                .with_context(|| format!("the fetch response has no entry for {topic}/{partition}"))?;
            ensure!(data.error_code == 0, "fetch of {topic}/{partition} at {offset} failed with error {}", data.error_code);
            if offset >= data.high_watermark {
                break;
            }
            let before = offset;
            for header in parse_batch_headers(partition, data.records.clone().unwrap_or_default())? {
                if header.next_offset() > offset {
                    offset = header.next_offset();
                    headers.push(header);
                }
            }
            ensure!(offset > before, "fetch of {topic}/{partition} at {before} made no progress (high watermark {})", data.high_watermark);
        }
    }
    Ok(headers)
}

/// Parses the headers of the complete batches in a Fetch response's records (a trailing partial
/// batch is allowed by the protocol and skipped).
fn parse_batch_headers(partition: i32, mut records: bytes::Bytes) -> Result<Vec<BatchHeader>> {
    let mut headers = Vec::new();
    while records.len() >= 61 {
        let batch_length = i32::from_be_bytes(records[8..12].try_into().expect("4 bytes"));
        let total = 12 + batch_length as usize;
        if batch_length < 49 || records.len() < total {
            break;
        }
        let mut batch = records.split_to(total);
        let base_offset = batch.get_i64();
        let _length = batch.get_i32();
        let _partition_leader_epoch = batch.get_i32();
        let magic = batch.get_i8();
        if magic != 2 {
            bail!("batch at offset {base_offset} of partition {partition} has magic {magic}, expected 2");
        }
        let _crc = batch.get_u32();
        let attributes = batch.get_i16();
        let last_offset_delta = batch.get_i32();
        let _base_timestamp = batch.get_i64();
        let _max_timestamp = batch.get_i64();
        let producer_id = batch.get_i64();
        let producer_epoch = batch.get_i16();
        let base_sequence = batch.get_i32();
        let record_count = batch.get_i32();
        headers.push(BatchHeader {
            partition,
            base_offset,
            last_offset_delta,
            attributes,
            producer_id,
            producer_epoch,
            base_sequence,
            record_count,
        });
    }
    Ok(headers)
}

/// What [`check_idempotent_batches`] found.
#[derive(Debug)]
pub struct IdempotentLog {
    pub batches: usize,
    pub records: i64,
    pub producer_ids: BTreeSet<i64>,
}

/// Checks that every batch was written by an idempotent producer and is in the log exactly once:
/// each batch carries a producer id, epoch and base sequence; per partition the batches tile the
/// offsets from 0 without gaps or overlaps; and per (partition, producer id, epoch) the sequence
/// numbers start at 0 and continue without a gap or a repeat.
pub fn check_idempotent_batches(headers: &[BatchHeader]) -> Result<IdempotentLog> {
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut next_sequence: BTreeMap<(i32, i64, i16), i32> = BTreeMap::new();
    let mut producer_ids = BTreeSet::new();
    let mut records = 0i64;
    for header in headers {
        let where_ = format!("partition {} batch at offset {}", header.partition, header.base_offset);
        ensure!(
            header.producer_id >= 0 && header.producer_epoch >= 0 && header.base_sequence >= 0,
            "{where_} is not idempotent: producer id {}, epoch {}, base sequence {}",
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        );
        ensure!(
            header.record_count == header.last_offset_delta + 1,
            "{where_} holds {} records but spans {} offsets",
            header.record_count,
            header.last_offset_delta + 1
        );
        let expected_offset = next_offset.get(&header.partition).copied().unwrap_or(0);
        ensure!(header.base_offset == expected_offset, "{where_}: expected the next batch at offset {expected_offset} (gap or overlap)");
        next_offset.insert(header.partition, header.next_offset());
        let key = (header.partition, header.producer_id, header.producer_epoch);
        let expected_sequence = next_sequence.get(&key).copied().unwrap_or(0);
        ensure!(
            header.base_sequence == expected_sequence,
            "{where_}: producer {} epoch {} sent base sequence {}, expected {expected_sequence} (a duplicate or a lost batch)",
            header.producer_id,
            header.producer_epoch,
            header.base_sequence
        );
        next_sequence.insert(key, header.base_sequence.wrapping_add(header.record_count));
        producer_ids.insert(header.producer_id);
        records += header.record_count as i64;
    }
    Ok(IdempotentLog { batches: headers.len(), records, producer_ids })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(partition: i32, base_offset: i64, count: i32, producer_id: i64, base_sequence: i32) -> BatchHeader {
        BatchHeader {
            partition,
            base_offset,
            last_offset_delta: count - 1,
            attributes: 0,
            producer_id,
            producer_epoch: 0,
            base_sequence,
            record_count: count,
        }
    }

    #[test]
    fn contiguous_sequences_from_one_producer_pass() {
        let log = check_idempotent_batches(&[batch(0, 0, 3, 7, 0), batch(0, 3, 2, 7, 3), batch(1, 0, 4, 7, 0)]).unwrap();
        assert_eq!((log.batches, log.records), (3, 9));
        assert_eq!(log.producer_ids, BTreeSet::from([7]));
    }

    #[test]
    fn a_duplicated_batch_is_reported() {
        let error = check_idempotent_batches(&[batch(0, 0, 3, 7, 0), batch(0, 3, 3, 7, 0)]).unwrap_err();
        assert!(error.to_string().contains("expected 3"), "{error}");
    }

    #[test]
    fn a_batch_without_a_producer_id_is_reported() {
        let error = check_idempotent_batches(&[batch(0, 0, 3, -1, -1)]).unwrap_err();
        assert!(error.to_string().contains("not idempotent"), "{error}");
    }

    #[test]
    fn an_offset_gap_is_reported() {
        let error = check_idempotent_batches(&[batch(0, 0, 3, 7, 0), batch(0, 4, 1, 7, 3)]).unwrap_err();
        assert!(error.to_string().contains("gap or overlap"), "{error}");
    }
}
