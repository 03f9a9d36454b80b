//! Background jobs of a virtual cluster: snapshots with journal trimming, segment compaction,
//! retention and orphan garbage collection. On etcd, one agent with the `jobs` role runs them at a
//! time: it holds `jobs/leader` (create-only, on its lease), and every etcd write a job makes is
//! fenced by that key's create revision, so a deposed leader cannot trim what the new one relies
//! on. On embedded metadata the agent is the journal's only writer and runs them itself
//! (`spawn_sole`; no snapshots: the embedded journal has no etcd history to trim).
//! Journal records the jobs write are validated at apply time, so a stale duplicate is harmless.
//!
//! Destructive work (deleting objects) is fenced twice: by the journal (`gc` deletes only what no
//! commit can reference any more, whoever runs it) and by the lease: a leader stops deleting once
//! its lease could have expired at etcd, measured on the monotonic clock from the moment it sent
//! its last successful renewal (`LeaseClock`), never from when it noticed a failure.

pub mod compaction;
pub mod gc;
pub mod retention;
pub mod snapshots;

use crate::metadata::keys::KeyLayout;
use crate::metadata::MetadataClient;
use crate::metrics::Metrics;
use crate::storage::{SegmentReader, SegmentStore};
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub snapshot_interval: Duration,
    pub compaction_interval: Duration,
    pub compaction_fan_in: usize,
    /// Segments holding fewer referenced bytes than this are "small".
    pub small_segment_bytes: u64,
    pub retention_interval: Duration,
    pub gc_grace: Duration,
}

/// Who else may run jobs on this journal, and so how a job's writes are fenced.
pub enum Coordination {
    /// Cluster mode: this agent holds `jobs/leader`; every etcd write is fenced by the create
    /// revision of that key (`fence`).
    Etcd { client: Box<Client>, keys: KeyLayout, fence: i64 },
    /// Embedded metadata: this process is the journal's only writer (the journal file is locked),
    /// so no other agent runs jobs and nothing needs fencing beyond the journal itself.
    Sole,
}

/// What the jobs work with, whoever coordinates them: the same for the elected etcd leader and
/// the playground's sole writer.
#[derive(Clone)]
pub struct JobResources {
    pub settings: JobSettings,
    pub metadata: MetadataClient,
    pub store: Arc<SegmentStore>,
    pub reader: Arc<SegmentReader>,
    pub metrics: Arc<Metrics>,
}

/// What every job needs.
pub struct JobContext {
    pub coordination: Coordination,
    pub metadata: MetadataClient,
    pub store: Arc<SegmentStore>,
    pub reader: Arc<SegmentReader>,
    pub metrics: Arc<Metrics>,
    pub settings: JobSettings,
    /// When the leadership lease could have expired at etcd (never, for a sole writer).
    pub lease: Arc<LeaseClock>,
}

/// The jobs lease's TTL in seconds (etcd's unit).
const LEASE_TTL_SECONDS: i64 = 10;
/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Destructive work stops this long before the lease could have expired: room for a delete
/// request already on its way and for the two clocks' rates to differ.
const DESTROY_MARGIN: Duration = Duration::from_secs(3);

/// Tracks the latest moment the jobs lease is certainly alive at etcd. A renewal sent at instant
/// `t` and acknowledged keeps the lease until at least `t + TTL` at etcd (etcd counts from when it
/// received it, which is later), so work that must not outlive the lease stops before
/// `t + TTL - margin` on this process's monotonic clock. A paused or partitioned process simply
/// finds the deadline passed when it resumes.
pub struct LeaseClock {
    /// None: no lease, the holder can never be deposed (a sole writer).
    ttl: Option<Duration>,
    renewed_at: std::sync::Mutex<Instant>,
}

impl LeaseClock {
    /// `granted_at`: when the request that created the lease was sent.
    pub fn new(ttl: Duration, granted_at: Instant) -> Self {
        Self { ttl: Some(ttl), renewed_at: std::sync::Mutex::new(granted_at) }
    }

