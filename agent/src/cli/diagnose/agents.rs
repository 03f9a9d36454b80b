//! The agent checks, for every agent in the etcd registry: reachable (its Kafka listener accepts
//! connections and its HTTP `/status` answers as the same node), its metadata version against the
//! journal's, how far it has applied the journal, and its wall clock against this host's.
//!
//! The registry record gives what is fixed for the agent's life (addresses, build, the metadata
//! version it implements), so that check works even for an agent this host cannot reach;
//! `/status` gives what moves (applied revision, clock). Measuring does the I/O; the `judge_*`
//! functions decide, without I/O.

use super::etcd::Journal;
use super::{human_duration, Check};
use crate::cluster::registry::AgentRecord;
use crate::http::status::AgentStatus;
use crate::metadata::etcd::{self, EtcdSettings};
use crate::metadata::keys::KeyLayout;
use etcd_client::{Client, GetOptions};
use floe_meta::messages::plain_cause;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How strict the agent checks are.
pub struct Limits {
    pub max_clock_offset: Duration,
    pub max_journal_lag: Duration,
    pub timeout: Duration,
}

/// How often a lagging agent's `/status` is asked again while it catches up.
const LAG_POLL: Duration = Duration::from_millis(100);

/// The registry listing, then every agent's checks (agents side by side, sorted by node id).
pub async fn check_all(settings: &EtcdSettings, keys: &KeyLayout, journal: Option<&Journal>, limits: &Limits) -> Vec<Check> {
    let listed = async {
        let mut client = etcd::connect(settings).await.map_err(|error| plain_cause(&error))?;
        let listing = client.get(keys.agents_prefix(), Some(GetOptions::new().with_prefix())).await.map_err(|error| plain_cause(&error))?;
        Ok::<_, String>((client, listing))
    };
    let (client, listing) = match tokio::time::timeout(limits.timeout, listed).await {
        Ok(Ok(listed)) => listed,
        Ok(Err(cause)) => {
            return vec![Check::fail("agents", format!("the registry under {} could not be read: {cause}", keys.agents_prefix()))]
        }
        Err(_) => return vec![Check::fail("agents", format!("the registry could not be read within {}", human_duration(limits.timeout)))],
    };
    let mut checks = Vec::new();
    let mut records = Vec::new();
    for kv in listing.kvs() {
        match AgentRecord::decode(kv.value()) {
            Ok(record) => records.push(record),
            Err(error) => checks.push(Check::fail(
                "agents",
                format!("the value under {} is not an agent record ({error}); delete the key", String::from_utf8_lossy(kv.key())),
            )),
        }
    }
    records.sort_by_key(|record| record.node_id);
    if records.is_empty() {
        checks.push(Check::fail(
            "agents",
            format!(
                "no agent is registered under {}: nothing serves this virtual cluster; start agents, or check --virtual-cluster \
                 and the etcd prefix in --metadata against the agents' flags",
                keys.agents_prefix()
            ),
        ));
        return checks;
    }
    let draining = records.iter().filter(|record| record.draining).count();
    let ids: Vec<String> = records.iter().map(|record| record.node_id.to_string()).collect();
    let registered = super::counted(records.len(), "agent");
    checks.push(Check::pass("agents", format!("{registered} registered (node ids {}), {draining} draining", ids.join(", "))));
    let shared = Shared {
        http: reqwest::Client::builder().timeout(limits.timeout).build().unwrap_or_default(),
        etcd: client,
        keys,
        journal,
        limits,
    };
    let each = records.iter().map(|record| check_one(record, &shared));
    checks.extend(futures::future::join_all(each).await.into_iter().flatten());
    checks
}

/// One answer of `/status`, timed: `sent` by this host's wall clock, `round_trip` by its
/// monotonic clock.
#[derive(Debug, Clone)]
pub struct Sample {
    pub status: AgentStatus,
    pub sent: SystemTime,
    pub round_trip: Duration,
}

/// What the checks of every agent use.
struct Shared<'a> {
    http: reqwest::Client,
    etcd: Client,
    keys: &'a KeyLayout,
    journal: Option<&'a Journal>,
    limits: &'a Limits,
}

