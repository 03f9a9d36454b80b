//! Where a VirtualCluster keeps its metadata (etcd keys) and its data (bucket objects), and
//! whether two VirtualClusters' locations overlap. Pure: the controllers list the VirtualClusters
//! (I/O) and ask here.
//!
//! Two virtual clusters must never share a location: one's agents would decode the other's journal
//! keys, and one's garbage collection or `deletionPolicy: Delete` would remove the other's objects.
//! When two overlap, the older one (creationTimestamp, then already admitted, then uid) keeps
//! working and the newer one is refused until its spec or the other changes.
//!
//! # Assumptions
//! - Two etcd locations are on the same etcd when their endpoint lists share an endpoint
//!   (`host:port`, case-insensitive). Two lists naming different members of one etcd cluster, with
//!   no member in common, are not recognised as the same etcd.
//! - Two object stores are the same bucket when scheme, bucket name and `spec.objectStore.endpoint`
//!   (none meaning AWS) are equal; `file://` URLs all share one filesystem.

use crate::crd::virtual_cluster::VirtualCluster;
use floe_meta::bucket::ObjectStoreUrl;
use k8s_openapi::jiff::Timestamp;
use std::collections::BTreeSet;

/// The condition reason and event reason of a refused VirtualCluster.
pub const CONFLICT_REASON: &str = "LocationConflict";

/// The etcd keys of one virtual cluster: `<prefix>/vc/<namespace>.<name>/` on some endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdLocation {
    endpoints: BTreeSet<String>,
    /// Path segments of the root, e.g. `["floe", "vc", "team-a.demo"]`.
    root: Vec<String>,
}

impl EtcdLocation {
    pub fn of(cluster: &VirtualCluster) -> Option<Self> {
        let cluster_id = cluster.cluster_id()?;
        let endpoints = cluster.spec.etcd.endpoints.iter().map(|endpoint| endpoint.trim().to_ascii_lowercase()).collect();
        let mut root = segments(&cluster.spec.etcd.prefix);
        root.extend(["vc".to_string(), cluster_id]);
        Some(Self { endpoints, root })
    }

    /// The root as etcd keys start with it: `/floe/vc/team-a.demo/`.
    pub fn root_prefix(&self) -> String {
        format!("/{}/", self.root.join("/"))
    }

    fn same_etcd(&self, other: &Self) -> bool {
        !self.endpoints.is_disjoint(&other.endpoints)
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.same_etcd(other) && (is_segment_prefix(&self.root, &other.root) || is_segment_prefix(&other.root, &self.root))
    }

    /// True when `other`'s keys lie strictly inside this location's keys (on the same etcd).
    pub fn contains(&self, other: &Self) -> bool {
        self.same_etcd(other) && other.root.len() > self.root.len() && is_segment_prefix(&self.root, &other.root)
    }
}

/// The bucket objects of one virtual cluster: everything under the URL's prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLocation {
    scheme: &'static str,
    bucket: String,
    /// `spec.objectStore.endpoint` without a trailing slash, lowercase; `None` is AWS.
    endpoint: Option<String>,
    prefix: Vec<String>,
}

impl BucketLocation {
    pub fn of(cluster: &VirtualCluster) -> Option<Self> {
        let endpoint = cluster.spec.object_store.endpoint.as_deref().map(|endpoint| endpoint.trim_end_matches('/').to_ascii_lowercase());
        match cluster.spec.object_store.url.parse::<ObjectStoreUrl>().ok()? {
            ObjectStoreUrl::S3 { bucket, prefix } => Some(Self { scheme: "s3", bucket, endpoint, prefix: segments(&prefix) }),
            ObjectStoreUrl::File(path) => {
                Some(Self { scheme: "file", bucket: String::new(), endpoint: None, prefix: segments(&path.to_string_lossy()) })
            }
            // Nothing persists, so nothing can be destroyed (the controller refuses it anyway).
            ObjectStoreUrl::Memory => None,
        }
    }

