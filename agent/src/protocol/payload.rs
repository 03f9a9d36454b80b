//! The produce path's payload check, as Kafka's broker makes it before it appends
//! (`LogValidator` reading each record with `DefaultRecord.readFrom`): a batch's payload must hold
//! exactly its declared number of well-formed v2 records. Without it a client bug or a hostile
//! client (a valid CRC over a broken payload) would be acknowledged and then break every reader.
//!
//! Every record is parsed field by field, never copied: length prefix, attributes, timestamp
//! delta, offset delta (which must equal the record's index, since batches are stored as sent and
//! never rebuilt), key, value, header count, header keys and values. Every length must fit inside
//! the record, the fields must fill it exactly, the record must be at least
//! `MIN_RECORD_BYTES` long, and nothing may follow the last declared record. A batch whose count
//! could not fit in its budget at the minimum record size is refused before anything is inflated.
//!
//! A compressed payload streams through one scratch buffer per thread and is checked as it comes
//! out, never collected, so a batch costs its decompression and nothing else: no allocation in
//! proportion to its size, no zeroing, no copy. Decompression stops at the first violation, at the
//! first byte after the declared records, and at the batch's and the request's budgets of
//! decompressed bytes, so a compression bomb is never inflated past what its records need.
//!
//! LZ4 frames are parsed here, block by block, rather than through liblz4's streaming decoder,
//! which copies input into buffers of its own and zeroes them for every batch. The checks are the
//! ones Kafka's own reader (`KafkaLZ4BlockInputStream`) and liblz4 make: magic, version, block
//! independence, reserved bits, header checksum, block size, block and content checksums, content
//! size.

use super::records::{RecordViolation, RecordsError, XERIAL_HEADER};
use flate2::read::MultiGzDecoder;
use kafka_protocol::records::Compression;
use std::cell::RefCell;
use std::hash::Hasher;
use std::io::Read;
use twox_hash::XxHash32;

use super::layout::{HEADER_BYTES as RECORDS_AT, RECORD_COUNT_AT};

/// The smallest record body: attributes, timestamp delta, offset delta, key length, value length
/// and header count, one byte each (a null key and value, no headers).
pub const MIN_RECORD_BODY_BYTES: usize = 6;
/// The smallest record, with its one-byte length prefix.
pub const MIN_RECORD_BYTES: usize = MIN_RECORD_BODY_BYTES + 1;

/// How much a streaming decompressor (gzip, zstd) hands over at a time.
const READ_CHUNK: usize = 64 << 10;
/// Scratch a thread keeps between batches: enough for the largest LZ4 block (4 MiB). A larger
/// snappy block borrows more for one batch and gives it back.
const SCRATCH_KEPT: usize = 4 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Checks that a produced batch's payload decompresses (under `limit` bytes) to exactly its
/// declared number of well-formed records. `batch` is one magic-v2 batch whose header `batch.rs`
/// has already validated (CRC included).
pub fn check_payload(batch: &[u8], limit: usize) -> Result<(), RecordsError> {
    check_payload_within(batch, limit, usize::MAX, false).1
}

/// `check_payload` that also stops once the payload decompresses to more than `request_left`
/// bytes (what is left of the request's budget; `RequestBudgetSpent`). Returns the number of
/// bytes it inflated, refused or not (0 for an uncompressed batch, which costs no inflation), with
/// the verdict. With `keys_required` (a compacted topic) a record without a key is refused.
///
/// # Guarantees
/// Inflates at most `min(limit, request_left)` bytes plus one decompressor chunk, and allocates
/// nothing in proportion to the batch beyond the per-thread scratch buffer.
pub fn check_payload_within(batch: &[u8], limit: usize, request_left: usize, keys_required: bool) -> (usize, Result<(), RecordsError>) {
    let mut output =
        Output { validator: RecordValidator::new(0), produced: 0, limit, request_left, compression: Compression::None, keys_required };
    let verdict = check_into(batch, &mut output);
    (output.produced, verdict)
}

fn check_into(batch: &[u8], output: &mut Output) -> Result<(), RecordsError> {
    let limit = output.limit;
    if batch.len() < RECORDS_AT {
        return Err(RecordsError::Header { reason: format!("{} bytes is shorter than a batch header", batch.len()) });
    }
    let count = i32::from_be_bytes(batch[RECORD_COUNT_AT..RECORDS_AT].try_into().expect("4 bytes"));
    let payload = &batch[RECORDS_AT..];
    let compression = super::records::compression_of(batch)?;
    // Every record takes at least MIN_RECORD_BYTES: a count the bytes could never hold (the
    // poison pill of 60,000,000 empty records in 2 KB of zstd) is refused before any inflation.
    let room = if compression == Compression::None { payload.len() } else { limit };
    if count < 0 || (count as usize).saturating_mul(MIN_RECORD_BYTES) > room {
        return Err(RecordsError::CountPastBytes { count, bytes: room });
    }
    output.validator = RecordValidator::new(count).requiring_keys(output.keys_required);
    output.compression = compression;
    match compression {
        Compression::None => output.validator.feed(payload)?,
        Compression::Gzip => with_scratch(|scratch| walk_reader(MultiGzDecoder::new(payload), output, scratch))?,
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(|error| output.failed(error.to_string()))?;
            with_scratch(|scratch| walk_reader(decoder, output, scratch))?
        }
        Compression::Lz4 => with_scratch(|scratch| walk_lz4_frame(payload, output, scratch))?,
        Compression::Snappy => with_scratch(|scratch| walk_snappy(payload, output, scratch))?,
    }
    std::mem::replace(&mut output.validator, RecordValidator::new(0)).finish()
}

/// Runs `check` with this thread's scratch buffer.
fn with_scratch<T>(check: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => {
            let result = check(&mut scratch);
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
            result
        }
        // Not reachable (checks do not nest), but a fresh buffer is a safe answer if it were.
        Err(_) => check(&mut Vec::new()),
    })
}

