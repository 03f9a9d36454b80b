//! Golden files for the formats an upgrade must keep reading: the segment object (version 1), the
//! embedded journal (version 2) with the journal record JSON inside it, and the metadata snapshot
//! (the state's JSON). Each test does two things:
//! - reads the committed file and checks what it holds (an older file still reads), and
//! - writes the same content afresh and compares it with the file (a format change is noticed).
//!
//! A deliberate format change updates the files with `FLOE_UPDATE_GOLDEN=1 cargo test -p
//! floe-agent --test formats`, and must keep the previous version readable (keep the old file
//! under a versioned name and its reading test).

use bytes::{Bytes, BytesMut};
use floe_agent::metadata::journal::{EmbeddedJournal, JournalBackend};
use floe_agent::metadata::replica::Replica;
use floe_agent::metadata::{ChunkCommit, JournalEntry, JournalRecord, MetadataState, OffsetCommitEntry, ProducedBatch};
use floe_agent::protocol::records::decode_batch;
use floe_agent::storage::segment::{read_footer, FooterEntry, SegmentBuilder};
use floe_meta::acl::{AclBinding, Operation, PatternType, Permission, ResourceType};
use floe_meta::scram::{ScramCredential, ScramMechanism};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use uuid::Uuid;

const TIMESTAMP: i64 = 1_780_000_000_000;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name)
}

/// Compares `fresh` with the golden file, or rewrites the file when FLOE_UPDATE_GOLDEN is set.
fn matches_golden(name: &str, fresh: &[u8]) {
    let path = golden(name);
    if std::env::var_os("FLOE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, fresh).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    assert!(
        committed == fresh,
        "{name} changed: this build writes {} bytes that differ from the committed {} bytes. A format change must \
         stay readable by the previous version's readers; if it is deliberate, keep the old file and regenerate with \
         FLOE_UPDATE_GOLDEN=1",
        fresh.len(),
        committed.len()
    );
}

fn topic_id(index: u8) -> Uuid {
    Uuid::from_bytes([index; 16])
}

