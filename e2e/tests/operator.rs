//! The operator against a real control plane (kube-apiserver, controller-manager, scheduler,
//! KWOK), installed with the real helm chart, with a real etcd and S3-compatible server behind its
//! VirtualClusters. Every wait is on a condition, never a sleep.

use anyhow::{bail, ensure, Context, Result};
use floe_agent::metadata::records::{ChunkCommit, JournalEntry, JournalRecord};
use floe_e2e::cluster::BUCKET;
use floe_e2e::kubernetes::{self, wait_for, ControlPlane, RELEASE, RELEASE_NAMESPACE};
use floe_operator::agent_pool::build::BuildSettings;
use floe_operator::context::Context as OperatorContext;
use floe_operator::crd::{AgentPool, VirtualCluster};
use floe_operator::metrics::Metrics;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::params::ValidationDirective;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The listener certificate renewed through its Secret, with a real agent for the pool.
#[path = "operator/listener.rs"]
mod listener;
/// KafkaUser resources, with real agents for their pools.
#[path = "operator/users.rs"]
mod users;

const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A VirtualCluster on the test's etcd and S3 server; its objects live under `<namespace>-<name>/`.
fn virtual_cluster(plane: &ControlPlane, namespace: &str, name: &str, policy: &str) -> Value {
    let infrastructure = &plane.infrastructure;
    json!({
        "apiVersion": "floe.dev/v1alpha1", "kind": "VirtualCluster",
        "metadata": {"name": name},
        "spec": {
            "etcd": {"endpoints": [infrastructure.etcd_endpoint()], "prefix": "/floe"},
            "objectStore": {
                "url": format!("s3://{BUCKET}/{namespace}-{name}"),
                "region": "us-east-1",
                "endpoint": format!("http://127.0.0.1:{}", infrastructure.s3_port),
                "credentialsSecretRef": {"name": "s3-auth"},
            },
            "topicDefaults": {"partitions": 3},
            "deletionPolicy": policy,
        },
    })
}

fn agent_pool(name: &str, cluster: &str, replicas: i32) -> Value {
    json!({
        "apiVersion": "floe.dev/v1alpha1", "kind": "AgentPool",
        "metadata": {"name": name},
        "spec": {"virtualClusterRef": {"name": cluster}, "replicas": replicas},
    })
}

async fn create<K>(api: &Api<K>, value: Value) -> Result<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value)?;
    Ok(api.create(&PostParams::default(), &object).await?)
}

async fn s3_secret(client: &Client, namespace: &str) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    create(
        &secrets,
        json!({"metadata": {"name": "s3-auth"}, "stringData": {"AWS_ACCESS_KEY_ID": "floe", "AWS_SECRET_ACCESS_KEY": "floe-secret"}}),
    )
    .await?;
    Ok(())
}

fn condition_status(conditions: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>>, kind: &str) -> Option<String> {
    conditions?.iter().find(|condition| condition.type_ == kind).map(|condition| condition.status.clone())
}

async fn wait_cluster_ready(api: &Api<VirtualCluster>, name: &str) -> Result<VirtualCluster> {
    wait_for(&format!("VirtualCluster {name} Ready"), READY_TIMEOUT, || async {
        let cluster = api.get(name).await?;
        let conditions = cluster.status.as_ref().map(|status| &status.conditions);
        match condition_status(conditions, "Ready").as_deref() {
            Some("True") => Ok(Some(cluster)),
            _ => bail!("status is {:?}", cluster.status),
        }
    })
    .await
}

async fn wait_pool_available(client: &Client, namespace: &str, name: &str, replicas: i32) -> Result<Deployment> {
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("AgentPool {name} with {replicas} ready agents"), READY_TIMEOUT, || async {
        let pool = pools.get(name).await?;
        let Some(deployment) = deployments.get_opt(name).await? else { bail!("no Deployment yet") };
        let status = deployment.status.clone().unwrap_or_default();
        let available = status.conditions.iter().flatten().any(|condition| condition.type_ == "Available" && condition.status == "True");
        let pool_ready = pool.status.as_ref().is_some_and(|status| status.ready_replicas == replicas)
            && condition_status(pool.status.as_ref().map(|status| &status.conditions), "Ready").as_deref() == Some("True");
        if available && status.ready_replicas == Some(replicas) && pool_ready {
            Ok(Some(deployment))
        } else {
            bail!("deployment status {:?}, pool status {:?}", status, pool.status)
        }
    })
    .await
}

