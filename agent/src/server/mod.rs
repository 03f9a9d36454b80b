//! The Kafka listener: one task per connection reads frames, starts requests in arrival order,
//! and a writer task sends responses in the same order (clients match them by correlation id and
//! Java disconnects on a mismatch).
//!
//! Limits (DESIGN.md "Memory budgets and connection limits"): like Kafka, a connection handles one
//! request at a time, except produce requests, which pipeline up to
//! `--max-in-flight-requests-per-connection` deep because an acknowledgement waits for a flush;
//! frame bodies are charged to a global byte budget as they arrive; idle connections close after
//! `--connections-max-idle`; `--max-connections` and `--max-connections-per-ip` bound sockets.
//!
//! TLS (`--tls-cert-file`, `crate::tls`): the handshake runs in the connection's task, bounded by
//! `--tls-handshake-timeout`, after the connection took its slots; then the same loop serves the
//! encrypted stream, so every limit above applies to TLS connections unchanged.
//!
//! SASL (`--sasl-mechanisms`, `crate::sasl`): until a connection authenticates, the loop answers
//! ApiVersions, SaslHandshake and SaslAuthenticate only, reads frames of at most
//! `sasl::PRE_AUTHENTICATION_MAX_BYTES`, and closes on anything else; then the connection's
//! principal is the user's and every request is served as before.

use crate::handlers::{self, api_versions, AgentContext, ClientInfo, Reply};
use crate::protocol::frame::{self, MemoryBudget};
use crate::protocol::{codec, fetch_frame};
use crate::sasl::{self, SaslSettings, Session, Verdict};
use crate::tls::ListenerTls;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Largest frame accepted (`socket.request.max.bytes`).
    pub max_request_bytes: usize,
    /// Bytes all connections' request frames may hold together (`queued.max.request.bytes`).
    pub queued_max_request_bytes: usize,
    /// Produce requests a connection may have in flight; every other request runs alone.
    pub max_in_flight_requests_per_connection: usize,
    /// A connection with nothing in flight and no bytes read or written for this long is closed
    /// (`connections.max.idle.ms`).
    pub connections_max_idle: Duration,
    /// Open connections at most; past it the listener stops accepting until one closes
    /// (`max.connections`).
    pub max_connections: usize,
    /// Open connections from one IP address at most; more are closed at once
    /// (`max.connections.per.ip`).
    pub max_connections_per_ip: usize,
    /// TLS on the listener (every connection), or plaintext when `None`.
    pub tls: Option<ListenerTls>,
    /// SASL authentication for every connection, or none when `None`.
    pub sasl: Option<SaslSettings>,
}

impl ServerSettings {
    /// Kafka's defaults where Kafka has one (DESIGN.md explains the others).
    pub fn defaults() -> Self {
        Self {
            max_request_bytes: 100 << 20,
            queued_max_request_bytes: 256 << 20,
            max_in_flight_requests_per_connection: 128,
            connections_max_idle: Duration::from_secs(600),
            max_connections: i32::MAX as usize,
            max_connections_per_ip: i32::MAX as usize,
            tls: None,
            sasl: None,
        }
    }
}

enum Outgoing {
    /// A response frame in pieces, written in order (`protocol::fetch_frame`: a fetch's large
    /// record sets are pieces of their own, not copied into the frame).
    Frame(Vec<Bytes>),
    Nothing,
    Close,
}

/// How long shutdown waits for open connections to deliver the answers they still owe.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Open connections per client address, for `max.connections.per.ip`.
struct PerIp {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection of an address; gives its place back when dropped.
struct IpSlot {
    per_ip: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(IpSlot { per_ip: Arc::clone(self), ip })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// When a connection last read or wrote a byte, for `connections.max.idle.ms`.
struct Activity {
    origin: Instant,
    last_millis: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { origin: Instant::now(), last_millis: AtomicU64::new(0) }
    }

