//! A virtual cluster's registration in etcd, and what an operator reads back or removes.
//!
//! The operator writes `registration` under the cluster's root when it accepts a VirtualCluster:
//! the id (the custom resource's uid) and the config agents are started with. Agents do not need
//! it to run; it records who owns the prefix, so a second VirtualCluster pointing at the same
//! prefix is refused instead of silently sharing a journal. Everything here is one etcd request
//! or a read-only replay; nothing is written to the bucket.

use crate::bucket::SegmentStore;
use crate::etcd::{self, Created, EtcdError};
use crate::keys::KeyLayout;
use crate::replica::Replica;
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the operator records about a virtual cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The VirtualCluster's uid: stable for the resource's life, new if it is recreated.
    pub id: String,
    /// `namespace/name` of the VirtualCluster, for people reading etcd.
    pub owner: String,
    /// The config agents of this virtual cluster run with (object store URL, topic defaults, …).
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterOutcome {
    Created,
    /// The same registration was already there: nothing was written.
    Unchanged,
    Updated,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("etcd request failed: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("the etcd key {key} is already registered to {owner} (id {id}); give this virtual cluster another prefix or name")]
    OwnedByAnother { key: String, owner: String, id: String },
    #[error("the etcd key {key} holds a malformed registration: {reason}")]
    Malformed { key: String, reason: String },
}

/// Writes `registration` unless it already holds exactly this value. A registration with another
/// owner is refused; one with the same owner and another id (the resource was deleted with
/// `Retain` and recreated) is taken over, which is what Retain is for.
pub async fn register(client: &mut Client, keys: &KeyLayout, registration: &Registration) -> Result<RegisterOutcome, RegistrationError> {
    let key = keys.registration();
    let value =
        serde_json::to_vec(registration).map_err(|error| RegistrationError::Malformed { key: key.clone(), reason: error.to_string() })?;
    let existing = client.get(key.clone(), None).await?;
    let Some(kv) = existing.kvs().first() else {
        // Create-only, so two operators racing cannot both believe they created it.
        return match crate::etcd::create_if_absent(client, &key, value).await? {
            Created::Now { .. } | Created::Already(None) => Ok(RegisterOutcome::Created),
            Created::Already(Some(kv)) => {
                let current = parse(&key, kv.value())?;
                if current == *registration {
                    Ok(RegisterOutcome::Unchanged)
                } else {
                    refuse_or_update(client, &key, &current, registration, kv.mod_revision()).await
                }
            }
        };
    };
    let current = parse(&key, kv.value())?;
    if current == *registration {
        return Ok(RegisterOutcome::Unchanged);
    }
    refuse_or_update(client, &key, &current, registration, kv.mod_revision()).await
}

async fn refuse_or_update(
    client: &mut Client,
    key: &str,
    current: &Registration,
    wanted: &Registration,
    mod_revision: i64,
) -> Result<RegisterOutcome, RegistrationError> {
    if current.owner != wanted.owner {
        return Err(RegistrationError::OwnedByAnother { key: key.to_string(), owner: current.owner.clone(), id: current.id.clone() });
    }
    let value =
        serde_json::to_vec(wanted).map_err(|error| RegistrationError::Malformed { key: key.to_string(), reason: error.to_string() })?;
    // Only if nobody changed it since we read it; otherwise the next reconcile decides again.
    let txn = Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)]).and_then([TxnOp::put(key, value, None)]);
    client.txn(txn).await?;
    Ok(RegisterOutcome::Updated)
}

pub(crate) fn parse(key: &str, value: &[u8]) -> Result<Registration, RegistrationError> {
    serde_json::from_slice(value).map_err(|error| RegistrationError::Malformed { key: key.to_string(), reason: error.to_string() })
}

/// Reads the registration, if any.
pub async fn read(client: &mut Client, keys: &KeyLayout) -> Result<Option<Registration>, RegistrationError> {
    let key = keys.registration();
    let response = client.get(key.clone(), None).await?;
    response.kvs().first().map(|kv| parse(&key, kv.value())).transpose()
}

/// Deletes every key of the virtual cluster (journal, snapshot pointer, registry, registration).
/// Returns how many keys were deleted.
pub async fn delete_all_keys(client: &mut Client, keys: &KeyLayout) -> Result<i64, RegistrationError> {
    let response = client.delete(keys.root_prefix(), Some(DeleteOptions::new().with_prefix())).await?;
    Ok(response.deleted())
}

/// Deletes the virtual cluster's keys except those under `kept` (roots of other virtual clusters
/// whose prefix lies inside this one's). Returns how many keys were deleted.
pub async fn delete_keys_outside(client: &mut Client, keys: &KeyLayout, kept: &[String]) -> Result<i64, RegistrationError> {
    let listing = client.get(keys.root_prefix(), Some(GetOptions::new().with_prefix().with_keys_only())).await?;
    let doomed: Vec<Vec<u8>> =
        listing.kvs().iter().map(|kv| kv.key().to_vec()).filter(|key| !kept.iter().any(|root| key.starts_with(root.as_bytes()))).collect();
    let mut deleted = 0;
    // etcd allows at most 128 operations per transaction.
    for chunk in doomed.chunks(100) {
        let txn = Txn::new().and_then(chunk.iter().map(|key| TxnOp::delete(key.clone(), None)).collect::<Vec<_>>());
        client.txn(txn).await?;
        deleted += chunk.len() as i64;
    }
    Ok(deleted)
}

