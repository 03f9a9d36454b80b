//! Entry points of the cargo-fuzz targets in `fuzz/` (README, "Fuzz it"). They live in the agent
//! crate so that `tests/fuzz_regressions.rs` replays every saved crash input through exactly the
//! code the fuzzer ran, on every `make test`.
//!
//! # Guarantees
//! For any `data`, each function returns normally: no panic, no abort, no allocation out of
//! proportion to the input or the stated budgets. A panic is a bug even where the server would
//! survive it (the codec turns decoder panics into a closed connection, but a panic is still a
//! crash to the fuzzer, which installs an aborting panic hook). The asserts inside state
//! properties of the code under test, not of the input.

use crate::handlers::{api, APIS};
use crate::metadata::topic_config::DEFAULT_MAX_MESSAGE_BYTES;
use crate::protocol::{batch, codec, frame, records};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::records::Compression;
use std::future::Future;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

/// The agent's default `--max-request-bytes`.
const MAX_REQUEST_BYTES: usize = 100 << 20;

/// Decoding budget per batch. Smaller than the server's `MAX_DECODED_BATCH_BYTES` so that inputs
/// which hit it (zip bombs) stay fast; the code path is the same.
const FUZZ_DECODED_BATCH_BYTES: usize = 64 << 10;

/// Every (api key, version) pair the agent advertises, in handler-table order.
pub fn advertised_versions() -> &'static [(ApiKey, i16)] {
    static PAIRS: OnceLock<Vec<(ApiKey, i16)>> = OnceLock::new();
    PAIRS.get_or_init(|| APIS.iter().flat_map(|api| (api.min..=api.max).map(move |version| (api.key, version))).collect())
}

/// Treats `data` as a request frame without its size prefix: api key, api version, correlation
/// id, the rest of the header, then the body. A key and version the agent does not advertise are
/// first replaced by an advertised pair chosen from those four bytes, so every input exercises a
/// decoder the server would really run; a saved input that names an advertised pair is a literal
/// request frame.
///
/// The frame then takes the server's path: size prefix through `read_frame`, key and version
/// peeked, range checked, header and body decoded, and for Produce every partition's records
/// validated and, when valid, decoded as a timestamp lookup would decode them once stored.
pub fn request_decoder(data: &[u8]) {
    let Some(selector) = data.first_chunk::<4>() else { return };
    let raw_key = i16::from_be_bytes([selector[0], selector[1]]);
    let raw_version = i16::from_be_bytes([selector[2], selector[3]]);
    let pairs = advertised_versions();
    let (api_key, version) = pairs
        .iter()
        .copied()
        .find(|&(key, version)| key as i16 == raw_key && version == raw_version)
        .unwrap_or_else(|| pairs[u32::from_be_bytes(*selector) as usize % pairs.len()]);
    let mut wire = Vec::with_capacity(4 + data.len());
    wire.extend_from_slice(&(data.len() as i32).to_be_bytes());
    wire.extend_from_slice(&(api_key as i16).to_be_bytes());
    wire.extend_from_slice(&version.to_be_bytes());
    wire.extend_from_slice(&data[4..]);

    let Some(frame) = read_frame_from_slice(&wire) else { return };
    let (peeked_key, peeked_version) = codec::peek_key_and_version(&frame).expect("the harness wrote an advertised api key");
    assert_eq!((peeked_key, peeked_version), (api_key, version));
    let _ = codec::peek_correlation_id(&frame);
    let (min, max) = api(api_key).map(|api| (api.min, api.max)).expect("advertised keys have a range");
    assert!((min..=max).contains(&version));
    let Ok((header, request)) = codec::decode_request(frame, api_key, version) else { return };
    assert_eq!((header.request_api_key, header.request_api_version), (api_key as i16, version));
    if let RequestKind::Produce(request) = request {
        for partition in request.topic_data.into_iter().flat_map(|topic| topic.partition_data) {
            let records = partition.records.unwrap_or_default();
            if batch::validate_produced(&records, DEFAULT_MAX_MESSAGE_BYTES).is_ok() {
                let _ = records::decode_batch(&records, FUZZ_DECODED_BATCH_BYTES);
            }
        }
    }
}

