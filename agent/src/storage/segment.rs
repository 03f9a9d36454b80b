//! Segment object format (version 1). One object per flush holds chunks of many partitions:
//!
//! ```text
//! "FLOESEG" 0x01                      header, 8 bytes
//! chunk*                              each: the partition's record batches, base offsets relative
//!                                     to the chunk (first batch 0), batches otherwise untouched
//! footer                              u32 entry count, then per chunk: u16 topic name length, name,
//!                                     16-byte topic id, i32 partition, i64 record count,
//!                                     u64 byte start, u64 byte length, i64 max timestamp, u32 crc32c
//! u32 footer length | u32 footer crc32c | "FLOEEND" 0x01
//! ```
//! The footer makes every object self-describing: an index can be rebuilt from the bucket alone.

use super::super::protocol::batch;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use uuid::Uuid;

pub const HEADER_MAGIC: &[u8; 8] = b"FLOESEG\x01";
pub const TRAILER_MAGIC: &[u8; 8] = b"FLOEEND\x01";
const TRAILER_BYTES: usize = 16;
/// Footer bytes of one entry besides its topic name: u16 name length, 16-byte id, i32 partition,
/// i64 record count, u64 byte start, u64 byte length, i64 max timestamp, u32 crc.
const FOOTER_ENTRY_FIXED_BYTES: usize = 2 + 16 + 4 + 8 + 8 + 8 + 8 + 4;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FooterEntry {
    pub topic: String,
    pub topic_id: Uuid,
    pub partition: i32,
    pub record_count: i64,
    pub byte_start: u64,
    pub byte_len: u64,
    pub max_timestamp: i64,
    pub crc: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("object is too short ({length} bytes) to be a segment")]
    TooShort { length: usize },
    #[error("segment magic is wrong; this is not a Floe segment (or a newer version)")]
    BadMagic,
    #[error("segment footer is corrupt: {reason}")]
    CorruptFooter { reason: String },
    #[error("chunk of {topic}/{partition} fails its checksum")]
    ChunkChecksum { topic: String, partition: i32 },
}

/// Builds a segment in one buffer: each batch is copied exactly once, with its base offset
/// rewritten to its position in the chunk.
pub struct SegmentBuilder {
    buffer: BytesMut,
    entries: Vec<FooterEntry>,
}

