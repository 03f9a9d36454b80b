//! The labels every child carries. `managed-by` plus `floe.dev/pool` find orphans; the selector
//! is the subset that never changes for a pool's life (a Deployment's selector is immutable).

use std::collections::BTreeMap;

pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "floe-operator";
pub const POOL: &str = "floe.dev/pool";
pub const VIRTUAL_CLUSTER: &str = "floe.dev/virtual-cluster";

pub fn pool_selector(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "floe-agent".to_string()),
        ("app.kubernetes.io/instance".to_string(), pool.to_string()),
    ])
}

pub fn pool_labels(pool: &str, virtual_cluster: &str) -> BTreeMap<String, String> {
    let mut labels = pool_selector(pool);
    labels.insert("app.kubernetes.io/component".to_string(), "agent".to_string());
    labels.insert(MANAGED_BY.to_string(), MANAGER.to_string());
    labels.insert(POOL.to_string(), pool.to_string());
    labels.insert(VIRTUAL_CLUSTER.to_string(), virtual_cluster.to_string());
    labels
}

/// Selects every child of one pool, for orphan collection.
pub fn children_selector(pool: &str) -> String {
    format!("{MANAGED_BY}={MANAGER},{POOL}={pool}")
}

/// The `/scale` selector string of a pool's agents.
pub fn selector_string(pool: &str) -> String {
    pool_selector(pool).iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(",")
}
