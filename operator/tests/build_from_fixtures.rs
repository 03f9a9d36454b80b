//! The pure build step, from YAML fixtures to the children the operator applies.

use floe_operator::agent_pool::build::{build, BuildError, BuildSettings, BANDWIDTH_METRIC};
use floe_operator::crd::{AgentPool, VirtualCluster};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Container;

fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap_or_else(|error| panic!("{path}: {error}"))
}

fn settings() -> BuildSettings {
    BuildSettings { default_image: "ghcr.io/floe-dev/floe:0.1.0".to_string(), bandwidth_metric: true }
}

fn agent(deployment: &Deployment) -> &Container {
    &deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
}

fn env_value<'a>(container: &'a Container, name: &str) -> Option<&'a k8s_openapi::api::core::v1::EnvVar> {
    container.env.as_ref()?.iter().find(|variable| variable.name == name)
}

#[test]
fn a_minimal_pool_gets_three_agents_the_default_image_and_a_ten_minute_grace() {
    let children =
        build(&fixture::<AgentPool>("agentpool-minimal.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let deployment = children.deployment.spec.as_ref().unwrap();
    assert_eq!(deployment.replicas, Some(3));
    let pod = deployment.template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(600));
    assert_eq!(agent(&children.deployment).image.as_deref(), Some("ghcr.io/floe-dev/floe:0.1.0"));
    assert!(children.autoscaler.is_none());
    assert_eq!(
        children.disruption_budget.spec.as_ref().unwrap().max_unavailable.as_ref().map(|value| format!("{value:?}")),
        Some("Int(1)".to_string())
    );
}

#[test]
fn every_child_is_owned_by_the_pool_as_its_controller() {
    let children =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let metas = [
        &children.service_account.metadata,
        &children.config_map.metadata,
        &children.deployment.metadata,
        &children.client_service.metadata,
        &children.headless_service.metadata,
        &children.disruption_budget.metadata,
        &children.autoscaler.as_ref().unwrap().metadata,
    ];
    for meta in metas {
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "AgentPool");
        assert_eq!(owners[0].uid, "99999999-8888-7777-6666-555555555555");
        assert_eq!(owners[0].controller, Some(true));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("floe-operator"));
        assert_eq!(labels.get("floe.dev/pool").map(String::as_str), Some("agents"));
        assert_eq!(meta.namespace.as_deref(), Some("team-a"));
    }
}

#[test]
fn reconcile_with_hpa_enabled_omits_replicas() {
    let children =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    assert_eq!(children.deployment.spec.as_ref().unwrap().replicas, None, "the HPA owns replicas");
    let hpa = children.autoscaler.unwrap().spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 12));
    let metrics = hpa.metrics.unwrap();
    assert_eq!(metrics[0].resource.as_ref().unwrap().target.average_utilization, Some(60));
    let external = metrics[1].external.as_ref().unwrap();
    assert_eq!(external.metric.name, BANDWIDTH_METRIC);
    assert_eq!(external.target.average_value.as_ref().unwrap().0, (50u64 << 20).to_string());
    assert_eq!(hpa.behavior.unwrap().scale_down.unwrap().stabilization_window_seconds, Some(300));
}

#[test]
fn without_the_external_metrics_api_the_hpa_scales_on_cpu_alone() {
    let settings = BuildSettings { bandwidth_metric: false, ..settings() };
    let children =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings).unwrap();
    let metrics = children.autoscaler.unwrap().spec.unwrap().metrics.unwrap();
    let kinds: Vec<&str> = metrics.iter().map(|metric| metric.type_.as_str()).collect();
    assert_eq!(kinds, ["Resource"], "a metric nobody serves keeps the HPA from scaling down");
    assert_eq!(metrics[0].resource.as_ref().unwrap().name, "cpu");
}

