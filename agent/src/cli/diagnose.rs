//! `floe diagnose`: checks a running cluster from the outside and says, one line per check, what
//! passes and what is wrong with what to do about it. Exits 0 only when every check passes.
//!
//! The checks, in the order they run (a check that needs what failed is skipped, not failed
//! again, so the first FAIL is the one to fix):
//! 1. the bucket: PUT, GET, LIST, DELETE of a probe object ([`bucket`]), and each etcd endpoint's
//!    health, latency and database size ([`etcd`]), side by side;
//! 2. the journal: replayed from etcd (and its snapshot in the bucket) for the cluster's metadata
//!    version and last revision;
//! 3. every registered agent ([`agents`]): reachable, its build and metadata version against the
//!    journal's, how far it has applied the journal, its wall clock against this host's;
//! 4. fsck (`floe admin fsck`) of the bucket against the replayed journal.
//!
//! It takes the agent's own flags and environment (`FLOE_METADATA`, `FLOE_OBJECT_STORE`,
//! `FLOE_VIRTUAL_CLUSTER`, `AWS_*`, `FLOE_ETCD_*`), so it runs as is next to an agent, e.g. with
//! `kubectl exec`. This module orchestrates and prints; the submodules do the I/O.

mod agents;
mod bucket;
mod etcd;

use super::Output;
use crate::agent::ClusterSettings;
use crate::config::{parse_duration, parse_size, FsckArgs, MetadataUrl};
use crate::launch::{cluster_settings, s3_options};
use crate::metadata::keys::KeyLayout;
use crate::metadata::replica::Replica;
use crate::storage::{ObjectStoreUrl, SegmentStore};
use clap::Args;
use std::sync::Arc;
use std::time::Duration;

/// What `floe diagnose` checks and how strictly.
#[derive(Debug, Clone, Args)]
pub struct DiagnoseArgs {
    /// The cluster: `--metadata` (etcd), `--object-store`, `--virtual-cluster` and the etcd and
    /// S3 settings, as `floe agent` takes them.
    #[command(flatten)]
    pub cluster: FsckArgs,
    /// Fail an agent whose wall clock differs from this host's by more than this (beyond the
    /// request's own round trip).
    #[arg(long, env = "FLOE_DIAGNOSE_MAX_CLOCK_OFFSET", default_value = "30s", value_parser = parse_duration)]
    pub max_clock_offset: Duration,
    /// How long an agent may take to apply the last journal record etcd holds before it counts as
    /// lagging.
    #[arg(long, env = "FLOE_DIAGNOSE_MAX_JOURNAL_LAG", default_value = "5s", value_parser = parse_duration)]
    pub max_journal_lag: Duration,
    /// Fail an etcd endpoint whose status or linearizable read takes longer than this.
    #[arg(long, env = "FLOE_DIAGNOSE_MAX_ETCD_LATENCY", default_value = "1s", value_parser = parse_duration)]
    pub max_etcd_latency: Duration,
    /// etcd's storage quota (its --quota-backend-bytes) for members that do not report it (before
    /// etcd 3.6); the check fails above 80 % of the quota, before etcd starts refusing writes.
    #[arg(long, env = "FLOE_DIAGNOSE_ETCD_QUOTA_BYTES", default_value = "2GiB", value_parser = parse_size)]
    pub etcd_quota_bytes: usize,
    /// Bound of each network step: connecting, one bucket probe, one request to an agent.
    #[arg(long, env = "FLOE_DIAGNOSE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Leave fsck out: it reads every object the index references, long on a large bucket.
    #[arg(long, env = "FLOE_DIAGNOSE_SKIP_FSCK")]
    pub skip_fsck: bool,
    /// Output: one line per check, or one JSON object per check.
    #[arg(long, short = 'o', value_enum, default_value = "table")]
    pub output: Output,
}

/// Share of etcd's quota past which the database-size check fails: etcd refuses every write at
/// the quota, and the journal tail grows until the next snapshot.
const ETCD_QUOTA_SHARE: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail,
    /// Not run because a check it needs failed.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    /// What was found; for a failure, what is wrong and what to do.
    pub detail: String,
}

impl Check {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Pass, detail: detail.into() }
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Fail, detail: detail.into() }
    }

    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Skip, detail: detail.into() }
    }

    fn passed(&self) -> bool {
        self.outcome == Outcome::Pass
    }
}

