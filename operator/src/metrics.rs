//! The operator's Prometheus metrics (prefix `floe_operator_`), held in a registry passed through
//! the context so tests read them. Error labels are error-kind names, never `Debug` text.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

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
