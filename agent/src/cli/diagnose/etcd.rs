//! The etcd checks: each endpoint's health (answers, has a leader, no alarm), latency and database
//! size against its quota; then the virtual cluster's journal, replayed read-only (snapshot plus
//! tail) for the metadata version and the last revision the agents are measured against.
//! Measuring does the I/O; [`judge`] decides, without I/O.

use super::{human_bytes, human_duration, Check};
use crate::metadata::etcd::{self, EtcdSettings};
use crate::metadata::keys::KeyLayout;
use crate::metadata::replica::Replica;
use crate::storage::SegmentStore;
use etcd_client::{AlarmAction, AlarmType, GetOptions};
use floe_meta::messages::plain_cause;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How strict the member checks are.
pub struct Limits {
    pub max_latency: Duration,
    /// Quota assumed for members that do not report theirs.
    pub quota_bytes: u64,
    /// Share of the quota past which the size check fails.
    pub quota_share: f64,
    pub timeout: Duration,
}

/// One check per etcd endpoint, measured side by side, and whether any endpoint answered (one
/// that answered but failed a limit still serves the checks that read etcd).
pub async fn members(settings: &EtcdSettings, limits: &Limits) -> (Vec<Check>, bool) {
    let measured = futures::future::join_all(settings.endpoints.iter().map(|endpoint| member(settings, endpoint, limits))).await;
    let answered = measured.iter().any(|(_, answered)| *answered);
    (measured.into_iter().map(|(check, _)| check).collect(), answered)
}

/// `10.0.0.1:2379`, without the scheme `connect` dials.
fn display(endpoint: &str) -> &str {
    endpoint.split_once("://").map_or(endpoint, |(_, address)| address)
}

/// The endpoint's check, and whether it answered at all.
async fn member(settings: &EtcdSettings, endpoint: &str, limits: &Limits) -> (Check, bool) {
    let name = format!("etcd {}", display(endpoint));
    let single = EtcdSettings { endpoints: vec![endpoint.to_string()], ..settings.clone() };
    let check = match tokio::time::timeout(limits.timeout, measure(&single)).await {
        Ok(Ok(health)) => return (judge(name, &health, limits), true),
        Ok(Err(cause)) => Check::fail(
            name,
            format!(
                "did not answer: {cause}; check that etcd runs there and that --metadata (FLOE_METADATA) names the right \
                 endpoints (and --etcd-ca-file, --etcd-user if it needs TLS or a login)"
            ),
        ),
        Err(_) => Check::fail(
            name,
            format!(
                "did not answer within {}; check that etcd runs there, the network path to it, and --metadata (FLOE_METADATA)",
                human_duration(limits.timeout)
            ),
        ),
    };
    (check, false)
}

/// What one endpoint said about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub version: String,
    /// Member id of the leader; 0 when the member knows none (no quorum).
    pub leader: u64,
    pub database_bytes: u64,
    /// The member's quota, when it reports one (etcd 3.6+).
    pub quota_bytes: Option<u64>,
    pub errors: Vec<String>,
    /// Active alarms of the cluster (`NOSPACE`, `CORRUPT`); `None` when they could not be read.
    pub alarms: Option<Vec<String>>,
    pub status_latency: Duration,
    /// A linearizable read: goes through the leader, as the agents' journal appends do.
    pub read_latency: Duration,
}

async fn measure(settings: &EtcdSettings) -> Result<Health, String> {
    let mut client = etcd::connect(settings).await.map_err(|error| plain_cause(&error))?;
    let started = Instant::now();
    let status = client.status().await.map_err(|error| plain_cause(&error))?;
    let status_latency = started.elapsed();
    let started = Instant::now();
    client.get(settings.prefix.as_str(), Some(GetOptions::new().with_count_only())).await.map_err(|error| plain_cause(&error))?;
    let read_latency = started.elapsed();
    // Reading alarms needs the root role when etcd enforces authentication: not being allowed to
    // is no fault of etcd's.
    let alarms = client.alarm(AlarmAction::Get, AlarmType::None, None).await.ok().map(|response| {
        response.alarms().iter().map(|alarm| format!("{} on member {:x}", alarm.alarm().as_str_name(), alarm.member_id())).collect()
    });
    Ok(Health {
        version: status.version().to_string(),
        leader: status.leader(),
        database_bytes: status.db_size().max(0) as u64,
        quota_bytes: (status.db_size_quota() > 0).then_some(status.db_size_quota() as u64),
        errors: status.errors().to_vec(),
        alarms,
        status_latency,
        read_latency,
    })
}

