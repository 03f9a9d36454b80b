//! Reconcile errors, and what the controller does about each kind (`error_policy`).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The spec cannot work as written; waits for the user to change it.
    #[error("invalid spec: {reason}")]
    InvalidSpec { reason: String },
    /// The Kubernetes API refused or failed a request; retried soon.
    #[error("kubernetes API request failed while {operation}: {source}")]
    Kube { operation: &'static str, source: kube::Error },
    /// Cleaning up external state on deletion failed; retried until it succeeds.
    #[error("failed to clean up {what}: {reason}")]
    Cleanup { what: &'static str, reason: String },
    /// The apiserver would not take one of the pool's children; reported in status.
    #[error(transparent)]
    Child(crate::agent_pool::child_failure::ChildFailure),
    /// A VirtualCluster's deletion waits for the AgentPools that use it; shown in its status.
    #[error("deletion waits for {pools} AgentPools that use the VirtualCluster")]
    InUse { pools: usize },
    #[error("finalizer: {0}")]
    Finalizer(String),
}

impl ReconcileError {
    /// A bounded label for metrics: the variant name.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "InvalidSpec",
            Self::Kube { .. } => "Kube",
            Self::Cleanup { .. } => "Cleanup",
            Self::Child(failure) => failure.reason(),
            Self::InUse { .. } => "InUse",
            Self::Finalizer(_) => "Finalizer",
        }
    }

    /// A state the operator waits out rather than a failure: shown in status and logged once
    /// when it starts, not as a warning at every retry.
    pub fn is_waiting(&self) -> bool {
        matches!(self, Self::InUse { .. })
    }

    /// How long before trying again.
    pub fn retry_after(&self) -> Duration {
        match self {
            // A change to the object triggers a reconcile anyway; this is only a safety net.
            Self::InvalidSpec { .. } => Duration::from_secs(300),
            Self::Kube { .. } => Duration::from_secs(5),
            // A refused object stays refused until the spec (a watched change) or the namespace's
            // policies change; retry slowly for the latter.
            Self::Child(failure) if failure.needs_a_change() => Duration::from_secs(60),
            Self::Child(_) => Duration::from_secs(5),
            Self::Cleanup { .. } | Self::Finalizer(_) => Duration::from_secs(10),
            // A pool's deletion wakes the VirtualCluster through the watch; a safety net.
            Self::InUse { .. } => Duration::from_secs(30),
        }
    }
}

pub fn kube(operation: &'static str) -> impl FnOnce(kube::Error) -> ReconcileError {
    move |source| ReconcileError::Kube { operation, source }
}

/// Runs `apply`, or `cleanup` once the object is being deleted, behind finalizer `name` (kube's
/// helper adds it before the first apply and removes it after a cleanup succeeds), and unwraps
/// the reconcile's own error from kube's.
pub async fn with_finalizer<K, Apply, ApplyFuture, Cleanup, CleanupFuture>(
    client: &kube::Client,
    name: &str,
    object: std::sync::Arc<K>,
    apply: Apply,
    cleanup: Cleanup,
) -> Result<kube::runtime::controller::Action, ReconcileError>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
    Apply: FnOnce(std::sync::Arc<K>) -> ApplyFuture,
    ApplyFuture: std::future::Future<Output = Result<kube::runtime::controller::Action, ReconcileError>>,
    Cleanup: FnOnce(std::sync::Arc<K>) -> CleanupFuture,
    CleanupFuture: std::future::Future<Output = Result<kube::runtime::controller::Action, ReconcileError>>,
{
    use kube::runtime::finalizer::{finalizer, Error, Event};
    let namespace = object.meta().namespace.clone().ok_or_else(|| ReconcileError::InvalidSpec {
        reason: format!("{} {} has no namespace", K::kind(&()), object.meta().name.as_deref().unwrap_or_default()),
    })?;
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), &namespace);
    finalizer(&api, name, object, |event| async {
        match event {
            Event::Apply(object) => apply(object).await,
            Event::Cleanup(object) => cleanup(object).await,
        }
    })
    .await
    .map_err(|error| match error {
        Error::ApplyFailed(error) | Error::CleanupFailed(error) => error,
        other => ReconcileError::Finalizer(other.to_string()),
    })
}
