//! Transactions in the in-process tier (see `handlers.rs` for the tier): the transactional
//! handlers, read_committed fetches and the fencing of an older producer, through
//! `handlers::dispatch` with typed requests. The Java client's view is `e2e/tests/transactions.rs`.

mod common;

use bytes::Bytes;
use common::{encode, error, topic, InProcess, Writer};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::txn_offset_commit_request::{TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;

fn id(value: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(value.to_string()))
}

/// A transactional batch of `count` records from `producer` at `sequence`.
fn transactional_batch(producer: (i64, i16), sequence: i32, count: usize, label: &str) -> Bytes {
    let writer = Writer { producer_id: producer.0, producer_epoch: producer.1, base_sequence: sequence, transactional: true };
    encode(0, count, Some(&writer), label)
}

async fn init(agent: &InProcess, transactional_id: &str) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(id(transactional_id)))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let ResponseKind::InitProducerId(response) = agent.call(ApiKey::InitProducerId, 5, RequestKind::InitProducerId(request)).await else {
        panic!("not an InitProducerId response")
    };
    assert_eq!(error(response.error_code), None);
    (response.producer_id.0, response.producer_epoch)
}

async fn add_partition(agent: &InProcess, transactional_id: &str, producer: (i64, i16)) -> i16 {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(id(transactional_id))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default().with_name(topic("orders")).with_partitions(vec![0])]);
    let ResponseKind::AddPartitionsToTxn(response) =
        agent.call(ApiKey::AddPartitionsToTxn, 3, RequestKind::AddPartitionsToTxn(request)).await
    else {
        panic!("not an AddPartitionsToTxn response")
    };
    response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn produce(agent: &InProcess, batch: Bytes) -> (i16, i64) {
    let request =
        ProduceRequest::default().with_transactional_id(Some(id("tx"))).with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic("orders"))
                .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch))]),
        ]);
    let ResponseKind::Produce(response) = agent.call(ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
        panic!("not a Produce response")
    };
    let partition = &response.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

async fn end(agent: &InProcess, producer: (i64, i16), commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(id("tx"))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let ResponseKind::EndTxn(response) = agent.call(ApiKey::EndTxn, 4, RequestKind::EndTxn(request)).await else {
        panic!("not an EndTxn response")
    };
    response.error_code
}

