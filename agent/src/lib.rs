//! Floe agent: a stateless Kafka-protocol server that writes record batches to object storage and
//! keeps its metadata in a replicated journal.
//!
//! Layers (each a folder; a module only reaches down, never up):
//! `protocol` (framing, codec glue, batch validation, no I/O) → `server` (listeners, connections,
//! in-order responses) → `handlers` (one module per Kafka API) → `storage` (segment format, writer,
//! reader, cache) and `metadata` (journal, state machine, replica) and `groups` (classic consumer
//! group coordinator) → `http` (health, metrics). `fuzzing` holds the fuzz targets' entry points.
//! `cli` is a Kafka client (the `floe topic`/`produce`/`consume`/`group` commands) and the cluster
//! check `floe diagnose`; nothing in the agent uses it.

pub mod admin;
pub mod agent;
pub mod authorization;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod coordination;
pub mod fuzzing;
pub mod groups;
pub mod handlers;
pub mod http;
pub mod jobs;
pub mod launch;
pub mod memory_limit;
pub mod metadata;
pub mod metrics;
pub mod protocol;
pub mod sasl;
pub mod server;
pub mod storage;
pub mod tls;

/// This build's version, as `floe --version` prints it; published in the registry record and on
/// `/status`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
