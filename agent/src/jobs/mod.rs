//! Background jobs of a virtual cluster: snapshots with journal trimming, segment compaction,
//! retention and orphan garbage collection. Who runs them is `coordination`'s business: on etcd,
//! the one agent with the `jobs` role that holds the leadership, whose writes outside the journal
//! are fenced by it; on embedded metadata the agent itself, the journal's only writer
//! (`spawn_sole`; no snapshots: the embedded journal has no etcd history to trim). The jobs only
//! ever talk to the `Leadership` interface.
//! Journal records the jobs write are validated at apply time, so a stale duplicate is harmless.
//! Whoever runs the jobs also exports the metrics about the whole virtual cluster
//! (`cluster_metrics`: consumer lag, etcd's database size), so that exactly one agent does.
//!
//! Destructive work (deleting objects) is fenced twice: by the journal (`gc` deletes only what no
//! commit can reference any more, whoever runs it) and by the lease: a leader stops deleting once
//! its lease could have expired at etcd, measured on the monotonic clock from the moment it sent
//! its last successful renewal (`coordination::LeaseClock`), never from when it noticed a failure.

pub mod cluster_metrics;
pub mod compaction;
pub mod consumer_lag;
pub mod gc;
pub mod key_compaction;
pub mod retention;
pub mod snapshots;

use crate::coordination::etcd::{try_lead, EtcdLeadership};
use crate::coordination::etcd_status::EtcdStatus;
use crate::coordination::{Leadership, Sole};
use crate::metadata::keys::KeyLayout;
use crate::metadata::MetadataClient;
use crate::metrics::Metrics;
use crate::storage::{SegmentReader, SegmentStore};
use etcd_client::Client;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct JobSettings {
    pub snapshot_interval: Duration,
    pub compaction_interval: Duration,
    pub compaction_fan_in: usize,
    pub key_compaction_interval: Duration,
    /// Segments holding fewer referenced bytes than this are "small".
    pub small_segment_bytes: u64,
    pub retention_interval: Duration,
    pub gc_grace: Duration,
    /// How often the consumer lag and etcd size metrics are refreshed.
    pub lag_metrics_interval: Duration,
    /// Per-partition lag series past which only per-group totals are exported.
    pub lag_metrics_max_series: usize,
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
    /// Who leads, until when for certain, and the fenced writes outside the journal.
    pub leadership: Arc<dyn Leadership>,
    pub metadata: MetadataClient,
    pub store: Arc<SegmentStore>,
    pub reader: Arc<SegmentReader>,
    pub metrics: Arc<Metrics>,
    pub settings: JobSettings,
    /// etcd's status, for its database size (cluster mode only).
    pub etcd: Option<EtcdStatus>,
}

impl JobContext {
    fn new(resources: &JobResources, leadership: Arc<dyn Leadership>, etcd: Option<EtcdStatus>) -> Self {
        let resources = resources.clone();
        Self {
            leadership,
            metadata: resources.metadata,
            store: resources.store,
            reader: resources.reader,
            metrics: resources.metrics,
            settings: resources.settings,
            etcd,
        }
    }

    /// Whether this leader may still delete: its lease is certainly alive at etcd.
    pub fn may_destroy(&self) -> bool {
        self.leadership.lease().may_destroy_at(Instant::now())
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
            match try_lead(client.clone(), &keys).await {
                Ok(Some(leadership)) => {
                    tracing::info!(fence = leadership.fence(), "this agent now runs the background jobs");
                    let leadership = Arc::new(leadership);
                    let etcd = Some(EtcdStatus::new(client.clone()));
                    let context = JobContext::new(&resources, Arc::clone(&leadership) as Arc<dyn Leadership>, etcd);
                    if run_while_leading(&context, &leadership, &mut stop).await {
                        leadership.release().await;
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

/// Renews the leadership on its own task and runs the jobs until it is lost (returns false) or
/// `stop` turns true (returns true, between jobs).
async fn run_while_leading(context: &JobContext, leadership: &EtcdLeadership, stop: &mut watch::Receiver<bool>) -> bool {
    let Some(renewal) = leadership.keep_alive().await else { return false };
    run_jobs(context, &renewal.leading, stop).await
}

/// Runs the jobs, each at its interval, and exports the cluster metrics, while `leading` holds;
/// returns true when `stop` turned true (between jobs), false when the leadership was lost. The
/// metrics refresh on their own schedule (a long compaction does not hold them back) and are
/// removed on return, so a deposed leader stops exporting them.
async fn run_jobs(context: &JobContext, leading: &std::sync::atomic::AtomicBool, stop: &mut watch::Receiver<bool>) -> bool {
    let stopped = tokio::select! {
        stopped = run_each_at_its_interval(context, leading, stop) => stopped,
        never = cluster_metrics::run(context) => match never {},
    };
    cluster_metrics::clear(&context.metrics);
    stopped
}

async fn run_each_at_its_interval(context: &JobContext, leading: &std::sync::atomic::AtomicBool, stop: &mut watch::Receiver<bool>) -> bool {
    let started = Instant::now();
    let mut last_snapshot = started;
    let mut last_compaction = started;
    let mut last_retention = started;
    let mut last_key_compaction = started;
    let mut collector = gc::Collector::default();
    let mut cleaner = key_compaction::Cleaner::default();
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
        let snapshots_apply = context.leadership.trims_journal();
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
            // Half the interval at most, so the other jobs keep their pace.
            context.timed("compaction", compaction::run(context, context.settings.compaction_interval / 2, stop.clone())).await;
        }
        if now.duration_since(last_key_compaction) >= context.settings.key_compaction_interval {
            last_key_compaction = now;
            context.timed("key_compaction", cleaner.run(context)).await;
        }
    }
    stopped
}

/// Runs the jobs in this process until `stop` turns true: for embedded metadata, whose journal
/// this process alone writes.
pub fn spawn_sole(resources: JobResources, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let context = JobContext::new(&resources, Arc::new(Sole::new()), None);
        tracing::info!("this agent runs the background jobs (embedded metadata: compaction, retention, GC)");
        run_jobs(&context, &std::sync::atomic::AtomicBool::new(true), &mut stop).await;
    })
}