fn controlled_by(meta: &kube::api::ObjectMeta, owner: &AgentPool) -> bool {
    meta.owner_references.iter().flatten().any(|reference| {
        reference.controller == Some(true) && Some(&reference.uid) == owner.metadata.uid.as_ref() && reference.kind == "AgentPool"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_the_chart_and_a_pool_becomes_available_with_every_child_owned() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    eprintln!("control plane ready in {:.1}s", plane.startup_seconds);
    let status = plane.helm(&["status", RELEASE, "--namespace", RELEASE_NAMESPACE, "--output", "json"])?;
    let status: Value = serde_json::from_str(&status)?;
    assert_eq!(status["info"]["status"], "deployed", "helm status: {status}");
    let operator: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let operator = operator.list(&ListParams::default().labels("app.kubernetes.io/instance=floe")).await?;
    assert!(!operator.items.is_empty(), "the chart installed no operator Deployment");

    let namespace = plane.namespace(&client, "ready").await?;
    let mut process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    create(&pools, agent_pool("agents", "demo", 3)).await?;

    let cluster = wait_cluster_ready(&clusters, "demo").await.with_context(|| process.log_tail())?;
    let conditions = cluster.status.as_ref().map(|status| &status.conditions);
    assert_eq!(condition_status(conditions, "MetadataReachable").as_deref(), Some("True"));
    assert_eq!(condition_status(conditions, "BucketReachable").as_deref(), Some("True"));
    assert_eq!(cluster.status.as_ref().and_then(|status| status.id.clone()), cluster.metadata.uid);
    // Registered in the test's etcd under the virtual cluster's key.
    let registration = plane.infrastructure.etcdctl(&["get", "--print-value-only", &format!("/floe/vc/{namespace}.demo/registration")])?;
    let registration: Value = serde_json::from_str(registration.trim()).with_context(|| format!("registration {registration:?}"))?;
    assert_eq!(registration["id"].as_str(), cluster.metadata.uid.as_deref());
    assert_eq!(registration["owner"], format!("{namespace}/demo"));

    let deployment = wait_pool_available(&client, &namespace, "agents", 3).await.with_context(|| process.log_tail())?;
    let pool = pools.get("agents").await?;
    assert!(controlled_by(&deployment.metadata, &pool));
    for name in ["agents", "agents-headless"] {
        let service = Api::<Service>::namespaced(client.clone(), &namespace).get(name).await?;
        assert!(controlled_by(&service.metadata, &pool), "Service {name} is not owned by the pool");
    }
    let headless = Api::<Service>::namespaced(client.clone(), &namespace).get("agents-headless").await?;
    assert_eq!(headless.spec.and_then(|spec| spec.cluster_ip).as_deref(), Some("None"));
    let budget = Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace).get("agents").await?;
    assert!(controlled_by(&budget.metadata, &pool));
    let config = Api::<ConfigMap>::namespaced(client.clone(), &namespace).get("agents-config").await?;
    assert!(controlled_by(&config.metadata, &pool));
    assert_eq!(config.data.unwrap_or_default().get("FLOE_VIRTUAL_CLUSTER").cloned(), Some(format!("{namespace}.demo")));
    let account = Api::<ServiceAccount>::namespaced(client.clone(), &namespace).get("agents-agent").await?;
    assert!(controlled_by(&account.metadata, &pool));
    let policy =
        Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::namespaced(client.clone(), &namespace).get("agents-agents").await?;
    assert!(controlled_by(&policy.metadata, &pool), "the NetworkPolicy is not owned by the pool");
    let ingress = policy.spec.and_then(|spec| spec.ingress).unwrap_or_default();
    assert_eq!(ingress.len(), 2, "only the Kafka and HTTP ports are open: {ingress:?}");
    let pool_status = pool.status.unwrap_or_default();
    assert_eq!((pool_status.replicas, pool_status.ready_replicas, pool_status.desired_replicas), (3, 3, Some(3)));
    assert!(pool_status.selector.is_some_and(|selector| selector.contains("app.kubernetes.io/instance=agents")));

    process.kill_hard()?;
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// Reconciles in this process, so the writes are counted exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reconciles_of_an_unchanged_pool_write_nothing() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "idle").await?;
    let mut process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    create(&pools, agent_pool("agents", "demo", 3)).await?;
    wait_cluster_ready(&clusters, "demo").await.with_context(|| process.log_tail())?;
    wait_pool_available(&client, &namespace, "agents", 3).await.with_context(|| process.log_tail())?;
    process.kill_hard()?;

    let versions = |client: Client, namespace: String| async move {
        let mut versions = BTreeMap::new();
        let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("agents").await?;
        versions.insert("deployment".to_string(), deployment.resource_version().unwrap_or_default());
        for name in ["agents", "agents-headless"] {
            versions.insert(
                format!("service/{name}"),
                Api::<Service>::namespaced(client.clone(), &namespace).get(name).await?.resource_version().unwrap_or_default(),
            );
        }
        versions.insert(
            "configmap".to_string(),
            Api::<ConfigMap>::namespaced(client.clone(), &namespace).get("agents-config").await?.resource_version().unwrap_or_default(),
        );
        versions.insert(
            "pdb".to_string(),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace).get("agents").await?.resource_version().unwrap_or_default(),
        );
        versions.insert(
            "serviceaccount".to_string(),
            Api::<ServiceAccount>::namespaced(client.clone(), &namespace).get("agents-agent").await?.resource_version().unwrap_or_default(),
        );
        versions.insert(
            "pool".to_string(),
            Api::<AgentPool>::namespaced(client.clone(), &namespace).get("agents").await?.resource_version().unwrap_or_default(),
        );
        versions.insert(
            "cluster".to_string(),
            Api::<VirtualCluster>::namespaced(client.clone(), &namespace).get("demo").await?.resource_version().unwrap_or_default(),
        );
        Ok::<_, anyhow::Error>(versions)
    };
    let before = versions(client.clone(), namespace.clone()).await?;
    let metrics = Arc::new(Metrics::new());
    let context = Arc::new(OperatorContext::new(
        client.clone(),
        Arc::clone(&metrics),
        BuildSettings { default_image: "registry.invalid/floe:test".to_string(), bandwidth_metric: false },
        "test",
    ));
    for _ in 0..100 {
        let pool = pools.get("agents").await?;
        floe_operator::agent_pool::reconcile(Arc::new(pool), Arc::clone(&context)).await?;
        let cluster = clusters.get("demo").await?;
        floe_operator::virtual_cluster::reconcile(Arc::new(cluster), Arc::clone(&context)).await?;
    }
    assert_eq!(metrics.kubernetes_writes(), 0, "writes: {}", metrics.render());
    let external = metrics.render();
    assert!(
        !external.contains("floe_operator_external_writes_total{target=\"etcd-registration\"}"),
        "the registration was rewritten: {external}"
    );
    let after = versions(client.clone(), namespace.clone()).await?;
    assert_eq!(before, after, "resource versions moved");
    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("agents").await?;
    assert_eq!(deployment.metadata.generation, Some(1));
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// A field the operator stops setting is removed from the child (server-side apply drops fields
/// its manager no longer sends), while an unchanged desired object is still not written again.
/// Before the applied fingerprint, `apply_if_changed` saw the live object "contain" the smaller
/// desired one and skipped the apply, so the dropped field stayed forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_the_operator_stops_setting_is_removed_from_the_child() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "removal").await?;
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let metrics = Metrics::new();
    let config = |data: Value| -> Result<ConfigMap> {
        Ok(serde_json::from_value(json!({"metadata": {"name": "agents-config", "namespace": namespace}, "data": data}))?)
    };
    let apply = |desired: ConfigMap| {
        let maps = maps.clone();
        let metrics = &metrics;
        async move { floe_operator::apply::apply_if_changed(&maps, &desired, metrics).await }
    };
    apply(config(json!({"FLOE_FLUSH_INTERVAL": "250ms", "FLOE_OLD_SETTING": "on"}))?).await?;
    let written = apply(config(json!({"FLOE_FLUSH_INTERVAL": "250ms"}))?).await?;
    assert_eq!(written, floe_operator::apply::Applied::Written, "a smaller desired object must be applied");
    let live = maps.get("agents-config").await?.data.unwrap_or_default();
    assert_eq!(live.keys().collect::<Vec<_>>(), ["FLOE_FLUSH_INTERVAL"], "the dropped key must be gone: {live:?}");
    // The same desired object again: nothing to write.
    let again = apply(config(json!({"FLOE_FLUSH_INTERVAL": "250ms"}))?).await?;
    assert_eq!(again, floe_operator::apply::Applied::Unchanged);
    // A hand edit of a field we own is still put back.
    maps.patch("agents-config", &PatchParams::default(), &Patch::Merge(json!({"data": {"FLOE_FLUSH_INTERVAL": "1s"}}))).await?;
    assert_eq!(apply(config(json!({"FLOE_FLUSH_INTERVAL": "250ms"}))?).await?, floe_operator::apply::Applied::Written);
    assert_eq!(maps.get("agents-config").await?.data.unwrap_or_default()["FLOE_FLUSH_INTERVAL"], "250ms");
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// What agents report about the bucket shows on their VirtualCluster (`AgentsHealthy`), with the
/// agent's pod and cause and a Warning event, without touching `Ready`. The agents here are KWOK's,
/// so the test writes the registry record a real agent publishes (e2e/tests/cluster.rs proves a
/// real agent publishes it when its PUTs fail, and clears it when they succeed again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_problem_agents_report_shows_on_their_virtual_cluster() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "agent-health").await?;
    let process = plane.start_operator_with(&namespace, &["--health-check-interval", "2s"])?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    wait_cluster_ready(&clusters, "demo").await.with_context(|| process.log_tail())?;
    let agents_healthy = |cluster: &VirtualCluster| {
        cluster.status.iter().flat_map(|status| &status.conditions).find(|condition| condition.type_ == "AgentsHealthy").cloned()
    };
    let key = format!("/floe/vc/{namespace}.demo/agents/1");
    let mut record = json!({
        "node_id": 1, "host": "10.42.0.7", "port": 9092, "zone": null, "roles": ["produce", "fetch"],
        "pod": "agents-7c9f8d6b5-x2k4q", "pool": "agents",
        "bucket_problem": "put failed: Connection refused (os error 111)",
    });
    plane.infrastructure.etcdctl(&["put", &key, &record.to_string()])?;
    let failing = wait_for("AgentsHealthy=False", READY_TIMEOUT, || async {
        let cluster = clusters.get("demo").await?;
        Ok(agents_healthy(&cluster).filter(|condition| condition.status == "False"))
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(failing.reason, "AgentsCannotUseBucket");
    assert_eq!(
        failing.message,
        "1 of 1 agents cannot use the bucket; agents-7c9f8d6b5-x2k4q: put failed: Connection refused (os error 111)"
    );
    let cluster = clusters.get("demo").await?;
    let ready = cluster.status.iter().flat_map(|status| &status.conditions).find(|condition| condition.type_ == "Ready");
    assert_eq!(ready.map(|condition| condition.status.as_str()), Some("True"), "an agent's report must not hold the pools");
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    wait_for("an AgentsCannotUseBucket Warning", READY_TIMEOUT, || async {
        let found = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .any(|event| event.reason.as_deref() == Some("AgentsCannotUseBucket") && event.type_.as_deref() == Some("Warning"));
        Ok(found.then_some(()))
    })
    .await?;
    // The agent's next report after a successful operation clears it.
    record["bucket_problem"] = Value::Null;
    plane.infrastructure.etcdctl(&["put", &key, &record.to_string()])?;
    let healthy = wait_for("AgentsHealthy=True", READY_TIMEOUT, || async {
        let cluster = clusters.get("demo").await?;
        Ok(agents_healthy(&cluster).filter(|condition| condition.status == "True"))
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(healthy.message, "1 agent running; none reports a problem with the bucket");
    plane.infrastructure.etcdctl(&["del", &key])?;
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

struct Invalid {
    what: &'static str,
    object: Value,
    /// A fragment the apiserver's message must contain: the field it names.
    field: &'static str,
}

fn invalid_fixtures(plane: &ControlPlane) -> Vec<Invalid> {
    let cluster = |patch: &dyn Fn(&mut Value)| {
        let mut value = virtual_cluster(plane, "validation", "bad", "Retain");
        patch(&mut value);
        value
    };
    let pool = |patch: &dyn Fn(&mut Value)| {
        let mut value = agent_pool("bad", "demo", 3);
        patch(&mut value);
        value
    };
    vec![
        Invalid {
            what: "etcd credentials without TLS to etcd",
            object: cluster(&|v| v["spec"]["etcd"]["credentialsSecretRef"] = json!({"name": "etcd-auth"})),
            field: "etcd credentials are sent only over TLS",
        },
        Invalid {
            what: "mtls without a TLS Secret",
            object: cluster(&|v| v["spec"]["listener"] = json!({"authentication": {"type": "mtls"}})),
            field: "mtls authentication needs tlsSecretRef",
        },
        Invalid {
            what: "a bootstrap user without SASL",
            object: cluster(&|v| {
                v["spec"]["listener"] =
                    json!({"authentication": {"type": "none", "bootstrapUser": {"name": "admin", "passwordSecretRef": {"name": "pw"}}}})
            }),
            field: "bootstrapUser is for SASL authentication",
        },
        Invalid {
            what: "a super user that is not a principal",
            object: cluster(&|v| v["spec"]["listener"] = json!({"authorization": {"type": "acls", "superUsers": ["admin"]}})),
            field: "each super user is a principal such as User:admin",
        },
        Invalid {
            what: "super users without ACLs",
            object: cluster(&|v| v["spec"]["listener"] = json!({"authorization": {"type": "none", "superUsers": ["User:admin"]}})),
            field: "superUsers is for type: acls",
        },
        Invalid {
            what: "an unknown authentication type",
            object: cluster(&|v| v["spec"]["listener"] = json!({"authentication": {"type": "kerberos"}})),
            field: "spec.listener.authentication.type",
        },
        Invalid { what: "negative replicas", object: pool(&|v| v["spec"]["replicas"] = json!(-1)), field: "spec.replicas" },
        Invalid { what: "too many replicas", object: pool(&|v| v["spec"]["replicas"] = json!(100000)), field: "spec.replicas" },
        Invalid { what: "replicas as text", object: pool(&|v| v["spec"]["replicas"] = json!("three")), field: "spec.replicas" },
        Invalid {
            what: "min above max",
            object: pool(&|v| v["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 5, "maxReplicas": 3})),
            field: "spec.autoscaling",
        },
        Invalid {
            what: "zero min replicas",
            object: pool(&|v| v["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 0})),
            field: "spec.autoscaling.minReplicas",
        },
        Invalid {
            what: "bad bandwidth",
            object: pool(&|v| v["spec"]["autoscaling"] = json!({"targetBandwidthPerAgent": "fast"})),
            field: "spec.autoscaling.targetBandwidthPerAgent",
        },
        Invalid {
            what: "bad stabilization",
            object: pool(&|v| v["spec"]["autoscaling"] = json!({"scaleDownStabilization": "5 minutes"})),
            field: "spec.autoscaling.scaleDownStabilization",
        },
        Invalid {
            what: "cpu target zero",
            object: pool(&|v| v["spec"]["autoscaling"] = json!({"targetCPUUtilizationPercentage": 0})),
            field: "spec.autoscaling.targetCPUUtilizationPercentage",
        },
        Invalid {
            what: "bad flush interval",
            object: pool(&|v| v["spec"]["flush"] = json!({"interval": "soon"})),
            field: "spec.flush.interval",
        },
        Invalid {
            what: "bad flush size",
            object: pool(&|v| v["spec"]["flush"] = json!({"maxBytes": "8MB!"})),
            field: "spec.flush.maxBytes",
        },
        Invalid {
            what: "bad disk cache size",
            object: pool(&|v| v["spec"]["diskCache"] = json!({"size": "ten gigs"})),
            field: "spec.diskCache.size",
        },
        Invalid {
            what: "port out of range",
            object: pool(&|v| v["spec"]["listener"] = json!({"port": 70000})),
            field: "spec.listener.port",
        },
        Invalid {
            what: "unknown service type",
            object: pool(&|v| v["spec"]["listener"] = json!({"serviceType": "Ingress"})),
            field: "spec.listener.serviceType",
        },
        Invalid { what: "unknown role", object: pool(&|v| v["spec"]["roles"] = json!(["produce", "admin"])), field: "spec.roles" },
        Invalid {
            what: "short grace period",
            object: pool(&|v| v["spec"]["terminationGracePeriodSeconds"] = json!(5)),
            field: "spec.terminationGracePeriodSeconds",
        },
        Invalid {
            what: "missing virtualClusterRef",
            object: pool(&|v| {
                v["spec"].as_object_mut().unwrap().remove("virtualClusterRef");
            }),
            field: "spec.virtualClusterRef",
        },
        Invalid {
            what: "bad virtualClusterRef name",
            object: pool(&|v| v["spec"]["virtualClusterRef"]["name"] = json!("Not_A_Name")),
            field: "spec.virtualClusterRef.name",
        },
        Invalid { what: "unknown pool field", object: pool(&|v| v["spec"]["replica"] = json!(3)), field: "spec.replica" },
        Invalid {
            what: "unknown nested pool field",
            object: pool(&|v| v["spec"]["flush"] = json!({"intervall": "1s"})),
            field: "spec.flush.intervall",
        },
        Invalid {
            what: "bad pull policy",
            object: pool(&|v| v["spec"]["imagePullPolicy"] = json!("Sometimes")),
            field: "spec.imagePullPolicy",
        },
        Invalid {
            what: "cpu request not a quantity",
            object: pool(&|v| v["spec"]["resources"] = json!({"requests": {"cpu": "lots"}})),
            field: "spec.resources.requests[cpu]",
        },
        Invalid {
            what: "memory limit not a quantity",
            object: pool(&|v| v["spec"]["resources"] = json!({"limits": {"memory": "2 GB"}})),
            field: "spec.resources.limits[memory]",
        },
        Invalid {
            what: "bucket URL scheme",
            object: cluster(&|v| v["spec"]["objectStore"]["url"] = json!("gs://bucket/x")),
            field: "spec.objectStore.url",
        },
        Invalid {
            what: "bucket URL without bucket",
            object: cluster(&|v| v["spec"]["objectStore"]["url"] = json!("s3://")),
            field: "spec.objectStore.url",
        },
        Invalid {
            what: "endpoint not a URL",
            object: cluster(&|v| v["spec"]["objectStore"]["endpoint"] = json!("minio:9000")),
            field: "spec.objectStore.endpoint",
        },
        Invalid {
            what: "endpoint ftp scheme",
            object: cluster(&|v| v["spec"]["objectStore"]["endpoint"] = json!("ftp://minio:9000")),
            field: "spec.objectStore.endpoint",
        },
        Invalid {
            what: "etcd endpoint without port",
            object: cluster(&|v| v["spec"]["etcd"]["endpoints"] = json!(["etcd.svc"])),
            field: "spec.etcd.endpoints[0]",
        },
        Invalid {
            what: "no etcd endpoints",
            object: cluster(&|v| v["spec"]["etcd"]["endpoints"] = json!([])),
            field: "spec.etcd.endpoints",
        },
        Invalid {
            what: "relative etcd prefix",
            object: cluster(&|v| v["spec"]["etcd"]["prefix"] = json!("floe")),
            field: "spec.etcd.prefix",
        },
        Invalid {
            what: "unknown deletion policy",
            object: cluster(&|v| v["spec"]["deletionPolicy"] = json!("Archive")),
            field: "spec.deletionPolicy",
        },
        Invalid {
            what: "zero default partitions",
            object: cluster(&|v| v["spec"]["topicDefaults"] = json!({"partitions": 0})),
            field: "spec.topicDefaults.partitions",
        },
        Invalid {
            what: "unknown cluster field",
            object: cluster(&|v| v["spec"]["objectStore"]["bucket"] = json!("x")),
            field: "spec.objectStore.bucket",
        },
        Invalid {
            what: "missing object store",
            object: cluster(&|v| {
                v["spec"].as_object_mut().unwrap().remove("objectStore");
            }),
            field: "spec.objectStore",
        },
    ]
}

async fn dry_run_create(client: &Client, namespace: &str, object: &Value) -> Result<(), String> {
    let strict = PatchParams { dry_run: true, field_validation: Some(ValidationDirective::Strict), ..PatchParams::apply("e2e") };
    let name = object["metadata"]["name"].as_str().unwrap_or("bad").to_string();
    let result = match object["kind"].as_str() {
        Some("AgentPool") => {
            Api::<AgentPool>::namespaced(client.clone(), namespace).patch(&name, &strict, &Patch::Apply(object)).await.map(|_| ())
        }
        _ => Api::<VirtualCluster>::namespaced(client.clone(), namespace).patch(&name, &strict, &Patch::Apply(object)).await.map(|_| ()),
    };
    result.map_err(|error| error.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apiserver_rejects_invalid_resources_with_a_message_naming_the_field() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "validation").await?;
    let fixtures = invalid_fixtures(plane);
    assert!(fixtures.len() >= 20);
    let mut failures = Vec::new();
    for fixture in &fixtures {
        match dry_run_create(&client, &namespace, &fixture.object).await {
            Ok(()) => failures.push(format!("{}: accepted", fixture.what)),
            Err(message) if !message.contains(fixture.field) => {
                failures.push(format!("{}: message does not name {}: {message}", fixture.what, fixture.field))
            }
            // The apiserver's message for a schema `pattern` prints the expression; ours give examples.
            Err(message) if message.contains("should match '") => {
                failures.push(format!("{}: message shows a regular expression instead of examples: {message}", fixture.what))
            }
            Err(_) => {}
        }
    }
    // Valid fixtures, including the chart's examples' shapes, are accepted.
    let mut valid_pool = agent_pool("good", "demo", 0);
    valid_pool["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 3, "maxReplicas": 12, "targetCPUUtilizationPercentage": 70, "targetBandwidthPerAgent": "50Mi", "scaleDownStabilization": "300s"});
    valid_pool["spec"]["flush"] = json!({"interval": "250ms", "maxBytes": "8Mi"});
    valid_pool["spec"]["resources"] = json!({"requests": {"cpu": "1", "memory": "2Gi"}});
    for (what, object) in [
        ("minimal pool", agent_pool("good", "demo", 3)),
        ("full pool", valid_pool),
        ("cluster", virtual_cluster(plane, &namespace, "good", "Delete")),
    ] {
        if let Err(message) = dry_run_create(&client, &namespace, &object).await {
            failures.push(format!("valid {what} rejected: {message}"));
        }
    }
    for example in ["virtualcluster.yaml", "agentpool.yaml"] {
        let path = floe_e2e::repository_root().join("charts/floe/examples").join(example);
        let mut object: Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
        object["metadata"]["namespace"] = json!(namespace);
        if let Err(message) = dry_run_create(&client, &namespace, &object).await {
            failures.push(format!("chart example {example} rejected: {message}"));
        }
    }
    // virtualClusterRef cannot change once set.
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("pinned", "demo", 0)).await?;
    let moved =
        pools.patch("pinned", &PatchParams::default(), &Patch::Merge(json!({"spec": {"virtualClusterRef": {"name": "other"}}}))).await;
    match moved {
        Ok(_) => failures.push("changed virtualClusterRef: accepted".to_string()),
        Err(error) if !error.to_string().contains("virtualClusterRef is immutable") => {
            failures.push(format!("changed virtualClusterRef: {error}"))
        }
        Err(_) => {}
    }
    assert!(failures.is_empty(), "{} of {} checks failed:\n{}", failures.len(), fixtures.len() + 6, failures.join("\n"));
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

const GONE_CLUSTER_ID: &str = "e2eGoneCluster";

/// A journal as agents write it: the cluster id, a topic, and one commit naming a top-level segment.
fn gone_journal() -> Vec<JournalEntry> {
    let topic_id = serde_json::from_value(json!("6f1c2a9e-7b3d-4c5e-8f90-0a1b2c3d4e5f")).expect("a topic id");
    vec![
        JournalEntry::new(JournalRecord::InitCluster { cluster_id: GONE_CLUSTER_ID.to_string() }),
        JournalEntry::new(JournalRecord::CreateTopic { name: "orders".into(), topic_id, partitions: 1, configs: BTreeMap::new() }),
        JournalEntry::new(JournalRecord::CommitSegment {
            object: "segments/01TEST.seg".into(),
            chunks: vec![ChunkCommit {
                topic: "orders".into(),
                topic_id,
                partition: 0,
                record_count: 1,
                byte_start: 0,
                byte_len: 13,
                max_timestamp: 0,
                batches: Vec::new(),
            }],
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pool_removes_its_children_and_the_deletion_policy_decides_the_etcd_prefix() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "deletion").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "kept", "Retain")).await?;
    create(&clusters, virtual_cluster(plane, &namespace, "gone", "Delete")).await?;
    create(&pools, agent_pool("agents", "gone", 2)).await?;
    wait_cluster_ready(&clusters, "kept").await.with_context(|| process.log_tail())?;
    wait_cluster_ready(&clusters, "gone").await.with_context(|| process.log_tail())?;
    wait_pool_available(&client, &namespace, "agents", 2).await.with_context(|| process.log_tail())?;
    // Something for Delete to remove besides the registration: a journal naming a top-level
    // (pre-`clusters/`) segment, and objects under the journal's cluster id. The agents here are
    // KWOK's, so the test writes what real agents would.
    for record in gone_journal() {
        let key = format!("/floe/vc/{namespace}.gone/log/{}", record.id);
        plane.infrastructure.etcdctl(&["put", &key, &serde_json::to_string(&record)?])?;
    }
    let write = |name: &str, object: &str| -> Result<()> {
        let path = plane.infrastructure.bucket_directory(&format!("{namespace}-{name}")).join(object);
        std::fs::create_dir_all(path.parent().expect("objects have a folder"))?;
        Ok(std::fs::write(path, b"segment bytes")?)
    };
    write("gone", "segments/01TEST.seg")?;
    write("gone", &format!("clusters/{GONE_CLUSTER_ID}/segments/01NEW.seg"))?;
    // Not named by gone's journal: in a bucket shared by mistake it could be another cluster's.
    write("gone", "segments/01UNNAMED.seg")?;
    write("kept", "segments/01TEST.seg")?;
    let kept_prefix = format!("/floe/vc/{namespace}.kept/");
    let gone_prefix = format!("/floe/vc/{namespace}.gone/");
    assert!(plane.infrastructure.etcd_key_count(&kept_prefix)? >= 1);
    assert!(plane.infrastructure.etcd_key_count(&gone_prefix)? >= 2);

    // The pool's children go with it (the real garbage collector follows the owner references).
    pools.delete("agents", &DeleteParams::foreground()).await?;
    wait_for("the pool's children to be deleted", READY_TIMEOUT, || async {
        let selector = ListParams::default().labels("floe.dev/pool=agents");
        let left = Api::<Deployment>::namespaced(client.clone(), &namespace).list(&selector).await?.items.len()
            + Api::<Service>::namespaced(client.clone(), &namespace).list(&selector).await?.items.len()
            + Api::<ConfigMap>::namespaced(client.clone(), &namespace).list(&selector).await?.items.len()
            + Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace).list(&selector).await?.items.len()
            + Api::<ServiceAccount>::namespaced(client.clone(), &namespace).list(&selector).await?.items.len();
        if left == 0 {
            Ok(Some(()))
        } else {
            bail!("{left} children left")
        }
    })
    .await?;

    clusters.delete("gone", &DeleteParams::default()).await?;
    clusters.delete("kept", &DeleteParams::default()).await?;
    wait_for("both VirtualClusters to be gone", READY_TIMEOUT, || async {
        let left = clusters.list(&ListParams::default()).await?.items.len();
        if left == 0 {
            Ok(Some(()))
        } else {
            bail!("{left} VirtualClusters left")
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(plane.infrastructure.etcd_key_count(&gone_prefix)?, 0, "deletionPolicy Delete left keys");
    assert!(plane.infrastructure.etcd_key_count(&kept_prefix)? >= 1, "deletionPolicy Retain removed the registration");
    let object = |name: &str, object: &str| plane.infrastructure.bucket_directory(&format!("{namespace}-{name}")).join(object);
    assert!(!object("gone", "segments/01TEST.seg").exists(), "deletionPolicy Delete left an object its journal names");
    assert!(
        !object("gone", &format!("clusters/{GONE_CLUSTER_ID}/segments/01NEW.seg")).exists(),
        "deletionPolicy Delete left an object under its cluster id"
    );
    assert!(object("gone", "segments/01UNNAMED.seg").exists(), "deletionPolicy Delete removed an object its journal does not name");
    assert!(object("kept", "segments/01TEST.seg").exists(), "deletionPolicy Retain removed the objects");
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_repeatedly_while_reconciling_ten_pools_converges_with_nothing_orphaned() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "chaos").await?;
    let mut process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    let metrics_before = Api::<Deployment>::namespaced(client.clone(), &namespace).list(&ListParams::default()).await?.items.len();
    assert_eq!(metrics_before, 0);
    let mut kills = 0;
    for index in 0..10 {
        create(&pools, agent_pool(&format!("pool-{index}"), "demo", 1 + index % 3)).await?;
        // Kill the operator once it has started on this pool: as soon as its Deployment exists
        // (so some children exist and others not yet), then start it again.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        let name = format!("pool-{index}");
        wait_for(&format!("the operator to start on {name}"), READY_TIMEOUT, || async {
            Ok(deployments.get_opt(&name).await?.map(|_| ()))
        })
        .await
        .with_context(|| process.log_tail())?;
        process.kill_hard()?;
        kills += 1;
        // Change a pool while no operator runs.
        if index % 2 == 1 {
            pools.patch(&format!("pool-{}", index - 1), &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
        }
        process.restart()?;
    }
    // And kill it while all ten are converging.
    let ready_pools = |pools: Api<AgentPool>| async move {
        let listed = pools.list(&ListParams::default()).await?;
        Ok::<_, anyhow::Error>(
            listed
                .items
                .iter()
                .filter(|pool| condition_status(pool.status.as_ref().map(|status| &status.conditions), "Ready").as_deref() == Some("True"))
                .count(),
        )
    };
    for _ in 0..3 {
        // Kill only after the restarted operator made progress (one more pool Ready, or all).
        let before = ready_pools(pools.clone()).await?;
        wait_for("the restarted operator to make progress", READY_TIMEOUT, || async {
            let now = ready_pools(pools.clone()).await?;
            Ok((now > before || now == 10).then_some(()))
        })
        .await
        .with_context(|| process.log_tail())?;
        process.kill_hard()?;
        process.restart()?;
        kills += 1;
    }
    for index in 0..10 {
        let pool = pools.get(&format!("pool-{index}")).await?;
        wait_pool_available(&client, &namespace, &pool.name_any(), pool.spec.replicas).await.with_context(|| process.log_tail())?;
    }
    // Nothing orphaned: every object carrying the operator's labels has a live controlling pool,
    // and each pool has exactly its own children.
    let live: BTreeMap<String, String> = pools
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|pool| (pool.metadata.uid.clone().unwrap_or_default(), pool.name_any()))
        .collect();
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=floe-operator");
    let mut metas: Vec<(String, kube::api::ObjectMeta)> = Vec::new();
    metas.extend(
        Api::<Deployment>::namespaced(client.clone(), &namespace)
            .list(&managed)
            .await?
            .items
            .into_iter()
            .map(|object| ("Deployment".to_string(), object.metadata)),
    );
    metas.extend(
        Api::<Service>::namespaced(client.clone(), &namespace)
            .list(&managed)
            .await?
            .items
            .into_iter()
            .map(|object| ("Service".to_string(), object.metadata)),
    );
    metas.extend(
        Api::<ConfigMap>::namespaced(client.clone(), &namespace)
            .list(&managed)
            .await?
            .items
            .into_iter()
            .map(|object| ("ConfigMap".to_string(), object.metadata)),
    );
    metas.extend(
        Api::<PodDisruptionBudget>::namespaced(client.clone(), &namespace)
            .list(&managed)
            .await?
            .items
            .into_iter()
            .map(|object| ("PodDisruptionBudget".to_string(), object.metadata)),
    );
    metas.extend(
        Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
            .list(&managed)
            .await?
            .items
            .into_iter()
            .map(|object| ("ServiceAccount".to_string(), object.metadata)),
    );
    assert_eq!(
        metas.len(),
        10 * 6,
        "expected 6 children per pool: {:?}",
        metas.iter().map(|(kind, meta)| format!("{kind}/{}", meta.name.clone().unwrap_or_default())).collect::<Vec<_>>()
    );
    for (kind, meta) in &metas {
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|reference| reference.controller == Some(true))
            .map(|reference| reference.uid.clone());
        assert!(owner.as_ref().is_some_and(|uid| live.contains_key(uid)), "{kind}/{:?} has no live controlling pool", meta.name);
    }
    eprintln!("converged after {kills} kills");
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_service_account_holds_no_wildcard_permission() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), RELEASE_NAMESPACE);
    let operator = deployments.list(&ListParams::default().labels("app.kubernetes.io/instance=floe")).await?;
    let account = operator
        .items
        .iter()
        .find_map(|deployment| deployment.spec.as_ref()?.template.spec.as_ref()?.service_account_name.clone())
        .context("the operator Deployment names no ServiceAccount")?;
    let subject = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{account}");
    let mut checked = 0;
    for namespace in [RELEASE_NAMESPACE, "default"] {
        let listing = plane.kubectl(&["auth", "can-i", "--list", "--as", &subject, "--namespace", namespace])?;
        for line in listing.lines().skip(1) {
            // Columns: Resources, Non-Resource URLs, Resource Names, Verbs. Discovery URLs such as
            // [/api/*] come from the built-in system:discovery role every identity has.
            let columns: Vec<&str> = line.split_whitespace().collect();
            let Some(resource) = columns.first() else { continue };
            let verbs = line.rsplit_once('[').map(|(_, verbs)| verbs).unwrap_or_default();
            if resource.starts_with('[') {
                continue;
            }
            assert!(!resource.contains('*'), "wildcard resource for {subject}: {line}");
            assert!(!verbs.contains('*'), "wildcard verb for {subject}: {line}");
            checked += 1;
        }
        assert!(listing.contains("agentpools.floe.dev"), "the operator cannot reach its own resources:\n{listing}");
        assert!(listing.contains("deployments.apps"), "the operator cannot manage Deployments:\n{listing}");
    }
    assert!(checked > 10, "only {checked} rules listed");
    // And it really can do its job, and not more.
    let can = |arguments: &[&str]| {
        plane.kubectl(&[&["auth", "can-i", "--as", &subject][..], arguments].concat()).map(|out| out.trim() == "yes").unwrap_or(false)
    };
    assert!(can(&["patch", "deployments.apps", "--all-namespaces"]));
    assert!(can(&["update", "agentpools.floe.dev/status", "--all-namespaces"]));
    assert!(!can(&["delete", "nodes"]));
    assert!(!can(&["create", "clusterrolebindings"]));
    assert!(!can(&["list", "secrets", "--all-namespaces"]), "the operator only needs to get named Secrets");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_created_before_its_virtual_cluster_waits_with_a_warning_then_becomes_ready() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "order").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("early", "later", 1)).await?;
    let waiting = wait_for("the pool to report its missing VirtualCluster", READY_TIMEOUT, || async {
        let pool = pools.get("early").await?;
        let condition =
            pool.status.as_ref().and_then(|status| status.conditions.iter().find(|condition| condition.type_ == "Ready").cloned());
        Ok(condition.filter(|condition| condition.reason == "VirtualClusterNotFound"))
    })
    .await
    .with_context(|| process.log_tail())?;
    assert!(waiting.message.contains("spec.virtualClusterRef.name"), "{}", waiting.message);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    wait_for("a Warning event on the pool", READY_TIMEOUT, || async {
        let found = events.list(&ListParams::default()).await?.items.into_iter().any(|event| {
            event.reason.as_deref() == Some("VirtualClusterNotFound")
                && event.type_.as_deref() == Some("Warning")
                && event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some("early")
        });
        Ok(found.then_some(()))
    })
    .await?;
    assert!(
        Api::<Deployment>::namespaced(client.clone(), &namespace).get_opt("early").await?.is_none(),
        "agents started without a virtual cluster"
    );
    // Creating the VirtualCluster wakes the pool through the watch.
    create(&clusters, virtual_cluster(plane, &namespace, "later", "Retain")).await?;
    wait_pool_available(&client, &namespace, "early", 1).await.with_context(|| process.log_tail())?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operator_replicas_elect_one_leader_and_the_standby_takes_over_when_it_stops() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "leader").await?;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), &namespace);
    let flags = |identity: &'static str| ["--leader-election", "true", "--leader-election-namespace", "leader", "--identity", identity];
    let mut first = plane.start_operator_with(&namespace, &flags("first"))?;
    let holder = |leases: Api<k8s_openapi::api::coordination::v1::Lease>| async move {
        Ok::<_, anyhow::Error>(leases.get_opt("floe-operator").await?.and_then(|lease| lease.spec?.holder_identity))
    };
    wait_for("the first replica to lead", READY_TIMEOUT, || async { Ok(holder(leases.clone()).await?.filter(|holder| holder == "first")) })
        .await
        .with_context(|| first.log_tail())?;
    let second = plane.start_operator_with(&namespace, &flags("second"))?;
    s3_secret(&client, &namespace).await?;
    create(&Api::<VirtualCluster>::namespaced(client.clone(), &namespace), virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    create(&Api::<AgentPool>::namespaced(client.clone(), &namespace), agent_pool("agents", "demo", 1)).await?;
    wait_pool_available(&client, &namespace, "agents", 1).await.with_context(|| first.log_tail())?;
    assert_eq!(holder(leases.clone()).await?.as_deref(), Some("first"), "the standby took the lease from a live leader");
    assert!(second.log_tail().contains("standing by"), "second replica log:\n{}", second.log_tail());
    // A graceful stop releases the lease; the standby leads and reconciles a new pool.
    first.terminate()?;
    wait_for("the standby to lead", READY_TIMEOUT, || async { Ok(holder(leases.clone()).await?.filter(|holder| holder == "second")) })
        .await
        .with_context(|| second.log_tail())?;
    create(&Api::<AgentPool>::namespaced(client.clone(), &namespace), agent_pool("more", "demo", 1)).await?;
    wait_pool_available(&client, &namespace, "more", 1).await.with_context(|| second.log_tail())?;
    drop(second);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_autoscaling_on_the_hpa_owns_replicas_and_switching_it_off_deletes_the_hpa() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "autoscaling").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    create(&Api::<VirtualCluster>::namespaced(client.clone(), &namespace), virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    let mut pool = agent_pool("agents", "demo", 3);
    pool["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 2, "maxReplicas": 5, "scaleDownStabilization": "30s"});
    create(&pools, pool).await?;
    let autoscalers: Api<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &namespace);
    let hpa = wait_for("the HorizontalPodAutoscaler", READY_TIMEOUT, || async { Ok(autoscalers.get_opt("agents").await?) })
        .await
        .with_context(|| process.log_tail())?;
    let spec = hpa.spec.context("HPA without spec")?;
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 5));
    assert_eq!(spec.behavior.and_then(|behavior| behavior.scale_down).and_then(|rules| rules.stabilization_window_seconds), Some(30));
    // The HPA (through the controller-manager) scales the Deployment to at least minReplicas.
    wait_pool_available(&client, &namespace, "agents", 2).await.with_context(|| process.log_tail())?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("agents").await?;
    let ours = deployment.metadata.managed_fields.iter().flatten().filter(|entry| entry.manager.as_deref() == Some("floe-operator"));
    for entry in ours {
        let fields = serde_json::to_string(&entry.fields_v1)?;
        assert!(!fields.contains("f:replicas"), "the operator owns spec.replicas while the HPA is on: {fields}");
    }
    // Off again: the autoscaler is an orphan now and goes; the operator owns replicas again.
    pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"autoscaling": {"enabled": false}}}))).await?;
    wait_for("the HorizontalPodAutoscaler to be deleted", READY_TIMEOUT, || async {
        Ok(autoscalers.get_opt("agents").await?.is_none().then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    wait_pool_available(&client, &namespace, "agents", 3).await.with_context(|| process.log_tail())?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// Finding 5 of issue 14: a VirtualCluster copied with the bucket URL unchanged is refused, the
/// older one keeps working, the copy's pool gets no agents, and deleting the original lets the
/// copy in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_cluster_sharing_an_older_ones_bucket_is_refused_with_a_message_and_an_event() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "tenants").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "original", "Retain")).await?;
    wait_cluster_ready(&clusters, "original").await.with_context(|| process.log_tail())?;
    let mut copy = virtual_cluster(plane, &namespace, "copy", "Delete");
    copy["spec"]["objectStore"]["url"] = json!(format!("s3://{BUCKET}/{namespace}-original"));
    create(&clusters, copy).await?;
    create(&pools, agent_pool("copy-agents", "copy", 1)).await?;

    let refused = wait_for("VirtualCluster copy refused", READY_TIMEOUT, || async {
        let cluster = clusters.get("copy").await?;
        let ready = cluster.status.iter().flat_map(|status| &status.conditions).find(|condition| condition.type_ == "Ready").cloned();
        match ready {
            Some(condition) if condition.status == "False" && condition.reason == "LocationConflict" => Ok(Some(condition)),
            other => bail!("Ready condition is {other:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    for part in [format!("{namespace}/original"), "spec.objectStore.url".to_string()] {
        assert!(refused.message.contains(&part), "{part} missing from: {}", refused.message);
    }
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    wait_for("a LocationConflict Warning on copy", READY_TIMEOUT, || async {
        let found = events.list(&ListParams::default()).await?.items.into_iter().any(|event| {
            event.reason.as_deref() == Some("LocationConflict")
                && event.type_.as_deref() == Some("Warning")
                && event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some("copy")
                && event.note.as_deref().is_some_and(|note| note.contains(&format!("{namespace}/original")))
        });
        if found {
            Ok(Some(()))
        } else {
            bail!("no such event yet")
        }
    })
    .await?;
    let original = clusters.get("original").await?;
    assert_eq!(condition_status(original.status.as_ref().map(|status| &status.conditions), "Ready").as_deref(), Some("True"));
    let copy_registration = plane.infrastructure.etcd_key_count(&format!("/floe/vc/{namespace}.copy/"))?;
    assert_eq!(copy_registration, 0, "a refused VirtualCluster wrote to etcd");
    wait_for("the pool of the refused cluster to say so", READY_TIMEOUT, || async {
        let pool = pools.get("copy-agents").await?;
        let refused = pool.status.iter().flat_map(|status| &status.conditions).any(|condition| condition.reason == "VirtualClusterRefused");
        if refused {
            Ok(Some(()))
        } else {
            bail!("pool status {:?}", pool.status)
        }
    })
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    assert!(deployments.get_opt("copy-agents").await?.is_none(), "a refused cluster's pool got agents");

    // The original goes (Retain: its data stays); the copy is accepted and its pool configured.
    clusters.delete("original", &DeleteParams::default()).await?;
    wait_cluster_ready(&clusters, "copy").await.with_context(|| process.log_tail())?;
    wait_for("the copy's pool to get its Deployment", READY_TIMEOUT, || async {
        Ok(deployments.get_opt("copy-agents").await?.map(|_| ()))
    })
    .await
    .with_context(|| process.log_tail())?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// Issue 16, done-when 2 (first half): a quantity that is not one is refused when the pool is
/// written, with the field and an example of a good value, instead of failing later in the
/// operator's Deployment apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_request_that_is_not_a_quantity_is_refused_with_the_field_and_an_example() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "quantity").await?;
    let mut pool = agent_pool("agents", "demo", 1);
    pool["spec"]["resources"] = json!({"requests": {"cpu": "lots", "memory": "1Gi"}});
    let message = dry_run_create(&client, &namespace, &pool).await.err().context("cpu: lots was accepted")?;
    for expected in ["spec.resources.requests[cpu]", "lots", "500m", "2Gi"] {
        assert!(message.contains(expected), "message lacks {expected:?}: {message}");
    }
    // Numbers (YAML ints) and every quantity form stay valid.
    pool["spec"]["resources"] = json!({"requests": {"cpu": 2, "memory": "1.5Gi"}, "limits": {"cpu": "2500m", "memory": "2e9"}});
    dry_run_create(&client, &namespace, &pool).await.map_err(|message| anyhow::anyhow!("valid quantities refused: {message}"))?;
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// The Reconciled condition of `pool`, if any.
fn reconciled(pool: &AgentPool) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    pool.status.as_ref()?.conditions.iter().find(|condition| condition.type_ == "Reconciled").cloned()
}

/// Issue 16, done-when 2 (second half): a change the apiserver refuses only when the operator
/// applies the Deployment (CPU request above the CPU limit: valid quantities, so the CRD schema
/// takes them) shows as Reconciled=False and a Warning event within 5 s; the Deployment keeps
/// the last applied spec and observedGeneration stays at that generation until a fix is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_the_apiserver_refuses_shows_as_a_condition_and_an_event_within_five_seconds() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "refused").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    create(&Api::<VirtualCluster>::namespaced(client.clone(), &namespace), virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    let mut pool = agent_pool("agents", "demo", 1);
    pool["spec"]["resources"] = json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1"}});
    create(&pools, pool).await?;
    wait_pool_available(&client, &namespace, "agents", 1).await.with_context(|| process.log_tail())?;
    let applied = pools.get("agents").await?;
    let applied_generation = applied.metadata.generation;
    assert_eq!(applied.status.as_ref().and_then(|status| status.observed_generation), applied_generation);
    assert_eq!(reconciled(&applied).map(|condition| condition.status).as_deref(), Some("True"));

    let broken =
        pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"resources": {"requests": {"cpu": "2"}}}}))).await?;
    let started = std::time::Instant::now();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    let condition = wait_for("Reconciled=False and a Warning event", Duration::from_secs(5), || async {
        let pool = pools.get("agents").await?;
        let Some(condition) = reconciled(&pool).filter(|condition| condition.status == "False") else {
            bail!("Reconciled is {:?}", reconciled(&pool))
        };
        let warned = events.list(&ListParams::default()).await?.items.into_iter().any(|event| {
            event.type_.as_deref() == Some("Warning")
                && event.reason.as_deref() == Some(condition.reason.as_str())
                && event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some("agents")
        });
        Ok(warned.then_some(condition))
    })
    .await
    .with_context(|| process.log_tail())?;
    println!("refused apply reported after {:?}: {} {}", started.elapsed(), condition.reason, condition.message);
    assert_eq!(condition.reason, "ChildInvalid");
    assert_eq!(condition.observed_generation, broken.metadata.generation);
    for expected in ["Deployment agents", "cpu limit", "fix the AgentPool spec"] {
        assert!(condition.message.contains(expected), "message lacks {expected:?}: {}", condition.message);
    }
    assert!(condition.message.len() < 200, "{} characters: {}", condition.message.len(), condition.message);
    let pool = pools.get("agents").await?;
    let status = pool.status.context("no status")?;
    assert_eq!(status.observed_generation, applied_generation, "observedGeneration moved to a generation that was not applied");
    let ready = status.conditions.iter().find(|condition| condition.type_ == "Ready").context("no Ready condition")?;
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ChildInvalid"));
    let deployment = Api::<Deployment>::namespaced(client.clone(), &namespace).get("agents").await?;
    let requests =
        serde_json::to_value(&deployment.spec.context("no spec")?.template.spec.context("no pod spec")?.containers[0].resources)?;
    assert_eq!(requests["requests"]["cpu"], json!("100m"), "the Deployment changed: {requests}");

    // Fixing the spec applies it: Reconciled=True, observedGeneration catches up.
    let fixed =
        pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"resources": {"limits": {"cpu": "4"}}}}))).await?;
    wait_for("the fixed generation to be applied", READY_TIMEOUT, || async {
        let pool = pools.get("agents").await?;
        let observed = pool.status.as_ref().and_then(|status| status.observed_generation);
        let applied = reconciled(&pool).is_some_and(|condition| condition.status == "True");
        Ok((applied && observed == fixed.metadata.generation).then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// The condition `kind` of `cluster`, if any.
fn cluster_condition(cluster: &VirtualCluster, kind: &str) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    cluster.status.as_ref()?.conditions.iter().find(|condition| condition.type_ == kind).cloned()
}

/// Issue 16, done-when 5 on the real dependencies: a refused S3 connection, a refused etcd
/// connection and a missing S3 Secret each show on their own dependency's condition only, in one
/// plain sentence naming the endpoint or object (no gRPC or HTTP client `Debug` dump, no random
/// probe object name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_unreachable_dependency_is_reported_on_its_own_condition_in_plain_words() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "plain").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let mut no_s3 = virtual_cluster(plane, &namespace, "no-s3", "Retain");
    no_s3["spec"]["objectStore"]["endpoint"] = json!("http://127.0.0.1:1");
    let mut no_etcd = virtual_cluster(plane, &namespace, "no-etcd", "Retain");
    no_etcd["spec"]["etcd"]["endpoints"] = json!(["127.0.0.1:2"]);
    let mut no_secret = virtual_cluster(plane, &namespace, "no-secret", "Retain");
    no_secret["spec"]["objectStore"]["credentialsSecretRef"]["name"] = json!("s3-auth-missing");
    for object in [no_s3, no_etcd, no_secret] {
        create(&clusters, object).await?;
    }
    // (cluster, the failing condition, what its message must say, the condition that must hold)
    let cases = [
        ("no-s3", "BucketReachable", "connection refused", "MetadataReachable"),
        ("no-etcd", "MetadataReachable", "connection refused", "BucketReachable"),
        ("no-secret", "BucketReachable", "s3-auth-missing", "MetadataReachable"),
    ];
    for (name, failing, says, holding) in cases {
        let (broken, fine) = wait_for(&format!("{name}: {failing}=False and {holding}=True"), READY_TIMEOUT, || async {
            let cluster = clusters.get(name).await?;
            let broken = cluster_condition(&cluster, failing).filter(|condition| condition.status == "False");
            let fine = cluster_condition(&cluster, holding).filter(|condition| condition.status == "True");
            match (broken, fine) {
                (Some(broken), Some(fine)) => Ok(Some((broken, fine))),
                _ => bail!("conditions {:?}", cluster.status.map(|status| status.conditions)),
            }
        })
        .await
        .with_context(|| process.log_tail())?;
        println!("{name}: {failing}={} {}: {}", broken.status, broken.reason, broken.message);
        assert!(broken.message.contains(says), "{name}: {failing} lacks {says:?}: {}", broken.message);
        assert!(broken.message.len() < 200, "{name}: {} characters: {}", broken.message.len(), broken.message);
        for debug in ["Error(", "{ ", "_floe/probes"] {
            assert!(!broken.message.contains(debug), "{name}: {debug:?} in {}", broken.message);
        }
        assert!(!fine.message.contains(says), "{name}: {holding} carries the other dependency's problem: {}", fine.message);
    }
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// The listener's TLS and SASL on the real apiserver: each missing Secret holds the VirtualCluster
/// with a condition naming it, and once they exist the pool's agents get them mounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_listener_secret_holds_the_virtual_cluster_and_once_created_the_agents_mount_it() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "listener").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut secured = virtual_cluster(plane, &namespace, "secured", "Retain");
    secured["spec"]["listener"] = json!({
        "tlsSecretRef": {"name": "listener-tls"},
        "authentication": {"type": "scram-sha-512", "bootstrapUser": {"name": "admin", "passwordSecretRef": {"name": "admin-password"}}},
    });
    create(&clusters, secured).await?;
    let held_by = |secret: &'static str| {
        let clusters = clusters.clone();
        async move {
            wait_for(&format!("ListenerConfigured=False naming {secret}"), READY_TIMEOUT, || async {
                let cluster = clusters.get("secured").await?;
                let listener = cluster_condition(&cluster, "ListenerConfigured").filter(|condition| condition.status == "False");
                let ready = cluster_condition(&cluster, "Ready");
                match (listener, ready) {
                    (Some(listener), Some(ready)) if listener.message.contains(secret) && ready.status == "False" => Ok(Some(listener)),
                    _ => bail!("conditions {:?}", cluster.status.map(|status| status.conditions)),
                }
            })
            .await
        }
    };
    let missing = held_by("listener-tls").await.with_context(|| process.log_tail())?;
    println!("{}: {}", missing.reason, missing.message);
    assert_eq!(missing.reason, "SecretNotFound");
    create(&secrets, json!({"metadata": {"name": "listener-tls"}, "stringData": {"tls.crt": "certificate", "tls.key": "key"}})).await?;
    let missing = held_by("admin-password").await.with_context(|| process.log_tail())?;
    assert_eq!(missing.reason, "SecretNotFound");
    create(&secrets, json!({"metadata": {"name": "admin-password"}, "stringData": {"password": "admin-secret"}})).await?;
    wait_cluster_ready(&clusters, "secured").await.with_context(|| process.log_tail())?;

    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("secured-agents", "secured", 1)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let deployment = wait_for("the pool's Deployment", READY_TIMEOUT, || async {
        deployments.get_opt("secured-agents").await?.map(Some).context("no Deployment yet")
    })
    .await
    .with_context(|| process.log_tail())?;
    let pod = deployment.spec.and_then(|spec| spec.template.spec).context("no pod template")?;
    let env: Vec<(String, Option<String>)> =
        pod.containers[0].env.clone().unwrap_or_default().into_iter().map(|variable| (variable.name, variable.value)).collect();
    for (name, value) in [
        ("FLOE_SASL_MECHANISMS", "SCRAM-SHA-512"),
        ("FLOE_TLS_CERT_FILE", "/etc/floe/listener-tls/tls.crt"),
        ("FLOE_SASL_BOOTSTRAP_PASSWORD_FILE", "/etc/floe/bootstrap-user/password"),
    ] {
        assert!(env.contains(&(name.to_string(), Some(value.to_string()))), "{name}={value} missing from {env:?}");
    }
    let volumes: Vec<Option<String>> =
        pod.volumes.unwrap_or_default().into_iter().filter_map(|volume| volume.secret.map(|secret| secret.secret_name)).collect();
    assert!(volumes.contains(&Some("listener-tls".to_string())) && volumes.contains(&Some("admin-password".to_string())), "{volumes:?}");
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// The operator's `/metrics` address, from its start-up log line.
fn operator_metrics_address(process: &kubernetes::OperatorProcess) -> Result<String> {
    let log = process.log_tail();
    let line = log.lines().find(|line| line.contains("serving /metrics")).context("no 'serving /metrics' line in the operator log")?;
    let start = line.find("127.0.0.1:").context("no loopback address in the log line")?;
    let address: String =
        line[start..].chars().take_while(|character| character.is_ascii_digit() || *character == '.' || *character == ':').collect();
    Ok(address)
}

/// The operator's `/metrics` page (the Prometheus text format), scraped once.
async fn scrape_operator_metrics(address: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    stream.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").context("no end of headers in the /metrics answer")?;
    ensure!(head.split(' ').nth(1) == Some("200"), "GET /metrics answered {}", head.lines().next().unwrap_or_default());
    Ok(body.to_string())
}

/// One sample of a scrape: its labels and its value.
type Sample = (BTreeMap<String, String>, f64);

/// One line of the Prometheus text format, `name{label="value",...} value [timestamp]`, with the
/// label values unescaped.
fn parse_sample(line: &str) -> Result<(&str, Sample)> {
    let (name, mut rest) = line.split_at(line.find(['{', ' ']).with_context(|| format!("no value in {line:?}"))?);
    let mut labels = BTreeMap::new();
    if let Some(mut inside) = rest.strip_prefix('{') {
        loop {
            inside = inside.trim_start_matches([',', ' ']);
            if let Some(after) = inside.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = inside.split_once("=\"").with_context(|| format!("unreadable labels in {line:?}"))?;
            let mut value = String::new();
            let mut characters = after.char_indices();
            let end = loop {
                match characters.next() {
                    Some((_, '\\')) => match characters.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, escaped)) => value.push(escaped),
                        None => bail!("unterminated label value in {line:?}"),
                    },
                    Some((index, '"')) => break index,
                    Some((_, character)) => value.push(character),
                    None => bail!("unterminated label value in {line:?}"),
                }
            };
            labels.insert(key.to_string(), value);
            inside = &after[end + 1..];
        }
    }
    let value = rest.split_whitespace().next().with_context(|| format!("no value in {line:?}"))?;
    Ok((name, (labels, value.parse().with_context(|| format!("value {value:?} in {line:?}"))?)))
}

