//! The produce path's payload check: a batch's payload must hold exactly its declared number of
//! well-framed records, as Kafka's broker checks before it appends (`LogValidator`). Without it a
//! client bug (a valid CRC over a broken payload) would be acknowledged and then break every reader.
//!
//! Records are not decoded: only their length prefixes are walked. A compressed payload streams
//! through one scratch buffer per thread and is walked as it comes out, never collected, so a batch
//! costs its decompression and nothing else: no allocation in proportion to its size, no zeroing,
//! no copy. (Collecting it cost a tenth of the agent's CPU on an lz4 produce load, in buffer growth,
//! copies and zeroing, and a few hundred MiB of resident memory the allocator kept.)
//!
//! LZ4 frames are parsed here, block by block, rather than through liblz4's streaming decoder,
//! which copies input into buffers of its own and zeroes them for every batch. The checks are the
//! ones Kafka's own reader (`KafkaLZ4BlockInputStream`) and liblz4 make: magic, version, block
//! independence, reserved bits, header checksum, block size, block and content checksums, content
//! size.

use super::records::{RecordsError, XERIAL_HEADER};
use flate2::read::MultiGzDecoder;
use kafka_protocol::records::Compression;
use std::cell::RefCell;
use std::hash::Hasher;
use std::io::Read;
use twox_hash::XxHash32;

use super::batch::{ATTRIBUTES_AT, HEADER_BYTES as RECORDS_AT, RECORD_COUNT_AT};

/// The attribute bits that name the codec.
const COMPRESSION_MASK: i16 = 0x07;

/// How much a streaming decompressor (gzip, zstd) hands over at a time.
const READ_CHUNK: usize = 64 << 10;
/// Scratch a thread keeps between batches: enough for the largest LZ4 block (4 MiB). A larger
/// snappy block borrows more for one batch and gives it back.
const SCRATCH_KEPT: usize = 4 << 20;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Checks that a produced batch's payload decompresses (under `limit` bytes) to exactly its
/// declared number of well-framed records. `batch` is one magic-v2 batch whose header `batch.rs`
/// has already validated (CRC included).
pub fn check_payload(batch: &[u8], limit: usize) -> Result<(), RecordsError> {
    if batch.len() < RECORDS_AT {
        return Err(RecordsError::Header { reason: format!("{} bytes is shorter than a batch header", batch.len()) });
    }
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES_AT], batch[ATTRIBUTES_AT + 1]]);
    let count = i32::from_be_bytes(batch[RECORD_COUNT_AT..RECORDS_AT].try_into().expect("4 bytes"));
    let payload = &batch[RECORDS_AT..];
    let compression = match attributes & COMPRESSION_MASK {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        code => return Err(RecordsError::UnknownCompression { code }),
    };
    let mut output = Output { walker: RecordWalker::new(count), produced: 0, limit, compression };
    match compression {
        Compression::None => output.walker.feed(payload)?,
        Compression::Gzip => with_scratch(|scratch| walk_reader(MultiGzDecoder::new(payload), &mut output, scratch))?,
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(payload).map_err(|error| output.failed(error.to_string()))?;
            with_scratch(|scratch| walk_reader(decoder, &mut output, scratch))?
        }
        Compression::Lz4 => with_scratch(|scratch| walk_lz4_frame(payload, &mut output, scratch))?,
        Compression::Snappy => with_scratch(|scratch| walk_snappy(payload, &mut output, scratch))?,
    }
    output.walker.finish()
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

/// Decompressed bytes on their way to the walker, counted against the budget.
struct Output {
    walker: RecordWalker,
    produced: usize,
    limit: usize,
    compression: Compression,
}

impl Output {
    fn take(&mut self, data: &[u8]) -> Result<(), RecordsError> {
        self.produced += data.len();
        if self.produced > self.limit {
            return Err(RecordsError::DecompressedTooLarge { compression: self.compression, limit: self.limit });
        }
        self.walker.feed(data)
    }

    /// Whether `more` bytes would still fit the budget: checked before a buffer is sized for them.
    fn fits(&self, more: usize) -> Result<(), RecordsError> {
        if more > self.limit - self.produced {
            return Err(RecordsError::DecompressedTooLarge { compression: self.compression, limit: self.limit });
        }
        Ok(())
    }

