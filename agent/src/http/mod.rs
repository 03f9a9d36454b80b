//! HTTP endpoints: /healthz (the process is alive), /readyz (metadata replayed and the Kafka
//! listener accepting), /metrics (Prometheus text), /status (JSON for `floe diagnose`, see
//! [`status`]), and the read-only web console at `/`, `/topics` and `/groups`, with `/rates` (JSON)
//! from which every agent's overview sums the cluster's throughput (see [`console`]).

pub mod console;
pub mod status;

use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use status::StatusSource;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub status: Arc<StatusSource>,
    pub console: Arc<console::Console>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(state): State<HttpState>| async move {
                if state.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(state): State<HttpState>| async move {
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render())
            }),
        )
        .route(
            "/status",
            get(|State(state): State<HttpState>| async move {
                let body = serde_json::to_string(&state.status.status(std::time::SystemTime::now())).unwrap_or_default();
                ([(axum::http::header::CONTENT_TYPE, "application/json")], body)
            }),
        )
        .merge(console::routes())
        .with_state(state)
}

pub async fn run(listener: TcpListener, state: HttpState, mut shutdown: watch::Receiver<bool>) {
    let served = axum::serve(listener, router(state)).with_graceful_shutdown(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    if let Err(error) = served.await {
        tracing::warn!(%error, "HTTP server stopped with an error");
    }
}