/// An independent, whole-slice reading of `count` v2 records, kept deliberately plain: the oracle
/// the streaming validator (`protocol/payload.rs`) is compared with by its tests and by the fuzz
/// targets. The rules are Kafka's `DefaultRecord.readFrom`, plus Floe's: the offset delta equals
/// the record's index, lengths below -1 are malformed, and nothing follows the last record.
pub fn records_are_well_formed(data: &[u8], count: i32) -> bool {
    fn varint(data: &mut &[u8], max_bytes: usize) -> Option<u64> {
        let mut raw = 0u64;
        for index in 0..max_bytes {
            let (&byte, rest) = data.split_first()?;
            *data = rest;
            raw |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return Some(raw);
            }
        }
        None
    }
    fn int32(data: &mut &[u8]) -> Option<i32> {
        let raw = u32::try_from(varint(data, 5)?).ok()?;
        Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }
    fn bytes(data: &mut &[u8], nullable: bool) -> Option<()> {
        let length = int32(data)?;
        if length == -1 && nullable {
            return Some(());
        }
        let length = usize::try_from(length).ok().filter(|length| *length <= data.len())?;
        *data = &data[length..];
        Some(())
    }
    let read = |mut data: &[u8]| -> Option<()> {
        for index in 0..count {
            let length = usize::try_from(int32(&mut data)?).ok().filter(|length| (6..=data.len()).contains(length))?;
            let (mut body, rest) = data.split_at(length);
            data = rest;
            body = &body[1..];
            varint(&mut body, 10)?;
            (int32(&mut body)? == index).then_some(())?;
            bytes(&mut body, true)?;
            bytes(&mut body, true)?;
            for _ in 0..usize::try_from(int32(&mut body)?).ok()? {
                bytes(&mut body, false)?;
                bytes(&mut body, true)?;
            }
            body.is_empty().then_some(())?;
        }
        data.is_empty().then_some(())
    };
    read(data).is_some()
}

/// `read_frame` on an in-memory connection: a byte slice is always ready, so one poll finishes it.
fn read_frame_from_slice(wire: &[u8]) -> Option<Bytes> {
    let mut connection = wire;
    // A budget larger than any frame: the budget never makes this read wait.
    let budget = frame::MemoryBudget::new(usize::MAX / 2);
    let read = std::pin::pin!(frame::read_frame(&mut connection, MAX_REQUEST_BYTES, &budget, &|| {}));
    match read.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result.ok().flatten(),
        Poll::Pending => unreachable!("reading from a byte slice never waits"),
    }
}

/// Input layout of `record_batch_decoder`, ahead of the batch bytes.
const FIX_CRCS: u8 = 1;
const FORCE_FIRST: u8 = 2;
const PARAMETER_BYTES: usize = 4;
/// Base offset the simulated chunk was assigned when its commit record was applied.
const CHUNK_BASE_OFFSET: i64 = 1_000;

/// Record batches through every function that reads them. Layout: `flags u8 | from_offset u8 |
/// byte_limit u16 (0xffff: none) | batch bytes`; flag 1 recomputes each batch's CRC first, so
/// mutations reach past the checksum; flag 2 is copy_rebased's `force_first`.
///
/// 1. Read path on arbitrary bytes (a corrupted object): `walk` and `decode_batch` (every codec,
///    under a small budget) must fail cleanly.
/// 2. Write-then-read path: the bytes are split into client batches as a produce request would
///    carry them one per partition; those `validate_produced` accepts are stored as the segment
///    writer stores them, fetched back with `copy_rebased` from `CHUNK_BASE_OFFSET + from_offset`,
///    and every fetched batch must be the client's batch byte for byte except its base offset
///    (so it still validates) and must decode to the count its header declares, if it decodes.
pub fn record_batch_decoder(data: &[u8]) -> Vec<i64> {
    let Some((parameters, batches)) = data.split_first_chunk::<PARAMETER_BYTES>() else { return Vec::new() };
    let flags = parameters[0];
    let from_offset = CHUNK_BASE_OFFSET + parameters[1] as i64;
    let byte_limit = match u16::from_be_bytes([parameters[2], parameters[3]]) {
        u16::MAX => usize::MAX,
        limit => limit as usize,
    };
    let mut input = batches.to_vec();
    if flags & FIX_CRCS != 0 {
        fix_crcs(&mut input);
    }
    let input = Bytes::from(input);

    for stored in batch::walk(&input) {
        let _ = records::decode_batch(&input.slice(stored.position..stored.position + stored.size), FUZZ_DECODED_BATCH_BYTES);
    }

    let mut chunk = BytesMut::new();
    let mut accepted = Vec::new();
    let mut next_relative_offset = 0i64;
    let mut rest = &input[..];
    while let Some(size) = batch::batch_size(rest) {
        let client_batch = &rest[..size.min(rest.len())];
        if let Ok(summary) = batch::validate_produced(client_batch, DEFAULT_MAX_MESSAGE_BYTES) {
            batch::put_with_base_offset(&mut chunk, client_batch, next_relative_offset);
            accepted.push((CHUNK_BASE_OFFSET + next_relative_offset, summary.record_count, client_batch));
            next_relative_offset += summary.record_count;
        }
        if size >= rest.len() {
            break;
        }
        rest = &rest[size..];
    }
    let chunk = chunk.freeze();
    let mut fetched = BytesMut::new();
    let (copied, _) =
        batch::copy_rebased(&mut fetched, &chunk, CHUNK_BASE_OFFSET, from_offset, i64::MAX, byte_limit, flags & FORCE_FIRST != 0);
    assert_eq!(copied, fetched.len());
    let fetched = fetched.freeze();
    let mut expected = accepted.iter().skip_while(|(base_offset, count, _)| base_offset + count <= from_offset);
    let mut fetched_offsets = Vec::new();
    for stored in batch::walk(&fetched) {
        fetched_offsets.push(stored.base_offset);
        let (base_offset, _, client_batch) = expected.next().expect("copy_rebased returned only stored batches");
        let bytes = fetched.slice(stored.position..stored.position + stored.size);
        assert_eq!(stored.base_offset, *base_offset);
        assert_eq!(&bytes[8..], &client_batch[8..]);
        let summary = batch::validate_produced(&bytes, usize::MAX).expect("a fetched batch is still valid");
        if let Ok(records) = records::decode_batch(&bytes, FUZZ_DECODED_BATCH_BYTES) {
            assert_eq!(records.len() as i64, summary.record_count);
        }
    }
    fetched_offsets
}

