//! Kafka ACLs as the journal keeps them, and the decision every agent takes from them.
//!
//! The rules are Kafka's (`StandardAuthorizer`, KIP-11, KIP-290 prefixed patterns):
//! - a binding applies to a request when its resource type is the request's, its pattern matches
//!   the resource name (LITERAL: the same name, or `*`; PREFIXED: a prefix of it), its principal is
//!   the request's or `User:*`, and its host is the client's address or `*`;
//! - a DENY that applies for the operation (or ALL) wins over everything;
//! - otherwise an ALLOW that applies for the operation, ALL, or an operation that implies it
//!   (READ, WRITE, DELETE and ALTER imply DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows;
//! - otherwise the request is denied: no ACL means no access.
//!
//! Super users and whether authorization is on at all are the agent's settings, not the journal's.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The only name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// A LITERAL resource name, principal or host that matches every one.
pub const WILDCARD: &str = "*";
/// The principal that matches every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's resource types that ACLs can name (the wire codes are Kafka's `ResourceType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

/// How a binding's resource name is matched (Kafka's `PatternType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PatternType {
    Literal,
    Prefixed,
}

/// Kafka's `AclOperation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
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
    CreateTokens,
    DescribeTokens,
}

/// Kafka's `AclPermissionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Deny,
    Allow,
}

/// One ACL: `principal` from `host` is allowed (or denied) `operation` on the resources matched by
/// (`resource_type`, `pattern_type`, `resource_name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub resource_name: String,
    /// `Type:name`, for example `User:alice`; `User:*` for everyone.
    pub principal: String,
    /// A client address (as the agent sees it, without port), or `*`.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

macro_rules! kafka_codes {
    ($type:ident { $($variant:ident = $code:literal),* $(,)? }) => {
        impl $type {
            /// Kafka's wire code.
            pub fn kafka_code(self) -> i8 {
                match self { $(Self::$variant => $code),* }
            }
            /// The value of a Kafka wire code; `None` for UNKNOWN, ANY, MATCH and codes Kafka
            /// does not define.
            pub fn from_kafka_code(code: i8) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)* _ => None }
            }
        }
    };
}

kafka_codes!(ResourceType { Topic = 2, Group = 3, Cluster = 4, TransactionalId = 5, DelegationToken = 6, User = 7 });
kafka_codes!(PatternType { Literal = 3, Prefixed = 4 });
kafka_codes!(Operation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
    CreateTokens = 13,
    DescribeTokens = 14,
});
kafka_codes!(Permission { Deny = 2, Allow = 3 });

/// Kafka's wire code for ANY in every ACL enum (and for MATCH in pattern types, 2).
pub const ANY_CODE: i8 = 1;
/// Kafka's pattern-type code for MATCH (filters only).
pub const MATCH_CODE: i8 = 2;

impl ResourceType {
    /// A bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Topic => "topic",
            Self::Group => "group",
            Self::Cluster => "cluster",
            Self::TransactionalId => "transactional_id",
            Self::DelegationToken => "delegation_token",
            Self::User => "user",
        }
    }

    /// The operations Kafka reports in "authorized operations" fields for this resource type.
    pub fn reported_operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Self::Topic => &[Read, Write, Create, Delete, Alter, Describe, DescribeConfigs, AlterConfigs],
            Self::Group => &[Read, Delete, Describe],
            Self::Cluster => &[Create, Alter, Describe, ClusterAction, DescribeConfigs, AlterConfigs, IdempotentWrite],
            Self::TransactionalId => &[Write, Describe],
            Self::DelegationToken => &[Describe],
            Self::User => &[CreateTokens, DescribeTokens],
        }
    }
}

impl Operation {
    /// A bounded metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Read => "read",
            Self::Write => "write",
            Self::Create => "create",
            Self::Delete => "delete",
            Self::Alter => "alter",
            Self::Describe => "describe",
            Self::ClusterAction => "cluster_action",
            Self::DescribeConfigs => "describe_configs",
            Self::AlterConfigs => "alter_configs",
            Self::IdempotentWrite => "idempotent_write",
            Self::CreateTokens => "create_tokens",
            Self::DescribeTokens => "describe_tokens",
        }
    }

    /// Whether an ALLOW for `self` grants `requested`.
    fn grants(self, requested: Operation) -> bool {
        use Operation::*;
        self == All
            || self == requested
            || (requested == Describe && matches!(self, Read | Write | Delete | Alter))
            || (requested == DescribeConfigs && self == AlterConfigs)
    }
}

