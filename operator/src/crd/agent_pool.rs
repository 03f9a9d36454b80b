//! `AgentPool`: a Deployment of agents serving one VirtualCluster, with its Services, config,
//! disruption budget and, when autoscaling is on, a HorizontalPodAutoscaler.

use super::{must_match, BYTES_QUANTITY_MESSAGE, BYTES_QUANTITY_PATTERN, DURATION_MESSAGE, DURATION_PATTERN, NAME_MESSAGE, NAME_PATTERN};
use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What an AgentPool runs: how many agents, with which resources, roles, listener, flush
/// settings and autoscaling, serving the VirtualCluster it names.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "floe.dev",
    version = "v1alpha1",
    kind = "AgentPool",
    plural = "agentpools",
    shortname = "agp",
    namespaced,
    status = "AgentPoolStatus",
    scale = r#"{"specReplicasPath":".spec.replicas","statusReplicasPath":".status.replicas","labelSelectorPath":".status.selector"}"#,
    printcolumn = r#"{"name":"VirtualCluster","type":"string","jsonPath":".spec.virtualClusterRef.name"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.desiredReplicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Autoscaling","type":"boolean","jsonPath":".spec.autoscaling.enabled","priority":1}"#,
    printcolumn = r#"{"name":"Bandwidth","type":"string","description":"average Kafka bytes in+out per second per agent","jsonPath":".status.currentBandwidthPerAgent","priority":1}"#,
    printcolumn = r#"{"name":"CPU%","type":"integer","description":"average CPU utilisation of the requests","jsonPath":".status.currentCPUUtilizationPercentage","priority":1}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
// `kubectl scale agp` writes spec.replicas through the /scale subresource; while an autoscaler
// owns the count that write would be ignored, so it is refused with what to do instead.
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.replicas == oldSelf.replicas || !has(self.autoscaling) || !self.autoscaling.enabled || !has(oldSelf.autoscaling) || !oldSelf.autoscaling.enabled",
    "message": "spec.replicas is set by the HorizontalPodAutoscaler while spec.autoscaling.enabled is true; change spec.autoscaling.minReplicas or maxReplicas instead (e.g. minReplicas: 2), or turn autoscaling off first"
}]))]
pub struct AgentPoolSpec {
    /// The VirtualCluster (same namespace) these agents serve. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "virtualClusterRef is immutable; create another AgentPool to serve another virtual cluster"
    }]))]
    pub virtual_cluster_ref: VirtualClusterReference,
    /// Agents to run when autoscaling is off (the HorizontalPodAutoscaler decides when it is on).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Agent image; the operator's `--agent-image` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Always, IfNotPresent or Never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU and memory of each agent (quantities checked by the apiserver; see `resources.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::resources::resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// What these agents do: `produce` (take produce requests), `fetch` (serve fetches) and `jobs`
    /// (compaction, retention, GC, snapshots); all three by default. Clients bootstrapped at a pool
    /// are led only to agents that serve what the pool's agents serve, so a produce pool and a
    /// fetch pool can serve one VirtualCluster apart (charts/floe/examples/agentpools-by-role.yaml).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 3), extend("x-kubernetes-list-type" = "set"))]
    pub roles: Vec<Role>,
    /// Zones to spread agents over (node label topology.kubernetes.io/zone), e.g. `eu-west-1a`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), extend("x-kubernetes-list-type" = "set"))]
    pub zones: Vec<String>,
    /// The Kafka listener: port, and the type and annotations of the client Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ListenerSpec>,
    /// When agents write produced batches to the bucket: after `interval` or at `maxBytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush: Option<FlushSpec>,
    /// A local disk cache per agent (an emptyDir) of the segment objects it wrote, so consumers
    /// reading recent data, tailing or catching up, are served from local disk instead of bucket
    /// GETs. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_cache: Option<DiskCacheSpec>,
    /// Seconds an agent has to drain before it is killed.
    #[serde(default = "default_termination_grace")]
    #[schemars(range(min = 30, max = 3600))]
    pub termination_grace_period_seconds: i64,
    /// A HorizontalPodAutoscaler for the agents, scaling on CPU (and on bandwidth per agent when
    /// the operator's external metrics API is on). Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// Additions to the agent pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
    /// The NetworkPolicy the operator writes for the agents (on by default): only the Kafka and
    /// HTTP ports are open, each to every source or only to the namespaces named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<NetworkPolicySpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiskCacheSpec {
    /// The emptyDir's sizeLimit (at least 256Mi), e.g. 10Gi. The agent keeps its cache a tenth
    /// (at least 64Mi) below it, so the kubelet never evicts the pod for the cache; the node needs
    /// this much ephemeral storage per agent.
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = must_match(BYTES_QUANTITY_PATTERN, BYTES_QUANTITY_MESSAGE)))]
    pub size: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Whether the operator writes the NetworkPolicy (default true). Off, the agents accept
    /// connections on any port from anywhere the cluster's network allows.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Labels of the namespaces whose pods may reach the Kafka port, e.g. `{floe.dev/kafka-client:
    /// "true"}`. Empty (default): any source, including clients outside the cluster.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub kafka_client_namespaces: BTreeMap<String, String>,
    /// Labels of the namespaces whose pods may reach the HTTP port (metrics, health), e.g. the
    /// monitoring namespace's. Empty (default): any source.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics_namespaces: BTreeMap<String, String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        Self { enabled: true, kafka_client_namespaces: BTreeMap::new(), metrics_namespaces: BTreeMap::new() }
    }
}