async fn check_one(record: &AgentRecord, shared: &Shared<'_>) -> Vec<Check> {
    let limits = shared.limits;
    let kafka = format!("{}:{}", record.host, record.port);
    let connected = match tokio::time::timeout(limits.timeout, tokio::net::TcpStream::connect(kafka.as_str())).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(plain_cause(&error)),
        Err(_) => Err(format!("no answer within {}", human_duration(limits.timeout))),
    };
    let sample = match &record.http {
        Some(address) => fetch(&shared.http, address).await,
        None => Err("its registry record names no HTTP address (written by a floe build older than diagnose)".to_string()),
    };
    let mut checks = vec![judge_reachable(record, &kafka, &connected, &sample)];
    checks.push(judge_version(record, sample.as_ref().ok().map(|sample| &sample.status), shared.journal));
    let Ok(sample) = sample else {
        let name = |what: &str| format!("agent {} {what}", record.node_id);
        checks.push(Check::skip(name("journal lag"), "not checked: /status did not answer"));
        checks.push(Check::skip(name("clock"), "not checked: /status did not answer"));
        return checks;
    };
    checks.push(match shared.journal {
        Some(journal) => lag(record, &sample, journal, shared).await,
        None => Check::skip(format!("agent {} journal lag", record.node_id), "not checked: the journal could not be replayed"),
    });
    checks.push(judge_clock(record.node_id, &sample, limits.max_clock_offset));
    checks
}

async fn fetch(http: &reqwest::Client, address: &str) -> Result<Sample, String> {
    let url = format!("http://{address}/status");
    let sent = SystemTime::now();
    let started = Instant::now();
    let response = http.get(&url).send().await.map_err(|error| plain_cause(&error))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|error| plain_cause(&error))?;
    let round_trip = started.elapsed();
    if !status.is_success() {
        return Err(format!("{url} answered {status} (a floe build older than diagnose has no /status)"));
    }
    let status =
        serde_json::from_slice(&body).map_err(|error| format!("{url} answered something that is not an agent status ({error})"))?;
    Ok(Sample { status, sent, round_trip })
}

/// Pure: reachable when the Kafka listener accepts a connection and `/status` answers as this node.
pub fn judge_reachable(record: &AgentRecord, kafka: &str, connected: &Result<(), String>, sample: &Result<Sample, String>) -> Check {
    let name = format!("agent {} reachable", record.node_id);
    let http = record.http.as_deref().unwrap_or("(none)");
    let mut problems = Vec::new();
    if let Err(cause) = connected {
        problems.push(format!(
            "its Kafka address {kafka} (advertised) does not accept connections: {cause}; clients cannot reach it either: check \
             that it runs and its --advertise"
        ));
    }
    match sample {
        Err(cause) => {
            problems.push(format!("its HTTP /status at {http} did not answer: {cause}; check that it runs and its --http-listen"))
        }
        Ok(sample) if sample.status.node_id != record.node_id => problems.push(format!(
            "{http} answers as node {}: the address in the registry record is another agent's; restart the agent of node {}",
            sample.status.node_id, record.node_id
        )),
        Ok(_) => {}
    }
    if !problems.is_empty() {
        return Check::fail(name, problems.join("; "));
    }
    let mut detail = format!("Kafka {kafka} accepts connections, HTTP {http} answers");
    if let Some(pod) = &record.pod {
        detail.push_str(&format!(", pod {pod}"));
    }
    if record.draining {
        detail.push_str(", draining (leaving the cluster)");
    }
    Check::pass(name, detail)
}

