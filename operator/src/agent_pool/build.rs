//! The pure build step: from an AgentPool and its VirtualCluster to every child object, as
//! server-side apply would send them. No I/O; unit-tested from YAML fixtures.
//!
//! # Guarantees
//! - Equal inputs give equal objects (maps are ordered; the config hash is FNV-1a, stable across
//!   Rust versions), so an unchanged pool yields no diff and no write.
//! - With autoscaling on, the Deployment has no `replicas`: the HorizontalPodAutoscaler owns it.

use crate::crd::agent_pool::{AgentPool, PullPolicy, Role, ServiceType};
use crate::crd::quantity;
use crate::crd::virtual_cluster::{AuthenticationType, AuthorizationType, VirtualCluster};
use crate::labels;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Resource;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The external metric the operator serves and each pool's HPA targets (autoscaling issue).
pub const BANDWIDTH_METRIC: &str = "floe_agent_network_bytes_per_second";
pub const KAFKA_PORT_NAME: &str = "kafka";
pub const HTTP_PORT: i32 = 8080;
/// uid of the non-root user in the agent image.
pub const AGENT_UID: i64 = 65532;

#[derive(Debug, Clone)]
pub struct BuildSettings {
    /// Image for pools that name none.
    pub default_image: String,
    /// Whether the external metrics API serves the bandwidth metric (the chart's
    /// `metricsApi.enabled`). Off, the HPA scales on CPU alone: a metric nobody serves makes the
    /// HPA report `FailedGetExternalMetric` and refuse to scale down at all.
    pub bandwidth_metric: bool,
}

/// Everything an AgentPool owns.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub client_service: Service,
    pub headless_service: Service,
    pub disruption_budget: PodDisruptionBudget,
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// Only the Kafka and HTTP ports open (`spec.networkPolicy`); `None` when turned off.
    pub network_policy: Option<NetworkPolicy>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    #[error("the AgentPool has no {field}")]
    MissingMetadata { field: &'static str },
    #[error("spec.flush.maxBytes {value:?} is not a byte quantity; example: 8Mi")]
    FlushMaxBytes { value: String },
    #[error("spec.flush.interval and spec.flush.maxPutsPerSecond set the same thing (interval = 1 / maxPutsPerSecond); remove one")]
    FlushIntervalAndCap,
    #[error("spec.diskCache.size {value:?} is not a byte quantity of at least 256Mi; example: 10Gi")]
    DiskCacheSize { value: String },
    #[error("spec.autoscaling.targetBandwidthPerAgent {value:?} is not a byte quantity; example: 50Mi")]
    Bandwidth { value: String },
    #[error("spec.autoscaling.scaleDownStabilization {value:?} is not a duration; example: 300s")]
    Stabilization { value: String },
    #[error("the VirtualCluster {name} has no namespace or name")]
    ClusterIdentity { name: String },
    #[error("failed to assemble the {kind}: {reason}")]
    Assemble { kind: &'static str, reason: String },
    #[error(
        "a LoadBalancer would expose VirtualCluster {cluster} without authentication; set its spec.listener.authentication \
         (e.g. type: scram-sha-512) or use serviceType ClusterIP"
    )]
    UnauthenticatedLoadBalancer { cluster: String },
}

/// Where the listener's Secrets are mounted in the agent container (as directories, so a renewed
/// Secret reaches the agent; the agent re-reads certificates when they change).
pub const LISTENER_TLS_DIRECTORY: &str = "/etc/floe/listener-tls";
pub const BOOTSTRAP_USER_DIRECTORY: &str = "/etc/floe/bootstrap-user";
/// Where the disk cache's emptyDir (`spec.diskCache`) is mounted.
pub const DISK_CACHE_DIRECTORY: &str = "/var/cache/floe";

