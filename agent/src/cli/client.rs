//! A small blocking Kafka client for the `floe` commands: one connection per broker, requests one
//! at a time, the versions every Floe agent and Kafka 4 broker accept. Plaintext, TLS and SASL
//! (PLAIN, SCRAM) as [`Security`] says.

use super::security::{self, Credentials, SaslMechanism, ScramClient, Security};
use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection may take to open, and a response to arrive (fetches wait less than this
/// on the server).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response accepted (a fetch asks for at most 8 MiB).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
const CLIENT_ID: &str = "floe-cli";

/// A connection's byte stream: the socket, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.read(buffer),
            Stream::Tls(stream) => stream.read(buffer),
        }
    }
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.set_read_timeout(Some(timeout)),
            Stream::Tls(stream) => stream.sock.set_read_timeout(Some(timeout)),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(stream) => stream.write(buffer),
            Stream::Tls(stream) => stream.write(buffer),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(stream) => stream.flush(),
            Stream::Tls(stream) => stream.flush(),
        }
    }
}

struct Connection {
    address: String,
    stream: Stream,
    next_correlation_id: i32,
}

impl Connection {
    /// Connects, then does what `security` asks: the TLS handshake, a SASL login.
    fn open(address: &str, security: &Security) -> Result<Self> {
        let socket = Self::connect(address)?;
        let stream = match &security.tls {
            Some(config) => {
                let connection = rustls::ClientConnection::new(Arc::clone(config), security::server_name(address)?)
                    .context("cannot start a TLS connection")?;
                let mut stream = rustls::StreamOwned::new(connection, socket);
                // Finish the handshake now, so a certificate problem is reported as one.
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock).with_context(|| {
                        format!("TLS handshake with {address} failed (is --tls-ca-file the CA that signed its certificate, and is its listener TLS?)")
                    })?;
                }
                Stream::Tls(Box::new(stream))
            }
            None => Stream::Plain(socket),
        };
        let mut connection = Self { address: address.to_string(), stream, next_correlation_id: 1 };
        if let Some(credentials) = &security.sasl {
            connection.authenticate(credentials)?;
        }
        Ok(connection)
    }

    /// SaslHandshake, then SaslAuthenticate rounds (KIP-152): one for PLAIN, two for SCRAM.
    fn authenticate(&mut self, credentials: &Credentials) -> Result<()> {
        let mechanism = credentials.mechanism.name();
        let handshake: SaslHandshakeResponse =
            self.call(ApiKey::SaslHandshake, 1, &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism)))?;
        if handshake.error_code != 0 {
            let enabled: Vec<String> = handshake.mechanisms.iter().map(|name| name.to_string()).collect();
            bail!(
                "{} does not accept SASL {mechanism}; it offers {}",
                self.address,
                if enabled.is_empty() { "none".to_string() } else { enabled.join(", ") }
            );
        }
        match credentials.mechanism {
            SaslMechanism::Plain => {
                self.sasl_round(security::plain_message(credentials))?;
            }
            SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
                let (client, first) = ScramClient::start(credentials);
                let server_first = self.sasl_round(first)?;
                let (last, signature) = client.finish(&server_first)?;
                let server_final = self.sasl_round(last)?;
                ScramClient::verify(&server_final, &signature).with_context(|| format!("SCRAM login to {}", self.address))?;
            }
        }
        Ok(())
    }

    /// One SaslAuthenticate round trip; a refusal names the server's reason.
    fn sasl_round(&mut self, message: Vec<u8>) -> Result<Bytes> {
        let response: SaslAuthenticateResponse =
            self.call(ApiKey::SaslAuthenticate, 2, &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)))?;
        let what = format!("{} refused the SASL login", self.address);
        check_with_message(response.error_code, response.error_message.as_ref(), &what)?;
        Ok(response.auth_bytes)
    }

    fn connect(address: &str) -> Result<TcpStream> {
        let resolved: Vec<_> = address
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {address:?} (expected host:port, e.g. 127.0.0.1:9092)"))?
            .collect();
        let mut last_error = None;
        for candidate in resolved {
            match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(RESPONSE_TIMEOUT))?;
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(error) => last_error = Some(error),
            }
        }
        match last_error {
            Some(error) => Err(error).with_context(|| {
                format!("cannot connect to {address}; is an agent running there? (make run starts one on 127.0.0.1:9092)")
            }),
            None => bail!("{address:?} resolves to no address"),
        }
    }

    fn call<Request: Encodable, Response: Decodable>(&mut self, api: ApiKey, version: i16, request: &Request) -> Result<Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        header.encode(&mut frame, api.request_header_version(version))?;
        request.encode(&mut frame, version)?;
        let size = (frame.len() - 4) as i32;
        frame[0..4].copy_from_slice(&size.to_be_bytes());
        let address = self.address.clone();
        self.stream.write_all(&frame).with_context(|| format!("sending {api:?} to {address}"))?;
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .with_context(|| format!("reading the {api:?} response from {address} (the connection closed or timed out)"))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            bail!("{address} answered {api:?} with a frame of {size} bytes");
        }
        let mut body = vec![0u8; size as usize];
        self.stream.read_exact(&mut body).with_context(|| format!("reading the {api:?} response from {address}"))?;
        let mut body = Bytes::from(body);
        let received = body.get_i32();
        if received != correlation_id {
            bail!("{address} answered request {correlation_id} with correlation id {received}");
        }
        if api.response_header_version(version) >= 1 {
            // The response header's tagged fields: none are defined; skip them.
            let tags = body.get_u8();
            for _ in 0..tags {
                let _tag = read_unsigned_varint(&mut body)?;
                let length = read_unsigned_varint(&mut body)? as usize;
                if length > body.remaining() {
                    bail!("{address}: malformed response header");
                }
                body.advance(length);
            }
        }
        Response::decode(&mut body, version).with_context(|| format!("{address} sent an {api:?} v{version} response that does not decode"))
    }
}

