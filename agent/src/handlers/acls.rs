//! CreateAcls, DescribeAcls and DeleteAcls: what `kafka-acls` and `Admin.createAcls` /
//! `describeAcls` / `deleteAcls` use. ACLs live in the journal (`floe_meta::acl`), so every agent
//! authorizes the next request against the same set as soon as the record is applied. Checks and
//! codes follow Kafka: SECURITY_DISABLED when authorization is off, CLUSTER_AUTHORIZATION_FAILED
//! without ALTER (create, delete) or DESCRIBE (describe) on the cluster, INVALID_REQUEST naming
//! the field for a binding or filter Kafka would refuse.

use super::{str_bytes, AgentContext, ClientInfo};
use crate::metadata::{ApplyOutcome, JournalRecord};
use floe_meta::acl::{AclBinding, AclFilter, Operation, PatternFilter, PatternType, Permission, ResourceType, ANY_CODE, MATCH_CODE};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse, DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;

/// Kafka's message when no authorizer is configured.
const SECURITY_DISABLED: &str = "No Authorizer is configured (start the agents with --acl-authorization)";

type Refusal = (ResponseError, String);

/// Why `client` may not change or read the ACLs, if it may not.
fn refused(context: &AgentContext, client: &ClientInfo, operation: Operation) -> Option<Refusal> {
    if !context.authorization_on() {
        return Some((ResponseError::SecurityDisabled, SECURITY_DISABLED.to_string()));
    }
    let verb = if operation == Operation::Alter { "alter" } else { "describe" };
    (!context.allowed_on_cluster(client, operation)).then(|| {
        (
            ResponseError::ClusterAuthorizationFailed,
            format!("not authorized to {verb} ACLs: it needs {} on the cluster", verb.to_uppercase()),
        )
    })
}

fn invalid(message: String) -> Refusal {
    (ResponseError::InvalidRequest, message)
}

/// A creation as a binding, or Kafka's INVALID_REQUEST naming the field.
fn binding(creation: &AclCreation) -> Result<AclBinding, Refusal> {
    let resource_type = ResourceType::from_kafka_code(creation.resource_type).ok_or_else(|| {
        invalid(format!("Invalid resourceType {}: use topic, group, cluster or transactional-id", creation.resource_type))
    })?;
    let pattern_type = PatternType::from_kafka_code(creation.resource_pattern_type)
        .ok_or_else(|| invalid(format!("Invalid patternType {}: use LITERAL or PREFIXED", creation.resource_pattern_type)))?;
    let operation =
        Operation::from_kafka_code(creation.operation).ok_or_else(|| invalid(format!("Invalid operation {}", creation.operation)))?;
    let permission = Permission::from_kafka_code(creation.permission_type)
        .ok_or_else(|| invalid(format!("Invalid permissionType {}: use ALLOW or DENY", creation.permission_type)))?;
    let binding = AclBinding {
        resource_type,
        pattern_type,
        resource_name: creation.resource_name.to_string(),
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation,
        permission,
    };
    match binding.invalid_because() {
        Some(reason) => Err(invalid(reason)),
        None => Ok(binding),
    }
}