/// Input layout of `record_validator`, ahead of the records: `codec u8 | declared count u8 |
/// split u16`.
const VALIDATOR_PARAMETER_BYTES: usize = 4;
const CODECS: [Compression; 5] = [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd];

/// The produce path's record validator (`protocol/payload.rs`) on arbitrary record bytes. Layout:
/// `codec u8 | declared count u8 | split u16 | records`. The records are taken as the decompressed
/// payload, so every mutation reaches the record fields whatever the codec.
///
/// 1. Fed in two pieces split anywhere, the streaming validator agrees with the plain reference
///    reader (`records_are_well_formed`).
/// 2. Wrapped in a client batch (correct header and CRC), compressed with the chosen codec, the
///    whole produce check (`validate_produced`) gives the same verdict.
/// 3. A batch the produce check accepts decodes, with the `kafka-protocol` crate's reader, to
///    exactly the declared records at offsets 0, 1, 2, ... whenever that reader can read it.
pub fn record_validator(data: &[u8]) {
    let Some((parameters, records)) = data.split_first_chunk::<VALIDATOR_PARAMETER_BYTES>() else { return };
    let compression = CODECS[parameters[0] as usize % CODECS.len()];
    let declared = i32::from(parameters[1]);
    let split = u16::from_be_bytes([parameters[2], parameters[3]]) as usize % (records.len() + 1);
    let expected = records_are_well_formed(records, declared);

    let mut validator = crate::protocol::payload::RecordValidator::new(declared);
    let streamed = validator.feed(&records[..split]).and_then(|()| validator.feed(&records[split..])).is_ok() && validator.finish().is_ok();
    assert_eq!(streamed, expected, "streaming validator and reference reader disagree (split at {split})");

    let Some(batch) = client_batch(records, declared, compression) else { return };
    let verdict = batch::validate_produced(&batch, usize::MAX);
    if declared == 0 {
        assert!(verdict.is_err(), "a batch declaring no records was accepted");
        return;
    }
    assert_eq!(verdict.is_ok(), expected, "{compression:?}: produce check and reference reader disagree: {verdict:?}");
    if verdict.is_ok() {
        if let Ok(decoded) = records::decode_batch(&batch, FUZZ_DECODED_BATCH_BYTES) {
            assert_eq!(decoded.len(), declared as usize, "{compression:?}: decoded a different number of records");
            for (index, record) in decoded.iter().enumerate() {
                assert_eq!(record.offset, index as i64, "{compression:?}: record {index} decoded at another offset");
            }
        }
    }
}