fn read_unsigned_varint(buffer: &mut Bytes) -> Result<u32> {
    let mut value = 0u32;
    for shift in (0..35).step_by(7) {
        if !buffer.has_remaining() {
            bail!("truncated varint");
        }
        let byte = buffer.get_u8();
        value |= u32::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    bail!("varint too long")
}

/// A broker as Metadata named it.
#[derive(Debug, Clone)]
pub struct Broker {
    pub node_id: i32,
    pub address: String,
    pub rack: Option<String>,
}

/// The cluster behind one bootstrap address: the connection to it, and one per broker reached
/// since (by node id), opened on first use.
pub struct Client {
    bootstrap: Connection,
    brokers: HashMap<i32, Broker>,
    connections: HashMap<i32, Connection>,
    security: Security,
}

impl Client {
    /// Connects in plaintext to the first reachable address of `bootstrap` (comma-separated
    /// host:port).
    pub fn connect(bootstrap: &str) -> Result<Self> {
        Self::connect_with(bootstrap, Security::default())
    }

    /// Connects as `security` says to the first reachable address of `bootstrap`; every broker
    /// connection opened later does the same.
    pub fn connect_with(bootstrap: &str, security: Security) -> Result<Self> {
        let mut failures = Vec::new();
        for address in bootstrap.split(',').map(str::trim).filter(|address| !address.is_empty()) {
            match Connection::open(address, &security) {
                Ok(connection) => {
                    return Ok(Self { bootstrap: connection, brokers: HashMap::new(), connections: HashMap::new(), security })
                }
                Err(error) => failures.push(format!("{error:#}")),
            }
        }
        if failures.is_empty() {
            bail!("--bootstrap is empty; example: --bootstrap 127.0.0.1:9092");
        }
        bail!("{}", failures.join("; "))
    }

    /// A request to whichever broker the client bootstrapped at.
    pub fn call<Request: Encodable, Response: Decodable>(&mut self, api: ApiKey, version: i16, request: &Request) -> Result<Response> {
        self.bootstrap.call(api, version, request)
    }

    /// A request to broker `node_id` (known from an earlier Metadata answer).
    pub fn call_broker<Request: Encodable, Response: Decodable>(
        &mut self,
        node_id: i32,
        api: ApiKey,
        version: i16,
        request: &Request,
    ) -> Result<Response> {
        self.connection(node_id)?.call(api, version, request)
    }

    /// The connection to broker `node_id`, opened on first use.
    fn connection(&mut self, node_id: i32) -> Result<&mut Connection> {
        if !self.connections.contains_key(&node_id) {
            let broker = self.brokers.get(&node_id).with_context(|| format!("no broker {node_id} in the last Metadata answer"))?;
            let connection = Connection::open(&broker.address, &self.security)?;
            self.connections.insert(node_id, connection);
        }
        Ok(self.connections.get_mut(&node_id).expect("inserted above"))
    }

    /// [`Client::call_broker`] for a request the broker may hold longer than a usual response
    /// takes: JoinGroup and SyncGroup wait there until the group's rebalance completes.
    pub fn call_broker_waiting<Request: Encodable, Response: Decodable>(
        &mut self,
        node_id: i32,
        api: ApiKey,
        version: i16,
        request: &Request,
        wait: Duration,
    ) -> Result<Response> {
        let connection = self.connection(node_id)?;
        connection.stream.set_read_timeout(wait.max(RESPONSE_TIMEOUT))?;
        let response = connection.call(api, version, request);
        connection.stream.set_read_timeout(RESPONSE_TIMEOUT)?;
        response
    }

    /// Metadata for `topics` (all topics when `None`); remembers the brokers it names.
    pub fn metadata(&mut self, topics: Option<&[String]>) -> Result<MetadataResponse> {
        let request = MetadataRequest::default().with_allow_auto_topic_creation(false).with_topics(
            topics.map(|names| names.iter().map(|name| MetadataRequestTopic::default().with_name(Some(topic_name(name)))).collect()),
        );
        let response: MetadataResponse = self.call(ApiKey::Metadata, 12, &request)?;
        for broker in &response.brokers {
            self.brokers.insert(
                broker.node_id.0,
                Broker {
                    node_id: broker.node_id.0,
                    address: format!("{}:{}", broker.host, broker.port),
                    rack: broker.rack.as_ref().map(|rack| rack.to_string()),
                },
            );
        }
        Ok(response)
    }

    pub fn brokers(&self) -> Vec<Broker> {
        let mut brokers: Vec<Broker> = self.brokers.values().cloned().collect();
        brokers.sort_by_key(|broker| broker.node_id);
        brokers
    }

    /// One topic's partitions and their leaders (node ids), or the error Metadata gave for it.
    pub fn partition_leaders(&mut self, topic: &str) -> Result<Vec<(i32, i32)>> {
        let response = self.metadata(Some(&[topic.to_string()][..]))?;
        let found = response.topics.first().with_context(|| format!("Metadata did not answer for topic {topic:?}"))?;
        check(found.error_code, &format!("topic {topic:?}"))?;
        let mut partitions: Vec<(i32, i32)> =
            found.partitions.iter().map(|partition| (partition.partition_index, partition.leader_id.0)).collect();
        partitions.sort();
        Ok(partitions)
    }

    /// The coordinator of `group`, connected under a node id of its own (it may not be listed in
    /// Metadata: Floe places coordinators over every agent, whatever the bootstrap agent's role).
    pub fn coordinator(&mut self, group: &str) -> Result<i32> {
        let request =
            FindCoordinatorRequest::default().with_key_type(0).with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
        let response: FindCoordinatorResponse = self.call(ApiKey::FindCoordinator, 4, &request)?;
        let coordinator = response.coordinators.first().context("FindCoordinator answered no coordinator")?;
        check(coordinator.error_code, &format!("the coordinator of group {group:?}"))?;
        // Coordinator connections get ids of their own, as the Java client does, so they never
        // share a connection a fetch is using.
        let node_id = i32::MAX - coordinator.node_id.0;
        self.brokers.insert(node_id, Broker { node_id, address: format!("{}:{}", coordinator.host, coordinator.port), rack: None });
        Ok(node_id)
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// `Ok` for error code 0, else the Kafka error's name and meaning for `what`.
pub fn check(code: i16, what: &str) -> Result<()> {
    check_with_message(code, None, what)
}

/// [`check`] with the broker's own message, when it sent one.
pub fn check_with_message(code: i16, message: Option<&StrBytes>, what: &str) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let name = ResponseError::try_from_code(code).map_or_else(|| format!("error code {code}"), |error| kafka_name(&format!("{error:?}")));
    match message.map(|message| message.to_string()).filter(|message| !message.is_empty()) {
        Some(message) => bail!("{what}: {name}: {message}"),
        None => bail!("{what}: {name}"),
    }
}

/// Kafka's spelling of an error name: `UnknownTopicOrPartition` -> `UNKNOWN_TOPIC_OR_PARTITION`.
fn kafka_name(camel: &str) -> String {
    let mut name = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(character.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_kafka_names_them_with_the_brokers_message() {
        assert_eq!(kafka_name("UnknownTopicOrPartition"), "UNKNOWN_TOPIC_OR_PARTITION");
        let error = check_with_message(3, Some(&StrBytes::from_static_str("no such topic")), "topic \"a\"").unwrap_err();
        assert_eq!(error.to_string(), "topic \"a\": UNKNOWN_TOPIC_OR_PARTITION: no such topic");
        assert!(check(0, "anything").is_ok());
    }
}