/// Why an agent started for one VirtualCluster must not join a journal registered to another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the etcd key {key} registers this prefix to VirtualCluster {owner} (id {registered}), but this agent was started for \
     VirtualCluster id {expected} (--virtual-cluster-uid); refusing to join another virtual cluster's journal. Point the \
     agent at its own --metadata prefix or --virtual-cluster, or, if {owner} is gone and its data is to be taken over, \
     delete that key"
)]
pub struct ForeignRegistration {
    pub key: String,
    pub owner: String,
    pub registered: String,
    pub expected: String,
}

/// Pure: may an agent started for VirtualCluster `expected` (its uid) use the journal whose
/// registration is `registered`? No registration yet (the operator has not written it, or the
/// cluster is run by hand) is allowed; so is the same id.
pub fn check_owner(key: &str, registered: Option<&Registration>, expected: &str) -> Result<(), ForeignRegistration> {
    match registered {
        Some(registration) if registration.id != expected => Err(ForeignRegistration {
            key: key.to_string(),
            owner: registration.owner.clone(),
            registered: registration.id.clone(),
            expected: expected.to_string(),
        }),
        _ => Ok(()),
    }
}

/// At an agent's start: reads the registration and refuses one owned by another VirtualCluster.
pub async fn check_at_start(client: &mut Client, keys: &KeyLayout, expected: &str) -> Result<(), StartCheckError> {
    let registered = read(client, keys).await?;
    if registered.is_none() {
        tracing::info!(key = keys.registration(), "no registration yet; starting (the operator writes it)");
    }
    check_owner(&keys.registration(), registered.as_ref(), expected)?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StartCheckError {
    #[error("failed to read the virtual cluster's registration: {0}")]
    Read(#[from] RegistrationError),
    #[error(transparent)]
    Foreign(#[from] ForeignRegistration),
}

/// Counts the keys under the virtual cluster's root (0 once it is deleted).
pub async fn count_keys(client: &mut Client, keys: &KeyLayout) -> Result<i64, RegistrationError> {
    let response = client.get(keys.root_prefix(), Some(GetOptions::new().with_prefix().with_count_only())).await?;
    Ok(response.count())
}

/// What a status page shows about a virtual cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterStats {
    pub topics: i64,
    pub partitions: i64,
    /// Bytes the index references (what a consumer could read), not counting unreferenced objects.
    pub stored_bytes: i64,
    pub agents: i64,
    pub draining_agents: i64,
}

/// Replays the metadata read-only (snapshot plus journal tail) and counts the live agents.
pub async fn stats(client: &Client, keys: &KeyLayout, store: Arc<SegmentStore>) -> Result<ClusterStats, EtcdError> {
    let replica = Arc::new(Replica::new());
    etcd::load(client.clone(), keys.clone(), Arc::clone(&replica), store).await?;
    let mut stats = replica.read(|state| {
        let mut stats = ClusterStats { topics: state.topics.len() as i64, ..ClusterStats::default() };
        for topic in state.topics.values() {
            stats.partitions += topic.partitions.len() as i64;
            for partition in &topic.partitions {
                stats.stored_bytes += partition.chunks.iter().map(|chunk| chunk.byte_len as i64).sum::<i64>();
            }
        }
        stats
    });
    let agents = client.clone().get(keys.agents_prefix(), Some(GetOptions::new().with_prefix())).await?;
    for kv in agents.kvs() {
        stats.agents += 1;
        if let Ok(record) = crate::agents::AgentRecord::decode(kv.value()) {
            if record.draining {
                stats.draining_agents += 1;
            }
        }
    }
    Ok(stats)
}

/// The records of the live agents (an expired agent's key is gone with its lease); unreadable
/// values are skipped. Needs etcd only, not the bucket.
pub async fn agent_records(client: &Client, keys: &KeyLayout) -> Result<Vec<crate::agents::AgentRecord>, EtcdError> {
    let agents = client.clone().get(keys.agents_prefix(), Some(GetOptions::new().with_prefix())).await?;
    Ok(agents.kvs().iter().filter_map(|kv| crate::agents::AgentRecord::decode(kv.value()).ok()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(id: &str) -> Registration {
        Registration { id: id.to_string(), owner: "team-a/demo".to_string(), config: BTreeMap::new() }
    }

    #[test]
    fn an_agent_joins_a_journal_without_a_registration_or_registered_to_its_own_uid() {
        assert_eq!(check_owner("/floe/vc/team-a.demo/registration", None, "uid-1"), Ok(()));
        assert_eq!(check_owner("/floe/vc/team-a.demo/registration", Some(&registration("uid-1")), "uid-1"), Ok(()));
    }

    #[test]
    fn an_agent_refuses_a_journal_registered_to_another_uid_naming_key_owner_and_both_ids() {
        let error = check_owner("/floe/vc/team-a.demo/registration", Some(&registration("uid-1")), "uid-2").unwrap_err();
        let message = error.to_string();
        for part in ["/floe/vc/team-a.demo/registration", "team-a/demo", "uid-1", "uid-2", "--virtual-cluster-uid"] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
    }
}