#[test]
fn a_pool_that_asks_for_cpu_alone_gets_an_hpa_without_the_bandwidth_metric() {
    let mut pool = fixture::<AgentPool>("agentpool-autoscaled.yaml");
    pool.spec.autoscaling.as_mut().unwrap().scale_on_bandwidth = false;
    let children = build(&pool, &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let metrics = children.autoscaler.unwrap().spec.unwrap().metrics.unwrap();
    let kinds: Vec<&str> = metrics.iter().map(|metric| metric.type_.as_str()).collect();
    assert_eq!(kinds, ["Resource"]);
    // The other pools of the same operator keep both metrics.
    let both =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    assert_eq!(both.autoscaler.unwrap().spec.unwrap().metrics.unwrap().len(), 2);
}

#[test]
fn the_agent_config_points_at_the_virtual_clusters_etcd_and_bucket() {
    let children =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let data = children.config_map.data.unwrap();
    let get = |key: &str| data.get(key).map(String::as_str);
    assert_eq!(get("FLOE_METADATA"), Some("etcd://etcd-0.etcd:2379,etcd-1.etcd:2379/floe"));
    assert_eq!(get("FLOE_VIRTUAL_CLUSTER"), Some("team-a.demo"));
    assert_eq!(get("FLOE_VIRTUAL_CLUSTER_UID"), Some("11111111-2222-3333-4444-555555555555"));
    assert_eq!(get("FLOE_OBJECT_STORE"), Some("s3://floe-data/demo"));
    assert_eq!(get("AWS_ENDPOINT"), Some("http://minio.storage.svc:9000"));
    assert_eq!(get("AWS_ALLOW_HTTP"), Some("true"));
    assert_eq!(get("FLOE_FLUSH_INTERVAL"), Some("50ms"));
    assert_eq!(get("FLOE_FLUSH_MAX_BYTES"), Some("4194304"));
    assert_eq!(get("FLOE_MAX_PUTS_PER_SECOND"), None, "the pool gives the interval instead");
    assert_eq!(get("FLOE_ROLES"), Some("produce,jobs"));
    assert_eq!(get("FLOE_DEFAULT_PARTITIONS"), Some("6"));
    assert_eq!(get("FLOE_AUTO_CREATE_TOPICS"), Some("true"));
    assert_eq!(get("FLOE_KAFKA_LISTEN"), Some("0.0.0.0:19092"));
    assert_eq!(get("FLOE_POOL"), Some("agents"));
    assert_eq!(get("FLOE_DRAIN_TIMEOUT"), Some("810s"), "grace 900 s less 10%");
    // Credentials are referenced from their Secrets, never copied into the ConfigMap.
    assert!(data.keys().all(|key| !key.contains("SECRET") && !key.contains("PASSWORD")));
    let container = agent(&children.deployment);
    let secret = |name: &str| {
        env_value(container, name)
            .and_then(|variable| variable.value_from.as_ref())
            .and_then(|from| from.secret_key_ref.as_ref())
            .map(|reference| (reference.name.clone(), reference.key.clone()))
    };
    assert_eq!(secret("AWS_SECRET_ACCESS_KEY"), Some(("s3-auth".to_string(), "AWS_SECRET_ACCESS_KEY".to_string())));
    assert_eq!(secret("FLOE_ETCD_PASSWORD"), Some(("etcd-auth".to_string(), "password".to_string())));
    assert_eq!(env_value(container, "FLOE_ADVERTISE").and_then(|variable| variable.value.as_deref()), Some("$(POD_IP):19092"));
}

#[test]
fn pod_overrides_zones_and_listener_settings_reach_the_pods_and_services() {
    let children =
        build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let template = &children.deployment.spec.as_ref().unwrap().template;
    let pod = template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(900));
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.node_selector.as_ref().unwrap().get("pool").map(String::as_str), Some("streaming"));
    assert_eq!(pod.tolerations.as_ref().unwrap()[0].key.as_deref(), Some("dedicated"));
    assert!(pod.affinity.is_some() && pod.topology_spread_constraints.is_some());
    assert_eq!(template.metadata.as_ref().unwrap().labels.as_ref().unwrap().get("team").map(String::as_str), Some("a"));
    let container = agent(&children.deployment);
    assert_eq!(container.image.as_deref(), Some("registry.example/floe:1.2.3"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("Always"));
    let security = container.security_context.as_ref().unwrap();
    assert_eq!((security.run_as_non_root, security.read_only_root_filesystem), (Some(true), Some(true)));
    let service = children.client_service.spec.as_ref().unwrap();
    assert_eq!(service.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(service.ports.as_ref().unwrap()[0].port, 19092);
    assert_eq!(children.client_service.metadata.annotations.as_ref().unwrap().get("example.com/lb").map(String::as_str), Some("internal"));
    assert_eq!(children.headless_service.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
}

#[test]
fn equal_inputs_build_equal_children_and_a_config_change_rolls_the_agents() {
    let pool: AgentPool = fixture("agentpool-minimal.yaml");
    let mut cluster: VirtualCluster = fixture("virtualcluster.yaml");
    let first = build(&pool, &cluster, &settings()).unwrap();
    assert_eq!(first, build(&pool, &cluster, &settings()).unwrap());
    let hash = |deployment: &Deployment| {
        deployment.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()["floe.dev/config-hash"].clone()
    };
    cluster.spec.object_store.url = "s3://other-bucket/demo".to_string();
    let second = build(&pool, &cluster, &settings()).unwrap();
    assert_ne!(hash(&first.deployment), hash(&second.deployment));
}

#[test]
fn the_listeners_tls_sasl_and_acls_reach_the_agents_as_flags_and_mounted_secrets() {
    let children =
        build(&fixture::<AgentPool>("agentpool-minimal.yaml"), &fixture::<VirtualCluster>("virtualcluster.yaml"), &settings()).unwrap();
    let container = agent(&children.deployment);
    let env = |name: &str| {
        container.env.as_ref().unwrap().iter().find(|variable| variable.name == name).and_then(|variable| variable.value.clone())
    };
    assert_eq!(env("FLOE_TLS_CERT_FILE").as_deref(), Some("/etc/floe/listener-tls/tls.crt"));
    assert_eq!(env("FLOE_TLS_KEY_FILE").as_deref(), Some("/etc/floe/listener-tls/tls.key"));
    assert_eq!(env("FLOE_SASL_MECHANISMS").as_deref(), Some("SCRAM-SHA-512"));
    assert_eq!(env("FLOE_SASL_BOOTSTRAP_USER").as_deref(), Some("admin"));
    assert_eq!(env("FLOE_SASL_BOOTSTRAP_PASSWORD_FILE").as_deref(), Some("/etc/floe/bootstrap-user/password"));
    assert_eq!(env("FLOE_TLS_CLIENT_AUTH"), None, "no client certificates without mtls");
    assert_eq!(env("FLOE_ACL_AUTHORIZATION").as_deref(), Some("true"));
    assert_eq!(env("FLOE_SUPER_USERS").as_deref(), Some("User:ops;User:CN=break-glass"));
    let pod = children.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let secret_of = |volume: &str| {
        pod.volumes.as_ref().unwrap().iter().find(|candidate| candidate.name == volume).and_then(|found| found.secret.clone())
    };
    // Whole-Secret directory mounts (never subPath), so a renewed certificate reaches the agent.
    assert_eq!(secret_of("listener-tls").and_then(|secret| secret.secret_name).as_deref(), Some("demo-listener-tls"));
    assert_eq!(secret_of("bootstrap-user").and_then(|secret| secret.secret_name).as_deref(), Some("demo-admin"));
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert!(mounts
        .iter()
        .any(|mount| mount.name == "listener-tls" && mount.mount_path == "/etc/floe/listener-tls" && mount.sub_path.is_none()));
}

#[test]
fn mtls_asks_for_client_certificates_and_a_load_balancer_needs_authentication() {
    use floe_operator::crd::virtual_cluster::AuthenticationType;
    let mut cluster: VirtualCluster = fixture("virtualcluster.yaml");
    let listener = cluster.spec.listener.as_mut().unwrap();
    let authentication = listener.authentication.as_mut().unwrap();
    authentication.kind = AuthenticationType::Mtls;
    authentication.bootstrap_user = None;
    let children = build(&fixture::<AgentPool>("agentpool-minimal.yaml"), &cluster, &settings()).unwrap();
    let env: Vec<(String, Option<String>)> =
        agent(&children.deployment).env.clone().unwrap().into_iter().map(|variable| (variable.name, variable.value)).collect();
    assert!(env.contains(&("FLOE_TLS_CLIENT_AUTH".to_string(), Some("required".to_string()))));
    assert!(env.contains(&("FLOE_TLS_CLIENT_CA_FILE".to_string(), Some("/etc/floe/listener-tls/ca.crt".to_string()))));
    assert!(!env.iter().any(|(name, _)| name.starts_with("FLOE_SASL")), "no SASL with mtls");

    let pool: AgentPool = fixture("agentpool-autoscaled.yaml");
    assert!(build(&pool, &cluster, &settings()).is_ok(), "mtls authenticates a LoadBalancer's clients");
    cluster.spec.listener = None;
    let refused = build(&pool, &cluster, &settings()).unwrap_err();
    assert!(matches!(refused, BuildError::UnauthenticatedLoadBalancer { .. }));
    assert!(refused.to_string().contains("spec.listener.authentication"), "{refused}");
}

#[test]
fn the_agents_network_policy_opens_only_the_kafka_and_http_ports_to_the_namespaces_named() {
    let cluster: VirtualCluster = fixture("virtualcluster.yaml");
    let mut pool: AgentPool = fixture("agentpool-minimal.yaml");
    let rules = |pool: &AgentPool| -> serde_json::Value {
        let policy = build(pool, &cluster, &settings()).unwrap().network_policy.expect("a NetworkPolicy by default");
        serde_json::to_value(policy.spec.unwrap()).unwrap()
    };
    let open = rules(&pool);
    assert_eq!(open["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(open["podSelector"]["matchLabels"]["app.kubernetes.io/instance"], serde_json::json!(pool.metadata.name.clone().unwrap()));
    let ingress = open["ingress"].as_array().unwrap();
    assert_eq!(ingress.len(), 2);
    assert_eq!(ingress[0]["ports"][0]["port"], serde_json::json!("kafka"));
    assert_eq!(ingress[1]["ports"][0]["port"], serde_json::json!("http"));
    assert!(ingress.iter().all(|rule| rule.get("from").is_none()), "by default each port admits every source");

    pool.spec.network_policy = Some(floe_operator::crd::agent_pool::NetworkPolicySpec {
        enabled: true,
        kafka_client_namespaces: [("floe.dev/kafka-client".to_string(), "true".to_string())].into(),
        metrics_namespaces: [("kubernetes.io/metadata.name".to_string(), "monitoring".to_string())].into(),
    });
    let narrowed = rules(&pool);
    assert_eq!(narrowed["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["floe.dev/kafka-client"], serde_json::json!("true"));
    assert_eq!(
        narrowed["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        serde_json::json!("monitoring")
    );

    pool.spec.network_policy.as_mut().unwrap().enabled = false;
    assert!(build(&pool, &cluster, &settings()).unwrap().network_policy.is_none());
}

#[test]
fn the_put_cap_reaches_the_agents_and_is_refused_beside_an_interval() {
    let cluster = fixture::<VirtualCluster>("virtualcluster.yaml");
    let mut pool = fixture::<AgentPool>("agentpool-autoscaled.yaml");
    let flush = pool.spec.flush.as_mut().unwrap();
    flush.interval = None;
    flush.max_puts_per_second = Some(20);
    let data = build(&pool, &cluster, &settings()).unwrap().config_map.data.unwrap();
    assert_eq!(data.get("FLOE_MAX_PUTS_PER_SECOND").map(String::as_str), Some("20"));
    assert!(!data.contains_key("FLOE_FLUSH_INTERVAL"));
    pool.spec.flush.as_mut().unwrap().interval = Some("50ms".into());
    let error = build(&pool, &cluster, &settings()).unwrap_err();
    assert_eq!(error, BuildError::FlushIntervalAndCap);
    assert!(error.to_string().contains("remove one"), "{error}");
}

#[test]
fn a_pool_with_a_disk_cache_gets_an_emptydir_of_that_size_and_an_agent_budget_below_it() {
    let cluster = fixture::<VirtualCluster>("virtualcluster.yaml");
    let children = build(&fixture::<AgentPool>("agentpool-autoscaled.yaml"), &cluster, &settings()).unwrap();
    let data = children.config_map.data.unwrap();
    assert_eq!(data.get("FLOE_DISK_CACHE_DIR").map(String::as_str), Some("/var/cache/floe"));
    assert_eq!(data.get("FLOE_DISK_CACHE_BYTES").map(String::as_str), Some((9u64 << 30).to_string().as_str()), "10Gi less a tenth");
    let pod = children.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volume = pod.volumes.as_ref().unwrap().iter().find(|volume| volume.name == "segment-cache").expect("the cache's volume");
    assert_eq!(volume.empty_dir.as_ref().and_then(|dir| dir.size_limit.as_ref()).map(|size| size.0.as_str()), Some("10Gi"));
    let mount = agent(&children.deployment).volume_mounts.as_ref().unwrap().iter().find(|mount| mount.name == "segment-cache");
    assert_eq!(mount.map(|mount| mount.mount_path.as_str()), Some("/var/cache/floe"));

    // Without spec.diskCache: no volume and no flag.
    let minimal = build(&fixture::<AgentPool>("agentpool-minimal.yaml"), &cluster, &settings()).unwrap();
    assert!(minimal.config_map.data.unwrap().keys().all(|key| !key.starts_with("FLOE_DISK_CACHE")));
    let pod = minimal.deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(pod.volumes.as_ref().unwrap().iter().all(|volume| volume.name != "segment-cache"));

    // A small cache keeps 64 MiB free; one too small for that is refused with the field's name.
    let mut pool = fixture::<AgentPool>("agentpool-autoscaled.yaml");
    pool.spec.disk_cache.as_mut().unwrap().size = "256Mi".to_string();
    let data = build(&pool, &cluster, &settings()).unwrap().config_map.data.unwrap();
    assert_eq!(data.get("FLOE_DISK_CACHE_BYTES").map(String::as_str), Some((192u64 << 20).to_string().as_str()));
    pool.spec.disk_cache.as_mut().unwrap().size = "100Mi".to_string();
    let error = build(&pool, &cluster, &settings()).err().unwrap();
    assert!(matches!(error, BuildError::DiskCacheSize { .. }), "{error}");
    assert!(error.to_string().contains("spec.diskCache.size") && error.to_string().contains("256Mi"), "{error}");
}