    fn overlaps(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.bucket == other.bucket
            && self.endpoint == other.endpoint
            && (is_segment_prefix(&self.prefix, &other.prefix) || is_segment_prefix(&other.prefix, &self.prefix))
    }
}

/// Which of a VirtualCluster's locations overlaps another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// `spec.etcd`: one root is a path prefix of the other on a shared endpoint.
    Etcd { ours: String, theirs: String },
    /// `spec.objectStore`: same bucket, one prefix equal to or inside the other.
    ObjectStore { ours: String, theirs: String },
}

/// Why a VirtualCluster is refused: an older VirtualCluster already uses (part of) its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// `namespace/name` of the older VirtualCluster.
    pub other: String,
    pub overlaps: Vec<Overlap>,
}

impl Conflict {
    /// A message a person can act on: which field, which other VirtualCluster, what to do.
    pub fn message(&self) -> String {
        // The older one's locations are in its own spec; naming it keeps this under 200 characters.
        format!("refused: {} older VirtualCluster {}; change this one's so neither contains the other", self.overlapping(), self.other)
    }

    /// `spec.etcd.prefix and spec.objectStore.url overlap`, or one of them and `overlaps`.
    pub fn overlapping(&self) -> String {
        let fields: Vec<&str> = self
            .overlaps
            .iter()
            .map(|overlap| match overlap {
                Overlap::Etcd { .. } => "spec.etcd.prefix",
                Overlap::ObjectStore { .. } => "spec.objectStore.url",
            })
            .collect();
        format!("{} overlap{}", fields.join(" and "), if fields.len() == 1 { "s" } else { "" })
    }
}

/// What two VirtualClusters share, described from `cluster`'s side (empty: nothing).
pub fn overlaps(cluster: &VirtualCluster, other: &VirtualCluster) -> Vec<Overlap> {
    let mut found = Vec::new();
    if let (Some(ours), Some(theirs)) = (EtcdLocation::of(cluster), EtcdLocation::of(other)) {
        if ours.overlaps(&theirs) {
            found.push(Overlap::Etcd { ours: ours.root_prefix(), theirs: theirs.root_prefix() });
        }
    }
    if let (Some(ours), Some(theirs)) = (BucketLocation::of(cluster), BucketLocation::of(other)) {
        if ours.overlaps(&theirs) {
            found.push(Overlap::ObjectStore { ours: cluster.spec.object_store.url.clone(), theirs: other.spec.object_store.url.clone() });
        }
    }
    found
}

/// Age order: creationTimestamp, then (creationTimestamp has one-second resolution) a cluster
/// already admitted before one never admitted, then uid. An object without a timestamp (not yet
/// stored) counts as the newest. Without the middle key, a copy created in the same second as the
/// cluster it copies would win half the time on its uid and refuse a cluster that already works.
fn age_key(cluster: &VirtualCluster) -> (bool, Timestamp, bool, &str) {
    let created = cluster.metadata.creation_timestamp.as_ref().map(|time| time.0);
    (created.is_none(), created.unwrap_or(Timestamp::MAX), !was_admitted(cluster), cluster.metadata.uid.as_deref().unwrap_or(""))
}

/// Whether the operator has already reconciled `cluster` past the location check: its status has
/// a Ready condition for another reason than a location conflict.
fn was_admitted(cluster: &VirtualCluster) -> bool {
    cluster
        .status
        .iter()
        .flat_map(|status| &status.conditions)
        .any(|condition| condition.type_ == "Ready" && condition.reason != CONFLICT_REASON)
}

fn same_object(a: &VirtualCluster, b: &VirtualCluster) -> bool {
    match (&a.metadata.uid, &b.metadata.uid) {
        (Some(a), Some(b)) => a == b,
        _ => a.metadata.namespace == b.metadata.namespace && a.metadata.name == b.metadata.name,
    }
}

