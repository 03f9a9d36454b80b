//! Floe operator: reconciles `VirtualCluster` and `AgentPool` resources (ARCHITECTURE §8).
//!
//! `crd` holds the resource types; `crdgen` renders them as CustomResourceDefinitions.

pub mod agent_pool;
pub mod crd;
pub mod crdgen;
pub mod labels;