/// A client batch around `records` (the decompressed payload) declaring `declared` records,
/// compressed with `compression`, with a correct length and CRC.
fn client_batch(records: &[u8], declared: i32, compression: Compression) -> Option<Bytes> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let write = |buffer: &mut BytesMut| -> anyhow::Result<()> {
        buffer.extend_from_slice(records);
        Ok(())
    };
    let mut payload = BytesMut::new();
    match compression {
        Compression::None => payload.extend_from_slice(records),
        Compression::Gzip => <Gzip as Compressor<BytesMut>>::compress(&mut payload, write).ok()?,
        Compression::Snappy => <Snappy as Compressor<BytesMut>>::compress(&mut payload, write).ok()?,
        Compression::Lz4 => <Lz4 as Compressor<BytesMut>>::compress(&mut payload, write).ok()?,
        Compression::Zstd => <Zstd as Compressor<BytesMut>>::compress(&mut payload, write).ok()?,
    }
    let mut batch = BytesMut::with_capacity(61 + payload.len());
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    batch.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes()); // batch length
    batch.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    batch.extend_from_slice(&[2]); // magic
    batch.extend_from_slice(&0u32.to_be_bytes()); // crc, below
    batch.extend_from_slice(&(compression as i16).to_be_bytes());
    batch.extend_from_slice(&(declared - 1).to_be_bytes()); // last offset delta
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // base timestamp
    batch.extend_from_slice(&1_700_000_000_000i64.to_be_bytes()); // max timestamp
    batch.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    batch.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    batch.extend_from_slice(&declared.to_be_bytes());
    batch.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    Some(batch.freeze())
}

/// Rewrites the CRC of every batch `walk` finds, so a mutation of the covered bytes is not
/// simply refused as corrupt.
fn fix_crcs(bytes: &mut [u8]) {
    let positions: Vec<_> = batch::walk(bytes).map(|stored| (stored.position, stored.size)).collect();
    for (position, size) in positions {
        let batch = &mut bytes[position..position + size];
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::batch::tests::encoded_batch;

    #[test]
    fn every_advertised_version_is_reachable_and_unadvertised_selectors_fold_onto_one() {
        let pairs = advertised_versions();
        assert_eq!(pairs.len(), APIS.iter().map(|api| (api.max - api.min + 1) as usize).sum::<usize>());
        assert!(pairs.contains(&(ApiKey::Produce, 11)) && !pairs.contains(&(ApiKey::Produce, 2)));
        // An unknown key, a negative version and an empty body must all be handled quietly.
        for data in [&[0x7f, 0x7f, 0, 0][..], &[0, 0, 0xff, 0xff, 1, 2, 3], &[], &[0, 18, 0, 3]] {
            request_decoder(data);
        }
    }

    #[test]
    fn the_record_validator_target_runs_client_records_in_every_codec_and_damaged_ones() {
        let plain = encoded_batch(4, Compression::None);
        for codec in 0..5u8 {
            for split in [0u16, 9, 40, 1000] {
                let mut input = vec![codec, 4];
                input.extend_from_slice(&split.to_be_bytes());
                input.extend_from_slice(&plain[61..]);
                record_validator(&input);
                // Damaged: the reference and the validator must still agree.
                for at in [5, 7, 12, input.len() - 1] {
                    let mut damaged = input.clone();
                    damaged[at] ^= 0x41;
                    record_validator(&damaged);
                }
                input[1] = 3;
                record_validator(&input);
            }
        }
    }

    /// A small, deterministic stand-in for the fuzzer on every test run: random byte flips,
    /// insertions and truncations of client records, through every codec and split.
    #[test]
    fn the_record_validator_target_agrees_with_the_reference_on_thousands_of_mutations() {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound as u64) as usize
        };
        let seeds: Vec<Vec<u8>> = [1, 3, 8].iter().map(|&count| encoded_batch(count, Compression::None)[61..].to_vec()).collect();
        for round in 0..4_000 {
            let seed = &seeds[round % seeds.len()];
            let mut records = seed.clone();
            for _ in 0..1 + next(3) {
                match next(4) {
                    0 | 1 => {
                        let at = next(records.len());
                        records[at] ^= 1 << next(8);
                    }
                    2 => {
                        let at = next(records.len() + 1);
                        records.insert(at, next(256) as u8);
                    }
                    _ => records.truncate(next(records.len() + 1)),
                }
                if records.is_empty() {
                    records.push(0);
                }
            }
            let declared = [1u8, 3, 8][round % seeds.len()];
            let mut input = vec![next(5) as u8, if next(8) == 0 { declared.wrapping_add(1) } else { declared }];
            input.extend_from_slice(&(next(records.len() + 1) as u16).to_be_bytes());
            input.extend_from_slice(&records);
            record_validator(&input);
        }
    }

    #[test]
    fn fetched_batches_are_the_produced_ones_from_the_requested_offset() {
        let mut data = vec![FORCE_FIRST, 4, 0xff, 0xff];
        for count in [3, 2, 5] {
            data.extend_from_slice(&encoded_batch(count, Compression::Lz4));
        }
        // Offsets 1000..1003, 1003..1005, 1005..1010: from 1004 the last two batches come back.
        assert_eq!(record_batch_decoder(&data), vec![1003, 1005]);
    }
}