/// Decompressed bytes on their way to the validator, counted against the budgets.
struct Output {
    validator: RecordValidator,
    produced: usize,
    limit: usize,
    request_left: usize,
    compression: Compression,
    keys_required: bool,
}

impl Output {
    fn take(&mut self, data: &[u8]) -> Result<(), RecordsError> {
        self.produced += data.len();
        self.fits(0)?;
        self.validator.feed(data)
    }

    /// Whether `more` bytes would still fit the budgets: checked before a buffer is sized for them.
    fn fits(&self, more: usize) -> Result<(), RecordsError> {
        let total = self.produced.saturating_add(more);
        if total > self.limit {
            return Err(RecordsError::DecompressedTooLarge { compression: self.compression, limit: self.limit });
        }
        if total > self.request_left {
            return Err(RecordsError::RequestBudgetSpent { compression: self.compression, budget: self.request_left });
        }
        Ok(())
    }

    fn failed(&self, reason: String) -> RecordsError {
        RecordsError::Decompress { compression: self.compression, reason }
    }
}

/// The part of a record the validator reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Length,
    Attributes,
    TimestampDelta,
    OffsetDelta,
    KeyLength,
    ValueLength,
    HeaderCount,
    HeaderKeyLength,
    HeaderValueLength,
    /// Every field is read (the last length's bytes may still be being skipped).
    End,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Length => "length",
            Field::Attributes => "attributes",
            Field::TimestampDelta => "timestamp delta",
            Field::OffsetDelta => "offset delta",
            Field::KeyLength => "key length",
            Field::ValueLength => "value length",
            Field::HeaderCount => "header count",
            Field::HeaderKeyLength => "header key length",
            Field::HeaderValueLength => "header value length",
            Field::End => "last field",
        }
    }

    /// Longest varint the field may take: 10 bytes for the 64-bit timestamp delta, 5 otherwise.
    fn max_varint_bytes(self) -> u32 {
        if self == Field::TimestampDelta {
            10
        } else {
            5
        }
    }
}

/// Validates records field by field across arbitrary chunk boundaries: `declared` records must
/// fill the payload exactly. Holds a few integers of state, whatever the record sizes; key, value
/// and header bytes are skipped, never copied.
pub(crate) struct RecordValidator {
    declared: i32,
    /// Index of the record being read; records before it are complete.
    index: i32,
    field: Field,
    /// Key, value or header bytes still to pass before `field` is read.
    skip: usize,
    /// Bytes of the current record's body not yet read or skipped.
    body_left: usize,
    headers_left: i32,
    /// The varint being read, as far as it has come.
    varint: u64,
    varint_bytes: u32,
    /// A null key is a violation (records of a compacted topic).
    keys_required: bool,
}

impl RecordValidator {
    pub(crate) fn new(declared: i32) -> Self {
        Self {
            declared,
            index: 0,
            field: Field::Length,
            skip: 0,
            body_left: 0,
            headers_left: 0,
            varint: 0,
            varint_bytes: 0,
            keys_required: false,
        }
    }

    pub(crate) fn requiring_keys(self, keys_required: bool) -> Self {
        Self { keys_required, ..self }
    }

    fn violation(&self, violation: RecordViolation) -> RecordsError {
        RecordsError::InvalidRecord { index: self.index, declared: self.declared, violation }
    }

    /// Reads varint bytes of the current field from `data` (at most `data.len()`): the raw value
    /// once its last byte is read, with the number of bytes used.
    #[inline]
    fn take_varint(&mut self, data: &[u8]) -> Result<(usize, Option<u64>), RecordsError> {
        let max = self.field.max_varint_bytes();
        for (used, &byte) in data.iter().enumerate() {
            self.varint |= u64::from(byte & 0x7f) << (7 * self.varint_bytes);
            self.varint_bytes += 1;
            if byte & 0x80 == 0 {
                let raw = self.varint;
                self.varint = 0;
                self.varint_bytes = 0;
                return Ok((used + 1, Some(raw)));
            }
            if self.varint_bytes == max {
                return Err(self.violation(RecordViolation::VarintTooLong { field: self.field.name() }));
            }
        }
        Ok((data.len(), None))
    }