/// The samples of the metric `name` in `exposition`, a whole scrape (every line must parse).
fn samples(exposition: &str, name: &str) -> Result<Vec<Sample>> {
    let mut found = Vec::new();
    for line in exposition.lines().filter(|line| !line.starts_with('#') && !line.trim().is_empty()) {
        let (sample_name, sample) = parse_sample(line)?;
        if sample_name == name {
            found.push(sample);
        }
    }
    Ok(found)
}

/// `floe_operator_reconciles_total` of the VirtualCluster controller, all outcomes.
async fn virtual_cluster_reconciles(address: &str) -> Result<f64> {
    let exposition = scrape_operator_metrics(address).await?;
    let reconciles = samples(&exposition, "floe_operator_reconciles_total")?;
    Ok(reconciles
        .iter()
        .filter(|(labels, _)| labels.get("controller").map(String::as_str) == Some("virtualcluster"))
        .map(|(_, value)| value)
        .sum())
}

/// A TCP forwarder in front of the test's S3 server that can be stopped and started again on the
/// same port: a network failure of a real S3 server, without stopping the one other tests share.
struct Forwarder {
    port: u16,
    upstream: String,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    async fn start(upstream: String) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut forwarder = Self { port, upstream, task: None };
        forwarder.resume().await?;
        Ok(forwarder)
    }

    /// Stops accepting and drops every open connection.
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    async fn resume(&mut self) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await?;
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }));
        Ok(())
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Issue 16, done-when 3: the operator re-checks a Ready VirtualCluster every 30 s (default), so
/// an S3 server that stops answering flips BucketReachable within 45 s, and back within 45 s once
/// it answers again (re-checked every 5 s after a failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_s3_server_behind_a_ready_virtual_cluster_shows_within_45_seconds_and_so_does_its_return() -> Result<()> {
    const WITHIN: Duration = Duration::from_secs(45);
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "health").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let mut forwarder = Forwarder::start(format!("127.0.0.1:{}", plane.infrastructure.s3_port)).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let mut cluster = virtual_cluster(plane, &namespace, "demo", "Retain");
    cluster["spec"]["objectStore"]["endpoint"] = json!(format!("http://127.0.0.1:{}", forwarder.port));
    create(&clusters, cluster).await?;
    wait_cluster_ready(&clusters, "demo").await.with_context(|| process.log_tail())?;
    // Becoming Ready writes status, which wakes the controller once more; stopping S3 during that
    // reconcile would show at once and prove nothing about the timer. Wait until it is idle.
    let metrics_address = operator_metrics_address(&process)?;
    let last = std::cell::Cell::new((0.0, 0));
    wait_for("the VirtualCluster controller to be idle for 2 s", READY_TIMEOUT, || async {
        let count = virtual_cluster_reconciles(&metrics_address).await?;
        let (previous, quiet_polls) = last.get();
        last.set((count, if count == previous { quiet_polls + 1 } else { 0 }));
        Ok((quiet_polls >= 8).then_some(()))
    })
    .await?;
    let bucket = |wanted: &'static str| {
        let clusters = clusters.clone();
        move || {
            let clusters = clusters.clone();
            async move {
                let cluster = clusters.get("demo").await?;
                Ok(cluster_condition(&cluster, "BucketReachable").filter(|condition| condition.status == wanted))
            }
        }
    };

    let reconciles_before = virtual_cluster_reconciles(&metrics_address).await?;
    forwarder.stop();
    let stopped = std::time::Instant::now();
    let down =
        wait_for("BucketReachable=False after the S3 server stopped", WITHIN, bucket("False")).await.with_context(|| process.log_tail())?;
    println!(
        "S3 stopped: BucketReachable=False after {:?} ({} reconciles since the stop): {}",
        stopped.elapsed(),
        virtual_cluster_reconciles(&metrics_address).await? - reconciles_before,
        down.message
    );

    forwarder.resume().await?;
    let resumed = std::time::Instant::now();
    wait_for("BucketReachable=True after the S3 server returned", WITHIN, bucket("True")).await.with_context(|| process.log_tail())?;
    println!("S3 back: BucketReachable=True after {:?}", resumed.elapsed());
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