pub fn build(pool: &AgentPool, cluster: &VirtualCluster, settings: &BuildSettings) -> Result<Children, BuildError> {
    let name = pool.metadata.name.clone().ok_or(BuildError::MissingMetadata { field: "metadata.name" })?;
    let namespace = pool.metadata.namespace.clone().ok_or(BuildError::MissingMetadata { field: "metadata.namespace" })?;
    let owner = pool.controller_owner_ref(&()).ok_or(BuildError::MissingMetadata { field: "metadata.uid" })?;
    let cluster_id =
        cluster.cluster_id().ok_or_else(|| BuildError::ClusterIdentity { name: pool.spec.virtual_cluster_ref.name.clone() })?;
    let labels = labels::pool_labels(&name, &pool.spec.virtual_cluster_ref.name);
    let selector = labels::pool_selector(&name);
    let metadata = |object_name: String| json!({"name": object_name, "namespace": namespace, "labels": labels, "ownerReferences": [owner]});
    let spec = &pool.spec;
    let port = spec.kafka_port();
    if matches!(spec.listener.as_ref().and_then(|listener| listener.service_type), Some(ServiceType::LoadBalancer))
        && !cluster.spec.requires_authentication()
    {
        return Err(BuildError::UnauthenticatedLoadBalancer { cluster: spec.virtual_cluster_ref.name.clone() });
    }

    let config = agent_config(pool, cluster, &cluster_id)?;
    let config_hash = format!("{:016x}", fnv1a(&serde_json::to_vec(&config).unwrap_or_default()));
    let config_map_name = format!("{name}-config");
    let service_account_name = format!("{name}-agent");

    let service_account = assemble(
        "ServiceAccount",
        json!({
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": metadata(service_account_name.clone()),
            // Agents never call the Kubernetes API.
            "automountServiceAccountToken": false,
        }),
    )?;
    let config_map = assemble(
        "ConfigMap",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(config_map_name.clone()),
            "data": config,
        }),
    )?;

    let mut pod_labels = spec.pod_overrides.as_ref().map(|overrides| overrides.labels.clone()).unwrap_or_default();
    pod_labels.extend(labels.clone());
    let mut pod_annotations = spec.pod_overrides.as_ref().map(|overrides| overrides.annotations.clone()).unwrap_or_default();
    // A config change rolls the agents; nothing else in the pod template would change.
    pod_annotations.insert("floe.dev/config-hash".to_string(), config_hash);

    let mut env = vec![
        json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
        json!({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}),
        json!({"name": "FLOE_ADVERTISE", "value": format!("$(POD_IP):{port}")}),
    ];
    let mut volumes = vec![json!({"name": "tmp", "emptyDir": {}})];
    let mut mounts = vec![json!({"name": "tmp", "mountPath": "/tmp"})];
    if let Some(secret) = &cluster.spec.etcd.credentials_secret_ref {
        env.push(secret_env("FLOE_ETCD_USER", &secret.name, "username"));
        env.push(secret_env("FLOE_ETCD_PASSWORD", &secret.name, "password"));
    }
    if let Some(secret) = &cluster.spec.etcd.tls_secret_ref {
        volumes.push(json!({"name": "etcd-tls", "secret": {"secretName": secret.name}}));
        mounts.push(json!({"name": "etcd-tls", "mountPath": "/etc/floe/etcd-tls", "readOnly": true}));
    }
    if let Some(secret) = &cluster.spec.object_store.credentials_secret_ref {
        env.push(secret_env("AWS_ACCESS_KEY_ID", &secret.name, "AWS_ACCESS_KEY_ID"));
        env.push(secret_env("AWS_SECRET_ACCESS_KEY", &secret.name, "AWS_SECRET_ACCESS_KEY"));
    }
    listener_security(cluster, &mut env, &mut volumes, &mut mounts);
    if let Some(disk_cache) = &spec.disk_cache {
        volumes.push(json!({"name": "segment-cache", "emptyDir": {"sizeLimit": disk_cache.size}}));
        mounts.push(json!({"name": "segment-cache", "mountPath": DISK_CACHE_DIRECTORY}));
    }

    let mut container = json!({
        "name": "agent",
        "image": spec.image.clone().unwrap_or_else(|| settings.default_image.clone()),
        "args": ["agent"],
        "envFrom": [{"configMapRef": {"name": config_map_name}}],
        "env": env,
        "ports": [
            {"name": KAFKA_PORT_NAME, "containerPort": port, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10, "failureThreshold": 6},
        "securityContext": {
            "runAsNonRoot": true, "runAsUser": AGENT_UID, "runAsGroup": AGENT_UID,
            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    });
    if let Some(policy) = spec.image_pull_policy {
        container["imagePullPolicy"] = json!(match policy {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        });
    }
    if let Some(resources) = &spec.resources {
        container["resources"] =
            serde_json::to_value(resources).map_err(|error| BuildError::Assemble { kind: "Deployment", reason: error.to_string() })?;
    }
    let mut pod_spec = json!({
        "serviceAccountName": service_account_name,
        "automountServiceAccountToken": false,
        "terminationGracePeriodSeconds": spec.termination_grace_period_seconds,
        "securityContext": {"runAsNonRoot": true, "fsGroup": AGENT_UID, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
    });
    if !spec.zones.is_empty() {
        pod_spec["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": spec.zones}]}
        ]}}});
        pod_spec["topologySpreadConstraints"] = json!([{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector},
        }]);
    }
    if let Some(overrides) = &spec.pod_overrides {
        if !overrides.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(overrides.node_selector);
        }
        if !overrides.tolerations.is_empty() {
            pod_spec["tolerations"] = serde_json::to_value(&overrides.tolerations).unwrap_or_default();
        }
        if let Some(class) = &overrides.priority_class_name {
            pod_spec["priorityClassName"] = json!(class);
        }
    }
    let mut deployment_spec = json!({
        "selector": {"matchLabels": selector},
        // One agent at a time: a new agent replays the journal before it is Ready.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
        "template": {"metadata": {"labels": pod_labels, "annotations": pod_annotations}, "spec": pod_spec},
    });
    if !spec.autoscaling_enabled() {
        deployment_spec["replicas"] = json!(spec.replicas);
    }
    let deployment = assemble(
        "Deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(name.clone()),
            "spec": deployment_spec,
        }),
    )?;

    let service_type = match spec.listener.as_ref().and_then(|listener| listener.service_type) {
        Some(ServiceType::NodePort) => "NodePort",
        Some(ServiceType::LoadBalancer) => "LoadBalancer",
        _ => "ClusterIP",
    };
    let mut client_metadata = metadata(name.clone());
    if let Some(annotations) =
        spec.listener.as_ref().map(|listener| &listener.service_annotations).filter(|annotations| !annotations.is_empty())
    {
        client_metadata["annotations"] = json!(annotations);
    }
    let client_service = assemble(
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": client_metadata,
            "spec": {
                "type": service_type,
                "selector": selector,
                "ports": [{"name": KAFKA_PORT_NAME, "port": port, "targetPort": KAFKA_PORT_NAME, "protocol": "TCP"}],
            },
        }),
    )?;
    let headless_service = assemble(
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": metadata(format!("{name}-headless")),
            "spec": {
                "clusterIP": "None",
                // Agents are addressed one by one while they replay, before they are Ready.
                "publishNotReadyAddresses": true,
                "selector": selector,
                "ports": [
                    {"name": KAFKA_PORT_NAME, "port": port, "targetPort": KAFKA_PORT_NAME, "protocol": "TCP"},
                    {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
                ],
            },
        }),
    )?;
    let disruption_budget = assemble(
        "PodDisruptionBudget",
        json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(name.clone()),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}},
        }),
    )?;

    let network_policy_spec = spec.network_policy.clone().unwrap_or_default();
    let network_policy = if network_policy_spec.enabled {
        // A port's rule without `from` admits every source (clients outside the cluster too, for
        // LoadBalancer and NodePort Services); with namespace labels, only pods there.
        let rule = |port_name: &str, namespaces: &BTreeMap<String, String>| {
            let mut rule = json!({"ports": [{"protocol": "TCP", "port": port_name}]});
            if !namespaces.is_empty() {
                rule["from"] = json!([{"namespaceSelector": {"matchLabels": namespaces}}]);
            }
            rule
        };
        Some(assemble(
            "NetworkPolicy",
            json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": metadata(format!("{name}-agents")),
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        rule(KAFKA_PORT_NAME, &network_policy_spec.kafka_client_namespaces),
                        rule("http", &network_policy_spec.metrics_namespaces),
                    ],
                },
            }),
        )?)
    } else {
        None
    };

    let autoscaler = match spec.autoscaling.as_ref().filter(|autoscaling| autoscaling.enabled) {
        None => None,
        Some(autoscaling) => {
            let bandwidth = quantity::bytes(&autoscaling.target_bandwidth_per_agent)
                .ok_or_else(|| BuildError::Bandwidth { value: autoscaling.target_bandwidth_per_agent.clone() })?;
            let stabilization = humantime::parse_duration(&autoscaling.scale_down_stabilization)
                .map_err(|_| BuildError::Stabilization { value: autoscaling.scale_down_stabilization.clone() })?;
            let mut metrics = vec![json!(
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": autoscaling.target_cpu_utilization_percentage}}}
            )];
            if scales_on_bandwidth(autoscaling, settings) {
                metrics.push(json!({"type": "External", "external": {
                    "metric": {"name": BANDWIDTH_METRIC, "selector": {"matchLabels": selector}},
                    "target": {"type": "AverageValue", "averageValue": bandwidth.to_string()},
                }}));
            }
            Some(assemble(
                "HorizontalPodAutoscaler",
                json!({
                    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": metadata(name.clone()),
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                        "minReplicas": autoscaling.min_replicas,
                        "maxReplicas": autoscaling.max_replicas,
                        "metrics": metrics,
                        "behavior": {
                            // Grow at once: a new agent takes load the moment it is Ready.
                            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                                {"type": "Percent", "value": 100, "periodSeconds": 15},
                                {"type": "Pods", "value": 4, "periodSeconds": 15},
                            ]},
                            // Shrink slowly: one agent per minute, after load stayed low for the window.
                            "scaleDown": {"stabilizationWindowSeconds": stabilization.as_secs().min(3600) as i32, "selectPolicy": "Min", "policies": [
                                {"type": "Pods", "value": 1, "periodSeconds": 60},
                            ]},
                        },
                    },
                }),
            )?)
        }
    };

    Ok(Children {
        service_account,
        config_map,
        deployment,
        client_service,
        headless_service,
        disruption_budget,
        autoscaler,
        network_policy,
    })
}