fn default_replicas() -> i32 {
    3
}

fn default_termination_grace() -> i64 {
    600
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualClusterReference {
    /// Name of a VirtualCluster in this namespace.
    #[schemars(length(min = 1, max = 253), extend("x-kubernetes-validations" = must_match(NAME_PATTERN, NAME_MESSAGE)))]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Produce,
    Fetch,
    Jobs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSpec {
    /// Kafka port of the agents and of the client Service (default 9092).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Type of the client Service (default ClusterIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,
    /// Annotations of the client Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!(has(self.interval) && has(self.maxPutsPerSecond))",
    "message": "flush.interval and flush.maxPutsPerSecond set the same thing (interval = 1 / maxPutsPerSecond): give one of them"
}]))]
pub struct FlushSpec {
    /// Least time between two flushes of an agent (10ms..60s): another way to give
    /// maxPutsPerSecond (1 / interval). Give one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = must_match(DURATION_PATTERN, DURATION_MESSAGE)))]
    pub interval: Option<String>,
    /// Object size that is flushed at once, whatever the PUT cap (default 8Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = must_match(BYTES_QUANTITY_PATTERN, BYTES_QUANTITY_MESSAGE)))]
    pub max_bytes: Option<String>,
    /// Object PUTs per second each agent makes at most (default 10 on S3; each PUT is billed,
    /// 10 a second is about $130 a month per busy agent on S3 Standard). Under the cap, buffered
    /// records are written as soon as the previous PUT returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_puts_per_second: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "autoscaling.minReplicas must not exceed autoscaling.maxReplicas"
}]))]
pub struct AutoscalingSpec {
    /// When on, a HorizontalPodAutoscaler owns the replica count and `replicas` is ignored.
    #[serde(default)]
    pub enabled: bool,
    /// Fewest agents the autoscaler keeps (default 1).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most agents the autoscaler adds (default 10).
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation (percent of requests) to hold.
    #[serde(default = "default_cpu_target", rename = "targetCPUUtilizationPercentage")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization_percentage: i32,
    /// Whether the autoscaler also scales on bandwidth per agent (default true). `false`: CPU
    /// alone, for a pool that should not depend on the external metrics API. The operator's
    /// `--bandwidth-autoscaling=false` (the chart's metricsApi.enabled=false) makes every pool CPU-only.
    #[serde(default = "default_true")]
    pub scale_on_bandwidth: bool,
    /// Kafka bytes in+out per second per agent to hold, e.g. `50Mi`.
    #[serde(default = "default_bandwidth_target")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = must_match(BYTES_QUANTITY_PATTERN, BYTES_QUANTITY_MESSAGE)))]
    pub target_bandwidth_per_agent: String,
    /// How long load must stay low before agents are removed (default 300s).
    #[serde(default = "default_scale_down_stabilization")]
    #[schemars(length(max = 32), extend("x-kubernetes-validations" = must_match(DURATION_PATTERN, DURATION_MESSAGE)))]
    pub scale_down_stabilization: String,
}

fn default_true() -> bool {
    true
}
fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    10
}
fn default_cpu_target() -> i32 {
    70
}
fn default_bandwidth_target() -> String {
    "50Mi".to_string()
}
fn default_scale_down_stabilization() -> String {
    "300s".to_string()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Labels added to every agent pod (the operator's own labels win on a clash).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to every agent pod, e.g. for a service mesh or log shipper.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels the agent pods must be scheduled on, e.g. `node-pool: streaming`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the agent pods tolerate, as in a pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// PriorityClass of the agent pods, e.g. `high-priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// What the operator last saw of the pool's agents and autoscaler.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPoolStatus {
    /// The last generation of the spec whose children were all applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Agents that exist (the Deployment's replicas).
    #[serde(default)]
    pub replicas: i32,
    /// Agents that are ready (the Deployment's readyReplicas).
    #[serde(default)]
    pub ready_replicas: i32,
    /// What the pool is converging to: `replicas`, or the autoscaler's decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Label selector of the agents, for the /scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The autoscaler's view (autoscaling on): average CPU utilisation of the agents' requests and
    /// its target, average Kafka bytes in+out per second per agent and its target.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "currentCPUUtilizationPercentage")]
    pub current_cpu_utilization_percentage: Option<i32>,
    /// The autoscaler's CPU target, percent of the agents' CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "targetCPUUtilizationPercentage")]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Average Kafka bytes in+out per second per agent, as the autoscaler last read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_bandwidth_per_agent: Option<String>,
    /// The autoscaler's bandwidth target per agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_bandwidth_per_agent: Option<String>,
    /// Ready (every agent runs the current spec and is ready) and Reconciled (the current
    /// generation's children were applied), each with a reason and a message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl AgentPoolSpec {
    pub fn kafka_port(&self) -> i32 {
        self.listener.as_ref().and_then(|listener| listener.port).unwrap_or(9092)
    }

    pub fn autoscaling_enabled(&self) -> bool {
        self.autoscaling.as_ref().is_some_and(|autoscaling| autoscaling.enabled)
    }
}