/// Every check, in the order it ran.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// True when nothing failed (skipped checks only follow a failure).
    pub fn healthy(&self) -> bool {
        self.checks.iter().all(|check| check.outcome != Outcome::Fail)
    }

    pub fn print(&self, output: Output) {
        for check in &self.checks {
            match output {
                Output::Table => println!("{} {}: {}", check.outcome.label(), check.name, check.detail),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({"check": check.name, "status": check.outcome.label().to_lowercase(), "detail": check.detail})
                ),
            }
        }
        if output == Output::Table {
            let count = |outcome| self.checks.iter().filter(|check| check.outcome == outcome).count();
            println!(
                "diagnose: {} checks, {} passed, {} failed, {} skipped",
                self.checks.len(),
                count(Outcome::Pass),
                count(Outcome::Fail),
                count(Outcome::Skip)
            );
        }
    }
}

/// Flags that describe no cluster `diagnose` can check.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error(
        "floe diagnose checks a cluster whose metadata is in etcd; --metadata {0} is a playground's \
         (one process: use `floe admin fsck` on it); example: --metadata etcd://127.0.0.1:2379/floe"
    )]
    EmbeddedMetadata(String),
    #[error("--object-store memory:// is private to each process: there is no shared bucket to check; example: s3://bucket/prefix")]
    MemoryBucket,
}

/// Runs every check against the cluster `args` names.
pub async fn run(args: &DiagnoseArgs) -> Result<Report, DiagnoseError> {
    let (cluster, url) = target(args)?;
    let keys = KeyLayout::new(&cluster.etcd.prefix, &cluster.virtual_cluster);
    let mut report = Report::default();

    // 1. The two dependencies, independent of each other: probed side by side.
    let store = SegmentStore::open_unobserved(&args.cluster.object_store, &s3_options(&args.cluster.cluster)).map(Arc::new);
    let probe = async {
        match &store {
            Ok(store) => bucket::probe(store, &url, &cluster.virtual_cluster, args.timeout).await,
            Err(error) => bucket::unusable(&url, error),
        }
    };
    let limits = etcd::Limits {
        max_latency: args.max_etcd_latency,
        quota_bytes: args.etcd_quota_bytes as u64,
        quota_share: ETCD_QUOTA_SHARE,
        timeout: args.timeout,
    };
    let (bucket_check, (members, etcd_ok)) = tokio::join!(probe, etcd::members(&cluster.etcd, &limits));
    let bucket_ok = bucket_check.passed();
    report.checks.push(bucket_check);
    report.checks.extend(members);

    // 2. The journal, which the agents' checks and fsck are measured against.
    let needs_etcd = "not checked: no etcd endpoint answered";
    let journal = match (&store, etcd_ok) {
        (Ok(store), true) => {
            let (check, journal) = etcd::journal(&cluster.etcd, &keys, store, args.timeout).await;
            report.checks.push(check);
            journal
        }
        (Err(_), true) => {
            report.checks.push(Check::skip("journal", "not checked: the bucket cannot be opened (it holds the journal's snapshot)"));
            None
        }
        (_, false) => {
            report.checks.push(Check::skip("journal", needs_etcd));
            None
        }
    };

    // 3. The agents.
    if etcd_ok {
        let limits =
            agents::Limits { max_clock_offset: args.max_clock_offset, max_journal_lag: args.max_journal_lag, timeout: args.timeout };
        report.checks.extend(agents::check_all(&cluster.etcd, &keys, journal.as_ref(), &limits).await);
    } else {
        report.checks.push(Check::skip("agents", needs_etcd));
    }

    // 4. fsck: the bucket against the journal, so it needs both (and a journal this build read
    // to its end).
    report.checks.push(match (&store, &journal) {
        _ if args.skip_fsck => Check::skip("fsck", "left out (--skip-fsck)"),
        (Ok(store), Some(journal)) if bucket_ok && !journal.halted => fsck(store, &journal.replica).await,
        _ => Check::skip("fsck", "not checked: it needs both the bucket and the journal"),
    });
    Ok(report)
}

/// The cluster settings and the bucket URL as printed, or why these flags name nothing to check.
fn target(args: &DiagnoseArgs) -> Result<(ClusterSettings, String), DiagnoseError> {
    let metadata = &args.cluster.metadata;
    let Some(cluster) = cluster_settings(metadata, &args.cluster.cluster) else {
        let MetadataUrl::Embedded(path) = metadata else { unreachable!("cluster settings exist for every etcd URL") };
        return Err(DiagnoseError::EmbeddedMetadata(format!("embedded://{}", path.display())));
    };
    let url = match &args.cluster.object_store {
        ObjectStoreUrl::Memory => return Err(DiagnoseError::MemoryBucket),
        ObjectStoreUrl::File(path) => format!("file://{}", path.display()),
        ObjectStoreUrl::S3 { bucket, prefix } if prefix.is_empty() => format!("s3://{bucket}"),
        ObjectStoreUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
    };
    Ok((cluster, url))
}

