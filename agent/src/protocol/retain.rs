//! Rewriting a stored batch with some of its records left out: what key compaction does to a
//! batch, as Kafka's log cleaner does (`MemoryRecords.filterTo`). The header keeps its base
//! offset, lastOffsetDelta, timestamps, producer id, epoch and base sequence, so offsets and
//! producer sequences are unchanged; each kept record's bytes are copied as they are (their offset
//! and timestamp deltas are relative to the unchanged header); the record count, length and CRC
//! are recomputed, and the records are compressed again with the batch's own codec.

use super::layout::{ATTRIBUTES_AT, BASE_TIMESTAMP_AT, BATCH_LENGTH_AT, CRC_AT, HEADER_BYTES, LENGTH_FIELD_END, RECORD_COUNT_AT};
use super::records::{compression_of, decompress, RecordsError};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::Compression;
use std::io::Write;
use std::ops::Range;

/// One record of a batch, located in the decompressed payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSlot {
    /// The record's bytes (length prefix included) in `BatchRecords::payload`.
    pub bytes: Range<usize>,
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// The key's bytes in the payload; `None` for a null key.
    pub key: Option<Range<usize>>,
    /// A null value: a tombstone.
    pub is_tombstone: bool,
}

/// A batch's records, decompressed once.
#[derive(Debug, Clone)]
pub struct BatchRecords {
    pub compression: Compression,
    /// The header's baseTimestamp: a record's timestamp is this plus its delta.
    pub base_timestamp: i64,
    pub payload: Bytes,
    pub records: Vec<RecordSlot>,
}

impl BatchRecords {
    pub fn key(&self, record: &RecordSlot) -> Option<&[u8]> {
        record.key.clone().map(|range| &self.payload[range])
    }
}

/// Decompresses `batch` (one magic-v2 batch) under `limit` bytes and locates its records.
pub fn read_records(batch: &[u8], limit: usize) -> Result<BatchRecords, RecordsError> {
    if batch.len() < HEADER_BYTES {
        return Err(RecordsError::Header { reason: format!("{} bytes is shorter than a batch header", batch.len()) });
    }
    let compression = compression_of(batch)?;
    let declared = i32::from_be_bytes(batch[RECORD_COUNT_AT..HEADER_BYTES].try_into().expect("4 bytes"));
    let payload = match compression {
        Compression::None => Bytes::copy_from_slice(&batch[HEADER_BYTES..]),
        compressed => decompress(&batch[HEADER_BYTES..], compressed, limit)?,
    };
    let records = locate(&payload, declared)?;
    let base_timestamp = i64::from_be_bytes(batch[BASE_TIMESTAMP_AT..BASE_TIMESTAMP_AT + 8].try_into().expect("8 bytes"));
    Ok(BatchRecords { compression, base_timestamp, payload, records })
}

/// `batch` with only the records whose `keep` entry is true, or `None` when none is kept (the
/// caller drops the batch; its offsets become a gap that fetch skips).
pub fn rewrite_keeping(batch: &[u8], records: &BatchRecords, keep: &[bool]) -> Result<Option<Bytes>, RecordsError> {
    let kept: Vec<&RecordSlot> = records.records.iter().zip(keep).filter(|(_, keep)| **keep).map(|(record, _)| record).collect();
    if kept.is_empty() {
        return Ok(None);
    }
    if kept.len() == records.records.len() {
        return Ok(Some(Bytes::copy_from_slice(batch)));
    }
    let mut plain = Vec::with_capacity(kept.iter().map(|record| record.bytes.len()).sum());
    for record in &kept {
        plain.extend_from_slice(&records.payload[record.bytes.clone()]);
    }
    let body = compress(&plain, records.compression)
        .map_err(|error| RecordsError::Decompress { compression: records.compression, reason: format!("recompressing: {error}") })?;
    let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
    out.put_slice(&batch[..HEADER_BYTES]);
    out.put_slice(&body);
    let length = (out.len() - LENGTH_FIELD_END) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
    out[RECORD_COUNT_AT..HEADER_BYTES].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out.freeze()))
}

fn compress(plain: &[u8], compression: Compression) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(plain.to_vec()),
        Compression::Gzip => {
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(plain)?;
            encoder.finish()
        }
        Compression::Zstd => zstd::encode_all(plain, 3),
        // Independent blocks and no content checksum, as Kafka's Java producer writes them: what
        // every client reads (KafkaLZ4BlockInputStream reads no dependent blocks).
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())?;
            encoder.write_all(plain)?;
            let (out, finished) = encoder.finish();
            finished.map(|_| out)
        }
        // snappy-java's framing, as Kafka clients write it: the header, then blocks of
        // `u32 compressed length | raw snappy block` of at most 32 KiB of input each.
        Compression::Snappy => {
            let mut out = super::records::XERIAL_HEADER.to_vec();
            let mut encoder = snap::raw::Encoder::new();
            for block in plain.chunks(32 << 10) {
                let compressed = encoder.compress_vec(block).map_err(std::io::Error::other)?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
    }
}

/// Finds `declared` records in a decompressed payload.
fn locate(payload: &[u8], declared: i32) -> Result<Vec<RecordSlot>, RecordsError> {
    let malformed = |reason: String| RecordsError::Records { reason };
    let mut records = Vec::with_capacity(declared.clamp(0, 1 << 16) as usize);
    let mut at = 0usize;
    while at < payload.len() {
        let start = at;
        let length = varint(payload, &mut at)?;
        let end = usize::try_from(length).ok().and_then(|length| at.checked_add(length)).filter(|end| *end <= payload.len());
        let Some(end) = end else { return Err(malformed(format!("record {} declares {length} bytes past the payload", records.len()))) };
        at += 1; // attributes
        let timestamp_delta = varint(payload, &mut at)?;
        let offset_delta = i32::try_from(varint(payload, &mut at)?).map_err(|_| malformed("offset delta out of range".to_string()))?;
        let key = field(payload, &mut at, end)?;
        let value = field(payload, &mut at, end)?;
        records.push(RecordSlot { bytes: start..end, offset_delta, timestamp_delta, key, is_tombstone: value.is_none() });
        at = end;
    }
    if records.len() != declared.max(0) as usize {
        return Err(RecordsError::MissingRecords { declared, found: records.len() as i32 });
    }
    Ok(records)
}

