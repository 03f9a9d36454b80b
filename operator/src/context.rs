//! What every reconcile gets: the client, the metrics, the event recorder and the settings.

use crate::agent_pool::build::BuildSettings;
use crate::metrics::Metrics;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use std::sync::Arc;

pub struct Context {
    pub client: Client,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub build: BuildSettings,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, build: BuildSettings, identity: &str) -> Self {
        let reporter = Reporter { controller: "floe-operator".to_string(), instance: Some(identity.to_string()) };
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, metrics, recorder, build }
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
