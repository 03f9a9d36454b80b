//! Orphan garbage collection: delete segment objects nothing references (failed commits,
//! compacted sources, data retention dropped), fenced by the journal, never by a clock.
//!
//! # Guarantees
//! An object is deleted only when no commit naming it can still be applied (DESIGN.md "Deletion
//! fenced by the journal"):
//! 1. Segment names carry the journal revision their writer had applied (`storage::layout`).
//! 2. The collector appends `SealObjects { through_revision: W }`; from that record on, apply
//!    refuses every commit and compaction of an object stamped at or below W.
//! 3. Only once its own replica has applied the seal does it read the state: an object stamped at
//!    or below the seal that the state does not reference was either never committed (and now
//!    never will be) or was dropped by retention or compaction (and is never referenced again).
//!
//! The collector's clocks only decide *when* to act, never *whether* it is safe: W is a revision
//! the collector saw at least `gc_grace` ago on its monotonic clock (so a commit in flight for
//! less than that is not refused), and an object must have looked unreferenced for `gc_grace`
//! before it goes (so a fetch that read the index just before compaction still finds it). A
//! skewed, paused or partitioned agent can only delay a deletion.

use super::JobContext;
use crate::metadata::{ApplyOutcome, JournalRecord};
use crate::storage::layout::{is_segment_of, segment_name_revision, BucketLayout};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// What the collector remembers between runs while it leads. A new leader starts empty, which
/// only delays deletions by one grace period.
#[derive(Debug, Default)]
pub struct Collector {
    /// (when, the revision this replica had applied then), oldest first.
    seen_revisions: VecDeque<(Instant, u64)>,
    /// Unreferenced objects and when this collector first saw them so.
    unreferenced_since: BTreeMap<String, Instant>,
}

/// What one pass decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Seal names at or below this revision before deleting (None: nothing to seal).
    pub seal_through: Option<u64>,
    /// Objects to delete once the seal is applied (each re-checked against the state then).
    pub candidates: Vec<String>,
}

impl Collector {
    /// Records what this pass sees and returns the objects old enough, by both clocks, to go.
    /// Pure apart from `now`: unit-tested with made-up instants.
    pub fn plan(
        &mut self,
        now: Instant,
        grace: Duration,
        applied_revision: u64,
        listed: &[String],
        referenced: impl Fn(&str) -> bool,
    ) -> Plan {
        self.seen_revisions.push_back((now, applied_revision));
        // The newest revision seen at least `grace` ago; older samples are no longer needed.
        let mut window = None;
        while let Some(&(seen_at, revision)) = self.seen_revisions.front() {
            if now.duration_since(seen_at) < grace {
                break;
            }
            window = Some(revision);
            if self.seen_revisions.get(1).is_some_and(|(next, _)| now.duration_since(*next) >= grace) {
                self.seen_revisions.pop_front();
            } else {
                break;
            }
        }
        let mut still_unreferenced = BTreeMap::new();
        for name in listed.iter().filter(|name| !referenced(name)) {
            let since = self.unreferenced_since.get(name).copied().unwrap_or(now);
            still_unreferenced.insert(name.clone(), since);
        }
        self.unreferenced_since = still_unreferenced;
        let Some(window) = window else { return Plan::default() };
        let candidates: Vec<String> = self
            .unreferenced_since
            .iter()
            .filter(|(name, since)| now.duration_since(**since) >= grace && segment_name_revision(name) <= window)
            .map(|(name, _)| name.clone())
            .collect();
        if candidates.is_empty() {
            return Plan::default();
        }
        let seal_through = candidates.iter().map(|name| segment_name_revision(name)).max();
        Plan { seal_through, candidates }
    }