impl SegmentBuilder {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buffer = BytesMut::with_capacity(bytes + 64);
        buffer.put_slice(HEADER_MAGIC);
        Self { buffer, entries: Vec::new() }
    }

    /// A builder whose buffer is exactly the finished object's size when it receives
    /// `batch_bytes` of batches in one chunk per name of `chunk_topics`: nothing is copied or
    /// over-allocated on the way (the writer keeps each fresh object in its cache, whose budget
    /// counts object lengths, so slack in a buffer would be memory nobody counts).
    pub fn sized_for<'a>(batch_bytes: usize, chunk_topics: impl IntoIterator<Item = &'a str>) -> Self {
        let footer: usize = chunk_topics.into_iter().map(|topic| FOOTER_ENTRY_FIXED_BYTES + topic.len()).sum();
        let mut buffer = BytesMut::with_capacity(HEADER_MAGIC.len() + batch_bytes + 4 + footer + TRAILER_BYTES);
        buffer.put_slice(HEADER_MAGIC);
        Self { buffer, entries: Vec::new() }
    }

    /// Appends one partition's batches; `counts[i]` is the record count of `batches[i]`.
    /// The writer's path: no allocation per chunk.
    pub fn add_chunk(&mut self, topic: &str, topic_id: Uuid, partition: i32, batches: &[(Bytes, i64)], max_timestamp: i64) -> &FooterEntry {
        let span = batches.iter().map(|(_, count)| count).sum();
        let mut relative = 0i64;
        let placed = batches.iter().map(|(bytes, count)| {
            let at = relative;
            relative += count;
            (bytes, at)
        });
        self.put_chunk(topic, topic_id, partition, placed, span, max_timestamp)
    }

    /// Appends one partition's batches at given offsets: `batches[i].1` is the chunk-relative base
    /// offset of `batches[i]`, increasing, and `record_span` the offsets the chunk covers. Offsets
    /// no batch holds are gaps, which fetch skips (what key compaction leaves; Kafka's compacted
    /// segments have them too).
    pub fn add_chunk_at(
        &mut self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        batches: &[(Bytes, i64)],
        record_span: i64,
        max_timestamp: i64,
    ) -> &FooterEntry {
        let placed = batches.iter().map(|(bytes, relative)| (bytes, *relative));
        self.put_chunk(topic, topic_id, partition, placed, record_span, max_timestamp)
    }

    /// Copies `placed` (each batch with its chunk-relative base offset) and adds its footer entry.
    fn put_chunk<'a>(
        &mut self,
        topic: &str,
        topic_id: Uuid,
        partition: i32,
        placed: impl Iterator<Item = (&'a Bytes, i64)>,
        record_span: i64,
        max_timestamp: i64,
    ) -> &FooterEntry {
        let start = self.buffer.len();
        for (bytes, relative) in placed {
            batch::put_with_base_offset(&mut self.buffer, bytes, relative);
        }
        let crc = crc32c::crc32c(&self.buffer[start..]);
        self.entries.push(FooterEntry {
            topic: topic.to_string(),
            topic_id,
            partition,
            record_count: record_span,
            byte_start: start as u64,
            byte_len: (self.buffer.len() - start) as u64,
            max_timestamp,
            crc,
        });
        self.entries.last().expect("just pushed")
    }

    pub fn finish(self) -> (Bytes, Vec<FooterEntry>) {
        let (buffer, entries) = self.finish_buffer();
        (buffer.freeze(), entries)
    }

    fn finish_buffer(mut self) -> (BytesMut, Vec<FooterEntry>) {
        let footer_bytes: usize = 4 + self.entries.iter().map(|entry| FOOTER_ENTRY_FIXED_BYTES + entry.topic.len()).sum::<usize>();
        let missing = (footer_bytes + TRAILER_BYTES).saturating_sub(self.buffer.capacity() - self.buffer.len());
        if missing > 0 {
            // Growing a BytesMut at least doubles it: a 1 MiB segment of a wide topic would hold
            // 2 MiB for as long as it is cached. One copy into an exact buffer instead.
            let mut exact = BytesMut::with_capacity(self.buffer.len() + footer_bytes + TRAILER_BYTES);
            exact.extend_from_slice(&self.buffer);
            self.buffer = exact;
        }
        let footer_start = self.buffer.len();
        self.buffer.put_u32(self.entries.len() as u32);
        for entry in &self.entries {
            self.buffer.put_u16(entry.topic.len() as u16);
            self.buffer.put_slice(entry.topic.as_bytes());
            self.buffer.put_slice(entry.topic_id.as_bytes());
            self.buffer.put_i32(entry.partition);
            self.buffer.put_i64(entry.record_count);
            self.buffer.put_u64(entry.byte_start);
            self.buffer.put_u64(entry.byte_len);
            self.buffer.put_i64(entry.max_timestamp);
            self.buffer.put_u32(entry.crc);
        }
        let footer_len = (self.buffer.len() - footer_start) as u32;
        let footer_crc = crc32c::crc32c(&self.buffer[footer_start..]);
        self.buffer.put_u32(footer_len);
        self.buffer.put_u32(footer_crc);
        self.buffer.put_slice(TRAILER_MAGIC);
        (self.buffer, self.entries)
    }
}

