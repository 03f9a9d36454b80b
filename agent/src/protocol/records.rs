//! Record decoding under a memory budget, for the few paths that need record fields (ListOffsets
//! by timestamp). Every other path handles batches as opaque bytes (`batch.rs`); the produce
//! path's payload check streams instead (`payload.rs`).
//!
//! A stored batch may predate the produce path's record validation (or its object may be damaged),
//! so its payload may decompress to any size (a zip bomb: a 1 MiB gzip payload of zeros expands
//! to about 1 GiB) and it may declare any record count that agrees with its lastOffsetDelta. The
//! `kafka-protocol` crate's own decompressors have no output limit, so this module decompresses
//! itself, stopping at the budget, and hands the crate only the decompressed bytes to parse.

use bytes::Bytes;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder};
use std::io::Read;

/// Memory one decoded batch may occupy: decompressed payload plus the decoded `Record` values.
/// Far above what clients send (Kafka's default `max.message.bytes` is 1 MiB compressed), far
/// below what would hurt an agent.
pub const MAX_DECODED_BATCH_BYTES: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("failed to decode record batch header: {reason}")]
    Header { reason: String },
    #[error("record buffer holds {count} magic-v2 batches, expected exactly one")]
    NotOneBatch { count: usize },
    #[error("record batch declares {count} records, more than a decoding budget of {limit} bytes allows")]
    TooManyRecords { count: i32, limit: usize },
    #[error("record batch declares {count} records, but {bytes} bytes hold at most {} records of the smallest size", bytes / super::payload::MIN_RECORD_BYTES)]
    CountPastBytes { count: i32, bytes: usize },
    #[error("{compression:?} record batch payload decompresses to more than {limit} bytes")]
    DecompressedTooLarge { compression: Compression, limit: usize },
    #[error("{compression:?} record batch payload would take the request past its budget of {budget} decompressed bytes")]
    RequestBudgetSpent { compression: Compression, budget: usize },
    #[error("failed to decompress {compression:?} record batch payload: {reason}")]
    Decompress { compression: Compression, reason: String },
    #[error("failed to decode records: {reason}")]
    Records { reason: String },
    #[error("record {index} of {declared} {violation}")]
    InvalidRecord { index: i32, declared: i32, violation: RecordViolation },
    #[error("record batch declares {declared} records but its payload ends after {found}")]
    MissingRecords { declared: i32, found: i32 },
    #[error("bytes follow the last of the {declared} records the batch declares")]
    TrailingBytes { declared: i32 },
    #[error("record batch uses compression codec {code}, which does not exist")]
    UnknownCompression { code: i16 },
    #[error("LZ4 frame {reason}")]
    Lz4Frame { reason: &'static str },
}

impl RecordsError {
    /// A bounded label for metrics: the kind of violation, never input-derived text.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordsError::Header { .. } | RecordsError::NotOneBatch { .. } => "header",
            RecordsError::TooManyRecords { .. } | RecordsError::CountPastBytes { .. } | RecordsError::MissingRecords { .. } => {
                "record_count"
            }
            RecordsError::DecompressedTooLarge { .. } => "decompressed_too_large",
            RecordsError::RequestBudgetSpent { .. } => "request_budget",
            RecordsError::Decompress { .. } | RecordsError::Lz4Frame { .. } => "decompress",
            RecordsError::Records { .. } => "records",
            RecordsError::InvalidRecord { violation, .. } => violation.reason(),
            RecordsError::TrailingBytes { .. } => "trailing_bytes",
            RecordsError::UnknownCompression { .. } => "codec",
        }
    }
}