impl AclBinding {
    /// Why Kafka would refuse to create this binding, if it would.
    pub fn invalid_because(&self) -> Option<String> {
        if self.resource_name.is_empty() {
            return Some("The resource name must not be empty".to_string());
        }
        if self.resource_type == ResourceType::Cluster && self.resource_name != CLUSTER_NAME {
            return Some(format!("The only valid name for the CLUSTER resource is {CLUSTER_NAME}"));
        }
        match self.principal.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {}
            _ => return Some(format!("Could not parse principal from `{}` (expected Type:name, e.g. User:alice)", self.principal)),
        }
        if self.host.is_empty() {
            return Some("The host must not be empty (use * for any host)".to_string());
        }
        None
    }

    /// Whether this binding's pattern covers the resource called `name`.
    fn pattern_matches(&self, name: &str) -> bool {
        match self.pattern_type {
            PatternType::Literal => self.resource_name == name || self.resource_name == WILDCARD,
            PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
        }
    }

    /// Whether this binding applies to `who` acting on the resource `name` of `resource_type`.
    fn applies(&self, who: &Requester, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && (self.principal == who.principal || self.principal == WILDCARD_PRINCIPAL)
            && (self.host == who.host || self.host == WILDCARD)
            && self.pattern_matches(name)
    }
}

/// Who asks: the connection's principal and the client's address (no port).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

/// Whether `who` may perform `operation` on the resource `name` of `resource_type`, by the ACLs
/// alone (super users are decided before this is asked).
pub fn authorize(acls: &BTreeSet<AclBinding>, who: &Requester, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
    let mut allowed = false;
    for binding in acls.iter().filter(|binding| binding.applies(who, resource_type, name)) {
        match binding.permission {
            Permission::Deny if binding.operation == Operation::All || binding.operation == operation => return false,
            Permission::Deny => {}
            Permission::Allow => allowed |= binding.operation.grants(operation),
        }
    }
    allowed
}

/// Whether `who` may perform `operation` on at least one resource of `resource_type` (Kafka's
/// `authorizeByResourceType`, used for idempotent producers: WRITE on any topic implies
/// IDEMPOTENT_WRITE). An ALLOW counts unless a DENY for the same principal and host covers every
/// name it allows: a DENY on `*`, a DENY prefix of its name, or a DENY on its exact literal name.
pub fn authorize_any(acls: &BTreeSet<AclBinding>, who: &Requester, operation: Operation, resource_type: ResourceType) -> bool {
    let relevant = |binding: &&AclBinding| {
        binding.resource_type == resource_type
            && (binding.principal == who.principal || binding.principal == WILDCARD_PRINCIPAL)
            && (binding.host == who.host || binding.host == WILDCARD)
    };
    let denies: Vec<&AclBinding> = acls
        .iter()
        .filter(relevant)
        .filter(|binding| binding.permission == Permission::Deny && (binding.operation == Operation::All || binding.operation == operation))
        .collect();
    let covered = |allow: &AclBinding| {
        denies.iter().any(|deny| match deny.pattern_type {
            PatternType::Literal if deny.resource_name == WILDCARD => true,
            PatternType::Literal => allow.pattern_type == PatternType::Literal && allow.resource_name == deny.resource_name,
            PatternType::Prefixed => allow.resource_name.starts_with(deny.resource_name.as_str()),
        })
    };
    acls.iter()
        .filter(relevant)
        .filter(|binding| binding.permission == Permission::Allow && binding.operation.grants(operation))
        .any(|allow| !covered(allow))
}

/// Kafka's "authorized operations" bit set for a resource: bit `code` is set for each operation
/// `allowed` grants among those Kafka reports for the type.
pub fn authorized_operations(resource_type: ResourceType, allowed: impl Fn(Operation) -> bool) -> i32 {
    resource_type
        .reported_operations()
        .iter()
        .filter(|operation| allowed(**operation))
        .fold(0, |bits, operation| bits | 1 << operation.kafka_code())
}

