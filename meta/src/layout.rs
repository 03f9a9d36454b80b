//! Where a virtual cluster's objects live in the bucket, and what their names mean. Pure: no I/O.
//!
//! Every object a virtual cluster writes sits under `clusters/<cluster id>/` (the id of the
//! journal's `InitCluster` record, random per cluster), so two clusters sharing one bucket URL by
//! mistake never list, collect or delete each other's objects.
//!
//! A segment object's name carries the journal revision its writer had applied when it named it:
//! `clusters/<id>/segments/<revision, 20 digits>-<ULID>.seg`. Garbage collection fences deletion
//! with that number (DESIGN.md "Deletion fenced by the journal"): once the journal has sealed
//! names at or below revision R, apply refuses every commit of such an object, so an object
//! nothing references can be deleted without any clock being trusted.
//!
//! Objects written before this layout (`segments/<ULID>.seg`, `snapshots/…` at the bucket's top
//! level) stay readable, since the journal names them; they carry no revision and count as
//! revision 0.

/// The objects of one virtual cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLayout {
    root: String,
}

/// Stands in for the cluster id before the journal's first record is applied (unit tests only:
/// an agent initialises the cluster before it writes anything).
const UNINITIALIZED: &str = "uninitialized";

impl BucketLayout {
    pub fn new(cluster_id: Option<&str>) -> Self {
        Self { root: format!("clusters/{}", cluster_id.unwrap_or(UNINITIALIZED)) }
    }

    /// The prefix every object of this cluster starts with (ends with `/`).
    pub fn root_prefix(&self) -> String {
        format!("{}/", self.root)
    }

    pub fn segments_prefix(&self) -> String {
        format!("{}/segments", self.root)
    }

    pub fn snapshots_prefix(&self) -> String {
        format!("{}/snapshots", self.root)
    }

    /// A fresh, never reused segment name, stamped with the journal revision the writer has
    /// applied. Zero-padded, so name order is revision order, then creation order.
    pub fn new_segment_name(&self, applied_revision: u64) -> String {
        format!("{}/segments/{applied_revision:020}-{}.seg", self.root, ulid::Ulid::new())
    }

    pub fn new_snapshot_name(&self, revision: u64) -> String {
        format!("{}/snapshots/{revision:020}-{}.json", self.root, ulid::Ulid::new())
    }
}

/// The journal revision stamped in a segment name, 0 for names without one (objects written
/// before this layout, or anything else). Used by the deterministic apply function: it must
/// depend on the name alone.
pub fn segment_name_revision(name: &str) -> u64 {
    let file = name.rsplit('/').next().unwrap_or(name);
    let Some(stem) = file.strip_suffix(".seg") else { return 0 };
    let Some((revision, id)) = stem.split_once('-') else { return 0 };
    if revision.len() != 20 || ulid::Ulid::from_string(id).is_err() {
        return 0;
    }
    revision.parse().unwrap_or(0)
}

/// Whether `name` is a segment object of this layout (what GC may consider).
pub fn is_segment_of(layout: &BucketLayout, name: &str) -> bool {
    name.strip_prefix(&layout.segments_prefix()).is_some_and(|rest| rest.starts_with('/') && rest.ends_with(".seg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_carry_the_writers_applied_revision_and_sort_by_it() {
        let layout = BucketLayout::new(Some("AbC-_9"));
        let early = layout.new_segment_name(42);
        let late = layout.new_segment_name(1_000);
        assert!(early.starts_with("clusters/AbC-_9/segments/00000000000000000042-"), "{early}");
        assert_eq!(segment_name_revision(&early), 42);
        assert_eq!(segment_name_revision(&late), 1_000);
        assert!(early < late);
        assert!(is_segment_of(&layout, &early));
        assert!(!is_segment_of(&BucketLayout::new(Some("other")), &early), "another cluster's object is not ours");
    }

    #[test]
    fn names_without_a_revision_count_as_revision_zero() {
        assert_eq!(segment_name_revision(&format!("segments/{}.seg", ulid::Ulid::new())), 0);
        assert_eq!(segment_name_revision("clusters/x/segments/12-notaulid.seg"), 0);
        assert_eq!(segment_name_revision("clusters/x/snapshots/00000000000000000042-01J.json"), 0);
        assert_eq!(segment_name_revision(""), 0);
    }

    #[test]
    fn clusters_sharing_a_bucket_have_disjoint_prefixes() {
        let first = BucketLayout::new(Some("a"));
        let second = BucketLayout::new(Some("ab"));
        assert!(!second.root_prefix().starts_with(&first.root_prefix()));
        assert!(first.new_snapshot_name(7).starts_with(&first.snapshots_prefix()));
    }
}
