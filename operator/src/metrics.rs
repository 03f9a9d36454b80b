//! The operator's Prometheus metrics (prefix `floe_operator_`), held in a registry passed through
//! the context so tests read them. Error labels are error-kind names, never `Debug` text.

use crate::crd::agent_pool::AgentPool;
use kube::runtime::reflector::Store;
use kube::ResourceExt;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct Metrics {
    pub registry: Registry,
    /// Reconciles by controller and outcome (`ok`, or an error kind).
    pub reconciles: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    /// Writes to child objects by kind and operation (`apply`, `delete`).
    pub child_writes: IntCounterVec,
    /// Status patches by controller.
    pub status_writes: IntCounterVec,
    /// Writes outside Kubernetes by target (`etcd-registration`, `etcd-delete`, `bucket-delete`).
    pub external_writes: IntCounterVec,
    /// Answers of the external metrics API by outcome (`ok`, `unauthenticated`, `forbidden`,
    /// `bad_request`, `not_found`, `method_not_allowed`, `unavailable`, `error`).
    pub metrics_api_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("floe_operator_reconciles_total", "Reconciles by controller and outcome"),
            &["controller", "outcome"],
        )
        .expect("valid metric");
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("floe_operator_reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )
        .expect("valid metric");
        let child_writes =
            IntCounterVec::new(Opts::new("floe_operator_child_writes_total", "Writes to child objects"), &["kind", "operation"])
                .expect("valid metric");
        let status_writes =
            IntCounterVec::new(Opts::new("floe_operator_status_writes_total", "Status patches"), &["controller"]).expect("valid metric");
        let external_writes =
            IntCounterVec::new(Opts::new("floe_operator_external_writes_total", "Writes to etcd and buckets"), &["target"])
                .expect("valid metric");
        let metrics_api_requests = IntCounterVec::new(
            Opts::new("floe_operator_metrics_api_requests_total", "External metrics API requests by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        for collector in [&reconciles, &child_writes, &status_writes, &external_writes, &metrics_api_requests] {
            registry.register(Box::new(collector.clone())).expect("unique metric");
        }
        registry.register(Box::new(reconcile_duration.clone())).expect("unique metric");
        Self { registry, reconciles, reconcile_duration, child_writes, status_writes, external_writes, metrics_api_requests }
    }

    /// Every write to Kubernetes objects so far (children and status).
    pub fn kubernetes_writes(&self) -> u64 {
        let sum = |counter: &IntCounterVec| -> u64 {
            use prometheus::core::Collector;
            counter
                .collect()
                .iter()
                .flat_map(|family| family.get_metric().iter().map(|metric| metric.get_counter().get_value() as u64))
                .sum()
        };
        sum(&self.child_writes) + sum(&self.status_writes)
    }

    /// Exports every AgentPool's agents (ready, minimum, desired) from `pools`, the controller's
    /// cache. Only the replica that runs the controllers has one, so only it exports them.
    pub fn register_agent_pools(&self, pools: Store<AgentPool>) {
        if let Err(error) = self.registry.register(Box::new(AgentPoolGauges::new(pools))) {
            tracing::warn!(%error, "failed to register the AgentPool gauges");
        }
    }

    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder.encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// An AgentPool's agents as its status and spec say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolAgents {
    /// The Deployment's ready replicas, as the operator last wrote them in the status.
    pub ready: i64,
    /// The fewest the pool should have: `autoscaling.minReplicas` when it autoscales, else
    /// `replicas`.
    pub minimum: i64,
    /// What the pool converges to (`status.desiredReplicas`), when known.
    pub desired: Option<i64>,
}

/// Pure: what [`AgentPoolGauges`] exports for `pool`.
pub fn pool_agents(pool: &AgentPool) -> PoolAgents {
    let status = pool.status.clone().unwrap_or_default();
    let minimum = match pool.spec.autoscaling.as_ref().filter(|autoscaling| autoscaling.enabled) {
        Some(autoscaling) => autoscaling.min_replicas,
        None => pool.spec.replicas,
    };
    PoolAgents { ready: status.ready_replicas.into(), minimum: minimum.into(), desired: status.desired_replicas.map(i64::from) }
}

/// `floe_operator_agent_pool_*_agents{namespace, pool}`, computed at each scrape from the
/// controller's cache, so a deleted pool's series go with it. `namespace` is the pool's: the
/// operator's PodMonitor honours these labels over the operator pod's own.
struct AgentPoolGauges {
    pools: Store<AgentPool>,
    ready: IntGaugeVec,
    minimum: IntGaugeVec,
    desired: IntGaugeVec,
    /// One scrape at a time refills the gauges.
    refilling: std::sync::Mutex<()>,
}