    fn failed(&self, reason: String) -> RecordsError {
        RecordsError::Decompress { compression: self.compression, reason }
    }
}

/// Walks records by their varint length prefixes across arbitrary chunk boundaries: `count`
/// records must fill the payload exactly.
struct RecordWalker {
    declared: i32,
    complete: i32,
    /// Body bytes of the current record still to pass, once its length is known.
    body_left: Option<usize>,
    /// The current record's length prefix, as far as it has been read.
    prefix: u64,
    prefix_bytes: u32,
    trailing: usize,
}

/// Kafka's record length is a zigzag varint of at most 5 bytes.
const MAX_PREFIX_BYTES: u32 = 5;

impl RecordWalker {
    fn new(declared: i32) -> Self {
        Self { declared, complete: 0, body_left: None, prefix: 0, prefix_bytes: 0, trailing: 0 }
    }

    fn feed(&mut self, mut data: &[u8]) -> Result<(), RecordsError> {
        loop {
            if let Some(left) = self.body_left {
                let skipped = left.min(data.len());
                data = &data[skipped..];
                if skipped < left {
                    self.body_left = Some(left - skipped);
                    return Ok(());
                }
                self.body_left = None;
                self.complete += 1;
            }
            let Some((&byte, rest)) = data.split_first() else { return Ok(()) };
            if self.complete >= self.declared {
                self.trailing += data.len();
                return Ok(());
            }
            data = rest;
            self.prefix |= u64::from(byte & 0x7f) << (7 * self.prefix_bytes);
            self.prefix_bytes += 1;
            if byte & 0x80 != 0 {
                if self.prefix_bytes == MAX_PREFIX_BYTES {
                    return Err(self.error(format!("record {} of {} has no length", self.complete, self.declared)));
                }
                continue;
            }
            let length = ((self.prefix >> 1) as i64) ^ -((self.prefix & 1) as i64);
            self.prefix = 0;
            self.prefix_bytes = 0;
            let length = usize::try_from(length)
                .map_err(|_| self.error(format!("record {} of {} declares {length} bytes", self.complete, self.declared)))?;
            self.body_left = Some(length);
        }
    }

    fn finish(self) -> Result<(), RecordsError> {
        if let Some(left) = self.body_left {
            return Err(self.error(format!("record {} of {} is {left} bytes short of its declared length", self.complete, self.declared)));
        }
        if self.complete < self.declared {
            return Err(self.error(format!("record {} of {} has no length", self.complete, self.declared)));
        }
        if self.trailing > 0 {
            return Err(self.error(format!("{} bytes follow the last of {} records", self.trailing, self.declared)));
        }
        Ok(())
    }

    fn error(&self, reason: String) -> RecordsError {
        RecordsError::Records { reason }
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
    fn the_walk_is_the_same_whatever_the_chunk_boundaries() {
        let (records, _) = records_and_header(5, 200);
        for split in 0..records.len() {
            for second in [split, (split + 1).min(records.len()), (split + 150).min(records.len())] {
                let mut walker = RecordWalker::new(5);
                walker.feed(&records[..split]).unwrap();
                walker.feed(&records[split..second]).unwrap();
                walker.feed(&records[second..]).unwrap();
                walker.finish().unwrap_or_else(|error| panic!("split at {split}/{second}: {error}"));
            }
        }
    }

    #[test]
    fn broken_record_framing_is_refused() {
        let (records, header) = records_and_header(3, 10);
        let check = |payload: &[u8], declared: i32| {
            let mut batch = with_payload(&header, 0, payload);
            batch[RECORD_COUNT_AT..RECORDS_AT].copy_from_slice(&declared.to_be_bytes());
            check_payload(&batch, MAX_DECODED_BATCH_BYTES)
        };
        check(&records, 3).unwrap();
        // One record more declared than present, one fewer, trailing bytes, a cut-off body, a
        // negative length, a length prefix of more than 5 bytes.
        assert!(matches!(check(&records, 4), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&records, 2), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&[records.as_slice(), &[0]].concat(), 3), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&records[..records.len() - 1], 3), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&[0x01], 1), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00], 1), Err(RecordsError::Records { .. })));
        assert!(matches!(check(&[0x80], 1), Err(RecordsError::Records { .. })));
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
}
