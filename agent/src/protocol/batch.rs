//! Record batch (magic v2) header access without decoding records (the layout is in `layout.rs`).
//! The CRC-32C covers `attributes` to the end, so the first three fields may be rewritten freely.

pub use super::layout::HEADER_BYTES;
use super::layout::*;
use super::records::{RecordsError, MAX_DECODED_BATCH_BYTES};
use bytes::{BufMut, Bytes, BytesMut};

const CONTROL_BIT: i16 = 1 << 5;
const TRANSACTIONAL_BIT: i16 = 1 << 4;

/// Why a produced batch was refused; each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set is empty")]
    Empty,
    #[error("record batch is truncated: {available} bytes available, header says {declared}")]
    Truncated { available: usize, declared: usize },
    #[error("record batch magic {magic} is not supported (only magic v2)")]
    UnsupportedMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record batch has {count} records but lastOffsetDelta {last_offset_delta}")]
    InconsistentCount { count: i32, last_offset_delta: i32 },
    #[error("a produce request must carry exactly one record batch per partition, found {count}")]
    MultipleBatches { count: usize },
    #[error("control batches cannot be produced by clients")]
    ControlBatch,
    #[error("a transactional batch must carry the producer id from InitProducerId")]
    Transactional,
    #[error("idempotent batch has producer id {producer_id} but base sequence {base_sequence}")]
    InvalidSequence { producer_id: i64, base_sequence: i32 },
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("record batch payload is invalid: {0}")]
    InvalidPayload(RecordsError),
    /// The request's budget of decompressed bytes ran out before or inside this batch.
    #[error("record batch not checked: {0}; send fewer or smaller batches per request")]
    DecompressionBudget(RecordsError),
}

impl BatchError {
    /// A bounded label for the refused-batches metric, from the variant (never from input text).
    pub fn reason(&self) -> &'static str {
        match self {
            BatchError::Empty | BatchError::Truncated { .. } => "truncated",
            BatchError::UnsupportedMagic { .. } => "magic",
            BatchError::CrcMismatch { .. } => "crc",
            BatchError::InconsistentCount { .. } => "record_count",
            BatchError::MultipleBatches { .. } => "multiple_batches",
            BatchError::ControlBatch => "control_batch",
            BatchError::Transactional => "transactional",
            BatchError::InvalidSequence { .. } => "sequence",
            BatchError::TooLarge { .. } => "too_large",
            BatchError::InvalidPayload(error) | BatchError::DecompressionBudget(error) => error.reason(),
        }
    }
}

/// What the write path needs to know about a validated batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub record_count: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Written inside a transaction (its producer id is then set).
    pub transactional: bool,
}

fn i16_at(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}
fn i32_at(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Size of the batch starting at `bytes[0]`, from its length field, if the header is present.
pub fn batch_size(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < LENGTH_FIELD_END {
        return None;
    }
    let length = i32_at(bytes, 8);
    if length < 0 {
        return None;
    }
    Some(LENGTH_FIELD_END + length as usize)
}

/// What a topic's configuration asks of every batch produced to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRules {
    pub max_message_bytes: usize,
    /// Compacted topics keep the latest record per key: a record without one is refused.
    pub keys_required: bool,
}

/// Validates a client's record set for one partition: exactly one magic-v2 batch, correct CRC,
/// consistent counts, no control batch, a producer id on a transactional one, no larger than `max_message_bytes`, and
/// a payload of exactly the declared well-formed records (`payload.rs`).
pub fn validate_produced(records: &[u8], max_message_bytes: usize) -> Result<BatchSummary, BatchError> {
    let mut unlimited = usize::MAX;
    validate_produced_within(records, TopicRules { max_message_bytes, keys_required: false }, &mut unlimited)
}

