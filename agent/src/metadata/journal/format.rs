//! The bytes of `journal.log`. This module does no I/O: it frames entries for `append`, and for
//! the bytes read on open it decides which entries are committed, where a torn tail starts and
//! where the file is corrupt.
//!
//! # Version 2 (written by this build)
//! ```text
//! file   = "FLOEJRN" 0x02 entry*
//! entry  = length:u32  payload_crc:u32  header_crc:u32  payload   (integers big-endian)
//!          payload_crc = crc32c(payload), header_crc = crc32c(length ++ payload_crc),
//!          payload = `length` bytes of JSON (a `JournalEntry`)
//! ```
//! The header checksum lets open trust a length before following it, so it can tell a torn tail
//! (an append whose fsync never completed, so never acknowledged) from corruption of a committed
//! entry. Reading from the entry at `position`, the rest of the file is a **torn tail** when:
//! - (a) fewer bytes than an entry header remain;
//! - (b) the header checksum holds but the payload runs past the end of the file: the length is
//!   verified, so the file really ends inside the entry;
//! - (c) every byte to the end of the file is zero: the file size reached disk, its data did not;
//! - (d) the entry is the last one, its header checksum holds, its payload is complete but fails
//!   its checksum, and the payload ends in zero bytes that start on a 512-byte boundary of the
//!   file: data blocks that never reached disk. JSON holds no NUL byte, so the zero run starts
//!   exactly where the written data stops, and a flipped bit cannot turn the closing `}` into one.
//!
//! Anything else that fails a check is **corruption** and the file is refused: a header checksum
//! mismatch with non-zero bytes after it, a payload checksum mismatch that is not case (d), a
//! payload that is not a journal entry.
//!
//! # Version 1 (read, then rewritten as version 2)
//! `entry = length:u32 crc32c(payload):u32 payload`, no file header. Nothing verifies a length,
//! so the rules are stricter. A torn tail is (a), (c), (d), or a last entry whose declared length
//! runs past the end of the file when all of these hold:
//! - the declared length is at most [`VERSION_1_MAX_TORN_PAYLOAD_BYTES`] (1 MiB, etcd's record
//!   limit; the writer splits commits to stay near 600 KiB, so a tighter bound such as 64 KiB
//!   would refuse an honest torn commit record): an unfinished write declares its true length,
//!   while a flipped high bit declares megabytes or more;
//! - the bytes after the header do not match the stored checksum: if they did, this is a complete
//!   last entry whose length field was damaged;
//! - no later offset starts a complete, checksummed, decodable version 1 entry: if one did, the
//!   damaged length belongs to an entry in the middle of the file.
//!
//! # Errs towards refusing
//! A crash that wrote a later sector of an unfinished entry but not the one holding its header
//! leaves zeros followed by data: that is refused, not cut, and the operator decides. Refusing a
//! torn tail costs a manual `truncate`; cutting a committed entry loses acknowledged data.

use crate::metadata::records::JournalEntry;

/// `"FLOEJRN"` and the format version.
pub const FILE_HEADER: [u8; 8] = *b"FLOEJRN\x02";
const MAGIC: &[u8] = b"FLOEJRN";
const VERSION: u8 = 2;
const ENTRY_HEADER_BYTES: usize = 12;
const VERSION_1_ENTRY_HEADER_BYTES: usize = 8;
const VERSION_1_MAX_TORN_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The smallest unit a disk writes; unwritten data reads back as zeros from such a boundary.
const SECTOR_BYTES: usize = 512;

/// Frames one payload (the JSON of an entry) as a version 2 entry, appended to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; ENTRY_HEADER_BYTES];
    header[0..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
    header[4..8].copy_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    let header_crc = crc32c::crc32c(&header[0..8]);
    header[8..12].copy_from_slice(&header_crc.to_be_bytes());
    out.reserve(ENTRY_HEADER_BYTES + payload.len());
    out.extend_from_slice(&header);
    out.extend_from_slice(payload);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Version 2 with its file header: append after `Scan::end`.
    Current,
    /// Version 1: rewrite as version 2 before appending.
    Version1,
    /// No bytes, or a file header cut short by a crash while the journal was created: write a new one.
    Empty,
}

/// A committed entry and the payload bytes it was decoded from.
#[derive(Debug)]
pub struct Committed<'a> {
    pub entry: JournalEntry,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TornKind {
    IncompleteFileHeader,
    IncompleteEntryHeader,
    PayloadPastEnd,
    Zeros,
    UnwrittenPayloadEnd,
}

impl std::fmt::Display for TornKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Self::IncompleteFileHeader => "incomplete file header",
            Self::IncompleteEntryHeader => "incomplete entry header",
            Self::PayloadPastEnd => "payload runs past the end of the file",
            Self::Zeros => "zeros to the end of the file",
            Self::UnwrittenPayloadEnd => "last payload ends in unwritten (zero) sectors",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TornTail {
    /// Where the unacknowledged bytes start; the file is cut here.
    pub position: usize,
    pub kind: TornKind,
}

/// What was read: the committed entries in file order, then possibly a torn tail.
#[derive(Debug)]
pub struct Scan<'a> {
    pub format: Format,
    pub entries: Vec<Committed<'a>>,
    /// The byte after the last committed entry (after the file header for an empty version 2 file).
    pub end: usize,
    pub torn: Option<TornTail>,
}

/// Why an entry is corrupt rather than torn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Damage {
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("payload checksum mismatch")]
    PayloadChecksum,
    #[error("payload is not a journal entry: {reason}")]
    Undecodable { reason: String },
    #[error("declared length of {length} bytes runs past the end of the file, and it is not an unfinished last write")]
    LengthPastEnd { length: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    Corrupt { position: usize, damage: Damage },
    UnsupportedVersion { version: u8 },
}