const READY_AGENTS: &str = "floe_operator_agent_pool_ready_agents";
const MINIMUM_AGENTS: &str = "floe_operator_agent_pool_minimum_agents";
const DESIRED_AGENTS: &str = "floe_operator_agent_pool_desired_agents";

/// What the operator exports for one AgentPool; `None` where it exports no series.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PoolGauges {
    ready: Option<f64>,
    minimum: Option<f64>,
    desired: Option<f64>,
}

impl PoolGauges {
    const ABSENT: Self = Self { ready: None, minimum: None, desired: None };

    fn of(ready: f64, minimum: f64, desired: f64) -> Self {
        Self { ready: Some(ready), minimum: Some(minimum), desired: Some(desired) }
    }
}

/// The gauges of `namespace`/`pool` in a scrape. Every series of the three metrics must carry
/// exactly the labels `namespace` and `pool`, and no pool may have two.
fn pool_gauges(exposition: &str, namespace: &str, pool: &str) -> Result<PoolGauges> {
    let value = |name: &str| -> Result<Option<f64>> {
        let mut values = Vec::new();
        for (labels, value) in samples(exposition, name)? {
            ensure!(labels.keys().map(String::as_str).eq(["namespace", "pool"]), "{name} has the labels {labels:?}");
            if labels["namespace"] == namespace && labels["pool"] == pool {
                values.push(value);
            }
        }
        ensure!(values.len() <= 1, "{name} has {} series for {namespace}/{pool}", values.len());
        Ok(values.first().copied())
    };
    Ok(PoolGauges { ready: value(READY_AGENTS)?, minimum: value(MINIMUM_AGENTS)?, desired: value(DESIRED_AGENTS)? })
}

