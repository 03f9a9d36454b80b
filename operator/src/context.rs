//! What every reconcile gets: the client, the metrics, the event recorder and the settings.

use crate::agent_pool::build::BuildSettings;
use crate::crd::virtual_cluster::VirtualCluster;
use crate::metrics::Metrics;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource};
use std::sync::Arc;
use std::time::Duration;

/// How often a VirtualCluster's etcd and bucket are checked again (the operator's
/// `--health-check-interval` and `--health-retry-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthIntervals {
    /// While Ready: how soon a dependency that stops answering shows in status.
    pub ready: Duration,
    /// After a failed check: how soon a repaired dependency shows.
    pub failing: Duration,
}

impl Default for HealthIntervals {
    fn default() -> Self {
        Self { ready: Duration::from_secs(30), failing: Duration::from_secs(5) }
    }
}

pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub build: BuildSettings,
    /// The namespace the controllers watch (`None`: all). VirtualClusters are compared for
    /// overlapping locations within it.
    pub watch_namespace: Option<String>,
    pub health: HealthIntervals,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, build: BuildSettings, identity: &str) -> Self {
        let reporter = Reporter { controller: "floe-operator".to_string(), instance: Some(identity.to_string()) };
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, metrics, recorder, build, watch_namespace: None, health: HealthIntervals::default() }
    }

    /// Sets how often VirtualClusters are checked again (default 30 s while Ready, 5 s after a
    /// failure).
    pub fn checking_health(mut self, health: HealthIntervals) -> Self {
        self.health = health;
        self
    }

    /// Limits the controllers' view to one namespace (the operator's `--watch-namespace`).
    pub fn watching(mut self, namespace: Option<String>) -> Self {
        self.watch_namespace = namespace;
        self
    }

    /// Every VirtualCluster the controllers see, to compare their locations.
    pub async fn virtual_clusters(&self) -> Result<Vec<VirtualCluster>, kube::Error> {
        let api: Api<VirtualCluster> = match &self.watch_namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        };
        Ok(api.list(&ListParams::default()).await?.items)
    }

    /// Publishes a Warning event on `object` for something a user must fix. Failing to publish
    /// is logged, never fatal: the status condition carries the same message.
    pub async fn warn<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, action: &str, note: String) {
        let event =
            Event { type_: EventType::Warning, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "failed to publish an event");
        }
    }

    /// Publishes a Normal event (for one-off changes worth seeing in `kubectl describe`).
    pub async fn note<K: Resource<DynamicType = ()>>(&self, object: &K, reason: &str, action: &str, note: String) {
        let event =
            Event { type_: EventType::Normal, reason: reason.to_string(), note: Some(note), action: action.to_string(), secondary: None };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, reason, "failed to publish an event");
        }
    }
}
