//! The jobs leadership on etcd: election by a create-only key on a lease, renewal on its own task,
//! and the fenced writes a leader makes (the snapshot pointer, trimming the journal).

use super::{Leadership, LeaseClock};
use crate::metadata::keys::KeyLayout;
use crate::metadata::snapshot::SnapshotPointer;
use etcd_client::{Client, CompactionOptions, Compare, CompareOp, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp};
use futures::future::BoxFuture;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The jobs lease's TTL in seconds (etcd's unit).
const LEASE_TTL_SECONDS: i64 = 10;
/// How often the lease is renewed.
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// etcd allows 128 operations per transaction; stay below with the fence compare.
const DELETES_PER_TRANSACTION: usize = 100;
/// Journal keys listed per etcd request while trimming (about 100 bytes each).
const TRIM_PAGE_KEYS: i64 = 10_000;

/// This agent holds `jobs/leader`.
pub struct EtcdLeadership {
    client: Client,
    keys: KeyLayout,
    /// The create revision of our `jobs/leader` key: every write compares against it.
    fence: i64,
    lease_id: i64,
    clock: Arc<LeaseClock>,
}

/// Tries to become the jobs leader.
pub async fn try_lead(mut client: Client, keys: &KeyLayout) -> Result<Option<EtcdLeadership>, etcd_client::Error> {
    // The lease counts at etcd from when etcd granted it, which is after this instant.
    let asked_at = Instant::now();
    let lease_id = client.lease_grant(LEASE_TTL_SECONDS, None).await?.id();
    let key = keys.jobs_leader();
    let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([TxnOp::put(
        key,
        ulid::Ulid::new().to_string(),
        Some(PutOptions::new().with_lease(lease_id)),
    )]);
    let response = client.txn(txn).await?;
    if !response.succeeded() {
        let _ = client.lease_revoke(lease_id).await;
        return Ok(None);
    }
    let fence = response.header().map(|header| header.revision()).unwrap_or_default();
    let clock = Arc::new(LeaseClock::new(Duration::from_secs(LEASE_TTL_SECONDS as u64), asked_at));
    Ok(Some(EtcdLeadership { client, keys: keys.clone(), fence, lease_id, clock }))
}

/// The task renewing the lease, and whether the leadership still holds.
pub struct Renewal {
    task: JoinHandle<()>,
    pub leading: Arc<AtomicBool>,
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdLeadership {
    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// Renews the lease on its own task (a long job must not let it lapse) until a renewal gets
    /// no live answer within the TTL; then `leading` turns false. `None` when renewal cannot start.
    pub async fn keep_alive(&self) -> Option<Renewal> {
        let mut client = self.client.clone();
        let (mut keeper, mut responses) = client.lease_keep_alive(self.lease_id).await.ok()?;
        let leading = Arc::new(AtomicBool::new(true));
        let task = {
            let leading = Arc::clone(&leading);
            let clock = Arc::clone(&self.clock);
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
                        leading.store(false, Ordering::Release);
                        return;
                    }
                }
            })
        };
        Some(Renewal { task, leading })
    }

    /// Gives the leadership up at once (a draining agent), so another agent takes over within
    /// seconds instead of after the lease TTL.
    pub async fn release(&self) {
        let mut client = self.client.clone();
        match client.lease_revoke(self.lease_id).await {
            Ok(_) => tracing::info!("handed over the jobs leadership"),
            Err(error) => tracing::warn!(%error, "failed to revoke the jobs lease; it lapses by itself"),
        }
    }

    fn fence_compare(&self) -> Compare {
        Compare::create_revision(self.keys.jobs_leader(), CompareOp::Equal, self.fence)
    }
}

impl Leadership for EtcdLeadership {
    fn lease(&self) -> &LeaseClock {
        &self.clock
    }

    fn trims_journal(&self) -> bool {
        true
    }

    fn latest_snapshot(&self) -> BoxFuture<'_, Result<Option<SnapshotPointer>, String>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let current = client.get(self.keys.snapshot_pointer(), None).await.map_err(|error| error.to_string())?;
            Ok(current.kvs().first().and_then(|kv| serde_json::from_slice::<SnapshotPointer>(kv.value()).ok()))
        })
    }

    fn publish_snapshot<'a>(&'a self, pointer: &'a SnapshotPointer) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            let value = serde_json::to_vec(pointer).map_err(|error| error.to_string())?;
            let txn = Txn::new().when([self.fence_compare()]).and_then([TxnOp::put(self.keys.snapshot_pointer(), value, None)]);
            if !client.txn(txn).await.map_err(|error| error.to_string())?.succeeded() {
                return Err("no longer the jobs leader; snapshot pointer not written".to_string());
            }
            Ok(())
        })
    }

    fn trim_journal(&self, revision: u64) -> BoxFuture<'_, Result<usize, String>> {
        Box::pin(async move {
            let mut client = self.client.clone();
            // Only this cluster's records: a key deeper under `log/` belongs to another virtual
            // cluster whose etcd prefix lies inside ours, and its journal is not ours to trim.
            let log_prefix = self.keys.log_prefix();
            // Listed a page at a time: a minute of a busy cluster's journal holds more keys than
            // one gRPC message (4 MiB) carries, and a trim that fails lets etcd grow to its quota.
            let (mut trimmed, mut from) = (0, 0i64);
            loop {
                let page = client
                    .get(
                        log_prefix.clone(),
                        Some(
                            GetOptions::new()
                                .with_prefix()
                                .with_keys_only()
                                .with_min_create_revision(from)
                                .with_max_create_revision(revision as i64)
                                .with_sort(SortTarget::Create, SortOrder::Ascend)
                                .with_limit(TRIM_PAGE_KEYS),
                        ),
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                let keys: Vec<Vec<u8>> = page
                    .kvs()
                    .iter()
                    .map(|kv| kv.key().to_vec())
                    .filter(|key| crate::metadata::etcd::is_own_log_key(&log_prefix, key))
                    .collect();
                for batch in keys.chunks(DELETES_PER_TRANSACTION) {
                    let deletes: Vec<TxnOp> = batch.iter().map(|key| TxnOp::delete(key.clone(), None)).collect();
                    let txn = Txn::new().when([self.fence_compare()]).and_then(deletes);
                    if !client.txn(txn).await.map_err(|error| error.to_string())?.succeeded() {
                        return Err("no longer the jobs leader; journal trim stopped".to_string());
                    }
                }
                trimmed += keys.len();
                match page.kvs().last() {
                    Some(last) if (page.kvs().len() as i64) == TRIM_PAGE_KEYS => from = last.create_revision() + 1,
                    _ => break,
                }
            }
            // Drop etcd's history up to the snapshot; watchers further behind reload the snapshot.
            if let Err(error) = client.compact(revision as i64, Some(CompactionOptions::new())).await {
                tracing::debug!(%error, "etcd compaction skipped");
            }
            Ok(trimmed)
        })
    }
}