/// Waits until the operator at `address` exports `expected` for `namespace`/`pool`, and returns
/// that scrape.
async fn wait_pool_gauges(address: &str, namespace: &str, pool: &str, expected: PoolGauges) -> Result<String> {
    wait_for(&format!("the operator to export {expected:?} for AgentPool {pool}"), READY_TIMEOUT, || async {
        let exposition = scrape_operator_metrics(address).await?;
        let exported = pool_gauges(&exposition, namespace, pool)?;
        if exported == expected {
            Ok(Some(exposition))
        } else {
            bail!("exported {exported:?}")
        }
    })
    .await
}

/// The chart's FloeAgentPoolBelowMinimum alert, `min by (namespace, pool) (READY) < max by
/// (namespace, pool) (MINIMUM)`, evaluated by hand on a scrape.
struct BelowMinimumAlert {
    ready: String,
    minimum: String,
}

impl BelowMinimumAlert {
    /// The alert as `helm template` renders it with the PrometheusRule on
    /// (charts/floe/ci/monitoring-values.yaml), for the control plane's Kubernetes version.
    async fn rendered(plane: &ControlPlane, client: &Client) -> Result<Self> {
        let version = client.apiserver_version().await?.git_version;
        let chart = floe_e2e::repository_root().join("charts/floe");
        let values = chart.join("ci/monitoring-values.yaml");
        let rendering = plane.helm(&[
            "template",
            RELEASE,
            &chart.display().to_string(),
            "--namespace",
            RELEASE_NAMESPACE,
            "--kube-version",
            &version,
            "--values",
            &values.display().to_string(),
            "--show-only",
            "templates/monitoring/prometheusrule.yaml",
        ])?;
        let rule: serde_yaml::Value = serde_yaml::from_str(&rendering)?;
        let expression = rule["spec"]["groups"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|group| group["rules"].as_sequence().into_iter().flatten())
            .find(|rule| rule["alert"].as_str() == Some("FloeAgentPoolBelowMinimum"))
            .and_then(|rule| rule["expr"].as_str())
            .context("the chart's PrometheusRule has no FloeAgentPoolBelowMinimum expression")?;
        let words = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        let compared = words
            .strip_prefix("min by (namespace, pool) (")
            .and_then(|rest| rest.strip_suffix(')'))
            .and_then(|rest| rest.split_once(") < max by (namespace, pool) ("));
        let Some((ready, minimum)) = compared else {
            bail!("FloeAgentPoolBelowMinimum is no longer `min by (namespace, pool) (A) < max by (namespace, pool) (B)`: {words}")
        };
        Ok(Self { ready: ready.to_string(), minimum: minimum.to_string() })
    }