pub async fn create(context: &AgentContext, request: CreateAclsRequest, client: &ClientInfo) -> CreateAclsResponse {
    let refusal = refused(context, client, Operation::Alter);
    let checked: Vec<Result<AclBinding, Refusal>> = request
        .creations
        .iter()
        .map(|creation| match &refusal {
            Some(refusal) => Err(refusal.clone()),
            None => binding(creation),
        })
        .collect();
    let valid: Vec<AclBinding> = checked.iter().filter_map(|checked| checked.as_ref().ok().cloned()).collect();
    // The valid bindings of one request are written as one record: all of them or none.
    let committed = if valid.is_empty() {
        Ok(())
    } else {
        match context.metadata.submit(JournalRecord::CreateAcls { acls: valid }).await {
            Ok(ApplyOutcome::AclsCreated) => Ok(()),
            Ok(other) => {
                tracing::error!(?other, "unexpected outcome of an ACL creation");
                Err((ResponseError::UnknownServerError, "unexpected outcome; see the agent's log".to_string()))
            }
            Err(error) => {
                tracing::warn!(%error, "failed to commit ACLs");
                Err((ResponseError::RequestTimedOut, "the metadata journal did not accept the ACLs in time; retry".to_string()))
            }
        }
    };
    let results = checked
        .into_iter()
        .map(|checked| match checked.and_then(|_| committed.clone()) {
            Ok(()) => AclCreationResult::default(),
            Err((error, message)) => {
                AclCreationResult::default().with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

/// A filter's fields as Kafka sends them in DescribeAcls and DeleteAcls.
struct FilterFields<'a> {
    resource_type: i8,
    resource_name: Option<&'a StrBytes>,
    pattern_type: i8,
    principal: Option<&'a StrBytes>,
    host: Option<&'a StrBytes>,
    operation: i8,
    permission: i8,
}

/// ANY (`None`) or the code; UNKNOWN (0) and negative codes are refused in a filter.
fn any_or(code: i8, field: &str) -> Result<Option<i8>, Refusal> {
    match code {
        ANY_CODE => Ok(None),
        code if code > ANY_CODE => Ok(Some(code)),
        code => Err(invalid(format!("Invalid {field} filter {code}"))),
    }
}

/// A filter, or Kafka's INVALID_REQUEST naming the field (UNKNOWN and undefined codes).
fn filter(fields: FilterFields) -> Result<AclFilter, Refusal> {
    let resource_type = match any_or(fields.resource_type, "resourceType")? {
        None => None,
        Some(code) => Some(ResourceType::from_kafka_code(code).ok_or_else(|| invalid(format!("Invalid resourceType filter {code}")))?),
    };
    let pattern = match fields.pattern_type {
        ANY_CODE => PatternFilter::Any,
        MATCH_CODE => PatternFilter::Match,
        code => {
            PatternFilter::Exactly(PatternType::from_kafka_code(code).ok_or_else(|| invalid(format!("Invalid patternType filter {code}")))?)
        }
    };
    let operation = match any_or(fields.operation, "operation")? {
        None => None,
        Some(code) => Some(Operation::from_kafka_code(code).ok_or_else(|| invalid(format!("Invalid operation filter {code}")))?),
    };
    let permission = match any_or(fields.permission, "permissionType")? {
        None => None,
        Some(code) => Some(Permission::from_kafka_code(code).ok_or_else(|| invalid(format!("Invalid permissionType filter {code}")))?),
    };
    Ok(AclFilter {
        resource_type,
        resource_name: fields.resource_name.map(|name| name.to_string()),
        pattern,
        principal: fields.principal.map(|principal| principal.to_string()),
        host: fields.host.map(|host| host.to_string()),
        operation,
        permission,
    })
}

pub fn describe(context: &AgentContext, request: DescribeAclsRequest, client: &ClientInfo) -> DescribeAclsResponse {
    let checked = refused(context, client, Operation::Describe).map_or_else(
        || {
            filter(FilterFields {
                resource_type: request.resource_type_filter,
                resource_name: request.resource_name_filter.as_ref(),
                pattern_type: request.pattern_type_filter,
                principal: request.principal_filter.as_ref(),
                host: request.host_filter.as_ref(),
                operation: request.operation,
                permission: request.permission_type,
            })
        },
        Err,
    );
    let filter = match checked {
        Ok(filter) => filter,
        Err((error, message)) => {
            return DescribeAclsResponse::default().with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
        }
    };
    let matching: Vec<AclBinding> =
        context.metadata.read(|state| state.acls.iter().filter(|binding| filter.matches(binding)).cloned().collect());
    // One entry per resource pattern, its ACLs under it (Kafka's layout).
    let mut resources: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> = BTreeMap::new();
    for binding in matching {
        resources.entry((binding.resource_type, binding.resource_name.clone(), binding.pattern_type)).or_default().push(
            AclDescription::default()
                .with_principal(str_bytes(binding.principal))
                .with_host(str_bytes(binding.host))
                .with_operation(binding.operation.kafka_code())
                .with_permission_type(binding.permission.kafka_code()),
        );
    }
    let resources = resources
        .into_iter()
        .map(|((resource_type, name, pattern_type), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type.kafka_code())
                .with_resource_name(str_bytes(name))
                .with_pattern_type(pattern_type.kafka_code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

fn delete_filter(fields: &DeleteAclsFilter) -> Result<AclFilter, Refusal> {
    filter(FilterFields {
        resource_type: fields.resource_type_filter,
        resource_name: fields.resource_name_filter.as_ref(),
        pattern_type: fields.pattern_type_filter,
        principal: fields.principal_filter.as_ref(),
        host: fields.host_filter.as_ref(),
        operation: fields.operation,
        permission: fields.permission_type,
    })
}

fn matching_acl(binding: &AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(binding.resource_type.kafka_code())
        .with_resource_name(str_bytes(binding.resource_name.clone()))
        .with_pattern_type(binding.pattern_type.kafka_code())
        .with_principal(str_bytes(binding.principal.clone()))
        .with_host(str_bytes(binding.host.clone()))
        .with_operation(binding.operation.kafka_code())
        .with_permission_type(binding.permission.kafka_code())
}

pub async fn delete(context: &AgentContext, request: DeleteAclsRequest, client: &ClientInfo) -> DeleteAclsResponse {
    let refusal = refused(context, client, Operation::Alter);
    let filters: Vec<Result<AclFilter, Refusal>> = request
        .filters
        .iter()
        .map(|fields| match &refusal {
            Some(refusal) => Err(refusal.clone()),
            None => delete_filter(fields),
        })
        .collect();
    // The filters are resolved against this agent's replica; the record names exact bindings, and
    // apply reports those it removed, so a binding deleted concurrently elsewhere is not claimed.
    let doomed: Vec<AclBinding> = context.metadata.read(|state| {
        state.acls.iter().filter(|binding| filters.iter().flatten().any(|filter| filter.matches(binding))).cloned().collect()
    });
    let removed: Result<Vec<AclBinding>, Refusal> = if doomed.is_empty() {
        Ok(Vec::new())
    } else {
        match context.metadata.submit(JournalRecord::DeleteAcls { acls: doomed }).await {
            Ok(ApplyOutcome::AclsDeleted { removed }) => Ok(removed),
            Ok(other) => {
                tracing::error!(?other, "unexpected outcome of an ACL deletion");
                Err((ResponseError::UnknownServerError, "unexpected outcome; see the agent's log".to_string()))
            }
            Err(error) => {
                tracing::warn!(%error, "failed to commit an ACL deletion");
                Err((ResponseError::RequestTimedOut, "the metadata journal did not accept the deletion in time; retry".to_string()))
            }
        }
    };
    let results = filters
        .into_iter()
        .map(|filter| {
            let outcome = filter.and_then(|filter| removed.clone().map(|removed| (filter, removed)));
            match outcome {
                Ok((filter, removed)) => DeleteAclsFilterResult::default()
                    .with_matching_acls(removed.iter().filter(|binding| filter.matches(binding)).map(matching_acl).collect()),
                Err((error, message)) => {
                    DeleteAclsFilterResult::default().with_error_code(error.code()).with_error_message(Some(str_bytes(message)))
                }
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}