/// A nullable length-prefixed field ending no later than `end`.
fn field(payload: &[u8], at: &mut usize, end: usize) -> Result<Option<Range<usize>>, RecordsError> {
    let length = varint(payload, at)?;
    if length == -1 {
        return Ok(None);
    }
    let range = usize::try_from(length).ok().and_then(|length| Some(*at..at.checked_add(length)?)).filter(|range| range.end <= end);
    let range = range.ok_or_else(|| RecordsError::Records { reason: format!("a key or value of {length} bytes runs past its record") })?;
    *at = range.end;
    Ok(Some(range))
}

/// A zigzag varint (up to 64 bits).
fn varint(payload: &[u8], at: &mut usize) -> Result<i64, RecordsError> {
    let mut raw = 0u64;
    for shift in 0..10 {
        let byte = *payload.get(*at).ok_or_else(|| RecordsError::Records { reason: "a varint runs past the payload".to_string() })?;
        *at += 1;
        raw |= u64::from(byte & 0x7f) << (7 * shift);
        if byte & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(RecordsError::Records { reason: "a varint is longer than ten bytes".to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::records::tests::{record, ALL};
    use crate::protocol::records::{decode_batch, MAX_DECODED_BATCH_BYTES};
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};

    /// (offset, sequence, key, value, timestamp) of a decoded record.
    type Summary = (i64, i32, Option<Bytes>, Option<Bytes>, i64);

    fn keyed(index: usize, key: &str, value: Option<&str>) -> Record {
        Record {
            key: Some(Bytes::from(key.to_string())),
            value: value.map(|value| Bytes::from(value.to_string())),
            producer_id: 7,
            producer_epoch: 2,
            sequence: 100 + index as i32,
            timestamp: 1_700_000_000_000 + index as i64,
            ..record(index, Bytes::new())
        }
    }

    #[test]
    fn a_rewritten_batch_keeps_offsets_sequences_and_the_kept_records_in_every_codec() {
        for compression in ALL {
            let records = [keyed(0, "a", Some("1")), keyed(1, "b", Some("2")), keyed(2, "a", None), keyed(3, "c", Some("4"))];
            let mut buffer = BytesMut::new();
            RecordBatchEncoder::encode(&mut buffer, &records, &RecordEncodeOptions { version: 2, compression }).expect("encode");
            let original = buffer.freeze();
            let read = read_records(&original, MAX_DECODED_BATCH_BYTES).unwrap();
            assert_eq!(read.records.len(), 4, "{compression:?}");
            assert_eq!(read.key(&read.records[2]), Some(&b"a"[..]));
            assert!(read.records[2].is_tombstone && !read.records[0].is_tombstone);
            assert_eq!(read.base_timestamp + read.records[3].timestamp_delta, 1_700_000_000_003);
            let rewritten = rewrite_keeping(&original, &read, &[false, true, true, false]).unwrap().expect("two records kept");
            crate::protocol::batch::validate_produced(&rewritten, usize::MAX)
                .expect_err("a rewritten batch has gaps, which a producer may not send");
            let decoded = decode_batch(&rewritten, MAX_DECODED_BATCH_BYTES).unwrap_or_else(|error| panic!("{compression:?}: {error}"));
            let summary: Vec<Summary> = decoded
                .iter()
                .map(|record| (record.offset, record.sequence, record.key.clone(), record.value.clone(), record.timestamp))
                .collect();
            assert_eq!(
                summary,
                vec![
                    (1, 101, Some(Bytes::from("b")), Some(Bytes::from("2")), 1_700_000_000_001),
                    (2, 102, Some(Bytes::from("a")), None, 1_700_000_000_002),
                ],
                "{compression:?}"
            );
            let walked: Vec<_> = crate::protocol::batch::walk(&rewritten).collect();
            assert_eq!((walked.len(), walked[0].base_offset, walked[0].last_offset_delta), (1, 0, 3), "the offset span is kept");
            assert_eq!(decoded[0].producer_id, 7);
            assert_eq!(rewrite_keeping(&original, &read, &[false; 4]).unwrap(), None);
            assert_eq!(rewrite_keeping(&original, &read, &[true; 4]).unwrap().as_deref(), Some(&original[..]));
        }
    }

    #[test]
    fn a_payload_that_lies_about_its_records_is_an_error_not_a_panic() {
        let mut buffer = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buffer,
            &[keyed(0, "a", Some("1"))],
            &RecordEncodeOptions { version: 2, compression: Compression::None },
        )
        .expect("encode");
        let mut damaged = buffer.to_vec();
        damaged[HEADER_BYTES] = 0x7e; // the record's length: 63 bytes, past the payload
        assert!(read_records(&damaged, 1 << 20).is_err());
        let mut short = buffer.to_vec();
        short[RECORD_COUNT_AT + 3] = 2;
        assert!(matches!(read_records(&short, 1 << 20), Err(RecordsError::MissingRecords { declared: 2, found: 1 })));
        for cut in 0..buffer.len() {
            let _ = read_records(&buffer[..cut], 1 << 20);
        }
    }
}