    /// The series the expression returns on `exposition`: (namespace, pool) → ready agents.
    fn evaluate(&self, exposition: &str) -> Result<BTreeMap<(String, String), f64>> {
        let by_pool = |name: &str, aggregate: fn(f64, f64) -> f64| -> Result<BTreeMap<(String, String), f64>> {
            let mut grouped = BTreeMap::new();
            for (labels, value) in samples(exposition, name)? {
                let key = (labels.get("namespace").cloned().unwrap_or_default(), labels.get("pool").cloned().unwrap_or_default());
                grouped.entry(key).and_modify(|current: &mut f64| *current = aggregate(*current, value)).or_insert(value);
            }
            Ok(grouped)
        };
        let ready = by_pool(&self.ready, f64::min)?;
        let minimum = by_pool(&self.minimum, f64::max)?;
        Ok(ready.into_iter().filter(|(pool, ready)| minimum.get(pool).is_some_and(|minimum| ready < minimum)).collect())
    }
}

/// The operator's AgentPool gauges against the real apiserver and controllers: they follow each
/// pool's ready agents down (scaled) and below the minimum (scaled up past a ResourceQuota that
/// refuses the new pods, so the chart's FloeAgentPoolBelowMinimum expression returns that pool),
/// and back up once the pods are admitted; an autoscaling pool's minimum is its minReplicas; a
/// deleted pool's series go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pool_gauges_follow_the_ready_agents_below_the_minimum_and_go_with_the_pool() -> Result<()> {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let alert = BelowMinimumAlert::rendered(plane, &client).await?;
    assert_eq!(
        (alert.ready.as_str(), alert.minimum.as_str()),
        (READY_AGENTS, MINIMUM_AGENTS),
        "FloeAgentPoolBelowMinimum compares other series than the operator's pool gauges"
    );
    let namespace = plane.namespace(&client, "pool-gauges").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    create(&Api::<VirtualCluster>::namespaced(client.clone(), &namespace), virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("fixed", "demo", 3)).await?;
    let mut scaling = agent_pool("scaling", "demo", 3);
    scaling["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 2, "maxReplicas": 4});
    create(&pools, scaling).await?;
    wait_pool_available(&client, &namespace, "fixed", 3).await.with_context(|| process.log_tail())?;
    wait_pool_available(&client, &namespace, "scaling", 2).await.with_context(|| process.log_tail())?;
    let address = operator_metrics_address(&process)?;
    wait_pool_gauges(&address, &namespace, "fixed", PoolGauges::of(3.0, 3.0, 3.0)).await.with_context(|| process.log_tail())?;
    // The autoscaler's minReplicas is the minimum, not replicas; the HPA holds it at 2.
    let scrape =
        wait_pool_gauges(&address, &namespace, "scaling", PoolGauges::of(2.0, 2.0, 2.0)).await.with_context(|| process.log_tail())?;
    assert_eq!(alert.evaluate(&scrape)?, BTreeMap::new(), "the alert fires for pools at their minimum:\n{scrape}");

    let replicas = |replicas: i32| Patch::Merge(json!({"spec": {"replicas": replicas}}));
    pools.patch("fixed", &PatchParams::default(), &replicas(2)).await?;
    wait_pool_gauges(&address, &namespace, "fixed", PoolGauges::of(2.0, 2.0, 2.0)).await.with_context(|| process.log_tail())?;

    // A quota that admits no pod: the pool scaled to 4 keeps 2 ready agents.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), &namespace);
    create(&quotas, json!({"metadata": {"name": "no-new-pods"}, "spec": {"hard": {"pods": "0"}}})).await?;
    wait_for("the ResourceQuota to be in force", READY_TIMEOUT, || async {
        let quota = quotas.get("no-new-pods").await?;
        Ok(quota.status.and_then(|status| status.hard).is_some_and(|hard| hard.contains_key("pods")).then_some(()))
    })
    .await?;
    pools.patch("fixed", &PatchParams::default(), &replicas(4)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let refused = wait_for("the quota to refuse the pool's new pods", READY_TIMEOUT, || async {
        let deployment = deployments.get("fixed").await?;
        let status = deployment.status.unwrap_or_default();
        let failure =
            status.conditions.iter().flatten().find(|condition| condition.type_ == "ReplicaFailure" && condition.status == "True");
        match failure {
            Some(failure) => Ok(Some(failure.clone())),
            None => bail!("Deployment status {status:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    println!("below the minimum: {}", refused.message.unwrap_or_default());
    let scrape =
        wait_pool_gauges(&address, &namespace, "fixed", PoolGauges::of(2.0, 4.0, 4.0)).await.with_context(|| process.log_tail())?;
    assert_eq!(
        alert.evaluate(&scrape)?,
        BTreeMap::from([((namespace.clone(), "fixed".to_string()), 2.0)]),
        "FloeAgentPoolBelowMinimum must return the pool below its minimum, and only it:\n{scrape}"
    );

    // Pods admitted again: the ready agents reach the minimum and the alert's expression is empty.
    quotas.delete("no-new-pods", &DeleteParams::default()).await?;
    let scrape =
        wait_pool_gauges(&address, &namespace, "fixed", PoolGauges::of(4.0, 4.0, 4.0)).await.with_context(|| process.log_tail())?;
    assert_eq!(alert.evaluate(&scrape)?, BTreeMap::new(), "the alert still fires once the agents are ready:\n{scrape}");

    // A deleted pool's series go with it; the other pool's stay.
    pools.delete("fixed", &DeleteParams::default()).await?;
    wait_for("AgentPool fixed to be gone", READY_TIMEOUT, || async { Ok(pools.get_opt("fixed").await?.is_none().then_some(())) })
        .await
        .with_context(|| process.log_tail())?;
    let scrape = wait_pool_gauges(&address, &namespace, "fixed", PoolGauges::ABSENT).await.with_context(|| process.log_tail())?;
    assert_eq!(pool_gauges(&scrape, &namespace, "scaling")?, PoolGauges::of(2.0, 2.0, 2.0), "{scrape}");
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// Issue 16, done-when 2, the other kind of run-time refusal: the namespace's admission policy
/// (a ValidatingAdmissionPolicy allowing at most 2 replicas per Deployment, denied as Forbidden)
/// refuses the Deployment of a pool scaled to 3. The pool says so within 5 s (ChildForbidden,
/// pointing at the namespace's policies, and a Warning event), and keeps its agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_policy_refusing_the_deployment_shows_as_a_condition_and_an_event_within_five_seconds() -> Result<()> {
    use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "admission").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    create(&Api::<VirtualCluster>::namespaced(client.clone(), &namespace), virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&pools, agent_pool("agents", "demo", 1)).await?;
    wait_pool_available(&client, &namespace, "agents", 1).await.with_context(|| process.log_tail())?;

    // Cluster-scoped objects, named after the namespace so parallel runs do not share them.
    let policy_name = format!("floe-e2e-max-two-{namespace}");
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    create(
        &policies,
        json!({"metadata": {"name": policy_name}, "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
            "validations": [{"expression": "!has(object.spec.replicas) || object.spec.replicas <= 2",
                             "message": "deployments in this namespace may run at most 2 replicas", "reason": "Forbidden"}],
        }}),
    )
    .await?;
    create(
        &bindings,
        json!({"metadata": {"name": policy_name}, "spec": {
            "policyName": policy_name, "validationActions": ["Deny"],
            "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}},
        }}),
    )
    .await?;
    let outcome = async {
        // A policy takes effect once the apiserver has compiled it: wait until it refuses.
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
        wait_for("the admission policy to refuse a third replica", READY_TIMEOUT, || async {
            let dry_run = PatchParams { dry_run: true, ..PatchParams::default() };
            match deployments.patch("agents", &dry_run, &Patch::Merge(json!({"spec": {"replicas": 3}}))).await {
                Err(kube::Error::Api(status)) if status.code == 403 => Ok(Some(())),
                other => bail!("dry run answered {other:?}"),
            }
        })
        .await?;
        pools.patch("agents", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
        let started = std::time::Instant::now();
        let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
        let condition = wait_for("Reconciled=False ChildForbidden and a Warning event", Duration::from_secs(5), || async {
            let pool = pools.get("agents").await?;
            let Some(condition) = reconciled(&pool).filter(|condition| condition.reason == "ChildForbidden") else {
                bail!("Reconciled is {:?}", reconciled(&pool))
            };
            let warned = events
                .list(&ListParams::default())
                .await?
                .items
                .into_iter()
                .any(|event| event.type_.as_deref() == Some("Warning") && event.reason.as_deref() == Some("ChildForbidden"));
            Ok(warned.then_some(condition))
        })
        .await
        .with_context(|| process.log_tail())?;
        println!("admission refusal reported after {:?}: {}", started.elapsed(), condition.message);
        for expected in ["Deployment agents", "at most 2 replicas", "admission policies"] {
            ensure!(condition.message.contains(expected), "message lacks {expected:?}: {}", condition.message);
        }
        let replicas = deployments.get("agents").await?.spec.and_then(|spec| spec.replicas);
        ensure!(replicas == Some(1), "the Deployment changed to {replicas:?} replicas");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    // Cluster-scoped: removed whatever the outcome, so no other test meets the policy.
    bindings.delete(&policy_name, &DeleteParams::default()).await?;
    policies.delete(&policy_name, &DeleteParams::default()).await?;
    outcome?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

fn pool_condition(pool: &AgentPool, kind: &str) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    pool.status.as_ref()?.conditions.iter().find(|condition| condition.type_ == kind).cloned()
}

/// Issue 16, done-when 4 (first half): a VirtualCluster edited onto a dead S3 endpoint does not
/// reach its pool's agents. The Deployment's spec and generation and the ConfigMap stay as they
/// were, the pool says VirtualClusterNotReady naming the VirtualCluster, and a working endpoint
/// afterwards is applied as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_a_ready_virtual_clusters_endpoint_leaves_its_pools_deployment_unchanged_until_it_is_fixed() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "follow").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "demo", "Retain")).await?;
    create(&pools, agent_pool("agents", "demo", 2)).await?;
    let before = wait_pool_available(&client, &namespace, "agents", 2).await.with_context(|| process.log_tail())?;
    let config_before = config_maps.get("agents-config").await?;
    let good_endpoint = format!("http://127.0.0.1:{}", plane.infrastructure.s3_port);
    assert_eq!(config_before.data.as_ref().and_then(|data| data.get("AWS_ENDPOINT")), Some(&good_endpoint));

    let endpoint = |value: String| Patch::Merge(json!({"spec": {"objectStore": {"endpoint": value}}}));
    clusters.patch("demo", &PatchParams::default(), &endpoint("http://127.0.0.1:1".to_string())).await?;
    // Both the edit and the failed check the VirtualCluster controller makes of it have reached the
    // pool once the VirtualCluster reports the failure for the new generation.
    wait_for("VirtualCluster demo to fail its check of the new endpoint", READY_TIMEOUT, || async {
        let cluster = clusters.get("demo").await?;
        let ready = cluster_condition(&cluster, "Ready");
        match ready {
            Some(ready) if ready.status == "False" && ready.observed_generation == cluster.metadata.generation => Ok(Some(())),
            other => bail!("Ready is {other:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    let held = wait_for("the pool to say VirtualClusterNotReady", READY_TIMEOUT, || async {
        let pool = pools.get("agents").await?;
        match pool_condition(&pool, "Ready") {
            Some(ready) if ready.status == "False" && ready.reason == "VirtualClusterNotReady" => Ok(Some(ready)),
            other => bail!("Ready is {other:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    println!("pool Ready=False {}: {}", held.reason, held.message);
    assert!(held.message.contains("VirtualCluster demo") && held.message.contains("Ready condition"), "{}", held.message);
    assert!(held.message.contains("keep their last applied configuration"), "{}", held.message);
    // A reconcile of the pool after the failure was reported (the requeue is a minute; the watch
    // is what woke it), then the children are compared.
    let after = deployments.get("agents").await?;
    assert_eq!(after.metadata.generation, before.metadata.generation, "the Deployment was re-applied");
    assert_eq!(serde_json::to_value(&after.spec)?, serde_json::to_value(&before.spec)?, "the Deployment's spec changed");
    let config_after = config_maps.get("agents-config").await?;
    assert_eq!(config_after.metadata.resource_version, config_before.metadata.resource_version, "the ConfigMap was rewritten");
    assert_eq!(config_after.data, config_before.data);

    // Fixed, onto another spelling of the working endpoint: applied like any change.
    let fixed_endpoint = format!("http://localhost:{}", plane.infrastructure.s3_port);
    clusters.patch("demo", &PatchParams::default(), &endpoint(fixed_endpoint.clone())).await?;
    wait_cluster_ready(&clusters, "demo").await.with_context(|| process.log_tail())?;
    wait_for("the pool's ConfigMap to carry the fixed endpoint", READY_TIMEOUT, || async {
        let config = config_maps.get("agents-config").await?;
        let applied = config.data.as_ref().and_then(|data| data.get("AWS_ENDPOINT")) == Some(&fixed_endpoint);
        Ok(applied.then_some(()))
    })
    .await
    .with_context(|| process.log_tail())?;
    wait_pool_available(&client, &namespace, "agents", 2).await.with_context(|| process.log_tail())?;
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}

/// Issue 16, done-when 4 (second half), the stated rule (operator/DESIGN.md): deleting a
/// VirtualCluster waits while AgentPools use it, whatever its deletionPolicy, and says which in a
/// `Deleting` condition and a Warning event; once the pools are gone, deletionPolicy runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_virtual_cluster_waits_for_the_pools_that_use_it_and_names_them() -> Result<()> {
    let plane = kubernetes::shared()?;
    let client = plane.client().await?;
    let namespace = plane.namespace(&client, "protect").await?;
    let process = plane.start_operator(&namespace)?;
    s3_secret(&client, &namespace).await?;
    let clusters: Api<VirtualCluster> = Api::namespaced(client.clone(), &namespace);
    let pools: Api<AgentPool> = Api::namespaced(client.clone(), &namespace);
    create(&clusters, virtual_cluster(plane, &namespace, "used", "Delete")).await?;
    create(&pools, agent_pool("agents", "used", 1)).await?;
    wait_pool_available(&client, &namespace, "agents", 1).await.with_context(|| process.log_tail())?;
    let prefix = format!("/floe/vc/{namespace}.used/");
    assert!(plane.infrastructure.etcd_key_count(&prefix)? >= 1, "no registration to protect");

    clusters.delete("used", &DeleteParams::default()).await?;
    let waiting = wait_for("VirtualCluster used to say its deletion waits", READY_TIMEOUT, || async {
        let cluster = clusters.get("used").await?;
        ensure!(cluster.metadata.deletion_timestamp.is_some(), "not being deleted yet");
        match cluster_condition(&cluster, "Deleting") {
            Some(deleting) if deleting.status == "True" && deleting.reason == "AgentPoolsRemain" => Ok(Some(deleting)),
            other => bail!("Deleting is {other:?}"),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    println!("Deleting=True {}: {}", waiting.reason, waiting.message);
    assert!(waiting.message.contains("AgentPool agents") && waiting.message.contains("delete them first"), "{}", waiting.message);
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &namespace);
    wait_for("an AgentPoolsRemain Warning on the VirtualCluster", READY_TIMEOUT, || async {
        let found = events.list(&ListParams::default()).await?.items.into_iter().any(|event| {
            event.reason.as_deref() == Some("AgentPoolsRemain")
                && event.type_.as_deref() == Some("Warning")
                && event.regarding.as_ref().and_then(|regarding| regarding.name.as_deref()) == Some("used")
        });
        Ok(found.then_some(()))
    })
    .await?;
    // deletionPolicy Delete has not run, and the pool's agents still run.
    assert!(plane.infrastructure.etcd_key_count(&prefix)? >= 1, "the registration was deleted while a pool used it");
    assert!(Api::<Deployment>::namespaced(client.clone(), &namespace).get_opt("agents").await?.is_some());

    pools.delete("agents", &DeleteParams::default()).await?;
    wait_for("VirtualCluster used to be gone", READY_TIMEOUT, || async {
        match clusters.get_opt("used").await? {
            None => Ok(Some(())),
            Some(cluster) => bail!("still there: {:?}", cluster.status.map(|status| status.conditions)),
        }
    })
    .await
    .with_context(|| process.log_tail())?;
    assert_eq!(plane.infrastructure.etcd_key_count(&prefix)?, 0, "deletionPolicy Delete did not run after the pools went");
    drop(process);
    plane.delete_namespace(&client, &namespace).await;
    Ok(())
}