/// Reads a whole journal file.
pub fn scan(bytes: &[u8]) -> Result<Scan<'_>, ScanError> {
    if bytes.len() < FILE_HEADER.len() && FILE_HEADER.starts_with(bytes) {
        let torn = (!bytes.is_empty()).then_some(TornTail { position: 0, kind: TornKind::IncompleteFileHeader });
        return Ok(Scan { format: Format::Empty, entries: Vec::new(), end: 0, torn });
    }
    if bytes.starts_with(MAGIC) {
        // A version 1 file starts with its first length; "FL" would declare over a gigabyte.
        let version = bytes[MAGIC.len()];
        if version != VERSION {
            return Err(ScanError::UnsupportedVersion { version });
        }
        return scan_entries(bytes, Format::Current, FILE_HEADER.len(), read_entry);
    }
    scan_entries(bytes, Format::Version1, 0, read_version_1_entry)
}

enum Read<'a> {
    /// A committed entry and the byte after it.
    Entry(Committed<'a>, usize),
    Torn(TornKind),
    Damaged(Damage),
}

fn scan_entries<'a>(bytes: &'a [u8], format: Format, start: usize, read: fn(&'a [u8], usize) -> Read<'a>) -> Result<Scan<'a>, ScanError> {
    let mut entries = Vec::new();
    let mut position = start;
    while position < bytes.len() {
        match read(bytes, position) {
            Read::Entry(committed, end) => {
                entries.push(committed);
                position = end;
            }
            Read::Torn(kind) => return Ok(Scan { format, entries, end: position, torn: Some(TornTail { position, kind }) }),
            Read::Damaged(damage) => return Err(ScanError::Corrupt { position, damage }),
        }
    }
    Ok(Scan { format, entries, end: position, torn: None })
}

fn read_entry(bytes: &[u8], position: usize) -> Read<'_> {
    let rest = &bytes[position..];
    if rest.len() < ENTRY_HEADER_BYTES {
        return Read::Torn(TornKind::IncompleteEntryHeader);
    }
    let length = u32_at(rest, 0) as usize;
    let payload_crc = u32_at(rest, 4);
    if crc32c::crc32c(&rest[..8]) != u32_at(rest, 8) {
        return if is_all_zero(rest) { Read::Torn(TornKind::Zeros) } else { Read::Damaged(Damage::HeaderChecksum) };
    }
    let Some(payload) = rest.get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + length) else {
        return Read::Torn(TornKind::PayloadPastEnd);
    };
    check_payload(bytes, position + ENTRY_HEADER_BYTES, payload, payload_crc)
}

fn read_version_1_entry(bytes: &[u8], position: usize) -> Read<'_> {
    let rest = &bytes[position..];
    if rest.len() < VERSION_1_ENTRY_HEADER_BYTES {
        return Read::Torn(TornKind::IncompleteEntryHeader);
    }
    // Checked first: eight zero bytes frame an empty payload whose checksum (0) matches.
    if is_all_zero(rest) {
        return Read::Torn(TornKind::Zeros);
    }
    let length = u32_at(rest, 0) as usize;
    let payload_crc = u32_at(rest, 4);
    let after_header = &rest[VERSION_1_ENTRY_HEADER_BYTES..];
    let Some(payload) = after_header.get(..length) else {
        let torn = length <= VERSION_1_MAX_TORN_PAYLOAD_BYTES
            && crc32c::crc32c(after_header) != payload_crc
            && !(position + 1..bytes.len()).any(|later| starts_version_1_entry(&bytes[later..]));
        return if torn { Read::Torn(TornKind::PayloadPastEnd) } else { Read::Damaged(Damage::LengthPastEnd { length }) };
    };
    check_payload(bytes, position + VERSION_1_ENTRY_HEADER_BYTES, payload, payload_crc)
}

/// The payload checks both versions share, `payload` starting at byte `payload_position` of `bytes`.
fn check_payload<'a>(bytes: &[u8], payload_position: usize, payload: &'a [u8], payload_crc: u32) -> Read<'a> {
    if crc32c::crc32c(payload) != payload_crc {
        let is_last = payload_position + payload.len() == bytes.len();
        return if is_last && ends_in_unwritten_sectors(payload, payload_position) {
            Read::Torn(TornKind::UnwrittenPayloadEnd)
        } else {
            Read::Damaged(Damage::PayloadChecksum)
        };
    }
    match serde_json::from_slice(payload) {
        Ok(entry) => Read::Entry(Committed { entry, payload }, payload_position + payload.len()),
        Err(error) => Read::Damaged(Damage::Undecodable { reason: error.to_string() }),
    }
}

/// Whether `bytes` (at the start of what remains of the file) hold a whole valid version 1 entry.
fn starts_version_1_entry(bytes: &[u8]) -> bool {
    if bytes.len() < VERSION_1_ENTRY_HEADER_BYTES {
        return false;
    }
    let length = u32_at(bytes, 0) as usize;
    let Some(payload) = bytes[VERSION_1_ENTRY_HEADER_BYTES..].get(..length) else { return false };
    // Every entry is a JSON object; the cheap test first keeps the search linear in practice.
    payload.first() == Some(&b'{') && crc32c::crc32c(payload) == u32_at(bytes, 4) && serde_json::from_slice::<JournalEntry>(payload).is_ok()
}

/// A non-empty run of zeros ends the payload and starts on a sector boundary of the file.
fn ends_in_unwritten_sectors(payload: &[u8], payload_position: usize) -> bool {
    let written = payload.iter().rposition(|&byte| byte != 0).map_or(0, |last| last + 1);
    written < payload.len() && (payload_position + written).is_multiple_of(SECTOR_BYTES)
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&byte| byte == 0)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}