/// How a filter matches resource names (Kafka's pattern-type filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternFilter {
    /// ANY: bindings of either pattern type whose name is the filter's.
    Any,
    /// MATCH: every binding that would apply to a resource called by the filter's name.
    Match,
    /// LITERAL or PREFIXED: that pattern type and exactly that name.
    Exactly(PatternType),
}

/// A DescribeAcls or DeleteAcls filter: `None` (Kafka's null or ANY) matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let equal_or_any = |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|wanted| wanted == value);
        self.resource_type.is_none_or(|wanted| wanted == binding.resource_type)
            && self.operation.is_none_or(|wanted| wanted == binding.operation)
            && self.permission.is_none_or(|wanted| wanted == binding.permission)
            && equal_or_any(&self.principal, &binding.principal)
            && equal_or_any(&self.host, &binding.host)
            && match (self.pattern, self.resource_name.as_deref()) {
                (PatternFilter::Exactly(pattern), name) => {
                    pattern == binding.pattern_type && name.is_none_or(|name| name == binding.resource_name)
                }
                (_, None) => true,
                (PatternFilter::Any, Some(name)) => name == binding.resource_name,
                (PatternFilter::Match, Some(name)) => binding.pattern_matches(name),
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type,
            resource_name: name.to_string(),
            principal: principal.to_string(),
            host: WILDCARD.to_string(),
            operation,
            permission,
        }
    }

    const ALICE: Requester = Requester { principal: "User:alice", host: "10.0.0.1" };
    const BOB: Requester = Requester { principal: "User:bob", host: "10.0.0.2" };
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn no_acl_means_no_access() {
        assert!(!authorize(&BTreeSet::new(), &ALICE, Read, Topic, "orders"));
    }

    #[test]
    fn literal_prefixed_and_wildcard_patterns_match_as_in_kafka() {
        let acls = BTreeSet::from([
            binding(Topic, Literal, "orders", "User:alice", Write, Allow),
            binding(Topic, Prefixed, "logs-", "User:alice", Read, Allow),
            binding(Group, Literal, WILDCARD, "User:*", Read, Allow),
        ]);
        assert!(authorize(&acls, &ALICE, Write, Topic, "orders"));
        assert!(!authorize(&acls, &ALICE, Write, Topic, "orders-2"), "a literal name is not a prefix");
        assert!(authorize(&acls, &ALICE, Read, Topic, "logs-app"));
        assert!(!authorize(&acls, &ALICE, Read, Topic, "log"));
        assert!(!authorize(&acls, &BOB, Write, Topic, "orders"), "another principal");
        assert!(authorize(&acls, &BOB, Read, Group, "any-group"), "User:* on * matches everyone and every group");
        assert!(!authorize(&acls, &ALICE, Read, Topic, "orders"), "WRITE does not grant READ");
    }

    #[test]
    fn deny_wins_and_implied_operations_grant_describe_but_deny_only_what_it_names() {
        let acls = BTreeSet::from([
            binding(Topic, Prefixed, "", "User:alice", All, Allow),
            binding(Topic, Literal, "secret", "User:alice", Read, Deny),
            binding(Topic, Literal, "alter-only", "User:bob", AlterConfigs, Allow),
            binding(Topic, Literal, "alter-only", "User:bob", Write, Allow),
        ]);
        assert!(authorize(&acls, &ALICE, Create, Topic, "anything"), "ALL on the empty prefix");
        assert!(!authorize(&acls, &ALICE, Read, Topic, "secret"), "DENY READ wins over ALLOW ALL");
        assert!(authorize(&acls, &ALICE, Describe, Topic, "secret"), "DENY READ does not deny DESCRIBE");
        assert!(authorize(&acls, &BOB, DescribeConfigs, Topic, "alter-only"), "ALTER_CONFIGS implies DESCRIBE_CONFIGS");
        assert!(authorize(&acls, &BOB, Describe, Topic, "alter-only"), "WRITE implies DESCRIBE");
        assert!(!authorize(&acls, &BOB, Read, Topic, "alter-only"));
    }

    #[test]
    fn hosts_must_match_unless_the_binding_says_any_host() {
        let mut only_one_host = binding(Topic, Literal, "t", "User:alice", Read, Allow);
        only_one_host.host = "10.0.0.9".to_string();
        let acls = BTreeSet::from([only_one_host]);
        assert!(!authorize(&acls, &ALICE, Read, Topic, "t"));
        assert!(authorize(&acls, &Requester { host: "10.0.0.9", ..ALICE }, Read, Topic, "t"));
    }

    #[test]
    fn write_on_any_topic_counts_unless_a_deny_covers_it() {
        let allow = binding(Topic, Prefixed, "app-", "User:alice", Write, Allow);
        assert!(authorize_any(&BTreeSet::from([allow.clone()]), &ALICE, Write, Topic));
        assert!(!authorize_any(&BTreeSet::from([allow.clone()]), &BOB, Write, Topic));
        let deny_prefix = binding(Topic, Prefixed, "app", "User:alice", Write, Deny);
        assert!(!authorize_any(&BTreeSet::from([allow.clone(), deny_prefix]), &ALICE, Write, Topic));
        let deny_other = binding(Topic, Literal, "other", "User:alice", Write, Deny);
        assert!(authorize_any(&BTreeSet::from([allow, deny_other]), &ALICE, Write, Topic));
    }

    #[test]
    fn authorized_operations_set_kafkas_bits() {
        let acls = BTreeSet::from([binding(Topic, Literal, "t", "User:alice", Read, Allow)]);
        let bits = authorized_operations(Topic, |operation| authorize(&acls, &ALICE, operation, Topic, "t"));
        assert_eq!(bits, 1 << 3 | 1 << 8, "READ and the DESCRIBE it implies");
    }

    #[test]
    fn filters_match_by_any_match_and_exact_pattern() {
        let literal = binding(Topic, Literal, "orders", "User:alice", Write, Allow);
        let wildcard = binding(Topic, Literal, WILDCARD, "User:bob", Read, Allow);
        let prefixed = binding(Topic, Prefixed, "ord", "User:bob", Read, Allow);
        let filter = |pattern, name: Option<&str>| AclFilter {
            resource_type: Some(Topic),
            resource_name: name.map(str::to_string),
            pattern,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        };
        let matched = |filter: AclFilter| [&literal, &wildcard, &prefixed].iter().filter(|binding| filter.matches(binding)).count();
        assert_eq!(matched(filter(PatternFilter::Any, None)), 3);
        assert_eq!(matched(filter(PatternFilter::Any, Some("orders"))), 1);
        assert_eq!(matched(filter(PatternFilter::Match, Some("orders"))), 3);
        assert_eq!(matched(filter(PatternFilter::Exactly(Prefixed), Some("ord"))), 1);
        assert_eq!(matched(filter(PatternFilter::Exactly(Literal), None)), 2);
        let by_principal = AclFilter { principal: Some("User:alice".into()), ..filter(PatternFilter::Any, None) };
        assert_eq!(matched(by_principal), 1);
    }

    #[test]
    fn kafka_refuses_a_cluster_acl_not_named_kafka_cluster_and_a_principal_without_a_type() {
        let mut cluster = binding(Cluster, Literal, "mine", "User:alice", Alter, Allow);
        assert!(cluster.invalid_because().is_some());
        cluster.resource_name = CLUSTER_NAME.to_string();
        assert_eq!(cluster.invalid_because(), None);
        cluster.principal = "alice".to_string();
        assert!(cluster.invalid_because().unwrap().contains("Type:name"));
    }

    #[test]
    fn wire_codes_are_kafkas() {
        assert_eq!(Operation::from_kafka_code(12), Some(IdempotentWrite));
        assert_eq!(Operation::from_kafka_code(ANY_CODE), None);
        assert_eq!(ResourceType::Topic.kafka_code(), 2);
        assert_eq!(PatternType::from_kafka_code(MATCH_CODE), None);
        assert_eq!(Permission::Allow.kafka_code(), 3);
    }
}
