//! The etcd key layout of one virtual cluster. Everything lives under `<prefix>/vc/<name>/`, so
//! clusters sharing an etcd never see each other's keys.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLayout {
    root: String,
}

impl KeyLayout {
    pub fn new(prefix: &str, virtual_cluster: &str) -> Self {
        let prefix = prefix.trim_end_matches('/');
        Self { root: format!("{prefix}/vc/{virtual_cluster}") }
    }

    /// Every key of this virtual cluster starts with this (it ends with `/`, so `a` never
    /// matches `ab`). Deleting the virtual cluster deletes this prefix.
    pub fn root_prefix(&self) -> String {
        format!("{}/", self.root)
    }

    /// Written by the operator: who registered this virtual cluster, and with which config.
    pub fn registration(&self) -> String {
        format!("{}/registration", self.root)
    }

    /// Journal records: `log/<entry id>`, created once, ordered by their create revision.
    pub fn log_prefix(&self) -> String {
        format!("{}/log/", self.root)
    }

    pub fn log_key(&self, entry_id: &str) -> String {
        format!("{}/log/{entry_id}", self.root)
    }

    /// The latest snapshot: `{revision, object}`.
    pub fn snapshot_pointer(&self) -> String {
        format!("{}/snapshot", self.root)
    }

    /// Live agents: `agents/<node id>`, attached to each agent's lease.
    pub fn agents_prefix(&self) -> String {
        format!("{}/agents/", self.root)
    }

    pub fn agent_key(&self, node_id: i32) -> String {
        format!("{}/agents/{node_id:010}", self.root)
    }

    /// The claim of the agent currently running background jobs, attached to its lease.
    pub fn jobs_leader(&self) -> String {
        format!("{}/jobs/leader", self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_virtual_cluster_share_one_root() {
        let keys = KeyLayout::new("/floe/", "payments");
        assert_eq!(keys.log_key("01J"), "/floe/vc/payments/log/01J");
        assert_eq!(keys.agent_key(7), "/floe/vc/payments/agents/0000000007");
        assert!(keys.agent_key(7).starts_with(&keys.agents_prefix()));
        assert!(keys.log_key("x").starts_with(&keys.log_prefix()));
    }
}
