//! Reading a VirtualCluster's Secrets and opening its etcd and its bucket. This step only
//! performs I/O; what it reads is validated by the caller.

use crate::crd::virtual_cluster::VirtualCluster;
use floe_agent::metadata::etcd::{self, EtcdSettings};
use floe_agent::metadata::keys::KeyLayout;
use floe_agent::metrics::Metrics as AgentMetrics;
use floe_agent::storage::{ObjectStoreUrl, S3Options, SegmentStore};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// How long a probe of etcd or the bucket may take before it counts as unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A problem the user fixes: it becomes a condition message and an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unusable {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    pub message: String,
}

fn unusable(reason: &'static str, message: String) -> Unusable {
    Unusable { reason, message }
}

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
        .map_err(|error| unusable("SecretUnreadable", format!("failed to read Secret {name} named by {field}: {error}")))?
        .ok_or_else(|| unusable("SecretNotFound", format!("Secret {name} named by {field} does not exist in this namespace")))?;
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .map(|value| value.0.clone())
        .ok_or_else(|| unusable("SecretKeyMissing", format!("Secret {name} named by {field} has no key {key:?}")))
}

fn utf8(bytes: Vec<u8>, what: &str) -> Result<String, Unusable> {
    String::from_utf8(bytes).map_err(|_| unusable("SecretKeyInvalid", format!("{what} is not UTF-8 text")))
}

/// Validates the spec and reads the Secrets it names. TLS material is written to files under the
/// temporary directory because the etcd client reads PEM files.
pub async fn resolve(client: &Client, cluster: &VirtualCluster) -> Result<Resolved, Unusable> {
    let namespace = cluster.namespace().unwrap_or_default();
    let cluster_id =
        cluster.cluster_id().ok_or_else(|| unusable("InvalidSpec", "the VirtualCluster has no namespace or name".to_string()))?;
    let spec = &cluster.spec;
    let bucket: ObjectStoreUrl =
        spec.object_store.url.parse().map_err(|reason: String| unusable("InvalidSpec", format!("spec.objectStore.url: {reason}")))?;
    if matches!(bucket, ObjectStoreUrl::Memory) {
        return Err(unusable("InvalidSpec", "spec.objectStore.url memory:// loses data on restart; use s3://bucket/prefix".to_string()));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut settings = EtcdSettings {
        endpoints: spec.etcd.endpoints.iter().map(|endpoint| format!("http://{endpoint}")).collect(),
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
            .map_err(|error| unusable("TemporaryFiles", format!("failed to create {}: {error}", directory.display())))?;
        let write = |file: &str, bytes: Vec<u8>| {
            let path = directory.join(file);
            std::fs::write(&path, bytes)
                .map(|_| path)
                .map_err(|error| unusable("TemporaryFiles", format!("failed to write {file}: {error}")))
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
    let keys = KeyLayout::new(&settings.prefix, &cluster_id);
    Ok(Resolved { etcd: settings, keys, bucket, s3 })
}

/// Connects to etcd and checks it answers, within [`PROBE_TIMEOUT`].
pub async fn connect_etcd(resolved: &Resolved) -> Result<etcd_client::Client, Unusable> {
    let endpoints = resolved.etcd.endpoints.join(",");
    let attempt = async {
        let mut client = etcd::connect(&resolved.etcd).await.map_err(|error| error.to_string())?;
        client.status().await.map_err(|error| error.to_string())?;
        Ok::<_, String>(client)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(error)) => Err(unusable(
            "EtcdUnreachable",
            format!("etcd at {endpoints} did not answer: {error}; check spec.etcd.endpoints, the credentials and the network policy"),
        )),
        Err(_) => Err(unusable(
            "EtcdUnreachable",
            format!(
                "etcd at {endpoints} did not answer within {}s; check spec.etcd.endpoints and the network policy",
                PROBE_TIMEOUT.as_secs()
            ),
        )),
    }
}

pub fn open_bucket(resolved: &Resolved) -> Result<Arc<SegmentStore>, Unusable> {
    SegmentStore::open(&resolved.bucket, &resolved.s3, Arc::new(AgentMetrics::new()))
        .map(Arc::new)
        .map_err(|error| unusable("BucketUnusable", format!("spec.objectStore: {error}")))
}

/// PUT, GET and DELETE of a small probe object: the three operations agents need.
pub async fn probe_bucket(store: &SegmentStore, url: &str) -> Result<(), Unusable> {
    let name = format!("_floe/probe-{}", uuid::Uuid::new_v4());
    let body = bytes::Bytes::from(format!("floe-operator probe {name}"));
    let attempt = async {
        store.put(&name, body.clone()).await.map_err(|error| format!("PUT failed: {error}"))?;
        let read = store.get(&name).await.map_err(|error| format!("GET failed: {error}"))?;
        store.delete(&name).await.map_err(|error| format!("DELETE failed: {error}"))?;
        if read != body {
            return Err("GET returned other bytes than were PUT".to_string());
        }
        Ok(())
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(unusable(
            "BucketUnreachable",
            format!("bucket {url}: {error}; check spec.objectStore (url, endpoint, region) and the credentials Secret"),
        )),
        Err(_) => Err(unusable(
            "BucketUnreachable",
            format!("bucket {url} did not answer within {}s; check spec.objectStore.endpoint", PROBE_TIMEOUT.as_secs()),
        )),
    }
}

/// Deletes every object Floe wrote for this virtual cluster (segments and snapshots).
pub async fn delete_objects(store: &SegmentStore) -> Result<usize, String> {
    let mut deleted = 0;
    for prefix in ["segments", "snapshots", "_floe"] {
        for name in store.list(prefix).await.map_err(|error| error.to_string())? {
            store.delete(&name).await.map_err(|error| error.to_string())?;
            deleted += 1;
        }
    }
    Ok(deleted)
}
