//! The `floe.dev/v1alpha1` custom resources. Validation lives in the schema (patterns, ranges,
//! enums) and in CEL rules (`x-kubernetes-validations`), so the apiserver refuses a bad object
//! with a message naming the field before the operator ever sees it.

pub mod agent_pool;
pub mod kafka_user;
pub mod quantity;
pub mod resources;
pub mod virtual_cluster;

pub use agent_pool::{AgentPool, AgentPoolSpec, AgentPoolStatus};
pub use kafka_user::{KafkaUser, KafkaUserSpec, KafkaUserStatus};
pub use virtual_cluster::{VirtualCluster, VirtualClusterSpec, VirtualClusterStatus};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Go-style duration as the agents take it: `250ms`, `10s`, `5m`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";
/// A Kubernetes quantity of bytes without a sign or exponent: `8Mi`, `50M`, `1048576`.
pub const BYTES_QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$";
/// An object name in the same namespace (RFC 1123 subdomain).
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
pub const DURATION_MESSAGE: &str = "must be a duration such as 250ms, 10s, 5m or 1h30m";
pub const BYTES_QUANTITY_MESSAGE: &str = "must be a size in bytes such as 8Mi, 50M or 1048576";
pub const NAME_MESSAGE: &str = "must be a lowercase name of letters, digits, '-' and '.', such as demo or s3-auth";

/// `x-kubernetes-validations` for a string that must match `pattern`. A schema `pattern` would do
/// the same check, but the apiserver's message for it prints the regular expression; this one
/// prints `message`, which says what is expected with examples.
pub fn must_match(pattern: &str, message: &str) -> serde_json::Value {
    serde_json::json!([{"rule": format!("self.matches(r'{pattern}')"), "message": message}])
}

/// A reference to a Secret in the same namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret, in the resource's namespace.
    #[schemars(length(min = 1, max = 253), extend("x-kubernetes-validations" = must_match(NAME_PATTERN, NAME_MESSAGE)))]
    pub name: String,
}
