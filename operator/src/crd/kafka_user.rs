//! `KafkaUser`: a user of one VirtualCluster, in the spirit of Strimzi's resource of the same
//! name. The operator keeps the user's SCRAM credential and ACLs in the virtual cluster's journal
//! equal to the spec (`kafka_user` controller) and its password in a Secret.

use super::agent_pool::VirtualClusterReference;
use super::{must_match, NAME_MESSAGE, NAME_PATTERN};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kafka user of a VirtualCluster: how it authenticates and what it may do. Its name is the
/// user name clients authenticate with (principal `User:<name>`).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "floe.dev",
    version = "v1alpha1",
    kind = "KafkaUser",
    plural = "kafkausers",
    shortname = "fku",
    namespaced,
    status = "KafkaUserStatus",
    printcolumn = r#"{"name":"VirtualCluster","type":"string","jsonPath":".spec.virtualClusterRef.name"}"#,
    printcolumn = r#"{"name":"Authentication","type":"string","jsonPath":".spec.authentication.type"}"#,
    printcolumn = r#"{"name":"Secret","type":"string","jsonPath":".status.secret"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserSpec {
    /// The VirtualCluster (same namespace) this user belongs to. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self == oldSelf",
        "message": "virtualClusterRef is immutable; create another KafkaUser for another virtual cluster"
    }]))]
    pub virtual_cluster_ref: VirtualClusterReference,
    /// How the user proves who it is.
    pub authentication: UserAuthentication,
    /// What the user may do once the VirtualCluster's listener has `authorization.type: acls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<UserAuthorization>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthentication {
    /// `scram-sha-512` or `scram-sha-256`: the SCRAM credential kept for the user. A listener
    /// with `plain` authentication checks passwords against either.
    #[serde(rename = "type")]
    pub kind: UserAuthenticationType,
    /// Where the password comes from. Without it the operator generates one into a Secret named
    /// like the user (keys `password`, `username` and `sasl.jaas.config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum UserAuthenticationType {
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordSource {
    /// Where the password is read from.
    pub value_from: PasswordValueFrom,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordValueFrom {
    /// A key of a Secret in the user's namespace holding the password. Changing the Secret
    /// changes the password within a minute.
    pub secret_key_ref: SecretKeyReference,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyReference {
    /// Name of the Secret, in the KafkaUser's namespace.
    #[schemars(length(min = 1, max = 253), extend("x-kubernetes-validations" = must_match(NAME_PATTERN, NAME_MESSAGE)))]
    pub name: String,
    /// The key holding the password, e.g. `password`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAuthorization {
    /// The user's ACLs. They replace every ACL of principal `User:<name>` in the virtual cluster:
    /// one added with kafka-acls for this user is removed at the next reconcile.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub acls: Vec<UserAcl>,
}

/// One rule: the user may (or may not) perform `operations` on the resources matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserAcl {
    /// The topic, group, transactional id or cluster this rule is about.
    pub resource: AclResource,
    /// For example `[Read, Describe]` on a topic, `[Read]` on a group.
    #[schemars(length(min = 1, max = 12), extend("x-kubernetes-list-type" = "set"))]
    pub operations: Vec<AclOperationName>,
    /// The client address this applies to, or `*` for any.
    #[serde(default = "any_host")]
    #[schemars(length(min = 1, max = 255))]
    pub host: String,
    /// `allow` (the default) or `deny`; a deny wins over every allow.
    #[serde(rename = "type", default = "allow")]
    pub permission: AclPermissionName,
}

fn any_host() -> String {
    "*".to_string()
}

fn allow() -> AclPermissionName {
    AclPermissionName::Allow
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.type == 'cluster' || has(self.name)",
    "message": "a topic, group or transactionalId resource needs a name, e.g. name: orders (or name: '*' for all)"
}]))]
pub struct AclResource {
    /// `topic`, `group`, `cluster` or `transactionalId`.
    #[serde(rename = "type")]
    pub kind: AclResourceType,
    /// The resource's name, `*` for all, or with `patternType: prefix` a prefix of names. Not
    /// used for `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub name: Option<String>,
    /// `literal` (the default): the name itself; `prefix`: every name starting with it.
    #[serde(default = "literal")]
    pub pattern_type: AclPatternName,
}

fn literal() -> AclPatternName {
    AclPatternName::Literal
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPatternName {
    Literal,
    Prefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AclPermissionName {
    Allow,
    Deny,
}

/// Kafka's operation names as `kafka-acls` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AclOperationName {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

/// Whether the user's credential and ACLs are in the virtual cluster's journal as the spec says.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaUserStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready: the virtual cluster's agents authenticate and authorize the user as the spec says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The user name to authenticate with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The Secret holding the password (key `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}