/// `validate_produced` under a request's budget of decompressed bytes: `request_left` is what is
/// left of it, and the bytes this batch inflated are taken off it (also when the batch is refused
/// after inflating some).
pub fn validate_produced_within(records: &[u8], rules: TopicRules, request_left: &mut usize) -> Result<BatchSummary, BatchError> {
    let max_message_bytes = rules.max_message_bytes;
    if records.is_empty() {
        return Err(BatchError::Empty);
    }
    let declared = batch_size(records).ok_or(BatchError::Truncated { available: records.len(), declared: HEADER_BYTES })?;
    if records.len() < HEADER_BYTES || declared < HEADER_BYTES || declared > records.len() {
        return Err(BatchError::Truncated { available: records.len(), declared });
    }
    let magic = records[MAGIC_AT] as i8;
    if magic != 2 {
        return Err(BatchError::UnsupportedMagic { magic });
    }
    if declared < records.len() {
        let mut count = 1;
        let mut rest = &records[declared..];
        while let Some(size) = batch_size(rest) {
            count += 1;
            if size > rest.len() {
                break;
            }
            rest = &rest[size..];
        }
        return Err(BatchError::MultipleBatches { count });
    }
    let batch = &records[..declared];
    let stored = u32::from_be_bytes(batch[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    if declared > max_message_bytes {
        return Err(BatchError::TooLarge { size: declared, limit: max_message_bytes });
    }
    let attributes = i16_at(batch, ATTRIBUTES_AT);
    if attributes & CONTROL_BIT != 0 {
        return Err(BatchError::ControlBatch);
    }
    let last_offset_delta = i32_at(batch, LAST_OFFSET_DELTA_AT);
    let count = i32_at(batch, RECORD_COUNT_AT);
    if count <= 0 || last_offset_delta.checked_add(1) != Some(count) {
        return Err(BatchError::InconsistentCount { count, last_offset_delta });
    }
    let producer_id = i64_at(batch, PRODUCER_ID_AT);
    let base_sequence = i32_at(batch, BASE_SEQUENCE_AT);
    if producer_id >= 0 && base_sequence < 0 {
        return Err(BatchError::InvalidSequence { producer_id, base_sequence });
    }
    let transactional = attributes & TRANSACTIONAL_BIT != 0;
    if transactional && producer_id < 0 {
        return Err(BatchError::Transactional);
    }
    let (inflated, checked) = super::payload::check_payload_within(batch, MAX_DECODED_BATCH_BYTES, *request_left, rules.keys_required);
    *request_left = request_left.saturating_sub(inflated);
    match checked {
        Ok(()) => {}
        Err(error @ RecordsError::RequestBudgetSpent { .. }) => return Err(BatchError::DecompressionBudget(error)),
        Err(error) => return Err(BatchError::InvalidPayload(error)),
    }
    Ok(BatchSummary {
        record_count: count as i64,
        max_timestamp: i64_at(batch, MAX_TIMESTAMP_AT),
        producer_id,
        producer_epoch: i16_at(batch, PRODUCER_EPOCH_AT),
        base_sequence,
        transactional,
    })
}

/// A stored batch's place in a transaction, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionFlags {
    /// A commit or abort marker.
    pub control: bool,
    pub transactional: bool,
    pub producer_id: i64,
}

/// The transaction flags of the batch at `batch[0]`, if its header is complete.
pub fn transaction_flags(batch: &[u8]) -> Option<TransactionFlags> {
    if batch.len() < HEADER_BYTES {
        return None;
    }
    let attributes = i16_at(batch, ATTRIBUTES_AT);
    Some(TransactionFlags {
        control: attributes & CONTROL_BIT != 0,
        transactional: attributes & TRANSACTIONAL_BIT != 0,
        producer_id: i64_at(batch, PRODUCER_ID_AT),
    })
}

/// Header fields the read path needs while walking stored batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBatch {
    /// Byte offset of the batch inside the chunk.
    pub position: usize,
    pub size: usize,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
}

/// Walks the batches of a stored chunk (as written by the segment writer). Stops at the first
/// malformed header, which cannot happen for chunks whose CRC the segment footer verified.
pub fn walk(chunk: &[u8]) -> impl Iterator<Item = StoredBatch> + '_ {
    let mut position = 0usize;
    std::iter::from_fn(move || {
        let rest = &chunk[position..];
        let size = batch_size(rest)?;
        if size < HEADER_BYTES || size > rest.len() {
            return None;
        }
        let batch = StoredBatch {
            position,
            size,
            base_offset: i64_at(rest, 0),
            last_offset_delta: i32_at(rest, LAST_OFFSET_DELTA_AT),
            max_timestamp: i64_at(rest, MAX_TIMESTAMP_AT),
        };
        position += size;
        Some(batch)
    })
}

/// Appends `batch` to `out` with its baseOffset field replaced: the only copy on the write path.
pub fn put_with_base_offset(out: &mut BytesMut, batch: &[u8], base_offset: i64) {
    out.put_i64(base_offset);
    out.put_slice(&batch[8..]);
}