/// Whether a pool's HPA carries the bandwidth metric: only when the operator serves it (or another
/// adapter does, `--bandwidth-autoscaling`) and the pool asks for it.
pub fn scales_on_bandwidth(autoscaling: &crate::crd::agent_pool::AutoscalingSpec, settings: &BuildSettings) -> bool {
    settings.bandwidth_metric && autoscaling.scale_on_bandwidth
}

/// The agent's `--disk-cache-bytes` for an emptyDir of `size`: a tenth (at least 64 MiB) below
/// the sizeLimit, room for the object being written past the budget and files still open for a
/// read after eviction. `None` below 256 MiB or for a quantity that is not a size.
fn disk_cache_budget(size: &str) -> Option<u64> {
    const MIB: u64 = 1 << 20;
    let size = quantity::bytes(size).filter(|&bytes| bytes >= 256 * MIB)?;
    Some(size - (size / 10).max(64 * MIB))
}

/// The agents' configuration, as environment variables (ConfigMap data). Secrets are referenced
/// from the Deployment, never copied here.
fn agent_config(pool: &AgentPool, cluster: &VirtualCluster, cluster_id: &str) -> Result<BTreeMap<String, String>, BuildError> {
    let spec = &pool.spec;
    let etcd = &cluster.spec.etcd;
    let mut config = BTreeMap::new();
    config.insert("FLOE_METADATA".to_string(), format!("etcd://{}{}", etcd.endpoints.join(","), etcd.prefix));
    config.insert("FLOE_VIRTUAL_CLUSTER".to_string(), cluster_id.to_string());
    // Agents refuse to join a journal whose registration names another VirtualCluster.
    if let Some(uid) = &cluster.metadata.uid {
        config.insert("FLOE_VIRTUAL_CLUSTER_UID".to_string(), uid.clone());
    }
    config.insert("FLOE_OBJECT_STORE".to_string(), cluster.spec.object_store.url.clone());
    config.insert("FLOE_KAFKA_LISTEN".to_string(), format!("0.0.0.0:{}", spec.kafka_port()));
    config.insert("FLOE_HTTP_LISTEN".to_string(), format!("0.0.0.0:{HTTP_PORT}"));
    // The registry entry names the pool, so the external-metrics server sums a pool's load.
    config.insert("FLOE_POOL".to_string(), pool.metadata.name.clone().unwrap_or_default());
    // Drain well inside the grace period, leaving time for the last flush to commit.
    config.insert("FLOE_DRAIN_TIMEOUT".to_string(), format!("{}s", drain_timeout_seconds(spec.termination_grace_period_seconds)));
    if let Some(region) = &cluster.spec.object_store.region {
        config.insert("AWS_REGION".to_string(), region.clone());
    }
    if let Some(endpoint) = &cluster.spec.object_store.endpoint {
        config.insert("AWS_ENDPOINT".to_string(), endpoint.clone());
        if endpoint.starts_with("http://") {
            config.insert("AWS_ALLOW_HTTP".to_string(), "true".to_string());
        }
    }
    if cluster.spec.etcd.tls_secret_ref.is_some() {
        config.insert("FLOE_ETCD_CA_FILE".to_string(), "/etc/floe/etcd-tls/ca.crt".to_string());
        config.insert("FLOE_ETCD_CERT_FILE".to_string(), "/etc/floe/etcd-tls/tls.crt".to_string());
        config.insert("FLOE_ETCD_KEY_FILE".to_string(), "/etc/floe/etcd-tls/tls.key".to_string());
    }
    if let Some(defaults) = &cluster.spec.topic_defaults {
        if let Some(partitions) = defaults.partitions {
            config.insert("FLOE_DEFAULT_PARTITIONS".to_string(), partitions.to_string());
        }
        if let Some(auto_create) = defaults.auto_create_topics {
            config.insert("FLOE_AUTO_CREATE_TOPICS".to_string(), auto_create.to_string());
        }
    }
    if let Some(disk_cache) = &spec.disk_cache {
        let budget = disk_cache_budget(&disk_cache.size).ok_or_else(|| BuildError::DiskCacheSize { value: disk_cache.size.clone() })?;
        config.insert("FLOE_DISK_CACHE_DIR".to_string(), DISK_CACHE_DIRECTORY.to_string());
        config.insert("FLOE_DISK_CACHE_BYTES".to_string(), budget.to_string());
    }
    if let Some(flush) = &spec.flush {
        // The API server refuses both (the CRD's rule); an object stored before the rule existed
        // must not start agents that exit on the conflict.
        if flush.interval.is_some() && flush.max_puts_per_second.is_some() {
            return Err(BuildError::FlushIntervalAndCap);
        }
        if let Some(interval) = &flush.interval {
            config.insert("FLOE_FLUSH_INTERVAL".to_string(), interval.clone());
        }
        if let Some(max_bytes) = &flush.max_bytes {
            let bytes = quantity::bytes(max_bytes).ok_or_else(|| BuildError::FlushMaxBytes { value: max_bytes.clone() })?;
            config.insert("FLOE_FLUSH_MAX_BYTES".to_string(), bytes.to_string());
        }
        if let Some(rate) = flush.max_puts_per_second {
            config.insert("FLOE_MAX_PUTS_PER_SECOND".to_string(), rate.to_string());
        }
    }
    if !spec.roles.is_empty() {
        let mut roles = spec.roles.clone();
        roles.sort();
        let names: Vec<&str> = roles
            .iter()
            .map(|role| match role {
                Role::Produce => "produce",
                Role::Fetch => "fetch",
                Role::Jobs => "jobs",
            })
            .collect();
        config.insert("FLOE_ROLES".to_string(), names.join(","));
    }
    Ok(config)
}