fn batch(first: usize, count: usize) -> Bytes {
    let records: Vec<Record> = (first..first + count)
        .map(|index| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: (index - first) as i64,
            // Consecutive, or the encoder starts a new batch at every record.
            sequence: (index - first) as i32,
            timestamp: TIMESTAMP + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(format!("value-{index}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut bytes = BytesMut::new();
    RecordBatchEncoder::encode(&mut bytes, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None }).unwrap();
    bytes.freeze()
}

/// Two partitions of one topic and one of another, two batches in the first chunk.
fn segment() -> (Bytes, Vec<FooterEntry>) {
    let mut builder = SegmentBuilder::with_capacity(4096);
    builder.add_chunk("orders", topic_id(1), 0, &[(batch(0, 3), 3), (batch(3, 2), 2)], TIMESTAMP + 4);
    builder.add_chunk("orders", topic_id(1), 1, &[(batch(10, 1), 1)], TIMESTAMP + 10);
    builder.add_chunk("payments", topic_id(2), 0, &[(batch(20, 4), 4)], TIMESTAMP + 23);
    builder.finish()
}

#[test]
fn segment_version_1_reads_back_and_is_written_unchanged() {
    let (fresh, _) = segment();
    matches_golden("segment-v1.seg", &fresh);
    let committed = Bytes::from(std::fs::read(golden("segment-v1.seg")).unwrap());
    let footer = read_footer(&committed).unwrap();
    let chunks: Vec<(&str, i32, i64, i64)> =
        footer.iter().map(|entry| (entry.topic.as_str(), entry.partition, entry.record_count, entry.max_timestamp)).collect();
    assert_eq!(chunks, vec![("orders", 0, 5, TIMESTAMP + 4), ("orders", 1, 1, TIMESTAMP + 10), ("payments", 0, 4, TIMESTAMP + 23)]);
    assert_eq!(footer[2].topic_id, topic_id(2));
    // The first chunk's second batch, rebased to offset 3 within the chunk, holds records 3 and 4.
    let first = &footer[0];
    let chunk = committed.slice(first.byte_start as usize..(first.byte_start + first.byte_len) as usize);
    let first_batch_length = 12 + i32::from_be_bytes(chunk[8..12].try_into().unwrap()) as usize;
    let second = decode_batch(&chunk.slice(first_batch_length..), 1 << 20).unwrap();
    let read: Vec<(i64, Bytes)> = second.iter().map(|record| (record.offset, record.value.clone().unwrap())).collect();
    assert_eq!(read, vec![(3, Bytes::from("value-3")), (4, Bytes::from("value-4"))]);
}

/// A SCRAM credential with fixed bytes (a real one has a random salt).
fn credential(mechanism: ScramMechanism) -> ScramCredential {
    ScramCredential {
        mechanism,
        iterations: 4096,
        salt: b"golden-salt".to_vec(),
        stored_key: vec![1; mechanism.output_len()],
        server_key: vec![2; mechanism.output_len()],
    }
}

/// One record of each kind an agent writes during a topic's life.
fn acl(operation: Operation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        pattern_type: PatternType::Prefixed,
        resource_name: "ord".into(),
        principal: "User:alice".into(),
        host: "*".into(),
        operation,
        permission: Permission::Allow,
    }
}

fn journal_entries() -> Vec<JournalEntry> {
    let id = |index: u8| format!("01J{index:023}");
    let records = vec![
        JournalRecord::InitCluster { cluster_id: "golden-cluster".into() },
        JournalRecord::SetMetadataVersion { version: 5 },
        JournalRecord::CreateTopic {
            name: "orders".into(),
            topic_id: topic_id(1),
            partitions: 2,
            configs: BTreeMap::from([("retention.ms".to_string(), "86400000".to_string())]),
        },
        JournalRecord::CommitSegment {
            object: "clusters/golden-cluster/segments/00000000000000000003-01J00000000000000000000000.seg".into(),
            chunks: vec![ChunkCommit {
                topic: "orders".into(),
                topic_id: topic_id(1),
                partition: 0,
                record_count: 5,
                byte_start: 8,
                byte_len: 200,
                max_timestamp: TIMESTAMP + 4,
                batches: vec![ProducedBatch {
                    producer_id: 7,
                    producer_epoch: 0,
                    base_sequence: 0,
                    record_count: 5,
                    byte_len: 200,
                    transactional: false,
                }],
            }],
        },
        JournalRecord::AllocateProducerId,
        JournalRecord::CommitOffsets {
            group: "billing".into(),
            offsets: vec![OffsetCommitEntry {
                topic: "orders".into(),
                partition: 0,
                offset: 5,
                leader_epoch: -1,
                metadata: Some("m".into()),
            }],
        },
        JournalRecord::SealObjects { through_revision: 2 },
        JournalRecord::AlterScramCredentials {
            user: "alice".into(),
            set: vec![credential(ScramMechanism::Sha512), credential(ScramMechanism::Sha256)],
            remove: vec![],
        },
        JournalRecord::AlterScramCredentials { user: "alice".into(), set: vec![], remove: vec![ScramMechanism::Sha256] },
        JournalRecord::CreateAcls { acls: vec![acl(Operation::Write), acl(Operation::Read)] },
        JournalRecord::DeleteAcls { acls: vec![acl(Operation::Read)] },
    ];
    records.into_iter().enumerate().map(|(index, record)| JournalEntry { id: id(index as u8), record }).collect()
}

async fn write_journal(path: &std::path::Path) -> Arc<Replica> {
    let replica = Arc::new(Replica::new());
    let journal = EmbeddedJournal::open(path, Arc::clone(&replica)).unwrap();
    for entry in journal_entries() {
        journal.append(&entry).await.unwrap();
    }
    replica
}

/// What the files written at metadata version 3 (before SCRAM credentials) and the current ones
/// both hold.
fn check_common_state(state: &MetadataState) {
    assert_eq!(state.cluster_id.as_deref(), Some("golden-cluster"));
    assert_eq!(state.sealed_through_revision, 2);
    assert_eq!(state.next_producer_id, 1);
    let orders = &state.topics["orders"];
    assert_eq!((orders.id, orders.partitions.len()), (topic_id(1), 2));
    assert_eq!(orders.configs.get("retention.ms").map(String::as_str), Some("86400000"));
    assert_eq!(orders.partitions[0].high_watermark, 5);
    assert_eq!(state.group_offsets["billing"]["orders"][&0].offset, 5);
}

/// What the files written at metadata version 4 (before ACLs) and the current ones both hold.
fn check_credentials(state: &MetadataState) {
    assert_eq!(state.scram_credential("alice", ScramMechanism::Sha512), Some(&credential(ScramMechanism::Sha512)));
    assert_eq!(state.scram_credential("alice", ScramMechanism::Sha256), None, "deleted");
}

fn check_state(state: &MetadataState) {
    check_common_state(state);
    check_credentials(state);
    assert_eq!(state.applied_revision, 11);
    assert_eq!(state.metadata_version, 5);
    assert_eq!(state.acls.iter().collect::<Vec<_>>(), vec![&acl(Operation::Write)], "READ was deleted");
}

/// Opens a copy of a committed journal file (opening may rewrite its tail) and returns its state.
fn replay_committed(directory: &std::path::Path, name: &str) -> MetadataState {
    let copy = directory.join("committed").join(name).join("journal.log");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(golden(name), &copy).unwrap();
    let replica = Arc::new(Replica::new());
    EmbeddedJournal::open(&copy, Arc::clone(&replica)).unwrap();
    replica.read(|state| state.clone())
}

#[test]
fn files_written_at_metadata_version_3_still_read() {
    let directory = tempfile::tempdir().unwrap();
    let replayed = replay_committed(directory.path(), "journal-v2-metadata-v3.log");
    let snapshot: MetadataState = serde_json::from_slice(&std::fs::read(golden("snapshot-metadata-v3.json")).unwrap()).unwrap();
    for state in [&replayed, &snapshot] {
        check_common_state(state);
        assert_eq!((state.applied_revision, state.metadata_version), (7, 3));
        assert!(state.scram_credentials.is_empty());
    }
}

#[test]
fn files_written_at_metadata_version_4_still_read() {
    let directory = tempfile::tempdir().unwrap();
    let replayed = replay_committed(directory.path(), "journal-v2-metadata-v4.log");
    let snapshot: MetadataState = serde_json::from_slice(&std::fs::read(golden("snapshot-metadata-v4.json")).unwrap()).unwrap();
    for state in [&replayed, &snapshot] {
        check_common_state(state);
        check_credentials(state);
        assert_eq!((state.applied_revision, state.metadata_version), (9, 4));
        assert!(state.acls.is_empty());
    }
}

#[tokio::test]
async fn embedded_journal_version_2_replays_and_is_written_unchanged() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("journal.log");
    write_journal(&path).await;
    matches_golden("journal-v2.log", &std::fs::read(&path).unwrap());
    // The committed file replays to the same state.
    check_state(&replay_committed(directory.path(), "journal-v2.log"));
}

#[tokio::test]
async fn metadata_snapshot_reads_back_and_is_written_unchanged() {
    let directory = tempfile::tempdir().unwrap();
    let replica = write_journal(&directory.path().join("journal.log")).await;
    let fresh = replica.read(|state| serde_json::to_vec_pretty(state).unwrap());
    matches_golden("snapshot.json", &fresh);
    let committed: MetadataState = serde_json::from_slice(&std::fs::read(golden("snapshot.json")).unwrap()).unwrap();
    check_state(&committed);
}
