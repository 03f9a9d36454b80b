//! DescribeClientQuotas: Floe enforces no client quotas (none can be set: AlterClientQuotas is not
//! offered), so the truthful answer to any valid filter is "no quotas". It exists because
//! `kafka-configs --describe --entity-type users` asks for quotas before it shows a user's SCRAM
//! credentials, and fails on an agent that does not answer. A malformed filter gets Kafka's
//! INVALID_REQUEST with the reason.

use super::{str_bytes, AgentContext, ClientInfo};
use floe_meta::acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};

/// Kafka's entity types and match types (`ClientQuotaFilterComponent`).
const ENTITY_TYPES: [&str; 3] = ["user", "client-id", "ip"];
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

fn check(request: &DescribeClientQuotasRequest) -> Result<(), String> {
    let mut seen = Vec::new();
    for component in &request.components {
        let entity_type = component.entity_type.as_str();
        if !ENTITY_TYPES.contains(&entity_type) {
            return Err(format!("unknown entity type {entity_type:?}; the types are user, client-id and ip"));
        }
        if seen.contains(&entity_type) {
            return Err(format!("entity type {entity_type:?} appears twice in the filter"));
        }
        seen.push(entity_type);
        match component.match_type {
            MATCH_EXACT if component._match.is_none() => return Err(format!("an exact match on {entity_type} needs a name")),
            MATCH_EXACT | MATCH_DEFAULT | MATCH_ANY => {}
            other => return Err(format!("unknown match type {other} for {entity_type}")),
        }
    }
    Ok(())
}

pub fn describe(context: &AgentContext, request: DescribeClientQuotasRequest, client: &ClientInfo) -> DescribeClientQuotasResponse {
    if !context.allowed_on_cluster(client, Operation::DescribeConfigs) {
        return DescribeClientQuotasResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(str_bytes("not authorized to describe the cluster's quotas")))
            .with_entries(None);
    }
    match check(&request) {
        Ok(()) => DescribeClientQuotasResponse::default().with_entries(Some(Vec::new())),
        Err(reason) => DescribeClientQuotasResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(str_bytes(reason)))
            .with_entries(None),
    }
}
