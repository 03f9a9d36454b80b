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
    for error in [
        BuildError::FlushMaxBytes { value: "8MB".into() },
        BuildError::Bandwidth { value: "fast".into() },
        BuildError::Stabilization { value: "5 minutes".into() },
        BuildError::MissingMetadata { field: "namespace" },
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
