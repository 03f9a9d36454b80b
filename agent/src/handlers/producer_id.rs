//! InitProducerId for idempotent producers: ids come from the journal so they are unique across
//! agents and restarts. Transactional producers are served by `transactions::init_producer`.

use super::{AgentContext, ClientInfo};
use crate::metadata::{ApplyOutcome, JournalRecord};
use floe_meta::acl::{Operation, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

pub async fn handle(context: &AgentContext, request: InitProducerIdRequest, client: &ClientInfo) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default().with_producer_id(ProducerId(-1)).with_producer_epoch(-1);
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster, or WRITE on some topic (Kafka
    // since 2.8, KIP-679).
    if request.transactional_id.is_none()
        && !context.visible(client, Operation::IdempotentWrite, ResourceType::Cluster, floe_meta::acl::CLUSTER_NAME)
        && !context.allowed_on_any(client, Operation::Write, ResourceType::Topic)
    {
        context.allowed_on_cluster(client, Operation::IdempotentWrite);
        return response.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    if request.transactional_id.is_some() {
        return super::transactions::init_producer(context, &request, client).await;
    }
    // A producer bumping its epoch (KIP-360) keeps its id.
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        let next_epoch = request.producer_epoch.checked_add(1).filter(|epoch| *epoch < i16::MAX);
        if let Some(epoch) = next_epoch {
            return response.with_producer_id(request.producer_id).with_producer_epoch(epoch);
        }
    }
    match context.metadata.submit(JournalRecord::AllocateProducerId).await {
        Ok(ApplyOutcome::ProducerIdAllocated { producer_id }) => response.with_producer_id(ProducerId(producer_id)).with_producer_epoch(0),
        Ok(other) => {
            tracing::warn!(?other, "unexpected outcome allocating a producer id");
            response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
        Err(error) => {
            tracing::warn!(%error, "failed to allocate a producer id");
            response.with_error_code(ResponseError::CoordinatorNotAvailable.code())
        }
    }
}
