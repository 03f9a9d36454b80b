//! Orphan garbage collection: delete segment objects no partition references any more (failed
//! commits, compacted sources, retention) once they are older than the grace period. Objects
//! younger than the grace period are never touched: their commit may still be in flight, or a
//! reader may still hold a pre-compaction location.

use super::JobContext;
use crate::metadata::JournalRecord;
use std::time::{Duration, SystemTime};

/// The creation time encoded in a segment name `segments/<ULID>.seg`.
pub fn object_age(name: &str, now: SystemTime) -> Option<Duration> {
    let id = name.strip_prefix("segments/")?.strip_suffix(".seg")?;
    let created = ulid::Ulid::from_string(id).ok()?.datetime();
    Some(now.duration_since(created).unwrap_or_default())
}

pub async fn run(context: &JobContext) -> Result<(), String> {
    let listed = context.store.list("segments").await.map_err(|error| error.to_string())?;
    let referenced = context.metadata.read(|state| state.referenced_objects());
    let now = SystemTime::now();
    let doomed: Vec<String> = listed
        .into_iter()
        .filter(|name| !referenced.contains(name.as_str()))
        .filter(|name| object_age(name, now).is_some_and(|age| age > context.settings.gc_grace))
        .collect();
    for name in &doomed {
        context.store.delete(name).await.map_err(|error| error.to_string())?;
    }
    for batch in doomed.chunks(500) {
        context.metadata.submit(JournalRecord::ObjectsDeleted { objects: batch.to_vec() }).await.map_err(|error| error.to_string())?;
    }
    if !doomed.is_empty() {
        tracing::info!(objects = doomed.len(), "garbage-collected unreferenced segment objects");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_names_with_a_ulid_have_an_age() {
        let id = ulid::Ulid::new();
        let name = format!("segments/{id}.seg");
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(object_age(&name, later).unwrap() >= Duration::from_secs(59));
        assert!(object_age("segments/not-a-ulid.seg", later).is_none());
        assert!(object_age("snapshots/x.json", later).is_none());
    }
}