/// Copies the batches of `chunk` from `first_batch_position` up to `byte_limit` bytes into `out`,
/// shifting every stored (chunk-relative) base offset by `chunk_base_offset`. With
/// `force_first`, the first batch is copied whole even when larger than the limit (KIP-74), so a
/// consumer always makes progress.
///
/// Batches from `until_offset` on are not copied (a read_committed fetch stops at the last stable
/// offset).
///
/// Returns the bytes copied and whether the byte limit (or `until_offset`) stopped the copy
/// before the chunk's end (the caller must then not continue with later chunks, or the consumer
/// would see a gap).
pub fn copy_rebased(
    out: &mut BytesMut,
    chunk: &Bytes,
    chunk_base_offset: i64,
    from_offset: i64,
    until_offset: i64,
    byte_limit: usize,
    force_first: bool,
) -> (usize, bool) {
    let mut copied = 0usize;
    for batch in walk(chunk) {
        let absolute_base = chunk_base_offset + batch.base_offset;
        let absolute_last = absolute_base + batch.last_offset_delta as i64;
        if absolute_last < from_offset {
            continue;
        }
        if absolute_base >= until_offset {
            return (copied, true);
        }
        let forced = force_first && copied == 0;
        if !forced && copied + batch.size > byte_limit {
            return (copied, true);
        }
        put_with_base_offset(out, &chunk[batch.position..batch.position + batch.size], absolute_base);
        copied += batch.size;
    }
    (copied, false)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    /// Encodes `count` small records with the crate's encoder, as a client would.
    pub fn encoded_batch(count: usize, compression: Compression) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|index| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                sequence: index as i32,
                timestamp: 1_700_000_000_000 + index as i64,
                key: Some(Bytes::from(format!("key-{index}"))),
                value: Some(Bytes::from(format!("value-{index}"))),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buffer = BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression };
        RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).expect("encode");
        buffer.freeze()
    }

    #[test]
    fn a_client_batch_validates_and_reports_its_count() {
        let batch = encoded_batch(5, Compression::None);
        let summary = validate_produced(&batch, 1 << 20).unwrap();
        assert_eq!(summary.record_count, 5);
        assert_eq!(summary.max_timestamp, 1_700_000_000_004);
    }

    #[test]
    fn a_flipped_byte_is_a_crc_mismatch() {
        let mut batch = encoded_batch(3, Compression::None).to_vec();
        let last = batch.len() - 1;
        batch[last] ^= 0x55;
        assert!(matches!(validate_produced(&batch, 1 << 20), Err(BatchError::CrcMismatch { .. })));
    }

    #[test]
    fn two_batches_in_one_partition_are_refused() {
        let mut both = encoded_batch(2, Compression::None).to_vec();
        both.extend_from_slice(&encoded_batch(2, Compression::None));
        assert_eq!(validate_produced(&both, 1 << 20), Err(BatchError::MultipleBatches { count: 2 }));
    }

    #[test]
    fn truncated_and_old_magic_batches_are_refused() {
        let batch = encoded_batch(2, Compression::None);
        assert!(matches!(validate_produced(&batch[..30], 1 << 20), Err(BatchError::Truncated { .. })));
        let mut old = batch.to_vec();
        old[MAGIC_AT] = 1;
        assert_eq!(validate_produced(&old, 1 << 20), Err(BatchError::UnsupportedMagic { magic: 1 }));
    }

    #[test]
    fn oversized_batches_are_refused() {
        let batch = encoded_batch(50, Compression::None);
        assert!(matches!(validate_produced(&batch, 100), Err(BatchError::TooLarge { .. })));
    }

    #[test]
    fn rebasing_keeps_the_crc_valid_and_starts_at_the_batch_holding_the_offset() {
        let first = encoded_batch(3, Compression::None);
        let second = encoded_batch(4, Compression::None);
        let mut chunk = BytesMut::new();
        put_with_base_offset(&mut chunk, &first, 0);
        put_with_base_offset(&mut chunk, &second, 3);
        let chunk = chunk.freeze();
        let mut out = BytesMut::new();
        copy_rebased(&mut out, &chunk, 100, 104, i64::MAX, usize::MAX, true);
        let batches: Vec<_> = walk(&out).collect();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].base_offset, 103);
        assert!(validate_produced(&out, 1 << 20).is_ok());
    }

    #[test]
    fn the_first_batch_is_returned_whole_even_past_the_byte_limit() {
        let first = encoded_batch(30, Compression::None);
        let mut chunk = BytesMut::new();
        put_with_base_offset(&mut chunk, &first, 0);
        put_with_base_offset(&mut chunk, &first, 30);
        let chunk = chunk.freeze();
        let mut out = BytesMut::new();
        let copied = copy_rebased(&mut out, &chunk, 0, 0, i64::MAX, 10, true);
        assert_eq!(copied, (first.len(), true));
        assert_eq!(copy_rebased(&mut BytesMut::new(), &chunk, 0, 0, i64::MAX, 10, false), (0, true));
        assert_eq!(copy_rebased(&mut BytesMut::new(), &chunk, 0, 30, i64::MAX, usize::MAX, false), (first.len(), false));
    }
}
