//! The KafkaUser controller: find the VirtualCluster → take the password (from the referenced
//! Secret, or a generated one the user owns) → replay the virtual cluster's journal (read-only,
//! as for its stats) → append the records `plan` says are missing → patch status. A finalizer
//! removes the user's ACLs and credentials from the journal before the resource goes, so
//! deleting a KafkaUser revokes it: the agents close its open connections at their next request
//! and authorize nothing more for it.
//!
//! Nothing watches the journal or a referenced password Secret (the operator may not list or
//! watch Secrets), so a Ready user is checked again every minute: a credential or ACL changed by
//! hand for this user, or a rotated password, is put back in line within that time.

pub mod plan;
pub(crate) mod secret;

use crate::apply::patch_status_if_changed;
use crate::conditions::condition;
use crate::context::Context;
use crate::crd::kafka_user::{KafkaUser, KafkaUserStatus};
use crate::crd::virtual_cluster::{AuthenticationType, VirtualCluster};
use crate::error::{kube as kube_error, with_finalizer, ReconcileError};
use crate::messages::plain_cause;
use crate::virtual_cluster::connect;
use crate::virtual_cluster::problems::{self, Unusable};
use floe_meta::records::{JournalEntry, JournalRecord};
use floe_meta::replica::Replica;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

pub const CONTROLLER: &str = "kafkauser";
pub const FINALIZER: &str = "floe.dev/revoke";
/// How often a Ready user is compared with the journal again.
const RECHECK: Duration = Duration::from_secs(60);
/// After a problem the user or an outage must fix.
const RETRY: Duration = Duration::from_secs(10);

#[tracing::instrument(skip_all, fields(user = %user.name_any(), namespace = user.namespace().unwrap_or_default()))]
pub async fn reconcile(user: Arc<KafkaUser>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    with_finalizer(&context.client, FINALIZER, user, |user| apply(user, &context), |user| cleanup(user, &context)).await
}

async fn apply(user: Arc<KafkaUser>, context: &Context) -> Result<Action, ReconcileError> {
    let previous = user.status.clone().unwrap_or_default();
    let outcome = converge(&user, context).await;
    let generation = user.metadata.generation;
    let mut status = KafkaUserStatus { observed_generation: generation, username: Some(user.name_any()), ..previous.clone() };
    let ready = match &outcome {
        Ok(converged) => {
            status.secret = Some(converged.secret.clone());
            if converged.written > 0 {
                tracing::info!(records = converged.written, "wrote the user's credential and ACLs to the virtual cluster's journal");
                context.metrics.external_writes.with_label_values(&["etcd-user"]).inc();
            }
            condition(
                &previous.conditions,
                "Ready",
                true,
                "Reconciled",
                "the virtual cluster's agents authenticate and authorize this user as specified",
                generation,
            )
        }
        Err(problem) => {
            let was = previous.conditions.iter().find(|condition| condition.type_ == "Ready").map(|condition| condition.reason.clone());
            if was.as_deref() != Some(problem.reason) {
                context.warn(user.as_ref(), problem.reason, "Reconcile", problem.message.clone()).await;
            }
            condition(&previous.conditions, "Ready", false, problem.reason, problem.message.clone(), generation)
        }
    };
    status.conditions = vec![ready];
    let api: Api<KafkaUser> = Api::namespaced(context.client.clone(), &user.namespace().unwrap_or_default());
    let shown = user.status.as_ref().map(|_| &previous);
    patch_status_if_changed(&api, user.as_ref(), shown, &status, CONTROLLER, &context.metrics)
        .await
        .map_err(kube_error("patching the KafkaUser status"))?;
    Ok(Action::requeue(if outcome.is_ok() { RECHECK } else { RETRY }))
}

struct Converged {
    secret: String,
    written: usize,
}

async fn converge(user: &KafkaUser, context: &Context) -> Result<Converged, Unusable> {
    let cluster = virtual_cluster(user, context).await?;
    let mechanism =
        cluster.spec.listener.as_ref().and_then(|listener| listener.authentication.as_ref()).map(|authentication| authentication.kind);
    if !matches!(mechanism, Some(AuthenticationType::ScramSha512 | AuthenticationType::ScramSha256 | AuthenticationType::Plain)) {
        return Err(authentication_mismatch(&cluster.name_any()));
    }
    let (secret, password) = secret::password(&context.client, user).await?;
    let desired = plan::DesiredUser::from_spec(&user.name_any(), &user.spec, password);
    let written = write(context, &cluster, &user.name_any(), Some(desired)).await?;
    Ok(Converged { secret, written })
}