impl AgentPoolGauges {
    fn new(pools: Store<AgentPool>) -> Self {
        // Literal names in `Opts::new`: e2e/chart/monitoring.py finds the exported metrics there.
        let ready = Opts::new("floe_operator_agent_pool_ready_agents", "Ready agents of an AgentPool (its status.readyReplicas)");
        let minimum = Opts::new(
            "floe_operator_agent_pool_minimum_agents",
            "Fewest agents an AgentPool should have: autoscaling.minReplicas when it autoscales, else replicas",
        );
        let desired = Opts::new(
            "floe_operator_agent_pool_desired_agents",
            "Agents an AgentPool converges to: replicas, or the autoscaler's decision (status.desiredReplicas)",
        );
        let by_pool = |opts: Opts| IntGaugeVec::new(opts, &["namespace", "pool"]).expect("valid metric");
        Self { pools, ready: by_pool(ready), minimum: by_pool(minimum), desired: by_pool(desired), refilling: std::sync::Mutex::new(()) }
    }
}

impl Collector for AgentPoolGauges {
    fn desc(&self) -> Vec<&Desc> {
        [&self.ready, &self.minimum, &self.desired].into_iter().flat_map(|gauges| gauges.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _one_at_a_time = self.refilling.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for gauges in [&self.ready, &self.minimum, &self.desired] {
            gauges.reset();
        }
        for pool in self.pools.state() {
            let (namespace, name) = (pool.namespace().unwrap_or_default(), pool.name_any());
            let labels = [namespace.as_str(), name.as_str()];
            let agents = pool_agents(&pool);
            self.ready.with_label_values(&labels).set(agents.ready);
            self.minimum.with_label_values(&labels).set(agents.minimum);
            if let Some(desired) = agents.desired {
                self.desired.with_label_values(&labels).set(desired);
            }
        }
        [&self.ready, &self.minimum, &self.desired].into_iter().flat_map(|gauges| gauges.collect()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store;
    use kube::runtime::watcher;

    fn pool(name: &str, spec: serde_json::Value, status: serde_json::Value) -> AgentPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "floe.dev/v1alpha1",
            "kind": "AgentPool",
            "metadata": {"name": name, "namespace": "streaming"},
            "spec": spec,
            "status": status,
        }))
        .expect("a valid AgentPool")
    }

    #[test]
    fn the_minimum_is_the_autoscalers_when_it_is_on_and_the_replicas_otherwise() {
        let fixed = pool(
            "fixed",
            serde_json::json!({"virtualClusterRef": {"name": "vc"}, "replicas": 3}),
            serde_json::json!({"readyReplicas": 2, "desiredReplicas": 3}),
        );
        assert_eq!(pool_agents(&fixed), PoolAgents { ready: 2, minimum: 3, desired: Some(3) });
        let scaling = pool(
            "scaling",
            serde_json::json!({"virtualClusterRef": {"name": "vc"}, "replicas": 3, "autoscaling": {"enabled": true, "minReplicas": 2, "maxReplicas": 8}}),
            serde_json::json!({"readyReplicas": 5}),
        );
        assert_eq!(pool_agents(&scaling), PoolAgents { ready: 5, minimum: 2, desired: None });
    }

    #[test]
    fn a_pool_gone_from_the_cache_is_no_longer_exported() {
        let (reader, mut writer) = store::<AgentPool>();
        let fixed =
            pool("fixed", serde_json::json!({"virtualClusterRef": {"name": "vc"}, "replicas": 3}), serde_json::json!({"readyReplicas": 1}));
        writer.apply_watcher_event(&watcher::Event::Apply(fixed.clone()));
        let metrics = Metrics::new();
        metrics.register_agent_pools(reader);
        let rendered = metrics.render();
        assert!(rendered.contains(r#"floe_operator_agent_pool_ready_agents{namespace="streaming",pool="fixed"} 1"#), "{rendered}");
        assert!(rendered.contains(r#"floe_operator_agent_pool_minimum_agents{namespace="streaming",pool="fixed"} 3"#), "{rendered}");
        writer.apply_watcher_event(&watcher::Event::Delete(fixed));
        assert!(!metrics.render().contains("floe_operator_agent_pool"), "{}", metrics.render());
    }
}