    fn touch(&self) {
        self.last_millis.store(self.origin.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }
}

/// Completes once the connection has had nothing in flight and no traffic for `idle`.
async fn idle_expired(activity: &Activity, in_flight: &watch::Receiver<usize>, idle: Duration) {
    loop {
        let last = activity.last();
        tokio::time::sleep_until((last + idle).into()).await;
        if *in_flight.borrow() > 0 {
            // A long poll or a slow flush is not idleness.
            activity.touch();
            continue;
        }
        if activity.last() == last {
            return;
        }
    }
}

/// Accepts connections until `shutdown` turns true, then waits (bounded) until every connection
/// has written the responses of the requests it had already read, so a producer whose batch made
/// the final flush hears about it.
pub async fn run(listener: TcpListener, context: Arc<AgentContext>, settings: ServerSettings, mut shutdown: watch::Receiver<bool>) {
    let mut connections = tokio::task::JoinSet::new();
    let budget = MemoryBudget::with_metrics(
        settings.queued_max_request_bytes,
        context.metrics.request_memory_bytes.clone(),
        context.metrics.request_memory_waits.clone(),
    );
    let slots = Arc::new(Semaphore::new(settings.max_connections.min(Semaphore::MAX_PERMITS)));
    let per_ip = Arc::new(PerIp { limit: settings.max_connections_per_ip, open: Mutex::new(HashMap::new()) });
    loop {
        // Reap finished connections so the set does not grow with every client that came and went.
        while connections.try_join_next().is_some() {}
        // At max.connections the listener stops accepting (new clients wait in the backlog), as
        // Kafka's acceptor does.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                context.metrics.connections_refused.with_label_values(&["max_connections"]).inc();
                tokio::select! {
                    slot = Arc::clone(&slots).acquire_owned() => slot.expect("the semaphore is never closed"),
                    _ = shutdown.changed() => if *shutdown.borrow() { break } else { continue },
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(ip_slot) = per_ip.admit(peer.ip()) else {
                        context.metrics.connections_refused.with_label_values(&["max_connections_per_ip"]).inc();
                        tracing::debug!(%peer, "closing connection: --max-connections-per-ip reached");
                        drop(stream);
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let context = Arc::clone(&context);
                    let settings = settings.clone();
                    let shutdown = shutdown.clone();
                    let budget = Arc::clone(&budget);
                    connections.spawn(async move {
                        accept_connection(stream, peer, context, settings, budget, shutdown).await;
                        drop((slot, ip_slot));
                    });
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

/// Who is at the other end of a connection, fixed when it is accepted.
///
/// The principal is kept per connection (not per request) because that is where Kafka decides
/// it: the TLS handshake, and later SASL authentication on the same connection, establish it once
/// and every request after that is authorized as it.
#[derive(Debug, Clone)]
pub struct ConnectionState {
    pub peer: SocketAddr,
    /// `User:<subject>` of a verified client certificate, else `User:ANONYMOUS` (Kafka's names).
    pub principal: Arc<str>,
}

/// Kafka's principal for a connection that authenticated nothing.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// Runs the TLS handshake when the listener has TLS, then serves the connection; plaintext and
/// TLS share `serve_connection`.
async fn accept_connection(
    stream: TcpStream,
    peer: SocketAddr,
    context: Arc<AgentContext>,
    settings: ServerSettings,
    budget: Arc<MemoryBudget>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(tls) = settings.tls.clone() else {
        let connection = ConnectionState { peer, principal: Arc::from(ANONYMOUS) };
        let (reader, writer) = stream.into_split();
        return serve_connection(reader, writer, connection, context, settings, budget, shutdown).await;
    };
    let handshake = tokio::select! {
        handshake = tls.accept(stream) => handshake,
        _ = shutdown.changed() => {
            context.metrics.connections.with_label_values(&["shutdown"]).inc();
            return;
        }
    };
    let (stream, principal) = match handshake {
        Ok(established) => established,
        Err(error) => {
            context.metrics.tls_handshake_failures.with_label_values(&[error.reason()]).inc();
            context.metrics.connections.with_label_values(&["tls_handshake_failed"]).inc();
            match &error {
                // A client configured for plaintext: its operator needs to hear about it, once
                // per connection.
                crate::tls::HandshakeError::NotTls { .. } => tracing::warn!(%peer, %error, "closing connection: not TLS"),
                crate::tls::HandshakeError::NoClientCertificate | crate::tls::HandshakeError::BadClientCertificate(_) => {
                    tracing::info!(%peer, %error, "closing connection: client certificate refused")
                }
                // Timeouts, scanners and health checks that close at once: debug, or a client
                // could fill the log.
                _ => tracing::debug!(%peer, %error, "closing connection: TLS handshake failed"),
            }
            return;
        }
    };
    let principal = principal.unwrap_or_else(|| ANONYMOUS.to_string());
    {
        let (_, session) = stream.get_ref();
        tracing::debug!(
            %peer,
            %principal,
            version = ?session.protocol_version(),
            cipher_suite = ?session.negotiated_cipher_suite().map(|suite| suite.suite()),
            "TLS connection established"
        );
    }
    let connection = ConnectionState { peer, principal: Arc::from(principal) };
    let (reader, writer) = tokio::io::split(stream);
    serve_connection(reader, writer, connection, context, settings, budget, shutdown).await
}

/// Writes a response frame's pieces in order.
async fn write_pieces<W: AsyncWrite + Unpin>(writer: &mut W, pieces: &[Bytes]) -> std::io::Result<()> {
    for piece in pieces {
        writer.write_all(piece).await?;
    }
    Ok(())
}

/// The connection loop, the same for plaintext and TLS halves.
async fn serve_connection<R, W>(
    mut reader: R,
    mut writer: W,
    connection: ConnectionState,
    context: Arc<AgentContext>,
    settings: ServerSettings,
    budget: Arc<MemoryBudget>,
    mut shutdown: watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let peer = connection.peer;
    let mut connection = connection;
    // With SASL on, every connection starts unauthenticated.
    let mut session = settings.sasl.as_ref().map(|_| Session::AwaitingHandshake);
    // KIP-368: when the authenticated session ends (None: never), and whether a re-authentication
    // of an authenticated connection is under way.
    let mut session_expires: Option<Instant> = None;
    let mut reauthenticating = false;
    // A session authenticated with a password rests on the user's credential in the journal:
    // once every credential of that user is gone (a deleted KafkaUser, `kafka-configs --delete-config`)
    // the connection is closed at its next request, as a revoked user expects. The check reads
    // the state only when the credentials epoch moved.
    let mut password_user: Option<(String, u64)> = None;
    let depth = settings.max_in_flight_requests_per_connection.max(1);
    let activity = Arc::new(Activity::new());
    // Requests started and not yet answered on the wire.
    let (in_flight_sender, mut in_flight) = watch::channel(0usize);
    let in_flight_sender = Arc::new(in_flight_sender);
    let (queue, mut responses) = mpsc::channel::<JoinHandle<Outgoing>>(depth);
    let writer_task = {
        let activity = Arc::clone(&activity);
        let in_flight_sender = Arc::clone(&in_flight_sender);
        tokio::spawn(async move {
            while let Some(pending) = responses.recv().await {
                let outcome = pending.await;
                let written = match outcome {
                    // The flush hands a TLS stream's records to the socket (a no-op on TCP).
                    Ok(Outgoing::Frame(pieces)) => write_pieces(&mut writer, &pieces).await.is_ok() && writer.flush().await.is_ok(),
                    Ok(Outgoing::Nothing) => true,
                    Ok(Outgoing::Close) | Err(_) => false,
                };
                activity.touch();
                in_flight_sender.send_modify(|count| *count -= 1);
                if !written {
                    let _ = writer.shutdown().await;
                    return;
                }
            }
            let _ = writer.shutdown().await;
        })
    };
    let touch = || activity.touch();
    let outcome = loop {
        let authenticating = session.as_ref().is_some_and(|session| !session.is_authenticated());
        let max_frame_bytes =
            if authenticating { settings.max_request_bytes.min(sasl::PRE_AUTHENTICATION_MAX_BYTES) } else { settings.max_request_bytes };
        let next = tokio::select! {
            next = frame::read_frame(&mut reader, max_frame_bytes, &budget, &touch) => next,
            _ = idle_expired(&activity, &in_flight, settings.connections_max_idle) => {
                context.metrics.connections_refused.with_label_values(&["connections_max_idle_ms"]).inc();
                break "idle_timeout";
            }
            _ = shutdown.changed() => break "shutdown",
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break "closed_by_client",
            Err(frame::FrameError::Io(error)) => {
                // A client that goes away mid-frame: one line per connection would let a client
                // fill the log, so debug only.
                tracing::debug!(%peer, %error, "closing connection: frame cut short");
                break "bad_frame";
            }
            Err(error) => {
                if let (frame::FrameError::TooLarge { size, limit }, true) = (&error, authenticating) {
                    // An unauthenticated peer: nothing about it is trusted yet, so no warning.
                    context.metrics.requests_refused.with_label_values(&["sasl_server_max_receive_size"]).inc();
                    tracing::info!(%peer, size, limit, "closing connection: frame larger than allowed before SASL authentication");
                    break "bad_frame";
                }
                if matches!(error, frame::FrameError::TooLarge { .. }) {
                    context.metrics.requests_refused.with_label_values(&["socket_request_max_bytes"]).inc();
                }
                tracing::warn!(%peer, %error, "closing connection: bad frame");
                break "bad_frame";
            }
        };
        // Kafka reads one request at a time per connection. Produce pipelines (its answer waits
        // for a flush, so one at a time would cap a producer at one request per flush interval);
        // every other request waits until the connection has answered everything before it.
        let pipelines = codec::peek_key_and_version(&frame).is_ok_and(|(api_key, _)| api_key == ApiKey::Produce);
        let ready = tokio::select! {
            ready = in_flight.wait_for(|count| if pipelines { *count < depth } else { *count == 0 }) => ready.is_ok().then_some(()).ok_or("writer_gone"),
            _ = queue.closed() => Err("writer_gone"),
            _ = shutdown.changed() => Err("shutdown"),
        };
        if let Err(outcome) = ready {
            break outcome;
        }
        if let Some(state) = session.as_mut().filter(|state| state.is_authenticated()) {
            let api_key = codec::peek_key_and_version(&frame).ok().map(|(api_key, _)| api_key);
            if api_key == Some(ApiKey::SaslHandshake) {
                // KIP-368: the client re-authenticates on this connection (it sends nothing else
                // until that is done); the principal must stay the same.
                *state = Session::AwaitingHandshake;
                reauthenticating = true;
            } else if api_key != Some(ApiKey::ApiVersions) && session_expires.is_some_and(|expires| Instant::now() >= expires) {
                context.metrics.sasl_reauthentications.with_label_values(&["expired"]).inc();
                tracing::info!(%peer, principal = %connection.principal, "closing connection: its SASL session expired without re-authentication");
                break "sasl_session_expired";
            } else if let Some((user, checked_epoch)) = password_user.as_mut() {
                let epoch = context.metadata.credentials_epoch();
                if epoch != *checked_epoch {
                    if !context.metadata.read(|state| state.scram_credentials.contains_key(user.as_str())) {
                        tracing::info!(%peer, principal = %connection.principal, "closing connection: its user no longer has any SASL credential");
                        context.metrics.sasl_sessions_revoked.inc();
                        break "sasl_credentials_removed";
                    }
                    *checked_epoch = epoch;
                }
            }
        }
        let frame = match (&settings.sasl, session.as_mut()) {
            (Some(sasl_settings), Some(session)) if !session.is_authenticated() => {
                let reauthenticating_as = reauthenticating.then(|| Arc::clone(&connection.principal));
                match authenticate(frame, session, sasl_settings, &context, reauthenticating_as.as_deref()).await {
                    Unauthenticated::Serve(frame) => frame,
                    Unauthenticated::Answer { response, verdict, lifetime, password } => {
                        let close = match verdict {
                            Verdict::Continue => false,
                            Verdict::Authenticated { user, .. } => {
                                tracing::debug!(%peer, %user, reauthenticating, "SASL authentication succeeded");
                                connection.principal = Arc::from(format!("User:{user}"));
                                password_user = password.then(|| (user.clone(), context.metadata.credentials_epoch()));
                                session_expires = lifetime.map(|lifetime| Instant::now() + lifetime);
                                if std::mem::take(&mut reauthenticating) {
                                    context.metrics.sasl_reauthentications.with_label_values(&["success"]).inc();
                                }
                                false
                            }
                            Verdict::Failed => {
                                if reauthenticating {
                                    context.metrics.sasl_reauthentications.with_label_values(&["failure"]).inc();
                                }
                                // Kafka's connection.failed.authentication.delay.ms: the
                                // failure's answer waits, so guessing costs time per guess.
                                tokio::time::sleep(sasl_settings.failed_authentication_delay).await;
                                true
                            }
                        };
                        in_flight_sender.send_modify(|count| *count += 1);
                        if queue.send(tokio::spawn(async move { Outgoing::Frame(vec![response]) })).await.is_err() {
                            break "writer_gone";
                        }
                        if close {
                            break "sasl_authentication_failed";
                        }
                        continue;
                    }
                    Unauthenticated::Refuse(reason) => {
                        tracing::info!(%peer, %reason, "closing connection: request before SASL authentication");
                        break "unauthenticated_request";
                    }
                }
            }
            _ => frame,
        };
        match start_request(frame, &connection, &context).await {
            Ok(handle) => {
                in_flight_sender.send_modify(|count| *count += 1);
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

/// What to do with a frame that arrived before the connection authenticated.
enum Unauthenticated {
    /// ApiVersions: served as on any connection.
    Serve(Bytes),
    /// A SaslHandshake or SaslAuthenticate answered here (it changes the connection's state);
    /// `lifetime` is the session's, once authenticated with re-authentication on.
    /// `password` says the session rests on a SCRAM credential in the journal (PLAIN or SCRAM),
    /// not on a token.
    Answer { response: Bytes, verdict: Verdict, lifetime: Option<Duration>, password: bool },
    /// Anything else: Kafka closes the connection ("Unexpected Kafka request of type ... during
    /// SASL handshake").
    Refuse(String),
}

/// One step of a connection's SASL authentication. `reauthenticating_as` is the connection's
/// principal when it re-authenticates (KIP-368), which the new authentication must keep.
async fn authenticate(
    frame: Bytes,
    session: &mut Session,
    settings: &SaslSettings,
    context: &Arc<AgentContext>,
    reauthenticating_as: Option<&str>,
) -> Unauthenticated {
    let (api_key, version) = match codec::peek_key_and_version(&frame) {
        Ok(peeked) => peeked,
        Err(error) => return Unauthenticated::Refuse(error.to_string()),
    };
    if !matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) {
        return if api_key == ApiKey::ApiVersions {
            Unauthenticated::Serve(frame)
        } else {
            Unauthenticated::Refuse(format!(
                "{api_key:?} before SASL authentication; configure the client's sasl.mechanism and credentials"
            ))
        };
    }
    let Some(api) = handlers::api(api_key) else {
        return Unauthenticated::Refuse(format!("{api_key:?} is not supported"));
    };
    if let Err(refusal) = api.accepts(version) {
        return Unauthenticated::Refuse(refusal);
    }
    let metric = api.metric;
    let correlation_id = codec::peek_correlation_id(&frame);
    let started = Instant::now();
    let mut lifetime = None;
    let mut password = false;
    let (body, verdict) = match codec::decode_request(frame, api_key, version) {
        Ok((_, RequestKind::SaslHandshake(request))) => {
            let response = session.handshake(settings, version, &request);
            // Kafka closes the connection after refusing a mechanism.
            let verdict = if response.error_code == 0 { Verdict::Continue } else { Verdict::Failed };
            (ResponseKind::SaslHandshake(response), verdict)
        }
        Ok((_, RequestKind::SaslAuthenticate(request))) => {
            let replica = context.metadata.clone();
            let lookup = move |user: &str, mechanism| replica.read(|state| state.scram_credential(user, mechanism).cloned());
            let (mut response, mut verdict, mechanism) = session.authenticate(&request, settings.oauth.as_deref(), lookup).await;
            if let Verdict::Authenticated { user, credential_expiry } = &verdict {
                if reauthenticating_as.is_some_and(|principal| principal != format!("User:{user}")) {
                    response = kafka_protocol::messages::SaslAuthenticateResponse::default()
                        .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                        .with_error_message(Some(handlers::str_bytes("Cannot change principals during re-authentication")));
                    verdict = Verdict::Failed;
                } else if version >= 1 {
                    // v0 cannot carry the lifetime, so such (pre-2.2) clients are not expired.
                    lifetime = sasl::session_lifetime(settings.max_reauth, *credential_expiry, std::time::SystemTime::now());
                    response.session_lifetime_ms = lifetime.map_or(0, |lifetime| lifetime.as_millis() as i64);
                }
            }
            if let Some(mechanism) = mechanism {
                password = !matches!(mechanism, sasl::Mechanism::OAuthBearer);
                let outcome = if matches!(verdict, Verdict::Authenticated { .. }) { "success" } else { "failure" };
                context.metrics.sasl_authentications.with_label_values(&[mechanism.name(), outcome]).inc();
            }
            (ResponseKind::SaslAuthenticate(response), verdict)
        }
        Ok(_) => unreachable!("the API key was peeked above"),
        Err(error) => return Unauthenticated::Refuse(error.to_string()),
    };
    context.metrics.request_duration.with_label_values(&[metric]).observe(started.elapsed().as_secs_f64());
    match codec::encode_response(api_key, version, correlation_id, &body) {
        Ok(response) => {
            context.metrics.requests.with_label_values(&[metric, "ok"]).inc();
            Unauthenticated::Answer { response, verdict, lifetime, password }
        }
        Err(error) => Unauthenticated::Refuse(format!("failed to encode the {api_key:?} response: {error}")),
    }
}

/// Frames larger than this are decoded on the blocking pool.
const BLOCKING_DECODE_BYTES: usize = 1 << 20;

/// Decodes a request and starts it; the returned task yields the encoded response.
async fn start_request(frame: Bytes, connection: &ConnectionState, context: &Arc<AgentContext>) -> Result<JoinHandle<Outgoing>, String> {
    let (api_key, version) = codec::peek_key_and_version(&frame).map_err(|error| error.to_string())?;
    let correlation_id = codec::peek_correlation_id(&frame);
    let Some(api) = handlers::api(api_key) else {
        return Err(format!("{api_key:?} is not supported by this agent"));
    };
    let api_name = api.metric;
    if let Err(refusal) = api.accepts(version) {
        if api_key == ApiKey::ApiVersions {
            // Answer in v0 with the ranges we do support, without decoding the body (KIP-511).
            let body = ResponseKind::ApiVersions(api_versions::response(Some(ResponseError::UnsupportedVersion)));
            let bytes = codec::encode_response(ApiKey::ApiVersions, 0, correlation_id, &body).map_err(|error| error.to_string())?;
            return Ok(tokio::spawn(async move { Outgoing::Frame(vec![bytes]) }));
        }
        return Err(refusal);
    }
    // Decoding is proportional to the frame: a 99 MiB CreateTopics of 6.5 M entries takes seconds,
    // which on an async worker would stall every connection that worker serves. Large frames
    // decode on the blocking pool; small ones (nearly all) stay inline.
    let (header, request) = if frame.len() > BLOCKING_DECODE_BYTES {
        tokio::task::spawn_blocking(move || codec::decode_request(frame, api_key, version))
            .await
            .map_err(|error| format!("decoding {api_key:?} failed: {error}"))?
    } else {
        codec::decode_request(frame, api_key, version)
    }
    .map_err(|error| error.to_string())?;
    let client = ClientInfo {
        client_id: header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default(),
        host: format!("/{}", connection.peer.ip()),
        address: connection.peer.ip().to_string(),
        principal: Arc::clone(&connection.principal),
    };
    let started = Instant::now();
    let pending = handlers::dispatch(Arc::clone(context), header, request, client).await;
    let metrics = Arc::clone(&context.metrics);
    Ok(tokio::spawn(async move {
        let reply = pending.await;
        metrics.request_duration.with_label_values(&[api_name]).observe(started.elapsed().as_secs_f64());
        match reply {
            Reply::Respond(body) => match fetch_frame::encode_response_pieces(api_key, version, correlation_id, &body) {
                Ok(pieces) => {
                    metrics.requests.with_label_values(&[api_name, "ok"]).inc();
                    Outgoing::Frame(pieces)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_its_limit_and_a_closed_connection_frees_its_place() {
        let per_ip = Arc::new(PerIp { limit: 2, open: Mutex::new(HashMap::new()) });
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.7".parse().unwrap();
        let first = per_ip.admit(local).expect("first");
        let _second = per_ip.admit(local).expect("second");
        assert!(per_ip.admit(local).is_none(), "a third connection from one address was admitted");
        assert!(per_ip.admit(other).is_some(), "another address is counted apart");
        drop(first);
        assert!(per_ip.admit(local).is_some(), "a closed connection did not free its place");
    }

    #[tokio::test]
    async fn a_connection_is_idle_only_with_nothing_in_flight_and_no_traffic_for_the_whole_period() {
        let activity = Activity::new();
        let (in_flight_sender, in_flight) = watch::channel(1usize);
        let idle = Duration::from_millis(200);
        let expiry = idle_expired(&activity, &in_flight, idle);
        tokio::pin!(expiry);
        // A request in flight (a long poll) keeps it open past the period.
        assert!(tokio::time::timeout(Duration::from_millis(600), &mut expiry).await.is_err());
        in_flight_sender.send_replace(0);
        // Traffic restarts the clock.
        tokio::time::sleep(Duration::from_millis(100)).await;
        activity.touch();
        let touched = Instant::now();
        expiry.await;
        assert!(touched.elapsed() >= Duration::from_millis(190), "closed {:?} after the last byte", touched.elapsed());
    }
}