    /// A zigzag int32, as Kafka's `ByteUtils.readVarint` reads it; more than 32 bits is malformed.
    fn zigzag_i32(&self, raw: u64) -> Result<i32, RecordsError> {
        let raw = u32::try_from(raw).map_err(|_| self.violation(RecordViolation::VarintTooLong { field: self.field.name() }))?;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A key, value or header length: -1 (null, where allowed) or a length that fits the record.
    fn length(&mut self, raw: u64, nullable: bool) -> Result<(), RecordsError> {
        let field = self.field.name();
        let length = self.zigzag_i32(raw)?;
        if length < 0 {
            if length == -1 && nullable {
                return Ok(());
            }
            return Err(self.violation(RecordViolation::InvalidLength { field, length }));
        }
        if length as usize > self.body_left {
            return Err(self.violation(RecordViolation::LengthPastEnd { field, length, left: self.body_left }));
        }
        self.body_left -= length as usize;
        self.skip = length as usize;
        Ok(())
    }

    pub(crate) fn feed(&mut self, mut data: &[u8]) -> Result<(), RecordsError> {
        loop {
            if self.skip > 0 {
                let skipped = self.skip.min(data.len());
                data = &data[skipped..];
                self.skip -= skipped;
                if self.skip > 0 {
                    return Ok(());
                }
            }
            if self.field == Field::End {
                if self.body_left > 0 {
                    return Err(self.violation(RecordViolation::BytesAfterHeaders { left: self.body_left }));
                }
                self.index += 1;
                self.field = Field::Length;
            }
            if data.is_empty() {
                return Ok(());
            }
            if self.field == Field::Length {
                if self.index >= self.declared {
                    return Err(RecordsError::TrailingBytes { declared: self.declared });
                }
                let (used, raw) = self.take_varint(data)?;
                data = &data[used..];
                let Some(raw) = raw else { return Ok(()) };
                let length = self.zigzag_i32(raw)?;
                if length < MIN_RECORD_BODY_BYTES as i32 {
                    return Err(self.violation(RecordViolation::ShorterThanMinimum { length: length.into() }));
                }
                self.body_left = length as usize;
                self.field = Field::Attributes;
                continue;
            }
            // Inside the body: a field never reads past the record's declared length.
            if self.body_left == 0 {
                return Err(self.violation(RecordViolation::EndsInside { field: self.field.name() }));
            }
            let visible = &data[..data.len().min(self.body_left)];
            if self.field == Field::Attributes {
                // Kafka reads and ignores a v2 record's attributes byte; so does the validator.
                data = &data[1..];
                self.body_left -= 1;
                self.field = Field::TimestampDelta;
                continue;
            }
            let (used, raw) = self.take_varint(visible)?;
            data = &data[used..];
            self.body_left -= used;
            let Some(raw) = raw else {
                if self.body_left == 0 {
                    return Err(self.violation(RecordViolation::EndsInside { field: self.field.name() }));
                }
                return Ok(());
            };
            self.field = match self.field {
                Field::TimestampDelta => Field::OffsetDelta,
                Field::OffsetDelta => {
                    let delta = self.zigzag_i32(raw)?;
                    if delta != self.index {
                        return Err(self.violation(RecordViolation::OffsetDelta { found: delta }));
                    }
                    Field::KeyLength
                }
                Field::KeyLength => {
                    if self.keys_required && self.zigzag_i32(raw)? == -1 {
                        return Err(self.violation(RecordViolation::MissingKey));
                    }
                    self.length(raw, true)?;
                    Field::ValueLength
                }
                Field::ValueLength => {
                    self.length(raw, true)?;
                    Field::HeaderCount
                }
                Field::HeaderCount => {
                    let count = self.zigzag_i32(raw)?;
                    // A header takes at least two bytes (its key and value lengths).
                    if count < 0 || count as usize > self.body_left / 2 {
                        return Err(self.violation(RecordViolation::TooManyHeaders { count, left: self.body_left }));
                    }
                    self.headers_left = count;
                    if count == 0 {
                        Field::End
                    } else {
                        Field::HeaderKeyLength
                    }
                }
                Field::HeaderKeyLength => {
                    self.length(raw, false)?;
                    Field::HeaderValueLength
                }
                Field::HeaderValueLength => {
                    self.length(raw, true)?;
                    self.headers_left -= 1;
                    if self.headers_left == 0 {
                        Field::End
                    } else {
                        Field::HeaderKeyLength
                    }
                }
                Field::Length | Field::Attributes | Field::End => unreachable!("handled above"),
            };
        }
    }

    pub(crate) fn finish(self) -> Result<(), RecordsError> {
        match self.field {
            Field::Length if self.varint_bytes == 0 => {
                if self.index < self.declared {
                    return Err(RecordsError::MissingRecords { declared: self.declared, found: self.index });
                }
                Ok(())
            }
            // `feed` completes a record as soon as its last byte is skipped, so a record still in
            // progress here was cut short.
            field => Err(self.violation(RecordViolation::CutShort { field: field.name() })),
        }
    }
}

/// A streaming decompressor, read a chunk at a time into the scratch buffer.
fn walk_reader(mut reader: impl Read, output: &mut Output, scratch: &mut Vec<u8>) -> Result<(), RecordsError> {
    if scratch.len() < READ_CHUNK {
        scratch.resize(READ_CHUNK, 0);
    }
    loop {
        match reader.read(&mut scratch[..READ_CHUNK]) {
            Ok(0) => return Ok(()),
            Ok(read) => output.take(&scratch[..read])?,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(output.failed(error.to_string())),
        }
    }
}

/// snappy-java's framing (what Kafka clients write): `XERIAL_HEADER`, then blocks of
/// `u32 compressed length | raw snappy block`. Without the header the payload is one raw block.
fn walk_snappy(payload: &[u8], output: &mut Output, scratch: &mut Vec<u8>) -> Result<(), RecordsError> {
    let Some(mut blocks) = payload.strip_prefix(XERIAL_HEADER.as_slice()) else {
        return walk_snappy_block(payload, output, scratch);
    };
    while !blocks.is_empty() {
        let Some((length, rest)) = blocks.split_first_chunk::<4>() else {
            return Err(output.failed(format!("{} bytes left where a block length was expected", blocks.len())));
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length > rest.len() {
            return Err(output.failed(format!("block of {length} bytes but only {} remain", rest.len())));
        }
        let (block, rest) = rest.split_at(length);
        walk_snappy_block(block, output, scratch)?;
        blocks = rest;
    }
    Ok(())
}

/// A raw snappy block states its decompressed length up front (up to 4 GiB): checked against the
/// budget before the scratch buffer grows for it.
fn walk_snappy_block(block: &[u8], output: &mut Output, scratch: &mut Vec<u8>) -> Result<(), RecordsError> {
    let length = snap::raw::decompress_len(block).map_err(|error| output.failed(error.to_string()))?;
    output.fits(length)?;
    if scratch.len() < length {
        scratch.resize(length, 0);
    }
    let written = snap::raw::Decoder::new().decompress(block, &mut scratch[..length]).map_err(|error| output.failed(error.to_string()))?;
    output.take(&scratch[..written])
}

/// LZ4 frame format 1.6 (lz4_Frame_format.md), as Kafka clients write it: independent blocks.
mod lz4_frame {
    pub const MAGIC: [u8; 4] = 0x184D_2204u32.to_le_bytes();
    pub const VERSION_MASK: u8 = 0b1100_0000;
    pub const VERSION_01: u8 = 0b0100_0000;
    pub const BLOCK_INDEPENDENCE: u8 = 0b0010_0000;
    pub const BLOCK_CHECKSUM: u8 = 0b0001_0000;
    pub const CONTENT_SIZE: u8 = 0b0000_1000;
    pub const CONTENT_CHECKSUM: u8 = 0b0000_0100;
    pub const RESERVED: u8 = 0b0000_0010;
    pub const DICTIONARY_ID: u8 = 0b0000_0001;
    /// In the BD byte, everything but the block-maximum-size bits is reserved.
    pub const BD_RESERVED: u8 = 0b1000_1111;
    /// A block size word with this bit set holds the block's bytes uncompressed.
    pub const STORED: u32 = 0x8000_0000;
}

fn walk_lz4_frame(payload: &[u8], output: &mut Output, scratch: &mut Vec<u8>) -> Result<(), RecordsError> {
    use lz4_frame::*;
    let invalid = |reason: &'static str| RecordsError::Lz4Frame { reason };
    let truncated = || invalid("is truncated");
    let Some((magic, rest)) = payload.split_first_chunk::<4>() else { return Err(truncated()) };
    if *magic != MAGIC {
        return Err(invalid("has no LZ4 frame magic number"));
    }
    let Some(&flags) = rest.first() else { return Err(truncated()) };
    if flags & VERSION_MASK != VERSION_01 {
        return Err(invalid("has an unsupported version"));
    }
    if flags & BLOCK_INDEPENDENCE == 0 {
        return Err(invalid("uses dependent blocks; Kafka clients read only frames of independent blocks (KafkaLZ4BlockInputStream)"));
    }
    if flags & RESERVED != 0 {
        return Err(invalid("sets a reserved flag bit"));
    }
    if flags & DICTIONARY_ID != 0 {
        return Err(invalid("names a dictionary, which Kafka clients cannot read"));
    }
    let Some(&descriptor) = rest.get(1) else { return Err(truncated()) };
    if descriptor & BD_RESERVED != 0 {
        return Err(invalid("sets a reserved bit of its block descriptor"));
    }
    let block_max = match descriptor >> 4 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Err(invalid("declares an invalid maximum block size")),
    };
    // FLG, BD, then the optional content size; the header checksum covers exactly those.
    let header_end = 4 + 2 + if flags & CONTENT_SIZE != 0 { 8 } else { 0 };
    let Some(&header_checksum) = payload.get(header_end) else { return Err(truncated()) };
    if (XxHash32::oneshot(0, &payload[4..header_end]) >> 8) as u8 != header_checksum {
        return Err(invalid("has a wrong header checksum"));
    }
    let content_size = (flags & CONTENT_SIZE != 0).then(|| u64::from_le_bytes(payload[6..14].try_into().expect("8 bytes")));
    let mut content_hash = (flags & CONTENT_CHECKSUM != 0).then(|| XxHash32::with_seed(0));
    if scratch.len() < block_max {
        scratch.resize(block_max, 0);
    }
    let mut rest = &payload[header_end + 1..];
    loop {
        let Some((word, after)) = rest.split_first_chunk::<4>() else { return Err(truncated()) };
        let word = u32::from_le_bytes(*word);
        rest = after;
        if word == 0 {
            break; // the end mark
        }
        let size = (word & !STORED) as usize;
        if size > block_max {
            return Err(invalid("has a block larger than its declared maximum"));
        }
        if size > rest.len() {
            return Err(truncated());
        }
        let (block, after) = rest.split_at(size);
        rest = after;
        if flags & BLOCK_CHECKSUM != 0 {
            let Some((checksum, after)) = rest.split_first_chunk::<4>() else { return Err(truncated()) };
            if XxHash32::oneshot(0, block) != u32::from_le_bytes(*checksum) {
                return Err(invalid("has a wrong block checksum"));
            }
            rest = after;
        }
        let data = if word & STORED != 0 {
            block
        } else {
            let written = lz4::block::decompress_to_buffer(block, Some(block_max as i32), &mut scratch[..block_max])
                .map_err(|error| output.failed(error.to_string()))?;
            &scratch[..written]
        };
        if let Some(hash) = content_hash.as_mut() {
            hash.write(data);
        }
        output.take(data)?;
    }
    if let Some(hash) = content_hash {
        let Some((checksum, _)) = rest.split_first_chunk::<4>() else { return Err(truncated()) };
        if hash.finish_32() != u32::from_le_bytes(*checksum) {
            return Err(invalid("has a wrong content checksum"));
        }
    }
    if content_size.is_some_and(|size| size != output.produced as u64) {
        return Err(invalid("holds a different number of bytes than its header declares"));
    }
    // Bytes after the frame are ignored, as by Kafka's reader and liblz4's.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::tests::encoded_batch;
    use crate::protocol::layout::ATTRIBUTES_AT;

    /// The attribute bits that name the codec.
    const COMPRESSION_MASK: i16 = 0x07;
    use crate::protocol::records::tests::{record, zeros_batch, ALL};
    use crate::protocol::records::{decode_batch, MAX_DECODED_BATCH_BYTES};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions};
    use std::io::Write;

