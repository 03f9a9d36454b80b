//! What the agents and the operator of a virtual cluster share: the formats both read or write,
//! and the few operations on them both perform.
//!
//! - etcd: the key layout ([`keys`]), connecting ([`etcd`]), the operator's registration record
//!   ([`registration`]) and the agents' registry record ([`agents`]);
//! - the journal: its records ([`records`]), the deterministic apply function ([`state`],
//!   [`producers`]), the in-memory replica ([`replica`]), snapshots ([`snapshot`]) and a
//!   read-only replay from etcd ([`etcd::load`]);
//! - the bucket: object names ([`layout`]) and the store behind a URL ([`bucket`]);
//! - SASL/SCRAM credentials and Kafka ACLs as the journal keeps them ([`scram`], [`acl`]);
//! - failures of etcd and the bucket worded for people ([`messages`]).
//!
//! # The rule for what goes here
//! A type or function belongs here when both the agent and the operator need it, and only then.
//! Nothing here may depend on the Kafka wire protocol, on compression, or on the agent's servers,
//! jobs and metrics: the operator links this crate, and `make lint` fails when the operator's
//! dependency tree contains `kafka-protocol`, `lz4`, `zstd`, `snap`, `flate2` or `floe-agent`.
//! Observability is passed in through narrow traits ([`bucket::StoreObserver`]).

pub mod acl;
pub mod agents;
pub mod bucket;
pub mod certificate;
pub mod etcd;
pub mod groups;
pub mod keys;
pub mod layout;
pub mod messages;
pub mod producers;
pub mod records;
pub mod registration;
pub mod replica;
pub mod scram;
pub mod snapshot;
pub mod state;
pub mod transactions;
