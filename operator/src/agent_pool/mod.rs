//! The AgentPool controller: read the VirtualCluster and its peers (I/O) → refuse a VirtualCluster
//! whose locations overlap an older one's, or that is not Ready for its current generation (pure)
//! → build the children (pure) → apply them in order → delete orphans → patch status. Reconciling
//! an unchanged pool writes nothing.

pub mod build;
pub mod child_failure;
pub mod virtual_cluster_gate;

use crate::apply::{apply_if_changed, delete_orphans, patch_status_if_changed};
use crate::conditions::condition;
use crate::context::Context;
use crate::crd::agent_pool::{AgentPool, AgentPoolStatus};
use crate::crd::virtual_cluster::VirtualCluster;
use crate::error::{kube as kube_error, ReconcileError};
use crate::labels;
use build::Children;
use child_failure::ChildFailure;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub const CONTROLLER: &str = "agentpool";

#[tracing::instrument(skip_all, fields(pool = %pool.name_any(), namespace = pool.namespace().unwrap_or_default()))]
pub async fn reconcile(pool: Arc<AgentPool>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = pool.namespace().ok_or_else(|| ReconcileError::InvalidSpec { reason: "AgentPool has no namespace".to_string() })?;
    let name = pool.name_any();
    let generation = pool.metadata.generation;
    let previous = pool.status.clone().unwrap_or_default();

    // Read: the VirtualCluster this pool serves.
    let clusters: Api<VirtualCluster> = Api::namespaced(context.client.clone(), &namespace);
    let cluster_name = &pool.spec.virtual_cluster_ref.name;
    let Some(cluster) = clusters.get_opt(cluster_name).await.map_err(kube_error("reading the VirtualCluster"))? else {
        let message = virtual_cluster_not_found(&namespace, cluster_name);
        if !has_condition(&previous, "Ready", "VirtualClusterNotFound") {
            context.warn(pool.as_ref(), "VirtualClusterNotFound", "Reconcile", message.clone()).await;
        }
        let status = not_reconciled(&previous, "VirtualClusterNotFound", message, generation);
        patch_status(&pool, &previous, status, &context).await?;
        // Creating the VirtualCluster triggers a reconcile through the watch; this is a safety net.
        return Ok(Action::requeue(Duration::from_secs(60)));
    };

    // Validate: a VirtualCluster refused for sharing another's locations configures no agents;
    // the pool's children stay as they are until the conflict is resolved.
    let all = context.virtual_clusters().await.map_err(kube_error("listing the VirtualClusters"))?;
    if let Some(conflict) = crate::virtual_cluster::locations::refusal(&cluster, &all) {
        const REASON: &str = "VirtualClusterRefused";
        tracing::info!(conflict = conflict.message(), "the pool's VirtualCluster is refused");
        let message = virtual_cluster_refused(cluster_name, &conflict);
        if !has_condition(&previous, "Ready", REASON) {
            context.warn(pool.as_ref(), REASON, "Reconcile", message.clone()).await;
        }
        let status = not_reconciled(&previous, REASON, message, generation);
        patch_status(&pool, &previous, status, &context).await?;
        // A change to either VirtualCluster triggers a reconcile through the watch; a safety net.
        return Ok(Action::requeue(Duration::from_secs(60)));
    }

    // Validate: only a VirtualCluster found Ready for its current generation configures agents
    // (`virtual_cluster_gate` says why); until then the children stay as they were applied last.
    if let Err(message) = virtual_cluster_gate::check(&cluster, previous.observed_generation.is_some()) {
        const REASON: &str = virtual_cluster_gate::REASON;
        if !has_condition(&previous, "Ready", REASON) {
            context.warn(pool.as_ref(), REASON, "Reconcile", message.clone()).await;
        }
        let status = not_reconciled(&previous, REASON, message, generation);
        patch_status(&pool, &previous, status, &context).await?;
        // The VirtualCluster's status change wakes the pool through the watch; a safety net.
        return Ok(Action::requeue(Duration::from_secs(60)));
    }

    // Build: pure.
    let children = match build::build(&pool, &cluster, &context.build) {
        Ok(children) => children,
        Err(error) => {
            let message = error.to_string();
            if !has_condition(&previous, "Ready", "InvalidSpec") {
                context.warn(pool.as_ref(), "InvalidSpec", "Reconcile", message.clone()).await;
            }
            let status = not_reconciled(&previous, "InvalidSpec", message.clone(), generation);
            patch_status(&pool, &previous, status, &context).await?;
            return Err(ReconcileError::InvalidSpec { reason: message });
        }
    };

    // Apply, in this order: the ServiceAccount and ConfigMap first so an agent pod never starts
    // without its identity or config; the Services before the Deployment so agents are reachable
    // the moment they are Ready; the budget and autoscaler last, once there is something to guard.
    let deployment = match apply_children(&context, &namespace, &children).await {
        Ok(deployment) => deployment,
        Err(failure) => return Err(report_child_failure(&pool, &previous, failure, &context).await),
    };

    // Orphans: children carrying this pool's labels that the build no longer produces (today only
    // the autoscaler, when autoscaling is switched off, or children of a renamed scheme).
    collect_orphans(&context, &namespace, &name, &children).await?;

    // Status.
    let deployment_status = deployment.status.clone().unwrap_or_default();
    let autoscaler = match &children.autoscaler {
        Some(_) => Api::<HorizontalPodAutoscaler>::namespaced(context.client.clone(), &namespace)
            .get_opt(&name)
            .await
            .map_err(kube_error("reading the HorizontalPodAutoscaler"))?,
        None => None,
    };
    let status = pool_status(&pool, &previous, &deployment, deployment_status, autoscaler.as_ref());
    let ready = status.conditions.iter().any(|condition| condition.type_ == "Ready" && condition.status == "True");
    patch_status(&pool, &previous, status, &context).await?;
    // Deployment changes trigger a reconcile through the owned watch; the requeue is a safety net.
    Ok(Action::requeue(Duration::from_secs(if ready { 300 } else { 30 })))
}

