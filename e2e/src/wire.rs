//! A raw Kafka connection for tests that must send what no well-behaved client sends.

use anyhow::{bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct RawConnection {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl RawConnection {
    pub fn connect(bootstrap: &str) -> Result<Self> {
        let stream = TcpStream::connect(bootstrap)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self { stream, next_correlation_id: 1 })
    }

    /// A second handle on the socket, for a test that writes from one thread while it reads.
    pub fn try_clone_stream(&self) -> Result<TcpStream> {
        Ok(self.stream.try_clone()?)
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends `body` as `api_key` v`version` with the matching header version.
    pub fn send<T: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &T) -> Result<i32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("floe-e2e-raw")));
        let mut buffer = BytesMut::new();
        buffer.put_i32(0);
        header.encode(&mut buffer, api_key.request_header_version(version))?;
        body.encode(&mut buffer, version)?;
        let size = (buffer.len() - 4) as i32;
        buffer[0..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&buffer)?;
        Ok(correlation_id)
    }

    /// Reads one response frame and decodes it as `T` at `version` (header version from the API).
    pub fn receive<T: Decodable>(&mut self, api_key: ApiKey, version: i16, correlation_id: i32) -> Result<T> {
        let mut frame = self.read_frame()?;
        let header_version = api_key.response_header_version(version);
        let received = frame.get_i32();
        if received != correlation_id {
            bail!("correlation id {received}, expected {correlation_id}");
        }
        if header_version >= 1 {
            // Tagged fields of response header v1: we expect none.
            let tags = frame.get_u8();
            if tags != 0 {
                bail!("unexpected tagged fields in the response header");
            }
        }
        T::decode(&mut frame, version)
    }

    fn read_frame(&mut self) -> Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame)?;
        Ok(Bytes::from(frame))
    }

    /// True when the agent closed the connection (end of stream or reset) within the timeout.
    pub fn is_closed_by_peer(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// Who wrote a batch: an idempotent producer's id, epoch and first sequence number.
#[derive(Debug, Clone, Copy)]
pub struct ProducerStamp {
    pub producer_id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// Encodes (key, value) pairs as one uncompressed magic-v2 batch, as a client would.
pub fn encode_batch(records: &[(Vec<u8>, Vec<u8>)], timestamp: i64) -> Result<Bytes> {
    encode_stamped_batch(records, timestamp, None)
}

/// Encodes (key, value) pairs as one uncompressed magic-v2 batch, stamped by an idempotent
/// producer when `producer` is given.
pub fn encode_stamped_batch(records: &[(Vec<u8>, Vec<u8>)], timestamp: i64, producer: Option<ProducerStamp>) -> Result<Bytes> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |stamp| stamp.producer_id),
            producer_epoch: producer.map_or(-1, |stamp| stamp.epoch),
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: producer.map_or(index as i32, |stamp| stamp.base_sequence + index as i32),
            timestamp,
            key: Some(Bytes::from(key.clone())),
            value: Some(Bytes::from(value.clone())),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(&mut batch, records.iter(), &RecordEncodeOptions { version: 2, compression: Compression::None })?;
    Ok(batch.freeze())
}

/// Produces `records` (key, value) as one uncompressed batch to a partition over a raw connection
/// (acks=all) and returns the base offset the agent assigned.
pub fn produce_batch(connection: &mut RawConnection, topic: &str, partition: i32, records: &[(Vec<u8>, Vec<u8>)]) -> Result<i64> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ProduceResponse, TopicName};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let batch = encode_batch(records, now)?;
    let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![TopicProduceData::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(batch))])]);
    let correlation = connection.send(ApiKey::Produce, 9, &request)?;
    let response: ProduceResponse = connection.receive(ApiKey::Produce, 9, correlation)?;
    let answer = &response.responses[0].partition_responses[0];
    if answer.error_code != 0 {
        bail!("produce to {topic}/{partition} failed with error {}", answer.error_code);
    }
    Ok(answer.base_offset)
}

/// One Fetch (v11, no wait) of a partition from `offset` over a raw connection: the partition's
/// error code and the base offset of every returned batch with its record count.
pub fn fetch_once(connection: &mut RawConnection, topic: &str, partition: i32, offset: i64) -> Result<(i16, Vec<(i64, i64)>)> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
    let request = FetchRequest::default().with_max_wait_ms(0).with_max_bytes(1 << 20).with_topics(vec![FetchTopic::default()
        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
        .with_partitions(vec![FetchPartition::default()
            .with_partition(partition)
            .with_fetch_offset(offset)
            .with_partition_max_bytes(1 << 20)])]);
    let correlation = connection.send(ApiKey::Fetch, 11, &request)?;
    let response: FetchResponse = connection.receive(ApiKey::Fetch, 11, correlation)?;
    let data = &response.responses[0].partitions[0];
    let records = data.records.clone().unwrap_or_default();
    let mut batches = Vec::new();
    let mut position = 0;
    // baseOffset i64 | batchLength i32 | ... | lastOffsetDelta i32 at byte 23
    while position + 61 <= records.len() {
        let base = i64::from_be_bytes(records[position..position + 8].try_into()?);
        let length = i32::from_be_bytes(records[position + 8..position + 12].try_into()?) as usize;
        let last_offset_delta = i32::from_be_bytes(records[position + 23..position + 27].try_into()?) as i64;
        batches.push((base, last_offset_delta + 1));
        position += 12 + length;
    }
    Ok((data.error_code, batches))
}
