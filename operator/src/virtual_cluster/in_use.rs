//! The deletion rule for a VirtualCluster that AgentPools still use, as Kubernetes protects a
//! PersistentVolumeClaim a pod mounts: the deletion waits (the finalizer stays) while any AgentPool
//! in its namespace names it, even one that is itself being deleted, because those pools' agents
//! still run on its etcd and bucket. Once none is left, `deletionPolicy` runs. Removing the pools
//! for the user instead would turn one mistaken `kubectl delete` into an outage.

use crate::crd::agent_pool::AgentPool;
use crate::crd::virtual_cluster::VirtualCluster;
use crate::messages::shorten;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

/// Condition type on the VirtualCluster while its deletion waits.
pub const CONDITION: &str = "Deleting";
/// Condition reason and event reason while AgentPools still use it.
pub const REASON: &str = "AgentPoolsRemain";

/// Names of the AgentPools in `cluster`'s namespace that reference it, sorted. I/O.
pub async fn referencing_pools(client: &Client, cluster: &VirtualCluster) -> Result<Vec<String>, kube::Error> {
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let name = cluster.name_any();
    let mut names: Vec<String> = pools
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|pool| pool.spec.virtual_cluster_ref.name == name)
        .map(|pool| pool.name_any())
        .collect();
    names.sort();
    Ok(names)
}

/// The condition message: which pools to delete first (the first three, then a count, so the
/// message stays under 200 characters). `pools` is not empty.
pub fn message(pools: &[String]) -> String {
    let shown: Vec<String> = pools.iter().take(3).map(|pool| shorten(pool, 30)).collect();
    let more = match pools.len() {
        0..=3 => String::new(),
        count => format!(" and {} more", count - 3),
    };
    let noun = if pools.len() == 1 { "AgentPool" } else { "AgentPools" };
    format!("deletion waits for {noun} {}{more} that use this VirtualCluster; delete them first", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_pools_to_delete_first() {
        assert_eq!(message(&["agents".to_string()]), "deletion waits for AgentPool agents that use this VirtualCluster; delete them first");
        let many: Vec<String> = (0..12).map(|index| format!("clickstream-events-eu-west-1-pool-number-{index:02}")).collect();
        let long = message(&many);
        assert!(long.contains(" and 9 more that use"), "{long}");
        assert!(long.chars().count() < 200, "{} characters: {long}", long.chars().count());
    }
}
