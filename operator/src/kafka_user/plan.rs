//! Pure: the journal records that make a user's SCRAM credential and ACLs in a virtual cluster's
//! state what its KafkaUser says, or remove them all when the KafkaUser is gone.
//!
//! Existing records are used (no new journal format): `DeleteAcls` and `CreateAcls` for the
//! bindings of principal `User:<name>` that differ, then `AlterScramCredentials`. ACLs come
//! first, so there is never a moment in which the user authenticates with the ACLs of an older
//! spec still granting more, and a deletion takes the ACLs away before the credential. Applying
//! the plan twice is harmless: the second plan, computed from the new state, is empty.

use crate::crd::kafka_user::{AclOperationName, AclPatternName, AclPermissionName, AclResourceType, KafkaUserSpec, UserAuthenticationType};
use floe_meta::acl::{AclBinding, Operation, PatternType, Permission, ResourceType, CLUSTER_NAME, WILDCARD};
use floe_meta::records::JournalRecord;
use floe_meta::scram::{ScramCredential, ScramMechanism, MIN_ITERATIONS};
use floe_meta::state::MetadataState;
use std::collections::BTreeSet;

/// What the journal should hold for one user.
pub struct DesiredUser {
    pub name: String,
    pub mechanism: ScramMechanism,
    pub password: String,
    pub acls: BTreeSet<AclBinding>,
}

impl DesiredUser {
    pub fn from_spec(name: &str, spec: &KafkaUserSpec, password: String) -> Self {
        let mechanism = match spec.authentication.kind {
            UserAuthenticationType::ScramSha512 => ScramMechanism::Sha512,
            UserAuthenticationType::ScramSha256 => ScramMechanism::Sha256,
        };
        let principal = principal(name);
        let acls = spec
            .authorization
            .iter()
            .flat_map(|authorization| &authorization.acls)
            .flat_map(|acl| {
                let resource_type = match acl.resource.kind {
                    AclResourceType::Topic => ResourceType::Topic,
                    AclResourceType::Group => ResourceType::Group,
                    AclResourceType::Cluster => ResourceType::Cluster,
                    AclResourceType::TransactionalId => ResourceType::TransactionalId,
                };
                let (pattern_type, resource_name) = match resource_type {
                    // A cluster has one name; Kafka's tools write it literally.
                    ResourceType::Cluster => (PatternType::Literal, CLUSTER_NAME.to_string()),
                    _ => (
                        match acl.resource.pattern_type {
                            AclPatternName::Literal => PatternType::Literal,
                            AclPatternName::Prefix => PatternType::Prefixed,
                        },
                        acl.resource.name.clone().unwrap_or_else(|| WILDCARD.to_string()),
                    ),
                };
                let permission = match acl.permission {
                    AclPermissionName::Allow => Permission::Allow,
                    AclPermissionName::Deny => Permission::Deny,
                };
                let principal = principal.clone();
                acl.operations.iter().map(move |operation| AclBinding {
                    resource_type,
                    pattern_type,
                    resource_name: resource_name.clone(),
                    principal: principal.clone(),
                    host: acl.host.clone(),
                    operation: operation_of(*operation),
                    permission,
                })
            })
            .collect();
        Self { name: name.to_string(), mechanism, password, acls }
    }
}

fn operation_of(name: AclOperationName) -> Operation {
    match name {
        AclOperationName::All => Operation::All,
        AclOperationName::Read => Operation::Read,
        AclOperationName::Write => Operation::Write,
        AclOperationName::Create => Operation::Create,
        AclOperationName::Delete => Operation::Delete,
        AclOperationName::Alter => Operation::Alter,
        AclOperationName::Describe => Operation::Describe,
        AclOperationName::ClusterAction => Operation::ClusterAction,
        AclOperationName::DescribeConfigs => Operation::DescribeConfigs,
        AclOperationName::AlterConfigs => Operation::AlterConfigs,
        AclOperationName::IdempotentWrite => Operation::IdempotentWrite,
    }
}

pub fn principal(user: &str) -> String {
    format!("User:{user}")
}

