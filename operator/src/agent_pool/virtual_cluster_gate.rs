//! Whether a pool may apply its VirtualCluster's settings to its agents. Pure.
//!
//! The agents' configuration is built from the VirtualCluster's spec, and only the VirtualCluster
//! controller checks that spec against the real etcd and bucket. So a pool applies a VirtualCluster
//! generation only once that controller has found it Ready. A spec edited a moment ago (its Ready
//! condition still describes the previous generation) or one that failed its check leaves the
//! agents on what the pool applied last, which is the last configuration found good; a pool that
//! never applied anything starts no agents on an unchecked configuration.

use crate::crd::virtual_cluster::VirtualCluster;
use crate::messages::shorten;
use kube::ResourceExt;

/// Condition reason on the pool while its VirtualCluster is not Ready.
pub const REASON: &str = "VirtualClusterNotReady";

/// Longest VirtualCluster name and reason quoted, so the message stays under 200 characters.
const MAX_NAME: usize = 48;
const MAX_REASON: usize = 30;

/// `Ok` when `cluster` is Ready for its current generation. Otherwise the pool's condition
/// message; `has_agents` says whether the pool applied a configuration before (its agents keep
/// it) or never did (none start).
pub fn check(cluster: &VirtualCluster, has_agents: bool) -> Result<(), String> {
    let ready = cluster.status.iter().flat_map(|status| &status.conditions).find(|condition| condition.type_ == "Ready");
    let name = shorten(&cluster.name_any(), MAX_NAME);
    let state = match ready {
        None => format!("VirtualCluster {name} has not been checked yet"),
        // The generation test is what keeps a broken edit off the agents: the watch wakes the pool
        // with the new spec before the VirtualCluster controller has probed it.
        Some(condition) if condition.observed_generation != cluster.metadata.generation => {
            format!("VirtualCluster {name} changed and is being checked")
        }
        Some(condition) if condition.status == "True" => return Ok(()),
        Some(condition) => format!("VirtualCluster {name} is not Ready ({})", shorten(&condition.reason, MAX_REASON)),
    };
    let consequence = if has_agents { "agents keep their last applied configuration" } else { "no agents start until it is Ready" };
    Err(format!("{state}: {consequence}; see its Ready condition"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::condition;
    use crate::crd::virtual_cluster::VirtualClusterStatus;

    fn cluster(generation: i64, ready: Option<(bool, &str, i64)>) -> VirtualCluster {
        let mut cluster: VirtualCluster =
            serde_yaml::from_str(include_str!("../../tests/fixtures/virtualcluster.yaml")).expect("the fixture parses");
        cluster.metadata.generation = Some(generation);
        cluster.status = ready.map(|(status, reason, observed)| VirtualClusterStatus {
            conditions: vec![condition(&[], "Ready", status, reason, "text", Some(observed))],
            ..Default::default()
        });
        cluster
    }

    #[test]
    fn a_virtual_cluster_ready_for_its_current_generation_lets_the_pool_apply() {
        assert_eq!(check(&cluster(3, Some((true, "Ready", 3))), true), Ok(()));
    }

    #[test]
    fn a_spec_edited_but_not_yet_checked_holds_the_pool_even_though_ready_is_still_true() {
        let message = check(&cluster(4, Some((true, "Ready", 3))), true).unwrap_err();
        assert_eq!(
            message,
            "VirtualCluster demo changed and is being checked: agents keep their last applied configuration; see its Ready condition"
        );
    }

    #[test]
    fn a_failing_virtual_cluster_is_named_with_its_reason_and_a_new_pool_starts_nothing() {
        let message = check(&cluster(2, Some((false, "EtcdUnreachable", 2))), false).unwrap_err();
        assert_eq!(
            message,
            "VirtualCluster demo is not Ready (EtcdUnreachable): no agents start until it is Ready; see its Ready condition"
        );
        assert!(check(&cluster(1, None), false).unwrap_err().contains("has not been checked yet"));
    }
}
