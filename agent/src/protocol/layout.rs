//! The magic-v2 record batch header, byte by byte: `baseOffset i64 | batchLength i32 |
//! partitionLeaderEpoch i32 | magic i8 | crc u32 | attributes i16 | lastOffsetDelta i32 |
//! baseTimestamp i64 | maxTimestamp i64 | producerId i64 | producerEpoch i16 | baseSequence i32 |
//! recordCount i32 | records...`. Shared by the header checks (`batch.rs`) and the record walk
//! (`payload.rs`), which therefore do not import each other's internals.

/// Header bytes before the first record.
pub const HEADER_BYTES: usize = 61;
pub(super) const BATCH_LENGTH_AT: usize = 8;
pub(super) const LENGTH_FIELD_END: usize = 12;
pub(super) const MAGIC_AT: usize = 16;
pub(super) const CRC_AT: usize = 17;
pub(super) const ATTRIBUTES_AT: usize = 21;
pub(super) const LAST_OFFSET_DELTA_AT: usize = 23;
pub(super) const BASE_TIMESTAMP_AT: usize = 27;
pub(super) const MAX_TIMESTAMP_AT: usize = 35;
pub(super) const PRODUCER_ID_AT: usize = 43;
pub(super) const PRODUCER_EPOCH_AT: usize = 51;
pub(super) const BASE_SEQUENCE_AT: usize = 53;
pub(super) const RECORD_COUNT_AT: usize = 57;
