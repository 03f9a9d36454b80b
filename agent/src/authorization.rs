//! Authorization with Kafka ACLs (`--acl-authorization`): the decision for one request, taken from
//! the ACLs in this agent's replica of the journal (`floe_meta::acl`) and this agent's super users.
//!
//! Which operation each API needs on which resource is written next to the handler table
//! (`handlers::APIS`, the `acl` column) and checked by each handler where it knows the resource
//! names; the codes answered are Kafka's (TOPIC_AUTHORIZATION_FAILED, GROUP_AUTHORIZATION_FAILED,
//! CLUSTER_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
//!
//! With authorization off every client may do everything (Kafka without `authorizer.class.name`),
//! and CreateAcls, DescribeAcls and DeleteAcls answer SECURITY_DISABLED.

use crate::handlers::{AgentContext, ClientInfo};
use floe_meta::acl::{self, Operation, Requester, ResourceType, CLUSTER_NAME};
use std::collections::BTreeSet;

/// `--acl-authorization` and `--super-users`.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationSettings {
    /// Principals allowed everything whatever the ACLs say (Kafka's `super.users`), for example
    /// `User:admin`. The SASL bootstrap user is always one: it is the identity that creates the
    /// first ACLs.
    pub super_users: BTreeSet<String>,
}

impl AuthorizationSettings {
    /// Parses Kafka's `super.users` form: principals separated by `;`.
    pub fn parse_super_users(text: &str) -> Result<BTreeSet<String>, String> {
        let mut users = BTreeSet::new();
        for principal in text.split(';').map(str::trim).filter(|principal| !principal.is_empty()) {
            match principal.split_once(':') {
                Some((kind, name)) if !kind.is_empty() && !name.is_empty() => {
                    users.insert(principal.to_string());
                }
                _ => return Err(format!("--super-users: `{principal}` is not a principal; example: User:admin;User:ops")),
            }
        }
        Ok(users)
    }
}

impl ClientInfo {
    fn requester(&self) -> Requester<'_> {
        Requester { principal: &self.principal, host: &self.address }
    }
}

impl AgentContext {
    /// Whether the ACLs are enforced on this agent.
    pub fn authorization_on(&self) -> bool {
        self.settings.authorization.is_some()
    }

    /// Whether `client` may perform `operation` on the resource `name` of `resource_type`. A
    /// refusal is counted in `floe_authorization_denials_total` and logged at debug.
    pub fn allowed(&self, client: &ClientInfo, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        let allowed = self.decide(client, |acls, who| acl::authorize(acls, who, operation, resource_type, name));
        if !allowed {
            self.count_denial(client, operation, resource_type, name);
        }
        allowed
    }

    /// [`Self::allowed`] for the cluster resource.
    pub fn allowed_on_cluster(&self, client: &ClientInfo, operation: Operation) -> bool {
        self.allowed(client, operation, ResourceType::Cluster, CLUSTER_NAME)
    }

    /// Like [`Self::allowed`], for a check whose failure is not a refusal (Metadata leaving out a
    /// topic the client did not name, ListGroups leaving out a group): nothing is counted.
    pub fn visible(&self, client: &ClientInfo, operation: Operation, resource_type: ResourceType, name: &str) -> bool {
        self.decide(client, |acls, who| acl::authorize(acls, who, operation, resource_type, name))
    }

    /// Whether `client` may perform `operation` on some resource of `resource_type` (idempotent
    /// producers: WRITE on any topic, as Kafka since 2.8).
    pub fn allowed_on_any(&self, client: &ClientInfo, operation: Operation, resource_type: ResourceType) -> bool {
        self.decide(client, |acls, who| acl::authorize_any(acls, who, operation, resource_type))
    }

    /// Kafka's authorized-operations bits for a resource; all of the type's operations when
    /// authorization is off (as Kafka without an authorizer).
    pub fn authorized_operations(&self, client: &ClientInfo, resource_type: ResourceType, name: &str) -> i32 {
        acl::authorized_operations(resource_type, |operation| self.visible(client, operation, resource_type, name))
    }

    fn decide(&self, client: &ClientInfo, decision: impl FnOnce(&BTreeSet<acl::AclBinding>, &Requester) -> bool) -> bool {
        let Some(settings) = &self.settings.authorization else { return true };
        if settings.super_users.contains(client.principal.as_ref()) {
            return true;
        }
        let who = client.requester();
        self.metadata.read(|state| decision(&state.acls, &who))
    }

    fn count_denial(&self, client: &ClientInfo, operation: Operation, resource_type: ResourceType, name: &str) {
        self.metrics.authorization_denials.with_label_values(&[resource_type.label(), operation.label()]).inc();
        tracing::debug!(
            principal = %client.principal,
            host = %client.address,
            operation = operation.label(),
            resource_type = resource_type.label(),
            resource = name,
            "denied by the ACLs"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn super_users_parse_in_kafkas_semicolon_form_and_a_bare_name_is_refused() {
        let users = AuthorizationSettings::parse_super_users("User:admin; User:ops;").unwrap();
        assert_eq!(users, BTreeSet::from(["User:admin".to_string(), "User:ops".to_string()]));
        let error = AuthorizationSettings::parse_super_users("admin").unwrap_err();
        assert!(error.contains("User:admin"), "{error}");
    }
}
