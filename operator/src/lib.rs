//! Floe operator: reconciles `VirtualCluster`, `AgentPool` and `KafkaUser` resources (ARCHITECTURE §8).
//!
//! `crd` holds the resource types; `crdgen` renders them as CustomResourceDefinitions;
//! `metrics_api` serves the external metric each AgentPool's HPA scales on.

pub mod agent_pool;
pub mod apply;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod crd_install;
pub mod crdgen;
pub mod error;
#[cfg(test)]
mod every_failure_message;
pub mod kafka_user;
pub mod labels;
pub mod leader;
pub mod messages;
pub mod metrics;
pub mod metrics_api;
pub mod run;
pub mod virtual_cluster;