/// Pure: the agent implements the journal's metadata version and has not halted.
pub fn judge_version(record: &AgentRecord, status: Option<&AgentStatus>, journal: Option<&Journal>) -> Check {
    let name = format!("agent {} metadata version", record.node_id);
    let build = status.map(|status| status.version.clone()).or_else(|| record.version.clone()).unwrap_or_else(|| "unknown".to_string());
    let supported = status.map(|status| status.supported_metadata_version).or(record.supported_metadata_version);
    if let Some(halted) = status.and_then(|status| status.halted_at_version) {
        return Check::fail(
            name,
            format!(
                "halted at metadata version {halted}, which its build (floe {build}, up to version {}) does not implement: it \
                 applies no further journal record and serves stale metadata; upgrade it",
                supported.unwrap_or_default()
            ),
        );
    }
    let Some(supported) = supported else {
        return Check::fail(
            name,
            "cannot tell which metadata version it implements: its registry record has none (a floe build older than \
             diagnose) and its /status did not answer; upgrade it",
        );
    };
    let Some(journal) = journal else {
        return Check::skip(
            name,
            format!("floe {build}, implements up to version {supported}; not compared: the journal could not be replayed"),
        );
    };
    if supported < journal.metadata_version {
        return Check::fail(
            name,
            format!(
                "floe {build} implements metadata version {supported}, older than the cluster's journal (version {}): it halts at \
                 the version change and serves stale metadata; upgrade it to the build the other agents run",
                journal.metadata_version
            ),
        );
    }
    Check::pass(name, format!("floe {build}, implements up to version {supported}; the journal is at version {}", journal.metadata_version))
}

/// Whether the agent has applied the journal as far as this diagnose read it, waiting up to
/// `--max-journal-lag` for it to get there.
async fn lag(record: &AgentRecord, first: &Sample, journal: &Journal, shared: &Shared<'_>) -> Check {
    let name = format!("agent {} journal lag", record.node_id);
    let limits = shared.limits;
    // A sample exists only for a record with an HTTP address.
    let address = record.http.as_deref().unwrap_or_default();
    let started = Instant::now();
    let mut applied = first.status.applied_revision;
    while applied < journal.revision && started.elapsed() < limits.max_journal_lag {
        tokio::time::sleep(LAG_POLL).await;
        if let Ok(sample) = fetch(&shared.http, address).await {
            applied = applied.max(sample.status.applied_revision);
        }
    }
    if applied >= journal.revision {
        let waited = if first.status.applied_revision >= journal.revision {
            String::new()
        } else {
            format!(", after {}", human_duration(started.elapsed()))
        };
        return Check::pass(
            name,
            format!("applied the journal through revision {applied} (it ended at {} when read){waited}", journal.revision),
        );
    }
    let behind = records_between(&shared.etcd, shared.keys, applied, journal.revision).await;
    let behind = behind.map_or_else(|| "records".to_string(), |count| format!("{count} records"));
    Check::fail(
        name,
        format!(
            "applied the journal only through revision {applied}, {behind} behind revision {}, and did not catch up within \
             --max-journal-lag {}: it serves stale metadata; look in its log for journal watch errors, or restart it",
            journal.revision,
            human_duration(limits.max_journal_lag)
        ),
    )
}

/// Journal records created after `applied` and up to `through`.
async fn records_between(etcd: &Client, keys: &KeyLayout, applied: u64, through: u64) -> Option<i64> {
    let options = GetOptions::new()
        .with_prefix()
        .with_count_only()
        .with_min_create_revision(applied as i64 + 1)
        .with_max_create_revision(through as i64);
    etcd.clone().get(keys.log_prefix(), Some(options)).await.ok().map(|response| response.count())
}

/// Pure: the agent's wall clock against this host's, NTP-style: the agent read its clock
/// somewhere within the round trip, so the offset is taken from the middle and is uncertain by
/// half the round trip; only an offset beyond the limit plus that uncertainty fails.
pub fn judge_clock(node_id: i32, sample: &Sample, max_offset: Duration) -> Check {
    let name = format!("agent {node_id} clock");
    let middle = sample.sent + sample.round_trip / 2;
    let ours = middle.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    let offset_ms = sample.status.unix_time_ms as i64 - ours;
    let uncertainty = sample.round_trip / 2;
    let offset = Duration::from_millis(offset_ms.unsigned_abs());
    let direction = if offset_ms >= 0 { "ahead of" } else { "behind" };
    let measured = format!("{} {direction} this host's (±{})", human_duration(offset), human_duration(uncertainty));
    if offset > max_offset + uncertainty {
        return Check::fail(
            name,
            format!(
                "its wall clock is {measured}, more than --max-clock-offset {}: record timestamps, time-based retention, \
                 transaction timeouts and token expiry read it; fix time sync (NTP, chrony) on its node, or on this host if \
                 every agent is off alike",
                human_duration(max_offset)
            ),
        );
    }
    Check::pass(name, format!("its wall clock is {measured}, within --max-clock-offset {}", human_duration(max_offset)))
}

