//! The VirtualCluster controller: list the VirtualClusters and refuse one whose locations overlap
//! an older one's (pure check in `locations`) → resolve Secrets (I/O) → validate → register in
//! etcd and probe the bucket (I/O) → read stats → patch status. A finalizer holds the deletion
//! while AgentPools use the cluster (`in_use`), then removes the cluster's etcd keys and objects
//! when `deletionPolicy: Delete`; with `Retain` it leaves them for a successor.

pub mod agents_health;
pub mod connect;
pub mod in_use;
pub mod locations;
pub mod problems;

use crate::apply::patch_status_if_changed;
use crate::conditions::condition;
use crate::context::Context;
use crate::crd::virtual_cluster::{DeletionPolicy, VirtualCluster, VirtualClusterStatus};
use crate::error::{kube as kube_error, with_finalizer, ReconcileError};
use connect::Unusable;
use floe_meta::registration::{self, RegisterOutcome, Registration};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const CONTROLLER: &str = "virtualcluster";
pub const FINALIZER: &str = "floe.dev/cleanup";

#[tracing::instrument(skip_all, fields(cluster = %cluster.name_any(), namespace = cluster.namespace().unwrap_or_default()))]
pub async fn reconcile(cluster: Arc<VirtualCluster>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    with_finalizer(&context.client, FINALIZER, cluster, |cluster| apply(cluster, &context), |cluster| cleanup(cluster, &context)).await
}

async fn apply(cluster: Arc<VirtualCluster>, context: &Context) -> Result<Action, ReconcileError> {
    let generation = cluster.metadata.generation;
    let previous = cluster.status.clone().unwrap_or_default();
    let mut status = VirtualClusterStatus { observed_generation: generation, ..previous.clone() };

    // Validate: a cluster sharing an older cluster's etcd keys or bucket objects is refused before
    // it touches either (no registration, no probe object).
    let all = context.virtual_clusters().await.map_err(kube_error("listing the VirtualClusters"))?;
    if let Some(conflict) = locations::refusal(&cluster, &all) {
        return refuse(&cluster, &previous, status, &conflict, context).await;
    }

    // Each dependency is resolved, reached and reported on its own: a missing bucket Secret says
    // nothing about etcd.
    let (etcd_settings, bucket_settings) =
        tokio::join!(connect::resolve_etcd(&context.client, &cluster), connect::resolve_bucket(&context.client, &cluster));
    let metadata = async {
        let (settings, keys) = etcd_settings?;
        let mut client = connect::connect_etcd(&settings).await?;
        let outcome = registration::register(&mut client, &keys, &registration_of(&cluster))
            .await
            .map_err(|error| problems::registration_failed(&error))?;
        if outcome != RegisterOutcome::Unchanged {
            context.metrics.external_writes.with_label_values(&["etcd-registration"]).inc();
            tracing::info!(?outcome, key = keys.registration(), "registered the virtual cluster in etcd");
        }
        Ok::<_, Unusable>((client, keys))
    }
    .await;
    let bucket = async {
        let (url, s3) = bucket_settings?;
        let store = connect::open_bucket(&url, &s3)?;
        connect::probe_bucket(&store, &cluster.spec.object_store.url, &connect::probe_prefix(&cluster)).await?;
        Ok::<_, Unusable>(store)
    }
    .await;
    if let (Ok((client, keys)), Ok(store)) = (&metadata, &bucket) {
        match registration::stats(client, keys, Arc::clone(store)).await {
            Ok(stats) => {
                status.topics = Some(stats.topics);
                status.partitions = Some(stats.partitions);
                status.stored_bytes = Some(stats.stored_bytes);
                status.agents = Some(stats.agents);
            }
            Err(error) => tracing::warn!(%error, "failed to read the virtual cluster's stats"),
        }
    }
    // What the agents report needs etcd only: it is shown even while the operator's own probe of
    // the bucket fails.
    let agents = match &metadata {
        Ok((client, keys)) => match registration::agent_records(client, keys).await {
            Ok(records) => Some(agents_health::assess(&records)),
            Err(error) => {
                tracing::warn!(%error, "failed to read the agent registry");
                None
            }
        },
        Err(_) => None,
    };
    let (metadata, bucket) = (metadata.map(|_| ()), bucket.map(|_| ()));
    let listener = connect::check_listener(&context.client, &cluster).await;

    let conditions = &previous.conditions;
    let metadata_condition = match &metadata {
        Ok(()) => condition(
            conditions,
            "MetadataReachable",
            true,
            "Registered",
            "etcd answers and holds this virtual cluster's registration",
            generation,
        ),
        Err(problem) => condition(conditions, "MetadataReachable", false, problem.reason, problem.message.clone(), generation),
    };
    let bucket_condition = match &bucket {
        Ok(()) => condition(conditions, "BucketReachable", true, "Probed", "PUT, GET and DELETE of a probe object succeeded", generation),
        Err(problem) => condition(conditions, "BucketReachable", false, problem.reason, problem.message.clone(), generation),
    };
    let listener_condition = match (&listener, &cluster.spec.listener) {
        (Ok(()), Some(_)) => condition(
            conditions,
            "ListenerConfigured",
            true,
            "SecretsFound",
            "the listener's Secrets hold every key the agents read",
            generation,
        ),
        (Ok(()), None) => {
            condition(conditions, "ListenerConfigured", true, "Plaintext", "clients connect without TLS or authentication", generation)
        }
        (Err(problem), _) => condition(conditions, "ListenerConfigured", false, problem.reason, problem.message.clone(), generation),
    };
    let ready = metadata.is_ok() && bucket.is_ok() && listener.is_ok();
    let ready_condition = match (&metadata, &bucket, &listener) {
        (Ok(()), Ok(()), Ok(())) => {
            condition(conditions, "Ready", true, "Ready", "metadata and bucket reachable; agents can join", generation)
        }
        (Err(problem), _, _) | (Ok(()), Err(problem), _) | (Ok(()), Ok(()), Err(problem)) => {
            condition(conditions, "Ready", false, problem.reason, problem.message.clone(), generation)
        }
    };
    if !ready {
        let problem = metadata.as_ref().err().or(bucket.as_ref().err()).or(listener.as_ref().err()).cloned();
        let was_reason = previous.conditions.iter().find(|condition| condition.type_ == "Ready").map(|condition| condition.reason.clone());
        if let Some(problem) = problem {
            // One event per new problem, not one per retry.
            if was_reason.as_deref() != Some(problem.reason) {
                context.warn(cluster.as_ref(), problem.reason, "Probe", problem.message.clone()).await;
            }
        }
    }
    status.conditions = vec![ready_condition, metadata_condition, bucket_condition, listener_condition];
    if let Some((healthy, reason, message)) = agents {
        let was_failing = conditions.iter().any(|condition| condition.type_ == agents_health::CONDITION && condition.status == "False");
        if !healthy && !was_failing {
            context.warn(cluster.as_ref(), reason, "AgentReport", message.clone()).await;
        }
        status.conditions.push(condition(conditions, agents_health::CONDITION, healthy, reason, message, generation));
    }
    status.id = if metadata.is_ok() { cluster.uid() } else { previous.id.clone() };
    patch_status(&cluster, &previous, status, context).await?;
    // Nothing watches etcd or the bucket: only this requeue notices one that stops (or starts
    // again) answering, so it is short while Ready and shorter after a failure.
    Ok(Action::requeue(if ready { context.health.ready } else { context.health.failing }))
}

