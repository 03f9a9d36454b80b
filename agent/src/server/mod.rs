//! The Kafka listener: one task per connection reads frames, starts each request in arrival order,
//! and a writer task sends responses in the same order (clients match them by correlation id and
//! Java disconnects on a mismatch).

use crate::handlers::{self, api_versions, AgentContext, ClientInfo, Reply};
use crate::protocol::{codec, frame};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Requests a connection may have in flight before the agent stops reading from it.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 128;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub max_request_bytes: usize,
}

enum Outgoing {
    Frame(Bytes),
    Nothing,
    Close,
}

/// How long shutdown waits for open connections to deliver the answers they still owe.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts connections until `shutdown` turns true, then waits (bounded) until every connection
/// has written the responses of the requests it had already read, so a producer whose batch made
/// the final flush hears about it.
pub async fn run(listener: TcpListener, context: Arc<AgentContext>, settings: ServerSettings, mut shutdown: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow with every client that came and went.
        while connections.try_join_next().is_some() {}
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let context = Arc::clone(&context);
                    let settings = settings.clone();
                    let shutdown = shutdown.clone();
                    connections.spawn(async move { serve_connection(stream, peer, context, settings, shutdown).await });
                }
                Err(error) => {
                    tracing::warn!(%error, "failed to accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(open = connections.len(), "connections still busy after the drain timeout; closing them");
        connections.abort_all();
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<AgentContext>,
    settings: ServerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (queue, mut responses) = mpsc::channel::<JoinHandle<Outgoing>>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writer_task = tokio::spawn(async move {
        while let Some(pending) = responses.recv().await {
            match pending.await {
                Ok(Outgoing::Frame(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Ok(Outgoing::Nothing) => {}
                Ok(Outgoing::Close) | Err(_) => {
                    let _ = writer.shutdown().await;
                    return;
                }
            }
        }
        let _ = writer.shutdown().await;
    });
    let outcome = loop {
        let next = tokio::select! {
            next = frame::read_frame(&mut reader, settings.max_request_bytes) => next,
            _ = shutdown.changed() => break "shutdown",
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed_by_client",
            Err(error) => {
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                break "bad_frame";
            }
        };
        match start_request(frame, peer, &context).await {
            Ok(handle) => {
                if queue.send(handle).await.is_err() {
                    break "writer_gone";
                }
            }
            Err(reason) => {
                tracing::warn!(%peer, %reason, "closing connection: bad request");
                break "bad_request";
            }
        }
    };
    context.metrics.connections.with_label_values(&[outcome]).inc();
    drop(queue);
    let _ = writer_task.await;
}

/// Decodes a request and starts it; the returned task yields the encoded response.
async fn start_request(frame: Bytes, peer: SocketAddr, context: &Arc<AgentContext>) -> Result<JoinHandle<Outgoing>, String> {
    let (api_key, version) = codec::peek_key_and_version(&frame).map_err(|error| error.to_string())?;
    let correlation_id = codec::peek_correlation_id(&frame);
    let Some((min, max)) = handlers::supported_range(api_key) else {
        return Err(format!("{api_key:?} is not supported by this agent"));
    };
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            // Answer in v0 with the ranges we do support, without decoding the body (KIP-511).
            let body = ResponseKind::ApiVersions(api_versions::response(Some(ResponseError::UnsupportedVersion)));
            let bytes = codec::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).map_err(|error| error.to_string())?;
            return Ok(tokio::spawn(async move { Outgoing::Frame(bytes) }));
        }
        return Err(format!("{api_key:?} v{version} is outside the supported range {min}..={max}"));
    }
    let (header, request) = codec::decode_request(frame, api_key, version).map_err(|error| error.to_string())?;
    let client =
        ClientInfo { client_id: header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default(), host: format!("/{}", peer.ip()) };
    let started = Instant::now();
    let pending = handlers::dispatch(Arc::clone(context), header, request, client).await;
    let metrics = Arc::clone(&context.metrics);
    let api_name = api_name(api_key);
    Ok(tokio::spawn(async move {
        let reply = pending.await;
        metrics.request_duration.with_label_values(&[api_name]).observe(started.elapsed().as_secs_f64());
        match reply {
            Reply::Respond(body) => match codec::encode_response(api_key, version, correlation_id, &body) {
                Ok(bytes) => {
                    metrics.requests.with_label_values(&[api_name, "ok"]).inc();
                    Outgoing::Frame(bytes)
                }
                Err(error) => {
                    tracing::error!(%error, "failed to encode a response; closing the connection");
                    metrics.requests.with_label_values(&[api_name, "encode_error"]).inc();
                    Outgoing::Close
                }
            },
            Reply::Silent => {
                metrics.requests.with_label_values(&[api_name, "ok"]).inc();
                Outgoing::Nothing
            }
            Reply::Close => {
                metrics.requests.with_label_values(&[api_name, "error"]).inc();
                Outgoing::Close
            }
        }
    }))
}

/// A bounded, static label per API.
fn api_name(api_key: ApiKey) -> &'static str {
    match api_key {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Metadata => "metadata",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::JoinGroup => "join_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::ListGroups => "list_groups",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::AlterConfigs => "alter_configs",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::DeleteGroups => "delete_groups",
        _ => "other",
    }
}
