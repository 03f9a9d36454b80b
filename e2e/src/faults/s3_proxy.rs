//! A fault-injecting HTTP proxy in front of the S3-compatible server: the object-store faults a
//! real bucket shows (bursts of 500/503, slow answers, requests never answered, a PUT that
//! succeeded whose answer is lost), switched at runtime by the test.
//!
//! Requests are forwarded unchanged (same path, query and headers, so SigV4 signatures still
//! verify), each on its own upstream connection. It runs on its own thread and runtime and
//! listens on 127.0.0.1 only; point an agent's `AWS_ENDPOINT` at [`S3FaultProxy::endpoint`].

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to the requests it receives from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Fault {
    /// Forward every request.
    Healthy,
    /// Answer the next `remaining` requests with `status` (500 or 503) and an S3 XML error body,
    /// without forwarding them; then forward again.
    ErrorBurst { status: u16, remaining: u64 },
    /// Forward every request, and hold each answer back for this long.
    Slow(Duration),
    /// Never answer (the request is not forwarded): the client times out.
    Hang,
    /// Forward the next `remaining` PUTs, then close their connections without answering: the
    /// object is written but the client does not know.
    LosePutAnswers { remaining: u64 },
}

#[derive(Default)]
pub struct S3ProxyStats {
    pub requests: AtomicU64,
    pub errors_injected: AtomicU64,
    pub slowed: AtomicU64,
    pub hung: AtomicU64,
    pub put_answers_lost: AtomicU64,
}

impl S3ProxyStats {
    /// One line: how many requests each fault hit.
    pub fn summary(&self) -> String {
        format!(
            "s3 requests={} errors_injected={} slowed={} hung={} put_answers_lost={}",
            self.requests.load(Ordering::Relaxed),
            self.errors_injected.load(Ordering::Relaxed),
            self.slowed.load(Ordering::Relaxed),
            self.hung.load(Ordering::Relaxed),
            self.put_answers_lost.load(Ordering::Relaxed)
        )
    }
}

pub struct S3FaultProxy {
    /// `127.0.0.1:<port>`.
    pub address: String,
    fault: Arc<Mutex<S3Fault>>,
    pub stats: Arc<S3ProxyStats>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    upstream: String,
    fault: Arc<Mutex<S3Fault>>,
    stats: Arc<S3ProxyStats>,
}

/// What to do with one request, decided when it arrives.
enum Action {
    Forward,
    Error(u16),
    Slow(Duration),
    Hang,
    ForwardThenLoseAnswer,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl S3FaultProxy {
    /// Listens on an ephemeral loopback port and forwards to `upstream` (`host:port`), healthy.
    pub fn start(upstream: &str) -> Result<Self> {
        let fault = Arc::new(Mutex::new(S3Fault::Healthy));
        let stats = Arc::new(S3ProxyStats::default());
        let shared = Arc::new(Shared { upstream: upstream.to_string(), fault: Arc::clone(&fault), stats: Arc::clone(&stats) });
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = address_sender.send(Err(anyhow::Error::from(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match TcpListener::bind("127.0.0.1:0").await.and_then(|listener| Ok((listener.local_addr()?, listener))) {
                    Ok((address, listener)) => {
                        let _ = address_sender.send(Ok(address.to_string()));
                        listener
                    }
                    Err(error) => {
                        let _ = address_sender.send(Err(anyhow::Error::from(error).context("failed to bind the S3 proxy")));
                        return;
                    }
                };
                let accept = async {
                    while let Ok((client, _)) = listener.accept().await {
                        let shared = Arc::clone(&shared);
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |request| handle(Arc::clone(&shared), request));
                            // An error here is a lost answer or a client that went away.
                            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(client), service).await;
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
        });
        let address = address_receiver.recv().context("the S3 proxy thread ended before binding")??;
        Ok(Self { address, fault, stats, stop: Some(stop), thread: Some(thread) })
    }

    /// `http://127.0.0.1:<port>`, for `AWS_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Switches to `fault` for the requests that arrive from now on.
    pub fn set(&self, fault: S3Fault) {
        *self.fault.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = fault;
    }

    /// The fault in force (an error burst or lost-answer run becomes `Healthy` once used up).
    pub fn current(&self) -> S3Fault {
        self.fault.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn heal(&self) {
        self.set(S3Fault::Healthy);
    }
}

impl Drop for S3FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn decide(shared: &Shared, method: &hyper::Method) -> Action {
    let mut fault = shared.fault.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match &mut *fault {
        S3Fault::Healthy => Action::Forward,
        S3Fault::ErrorBurst { status, remaining } => {
            let status = *status;
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                *fault = S3Fault::Healthy;
            }
            Action::Error(status)
        }
        S3Fault::Slow(delay) => Action::Slow(*delay),
        S3Fault::Hang => Action::Hang,
        S3Fault::LosePutAnswers { remaining } if *method == hyper::Method::PUT => {
            *remaining = remaining.saturating_sub(1);
            if *remaining == 0 {
                *fault = S3Fault::Healthy;
            }
            Action::ForwardThenLoseAnswer
        }
        S3Fault::LosePutAnswers { .. } => Action::Forward,
    }
}

/// The error answer of a fault: an S3 XML error document, as S3 sends with 500 and 503.
fn error_response(status: u16) -> Response<ProxyBody> {
    let (code, message) = if status == 503 {
        ("SlowDown", "Please reduce your request rate.")
    } else {
        ("InternalError", "We encountered an internal error. Please try again.")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>floe-fault</RequestId></Error>"
    );
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/xml"));
    response
}

async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Result<Response<ProxyBody>, std::io::Error> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    match decide(&shared, request.method()) {
        Action::Forward => forward(&shared.upstream, request).await,
        Action::Error(status) => {
            shared.stats.errors_injected.fetch_add(1, Ordering::Relaxed);
            Ok(error_response(status))
        }
        Action::Slow(delay) => {
            shared.stats.slowed.fetch_add(1, Ordering::Relaxed);
            let response = forward(&shared.upstream, request).await;
            tokio::time::sleep(delay).await;
            response
        }
        Action::Hang => {
            shared.stats.hung.fetch_add(1, Ordering::Relaxed);
            std::future::pending().await
        }
        Action::ForwardThenLoseAnswer => {
            let response = forward(&shared.upstream, request).await?;
            // Read the upstream answer whole (the write is done), then fail the connection: hyper
            // closes it without writing a response.
            let _ = response.into_body().collect().await;
            shared.stats.put_answers_lost.fetch_add(1, Ordering::Relaxed);
            Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "answer lost on purpose"))
        }
    }
}

async fn forward(upstream: &str, request: Request<Incoming>) -> Result<Response<ProxyBody>, std::io::Error> {
    let stream = TcpStream::connect(upstream).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender.send_request(request).await.map_err(std::io::Error::other)?;
    Ok(response.map(BodyExt::boxed))
}