/// Reports the conflict (Ready=False, one Warning event per new conflict) and touches nothing else.
async fn refuse(
    cluster: &VirtualCluster,
    previous: &VirtualClusterStatus,
    mut status: VirtualClusterStatus,
    conflict: &locations::Conflict,
    context: &Context,
) -> Result<Action, ReconcileError> {
    let generation = cluster.metadata.generation;
    let message = conflict.message();
    let was = previous.conditions.iter().find(|condition| condition.type_ == "Ready");
    if was.is_none_or(|condition| condition.reason != locations::CONFLICT_REASON || condition.message != message) {
        tracing::warn!(other = conflict.other, "refused: its locations overlap an older VirtualCluster's");
        context.warn(cluster, locations::CONFLICT_REASON, "Validate", message.clone()).await;
    }
    // Reachability is not checked while refused, so those conditions would only be stale.
    status.conditions = vec![condition(&previous.conditions, "Ready", false, locations::CONFLICT_REASON, message, generation)];
    patch_status(cluster, previous, status, context).await?;
    // Deleting or moving the other VirtualCluster re-runs this through the controller's watch.
    Ok(Action::requeue(Duration::from_secs(60)))
}

async fn cleanup(cluster: Arc<VirtualCluster>, context: &Context) -> Result<Action, ReconcileError> {
    // Pools first, whatever the deletionPolicy: their agents run on this etcd and bucket.
    let pools = in_use::referencing_pools(&context.client, &cluster).await.map_err(kube_error("listing the AgentPools"))?;
    if !pools.is_empty() {
        return Err(wait_for_pools(&cluster, &pools, context).await);
    }
    if cluster.spec.deletion_policy == DeletionPolicy::Retain {
        tracing::info!("deletionPolicy Retain: keeping the etcd keys and the objects");
        return Ok(Action::await_change());
    }
    let fail = |what: &'static str, reason: String| ReconcileError::Cleanup { what, reason };
    let all = context.virtual_clusters().await.map_err(kube_error("listing the VirtualClusters"))?;
    let resolved = connect::resolve(&context.client, &cluster).await.map_err(|problem| fail("the virtual cluster", problem.message))?;
    let store = connect::open_bucket(&resolved.bucket, &resolved.s3).map_err(|problem| fail("the objects", problem.message))?;
    // etcd first: the journal says which objects are this cluster's.
    let mut client = match connect::connect_etcd(&resolved.etcd).await {
        Ok(client) => client,
        Err(problem) => {
            let message = problems::cleanup_blocked("etcd", &problem.message);
            context.warn(cluster.as_ref(), "CleanupFailed", "Delete", message.clone()).await;
            return Err(fail("the etcd keys", message));
        }
    };
    let probes = connect::probe_prefix(&cluster);
    let objects = match connect::delete_objects(&client, &resolved.keys, store, &probes).await {
        Ok(objects) => objects,
        Err(reason) => {
            let message = problems::cleanup_blocked(&format!("the objects under {}", cluster.spec.object_store.url), &reason);
            context.warn(cluster.as_ref(), "CleanupFailed", "Delete", message.clone()).await;
            return Err(fail("the objects", message));
        }
    };
    context.metrics.external_writes.with_label_values(&["bucket-delete"]).inc();
    // Another VirtualCluster's keys may lie inside ours (a prefix under our `log/`): keep them.
    let foreign = locations::foreign_roots_inside(&cluster, &all);
    let keys = if foreign.is_empty() {
        registration::delete_all_keys(&mut client, &resolved.keys).await
    } else {
        tracing::warn!(?foreign, "other virtual clusters' keys lie inside this one's; deleting around them");
        registration::delete_keys_outside(&mut client, &resolved.keys, &foreign).await
    }
    .map_err(|error| fail("the etcd keys", error.to_string()))?;
    context.metrics.external_writes.with_label_values(&["etcd-delete"]).inc();
    tracing::info!(keys, objects, prefix = resolved.keys.root_prefix(), "deleted the virtual cluster's metadata and objects");
    Ok(Action::await_change())
}