/// The records that take `state` to `desired` for `user` (`None`: the user is removed). Checking
/// a password against a stored credential costs one PBKDF2 (milliseconds): call it off the async
/// workers.
pub fn records(state: &MetadataState, user: &str, desired: Option<&DesiredUser>) -> Vec<JournalRecord> {
    let principal = principal(user);
    let held: BTreeSet<AclBinding> = state.acls.iter().filter(|binding| binding.principal == principal).cloned().collect();
    let wanted = desired.map(|desired| desired.acls.clone()).unwrap_or_default();
    let mut records = Vec::new();
    let stale: Vec<AclBinding> = held.difference(&wanted).cloned().collect();
    if !stale.is_empty() {
        records.push(JournalRecord::DeleteAcls { acls: stale });
    }
    let missing: Vec<AclBinding> = wanted.difference(&held).cloned().collect();
    if !missing.is_empty() {
        records.push(JournalRecord::CreateAcls { acls: missing });
    }
    let credentials = state.scram_credentials.get(user);
    let keep = desired.map(|desired| desired.mechanism);
    let remove: Vec<ScramMechanism> =
        credentials.into_iter().flat_map(|held| held.keys().copied()).filter(|mechanism| Some(*mechanism) != keep).collect();
    let set: Vec<ScramCredential> = desired
        .filter(|desired| {
            !credentials
                .and_then(|held| held.get(&desired.mechanism))
                .is_some_and(|credential| credential.matches_password(&desired.password))
        })
        .map(|desired| ScramCredential::from_password(desired.mechanism, &desired.password, MIN_ITERATIONS))
        .into_iter()
        .collect();
    if !set.is_empty() || !remove.is_empty() {
        records.push(JournalRecord::AlterScramCredentials { user: user.to_string(), set, remove });
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::agent_pool::VirtualClusterReference;
    use crate::crd::kafka_user::{AclResource, UserAcl, UserAuthentication, UserAuthorization};

    fn spec(acls: Vec<UserAcl>) -> KafkaUserSpec {
        KafkaUserSpec {
            virtual_cluster_ref: VirtualClusterReference { name: "demo".to_string() },
            authentication: UserAuthentication { kind: UserAuthenticationType::ScramSha512, password: None },
            authorization: Some(UserAuthorization { acls }),
        }
    }

    fn topic_acl(name: &str, operations: Vec<AclOperationName>) -> UserAcl {
        UserAcl {
            resource: AclResource { kind: AclResourceType::Topic, name: Some(name.to_string()), pattern_type: AclPatternName::Literal },
            operations,
            host: "*".to_string(),
            permission: AclPermissionName::Allow,
        }
    }

    fn applied(mut state: MetadataState, records: &[JournalRecord]) -> MetadataState {
        for (revision, record) in records.iter().enumerate() {
            state.apply(state.applied_revision + revision as u64 + 1, record);
        }
        state
    }

    #[test]
    fn a_new_user_gets_its_acls_then_its_credential_and_a_second_plan_is_empty() {
        let desired = DesiredUser::from_spec(
            "orders",
            &spec(vec![topic_acl("orders", vec![AclOperationName::Read, AclOperationName::Write])]),
            "pw".into(),
        );
        let records = records(&MetadataState::default(), "orders", Some(&desired));
        assert!(matches!(&records[..], [JournalRecord::CreateAcls { acls }, JournalRecord::AlterScramCredentials { set, remove, .. }]
            if acls.len() == 2 && set.len() == 1 && remove.is_empty()));
        let state = applied(MetadataState::default(), &records);
        assert!(state.scram_credential("orders", ScramMechanism::Sha512).is_some_and(|credential| credential.matches_password("pw")));
        assert!(super::records(&state, "orders", Some(&desired)).is_empty(), "a converged user needs no record");
    }

    #[test]
    fn a_changed_spec_replaces_only_what_differs_and_other_principals_are_untouched() {
        let before = DesiredUser::from_spec(
            "orders",
            &spec(vec![topic_acl("orders", vec![AclOperationName::Read, AclOperationName::Write])]),
            "pw".into(),
        );
        let mut state = applied(MetadataState::default(), &records(&MetadataState::default(), "orders", Some(&before)));
        let other = AclBinding {
            resource_type: ResourceType::Topic,
            pattern_type: PatternType::Literal,
            resource_name: "orders".to_string(),
            principal: "User:billing".to_string(),
            host: "*".to_string(),
            operation: Operation::Read,
            permission: Permission::Allow,
        };
        state = applied(state, &[JournalRecord::CreateAcls { acls: vec![other.clone()] }]);
        let after = DesiredUser::from_spec("orders", &spec(vec![topic_acl("orders", vec![AclOperationName::Read])]), "pw2".into());
        let plan = records(&state, "orders", Some(&after));
        assert!(matches!(&plan[..], [JournalRecord::DeleteAcls { acls }, JournalRecord::AlterScramCredentials { set, .. }]
            if acls.len() == 1 && acls[0].operation == Operation::Write && set.len() == 1));
        let state = applied(state, &plan);
        assert!(state.acls.contains(&other));
        assert!(state.scram_credential("orders", ScramMechanism::Sha512).is_some_and(|credential| credential.matches_password("pw2")));
    }

    #[test]
    fn removing_a_user_takes_away_its_acls_and_every_credential() {
        let desired = DesiredUser::from_spec("orders", &spec(vec![topic_acl("orders", vec![AclOperationName::All])]), "pw".into());
        let mut state = applied(MetadataState::default(), &records(&MetadataState::default(), "orders", Some(&desired)));
        // A SHA-256 credential someone added with kafka-configs goes too.
        state = applied(
            state,
            &[JournalRecord::AlterScramCredentials {
                user: "orders".to_string(),
                set: vec![ScramCredential::from_password(ScramMechanism::Sha256, "x", MIN_ITERATIONS)],
                remove: vec![],
            }],
        );
        let plan = records(&state, "orders", None);
        assert!(matches!(&plan[..], [JournalRecord::DeleteAcls { .. }, JournalRecord::AlterScramCredentials { set, remove, .. }]
            if set.is_empty() && remove.len() == 2));
        let state = applied(state, &plan);
        assert!(!state.scram_credentials.contains_key("orders"));
        assert!(state.acls.is_empty());
        assert!(records(&state, "orders", None).is_empty());
    }

    #[test]
    fn a_cluster_acl_names_the_cluster_and_a_nameless_topic_acl_means_every_topic() {
        let cluster = UserAcl {
            resource: AclResource { kind: AclResourceType::Cluster, name: None, pattern_type: AclPatternName::Prefix },
            operations: vec![AclOperationName::IdempotentWrite],
            host: "*".to_string(),
            permission: AclPermissionName::Allow,
        };
        let desired = DesiredUser::from_spec("orders", &spec(vec![cluster]), "pw".into());
        let binding = desired.acls.iter().next().unwrap();
        assert_eq!((binding.resource_name.as_str(), binding.pattern_type), (CLUSTER_NAME, PatternType::Literal));
        assert_eq!(binding.principal, "User:orders");
    }
}