/// What a fetch from offset 0 returns: (last stable offset, aborted producer ids and first
/// offsets, data values, control batch count).
async fn fetch(agent: &InProcess, read_committed: bool) -> (i64, Option<Vec<(i64, i64)>>, Vec<String>, usize) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(i8::from(read_committed))
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic("orders"))
            .with_partitions(vec![FetchPartition::default().with_partition(0).with_fetch_offset(0).with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(response) = agent.call(ApiKey::Fetch, 12, RequestKind::Fetch(request)).await else {
        panic!("not a Fetch response")
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(error(partition.error_code), None);
    let aborted = partition
        .aborted_transactions
        .as_ref()
        .map(|list| list.iter().map(|aborted| (aborted.producer_id.0, aborted.first_offset)).collect());
    let mut bytes = partition.records.clone().unwrap_or_default();
    let (mut values, mut markers) = (Vec::new(), 0);
    while !bytes.is_empty() {
        let set = RecordBatchDecoder::decode(&mut bytes).expect("a batch");
        for record in set.records {
            if record.control {
                markers += 1;
            } else {
                values.push(String::from_utf8_lossy(&record.value.unwrap_or_default()).into_owned());
            }
        }
    }
    (partition.last_stable_offset, aborted, values, markers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_records_are_hidden_from_read_committed_and_committed_ones_shown_with_their_markers() {
    let agent = InProcess::start().await;
    agent.create_topic("orders", 1).await;
    let producer = init(&agent, "tx").await;

    // Data for a partition not yet in the transaction is refused (KIP-890 part 1 at apply).
    let (code, _) = produce(&agent, transactional_batch(producer, 0, 3, "early")).await;
    assert_eq!(error(code), Some(ResponseError::InvalidTxnState));

    assert_eq!(add_partition(&agent, "tx", producer).await, 0);
    assert_eq!(produce(&agent, transactional_batch(producer, 0, 3, "aborted")).await, (0, 0));
    let (last_stable, aborted, values, _) = fetch(&agent, true).await;
    assert_eq!((last_stable, aborted, values.len()), (0, Some(vec![]), 0), "an open transaction hides its records");
    let (_, aborted, values, _) = fetch(&agent, false).await;
    assert_eq!((aborted, values.len()), (None, 3), "read_uncommitted sees them");

    assert_eq!(end(&agent, producer, false).await, 0);
    assert_eq!(add_partition(&agent, "tx", producer).await, 0);
    assert_eq!(produce(&agent, transactional_batch(producer, 3, 2, "committed")).await, (0, 4), "after the abort marker at 3");
    assert_eq!(end(&agent, producer, true).await, 0);
    assert_eq!(end(&agent, producer, true).await, 0, "a retried commit is answered the same");
    assert_eq!(error(end(&agent, producer, false).await), Some(ResponseError::InvalidTxnState));

    let (last_stable, aborted, values, markers) = fetch(&agent, true).await;
    assert_eq!(last_stable, 7, "3 aborted, a marker, 2 committed, a marker");
    assert_eq!(aborted, Some(vec![(producer.0, 0)]), "the consumer drops producer's records from offset 0 to its abort marker");
    assert_eq!(values, ["aborted-0", "aborted-1", "aborted-2", "committed-0", "committed-1"]);
    assert_eq!(markers, 2);

    let request = ListOffsetsRequest::default().with_isolation_level(1).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic("orders"))
        .with_partitions(vec![ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
    let ResponseKind::ListOffsets(response) = agent.call(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(request)).await else {
        panic!("not a ListOffsets response")
    };
    assert_eq!(response.topics[0].partitions[0].offset, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_aborts_and_fences_the_old_one_and_offsets_commit_with_the_transaction() {
    let agent = InProcess::start().await;
    agent.create_topic("orders", 1).await;
    let zombie = init(&agent, "tx").await;
    assert_eq!(add_partition(&agent, "tx", zombie).await, 0);
    assert_eq!(produce(&agent, transactional_batch(zombie, 0, 2, "zombie")).await.0, 0);

    // Offsets in the transaction: invisible to a stable OffsetFetch until the commit.
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(id("tx"))
        .with_producer_id(ProducerId(zombie.0))
        .with_producer_epoch(zombie.1)
        .with_group_id(GroupId(StrBytes::from_static_str("g")));
    let ResponseKind::AddOffsetsToTxn(response) = agent.call(ApiKey::AddOffsetsToTxn, 3, RequestKind::AddOffsetsToTxn(request)).await
    else {
        panic!("not an AddOffsetsToTxn response")
    };
    assert_eq!(response.error_code, 0);
    let commit_offset = |producer: (i64, i16)| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(id("tx"))
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_producer_id(ProducerId(producer.0))
            .with_producer_epoch(producer.1)
            .with_generation_id(-1)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(topic("input"))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(42)])])
    };
    let ResponseKind::TxnOffsetCommit(response) =
        agent.call(ApiKey::TxnOffsetCommit, 3, RequestKind::TxnOffsetCommit(commit_offset(zombie))).await
    else {
        panic!("not a TxnOffsetCommit response")
    };
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    let stable_fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_require_stable(true)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default().with_name(topic("input")).with_partition_indexes(vec![0])]));
    let ResponseKind::OffsetFetch(response) = agent.call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(stable_fetch.clone())).await
    else {
        panic!("not an OffsetFetch response")
    };
    assert_eq!(error(response.topics[0].partitions[0].error_code), Some(ResponseError::UnstableOffsetCommit));

    // A second producer with the same transactional id aborts the zombie's transaction.
    let fresh = init(&agent, "tx").await;
    assert_eq!(fresh.0, zombie.0);
    assert!(fresh.1 > zombie.1, "the epoch moves forward: {fresh:?} after {zombie:?}");
    let (code, _) = produce(&agent, transactional_batch(zombie, 2, 1, "zombie")).await;
    assert_eq!(error(code), Some(ResponseError::InvalidProducerEpoch), "the zombie's data is fenced");
    assert_eq!(error(end(&agent, zombie, true).await), Some(ResponseError::ProducerFenced));
    let (_, aborted, values, _) = fetch(&agent, true).await;
    assert_eq!((aborted, values.len()), (Some(vec![(zombie.0, 0)]), 2), "the zombie's records are aborted");

    // A TxnOffsetCommit carrying group metadata from no current member is fenced (KIP-447).
    let ghost = commit_offset(zombie).with_generation_id(5).with_member_id(StrBytes::from_static_str("ghost"));
    let ResponseKind::TxnOffsetCommit(response) = agent.call(ApiKey::TxnOffsetCommit, 3, RequestKind::TxnOffsetCommit(ghost)).await else {
        panic!("not a TxnOffsetCommit response")
    };
    assert_eq!(error(response.topics[0].partitions[0].error_code), Some(ResponseError::UnknownMemberId));

    // The new producer commits offsets with a transaction.
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(id("tx"))
        .with_producer_id(ProducerId(fresh.0))
        .with_producer_epoch(fresh.1)
        .with_group_id(GroupId(StrBytes::from_static_str("g")));
    agent.call(ApiKey::AddOffsetsToTxn, 3, RequestKind::AddOffsetsToTxn(request)).await;
    agent.call(ApiKey::TxnOffsetCommit, 3, RequestKind::TxnOffsetCommit(commit_offset(fresh))).await;
    assert_eq!(end(&agent, fresh, true).await, 0);
    let ResponseKind::OffsetFetch(response) = agent.call(ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(stable_fetch)).await else {
        panic!("not an OffsetFetch response")
    };
    assert_eq!((response.topics[0].partitions[0].error_code, response.topics[0].partitions[0].committed_offset), (0, 42));

    // kafka-transactions' view.
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![id("tx"), id("unknown")]);
    let ResponseKind::DescribeTransactions(response) =
        agent.call(ApiKey::DescribeTransactions, 0, RequestKind::DescribeTransactions(request)).await
    else {
        panic!("not a DescribeTransactions response")
    };
    assert_eq!(response.transaction_states[0].transaction_state.as_str(), "CompleteCommit");
    assert_eq!(response.transaction_states[0].producer_epoch, fresh.1);
    assert_eq!(error(response.transaction_states[1].error_code), Some(ResponseError::TransactionalIdNotFound));
    let request = ListTransactionsRequest::default().with_state_filters(vec![StrBytes::from_static_str("CompleteCommit")]);
    let ResponseKind::ListTransactions(response) = agent.call(ApiKey::ListTransactions, 1, RequestKind::ListTransactions(request)).await
    else {
        panic!("not a ListTransactions response")
    };
    assert_eq!(response.transaction_states.len(), 1);
    assert_eq!(response.transaction_states[0].transactional_id.0.as_str(), "tx");
}
