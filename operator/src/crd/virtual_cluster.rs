//! `VirtualCluster`: where one Kafka-compatible cluster keeps its metadata (etcd) and its data
//! (a bucket), and what its topics default to. Agents join it through an AgentPool.

use super::{must_match, SecretReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where this virtual cluster keeps its metadata (etcd) and data (a bucket), what deleting it
/// does to them, and what its topics default to.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "floe.dev",
    version = "v1alpha1",
    kind = "VirtualCluster",
    plural = "virtualclusters",
    shortname = "vc",
    namespaced,
    status = "VirtualClusterStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Topics","type":"integer","jsonPath":".status.topics"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.partitions","priority":1}"#,
    printcolumn = r#"{"name":"Stored","type":"integer","format":"int64","jsonPath":".status.storedBytes","priority":1}"#,
    printcolumn = r#"{"name":"Agents","type":"integer","jsonPath":".status.agents"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualClusterSpec {
    /// The etcd cluster holding this virtual cluster's metadata journal.
    pub etcd: EtcdSpec,
    /// The bucket holding this virtual cluster's data.
    pub object_store: ObjectStoreSpec,
    /// Defaults for topics created without explicit settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_defaults: Option<TopicDefaults>,
    /// What deleting this VirtualCluster does to its data: `Retain` (default) keeps the etcd keys
    /// and the objects so a new VirtualCluster of the same name picks them up; `Delete` removes them.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// TLS and client authentication of every agent's Kafka listener. Without it clients connect
    /// in plaintext and unauthenticated (an AgentPool may then not use a LoadBalancer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener: Option<ClusterListenerSpec>,
}

/// How clients reach the agents: TLS and authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.authentication) || self.authentication.type != 'mtls' || has(self.tlsSecretRef)",
    "message": "mtls authentication needs tlsSecretRef: a Secret with tls.crt, tls.key and the clients' ca.crt"
}]))]
pub struct ClusterListenerSpec {
    /// Secret with `tls.crt` and `tls.key` (a cert-manager Certificate's Secret works as is) and,
    /// for `mtls` authentication, `ca.crt`. Turns TLS on. Mounted as a directory, so a renewed
    /// certificate reaches the agents without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretReference>,
    /// How clients prove who they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<AuthenticationSpec>,
    /// What an authenticated client may do. Without it (or with `type: none`) every client may do
    /// everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.superUsers) || size(self.superUsers) == 0 || self.type == 'acls'",
    "message": "superUsers is for type: acls"
}]))]
pub struct AuthorizationSpec {
    /// `acls`: Kafka ACLs, managed with kafka-acls and kept in this virtual cluster; a request no
    /// ACL allows gets Kafka's *_AUTHORIZATION_FAILED code. `none`: every client may do everything.
    #[serde(rename = "type")]
    pub kind: AuthorizationType,
    /// Principals allowed everything, for example `User:admin`. The bootstrap user always is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(max = 512)), extend("x-kubernetes-validations" = [{
        "rule": "self.all(principal, principal.matches('^[A-Za-z]+:[^;]+$'))",
        "message": "each super user is a principal such as User:admin (a type, a colon, a name; no semicolons)"
    }]))]
    pub super_users: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthorizationType {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "acls")]
    Acls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.bootstrapUser) || self.type in ['scram-sha-512', 'scram-sha-256', 'plain']",
    "message": "bootstrapUser is for SASL authentication (scram-sha-512, scram-sha-256 or plain)"
}]))]
pub struct AuthenticationSpec {
    /// `scram-sha-512`, `scram-sha-256` or `plain` (SASL; users are SCRAM credentials in this
    /// virtual cluster, managed as KafkaUser resources or with kafka-configs), `mtls` (a client certificate chaining to the
    /// TLS Secret's `ca.crt`; its subject is the principal) or `none`.
    #[serde(rename = "type")]
    pub kind: AuthenticationType,
    /// The first user, written by the agents at start-up, who can then create the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_user: Option<BootstrapUserSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AuthenticationType {
    #[serde(rename = "none")]
    None,
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "mtls")]
    Mtls,
}