    /// `count` records of `value_bytes` pseudo-random bytes each (they compress, but not to nothing).
    fn batch_of(count: usize, value_bytes: usize, compression: Compression) -> Bytes {
        let mut state = 0x2545_f491_u32;
        let records: Vec<Record> = (0..count)
            .map(|index| {
                let value = (0..value_bytes)
                    .map(|_| {
                        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        b"abcdefgh"[(state >> 16) as usize % 8]
                    })
                    .collect::<Vec<u8>>();
                record(index, Bytes::from(value))
            })
            .collect();
        let mut buffer = BytesMut::new();
        RecordBatchEncoder::encode(&mut buffer, &records, &RecordEncodeOptions { version: 2, compression }).expect("encode");
        buffer.freeze()
    }

    /// The records part of an uncompressed batch, and the batch header to put before a payload.
    fn records_and_header(count: usize, value_bytes: usize) -> (Vec<u8>, Vec<u8>) {
        let plain = batch_of(count, value_bytes, Compression::None);
        (plain[RECORDS_AT..].to_vec(), plain[..RECORDS_AT].to_vec())
    }

    /// A batch whose payload is `payload` with the given codec bits (header CRC not recomputed:
    /// this module does not read it).
    fn with_payload(header: &[u8], codec: i16, payload: &[u8]) -> Vec<u8> {
        let mut batch = header.to_vec();
        let attributes = (i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]) & !COMPRESSION_MASK) | codec;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        batch.extend_from_slice(payload);
        batch
    }

    /// An LZ4 frame written by liblz4 with the given options.
    fn lz4_frame(data: &[u8], block_checksum: bool, content_checksum: bool) -> Vec<u8> {
        let mut encoder = lz4::EncoderBuilder::new()
            .block_size(lz4::BlockSize::Max64KB)
            .block_mode(lz4::BlockMode::Independent)
            .block_checksum(if block_checksum {
                lz4::liblz4::BlockChecksum::BlockChecksumEnabled
            } else {
                lz4::liblz4::BlockChecksum::NoBlockChecksum
            })
            .checksum(if content_checksum { lz4::ContentChecksum::ChecksumEnabled } else { lz4::ContentChecksum::NoChecksum })
            .build(Vec::new())
            .expect("encoder");
        encoder.write_all(data).expect("compress");
        let (frame, result) = encoder.finish();
        result.expect("finish");
        frame
    }

    #[test]
    fn every_codec_passes_small_and_multi_block_batches() {
        for compression in ALL {
            check_payload(&encoded_batch(7, compression), MAX_DECODED_BATCH_BYTES)
                .unwrap_or_else(|error| panic!("{compression:?}: {error}"));
            // 300 KiB of records: several LZ4 blocks and gzip/zstd chunks, records straddling them.
            let big = batch_of(300, 1021, compression);
            check_payload(&big, MAX_DECODED_BATCH_BYTES).unwrap_or_else(|error| panic!("{compression:?} (big): {error}"));
            assert_eq!(decode_batch(&big, MAX_DECODED_BATCH_BYTES).unwrap().len(), 300, "{compression:?}");
        }
    }

    #[test]
    fn the_check_is_the_same_whatever_the_chunk_boundaries() {
        let plain = encoded_batch(5, Compression::None);
        let records = &plain[RECORDS_AT..];
        for split in 0..records.len() {
            for second in [split, (split + 1).min(records.len()), (split + 7).min(records.len())] {
                let mut validator = RecordValidator::new(5);
                validator.feed(&records[..split]).unwrap();
                validator.feed(&records[split..second]).unwrap();
                validator.feed(&records[second..]).unwrap();
                validator.finish().unwrap_or_else(|error| panic!("split at {split}/{second}: {error}"));
            }
        }
    }

    /// One v2 record, written field by field from raw varints, so any field can be made wrong.
    struct RawRecord {
        length: Option<i64>,
        attributes: u8,
        timestamp_delta: i64,
        offset_delta: i64,
        key: Option<Vec<u8>>,
        key_length: Option<i64>,
        value: Option<Vec<u8>>,
        header_count: Option<i64>,
        headers: Vec<(i64, Vec<u8>, i64, Vec<u8>)>,
        extra: Vec<u8>,
    }

    fn zigzag(value: i64, out: &mut Vec<u8>) {
        let mut raw = ((value << 1) ^ (value >> 63)) as u64;
        while raw >= 0x80 {
            out.push((raw as u8) | 0x80);
            raw >>= 7;
        }
        out.push(raw as u8);
    }

    impl RawRecord {
        fn valid(index: i64) -> Self {
            RawRecord {
                length: None,
                attributes: 0,
                timestamp_delta: index,
                offset_delta: index,
                key: Some(b"key".to_vec()),
                key_length: None,
                value: Some(b"value".to_vec()),
                header_count: None,
                headers: vec![(1, b"h".to_vec(), 2, b"hv".to_vec())],
                extra: Vec::new(),
            }
        }

        fn bytes(&self) -> Vec<u8> {
            let mut body = vec![self.attributes];
            zigzag(self.timestamp_delta, &mut body);
            zigzag(self.offset_delta, &mut body);
            zigzag(self.key_length.unwrap_or(self.key.as_ref().map_or(-1, |key| key.len() as i64)), &mut body);
            body.extend_from_slice(self.key.as_deref().unwrap_or_default());
            zigzag(self.value.as_ref().map_or(-1, |value| value.len() as i64), &mut body);
            body.extend_from_slice(self.value.as_deref().unwrap_or_default());
            zigzag(self.header_count.unwrap_or(self.headers.len() as i64), &mut body);
            for (key_length, key, value_length, value) in &self.headers {
                zigzag(*key_length, &mut body);
                body.extend_from_slice(key);
                zigzag(*value_length, &mut body);
                body.extend_from_slice(value);
            }
            body.extend_from_slice(&self.extra);
            let mut record = Vec::new();
            zigzag(self.length.unwrap_or(body.len() as i64), &mut record);
            record.extend_from_slice(&body);
            record
        }
    }

    /// Checks `records` (declaring `declared`) uncompressed and through every codec, and expects
    /// the same verdict from each, and from the plain reference reader.
    fn check_everywhere(records: &[u8], declared: i32) -> Result<(), RecordsError> {
        let (_, header) = records_and_header(1, 1);
        let mut plain = with_payload(&header, 0, records);
        plain[RECORD_COUNT_AT..RECORDS_AT].copy_from_slice(&declared.to_be_bytes());
        let verdict = check_payload(&plain, MAX_DECODED_BATCH_BYTES);
        assert_eq!(verdict.is_ok(), crate::fuzzing::records_are_well_formed(records, declared), "reference disagrees: {verdict:?}");
        for compression in ALL.into_iter().skip(1) {
            let mut compressed = header.clone();
            compressed[RECORD_COUNT_AT..RECORDS_AT].copy_from_slice(&declared.to_be_bytes());
            let payload = compress(records, compression);
            let batch = with_payload(&compressed, compression as i16, &payload);
            assert_eq!(check_payload(&batch, MAX_DECODED_BATCH_BYTES), verdict, "{compression:?}");
        }
        verdict
    }

    /// `data` compressed as a Kafka client would compress a batch payload.
    fn compress(data: &[u8], compression: Compression) -> Vec<u8> {
        match compression {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            Compression::Snappy => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            Compression::Lz4 => lz4_frame(data, false, false),
            Compression::Zstd => zstd::bulk::compress(data, 1).unwrap(),
        }
    }

    fn records(list: &[RawRecord]) -> Vec<u8> {
        list.iter().flat_map(RawRecord::bytes).collect()
    }

    fn violation(result: Result<(), RecordsError>) -> RecordViolation {
        match result {
            Err(RecordsError::InvalidRecord { violation, .. }) => violation,
            other => panic!("expected a record violation, got {other:?}"),
        }
    }

    #[test]
    fn hand_built_valid_records_pass_with_null_keys_values_and_headers() {
        let mut second = RawRecord::valid(1);
        second.key = None;
        second.value = None;
        second.headers = vec![(0, vec![], -1, vec![]), (3, b"abc".to_vec(), 0, vec![])];
        let mut third = RawRecord::valid(2);
        third.headers.clear();
        third.timestamp_delta = -5_000_000_000;
        third.attributes = 0xff;
        check_everywhere(&records(&[RawRecord::valid(0), second, third]), 3).unwrap();
        // The smallest record: 7 bytes.
        let mut smallest = RawRecord::valid(0);
        smallest.key = None;
        smallest.value = None;
        smallest.headers.clear();
        assert_eq!(smallest.bytes().len(), MIN_RECORD_BYTES);
        check_everywhere(&smallest.bytes(), 1).unwrap();
    }

    #[test]
    fn every_record_rule_is_enforced_for_every_codec() {
        let with = |change: &dyn Fn(&mut RawRecord)| {
            let mut broken = RawRecord::valid(1);
            change(&mut broken);
            check_everywhere(&records(&[RawRecord::valid(0), broken, RawRecord::valid(2)]), 3)
        };
        // The offset delta must be the record's index.
        assert_eq!(violation(with(&|record| record.offset_delta = 0)), RecordViolation::OffsetDelta { found: 0 });
        assert_eq!(violation(with(&|record| record.offset_delta = 7)), RecordViolation::OffsetDelta { found: 7 });
        // A body below the minimum size, zero-length and negative lengths.
        for length in [0, 5, -1, -7] {
            assert!(matches!(violation(with(&|record| record.length = Some(length))), RecordViolation::ShorterThanMinimum { .. }));
        }
        // A declared length shorter than the fields: a field (or a key) runs past the record.
        let short = RawRecord::valid(1).bytes().len() as i64 - 3;
        assert!(matches!(
            violation(with(&|record| record.length = Some(short))),
            RecordViolation::EndsInside { .. } | RecordViolation::LengthPastEnd { .. }
        ));
        // Longer than the fields: bytes after the last header.
        assert_eq!(violation(with(&|record| record.extra = vec![0, 0])), RecordViolation::BytesAfterHeaders { left: 2 });
        // Key, value and header lengths past the record, or negative where not allowed.
        assert!(matches!(
            violation(with(&|record| record.key_length = Some(1000))),
            RecordViolation::LengthPastEnd { field: "key length", .. }
        ));
        assert!(matches!(violation(with(&|record| record.key_length = Some(-2))), RecordViolation::InvalidLength { length: -2, .. }));
        assert!(matches!(
            violation(with(&|record| record.headers[0].0 = -1)),
            RecordViolation::InvalidLength { field: "header key length", length: -1 }
        ));
        assert!(matches!(
            violation(with(&|record| record.headers[0].2 = 500)),
            RecordViolation::LengthPastEnd { field: "header value length", .. }
        ));
        // Header counts: negative, more than the bytes left could hold, one more than present.
        assert!(matches!(violation(with(&|record| record.header_count = Some(-1))), RecordViolation::TooManyHeaders { .. }));
        assert!(matches!(violation(with(&|record| record.header_count = Some(1_000_000))), RecordViolation::TooManyHeaders { .. }));
        assert!(matches!(
            violation(with(&|record| {
                record.header_count = Some(2);
                record.extra = vec![0, 0, 0];
            })),
            RecordViolation::BytesAfterHeaders { .. } | RecordViolation::InvalidLength { .. } | RecordViolation::EndsInside { .. }
        ));
        // Varints longer than the format allows: an offset delta of 6 bytes, a timestamp of 11.
        let mut long_varint = RawRecord::valid(0).bytes();
        long_varint.splice(3..4, [0x82, 0x80, 0x80, 0x80, 0x80, 0x00]);
        long_varint[0] += 10; // the length grows with the five extra bytes (zigzag: 2 per byte)
        assert!(matches!(violation(check_everywhere(&long_varint, 1)), RecordViolation::VarintTooLong { .. }));
        let mut long_timestamp = RawRecord::valid(0).bytes();
        long_timestamp.splice(2..3, [0x80; 10].into_iter().chain([0x00]));
        long_timestamp[0] += 20;
        assert!(matches!(violation(check_everywhere(&long_timestamp, 1)), RecordViolation::VarintTooLong { field: "timestamp delta" }));
    }

    #[test]
    fn the_declared_count_must_match_exactly_with_nothing_after() {
        let three = records(&[RawRecord::valid(0), RawRecord::valid(1), RawRecord::valid(2)]);
        check_everywhere(&three, 3).unwrap();
        assert_eq!(check_everywhere(&three, 4), Err(RecordsError::MissingRecords { declared: 4, found: 3 }));
        assert_eq!(check_everywhere(&three, 2), Err(RecordsError::TrailingBytes { declared: 2 }));
        assert_eq!(check_everywhere(&[three.as_slice(), &[0]].concat(), 3), Err(RecordsError::TrailingBytes { declared: 3 }));
        assert!(matches!(check_everywhere(&three[..three.len() - 1], 3), Err(RecordsError::InvalidRecord { index: 2, .. })));
        let cut = &RawRecord::valid(0).bytes()[..8];
        assert!(matches!(check_everywhere(cut, 1), Err(RecordsError::InvalidRecord { violation: RecordViolation::CutShort { .. }, .. })));
    }

    /// The audit's poison pill: 60,000,000 zero-length records in a few KB of zstd. Refused from
    /// the header alone, before anything is inflated; with a smaller count, at the first record.
    #[test]
    fn the_poison_pill_of_empty_records_is_refused_before_inflating() {
        let (_, header) = records_and_header(1, 1);
        let zeros = vec![0u8; 60_000_000];
        let payload = zstd::bulk::compress(&zeros, 19).unwrap();
        assert!(payload.len() < 4 << 10, "{} bytes", payload.len());
        let mut pill = with_payload(&header, 4, &payload);
        pill[RECORD_COUNT_AT..RECORDS_AT].copy_from_slice(&60_000_000i32.to_be_bytes());
        let (inflated, verdict) = check_payload_within(&pill, MAX_DECODED_BATCH_BYTES, usize::MAX, false);
        assert!(matches!(verdict, Err(RecordsError::CountPastBytes { count: 60_000_000, .. })), "{verdict:?}");
        assert_eq!(inflated, 0);
        pill[RECORD_COUNT_AT..RECORDS_AT].copy_from_slice(&1_000_000i32.to_be_bytes());
        let (inflated, verdict) = check_payload_within(&pill, MAX_DECODED_BATCH_BYTES, usize::MAX, false);
        assert_eq!(violation(verdict), RecordViolation::ShorterThanMinimum { length: 0 });
        assert!(inflated <= READ_CHUNK, "inflated {inflated} bytes for a refusal at the first record");
    }

    #[test]
    fn decompression_stops_at_the_first_byte_after_the_declared_records() {
        // One valid record, then 32 MiB of zeros: the check must stop within a chunk or a block.
        let record = RawRecord::valid(0).bytes();
        let data = [record.as_slice(), &vec![0u8; 32 << 20]].concat();
        let (_, header) = records_and_header(1, 1);
        for compression in [Compression::Gzip, Compression::Zstd, Compression::Lz4] {
            let batch = with_payload(&header, compression as i16, &compress(&data, compression));
            let (inflated, verdict) = check_payload_within(&batch, MAX_DECODED_BATCH_BYTES, usize::MAX, false);
            assert_eq!(verdict, Err(RecordsError::TrailingBytes { declared: 1 }), "{compression:?}");
            assert!(inflated <= 4 << 20, "{compression:?} inflated {inflated} bytes");
        }
    }

    #[test]
    fn the_request_budget_stops_inflation_and_says_so() {
        for compression in ALL.into_iter().skip(1) {
            let zeros = zeros_batch(4 << 20, compression);
            let (inflated, verdict) = check_payload_within(&zeros, MAX_DECODED_BATCH_BYTES, 1 << 20, false);
            assert!(
                matches!(verdict, Err(RecordsError::RequestBudgetSpent { budget, .. }) if budget == 1 << 20),
                "{compression:?}: {verdict:?}"
            );
            assert!(inflated <= (1 << 20) + READ_CHUNK.max(64 << 10), "{compression:?}: {inflated}");
            let (inflated, verdict) = check_payload_within(&zeros, MAX_DECODED_BATCH_BYTES, 8 << 20, false);
            verdict.unwrap();
            assert!(inflated > 4 << 20, "{compression:?}: {inflated}");
        }
    }

    #[test]
    fn lz4_frames_with_checksums_pass_and_any_wrong_checksum_is_refused() {
        let (records, header) = records_and_header(200, 1000);
        for (block_checksum, content_checksum) in [(false, false), (true, false), (false, true), (true, true)] {
            let frame = lz4_frame(&records, block_checksum, content_checksum);
            let batch = with_payload(&header, 3, &frame);
            check_payload(&batch, MAX_DECODED_BATCH_BYTES).unwrap_or_else(|error| panic!("{block_checksum}/{content_checksum}: {error}"));
            // The header checksum, the first block's checksum and the content checksum.
            let mut wrong_header = frame.clone();
            wrong_header[6] ^= 1;
            assert!(matches!(
                check_payload(&with_payload(&header, 3, &wrong_header), MAX_DECODED_BATCH_BYTES),
                Err(RecordsError::Lz4Frame { reason: "has a wrong header checksum" })
            ));
            if block_checksum {
                let first_block = u32::from_le_bytes(frame[7..11].try_into().unwrap()) & !lz4_frame::STORED;
                let mut wrong_block = frame.clone();
                wrong_block[11 + first_block as usize] ^= 1;
                assert!(matches!(
                    check_payload(&with_payload(&header, 3, &wrong_block), MAX_DECODED_BATCH_BYTES),
                    Err(RecordsError::Lz4Frame { reason: "has a wrong block checksum" })
                ));
            }
            if content_checksum {
                let mut wrong_content = frame.clone();
                *wrong_content.last_mut().unwrap() ^= 1;
                assert!(matches!(
                    check_payload(&with_payload(&header, 3, &wrong_content), MAX_DECODED_BATCH_BYTES),
                    Err(RecordsError::Lz4Frame { reason: "has a wrong content checksum" })
                ));
            }
        }
    }

    #[test]
    fn hand_built_lz4_frames_stored_blocks_content_size_and_bad_headers() {
        let (records, header) = records_and_header(4, 50);
        // FLG: version 01, independent blocks, content size; BD: 64 KiB blocks.
        let frame = |flags: u8, descriptor: u8, content_size: Option<u64>, blocks: &[&[u8]]| {
            let mut frame = lz4_frame::MAGIC.to_vec();
            frame.push(flags);
            frame.push(descriptor);
            if let Some(size) = content_size {
                frame.extend_from_slice(&size.to_le_bytes());
            }
            frame.push((XxHash32::oneshot(0, &frame[4..]) >> 8) as u8);
            for block in blocks {
                frame.extend_from_slice(&(block.len() as u32 | lz4_frame::STORED).to_le_bytes());
                frame.extend_from_slice(block);
            }
            frame.extend_from_slice(&0u32.to_le_bytes());
            frame
        };
        let check = |frame: Vec<u8>| check_payload(&with_payload(&header, 3, &frame), MAX_DECODED_BATCH_BYTES);
        let (first, second) = records.split_at(77);
        check(frame(0x60, 0x40, None, &[first, second])).unwrap();
        check(frame(0x68, 0x40, Some(records.len() as u64), &[&records])).unwrap();
        assert!(
            matches!(check(frame(0x68, 0x40, Some(1), &[&records])), Err(RecordsError::Lz4Frame { reason }) if reason.contains("different number"))
        );
        assert!(
            matches!(check(frame(0x40, 0x40, None, &[&records])), Err(RecordsError::Lz4Frame { reason }) if reason.starts_with("uses dependent blocks"))
        );
        assert!(matches!(
            check(frame(0x61, 0x40, None, &[&records])),
            Err(RecordsError::Lz4Frame { reason: "names a dictionary, which Kafka clients cannot read" })
        ));
        assert!(matches!(check(frame(0x62, 0x40, None, &[&records])), Err(RecordsError::Lz4Frame { reason: "sets a reserved flag bit" })));
        assert!(matches!(
            check(frame(0x60, 0x41, None, &[&records])),
            Err(RecordsError::Lz4Frame { reason: "sets a reserved bit of its block descriptor" })
        ));
        assert!(matches!(
            check(frame(0x60, 0x30, None, &[&records])),
            Err(RecordsError::Lz4Frame { reason: "declares an invalid maximum block size" })
        ));
        assert!(matches!(
            check(frame(0xa0, 0x40, None, &[&records])),
            Err(RecordsError::Lz4Frame { reason: "has an unsupported version" })
        ));
        let mut no_end = frame(0x60, 0x40, None, &[&records]);
        no_end.truncate(no_end.len() - 4);
        assert!(matches!(check(no_end), Err(RecordsError::Lz4Frame { reason: "is truncated" })));
        let too_big = vec![0u8; (64 << 10) + 1];
        assert!(matches!(
            check(frame(0x60, 0x40, None, &[&too_big])),
            Err(RecordsError::Lz4Frame { reason: "has a block larger than its declared maximum" })
        ));
        let mut garbage = lz4_frame(&records, false, false);
        let end = garbage.len() - 4;
        garbage[11..end].fill(0xff);
        assert!(matches!(check(garbage), Err(RecordsError::Decompress { compression: Compression::Lz4, .. })));
    }

    /// The streaming check agrees with decompressing the whole payload (liblz4's frame decoder,
    /// flate2, zstd, snap) and walking it, on valid batches and on thousands of damaged ones.
    #[test]
    fn agrees_with_whole_payload_decompression_on_damaged_batches() {
        let mut state = 0x9e37_79b9_u32;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as usize % bound
        };
        for compression in ALL {
            let batch = batch_of(40, 300, compression).to_vec();
            for _ in 0..800 {
                let mut damaged = batch.clone();
                for _ in 0..1 + next(3) {
                    let at = RECORDS_AT + next(damaged.len() - RECORDS_AT);
                    damaged[at] ^= 1 << next(8);
                }
                let streaming = check_payload(&damaged, 1 << 20).is_ok();
                let whole = crate::protocol::records::tests::check_by_whole_decompression(&damaged, 1 << 20);
                assert_eq!(streaming, whole, "{compression:?}: streaming {streaming}, whole {whole}");
            }
        }
    }

    #[test]
    fn a_zip_bomb_is_refused_at_the_budget_for_every_codec() {
        for compression in ALL.into_iter().skip(1) {
            let bomb = batch_of(1, 0, compression);
            let zeros = zeros_batch(4 << 20, compression);
            check_payload(&bomb, 1 << 20).unwrap();
            assert!(zeros.len() < 300 << 10, "{compression:?} should compress zeros well");
            assert!(matches!(check_payload(&zeros, 1 << 20), Err(RecordsError::DecompressedTooLarge { .. })), "{compression:?}");
            check_payload(&zeros, 8 << 20).unwrap_or_else(|error| panic!("{compression:?}: {error}"));
        }
    }

    #[test]
    fn unknown_codecs_are_refused() {
        let mut unknown = encoded_batch(1, Compression::None).to_vec();
        unknown[22] |= 0x05;
        assert!(matches!(check_payload(&unknown, MAX_DECODED_BATCH_BYTES), Err(RecordsError::UnknownCompression { code: 5 })));
    }

    #[test]
    fn a_compacted_topic_refuses_a_record_without_a_key_in_every_codec() {
        for compression in ALL {
            let keyed = Record { key: Some(Bytes::from_static(b"k")), ..record(0, Bytes::from_static(b"v")) };
            let mut buffer = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buffer,
                [&keyed, &record(1, Bytes::from_static(b"no key"))],
                &RecordEncodeOptions { version: 2, compression },
            )
            .expect("encode");
            let mixed = buffer.freeze();
            assert_eq!(check_payload_within(&mixed, MAX_DECODED_BATCH_BYTES, usize::MAX, false).1, Ok(()), "{compression:?}");
            let verdict = check_payload_within(&mixed, MAX_DECODED_BATCH_BYTES, usize::MAX, true).1;
            assert_eq!(
                verdict,
                Err(RecordsError::InvalidRecord { index: 1, declared: 2, violation: RecordViolation::MissingKey }),
                "{compression:?}"
            );
        }
    }
}