async fn apply_children(context: &Context, namespace: &str, children: &Children) -> Result<Deployment, ChildFailure> {
    let client = context.client.clone();
    apply_child(&Api::<ServiceAccount>::namespaced(client.clone(), namespace), &children.service_account, context).await?;
    apply_child(&Api::<ConfigMap>::namespaced(client.clone(), namespace), &children.config_map, context).await?;
    let services = Api::<Service>::namespaced(client.clone(), namespace);
    apply_child(&services, &children.headless_service, context).await?;
    apply_child(&services, &children.client_service, context).await?;
    let deployments = Api::<Deployment>::namespaced(client.clone(), namespace);
    apply_child(&deployments, &children.deployment, context).await?;
    apply_child(&Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace), &children.disruption_budget, context).await?;
    if let Some(autoscaler) = &children.autoscaler {
        apply_child(&Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), namespace), autoscaler, context).await?;
    }
    if let Some(network_policy) = &children.network_policy {
        apply_child(&Api::<NetworkPolicy>::namespaced(client.clone(), namespace), network_policy, context).await?;
    }
    let name = children.deployment.name_any();
    deployments.get(&name).await.map_err(|source| ChildFailure { action: "read", kind: "Deployment", name, source })
}

async fn apply_child<K>(api: &Api<K>, child: &K, context: &Context) -> Result<(), ChildFailure>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::Serialize + serde::de::DeserializeOwned,
{
    apply_if_changed(api, child, &context.metrics).await.map(|_| ()).map_err(|source| ChildFailure {
        action: "apply",
        kind: static_kind::<K>(),
        name: child.name_any(),
        source,
    })
}

/// The kinds the pool owns, as `'static` text for messages and labels.
fn static_kind<K: kube::Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ServiceAccount" => "ServiceAccount",
        "ConfigMap" => "ConfigMap",
        "Service" => "Service",
        "Deployment" => "Deployment",
        "PodDisruptionBudget" => "PodDisruptionBudget",
        "HorizontalPodAutoscaler" => "HorizontalPodAutoscaler",
        "NetworkPolicy" => "NetworkPolicy",
        _ => "child",
    }
}