    /// For the journal's only writer: there is no lease to lose.
    pub fn unbounded() -> Self {
        Self { ttl: None, renewed_at: std::sync::Mutex::new(Instant::now()) }
    }

    /// A renewal sent at `sent_at` was acknowledged with a live TTL.
    pub fn renewed(&self, sent_at: Instant) {
        let mut renewed_at = self.renewed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *renewed_at = (*renewed_at).max(sent_at);
    }

    /// Whether destructive work may start now.
    pub fn may_destroy_at(&self, now: Instant) -> bool {
        let Some(ttl) = self.ttl else { return true };
        let renewed_at = *self.renewed_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        now < renewed_at + ttl.saturating_sub(DESTROY_MARGIN)
    }
}

impl JobContext {
    fn new(resources: &JobResources, coordination: Coordination, lease: LeaseClock) -> Self {
        let resources = resources.clone();
        Self {
            coordination,
            metadata: resources.metadata,
            store: resources.store,
            reader: resources.reader,
            metrics: resources.metrics,
            settings: resources.settings,
            lease: Arc::new(lease),
        }
    }

    /// Whether this leader may still delete: its lease is certainly alive at etcd.
    pub fn may_destroy(&self) -> bool {
        self.lease.may_destroy_at(Instant::now())
    }

    async fn timed(&self, job: &str, run: impl std::future::Future<Output = Result<(), String>>) {
        let started = Instant::now();
        let outcome = run.await;
        tracing::debug!(job, elapsed = ?started.elapsed(), ok = outcome.is_ok(), "background job finished");
        self.record(job, outcome);
    }

    fn record(&self, job: &str, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.metrics.job_runs.with_label_values(&[job, "ok"]).inc(),
            Err(reason) => {
                tracing::warn!(job, %reason, "background job failed");
                self.metrics.job_runs.with_label_values(&[job, "error"]).inc();
            }
        }
    }
}

/// Competes for the jobs leadership and runs the jobs while leading. When `stop` turns true (the
/// agent drains) it finishes the job under way, revokes the leadership lease so another agent
/// takes over within seconds instead of after the lease TTL, and returns.
pub fn spawn(client: Client, keys: KeyLayout, resources: JobResources, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !should_stop(&stop) {
            let asked_at = Instant::now();
            match lead(client.clone(), &keys).await {
                Ok(Some((lease, fence))) => {
                    tracing::info!(fence, "this agent now runs the background jobs");
                    let coordination = Coordination::Etcd { client: Box::new(client.clone()), keys: keys.clone(), fence };
                    let lease_clock = LeaseClock::new(Duration::from_secs(LEASE_TTL_SECONDS as u64), asked_at);
                    let context = JobContext::new(&resources, coordination, lease_clock);
                    if run_while_leading(&context, &client, lease, &mut stop).await {
                        let mut client = client.clone();
                        match client.lease_revoke(lease).await {
                            Ok(_) => tracing::info!("handed over the jobs leadership"),
                            Err(error) => tracing::warn!(%error, "failed to revoke the jobs lease; it lapses by itself"),
                        }
                        return;
                    }
                    tracing::warn!("lost the jobs leadership");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "jobs leader election failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.wait_for(|stop| *stop) => {}
            }
        }
    })
}

/// Stop when asked, or when the agent that could ask is gone.
fn should_stop(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// Tries to become the jobs leader; returns (lease, fence) on success.
async fn lead(mut client: Client, keys: &KeyLayout) -> Result<Option<(i64, i64)>, etcd_client::Error> {
    let lease = client.lease_grant(LEASE_TTL_SECONDS, None).await?.id();
    let key = keys.jobs_leader();
    let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
        key,
        ulid::Ulid::new().to_string(),
        Some(PutOptions::new().with_lease(lease)),
    )]);
    let response = client.txn(txn).await?;
    if !response.succeeded() {
        let _ = client.lease_revoke(lease).await;
        return Ok(None);
    }
    let fence = response.header().map(|header| header.revision()).unwrap_or_default();
    Ok(Some((lease, fence)))
}

