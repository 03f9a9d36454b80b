//! The in-process harness shared by the tests in `agent/tests/`: a real playground agent
//! (embedded journal, file bucket) started in the test process from the same flags the binary
//! parses, and requests sent through `handlers::dispatch` as a given principal.

#![allow(dead_code)] // each test binary uses part of it

use bytes::{Bytes, BytesMut};
use clap::Parser;
use floe_agent::agent::RunningAgent;
use floe_agent::config::CommonArgs;
use floe_agent::handlers::{dispatch, ClientInfo, Reply};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use std::sync::Arc;

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    common: CommonArgs,
}

/// A playground agent in this process; shut down when the test ends.
pub struct InProcess {
    pub agent: Option<RunningAgent>,
    _directory: tempfile::TempDir,
}

impl InProcess {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// A playground started with these flags besides the tier's own.
    pub async fn start_with(extra: &[&str]) -> Self {
        let directory = tempfile::tempdir().expect("a temporary directory");
        let mut arguments = vec![
            "floe",
            "--kafka-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--flush-interval",
            "10ms",
            "--group-initial-rebalance-delay",
            "0ms",
            // Off, unlike the playground's default: this tier's Metadata requests ask about
            // unknown topics and expect them unknown.
            "--auto-create-topics=false",
        ];
        arguments.extend_from_slice(extra);
        let flags = Flags::try_parse_from(arguments).expect("the flags parse");
        let settings = floe_agent::launch::playground_settings(directory.path(), flags.common).expect("settings");
        let agent = floe_agent::agent::start(settings).await.expect("the playground starts");
        Self { agent: Some(agent), _directory: directory }
    }

    pub async fn call(&self, api: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        self.call_as("User:ANONYMOUS", api, version, request).await
    }

    /// A request from a connection whose principal is `principal` (from 127.0.0.1).
    pub async fn call_as(&self, principal: &str, api: ApiKey, version: i16, request: RequestKind) -> ResponseKind {
        let context = Arc::clone(&self.agent.as_ref().expect("running").context);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_client_id(Some(StrBytes::from_static_str("in-process")));
        let client = ClientInfo {
            client_id: "in-process".into(),
            host: "/127.0.0.1".into(),
            address: "127.0.0.1".into(),
            principal: Arc::from(principal),
        };
        match dispatch(context, header, request, client).await.await {
            Reply::Respond(response) => *response,
            Reply::Silent | Reply::Close => panic!("{api:?} gave no response"),
        }
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(5_000)
            .with_topics(vec![CreatableTopic::default().with_name(topic(name)).with_num_partitions(partitions).with_replication_factor(1)]);
        let ResponseKind::CreateTopics(response) = self.call(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(request)).await else {
            panic!("not a CreateTopics response")
        };
        assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0].error_message);
    }

    /// Produces `count` records to partition 0 with acks=all; returns the base offset.
    pub async fn produce(&self, name: &str, first: usize, count: usize) -> i64 {
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![TopicProduceData::default()
            .with_name(topic(name))
            .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(batch(first, count)))])]);
        let ResponseKind::Produce(response) = self.call(ApiKey::Produce, 9, RequestKind::Produce(request)).await else {
            panic!("not a Produce response")
        };
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0, "produce failed: {:?}", partition.error_message);
        partition.base_offset
    }
}

impl InProcess {
    /// The id of topic `name` (for requests that name topics by id).
    pub fn topic_id(&self, name: &str) -> uuid::Uuid {
        self.agent.as_ref().expect("running").context.metadata.read(|state| state.topics[name].id)
    }

    /// The agent's Prometheus text, as /metrics serves it.
    pub async fn metric_text(&self) -> String {
        self.agent.as_ref().expect("running").metrics.render()
    }

    /// A non-transactional producer's InitProducerId.
    pub async fn init_producer_id(&self) -> InitProducerIdResponse {
        let request = InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000);
        let ResponseKind::InitProducerId(response) = self.call(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(request)).await
        else {
            panic!("not an InitProducerId response")
        };
        response
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(agent) = self.agent.take() {
            // The runtime is ending with the test; stop the tasks so nothing outlives the directory.
            tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(agent.shutdown()));
        }
    }
}

pub fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub fn batch(first: usize, count: usize) -> Bytes {
    encode(first, count, None, "value")
}

/// Who wrote a batch: producer id, epoch, base sequence, and whether inside a transaction.
pub struct Writer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

/// Records `first..first + count` (keys `key-<i>`, values `<value_prefix>-<i>`) in one
/// uncompressed batch, from `writer` or from no producer.
pub fn encode(first: usize, count: usize, writer: Option<&Writer>, value_prefix: &str) -> Bytes {
    let records: Vec<Record> = (first..first + count)
        .map(|index| Record {
            transactional: writer.is_some_and(|writer| writer.transactional),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: writer.map_or(-1, |writer| writer.producer_id),
            producer_epoch: writer.map_or(-1, |writer| writer.producer_epoch),
            timestamp_type: TimestampType::Creation,
            offset: (index - first) as i64,
            sequence: writer.map_or(0, |writer| writer.base_sequence) + (index - first) as i32,
            timestamp: 1_700_000_000_000 + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(format!("{value_prefix}-{index}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(&mut buffer, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })
        .expect("encode");
    buffer.freeze()
}

pub fn error(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}