/// A child the apiserver would not take: `Reconciled=False` and `Ready=False` with the cause, a
/// Warning event when the problem is new (not on every retry), and `observedGeneration` left at
/// the last generation that was applied. Returns the error that decides the retry.
async fn report_child_failure(pool: &AgentPool, previous: &AgentPoolStatus, failure: ChildFailure, context: &Context) -> ReconcileError {
    let reason = failure.reason();
    let message = failure.message();
    let already_reported = previous
        .conditions
        .iter()
        .any(|condition| condition.type_ == RECONCILED && condition.reason == reason && condition.message == message);
    if !already_reported {
        context.warn(pool, reason, "Apply", message.clone()).await;
    }
    let status = not_reconciled(previous, reason, message, pool.metadata.generation);
    if let Err(error) = patch_status(pool, previous, status, context).await {
        tracing::warn!(%error, "failed to report a child apply failure in status");
    }
    ReconcileError::Child(failure)
}

async fn collect_orphans(context: &Context, namespace: &str, pool: &str, children: &Children) -> Result<(), ReconcileError> {
    let client = context.client.clone();
    let metrics = &context.metrics;
    let selector = labels::children_selector(pool);
    let names = |items: &[String]| items.iter().cloned().collect::<BTreeSet<String>>();
    delete_orphans(
        &Api::<ServiceAccount>::namespaced(client.clone(), namespace),
        &selector,
        &names(&[children.service_account.name_any()]),
        metrics,
    )
    .await
    .map_err(kube_error("deleting orphaned ServiceAccounts"))?;
    delete_orphans(&Api::<ConfigMap>::namespaced(client.clone(), namespace), &selector, &names(&[children.config_map.name_any()]), metrics)
        .await
        .map_err(kube_error("deleting orphaned ConfigMaps"))?;
    delete_orphans(
        &Api::<Service>::namespaced(client.clone(), namespace),
        &selector,
        &names(&[children.client_service.name_any(), children.headless_service.name_any()]),
        metrics,
    )
    .await
    .map_err(kube_error("deleting orphaned Services"))?;
    delete_orphans(
        &Api::<Deployment>::namespaced(client.clone(), namespace),
        &selector,
        &names(&[children.deployment.name_any()]),
        metrics,
    )
    .await
    .map_err(kube_error("deleting orphaned Deployments"))?;
    delete_orphans(
        &Api::<PodDisruptionBudget>::namespaced(client.clone(), namespace),
        &selector,
        &names(&[children.disruption_budget.name_any()]),
        metrics,
    )
    .await
    .map_err(kube_error("deleting orphaned PodDisruptionBudgets"))?;
    let autoscalers: Vec<String> = children.autoscaler.iter().map(|autoscaler| autoscaler.name_any()).collect();
    delete_orphans(&Api::<HorizontalPodAutoscaler>::namespaced(client.clone(), namespace), &selector, &names(&autoscalers), metrics)
        .await
        .map_err(kube_error("deleting orphaned HorizontalPodAutoscalers"))?;
    let network_policies: Vec<String> = children.network_policy.iter().map(|policy| policy.name_any()).collect();
    delete_orphans(&Api::<NetworkPolicy>::namespaced(client, namespace), &selector, &names(&network_policies), metrics)
        .await
        .map_err(kube_error("deleting orphaned NetworkPolicies"))?;
    Ok(())
}

/// Pure: the status from what the Deployment and the autoscaler report.
fn scales_on_external_metric(autoscaler: Option<&HorizontalPodAutoscaler>) -> bool {
    autoscaler
        .and_then(|autoscaler| autoscaler.spec.as_ref())
        .is_some_and(|spec| spec.metrics.iter().flatten().any(|metric| metric.type_ == "External"))
}