fn display_name(cluster: &VirtualCluster) -> String {
    format!("{}/{}", cluster.metadata.namespace.as_deref().unwrap_or_default(), cluster.metadata.name.as_deref().unwrap_or_default())
}

/// The conflict that refuses `cluster`: the oldest VirtualCluster among `all` that was created
/// before it and overlaps it. `None`: `cluster` may work (it may still overlap newer ones, which
/// are refused in its favour). `all` may contain `cluster` itself.
pub fn refusal(cluster: &VirtualCluster, all: &[VirtualCluster]) -> Option<Conflict> {
    let mut older: Vec<&VirtualCluster> =
        all.iter().filter(|other| !same_object(cluster, other) && age_key(other) < age_key(cluster)).collect();
    older.sort_by(|a, b| age_key(a).cmp(&age_key(b)));
    older.into_iter().find_map(|other| {
        let overlaps = overlaps(cluster, other);
        (!overlaps.is_empty()).then(|| Conflict { other: display_name(other), overlaps })
    })
}

/// etcd roots of other VirtualClusters that lie inside `cluster`'s keys: deleting `cluster`'s
/// keys must leave these alone.
pub fn foreign_roots_inside(cluster: &VirtualCluster, all: &[VirtualCluster]) -> Vec<String> {
    let Some(ours) = EtcdLocation::of(cluster) else { return Vec::new() };
    all.iter()
        .filter(|other| !same_object(cluster, other))
        .filter_map(EtcdLocation::of)
        .filter(|theirs| ours.contains(theirs))
        .map(|theirs| theirs.root_prefix())
        .collect()
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').filter(|segment| !segment.is_empty()).map(str::to_string).collect()
}