/// Says why the deletion waits (the `Deleting` condition, and a Warning event when the list of
/// pools changed) and returns the error that keeps the finalizer and retries. A pool's deletion
/// re-runs this at once through the controller's AgentPool watch.
async fn wait_for_pools(cluster: &VirtualCluster, pools: &[String], context: &Context) -> ReconcileError {
    let message = in_use::message(pools);
    let previous = cluster.status.clone().unwrap_or_default();
    let said = previous.conditions.iter().any(|condition| condition.type_ == in_use::CONDITION && condition.message == message);
    if !said {
        tracing::info!(?pools, "deletion waits for the AgentPools that use this VirtualCluster");
        context.warn(cluster, in_use::REASON, "Delete", message.clone()).await;
    }
    let mut status = previous.clone();
    status.conditions.retain(|condition| condition.type_ != in_use::CONDITION);
    status.conditions.push(condition(&previous.conditions, in_use::CONDITION, true, in_use::REASON, message, cluster.metadata.generation));
    if let Err(error) = patch_status(cluster, &previous, status, context).await {
        tracing::warn!(%error, "failed to show the waiting deletion in status");
    }
    ReconcileError::InUse { pools: pools.len() }
}

fn registration_of(cluster: &VirtualCluster) -> Registration {
    let mut config = BTreeMap::from([("objectStore".to_string(), cluster.spec.object_store.url.clone())]);
    if let Some(defaults) = &cluster.spec.topic_defaults {
        if let Some(partitions) = defaults.partitions {
            config.insert("defaultPartitions".to_string(), partitions.to_string());
        }
        if let Some(auto_create) = defaults.auto_create_topics {
            config.insert("autoCreateTopics".to_string(), auto_create.to_string());
        }
    }
    Registration {
        id: cluster.uid().unwrap_or_default(),
        owner: format!("{}/{}", cluster.namespace().unwrap_or_default(), cluster.name_any()),
        config,
    }
}

async fn patch_status(
    cluster: &VirtualCluster,
    previous: &VirtualClusterStatus,
    status: VirtualClusterStatus,
    context: &Context,
) -> Result<(), ReconcileError> {
    let api: Api<VirtualCluster> = Api::namespaced(context.client.clone(), &cluster.namespace().unwrap_or_default());
    let shown = cluster.status.as_ref().map(|_| previous);
    patch_status_if_changed(&api, cluster, shown, &status, CONTROLLER, &context.metrics)
        .await
        .map_err(kube_error("patching the VirtualCluster status"))?;
    Ok(())
}
