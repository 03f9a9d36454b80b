//! Reading a VirtualCluster's Secrets and opening its etcd and its bucket. This step only
//! performs I/O; what it reads is validated by the caller.

use crate::crd::virtual_cluster::{AuthenticationType, VirtualCluster};
use floe_meta::bucket::{ObjectStoreUrl, S3Options, SegmentStore};
use floe_meta::etcd::{self, EtcdSettings};
use floe_meta::keys::KeyLayout;
use floe_meta::replica::Replica;
use floe_meta::snapshot::SnapshotPointer;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::messages::plain_cause;

/// How long a probe of etcd or the bucket may take before it counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

use super::problems;
pub use super::problems::Unusable;

/// Everything needed to talk to the cluster's etcd and bucket.
pub struct Resolved {
    pub etcd: EtcdSettings,
    pub keys: KeyLayout,
    pub bucket: ObjectStoreUrl,
    pub s3: S3Options,
}

async fn secret_value(secrets: &Api<Secret>, name: &str, key: &str, field: &str) -> Result<Vec<u8>, Unusable> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|error| problems::secret_unreadable(name, field, &error))?
        .ok_or_else(|| problems::secret_not_found(name, field))?;
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .ok_or_else(|| problems::secret_key_missing(name, field, key))
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, Unusable> {
    String::from_utf8(bytes).map_err(|_| problems::secret_key_invalid(what))
}

/// Checks that the Secrets the listener names exist with the keys the agents will read, so a
/// missing one shows on the VirtualCluster (and pools keep their agents' last configuration)
/// instead of agents failing to start.
pub async fn check_listener(client: &Client, cluster: &VirtualCluster) -> Result<(), Unusable> {
    let Some(listener) = &cluster.spec.listener else { return Ok(()) };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let mtls = listener.authentication.as_ref().is_some_and(|authentication| authentication.kind == AuthenticationType::Mtls);
    if let Some(reference) = &listener.tls_secret_ref {
        let keys: &[&str] = if mtls { &["tls.crt", "tls.key", "ca.crt"] } else { &["tls.crt", "tls.key"] };
        for key in keys {
            secret_value(&secrets, &reference.name, key, "spec.listener.tlsSecretRef").await?;
        }
    }
    if let Some(user) = listener.authentication.as_ref().and_then(|authentication| authentication.bootstrap_user.as_ref()) {
        let field = "spec.listener.authentication.bootstrapUser.passwordSecretRef";
        let password = secret_value(&secrets, &user.password_secret_ref.name, "password", field).await?;
        if password.iter().all(|byte| byte.is_ascii_whitespace()) {
            return Err(problems::secret_key_empty(&user.password_secret_ref.name, field, "password"));
        }
    }
    Ok(())
}

/// Validates the spec and reads the Secrets it names, for both dependencies.
pub async fn resolve(client: &Client, cluster: &VirtualCluster) -> Result<Resolved, Unusable> {
    let (etcd, keys) = resolve_etcd(client, cluster).await?;
    let (bucket, s3) = resolve_bucket(client, cluster).await?;
    Ok(Resolved { etcd, keys, bucket, s3 })
}

/// The etcd half of [`resolve`]: a problem here says nothing about the bucket, and the other way
/// round, so each dependency's condition reports only its own problems. TLS material is written
/// to files under the temporary directory because the etcd client reads PEM files.
pub async fn resolve_etcd(client: &Client, cluster: &VirtualCluster) -> Result<(EtcdSettings, KeyLayout), Unusable> {
    let namespace = cluster.namespace().unwrap_or_default();
    let cluster_id = cluster.cluster_id().ok_or_else(problems::no_identity)?;
    let spec = &cluster.spec;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut settings = EtcdSettings {
        // floe_meta::etcd::connect dials https:// when a CA or client certificate is set.
        endpoints: spec.etcd.endpoints.clone(),
        prefix: spec.etcd.prefix.clone(),
        ..EtcdSettings::default()
    };
    if let Some(reference) = &spec.etcd.credentials_secret_ref {
        let field = "spec.etcd.credentialsSecretRef";
        let user = utf8(secret_value(&secrets, &reference.name, "username", field).await?, "username")?;
        let password = utf8(secret_value(&secrets, &reference.name, "password", field).await?, "password")?;
        settings.user = Some((user, password));
    }
    if let Some(reference) = &spec.etcd.tls_secret_ref {
        let field = "spec.etcd.tlsSecretRef";
        let directory = std::env::temp_dir().join("floe-operator").join(cluster.uid().unwrap_or_else(|| cluster_id.clone()));
        std::fs::create_dir_all(&directory)
            .map_err(|error| problems::temporary_files("create", &directory.display().to_string(), &error))?;
        let write = |file: &str, bytes: Vec<u8>| {
            let path = directory.join(file);
            std::fs::write(&path, bytes).map(|_| path).map_err(|error| problems::temporary_files("write", file, &error))
        };
        settings.endpoints = spec.etcd.endpoints.iter().map(|endpoint| format!("https://{endpoint}")).collect();
        settings.ca_file = Some(write("ca.crt", secret_value(&secrets, &reference.name, "ca.crt", field).await?)?);
        if let (Ok(cert), Ok(key)) = (
            secret_value(&secrets, &reference.name, "tls.crt", field).await,
            secret_value(&secrets, &reference.name, "tls.key", field).await,
        ) {
            settings.cert_file = Some(write("tls.crt", cert)?);
            settings.key_file = Some(write("tls.key", key)?);
        }
    }
    let keys = KeyLayout::new(&settings.prefix, &cluster_id);
    Ok((settings, keys))
}