/// Reads the footer of a whole segment object and checks every chunk's checksum.
pub fn read_footer(object: &[u8]) -> Result<Vec<FooterEntry>, SegmentError> {
    if object.len() < HEADER_MAGIC.len() + TRAILER_BYTES {
        return Err(SegmentError::TooShort { length: object.len() });
    }
    if &object[..8] != HEADER_MAGIC || &object[object.len() - 8..] != TRAILER_MAGIC {
        return Err(SegmentError::BadMagic);
    }
    let trailer = &object[object.len() - TRAILER_BYTES..];
    let footer_len = u32::from_be_bytes(trailer[0..4].try_into().expect("4 bytes")) as usize;
    let footer_crc = u32::from_be_bytes(trailer[4..8].try_into().expect("4 bytes"));
    let corrupt = |reason: &str| SegmentError::CorruptFooter { reason: reason.to_string() };
    let footer_end = object.len() - TRAILER_BYTES;
    let footer_start =
        footer_end.checked_sub(footer_len).filter(|start| *start >= 8).ok_or_else(|| corrupt("footer length out of range"))?;
    let mut footer = &object[footer_start..footer_end];
    if crc32c::crc32c(footer) != footer_crc {
        return Err(corrupt("footer checksum mismatch"));
    }
    let need = |footer: &&[u8], bytes: usize| if footer.remaining() < bytes { Err(corrupt("footer truncated")) } else { Ok(()) };
    need(&footer, 4)?;
    let count = footer.get_u32() as usize;
    let mut entries = Vec::with_capacity(count.min(footer.remaining() / 58));
    for _ in 0..count {
        need(&footer, 2)?;
        let name_len = footer.get_u16() as usize;
        need(&footer, name_len + 16 + 4 + 8 + 8 + 8 + 8 + 4)?;
        let topic = String::from_utf8(footer[..name_len].to_vec()).map_err(|_| corrupt("topic name is not UTF-8"))?;
        footer.advance(name_len);
        let topic_id = Uuid::from_slice(&footer[..16]).map_err(|_| corrupt("bad topic id"))?;
        footer.advance(16);
        let entry = FooterEntry {
            topic,
            topic_id,
            partition: footer.get_i32(),
            record_count: footer.get_i64(),
            byte_start: footer.get_u64(),
            byte_len: footer.get_u64(),
            max_timestamp: footer.get_i64(),
            crc: footer.get_u32(),
        };
        let end = entry
            .byte_start
            .checked_add(entry.byte_len)
            .filter(|end| *end <= footer_start as u64)
            .ok_or_else(|| corrupt("chunk range out of bounds"))?;
        if crc32c::crc32c(&object[entry.byte_start as usize..end as usize]) != entry.crc {
            return Err(SegmentError::ChunkChecksum { topic: entry.topic, partition: entry.partition });
        }
        entries.push(entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::tests::encoded_batch;
    use kafka_protocol::records::Compression;

    #[test]
    fn a_segment_describes_itself_and_detects_corruption() {
        let first = encoded_batch(3, Compression::None);
        let second = encoded_batch(2, Compression::None);
        let mut builder = SegmentBuilder::with_capacity(1024);
        builder.add_chunk("orders", Uuid::from_u128(9), 4, &[(first.clone(), 3), (second.clone(), 2)], 77);
        builder.add_chunk("audit", Uuid::from_u128(10), 0, &[(second, 2)], 5);
        let (object, entries) = builder.finish();
        let read = read_footer(&object).unwrap();
        assert_eq!(read, entries);
        assert_eq!(read[0].record_count, 5);
        let chunk = &object[read[0].byte_start as usize..(read[0].byte_start + read[0].byte_len) as usize];
        let offsets: Vec<i64> = crate::protocol::batch::walk(chunk).map(|batch| batch.base_offset).collect();
        assert_eq!(offsets, vec![0, 3]);
        let mut damaged = object.to_vec();
        damaged[20] ^= 1;
        assert!(matches!(read_footer(&damaged), Err(SegmentError::ChunkChecksum { .. })));
    }

    #[test]
    fn a_segment_sized_for_its_chunks_fills_its_buffer_exactly_and_a_short_estimate_costs_no_slack() {
        let batch = encoded_batch(3, Compression::None);
        let topics: Vec<String> = (0..300).map(|index| format!("a-rather-long-topic-name-{index}")).collect();
        let build = |mut builder: SegmentBuilder| {
            for (partition, topic) in topics.iter().enumerate() {
                builder.add_chunk(topic, Uuid::from_u128(7), partition as i32, &[(batch.clone(), 3)], 1);
            }
            builder.finish_buffer().0
        };
        let sized = build(SegmentBuilder::sized_for(batch.len() * topics.len(), topics.iter().map(String::as_str)));
        assert_eq!(sized.capacity(), sized.len(), "the exact estimate left slack or grew");
        // The old estimate (64 footer bytes per chunk) is short for these names: growing would
        // have doubled the buffer.
        let short = build(SegmentBuilder::with_capacity(batch.len() * topics.len() + topics.len() * 64));
        assert_eq!(short.capacity(), short.len());
        assert_eq!(short, sized);
        assert_eq!(read_footer(&sized).unwrap().len(), topics.len());
    }
}
