//! Issue 16: every condition message a failure path writes is one short sentence a person can
//! act on: under 200 characters, no `Debug` formatting (`Error(`, `{ `). Inputs are realistic
//! worst cases (long names, deep error chains); the constructors are the ones the reconcilers call.

use crate::agent_pool::build::BuildError;
use crate::agent_pool::child_failure::ChildFailure;
use crate::agent_pool::{virtual_cluster_not_found, virtual_cluster_refused};
use crate::virtual_cluster::locations::{Conflict, Overlap};
use crate::virtual_cluster::problems;

fn every_message() -> Vec<(String, String)> {
    let mut messages: Vec<(String, String)> =
        problems::tests::every_problem().into_iter().map(|problem| (problem.reason.to_string(), problem.message)).collect();
    let namespace = "team-analytics-production";
    let name = "clickstream-events-eu-west-1";
    messages.push(("VirtualClusterNotFound".into(), virtual_cluster_not_found(namespace, name)));
    let conflict = Conflict {
        other: format!("{namespace}/{name}-original"),
        overlaps: vec![
            Overlap::Etcd {
                ours: "/floe/vc/team-analytics-production.clickstream".into(),
                theirs: "/floe/vc/team-analytics-production".into(),
            },
            Overlap::ObjectStore {
                ours: "s3://floe-production-eu-west-1-data/virtual-clusters/team-analytics/clickstream".into(),
                theirs: "s3://floe-production-eu-west-1-data/virtual-clusters/team-analytics".into(),
            },
        ],
    };
    messages.push(("LocationConflict".into(), conflict.message()));
    messages.push(("VirtualClusterRefused".into(), virtual_cluster_refused(name, &conflict)));
    messages.extend(not_ready_messages(name));
    for problem in [
        crate::kafka_user::authentication_mismatch(name),
        crate::kafka_user::virtual_cluster_not_found(name),
        crate::kafka_user::secret::secret_conflict(&format!("{name}-producer-service-account")),
        crate::kafka_user::secret::secret_not_created(
            &format!("{name}-producer-service-account"),
            &kube::Error::Api(Box::new(
                kube::core::Status::failure(
                    &format!("secrets \"{name}\" is forbidden: exceeded quota: compute-resources, requested: count/secrets=1, used: count/secrets=100, limited: count/secrets=100"),
                    "Forbidden",
                )
                .with_code(422),
            )),
        ),
    ] {
        messages.push((problem.reason.to_string(), problem.message));
    }
    // What an agent reports: the root cause of a failed object-store call, at its worst length.
    let cause = "put failed: Generic S3 error: Client error with status 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>17F3A2B4C5D6E7F8</RequestId></Error>";
    let failing: floe_meta::agents::AgentRecord = serde_json::from_value(serde_json::json!({
        "node_id": 7, "host": "10.42.3.17", "port": 9092, "zone": "eu-west-1a", "roles": ["produce", "fetch", "jobs"],
        "pod": format!("{name}-agents-7c9f8d6b5-x2k4q"), "bucket_problem": cause,
    }))
    .expect("a registry record");
    let (_, reason, message) = crate::virtual_cluster::agents_health::assess(&[failing]);
    messages.push((reason.into(), message));
    let pools: Vec<String> = (0..12).map(|index| format!("{name}-agents-pool-{index:02}-with-a-long-suffix")).collect();
    for count in [1, 3, 12] {
        messages.push((crate::virtual_cluster::in_use::REASON.into(), crate::virtual_cluster::in_use::message(&pools[..count])));
    }
    for error in [
        BuildError::FlushMaxBytes { value: "8MB".into() },
        BuildError::DiskCacheSize { value: "lots".into() },
        BuildError::Bandwidth { value: "fast".into() },
        BuildError::Stabilization { value: "5 minutes".into() },
        BuildError::MissingMetadata { field: "namespace" },
        BuildError::UnauthenticatedLoadBalancer { cluster: name.to_string() },
    ] {
        messages.push(("InvalidSpec".into(), error.to_string()));
    }
    let refused = |code: u16, text: &str| kube::Error::Api(Box::new(kube::core::Status::failure(text, "Refused").with_code(code)));
    for (code, text) in [
        (
            422,
            r#"Deployment.apps "clickstream-events-eu-west-1" is invalid: [spec.template.spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1, spec.template.spec.containers[0].resources.requests: Invalid value: "4Gi": must be less than or equal to memory limit of 2Gi]"#,
        ),
        (
            403,
            r#"deployments.apps "clickstream-events-eu-west-1" is forbidden: exceeded quota: compute, requested: limits.cpu=4, used: limits.cpu=60, limited: limits.cpu=64"#,
        ),
        (500, "Internal error occurred: resource quota evaluation timed out"),
    ] {
        let failure = ChildFailure { action: "apply", kind: "Deployment", name: name.into(), source: refused(code, text) };
        messages.push((failure.reason().to_string(), failure.message()));
    }
    messages
}

/// Every state of a pool's VirtualCluster that holds the pool, with and without agents.
fn not_ready_messages(name: &str) -> Vec<(String, String)> {
    use crate::agent_pool::virtual_cluster_gate::{check, REASON};
    use crate::crd::virtual_cluster::{VirtualCluster, VirtualClusterStatus};
    let long_name = format!("{name}-{}", "x".repeat(200));
    let mut cluster: VirtualCluster =
        serde_yaml::from_str(include_str!("../tests/fixtures/virtualcluster.yaml")).expect("the fixture parses");
    cluster.metadata.name = Some(long_name);
    cluster.metadata.generation = Some(2);
    let states =
        [None, Some((true, "Ready".to_string(), 1)), Some((false, "RegistrationFailed".to_string(), 2)), Some((false, "A".repeat(120), 2))];
    let mut messages = Vec::new();
    for state in states {
        cluster.status = state.map(|(ready, reason, observed)| VirtualClusterStatus {
            conditions: vec![crate::conditions::condition(&[], "Ready", ready, &reason, "text", Some(observed))],
            ..Default::default()
        });
        for has_agents in [true, false] {
            let message = check(&cluster, has_agents).expect_err("not Ready for generation 2");
            messages.push((REASON.to_string(), message));
        }
    }
    messages
}

#[test]
fn every_condition_message_of_a_failure_path_is_short_and_plain() {
    let messages = every_message();
    assert!(messages.len() >= 25, "only {} messages checked", messages.len());
    let mut failures = Vec::new();
    for (reason, message) in &messages {
        if message.chars().count() >= 200 {
            failures.push(format!("{reason}: {} characters: {message}", message.chars().count()));
        }
        if message.contains("Error(") || message.contains("{ ") {
            failures.push(format!("{reason}: debug formatting: {message}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