/// The bucket half of [`resolve`].
pub async fn resolve_bucket(client: &Client, cluster: &VirtualCluster) -> Result<(ObjectStoreUrl, S3Options), Unusable> {
    let spec = &cluster.spec;
    let bucket: ObjectStoreUrl = spec.object_store.url.parse().map_err(|reason: String| problems::bucket_url_invalid(&reason))?;
    if matches!(bucket, ObjectStoreUrl::Memory) {
        return Err(problems::bucket_url_in_memory());
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let mut s3 = S3Options {
        endpoint: spec.object_store.endpoint.clone(),
        region: spec.object_store.region.clone(),
        allow_http: spec.object_store.endpoint.as_deref().is_some_and(|endpoint| endpoint.starts_with("http://")),
        ..S3Options::default()
    };
    if let Some(reference) = &spec.object_store.credentials_secret_ref {
        let field = "spec.objectStore.credentialsSecretRef";
        s3.access_key_id = Some(utf8(secret_value(&secrets, &reference.name, "AWS_ACCESS_KEY_ID", field).await?, "AWS_ACCESS_KEY_ID")?);
        s3.secret_access_key =
            Some(utf8(secret_value(&secrets, &reference.name, "AWS_SECRET_ACCESS_KEY", field).await?, "AWS_SECRET_ACCESS_KEY")?);
    }
    Ok((bucket, s3))
}

/// Connects to etcd and checks it answers, within [`PROBE_TIMEOUT`].
pub async fn connect_etcd(settings: &EtcdSettings) -> Result<etcd_client::Client, Unusable> {
    let endpoints = &settings.endpoints;
    let attempt = async {
        let mut client = etcd::connect(settings).await.map_err(|error| plain_cause(&error))?;
        client.status().await.map_err(|error| plain_cause(&error))?;
        Ok::<_, String>(client)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(cause)) => Err(problems::etcd_unreachable(endpoints, &cause)),
        Err(_) => Err(problems::etcd_timeout(endpoints, PROBE_TIMEOUT.as_secs())),
    }
}

pub fn open_bucket(bucket: &ObjectStoreUrl, s3: &S3Options) -> Result<Arc<SegmentStore>, Unusable> {
    SegmentStore::open_unobserved(bucket, s3).map(Arc::new).map_err(|error| problems::bucket_unusable(&error))
}

/// Where the operator's probe objects for `cluster` go: `_floe/probes/<uid>/`, so deleting them
/// never touches another VirtualCluster's in a shared bucket.
pub fn probe_prefix(cluster: &VirtualCluster) -> String {
    format!("_floe/probes/{}", cluster.uid().or_else(|| cluster.cluster_id()).unwrap_or_default())
}

/// PUT, GET and DELETE of a small probe object under `probes` (see [`probe_prefix`]): the three
/// operations agents need.
pub async fn probe_bucket(store: &SegmentStore, url: &str, probes: &str) -> Result<(), Unusable> {
    let name = format!("{probes}/{}", uuid::Uuid::new_v4());
    let body = bytes::Bytes::from(format!("floe-operator probe {name}"));
    let attempt = async {
        store.put(&name, body.clone()).await.map_err(|error| format!("PUT failed: {}", plain_cause(&error)))?;
        let read = store.get(&name).await.map_err(|error| format!("GET failed: {}", plain_cause(&error)))?;
        store.delete(&name).await.map_err(|error| format!("DELETE failed: {}", plain_cause(&error)))?;
        if read != body {
            return Err("GET returned other bytes than were PUT".to_string());
        }
        Ok(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(cause)) => Err(problems::bucket_unreachable(url, &cause)),
        Err(_) => Err(problems::bucket_timeout(url, PROBE_TIMEOUT.as_secs())),
    }
}