fn is_segment_prefix(prefix: &[String], path: &[String]) -> bool {
    prefix.len() <= path.len() && prefix.iter().zip(path).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    /// A VirtualCluster fixture: `namespace/name`, created `minute` minutes into the epoch.
    struct Fixture(serde_json::Value);

    fn cluster(namespace: &str, name: &str, minute: i64) -> Fixture {
        Fixture(serde_json::json!({
            "apiVersion": "floe.dev/v1alpha1", "kind": "VirtualCluster",
            "metadata": {
                "name": name, "namespace": namespace, "uid": format!("uid-{namespace}-{name}"),
                "creationTimestamp": Time(Timestamp::from_second(minute * 60).unwrap()),
            },
            "spec": {
                "etcd": {"endpoints": ["etcd-0.etcd:2379"], "prefix": "/floe"},
                "objectStore": {"url": format!("s3://floe-data/{namespace}-{name}"), "endpoint": "http://minio.storage.svc:9000"},
            },
        }))
    }

    impl Fixture {
        fn bucket(mut self, url: &str) -> Self {
            self.0["spec"]["objectStore"]["url"] = url.into();
            self
        }
        fn endpoint(mut self, endpoint: Option<&str>) -> Self {
            self.0["spec"]["objectStore"]["endpoint"] = endpoint.into();
            self
        }
        fn etcd(mut self, endpoints: &[&str], prefix: &str) -> Self {
            self.0["spec"]["etcd"] = serde_json::json!({"endpoints": endpoints, "prefix": prefix});
            self
        }
        fn uid(mut self, uid: &str) -> Self {
            self.0["metadata"]["uid"] = uid.into();
            self
        }
        fn build(self) -> VirtualCluster {
            serde_json::from_value(self.0).unwrap()
        }
    }

    #[test]
    fn two_clusters_with_their_own_prefixes_in_one_bucket_and_one_etcd_do_not_conflict() {
        let a = cluster("team-a", "demo", 1).build();
        let b = cluster("team-b", "demo", 2).build();
        assert_eq!(refusal(&b, &[a.clone(), b.clone()]), None);
        assert_eq!(refusal(&a, &[a.clone(), b.clone()]), None);
    }

    #[test]
    fn a_copied_example_with_the_same_bucket_url_refuses_the_newer_cluster_naming_the_older() {
        let a = cluster("team-a", "demo", 1).bucket("s3://floe-data/demo").build();
        let b = cluster("team-b", "copy", 2).bucket("s3://floe-data/demo").build();
        let all = [b.clone(), a.clone()];
        assert_eq!(refusal(&a, &all), None, "the older one keeps working");
        let conflict = refusal(&b, &all).expect("the newer one is refused");
        assert_eq!(conflict.other, "team-a/demo");
        assert_eq!(
            conflict.overlaps,
            vec![Overlap::ObjectStore { ours: "s3://floe-data/demo".into(), theirs: "s3://floe-data/demo".into() }]
        );
        let message = conflict.message();
        assert!(message.contains("team-a/demo") && message.contains("spec.objectStore.url"), "{message}");
    }

    #[test]
    fn a_prefix_inside_another_clusters_prefix_overlaps_but_a_sibling_with_a_common_start_does_not() {
        let a = cluster("team-a", "demo", 1).bucket("s3://floe-data/demo").build();
        let inside = cluster("team-b", "inside", 2).bucket("s3://floe-data/demo/clusters/x/").build();
        let sibling = cluster("team-b", "sibling", 3).bucket("s3://floe-data/demo2").build();
        let whole_bucket = cluster("team-c", "all", 4).bucket("s3://floe-data").build();
        let all = [a.clone(), inside.clone(), sibling.clone(), whole_bucket.clone()];
        assert_eq!(refusal(&inside, &all).map(|conflict| conflict.other), Some("team-a/demo".into()));
        assert_eq!(refusal(&sibling, &all), None);
        assert_eq!(refusal(&whole_bucket, &all).map(|conflict| conflict.other), Some("team-a/demo".into()));
    }

    #[test]
    fn the_same_bucket_name_behind_another_endpoint_or_scheme_is_another_bucket() {
        let a = cluster("team-a", "demo", 1).bucket("s3://floe-data/demo").build();
        let elsewhere = cluster("team-b", "demo", 2).bucket("s3://floe-data/demo").endpoint(Some("http://other-minio:9000")).build();
        let aws = cluster("team-c", "demo", 3).bucket("s3://floe-data/demo").endpoint(None).build();
        let files = cluster("team-d", "demo", 4).bucket("file:///floe-data/demo").endpoint(None).build();
        let trailing_slash =
            cluster("team-e", "demo", 5).bucket("s3://floe-data/demo").endpoint(Some("HTTP://minio.storage.svc:9000/")).build();
        let all = [a.clone(), elsewhere.clone(), aws.clone(), files.clone(), trailing_slash.clone()];
        assert_eq!(refusal(&elsewhere, &all), None);
        assert_eq!(refusal(&aws, &all), None);
        assert_eq!(refusal(&files, &all), None);
        assert_eq!(refusal(&trailing_slash, &all).map(|conflict| conflict.other), Some("team-a/demo".into()));
    }

    #[test]
    fn an_etcd_prefix_under_another_clusters_log_overlaps_on_a_shared_endpoint_only() {
        let a = cluster("team-a", "demo", 1).build();
        let nested = cluster("team-b", "nested", 2).etcd(&["etcd-1.etcd:2379", "ETCD-0.etcd:2379"], "/floe/vc/team-a.demo/log").build();
        let other_etcd = cluster("team-c", "nested", 3).etcd(&["etcd-9.other:2379"], "/floe/vc/team-a.demo/log").build();
        let similar_prefix = cluster("team-d", "demo", 4).etcd(&["etcd-0.etcd:2379"], "/floe/vc/team-a.demo2").build();
        let all = [a.clone(), nested.clone(), other_etcd.clone(), similar_prefix.clone()];
        let conflict = refusal(&nested, &all).expect("nested keys are refused");
        assert_eq!(
            conflict.overlaps,
            vec![Overlap::Etcd { ours: "/floe/vc/team-a.demo/log/vc/team-b.nested/".into(), theirs: "/floe/vc/team-a.demo/".into() }]
        );
        assert!(conflict.message().contains("spec.etcd.prefix"), "{}", conflict.message());
        assert_eq!(refusal(&other_etcd, &all), None);
        assert_eq!(refusal(&similar_prefix, &all), None);
        assert_eq!(foreign_roots_inside(&a, &all), vec!["/floe/vc/team-a.demo/log/vc/team-b.nested/".to_string()]);
        assert!(foreign_roots_inside(&nested, &all).is_empty());
    }

    #[test]
    fn an_older_cluster_whose_keys_lie_inside_a_newer_ones_still_wins() {
        let inner = cluster("team-b", "inner", 1).etcd(&["etcd-0.etcd:2379"], "/floe/vc/team-a.outer/log").build();
        let outer = cluster("team-a", "outer", 2).build();
        let all = [inner.clone(), outer.clone()];
        assert_eq!(refusal(&inner, &all), None);
        assert_eq!(refusal(&outer, &all).map(|conflict| conflict.other), Some("team-b/inner".into()));
    }

    #[test]
    fn clusters_created_in_the_same_second_are_ordered_by_uid_and_both_fields_are_named() {
        let first = cluster("team-a", "one", 1).bucket("s3://floe-data/shared").etcd(&["etcd-0.etcd:2379"], "/floe").uid("aaa").build();
        let second = cluster("team-a", "two", 1)
            .bucket("s3://floe-data/shared/")
            .etcd(&["etcd-0.etcd:2379"], "/floe/vc/team-a.one")
            .uid("bbb")
            .build();
        let all = [second.clone(), first.clone()];
        assert_eq!(refusal(&first, &all), None);
        let conflict = refusal(&second, &all).expect("the later uid is refused");
        assert_eq!(conflict.overlaps.len(), 2, "{conflict:?}");
        let message = conflict.message();
        assert!(message.contains("spec.etcd") && message.contains("spec.objectStore.url"), "{message}");
    }

    #[test]
    fn in_the_same_second_a_cluster_already_admitted_wins_over_its_copy_whatever_the_uids() {
        let mut original = cluster("team-a", "original", 1).bucket("s3://floe-data/shared").uid("zzz").build();
        let copy = cluster("team-a", "copy", 1).bucket("s3://floe-data/shared").uid("aaa").build();
        let ready: crate::crd::virtual_cluster::VirtualClusterStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "ok",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}],
        }))
        .unwrap();
        original.status = Some(ready);
        let all = [copy.clone(), original.clone()];
        assert_eq!(refusal(&original, &all), None);
        assert_eq!(refusal(&copy, &all).map(|conflict| conflict.other), Some("team-a/original".into()));
        // A refused cluster does not count as admitted: the uid decides again.
        let mut refused = original.clone();
        refused.status.as_mut().unwrap().conditions[0].reason = CONFLICT_REASON.into();
        assert_eq!(refusal(&refused, &[copy.clone(), refused.clone()]).map(|conflict| conflict.other), Some("team-a/copy".into()));
    }

    #[test]
    fn the_oldest_of_several_conflicting_clusters_is_named() {
        let oldest = cluster("team-a", "oldest", 1).bucket("s3://floe-data/x").build();
        let middle = cluster("team-b", "middle", 2).bucket("s3://floe-data/x").build();
        let newest = cluster("team-c", "newest", 3).bucket("s3://floe-data/x").build();
        let all = [newest.clone(), middle.clone(), oldest.clone()];
        assert_eq!(refusal(&newest, &all).map(|conflict| conflict.other), Some("team-a/oldest".into()));
        assert_eq!(refusal(&middle, &all).map(|conflict| conflict.other), Some("team-a/oldest".into()));
    }
}