/// The agent's drain budget: the grace period less a margin (10%, at least 10 s), so the kubelet's
/// SIGKILL never lands mid-flush.
pub fn drain_timeout_seconds(grace_seconds: i64) -> i64 {
    (grace_seconds - (grace_seconds / 10).max(10)).max(1)
}

/// The VirtualCluster's listener TLS and authentication as the agent's flags (environment) and
/// mounted Secrets.
fn listener_security(cluster: &VirtualCluster, env: &mut Vec<Value>, volumes: &mut Vec<Value>, mounts: &mut Vec<Value>) {
    let Some(listener) = &cluster.spec.listener else { return };
    let value = |name: &str, value: String| json!({"name": name, "value": value});
    if let Some(secret) = &listener.tls_secret_ref {
        volumes.push(json!({"name": "listener-tls", "secret": {"secretName": secret.name}}));
        mounts.push(json!({"name": "listener-tls", "mountPath": LISTENER_TLS_DIRECTORY, "readOnly": true}));
        env.push(value("FLOE_TLS_CERT_FILE", format!("{LISTENER_TLS_DIRECTORY}/tls.crt")));
        env.push(value("FLOE_TLS_KEY_FILE", format!("{LISTENER_TLS_DIRECTORY}/tls.key")));
    }
    if let Some(authorization) = listener.authorization.as_ref().filter(|authorization| authorization.kind == AuthorizationType::Acls) {
        env.push(value("FLOE_ACL_AUTHORIZATION", "true".to_string()));
        if !authorization.super_users.is_empty() {
            env.push(value("FLOE_SUPER_USERS", authorization.super_users.join(";")));
        }
    }
    let Some(authentication) = &listener.authentication else { return };
    if authentication.kind == AuthenticationType::Mtls {
        env.push(value("FLOE_TLS_CLIENT_AUTH", "required".to_string()));
        env.push(value("FLOE_TLS_CLIENT_CA_FILE", format!("{LISTENER_TLS_DIRECTORY}/ca.crt")));
    }
    if let Some(mechanism) = authentication.kind.sasl_mechanism() {
        env.push(value("FLOE_SASL_MECHANISMS", mechanism.to_string()));
    }
    if let (Some(user), Some(_)) = (&authentication.bootstrap_user, authentication.kind.sasl_mechanism()) {
        volumes.push(json!({"name": "bootstrap-user", "secret": {"secretName": user.password_secret_ref.name, "items": [{"key": "password", "path": "password"}]}}));
        mounts.push(json!({"name": "bootstrap-user", "mountPath": BOOTSTRAP_USER_DIRECTORY, "readOnly": true}));
        env.push(value("FLOE_SASL_BOOTSTRAP_USER", user.name.clone()));
        env.push(value("FLOE_SASL_BOOTSTRAP_PASSWORD_FILE", format!("{BOOTSTRAP_USER_DIRECTORY}/password")));
    }
}

fn secret_env(variable: &str, secret: &str, key: &str) -> Value {
    json!({"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
}

fn assemble<T: serde::de::DeserializeOwned>(kind: &'static str, value: Value) -> Result<T, BuildError> {
    serde_json::from_value(value).map_err(|error| BuildError::Assemble { kind, reason: error.to_string() })
}

/// FNV-1a, 64-bit: a hash whose value never changes between builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}
