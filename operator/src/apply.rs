//! Server-side apply that writes only when something differs, and orphan collection.
//!
//! A child is patched only when the desired object is not already contained in the live one
//! (every field we set has the value we want; fields the apiserver defaulted or others own are
//! ignored) or was last applied from another desired object. So reconciling an unchanged pool
//! costs one GET per child and no write, and a child someone edited by hand is put back on the
//! next reconcile.
//!
//! Containment alone cannot see a field we stopped setting: the live object still has it, so it
//! "contains" the smaller desired object and the field would stay forever. Each child therefore
//! carries a fingerprint of the desired object it was applied from ([`FINGERPRINT`]); a different
//! fingerprint means a different desired object, and the server-side apply that follows removes
//! the fields this field manager no longer sets.

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
/// Annotation holding the fingerprint of the desired object a child was last applied from.
pub const FINGERPRINT: &str = "floe.dev/applied-fingerprint";

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
    let desired_value = as_applied(&serde_json::to_value(desired).map_err(kube::Error::SerdeError)?);
    if let Some(live) = api.get_opt(&name).await? {
        let live_value = serde_json::to_value(&live).map_err(kube::Error::SerdeError)?;
        if contains(&live_value, &without_type_meta(&desired_value)) {
            return Ok(Applied::Unchanged);
        }
    }
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&desired_value)).await?;
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

/// The object as this operator applies it: `desired` with its fingerprint annotation.
pub fn as_applied(desired: &Value) -> Value {
    let mut applied = desired.clone();
    let print = fingerprint(desired);
    if let Some(metadata) = applied.as_object_mut().map(|object| object.entry("metadata").or_insert_with(|| serde_json::json!({}))) {
        if let Some(metadata) = metadata.as_object_mut() {
            let annotations = metadata.entry("annotations").or_insert_with(|| serde_json::json!({}));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(FINGERPRINT.to_string(), Value::String(print));
            }
        }
    }
    applied
}

/// FNV-1a (64 bit) of the object's JSON with map keys sorted: stable across operator builds and
/// Rust versions, unlike `DefaultHasher`, so an upgrade rewrites nothing.
fn fingerprint(desired: &Value) -> String {
    fn canonical(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for key in keys {
                    out.push_str(&Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for item in items {
                    canonical(item, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(desired, &mut text);
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
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
    fn the_fingerprint_changes_with_any_field_and_not_with_key_order() {
        let one = fingerprint(&json!({"data": {"a": "1", "b": "2"}}));
        assert_eq!(one, fingerprint(&serde_json::from_str(r#"{"data": {"b": "2", "a": "1"}}"#).unwrap()));
        assert_ne!(one, fingerprint(&json!({"data": {"a": "1"}})));
        assert_eq!(one.len(), 16);
    }

    #[test]
    fn empty_collections_we_send_match_absent_ones() {
        assert!(contains(&json!({"spec": {}}), &json!({"spec": {"volumes": [], "labels": {}}})));
    }
}