#[cfg(test)]
mod tests {
    use super::super::Outcome;
    use super::*;
    use crate::metadata::replica::Replica;
    use crate::metadata::SUPPORTED_METADATA_VERSION;
    use std::sync::Arc;

    fn record(node_id: i32, supported: Option<u32>) -> AgentRecord {
        AgentRecord {
            node_id,
            host: "127.0.0.1".into(),
            port: 9092,
            version: supported.map(|_| "0.1.0".into()),
            supported_metadata_version: supported,
            http: Some("127.0.0.1:8080".into()),
            ..AgentRecord::default()
        }
    }

    fn journal(metadata_version: u32) -> Journal {
        Journal { replica: Arc::new(Replica::new()), metadata_version, revision: 10, halted: false }
    }

    fn status(node_id: i32, unix_time_ms: u64) -> AgentStatus {
        AgentStatus {
            node_id,
            version: "0.1.0".into(),
            supported_metadata_version: SUPPORTED_METADATA_VERSION,
            metadata_version: SUPPORTED_METADATA_VERSION,
            halted_at_version: None,
            applied_revision: 10,
            unix_time_ms,
        }
    }

    #[test]
    fn an_agent_implementing_an_older_metadata_version_than_the_journal_fails_and_is_told_to_upgrade() {
        let check = judge_version(&record(4, Some(6)), None, Some(&journal(7)));
        assert_eq!(check.outcome, Outcome::Fail);
        assert!(check.detail.contains("implements metadata version 6, older than the cluster's journal (version 7)"), "{}", check.detail);
        assert!(check.detail.contains("upgrade it"), "{}", check.detail);
        assert_eq!(judge_version(&record(4, Some(7)), None, Some(&journal(7))).outcome, Outcome::Pass);
        assert_eq!(judge_version(&record(4, None), None, Some(&journal(7))).outcome, Outcome::Fail, "an unknown version cannot pass");
        let halted = AgentStatus { halted_at_version: Some(8), ..status(4, 0) };
        assert!(judge_version(&record(4, Some(7)), Some(&halted), Some(&journal(8))).detail.contains("halted at metadata version 8"));
    }

    fn sample(agent_ms: u64, round_trip_ms: u64) -> Sample {
        Sample {
            status: status(2, agent_ms),
            sent: UNIX_EPOCH + Duration::from_millis(1_000_000),
            round_trip: Duration::from_millis(round_trip_ms),
        }
    }

    #[test]
    fn a_clock_is_judged_from_the_middle_of_the_round_trip_with_its_uncertainty() {
        let max = Duration::from_secs(30);
        let skewed = judge_clock(2, &sample(1_000_000 + 300_010, 20), max);
        assert_eq!(skewed.outcome, Outcome::Fail);
        assert!(skewed.detail.contains("5m 0s ahead of this host's (±10ms)") && skewed.detail.contains("NTP"), "{}", skewed.detail);
        let behind = judge_clock(2, &sample(1_000_000 - 31_000, 0), max);
        assert!(behind.outcome == Outcome::Fail && behind.detail.contains("31s behind"), "{}", behind.detail);
        assert_eq!(judge_clock(2, &sample(1_000_010, 20), max).outcome, Outcome::Pass);
        // 30.5 s off, but the answer took 2 s: it may be within the limit, so it passes.
        assert_eq!(judge_clock(2, &sample(1_000_000 + 1_000 + 30_500, 2_000), max).outcome, Outcome::Pass);
    }

    #[test]
    fn an_unreachable_agent_or_one_answering_as_another_node_fails_naming_the_address() {
        let refused = Err("connection refused".to_string());
        let check = judge_reachable(&record(3, Some(7)), "127.0.0.1:9092", &refused, &Ok(sample(0, 0)));
        assert!(check.outcome == Outcome::Fail && check.detail.contains("127.0.0.1:9092 (advertised)"), "{}", check.detail);
        let check = judge_reachable(&record(3, Some(7)), "127.0.0.1:9092", &Ok(()), &Ok(sample(0, 0)));
        assert!(check.outcome == Outcome::Fail && check.detail.contains("answers as node 2"), "{}", check.detail);
    }
}
