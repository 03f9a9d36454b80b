//! Server-side apply that writes only when something differs, and orphan collection.
//!
//! A child is patched only when the desired object is not already contained in the live one
//! (every field we set has the value we want; fields the apiserver defaulted or others own are
//! ignored). So reconciling an unchanged pool costs one GET per child and no write, and a child
//! someone edited by hand is put back on the next reconcile.

use crate::metrics::Metrics;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fmt::Debug;

/// The one field manager of every write this operator makes.
pub const FIELD_MANAGER: &str = "floe-operator";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Unchanged,
    Written,
}

/// Applies `desired` unless the live object already contains it.
pub async fn apply_if_changed<K>(api: &Api<K>, desired: &K, metrics: &Metrics) -> Result<Applied, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = desired.name_any();
    let desired_value = serde_json::to_value(desired).map_err(kube::Error::SerdeError)?;
    if let Some(live) = api.get_opt(&name).await? {
        let live_value = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if contains(&live_value, &without_type_meta(&desired_value)) {
            return Ok(Applied::Unchanged);
        }
    }
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await?;
    metrics.child_writes.with_label_values(&[K::kind(&()).as_ref(), "apply"]).inc();
    Ok(Applied::Written)
}

/// Server-side applies `status` on `object`'s status subresource, unless the object already shows
/// exactly that status (so an unchanged world writes nothing). Counted per controller.
pub async fn patch_status_if_changed<K, S>(
    api: &Api<K>,
    object: &K,
    previous: Option<&S>,
    status: &S,
    controller: &str,
    metrics: &Metrics,
) -> Result<Applied, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
    S: Serialize + PartialEq,
{
    if previous == Some(status) {
        return Ok(Applied::Unchanged);
    }
    let patch = serde_json::json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(&object.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    metrics.status_writes.with_label_values(&[controller]).inc();
    Ok(Applied::Written)
}

/// Deletes the objects matching `selector` whose names are not in `keep`.
pub async fn delete_orphans<K>(api: &Api<K>, selector: &str, keep: &BTreeSet<String>, metrics: &Metrics) -> Result<usize, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let mut deleted = 0;
    for object in api.list(&ListParams::default().labels(selector)).await? {
        let name = object.name_any();
        if keep.contains(&name) || object.meta().deletion_timestamp.is_some() {
            continue;
        }
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => continue,
            Err(error) => return Err(error),
        }
        metrics.child_writes.with_label_values(&[K::kind(&()).as_ref(), "delete"]).inc();
        deleted += 1;
    }
    Ok(deleted)
}

fn without_type_meta(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("apiVersion");
        object.remove("kind");
        object.remove("status");
    }
    value
}

/// True when every field of `wanted` is present in `live` with the same value. Lists must have
/// the same length and match element by element (the apiserver keeps our order). Strings that
/// are equal quantities (`0.5` and `500m`) match.
pub fn contains(live: &Value, wanted: &Value) -> bool {
    match (live, wanted) {
        (Value::Object(live), Value::Object(wanted)) => wanted
            .iter()
            .all(|(key, wanted)| live.get(key).is_some_and(|live| contains(live, wanted)) || is_empty(wanted) && live.get(key).is_none()),
        (Value::Array(live), Value::Array(wanted)) => {
            live.len() == wanted.len() && live.iter().zip(wanted).all(|(live, wanted)| contains(live, wanted))
        }
        (Value::String(live), Value::String(wanted)) => live == wanted || crate::crd::quantity::same_value(live, wanted),
        (Value::Number(live), Value::Number(wanted)) => live.as_f64() == wanted.as_f64(),
        // An int-or-string field we set as a number may come back as one; compare text.
        (Value::String(live), Value::Number(wanted)) | (Value::Number(wanted), Value::String(live)) => *live == wanted.to_string(),
        (live, wanted) => live == wanted,
    }
}

/// An empty map or list we send is dropped by the apiserver.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_the_apiserver_added_do_not_count_as_a_change() {
        let live = json!({"spec": {"replicas": 3, "revisionHistoryLimit": 10, "ports": [{"port": 9092, "protocol": "TCP"}]}});
        let wanted = json!({"spec": {"replicas": 3, "ports": [{"port": 9092}]}});
        assert!(contains(&live, &wanted));
    }

    #[test]
    fn a_changed_or_missing_field_is_a_change() {
        let live = json!({"spec": {"replicas": 3, "ports": [{"port": 9092}]}});
        assert!(!contains(&live, &json!({"spec": {"replicas": 4}})));
        assert!(!contains(&live, &json!({"spec": {"paused": true}})));
        assert!(!contains(&live, &json!({"spec": {"ports": [{"port": 9092}, {"port": 8080}]}})));
    }

    #[test]
    fn canonical_quantities_match_what_we_sent() {
        let live = json!({"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}});
        assert!(contains(&live, &json!({"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}})));
    }

    #[test]
    fn empty_collections_we_send_match_absent_ones() {
        assert!(contains(&json!({"spec": {}}), &json!({"spec": {"volumes": [], "labels": {}}})));
    }
}