pub fn pool_status(
    pool: &AgentPool,
    previous: &AgentPoolStatus,
    deployment: &Deployment,
    deployment_status: k8s_openapi::api::apps::v1::DeploymentStatus,
    autoscaler: Option<&HorizontalPodAutoscaler>,
) -> AgentPoolStatus {
    let generation = pool.metadata.generation;
    let autoscaler_status = autoscaler.and_then(|autoscaler| autoscaler.status.clone());
    // The HPA reports 0 until it has computed a count (and whenever it cannot read a metric);
    // the Deployment's replicas are then what the HPA holds.
    let desired = match &autoscaler_status {
        Some(status) if status.desired_replicas > 0 => Some(status.desired_replicas),
        _ if pool.spec.autoscaling_enabled() => deployment.spec.as_ref().and_then(|spec| spec.replicas),
        _ => Some(pool.spec.replicas),
    };
    let replicas = deployment_status.replicas.unwrap_or(0);
    let ready_replicas = deployment_status.ready_replicas.unwrap_or(0);
    let updated = deployment_status.updated_replicas.unwrap_or(0);
    let rolled_out = deployment_status.observed_generation >= deployment.metadata.generation;
    let wanted = desired.unwrap_or(0);
    let (ready, reason, message) = if !rolled_out || updated < wanted {
        (false, "RollingOut", format!("{updated} of {wanted} agents run the current spec"))
    } else if ready_replicas < wanted {
        (false, "AgentsNotReady", format!("{ready_replicas} of {wanted} agents are ready"))
    } else {
        (true, "AgentsReady", format!("{ready_replicas} of {wanted} agents are ready"))
    };
    let autoscaling = pool.spec.autoscaling.as_ref().filter(|autoscaling| autoscaling.enabled);
    let mut current_cpu = None;
    let mut current_bandwidth = None;
    for metric in autoscaler_status.iter().flat_map(|status| status.current_metrics.iter().flatten()) {
        if let Some(resource) = &metric.resource {
            current_cpu = resource.current.average_utilization;
        }
        if let Some(external) = &metric.external {
            current_bandwidth = external.current.average_value.as_ref().map(|quantity| quantity.0.clone());
        }
    }
    AgentPoolStatus {
        observed_generation: generation,
        replicas,
        ready_replicas,
        desired_replicas: desired,
        selector: Some(labels::selector_string(&pool.name_any())),
        current_cpu_utilization_percentage: current_cpu,
        target_cpu_utilization_percentage: autoscaling.map(|autoscaling| autoscaling.target_cpu_utilization_percentage),
        current_bandwidth_per_agent: current_bandwidth,
        // A target only where the HPA scales on it: a CPU-only pool shows no bandwidth target.
        target_bandwidth_per_agent: autoscaling
            .filter(|_| scales_on_external_metric(autoscaler))
            .map(|autoscaling| autoscaling.target_bandwidth_per_agent.clone()),
        conditions: [
            Some(condition(&previous.conditions, "Ready", ready, reason, message, generation)),
            Some(condition(&previous.conditions, RECONCILED, true, "Applied", "every child matches the current spec", generation)),
            autoscaler_status.as_ref().and_then(|status| autoscaling_condition(&previous.conditions, status, generation)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// Condition type: whether the HorizontalPodAutoscaler can compute a count from its metrics.
pub const AUTOSCALING: &str = "Autoscaling";

/// The HPA's own verdict, on the pool: a metric it cannot read (`FailedGetResourceMetric`,
/// `FailedGetExternalMetric`) otherwise shows only in `kubectl describe hpa`, while the pool
/// silently stops scaling. `None` until the HPA has reported.
fn autoscaling_condition(
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    status: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerStatus,
    generation: Option<i64>,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    let hpa_conditions = status.conditions.as_ref()?;
    let failing = hpa_conditions
        .iter()
        .find(|condition| matches!(condition.type_.as_str(), "AbleToScale" | "ScalingActive") && condition.status == "False");
    Some(match failing {
        Some(failing) => {
            let reason = failing.reason.clone().unwrap_or_else(|| failing.type_.clone());
            let cause = failing.message.clone().unwrap_or_default();
            let head = "the HorizontalPodAutoscaler cannot scale: ";
            let advice = "see kubectl describe hpa";
            let cause = crate::messages::shorten(&cause, 199usize.saturating_sub(head.len() + advice.len() + 2));
            condition(previous, AUTOSCALING, false, &reason, format!("{head}{cause}; {advice}"), generation)
        }
        None => condition(
            previous,
            AUTOSCALING,
            true,
            "ScalingActive",
            "the HorizontalPodAutoscaler computes the count from its metrics",
            generation,
        ),
    })
}

/// Condition type: whether the current generation's children were applied.
pub const RECONCILED: &str = "Reconciled";

/// The status of a generation that could not be applied: the agents keep running what was applied
/// last, so `observedGeneration` and the counts stay; `Ready` and `Reconciled` say why.
fn not_reconciled(previous: &AgentPoolStatus, reason: &str, message: String, generation: Option<i64>) -> AgentPoolStatus {
    let others = previous.conditions.iter().filter(|condition| condition.type_ != "Ready" && condition.type_ != RECONCILED).cloned();
    AgentPoolStatus {
        conditions: [
            condition(&previous.conditions, "Ready", false, reason, message.clone(), generation),
            condition(&previous.conditions, RECONCILED, false, reason, message, generation),
        ]
        .into_iter()
        .chain(others)
        .collect(),
        ..previous.clone()
    }
}

/// Condition message: the VirtualCluster the pool names does not exist.
pub fn virtual_cluster_not_found(namespace: &str, name: &str) -> String {
    format!(
        "VirtualCluster {namespace}/{name}, named by spec.virtualClusterRef.name, does not exist; create it (the reference cannot change)"
    )
}

/// Condition message: the pool's VirtualCluster is refused (its own Ready condition says more).
/// It is in the pool's namespace; its own condition names the overlapping fields.
pub fn virtual_cluster_refused(name: &str, conflict: &crate::virtual_cluster::locations::Conflict) -> String {
    format!("VirtualCluster {name} is refused: it overlaps older VirtualCluster {}; agents are left as they are", conflict.other)
}

fn has_condition(status: &AgentPoolStatus, kind: &str, reason: &str) -> bool {
    status.conditions.iter().any(|condition| condition.type_ == kind && condition.reason == reason)
}

async fn patch_status(
    pool: &AgentPool,
    previous: &AgentPoolStatus,
    status: AgentPoolStatus,
    context: &Context,
) -> Result<(), ReconcileError> {
    let api: Api<AgentPool> = Api::namespaced(context.client.clone(), &pool.namespace().unwrap_or_default());
    let shown = pool.status.as_ref().map(|_| previous);
    patch_status_if_changed(&api, pool, shown, &status, CONTROLLER, &context.metrics)
        .await
        .map_err(kube_error("patching the AgentPool status"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::autoscaling::v2::{HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus};

    fn hpa_status(kind: &str, status: &str, reason: &str, message: &str) -> HorizontalPodAutoscalerStatus {
        HorizontalPodAutoscalerStatus {
            conditions: Some(vec![HorizontalPodAutoscalerCondition {
                type_: kind.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_transition_time: None,
            }]),
            desired_replicas: 0,
            ..Default::default()
        }
    }

    #[test]
    fn an_hpa_that_cannot_read_a_metric_shows_on_the_pool_in_a_short_message() {
        let message = "the HPA was unable to compute the replica count: unable to get external metric floe/floe_agent_network_bytes_per_second/&LabelSelector{MatchLabels:map[string]string{app.kubernetes.io/instance: agents,},MatchExpressions:[]LabelSelectorRequirement{},}: unable to fetch metrics from external metrics API: the server could not find the requested resource";
        let condition =
            autoscaling_condition(&[], &hpa_status("ScalingActive", "False", "FailedGetExternalMetric", message), Some(3)).unwrap();
        assert_eq!((condition.status.as_str(), condition.reason.as_str()), ("False", "FailedGetExternalMetric"));
        assert!(condition.message.starts_with("the HorizontalPodAutoscaler cannot scale: the HPA was unable"), "{}", condition.message);
        assert!(condition.message.chars().count() < 200, "{}", condition.message);
    }

    #[test]
    fn an_active_hpa_is_true_and_no_report_yet_is_no_condition() {
        let active = autoscaling_condition(&[], &hpa_status("ScalingActive", "True", "ValidMetricFound", "ok"), None).unwrap();
        assert_eq!((active.status.as_str(), active.reason.as_str()), ("True", "ScalingActive"));
        assert!(autoscaling_condition(&[], &HorizontalPodAutoscalerStatus::default(), None).is_none());
    }
}