/// How one record breaks the v2 record format (`DefaultRecord` in Kafka's clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordViolation {
    #[error("declares a body of {length} bytes; the smallest record body is {min} bytes", min = super::payload::MIN_RECORD_BODY_BYTES)]
    ShorterThanMinimum { length: i64 },
    #[error("has a {field} varint longer than the format allows")]
    VarintTooLong { field: &'static str },
    #[error("has offset delta {found}; a record's offset delta must equal its index in the batch")]
    OffsetDelta { found: i32 },
    #[error("has a {field} of {length}")]
    InvalidLength { field: &'static str, length: i32 },
    #[error("ends inside its {field}")]
    EndsInside { field: &'static str },
    #[error("has a {field} of {length} bytes but only {left} bytes of the record remain")]
    LengthPastEnd { field: &'static str, length: i32, left: usize },
    #[error("declares {count} headers but only {left} bytes of the record remain")]
    TooManyHeaders { count: i32, left: usize },
    #[error("has {left} bytes after its last header")]
    BytesAfterHeaders { left: usize },
    #[error("is cut off by the end of the payload in its {field}")]
    CutShort { field: &'static str },
    #[error("has no key; a topic with cleanup.policy=compact keeps the latest record per key, so every record needs one")]
    MissingKey,
}

impl RecordViolation {
    pub fn reason(&self) -> &'static str {
        match self {
            RecordViolation::ShorterThanMinimum { .. } => "record_too_short",
            RecordViolation::VarintTooLong { .. } => "record_varint",
            RecordViolation::OffsetDelta { .. } => "record_offset_delta",
            RecordViolation::InvalidLength { .. } => "record_negative_length",
            RecordViolation::EndsInside { .. }
            | RecordViolation::LengthPastEnd { .. }
            | RecordViolation::TooManyHeaders { .. }
            | RecordViolation::BytesAfterHeaders { .. } => "record_length_mismatch",
            RecordViolation::CutShort { .. } => "record_truncated",
            RecordViolation::MissingKey => "record_without_key",
        }
    }
}

/// Decodes the records of exactly one magic-v2 batch (CRC checked by the crate).
///
/// # Guarantees
/// Allocates at most about `max_decoded_bytes` for decompressed bytes and `Record` values
/// together (plus the usual doubling slack of a growing buffer), whatever the input; a batch that
/// needs more is refused with `TooManyRecords` or `DecompressedTooLarge`.
pub fn decode_batch(batch: &Bytes, max_decoded_bytes: usize) -> Result<Vec<Record>, RecordsError> {
    let headers =
        RecordBatchDecoder::decode_batch_info(&mut batch.clone()).map_err(|error| RecordsError::Header { reason: error.to_string() })?;
    let [header] = headers.as_slice() else {
        return Err(RecordsError::NotOneBatch { count: headers.len() });
    };
    // The crate rejects negative counts itself; the budget is checked before anything is inflated.
    let record_bytes = (header.record_count.max(0) as usize).saturating_mul(std::mem::size_of::<Record>());
    if record_bytes > max_decoded_bytes {
        return Err(RecordsError::TooManyRecords { count: header.record_count, limit: max_decoded_bytes });
    }
    let payload_limit = max_decoded_bytes - record_bytes;
    let decompress = |payload: &mut Bytes, compression: Compression| -> anyhow::Result<Bytes> {
        match compression {
            // Already in memory as part of the batch, which the frame size limit bounded.
            Compression::None => Ok(payload.clone()),
            compressed => decompress(payload, compressed, payload_limit).map_err(anyhow::Error::from),
        }
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut batch.clone(), Some(decompress)).map_err(|error| {
        // Our own errors travel through the crate as `anyhow::Error`; unwrap them again.
        error.downcast::<RecordsError>().unwrap_or_else(|other| RecordsError::Records { reason: other.to_string() })
    })?;
    Ok(set.records)
}

/// The codec a magic-v2 batch header names (`batch` holds at least the header).
pub(super) fn compression_of(batch: &[u8]) -> Result<Compression, RecordsError> {
    use super::layout::ATTRIBUTES_AT;
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    // The attribute bits that name the codec.
    match attributes & 0x07 {
        0 => Ok(Compression::None),
        1 => Ok(Compression::Gzip),
        2 => Ok(Compression::Snappy),
        3 => Ok(Compression::Lz4),
        4 => Ok(Compression::Zstd),
        code => Err(RecordsError::UnknownCompression { code }),
    }
}

/// Decompresses a batch payload, failing as soon as the output would exceed `limit` bytes.
pub(super) fn decompress(payload: &[u8], compression: Compression, limit: usize) -> Result<Bytes, RecordsError> {
    let failed = |error: std::io::Error| RecordsError::Decompress { compression, reason: error.to_string() };
    match compression {
        Compression::None => Ok(Bytes::copy_from_slice(payload)),
        // Concatenated gzip members are read on, as Java's GZIPInputStream does.
        Compression::Gzip => read_capped(flate2::read::MultiGzDecoder::new(payload), compression, limit),
        Compression::Zstd => read_capped(zstd::stream::read::Decoder::with_buffer(payload).map_err(failed)?, compression, limit),
        Compression::Lz4 => read_capped(lz4::Decoder::new(payload).map_err(failed)?, compression, limit),
        Compression::Snappy => snappy(payload, limit),
    }
}

fn read_capped(reader: impl Read, compression: Compression, limit: usize) -> Result<Bytes, RecordsError> {
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|error| RecordsError::Decompress { compression, reason: error.to_string() })?;
    if out.len() > limit {
        return Err(RecordsError::DecompressedTooLarge { compression, limit });
    }
    Ok(out.into())
}

/// snappy-java's framing (what Kafka clients write): this 16-byte header, then blocks of
/// `u32 compressed length | raw snappy block`. Without the header the payload is one raw block,
/// as in the crate's decoder.
pub(super) const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";

/// Raw snappy blocks state their decompressed length up front (up to 4 GiB); it is checked
/// against the budget before the output buffer is allocated.
fn snappy(payload: &[u8], limit: usize) -> Result<Bytes, RecordsError> {
    let mut out = Vec::new();
    let Some(mut blocks) = payload.strip_prefix(XERIAL_HEADER.as_slice()) else {
        append_snappy_block(payload, &mut out, limit)?;
        return Ok(out.into());
    };
    while !blocks.is_empty() {
        let Some((length, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(snappy_error(format!("{} bytes left where a block length was expected", blocks.len())));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(snappy_error(format!("block of {length} bytes but only {} remain", rest.len())));
        }
        let (block, rest) = rest.split_at(length);
        append_snappy_block(block, &mut out, limit)?;
        blocks = rest;
    }
    Ok(out.into())
}

fn append_snappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), RecordsError> {
    let length = snap::raw::decompress_len(block).map_err(|error| snappy_error(error.to_string()))?;
    if length > limit - out.len() {
        return Err(RecordsError::DecompressedTooLarge { compression: Compression::Snappy, limit });
    }
    let start = out.len();
    out.resize(start + length, 0);
    snap::raw::Decoder::new().decompress(block, &mut out[start..]).map_err(|error| snappy_error(error.to_string()))?;
    Ok(())
}

fn snappy_error(reason: String) -> RecordsError {
    RecordsError::Decompress { compression: Compression::Snappy, reason }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::batch::tests::encoded_batch;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    pub(crate) const ALL: [Compression; 5] =
        [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

    /// Record `index` of a batch (offset and sequence `index`) holding `value`.
    pub(crate) fn record(index: usize, value: Bytes) -> Record {
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: index as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(value),
            headers: Default::default(),
            delete_horizon: false,
        }
    }

    /// One record whose value is `value_bytes` zeros: compresses to almost nothing.
    pub(crate) fn zeros_batch(value_bytes: usize, compression: Compression) -> Bytes {
        let mut buffer = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buffer,
            [&record(0, Bytes::from(vec![0u8; value_bytes]))],
            &RecordEncodeOptions { version: 2, compression },
        )
        .expect("encode");
        buffer.freeze()
    }

    #[test]
    fn batches_in_every_compression_decode_to_their_records() {
        for compression in ALL {
            let records = decode_batch(&encoded_batch(4, compression), MAX_DECODED_BATCH_BYTES).unwrap();
            let values: Vec<_> = records.iter().map(|record| record.value.clone().unwrap()).collect();
            assert_eq!(
                values,
                ["value-0", "value-1", "value-2", "value-3"].map(|value| Bytes::from_static(value.as_bytes())),
                "{compression:?}"
            );
            assert_eq!(records[3].offset, 3);
            assert_eq!(records[3].timestamp, 1_700_000_000_003);
        }
    }

    #[test]
    fn a_payload_that_inflates_past_the_budget_is_refused_for_every_codec() {
        for compression in ALL.into_iter().skip(1) {
            let bomb = zeros_batch(4 << 20, compression);
            assert!(bomb.len() < 300 << 10, "{compression:?} should compress zeros well, got {} bytes", bomb.len());
            let error = decode_batch(&bomb, 1 << 20).unwrap_err();
            assert!(matches!(error, RecordsError::DecompressedTooLarge { limit, .. } if limit < 1 << 20), "{compression:?}: {error}");
            assert_eq!(decode_batch(&bomb, 8 << 20).unwrap()[0].value.as_ref().unwrap().len(), 4 << 20, "{compression:?}");
        }
    }

    /// The payload check without streaming: decompress the whole payload, then read its records
    /// with the plain reference reader. `payload.rs` tests that the streaming check agrees with it.
    pub(crate) fn check_by_whole_decompression(batch: &[u8], limit: usize) -> bool {
        use crate::protocol::layout::{ATTRIBUTES_AT, HEADER_BYTES, RECORD_COUNT_AT};
        let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
        let count = i32::from_be_bytes(batch[RECORD_COUNT_AT..HEADER_BYTES].try_into().expect("4 bytes"));
        let payload = &batch[HEADER_BYTES..];
        let compression = match attributes & 0x07 {
            0 => return walk_records(payload, count),
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return false,
        };
        // liblz4 reads dependent blocks; Kafka's readers do not.
        if compression == Compression::Lz4 && payload.get(4).is_none_or(|flags| flags & 0b0010_0000 == 0) {
            return false;
        }
        decompress(payload, compression, limit).is_ok_and(|data| walk_records(&data, count))
    }

    fn walk_records(data: &[u8], count: i32) -> bool {
        crate::fuzzing::records_are_well_formed(data, count)
    }

    #[test]
    fn a_raw_snappy_length_prefix_is_checked_before_allocating() {
        // A raw snappy block whose varint header claims 4 GiB - 1, followed by nothing.
        let payload = [0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(matches!(snappy(&payload, 1 << 20), Err(RecordsError::DecompressedTooLarge { .. })));
    }

    #[test]
    fn a_declared_record_count_past_the_budget_is_refused_before_decoding() {
        let mut batch = encoded_batch(1, Compression::None).to_vec();
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        let error = decode_batch(&Bytes::from(batch), MAX_DECODED_BATCH_BYTES).unwrap_err();
        assert!(matches!(error, RecordsError::TooManyRecords { count: i32::MAX, .. }), "{error}");
    }

    #[test]
    fn anything_but_exactly_one_valid_batch_is_an_error() {
        let batch = encoded_batch(2, Compression::None);
        let mut two = BytesMut::from(&batch[..]);
        two.put_slice(&batch);
        assert!(matches!(decode_batch(&two.freeze(), MAX_DECODED_BATCH_BYTES), Err(RecordsError::NotOneBatch { count: 2 })));
        assert!(matches!(decode_batch(&batch.slice(..40), MAX_DECODED_BATCH_BYTES), Err(RecordsError::Header { .. })));
        let mut flipped = batch.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(decode_batch(&Bytes::from(flipped), MAX_DECODED_BATCH_BYTES), Err(RecordsError::Header { .. })));
    }
}
