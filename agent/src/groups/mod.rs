//! Classic consumer-group coordination (JoinGroup/SyncGroup/Heartbeat/LeaveGroup). Membership lives
//! in the coordinating agent's memory; committed offsets go through the metadata journal.

pub mod consumer;
pub mod coordinator;

pub use coordinator::{GroupCoordinator, GroupSummary, JoinOutcome, JoinRequest, MemberSummary};