async fn virtual_cluster(user: &KafkaUser, context: &Context) -> Result<VirtualCluster, Unusable> {
    let name = &user.spec.virtual_cluster_ref.name;
    let api: Api<VirtualCluster> = Api::namespaced(context.client.clone(), &user.namespace().unwrap_or_default());
    match api.get_opt(name).await {
        Ok(Some(cluster)) => Ok(cluster),
        Ok(None) => Err(virtual_cluster_not_found(name)),
        Err(error) => Err(problems::sentence(
            "VirtualClusterUnreadable",
            &format!("failed to read VirtualCluster {name}: "),
            &plain_cause(&error),
            "check the apiserver and the operator's RBAC",
        )),
    }
}

pub(crate) fn authentication_mismatch(cluster: &str) -> Unusable {
    let message = format!(
        "VirtualCluster {} does not authenticate with passwords; set its spec.listener.authentication.type to scram-sha-512 or plain",
        crate::messages::shorten(cluster, 64)
    );
    Unusable { reason: "AuthenticationMismatch", message }
}

pub(crate) fn virtual_cluster_not_found(name: &str) -> Unusable {
    let message = format!(
        "VirtualCluster {} (spec.virtualClusterRef) does not exist in this namespace; create it or change the reference",
        crate::messages::shorten(name, 64)
    );
    Unusable { reason: "VirtualClusterNotFound", message }
}

/// Replays the virtual cluster's journal and appends what takes `user` to `desired`; returns how
/// many records it wrote.
async fn write(context: &Context, cluster: &VirtualCluster, user: &str, desired: Option<plan::DesiredUser>) -> Result<usize, Unusable> {
    let (etcd, keys) = connect::resolve_etcd(&context.client, cluster).await?;
    let (bucket, s3) = connect::resolve_bucket(&context.client, cluster).await?;
    let store = connect::open_bucket(&bucket, &s3)?;
    let mut client = connect::connect_etcd(&etcd).await?;
    let replica = Arc::new(Replica::new());
    floe_meta::etcd::load(client.clone(), keys.clone(), Arc::clone(&replica), store).await.map_err(|error| {
        problems::sentence(
            "JournalUnreadable",
            "failed to read the virtual cluster's journal: ",
            &plain_cause(&error),
            "check its etcd and bucket",
        )
    })?;
    let user_name = user.to_string();
    // Comparing a password with the stored credential is a PBKDF2: off the async workers.
    let records =
        tokio::task::spawn_blocking(move || replica.read(|state| plan::records(state, &user_name, desired.as_ref()))).await.map_err(
            |error| problems::sentence("PlanFailed", "planning the user's records failed: ", &error.to_string(), "see the operator's log"),
        )?;
    let count = records.len();
    for record in records {
        append(&mut client, &keys, record).await?;
    }
    Ok(count)
}

async fn append(client: &mut etcd_client::Client, keys: &floe_meta::keys::KeyLayout, record: JournalRecord) -> Result<(), Unusable> {
    let entry = JournalEntry::new(record);
    floe_meta::etcd::append_once(client, keys, &entry).await.map(|_| ()).map_err(|error| {
        problems::sentence(
            "JournalWriteFailed",
            "failed to append to the journal: ",
            &plain_cause(&error),
            "check the virtual cluster's etcd",
        )
    })
}

async fn cleanup(user: Arc<KafkaUser>, context: &Context) -> Result<Action, ReconcileError> {
    let cluster = match virtual_cluster(&user, context).await {
        Ok(cluster) => cluster,
        Err(problem) if problem.reason == "VirtualClusterNotFound" => {
            // Its journal went with it (or is retained without agents): nothing to revoke.
            tracing::info!("the VirtualCluster is gone; nothing to revoke");
            return Ok(Action::await_change());
        }
        Err(problem) => return Err(ReconcileError::Cleanup { what: "the user's credential and ACLs", reason: problem.message }),
    };
    match write(context, &cluster, &user.name_any(), None).await {
        Ok(written) => {
            tracing::info!(records = written, "revoked the user: its ACLs and credentials are gone from the journal");
            Ok(Action::await_change())
        }
        Err(problem) => {
            context.warn(user.as_ref(), "RevokeFailed", "Delete", problem.message.clone()).await;
            Err(ReconcileError::Cleanup { what: "the user's credential and ACLs", reason: problem.message })
        }
    }
}
