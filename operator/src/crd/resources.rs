//! The schema of `spec.resources`: CPU and memory as Kubernetes quantities, checked by the
//! apiserver when the AgentPool is written, so `cpu: lots` is refused at `kubectl apply` instead
//! of failing later when the operator applies the Deployment.
//!
//! The Rust type stays k8s-openapi's `ResourceRequirements` (it is copied into the pod template);
//! only the schema is ours. Its `claims` field (dynamic resource allocation) is left out: agents
//! take none, and strict field validation refuses it.

use schemars::{json_schema, Schema, SchemaGenerator};

/// Holds CEL's cost estimate under the apiserver's budget: a rule's cost grows with the longest
/// string and the largest map it may see. Real quantities are short; pods have a few resources.
const MAX_QUANTITY_LENGTH: u32 = 64;
const MAX_RESOURCES: u32 = 16;

/// Plain-words message of a value that is not a quantity (the apiserver prefixes the field path
/// and the value, e.g. `spec.resources.requests[cpu]: Invalid value: "lots": ...`).
pub const QUANTITY_MESSAGE: &str = "must be a Kubernetes quantity such as 500m or 2 (CPU), 512Mi or 2Gi (memory)";

/// `schema_with` target of `AgentPoolSpec::resources`.
pub fn resources_schema(_generator: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "CPU and memory of each agent, as for a container: `requests` is what the scheduler reserves and the autoscaler's CPU target is a percentage of; `limits` caps it. Example: requests {cpu: 500m, memory: 2Gi}.",
        "type": "object",
        "properties": {
            "requests": quantities("Resources reserved for each agent, e.g. cpu: 500m, memory: 2Gi. The CPU autoscaling target is a percentage of the CPU request."),
            "limits": quantities("Most each agent may use, e.g. cpu: 2, memory: 4Gi. Memory above the limit kills the agent; an agent reads its memory limit and keeps its default segment cache to a quarter of it (at most 256 MiB), so give at least 512Mi."),
        },
    })
}

fn quantities(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "type": "object",
        "maxProperties": MAX_RESOURCES,
        "additionalProperties": {
            "description": "A Kubernetes quantity: 500m, 2, 512Mi, 2Gi.",
            "x-kubernetes-int-or-string": true,
            "maxLength": MAX_QUANTITY_LENGTH,
            // `isQuantity` is the apiserver's own parser (Kubernetes 1.29+); a YAML number
            // (`cpu: 2`) arrives as an int and is a quantity already.
            "x-kubernetes-validations": [{"rule": "type(self) == int || isQuantity(self)", "message": QUANTITY_MESSAGE}],
        },
    })
}
