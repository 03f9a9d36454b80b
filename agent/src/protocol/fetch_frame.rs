//! A Fetch response frame whose record bytes are not copied into it: the frame is a list of
//! pieces written one after another, the encoded fields and, between them, each partition's
//! records as the fetch assembled them.
//!
//! Encoding a response into one buffer copies every record byte once more and holds a second
//! copy of a response of up to `fetch.max.bytes` (50 MiB for the Java consumer) until the socket
//! has taken it. Here the `kafka-protocol` crate still encodes every field (no hand-written
//! encoder to drift from it): the response is encoded twice without records, once with every
//! partition's records null and once empty. The two frames differ exactly at the records'
//! length prefixes (null and empty have prefixes of the same size: an `i32` -1 against 0 up to
//! v11, an unsigned varint 0 against 1 in v12's compact bytes), one run per partition, in order.
//! Each run is replaced by the real prefix followed by the records. Anything unexpected (another
//! number of runs, a run of another size) falls back to the single-buffer encoding.

use super::codec::{encode_response, CodecError};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

/// Records shorter than this are copied into the surrounding piece: a write per small partition
/// would cost more than the copy.
const SPLICE_AT_LEAST: usize = 32 << 10;

/// Encodes a response frame (size prefix included) as pieces to write in order. Only a Fetch
/// with large record sets is split; every other response is one piece.
pub fn encode_response_pieces(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Result<Vec<Bytes>, CodecError> {
    if let ResponseKind::Fetch(fetch) = body {
        if records(fetch).any(|records| records.is_some_and(|bytes| bytes.len() >= SPLICE_AT_LEAST)) {
            if let Some(pieces) = spliced(version, correlation_id, fetch)? {
                return Ok(pieces);
            }
        }
    }
    Ok(vec![encode_response(api_key, version, correlation_id, body)?])
}

/// Every partition's records, in encoding order.
fn records(fetch: &FetchResponse) -> impl Iterator<Item = Option<&Bytes>> {
    fetch.responses.iter().flat_map(|topic| topic.partitions.iter().map(|partition| partition.records.as_ref()))
}

/// The response with every partition's records replaced by `records`.
fn skeleton(fetch: &FetchResponse, records: Option<Bytes>) -> FetchResponse {
    let mut skeleton = fetch.clone();
    for partition in skeleton.responses.iter_mut().flat_map(|topic| topic.partitions.iter_mut()) {
        partition.records = records.clone();
    }
    skeleton
}

/// Where two equally long frames differ: `(start, end)` of each run of differing bytes.
fn differing_runs(left: &[u8], right: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start = None;
    for (index, (a, b)) in left.iter().zip(right).enumerate() {
        match (a != b, start) {
            (true, None) => start = Some(index),
            (false, Some(from)) => {
                runs.push((from, index));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(from) = start {
        runs.push((from, left.len()));
    }
    runs
}

/// How many bytes [`put_prefix`] writes for `records`.
fn prefix_len(flexible: bool, records: &Bytes) -> usize {
    if flexible {
        let mut value = records.len() as u64 + 1;
        let mut length = 1;
        while value >= 0x80 {
            value >>= 7;
            length += 1;
        }
        length
    } else {
        4
    }
}

/// The length prefix of `records` in this version's encoding.
fn put_prefix(out: &mut BytesMut, flexible: bool, records: &Bytes) {
    if flexible {
        let mut value = records.len() as u64 + 1;
        while value >= 0x80 {
            out.put_u8((value as u8 & 0x7f) | 0x80);
            value >>= 7;
        }
        out.put_u8(value as u8);
    } else {
        out.put_i32(records.len() as i32);
    }
}

fn spliced(version: i16, correlation_id: i32, fetch: &FetchResponse) -> Result<Option<Vec<Bytes>>, CodecError> {
    let nulls = encode_response(ApiKey::Fetch, version, correlation_id, &ResponseKind::Fetch(skeleton(fetch, None)))?;
    let empties = encode_response(ApiKey::Fetch, version, correlation_id, &ResponseKind::Fetch(skeleton(fetch, Some(Bytes::new()))))?;
    let flexible = version >= 12;
    let marker = if flexible { 1 } else { 4 };
    let runs = differing_runs(&nulls, &empties);
    let all: Vec<Option<&Bytes>> = records(fetch).collect();
    if nulls.len() != empties.len() || runs.len() != all.len() || runs.iter().any(|(start, end)| end - start != marker) {
        return Ok(None);
    }
    // The size prefix counts what follows it: the skeleton's bytes, changed by every prefix and
    // its records.
    let size = all.iter().flatten().fold(nulls.len() - 4, |size, records| size - marker + prefix_len(flexible, records) + records.len());
    let Ok(size) = i32::try_from(size) else {
        return Err(CodecError::Encode { api_key: ApiKey::Fetch, version, reason: format!("a {size}-byte response is too large") });
    };
    let mut pieces = Vec::new();
    let mut current =
        BytesMut::with_capacity(nulls.len() + all.iter().flatten().map(|records| records.len().min(SPLICE_AT_LEAST)).sum::<usize>());
    current.put_i32(size);
    let mut copied_up_to = 4;
    for (&(start, end), records) in runs.iter().zip(all) {
        current.put_slice(&nulls[copied_up_to..start]);
        copied_up_to = end;
        let Some(records) = records else {
            current.put_slice(&nulls[start..end]);
            continue;
        };
        put_prefix(&mut current, flexible, records);
        if records.len() < SPLICE_AT_LEAST {
            current.put_slice(records);
        } else {
            pieces.push(std::mem::take(&mut current).freeze());
            pieces.push(records.clone());
        }
    }
    current.put_slice(&nulls[copied_up_to..]);
    pieces.push(current.freeze());
    pieces.retain(|piece| !piece.is_empty());
    Ok(Some(pieces))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData};
    use kafka_protocol::messages::{BrokerId, ProducerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn records(length: usize, seed: u8) -> Bytes {
        Bytes::from((0..length).map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>())
    }

    /// Partitions with null, empty, small and large records, an error, aborted transactions and
    /// a current leader (a tagged field in v12), over two topics; only fields `version` has.
    fn response(version: i16) -> FetchResponse {
        let partition = |index: i32, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(index)
                .with_high_watermark(1_000 + index as i64)
                .with_last_stable_offset(900)
                .with_log_start_offset(if version >= 5 { 3 } else { -1 })
                .with_records(records)
                .with_current_leader(LeaderIdAndEpoch::default().with_leader_id(BrokerId(2)).with_leader_epoch(7))
        };
        let topic = |name: &str, partitions| {
            FetchableTopicResponse::default().with_topic(TopicName(StrBytes::from_string(name.to_string()))).with_partitions(partitions)
        };
        FetchResponse::default().with_session_id(if version >= 7 { 77 } else { 0 }).with_responses(vec![
            topic(
                "orders",
                vec![
                    partition(0, Some(records(200_000, 1))),
                    partition(1, None).with_error_code(6),
                    partition(2, Some(Bytes::new())),
                    partition(3, Some(records(100, 2))),
                    partition(4, Some(records(SPLICE_AT_LEAST, 3))).with_aborted_transactions(Some(vec![AbortedTransaction::default()
                        .with_producer_id(ProducerId(5))
                        .with_first_offset(10)])),
                ],
            ),
            topic("payments", vec![partition(0, Some(records(70_000, 4))), partition(9, Some(records(1_000_000, 5)))]),
        ])
    }

    #[test]
    fn the_pieces_are_the_single_buffer_encoding_in_every_served_version() {
        for version in 4..=12 {
            let body = ResponseKind::Fetch(response(version));
            let whole = encode_response(ApiKey::Fetch, version, 42, &body).unwrap();
            let pieces = encode_response_pieces(ApiKey::Fetch, version, 42, &body).unwrap();
            assert!(pieces.len() > 1, "v{version}: the large records were not spliced");
            assert_eq!(pieces.concat(), whole.to_vec(), "v{version}");
        }
    }

    #[test]
    fn large_records_are_not_copied_and_small_ones_are() {
        let fetch = response(12);
        let large = fetch.responses[1].partitions[1].records.clone().unwrap();
        let small = fetch.responses[0].partitions[3].records.clone().unwrap();
        let pieces = encode_response_pieces(ApiKey::Fetch, 12, 1, &ResponseKind::Fetch(fetch)).unwrap();
        assert!(pieces.iter().any(|piece| piece.as_ptr() == large.as_ptr() && piece.len() == large.len()), "the 1 MB records were copied");
        assert!(!pieces.iter().any(|piece| piece.as_ptr() == small.as_ptr()), "100 bytes got a piece of their own");
    }

    #[test]
    fn a_response_without_large_records_and_other_apis_are_one_piece() {
        let small = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![PartitionData::default().with_records(Some(records(10, 0)))])]);
        assert_eq!(encode_response_pieces(ApiKey::Fetch, 12, 1, &ResponseKind::Fetch(small)).unwrap().len(), 1);
        let metadata = ResponseKind::Metadata(Default::default());
        assert_eq!(encode_response_pieces(ApiKey::Metadata, 12, 1, &metadata).unwrap().len(), 1);
    }

    #[test]
    fn differing_runs_are_found_in_order() {
        assert_eq!(differing_runs(b"aXXbcYd", b"aZZbcWd"), vec![(1, 3), (5, 6)]);
        assert_eq!(differing_runs(b"abc", b"abc"), vec![]);
        assert_eq!(differing_runs(b"abX", b"abY"), vec![(2, 3)]);
    }
}