/// Pure: the verdict on one endpoint's health.
pub fn judge(name: String, health: &Health, limits: &Limits) -> Check {
    let quota = health.quota_bytes.unwrap_or(limits.quota_bytes);
    let share = health.database_bytes as f64 / quota.max(1) as f64;
    let slowest = health.status_latency.max(health.read_latency);
    let mut problems = Vec::new();
    if health.leader == 0 {
        problems.push("has no leader (no quorum): nothing can be written; bring a majority of its members back".to_string());
    }
    if let Some(alarms) = health.alarms.as_ref().filter(|alarms| !alarms.is_empty()) {
        problems.push(format!(
            "has alarms raised ({}): with NOSPACE etcd refuses every write; free space (`etcdctl compact`, `etcdctl defrag`), \
             then `etcdctl alarm disarm`",
            alarms.join(", ")
        ));
    }
    if !health.errors.is_empty() {
        problems.push(format!("reports errors: {}; see the etcd member's log", health.errors.join("; ")));
    }
    if share > limits.quota_share {
        problems.push(format!(
            "database is {}, {:.0} % of its {} quota: at the quota etcd refuses every write; check that the jobs agent's \
             snapshots trim the journal (--snapshot-interval), defragment (`etcdctl defrag`) or raise --quota-backend-bytes",
            human_bytes(health.database_bytes),
            share * 100.0,
            human_bytes(quota)
        ));
    }
    if slowest > limits.max_latency {
        problems.push(format!(
            "answered in {}, slower than --max-etcd-latency {}: every produce waits for an etcd commit; check etcd's disk \
             (fsync latency) and network",
            human_duration(slowest),
            human_duration(limits.max_latency)
        ));
    }
    if !problems.is_empty() {
        return Check::fail(name, problems.join("; "));
    }
    let quota_source = if health.quota_bytes.is_some() { "its" } else { "the --etcd-quota-bytes" };
    let alarms = if health.alarms.is_some() { "no alarms" } else { "alarms not readable (needs the root role)" };
    Check::pass(
        name,
        format!(
            "etcd {}, leader {:x}, {alarms}, database {}, {:.1} % of {quota_source} {} quota, status in {}, linearizable read in {}",
            health.version,
            health.leader,
            human_bytes(health.database_bytes),
            share * 100.0,
            human_bytes(quota),
            human_duration(health.status_latency),
            human_duration(health.read_latency)
        ),
    )
}

/// The virtual cluster's journal as etcd holds it: what the agents and fsck are checked against.
pub struct Journal {
    pub replica: Arc<Replica>,
    /// The cluster's metadata version: the highest a `SetMetadataVersion` record raised it to.
    pub metadata_version: u32,
    /// Revision of the last record (or snapshot) replayed.
    pub revision: u64,
    /// This build could not apply the journal past a version change (the cluster is newer).
    pub halted: bool,
}