/// `floe admin fsck` on the replica the journal check loaded.
async fn fsck(store: &SegmentStore, replica: &Replica) -> Check {
    match crate::admin::fsck_replica(store, replica).await {
        Ok(report) if report.is_clean() => Check::pass(
            "fsck",
            format!(
                "{}, {} checked, no problems, {}{}",
                counted(report.referenced_objects, "referenced object"),
                counted(report.checked_chunks, "chunk"),
                counted(report.orphans.len(), "orphan"),
                if report.orphans.is_empty() { "" } else { " (garbage collection removes them after --gc-grace)" }
            ),
        ),
        Ok(report) => Check::fail(
            "fsck",
            format!(
                "{} in {}, first: {}; run `floe admin fsck` for the list, and `floe admin mark-lost` only for objects that are \
                 gone for good",
                counted(report.problems.len(), "problem"),
                counted(report.referenced_objects, "referenced object"),
                report.problems.first().map(String::as_str).unwrap_or_default()
            ),
        ),
        Err(error) => Check::fail("fsck", format!("could not run: {error}")),
    }
}

/// `1 topic`, `3 topics`.
fn counted(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// `bytes` in the unit a person reads (KiB, MiB, GiB), one decimal.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// A duration as a person reads it: `850ms`, `4.2s`, `5m 0s`.
fn human_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    match millis {
        0..=999 => format!("{millis}ms"),
        1_000..=59_999 if millis.is_multiple_of(1_000) => format!("{}s", duration.as_secs()),
        1_000..=59_999 => format!("{:.1}s", duration.as_secs_f64()),
        _ => {
            // To the nearest second: 4m 59.996s is 5m 0s to a reader.
            let seconds = (millis + 500) / 1_000;
            format!("{}m {}s", seconds / 60, seconds % 60)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn parse(extra: &[&str]) -> Result<DiagnoseArgs, clap::Error> {
        let base = ["floe", "diagnose", "--metadata", "etcd://127.0.0.1:2379/floe", "--object-store", "s3://bucket/payments"];
        match Cli::try_parse_from(base.iter().chain(extra))?.command {
            Command::Diagnose(args) => Ok(args),
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn diagnose_takes_the_agents_flags_and_sane_limits_by_default() {
        let args = parse(&["--virtual-cluster", "payments"]).expect("parses");
        assert_eq!(args.cluster.cluster.virtual_cluster, "payments");
        assert_eq!(args.max_clock_offset, Duration::from_secs(30));
        assert_eq!(args.max_journal_lag, Duration::from_secs(5));
        assert_eq!(args.etcd_quota_bytes, 2 << 30);
        assert_eq!(args.output, Output::Table);
        let (cluster, url) = target(&args).expect("a cluster");
        assert_eq!((cluster.etcd.prefix.as_str(), url.as_str()), ("/floe", "s3://bucket/payments"));
        let strict = parse(&["--max-clock-offset", "2s", "-o", "json"]).expect("parses");
        assert_eq!((strict.max_clock_offset, strict.output), (Duration::from_secs(2), Output::Json));
        let error = parse(&["--max-clock-offset", "soon"]).unwrap_err().to_string();
        assert!(error.contains("--max-clock-offset") && error.contains("example"), "{error}");
    }

    #[test]
    fn a_playground_or_a_memory_bucket_is_refused_with_what_to_use_instead() {
        let mut args = parse(&[]).expect("parses");
        args.cluster.metadata = "embedded:///var/lib/floe/metadata".parse().expect("a URL");
        let error = target(&args).unwrap_err().to_string();
        assert!(error.contains("floe admin fsck") && error.contains("example: --metadata etcd://"), "{error}");
        let mut args = parse(&[]).expect("parses");
        args.cluster.object_store = ObjectStoreUrl::Memory;
        assert!(target(&args).unwrap_err().to_string().contains("s3://bucket/prefix"));
    }

    #[test]
    fn a_skipped_check_does_not_fail_the_report_a_failed_one_does() {
        let mut report = Report { checks: vec![Check::pass("bucket", "ok"), Check::skip("fsck", "left out")] };
        assert!(report.healthy());
        report.checks.push(Check::fail("etcd 127.0.0.1:2379", "did not answer"));
        assert!(!report.healthy());
    }

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!((counted(1, "topic"), counted(3, "topic")), ("1 topic".to_string(), "3 topics".to_string()));
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(20 * 1024), "20.0 KiB");
        assert_eq!(human_bytes(1_717_986_918), "1.6 GiB");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(4_240)), "4.2s");
        assert_eq!(human_duration(Duration::from_secs(30)), "30s");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m 0s");
        assert_eq!(human_duration(Duration::from_millis(299_996)), "5m 0s");
    }
}
