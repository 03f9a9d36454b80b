//! What the kubelet does for a pod's Secret volumes, for the local agents of `pod_agents`: each
//! Secret is projected into a directory the way the kubelet's atomic writer lays it out — the
//! files live in a timestamped directory `..<n>`, `..data` is a symlink to it, and each key is a
//! symlink `<key> -> ..data/<key>` — and re-projected when the Secret changes by writing a new
//! timestamped directory and swapping `..data` with one rename. So the agent sees a renewed
//! certificate and its key change together, exactly as in a real pod.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Container, PodSpec, Secret};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often Secrets are re-read (the kubelet's sync period is about a minute; the tests need
/// less).
const SYNC_INTERVAL: Duration = Duration::from_millis(500);

/// One Secret volume of a container: where the pod mounts it, and where it lives locally.
#[derive(Debug, Clone)]
pub struct SecretVolume {
    pub secret: String,
    /// `key → file name` (the volume's `items`), or every key when empty.
    pub items: BTreeMap<String, String>,
    pub mount_path: String,
    pub local: PathBuf,
}

/// The Secret volumes `container` mounts, placed under `root`.
pub fn of(spec: &PodSpec, container: &Container, root: &Path) -> Vec<SecretVolume> {
    let mut volumes = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|volume| volume.name == mount.name) else { continue };
        let Some(secret) = &volume.secret else { continue };
        let Some(name) = &secret.secret_name else { continue };
        let items = secret.items.iter().flatten().map(|item| (item.key.clone(), item.path.clone())).collect();
        volumes.push(SecretVolume { secret: name.clone(), items, mount_path: mount.mount_path.clone(), local: root.join(&volume.name) });
    }
    volumes
}

/// `value` with a mount path replaced by its local directory.
pub fn localize(value: &str, volumes: &[SecretVolume]) -> String {
    volumes.iter().fold(value.to_string(), |value, volume| value.replace(&volume.mount_path, &volume.local.display().to_string()))
}

/// Projects every volume once (a missing Secret fails the start, as it keeps a pod from starting).
pub async fn project_all(client: &Client, namespace: &str, volumes: &[SecretVolume]) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    for volume in volumes {
        let secret = secrets.get(&volume.secret).await.with_context(|| format!("Secret {} of a pod volume", volume.secret))?;
        project(volume, &files(volume, &secret))?;
    }
    Ok(())
}

/// Keeps the volumes in step with their Secrets until aborted.
pub async fn sync(client: Client, namespace: String, volumes: Vec<SecretVolume>) {
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let mut projected: BTreeMap<PathBuf, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    loop {
        for volume in &volumes {
            let Ok(Some(secret)) = secrets.get_opt(&volume.secret).await else { continue };
            let wanted = files(volume, &secret);
            if projected.get(&volume.local) == Some(&wanted) {
                continue;
            }
            match project(volume, &wanted) {
                Ok(()) => {
                    projected.insert(volume.local.clone(), wanted);
                }
                Err(error) => eprintln!("failed to project Secret {} into {}: {error:#}", volume.secret, volume.local.display()),
            }
        }
        tokio::time::sleep(SYNC_INTERVAL).await;
    }
}

fn files(volume: &SecretVolume, secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let data = secret.data.clone().unwrap_or_default();
    if volume.items.is_empty() {
        return data.into_iter().map(|(key, value)| (key, value.0)).collect();
    }
    volume.items.iter().filter_map(|(key, path)| data.get(key).map(|value| (path.clone(), value.0.clone()))).collect()
}

/// The atomic writer's layout: a new `..<n>` directory, `..data` swapped to it by rename, one
/// symlink per file; the previous `..<n>` directory is removed afterwards.
fn project(volume: &SecretVolume, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let root = &volume.local;
    std::fs::create_dir_all(root)?;
    let generation = format!("..{}", ulid::Ulid::new());
    let directory = root.join(&generation);
    std::fs::create_dir(&directory)?;
    for (name, contents) in files {
        std::fs::write(directory.join(name), contents)?;
    }
    let data = root.join("..data");
    let previous = std::fs::read_link(&data).ok();
    let staged = root.join("..data_tmp");
    let _ = std::fs::remove_file(&staged);
    std::os::unix::fs::symlink(&generation, &staged)?;
    std::fs::rename(&staged, &data)?;
    for name in files.keys() {
        let link = root.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), &link)?;
        }
    }
    if let Some(previous) = previous {
        let _ = std::fs::remove_dir_all(root.join(previous));
    }
    Ok(())
}