impl AuthenticationType {
    /// The agent's `--sasl-mechanisms` value, for the SASL types.
    pub fn sasl_mechanism(self) -> Option<&'static str> {
        match self {
            Self::ScramSha512 => Some("SCRAM-SHA-512"),
            Self::ScramSha256 => Some("SCRAM-SHA-256"),
            Self::Plain => Some("PLAIN"),
            Self::None | Self::Mtls => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapUserSpec {
    /// The user's name, e.g. `admin`.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// Secret whose key `password` holds the user's password. Changing it changes the password
    /// when the agents next start.
    pub password_secret_ref: SecretReference,
}

impl VirtualClusterSpec {
    /// Whether clients must authenticate (SASL or a client certificate).
    pub fn requires_authentication(&self) -> bool {
        self.listener
            .as_ref()
            .and_then(|listener| listener.authentication.as_ref())
            .is_some_and(|authentication| authentication.kind != AuthenticationType::None)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.credentialsSecretRef) || has(self.tlsSecretRef)",
    "message": "etcd credentials are sent only over TLS: credentialsSecretRef needs tlsSecretRef (a Secret with the etcd server's ca.crt)"
}]))]
pub struct EtcdSpec {
    /// etcd client endpoints as host:port, e.g. `floe-etcd.floe-system.svc:2379`.
    #[schemars(length(min = 1, max = 16))]
    #[schemars(extend("items" = {"type": "string", "maxLength": 261, "x-kubernetes-validations": must_match(
        r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?:[0-9]{1,5}$",
        "each endpoint must be host:port, such as floe-etcd.floe-system.svc:2379"
    )}))]
    pub endpoints: Vec<String>,
    /// Key prefix; this virtual cluster's keys live under `<prefix>/vc/<namespace>.<name>/`.
    #[serde(default = "default_prefix")]
    #[schemars(length(max = 128), extend("x-kubernetes-validations" = must_match(
        r"^/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$",
        "must be a key path such as /floe or /teams/payments"
    )))]
    pub prefix: String,
    /// Secret with keys `username` and `password` for etcd authentication; needs `tlsSecretRef`,
    /// so the password never crosses the network in clear text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
    /// Secret with keys `ca.crt` and, for client certificates, `tls.crt` and `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_ref: Option<SecretReference>,
}

fn default_prefix() -> String {
    "/floe".to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// `s3://bucket/prefix` (AWS S3 or any S3-compatible server through `endpoint`) or
    /// `file:///path` (a shared filesystem mounted into every agent).
    #[schemars(length(max = 1024), extend("x-kubernetes-validations" = must_match(
        r"^(s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/]+)*/?|file:///[^\s]*)$",
        "must be s3://bucket/prefix, such as s3://floe-data/demo, or file:///path"
    )))]
    pub url: String,
    /// Region of the bucket, e.g. `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64), extend("x-kubernetes-validations" = must_match(r"^[a-z0-9-]+$", "must be a region name such as us-east-1")))]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible server, e.g. `http://minio.storage.svc:9000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",
        "message": "endpoint must be an http:// or https:// URL with a host, e.g. http://minio.storage.svc:9000"
    }]))]
    pub endpoint: Option<String>,
    /// Secret with keys `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`. Without it, agents use
    /// their environment (e.g. IRSA or instance credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretReference>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicDefaults {
    /// Partitions of a topic created without a partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: Option<i32>,
    /// Create a topic when a client produces to or fetches from one that does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// Whether etcd and the bucket are reachable, and what the virtual cluster holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualClusterStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, MetadataReachable, BucketReachable; Deleting while a deletion waits for the
    /// AgentPools that use this VirtualCluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The id registered in etcd (this resource's uid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Topics in this virtual cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topics: Option<i64>,
    /// Partitions over all its topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i64>,
    /// Bytes referenced by the index (what consumers can read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// Agents registered and live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<i64>,
}

impl VirtualCluster {
    /// The name agents and etcd know this virtual cluster by: `<namespace>.<name>`. A namespace
    /// has no dots, so the first dot splits it unambiguously.
    pub fn cluster_id(&self) -> Option<String> {
        let namespace = self.metadata.namespace.as_deref()?;
        let name = self.metadata.name.as_deref()?;
        Some(format!("{namespace}.{name}"))
    }
}