/// Replays the journal read-only. The check fails when the journal is empty (no agent ever ran
/// with these flags) or newer than this build.
pub async fn journal(settings: &EtcdSettings, keys: &KeyLayout, store: &Arc<SegmentStore>, timeout: Duration) -> (Check, Option<Journal>) {
    let replica = Arc::new(Replica::new());
    let replay = async {
        let mut client = etcd::connect(settings).await.map_err(|error| error.to_string())?;
        etcd::load(client.clone(), keys.clone(), Arc::clone(&replica), Arc::clone(store)).await.map_err(|error| error.to_string())?;
        let tail = client.get(keys.log_prefix(), Some(GetOptions::new().with_prefix().with_count_only())).await;
        Ok::<_, String>(tail.map(|response| response.count()).unwrap_or_default())
    };
    let tail = match tokio::time::timeout(timeout, replay).await {
        Ok(Ok(tail)) => tail,
        Ok(Err(cause)) => {
            return (
                Check::fail(
                    "journal",
                    format!("could not be replayed: {cause}; a snapshot the bucket cannot serve stops every new agent too"),
                ),
                None,
            )
        }
        Err(_) => return (Check::fail("journal", format!("could not be replayed within {}", human_duration(timeout))), None),
    };
    let (cluster_id, metadata_version, halted_at_version, topics) =
        replica.read(|state| (state.cluster_id.clone(), state.metadata_version, state.halted_at_version, state.topics.len()));
    let topics = super::counted(topics, "topic");
    let tail = super::counted(tail.max(0) as usize, "record");
    let Some(cluster_id) = cluster_id else {
        return (
            Check::fail(
                "journal",
                format!(
                    "is empty under {}: no agent has ever run with this --virtual-cluster and etcd prefix; check both against the agents' flags",
                    keys.log_prefix()
                ),
            ),
            None,
        );
    };
    let revision = replica.applied_revision();
    let journal =
        Journal { replica, metadata_version: halted_at_version.unwrap_or(metadata_version), revision, halted: halted_at_version.is_some() };
    let check = match halted_at_version {
        Some(version) => Check::fail(
            "journal",
            format!(
                "is at metadata version {version}, newer than this floe diagnose ({} implements up to {}); run diagnose from the \
                 agents' build",
                crate::VERSION,
                crate::metadata::SUPPORTED_METADATA_VERSION
            ),
        ),
        None => Check::pass(
            "journal",
            format!(
                "cluster id {cluster_id}, metadata version {metadata_version}, {topics}, replayed through revision {revision} \
                 ({tail} in etcd since the last snapshot)"
            ),
        ),
    };
    (check, Some(journal))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_latency: Duration::from_secs(1), quota_bytes: 2 << 30, quota_share: 0.8, timeout: Duration::from_secs(10) }
    }

    fn healthy() -> Health {
        Health {
            version: "3.5.17".into(),
            leader: 0x8e9e05c52164694d,
            database_bytes: 20 << 10,
            quota_bytes: None,
            errors: vec![],
            alarms: Some(vec![]),
            status_latency: Duration::from_millis(2),
            read_latency: Duration::from_millis(3),
        }
    }

    #[test]
    fn a_healthy_member_passes_with_its_size_against_the_quota() {
        let check = judge("etcd a:2379".into(), &healthy(), &limits());
        assert_eq!(check.outcome, super::super::Outcome::Pass, "{check:?}");
        assert!(check.detail.contains("20.0 KiB, 0.0 % of the --etcd-quota-bytes 2.0 GiB quota"), "{}", check.detail);
    }

    #[test]
    fn a_database_near_its_quota_fails_naming_size_quota_and_remedies() {
        let full = Health { database_bytes: 1_800 << 20, ..healthy() };
        let check = judge("etcd a:2379".into(), &full, &limits());
        assert_eq!(check.outcome, super::super::Outcome::Fail);
        assert!(check.detail.contains("1.8 GiB, 88 % of its 2.0 GiB quota") && check.detail.contains("defrag"), "{}", check.detail);
        // A member that reports its own quota (etcd 3.6+) is measured against it.
        let roomy = Health { quota_bytes: Some(8 << 30), ..full };
        assert_eq!(judge("etcd a:2379".into(), &roomy, &limits()).outcome, super::super::Outcome::Pass);
    }

    #[test]
    fn no_leader_an_alarm_or_a_slow_answer_each_fail_with_what_to_do() {
        for (health, expected) in [
            (Health { leader: 0, ..healthy() }, "no quorum"),
            (Health { alarms: Some(vec!["NOSPACE on member 1".into()]), ..healthy() }, "alarm disarm"),
            (Health { read_latency: Duration::from_millis(1_500), ..healthy() }, "answered in 1.5s, slower than --max-etcd-latency 1s"),
        ] {
            let check = judge("etcd a:2379".into(), &health, &limits());
            assert_eq!(check.outcome, super::super::Outcome::Fail);
            assert!(check.detail.contains(expected), "{}", check.detail);
        }
    }
}