/// Keeps the lease alive on its own task (a long job must not let it lapse) and runs the jobs
/// until the lease is lost (returns false) or `stop` turns true (returns true, between jobs).
async fn run_while_leading(context: &JobContext, client: &Client, lease: i64, stop: &mut watch::Receiver<bool>) -> bool {
    let mut client = client.clone();
    let Ok((mut keeper, mut responses)) = client.lease_keep_alive(lease).await else { return false };
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let keep_alive = {
        let leading = Arc::clone(&leading);
        let clock = Arc::clone(&context.lease);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let sent_at = Instant::now();
                // A renewal that gets no answer within the TTL means the lease may be gone.
                let renewal = async {
                    keeper.keep_alive().await.is_ok() && matches!(responses.message().await, Ok(Some(response)) if response.ttl() > 0)
                };
                let alive = tokio::time::timeout(Duration::from_secs(LEASE_TTL_SECONDS as u64), renewal).await.unwrap_or(false);
                if alive {
                    clock.renewed(sent_at);
                } else {
                    leading.store(false, std::sync::atomic::Ordering::Release);
                    return;
                }
            }
        })
    };
    let stopped = run_jobs(context, &leading, stop).await;
    keep_alive.abort();
    stopped
}

/// Runs the jobs, each at its interval, while `leading` holds; returns true when `stop` turned
/// true (between jobs), false when the leadership was lost.
async fn run_jobs(context: &JobContext, leading: &std::sync::atomic::AtomicBool, stop: &mut watch::Receiver<bool>) -> bool {
    let started = Instant::now();
    let mut last_snapshot = started;
    let mut last_compaction = started;
    let mut last_retention = started;
    let mut collector = gc::Collector::default();
    let mut stopped = false;
    while leading.load(std::sync::atomic::Ordering::Acquire) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|stop| *stop) => {}
        }
        if should_stop(stop) {
            stopped = true;
            break;
        }
        let now = Instant::now();
        let snapshots_apply = matches!(context.coordination, Coordination::Etcd { .. });
        if snapshots_apply && now.duration_since(last_snapshot) >= context.settings.snapshot_interval {
            last_snapshot = now;
            context.timed("snapshot", snapshots::run(context)).await;
        }
        if now.duration_since(last_retention) >= context.settings.retention_interval {
            last_retention = now;
            context.timed("retention", retention::run(context)).await;
            context.timed("gc", collector.run(context)).await;
        }
        if now.duration_since(last_compaction) >= context.settings.compaction_interval {
            last_compaction = now;
            context.timed("compaction", compaction::run(context)).await;
        }
    }
    stopped
}

/// Runs the jobs in this process until `stop` turns true: for embedded metadata, whose journal
/// this process alone writes.
pub fn spawn_sole(resources: JobResources, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let context = JobContext::new(&resources, Coordination::Sole, LeaseClock::unbounded());
        tracing::info!("this agent runs the background jobs (embedded metadata: compaction, retention, GC)");
        run_jobs(&context, &std::sync::atomic::AtomicBool::new(true), &mut stop).await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destruction_stops_before_the_lease_could_expire_counting_from_the_last_renewal_sent() {
        let granted = Instant::now();
        let clock = LeaseClock::new(Duration::from_secs(10), granted);
        assert!(clock.may_destroy_at(granted + Duration::from_secs(6)));
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(7)), "within the margin of the TTL");
        clock.renewed(granted + Duration::from_secs(4));
        assert!(clock.may_destroy_at(granted + Duration::from_secs(10)));
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(11)));
        // A late acknowledgement of an older renewal never moves the deadline back.
        clock.renewed(granted + Duration::from_secs(1));
        assert!(clock.may_destroy_at(granted + Duration::from_secs(10)));
        // A process paused for a minute finds the deadline long passed when it resumes.
        assert!(!clock.may_destroy_at(granted + Duration::from_secs(70)));
        // The sole writer of a journal has no lease to lose.
        assert!(LeaseClock::unbounded().may_destroy_at(granted + Duration::from_secs(1_000_000)));
    }
}