/// Deletes the objects of this virtual cluster, and only those: everything under
/// `clusters/<cluster_id>/` (the journal's cluster id), the older top-level objects its metadata
/// still names (segments and the snapshot), and the operator's probe objects under `probes`.
/// Shared top-level prefixes (`segments/`, `snapshots/`) are never listed: in a bucket shared by
/// mistake they hold another virtual cluster's objects too. Returns how many were deleted.
///
/// # Assumptions
/// Deleting an object that is already gone succeeds, so a retry after a partial failure finishes.
/// If the snapshot object is deleted but the etcd keys are not, the retry cannot read the snapshot
/// and fails until deletionPolicy is set to Retain; so the snapshot object goes last.
pub async fn delete_objects(
    client: &etcd_client::Client,
    keys: &KeyLayout,
    store: Arc<SegmentStore>,
    probes: &str,
) -> Result<usize, String> {
    let replica = Arc::new(Replica::new());
    etcd::load(client.clone(), keys.clone(), Arc::clone(&replica), Arc::clone(&store))
        .await
        .map_err(|error| format!("failed to read the journal under {}: {error}", keys.root_prefix()))?;
    let (cluster_id, referenced) = replica.read(|state| (state.cluster_id.clone(), state.referenced_objects()));
    let pointer_key = keys.snapshot_pointer();
    let pointer = client.clone().get(pointer_key.clone(), None).await.map_err(|error| format!("failed to read {pointer_key}: {error}"))?;
    let snapshot = match pointer.kvs().first() {
        Some(kv) => Some(
            serde_json::from_slice::<SnapshotPointer>(kv.value())
                .map_err(|error| format!("malformed snapshot pointer {pointer_key}: {error}"))?
                .object,
        ),
        None => None,
    };
    let mut listed = Vec::new();
    for prefix in owned_prefixes(cluster_id.as_deref(), probes) {
        listed.extend(store.list(&prefix).await.map_err(|error| error.to_string())?);
    }
    let referenced: Vec<String> = referenced.iter().map(|object| object.to_string()).collect();
    let names = objects_to_delete(listed, referenced, snapshot);
    for name in &names {
        store.delete(name).await.map_err(|error| error.to_string())?;
    }
    Ok(names.len())
}

/// The prefixes only this virtual cluster writes under, to be listed and emptied: its
/// `clusters/<cluster_id>/` folders (none while the journal has no cluster id, or one that would
/// not be a single path segment) and the operator's probes.
pub fn owned_prefixes(cluster_id: Option<&str>, probes: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    if let Some(id) = cluster_id.filter(|id| !id.is_empty() && !id.contains('/') && *id != "." && *id != "..") {
        // Listed folder by folder: a file:// bucket lists one directory level at a time.
        prefixes.push(format!("clusters/{id}/segments"));
        prefixes.push(format!("clusters/{id}/snapshots"));
    }
    if probes.split('/').filter(|segment| !segment.is_empty()).count() >= 3 {
        prefixes.push(probes.to_string());
    }
    prefixes
}

/// Every object to delete, once each, with the snapshot last (see [`delete_objects`]).
pub fn objects_to_delete(listed: Vec<String>, referenced: Vec<String>, snapshot: Option<String>) -> Vec<String> {
    let mut names: Vec<String> =
        listed.into_iter().chain(referenced).filter(|name| Some(name) != snapshot.as_ref()).collect::<BTreeSet<_>>().into_iter().collect();
    names.extend(snapshot);
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_with_an_id_empties_only_its_own_folders_and_probes() {
        assert_eq!(
            owned_prefixes(Some("Qx7Zr2"), "_floe/probes/11111111-2222"),
            vec!["clusters/Qx7Zr2/segments", "clusters/Qx7Zr2/snapshots", "_floe/probes/11111111-2222"]
        );
    }

    #[test]
    fn no_cluster_id_or_a_strange_one_never_lists_a_shared_prefix() {
        for id in [None, Some(""), Some(".."), Some("a/b")] {
            assert_eq!(owned_prefixes(id, "_floe/probes/uid"), vec!["_floe/probes/uid"], "{id:?}");
        }
        assert!(owned_prefixes(None, "_floe/probes/").is_empty(), "an empty uid would list every cluster's probes");
        assert!(owned_prefixes(None, "_floe").is_empty());
    }

    #[test]
    fn referenced_top_level_objects_are_deleted_once_and_the_snapshot_last() {
        let names = objects_to_delete(
            vec!["clusters/Q/segments/02.seg".into(), "clusters/Q/snapshots/2.json".into()],
            vec!["segments/01.seg".into(), "clusters/Q/segments/02.seg".into()],
            Some("snapshots/00000000000000000009-01.json".into()),
        );
        assert_eq!(
            names,
            vec!["clusters/Q/segments/02.seg", "clusters/Q/snapshots/2.json", "segments/01.seg", "snapshots/00000000000000000009-01.json",]
        );
    }
}
