//! Wires the controllers, the HTTP endpoints, the external metrics API and leader election
//! into a running operator.

use crate::agent_pool;
use crate::context::Context;
use crate::crd::agent_pool::AgentPool;
use crate::crd::kafka_user::KafkaUser;
use crate::crd::virtual_cluster::VirtualCluster;
use crate::error::ReconcileError;
use crate::kafka_user;
use crate::labels;
use crate::leader::LeaderElection;
use crate::metrics::Metrics;
use crate::metrics_api;
use crate::virtual_cluster;
use axum::extract::State;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub struct RunSettings {
    pub http_listen: SocketAddr,
    /// Reconcile only this namespace (all namespaces when `None`).
    pub namespace: Option<String>,
    pub leader_election: Option<LeaderSettings>,
    /// Serve `external.metrics.k8s.io` (off when `None`).
    pub metrics_api: Option<metrics_api::Settings>,
}

pub struct LeaderSettings {
    pub namespace: String,
    pub lease_name: String,
    pub identity: String,
}

/// Runs until SIGTERM/SIGINT, or until leadership is lost (an error: the process should restart
/// and stand by).
pub async fn run(client: Client, context: Arc<Context>, settings: RunSettings) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(settings.http_listen)
        .await
        .map_err(|error| anyhow::anyhow!("failed to listen on --http-listen {}: {error}; example: 0.0.0.0:8080", settings.http_listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics, /healthz and /readyz");
    let http = tokio::spawn(serve_http(listener, Arc::clone(&context.metrics)));
    // Every replica serves the metrics API, leader or not: the Service spreads the aggregator's
    // requests over all of them, and answering only reads.
    let metrics_api = match &settings.metrics_api {
        Some(metrics_api_settings) => {
            let (address, task) =
                metrics_api::start(client.clone(), Arc::clone(&context.metrics), metrics_api_settings, settings.namespace.clone()).await?;
            tracing::info!(%address, "serving external.metrics.k8s.io/v1beta1");
            Some(task)
        }
        None => {
            tracing::info!("the external metrics API is off (no --metrics-api-cert-file and --metrics-api-key-file)");
            None
        }
    };
    let stop_servers = || {
        http.abort();
        if let Some(task) = &metrics_api {
            task.abort();
        }
    };

    let election =
        settings.leader_election.map(|leader| LeaderElection::new(client.clone(), &leader.namespace, &leader.lease_name, &leader.identity));
    if let Some(election) = &election {
        tokio::select! {
            _ = election.acquire() => {}
            _ = shutdown_signal() => { stop_servers(); return Ok(()); }
        }
    }
    let controllers = run_controllers(client, context, settings.namespace.as_deref());
    let outcome = match &election {
        Some(election) => tokio::select! {
            _ = controllers => Ok(()),
            _ = election.hold() => Err(anyhow::anyhow!("lost the leader lease; exiting so a restart stands by")),
        },
        None => {
            controllers.await;
            Ok(())
        }
    };
    if let Some(election) = &election {
        election.release().await;
    }
    stop_servers();
    outcome
}

/// The three controllers; returns when a shutdown signal stopped them.
pub async fn run_controllers(client: Client, context: Arc<Context>, namespace: Option<&str>) {
    fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let ours = watcher::Config::default().labels(&format!("{}={}", labels::MANAGED_BY, labels::MANAGER));
    let pools = Controller::new(api::<AgentPool>(&client, namespace), watcher::Config::default());
    let pool_store = pools.store();
    context.metrics.register_agent_pools(pool_store.clone());
    let pools = pools
        .owns(api::<Deployment>(&client, namespace), ours.clone())
        .owns(api::<Service>(&client, namespace), ours.clone())
        .owns(api::<ConfigMap>(&client, namespace), ours.clone())
        .owns(api::<ServiceAccount>(&client, namespace), ours.clone())
        .owns(api::<PodDisruptionBudget>(&client, namespace), ours.clone())
        .owns(api::<HorizontalPodAutoscaler>(&client, namespace), ours.clone())
        .owns(api::<NetworkPolicy>(&client, namespace), ours)
        // A VirtualCluster change (its etcd or bucket) changes its pools' agent config.
        .watches(api::<VirtualCluster>(&client, namespace), watcher::Config::default(), move |cluster| {
            let namespace = cluster.namespace();
            let name = cluster.name_any();
            pool_store
                .state()
                .into_iter()
                .filter(|pool| pool.namespace() == namespace && pool.spec.virtual_cluster_ref.name == name)
                .map(|pool| ObjectRef::from_obj(pool.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(
            |pool, context: Arc<Context>| observed(agent_pool::CONTROLLER, Arc::clone(&context), agent_pool::reconcile(pool, context)),
            error_policy,
            Arc::clone(&context),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "agentpool reconcile did not complete");
            }
        });
    let users = Controller::new(api::<KafkaUser>(&client, namespace), watcher::Config::default());
    let user_store = users.store();
    let users = users
        // A VirtualCluster created late, or whose listener changed, re-runs its users at once.
        .watches(api::<VirtualCluster>(&client, namespace), watcher::Config::default(), move |cluster| {
            let namespace = cluster.namespace();
            let name = cluster.name_any();
            user_store
                .state()
                .into_iter()
                .filter(|user| user.namespace() == namespace && user.spec.virtual_cluster_ref.name == name)
                .map(|user| ObjectRef::from_obj(user.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(
            |user, context: Arc<Context>| observed(kafka_user::CONTROLLER, Arc::clone(&context), kafka_user::reconcile(user, context)),
            error_policy,
            Arc::clone(&context),
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "kafkauser reconcile did not complete");
            }
        });
    let clusters = Controller::new(api::<VirtualCluster>(&client, namespace), watcher::Config::default());
    let cluster_store = clusters.store();
    let deleting_store = cluster_store.clone();
    let clusters = clusters
        // A VirtualCluster's deletion waits for its pools (`virtual_cluster::in_use`): a pool's
        // change (its deletion) re-runs it at once. Only clusters being deleted: a pool's status
        // write must not set off a health probe.
        .watches(api::<AgentPool>(&client, namespace), watcher::Config::default(), move |pool| {
            let namespace = pool.namespace();
            let name = &pool.spec.virtual_cluster_ref.name;
            deleting_store
                .state()
                .into_iter()
                .filter(|cluster| cluster.namespace() == namespace && &cluster.name_any() == name)
                .filter(|cluster| cluster.metadata.deletion_timestamp.is_some())
                .map(|cluster| ObjectRef::from_obj(cluster.as_ref()))
                .collect::<Vec<_>>()
        })
        // A VirtualCluster deleted or moved may end another's location conflict: reconcile the
        // refused ones again at once.
        .watches(api::<VirtualCluster>(&client, namespace), watcher::Config::default(), move |changed| {
            cluster_store
                .state()
                .into_iter()
                .filter(|cluster| cluster.metadata.uid != changed.metadata.uid && is_refused(cluster))
                .map(|cluster| ObjectRef::from_obj(cluster.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(
            |cluster, context: Arc<Context>| {
                observed(virtual_cluster::CONTROLLER, Arc::clone(&context), virtual_cluster::reconcile(cluster, context))
            },
            error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "virtualcluster reconcile did not complete");
            }
        });
    futures::future::join3(pools, clusters, users).await;
}

fn is_refused(cluster: &VirtualCluster) -> bool {
    cluster
        .status
        .iter()
        .flat_map(|status| &status.conditions)
        .any(|condition| condition.type_ == "Ready" && condition.reason == crate::virtual_cluster::locations::CONFLICT_REASON)
}

/// Counts and times a reconcile, labelled by outcome (`ok` or the error kind).
async fn observed(
    controller: &'static str,
    context: Arc<Context>,
    reconcile: impl Future<Output = Result<Action, ReconcileError>>,
) -> Result<Action, ReconcileError> {
    let started = Instant::now();
    let result = reconcile.await;
    context.metrics.reconcile_duration.with_label_values(&[controller]).observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => "ok",
        Err(error) if error.is_waiting() => {
            tracing::debug!(controller, state = %error, "reconcile waits");
            error.kind()
        }
        Err(error) => {
            tracing::warn!(controller, error = %error, "reconcile failed");
            error.kind()
        }
    };
    context.metrics.reconciles.with_label_values(&[controller, outcome]).inc();
    result
}

/// An invalid spec waits for a change; a transient failure retries soon.
fn error_policy<K>(_object: Arc<K>, error: &ReconcileError, _context: Arc<Context>) -> Action {
    Action::requeue(error.retry_after())
}

async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics.render())
            }),
        )
        .with_state(metrics);
    if let Err(error) = axum::serve(listener, router).await {
        tracing::warn!(%error, "HTTP server stopped");
    }
}

async fn shutdown_signal() {
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
