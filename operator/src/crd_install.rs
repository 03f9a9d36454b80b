//! Installs and upgrades the operator's own CustomResourceDefinitions (`run --install-crds`, the
//! chart's default, and `crds --apply`).
//!
//! Why the operator and not Helm: a CRD templated by a chart belongs to one release. Kept on
//! uninstall (deleting a CRD deletes every VirtualCluster and AgentPool), it still names that
//! release, and Helm refuses to install the chart under any other name ("invalid ownership
//! metadata"). Helm's `crds/` folder avoids that but never upgrades a CRD. Applied by the operator,
//! the CRDs belong to no release, are never deleted by `helm uninstall`, and always match the
//! operator that reads them: the schema comes from the same Rust types (`crdgen`).
//!
//! Safety of a downgrade or of two versions in a rolling upgrade: each CRD carries the version of
//! the operator that applied it; an operator older than that leaves it alone, so an old replica
//! starting late never takes fields away from a newer schema.

use crate::crdgen;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client};
use std::time::{Duration, Instant};

/// Annotation naming the version of the operator that last applied a CRD.
pub const VERSION_ANNOTATION: &str = "floe.dev/operator-version";
const FIELD_MANAGER: &str = "floe-operator";
/// How long the apiserver may stay unreachable or slow before the operator gives up (and its pod
/// restarts with the message in its log).
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum CrdInstallError {
    #[error(
        "the operator may not install the CustomResourceDefinition {name}: Kubernetes answered forbidden. Give its \
         ServiceAccount create, get and patch on customresourcedefinitions (the chart does with crds.enabled=true), or apply \
         crds/ yourself and run without --install-crds"
    )]
    Forbidden { name: String },
    #[error("failed to apply the CustomResourceDefinition {name}: {reason}; check that the apiserver is reachable")]
    Apply { name: String, reason: String },
    #[error("the CustomResourceDefinition {name} was applied but not Established within {seconds} s; see `kubectl describe crd {name}`")]
    NotEstablished { name: String, seconds: u64 },
}

/// What happened to one CRD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    Applied {
        name: String,
    },
    /// Left alone: a newer operator applied it.
    KeptNewer {
        name: String,
        version: String,
    },
}

/// Applies every CRD (server-side, this operator's field manager) unless a newer operator applied
/// it, then waits until each is Established, so the controllers can watch them at once.
pub async fn install(client: &Client) -> Result<Vec<Installed>, CrdInstallError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ours = env!("CARGO_PKG_VERSION");
    let mut outcomes = Vec::new();
    for mut definition in crdgen::definitions() {
        let name = definition.metadata.name.clone().unwrap_or_default();
        let existing = with_patience(&name, || api.get_opt(&name)).await?;
        if let Some(version) = existing.as_ref().and_then(applied_by).filter(|theirs| newer(theirs, ours)) {
            tracing::warn!(crd = %name, installed_by = %version, ours, "leaving a CRD applied by a newer operator as it is");
            outcomes.push(Installed::KeptNewer { name, version });
            continue;
        }
        let metadata = &mut definition.metadata;
        metadata.annotations.get_or_insert_with(Default::default).insert(VERSION_ANNOTATION.to_string(), ours.to_string());
        let labels = metadata.labels.get_or_insert_with(Default::default);
        labels.insert("app.kubernetes.io/part-of".to_string(), "floe".to_string());
        labels.insert(crate::labels::MANAGED_BY.to_string(), crate::labels::MANAGER.to_string());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&definition);
        with_patience(&name, || api.patch(&name, &params, &patch)).await?;
        outcomes.push(Installed::Applied { name });
    }
    for outcome in &outcomes {
        let name = match outcome {
            Installed::Applied { name } | Installed::KeptNewer { name, .. } => name,
        };
        let established = await_condition(api.clone(), name, conditions::is_crd_established());
        match tokio::time::timeout(PATIENCE, established).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(CrdInstallError::Apply { name: name.clone(), reason: crate::messages::plain_cause(&error) }),
            Err(_) => return Err(CrdInstallError::NotEstablished { name: name.clone(), seconds: PATIENCE.as_secs() }),
        }
    }
    Ok(outcomes)
}

/// Retries a call that failed for a reason other than a refusal, for up to [`PATIENCE`].
async fn with_patience<T, F, Fut>(name: &str, mut call: F) -> Result<T, CrdInstallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match call().await {
            Ok(value) => return Ok(value),
            Err(kube::Error::Api(response)) if response.code == 403 => return Err(CrdInstallError::Forbidden { name: name.to_string() }),
            Err(kube::Error::Api(response)) if response.code == 422 || response.code == 400 => {
                return Err(CrdInstallError::Apply { name: name.to_string(), reason: response.message.clone() })
            }
            Err(error) if started.elapsed() >= PATIENCE => {
                return Err(CrdInstallError::Apply { name: name.to_string(), reason: crate::messages::plain_cause(&error) })
            }
            Err(error) => {
                tracing::info!(crd = name, reason = %crate::messages::plain_cause(&error), "retrying the CRD install");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn applied_by(definition: &CustomResourceDefinition) -> Option<String> {
    definition.metadata.annotations.as_ref()?.get(VERSION_ANNOTATION).cloned()
}

/// Whether version `theirs` is newer than `ours` (`MAJOR.MINOR.PATCH`, a pre-release suffix
/// ignored). An unreadable version counts as not newer: the annotation is ours to overwrite.
fn newer(theirs: &str, ours: &str) -> bool {
    fn parse(version: &str) -> Option<(u64, u64, u64)> {
        let core = version.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|part| part.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??, parts.next()??))
    }
    matches!((parse(theirs), parse(ours)), (Some(theirs), Some(ours)) if theirs > ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_strictly_newer_readable_version_is_left_alone() {
        assert!(newer("0.2.0", "0.1.9"));
        assert!(newer("1.0.0", "0.9.9"));
        assert!(newer("0.1.10", "0.1.9"));
        assert!(!newer("0.1.0", "0.1.0"));
        assert!(!newer("0.1.0-rc.1", "0.1.0"));
        assert!(!newer("0.0.9", "0.1.0"));
        assert!(!newer("garbage", "0.1.0"));
    }

    #[test]
    fn the_forbidden_message_says_what_to_grant_and_the_alternative() {
        let message = CrdInstallError::Forbidden { name: "agentpools.floe.dev".into() }.to_string();
        assert!(message.contains("create, get and patch on customresourcedefinitions"), "{message}");
        assert!(message.contains("without --install-crds"), "{message}");
        assert!(message.len() < 400, "{message}");
    }
}