    pub async fn run(&mut self, context: &JobContext) -> Result<(), String> {
        let layout = context.metadata.read(|state| BucketLayout::new(state.cluster_id.as_deref()));
        let listed: Vec<String> = context
            .store
            .list(&layout.segments_prefix())
            .await
            .map_err(|error| error.to_string())?
            .into_iter()
            .filter(|name| is_segment_of(&layout, name))
            .collect();
        let (applied_revision, referenced) = context.metadata.read(|state| (state.applied_revision, state.referenced_objects()));
        let plan = self.plan(Instant::now(), context.settings.gc_grace, applied_revision, &listed, |name| referenced.contains(name));
        let Some(seal_through) = plan.seal_through else { return Ok(()) };
        let sealed = context.metadata.read(|state| state.sealed_through_revision);
        if sealed < seal_through {
            match context.metadata.submit(JournalRecord::SealObjects { through_revision: seal_through }).await {
                Ok(ApplyOutcome::ObjectsSealed { sealed_through_revision }) => {
                    context.metrics.sealed_through_revision.set(sealed_through_revision as i64);
                    tracing::info!(sealed_through_revision, "sealed segment names for garbage collection");
                }
                Ok(other) => return Err(format!("sealing segment names answered {other:?}")),
                Err(error) => return Err(format!("failed to seal segment names: {error}")),
            }
        }
        // Decide against the state as it is now, after the seal: whatever references an object
        // by now was applied before the seal, and nothing applied after it can.
        let deletable: Vec<String> = context.metadata.read(|state| {
            let referenced = state.referenced_objects();
            plan.candidates.into_iter().filter(|name| state.is_sealed(name) && !referenced.contains(name.as_str())).collect()
        });
        let mut deleted = Vec::with_capacity(deletable.len());
        for name in deletable {
            if !context.may_destroy() {
                tracing::warn!("jobs leadership may have lapsed; garbage collection stops before deleting more");
                break;
            }
            context.store.delete(&name).await.map_err(|error| error.to_string())?;
            context.metrics.gc_deleted_objects.inc();
            self.unreferenced_since.remove(&name);
            deleted.push(name);
        }
        for batch in deleted.chunks(500) {
            context.metadata.submit(JournalRecord::ObjectsDeleted { objects: batch.to_vec() }).await.map_err(|error| error.to_string())?;
        }
        if !deleted.is_empty() {
            tracing::info!(objects = deleted.len(), "garbage-collected unreferenced segment objects");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(revision: u64) -> String {
        BucketLayout::new(Some("c")).new_segment_name(revision)
    }

    #[test]
    fn nothing_is_planned_before_a_grace_period_of_observation() {
        let mut collector = Collector::default();
        let start = Instant::now();
        let grace = Duration::from_secs(600);
        let orphan = name(5);
        let plan = collector.plan(start, grace, 10, std::slice::from_ref(&orphan), |_| false);
        assert_eq!(plan, Plan::default());
        let plan = collector.plan(start + Duration::from_secs(599), grace, 20, std::slice::from_ref(&orphan), |_| false);
        assert_eq!(plan, Plan::default(), "the orphan has not been unreferenced for a whole grace period yet");
        let plan = collector.plan(start + grace, grace, 30, std::slice::from_ref(&orphan), |_| false);
        assert_eq!(plan, Plan { seal_through: Some(5), candidates: vec![orphan] });
    }

    #[test]
    fn an_object_named_after_the_revision_seen_a_grace_period_ago_is_never_a_candidate() {
        // The writer's wall clock plays no part: only revisions and this collector's instants do.
        let mut collector = Collector::default();
        let start = Instant::now();
        let grace = Duration::from_secs(10);
        let old = name(100);
        let fresh = name(101);
        let listed = vec![old.clone(), fresh.clone()];
        collector.plan(start, grace, 100, &listed, |_| false);
        let plan = collector.plan(start + grace, grace, 500, &listed, |_| false);
        assert_eq!(plan.candidates, vec![old], "revision 101 was not yet applied a grace period ago");
        assert_eq!(plan.seal_through, Some(100));
    }

    #[test]
    fn a_referenced_object_is_forgotten_and_waits_a_full_grace_period_after_it_is_dropped() {
        let mut collector = Collector::default();
        let start = Instant::now();
        let grace = Duration::from_secs(10);
        let object = name(1);
        let listed = vec![object.clone()];
        collector.plan(start, grace, 1, &listed, |_| false);
        collector.plan(start + Duration::from_secs(5), grace, 2, &listed, |_| true);
        let plan = collector.plan(start + Duration::from_secs(12), grace, 3, &listed, |_| false);
        assert!(plan.candidates.is_empty(), "unreferenced only since second 12");
        let plan = collector.plan(start + Duration::from_secs(22), grace, 4, &listed, |_| false);
        assert_eq!(plan.candidates, vec![object]);
    }

    #[test]
    fn observations_older_than_needed_are_dropped() {
        let mut collector = Collector::default();
        let start = Instant::now();
        let grace = Duration::from_secs(1);
        for second in 0..100 {
            collector.plan(start + Duration::from_secs(second), grace, second, &[], |_| false);
        }
        assert!(collector.seen_revisions.len() <= 3, "{} samples kept", collector.seen_revisions.len());
    }
}
