//! The HTTPS server: accept, TLS handshake, then per request authenticate (`authn`), authorize
//! (`authz`), and answer (`api`, `load`). Every answer to an API request is counted in
//! `floe_operator_metrics_api_requests_total{outcome}`.

use super::api::{self, Target};
use super::authn::{self, RequestHeaderConfig};
use super::authz::{self, Attributes, Authorizer};
use super::load::{LoadError, LoadSource};
use super::selector;
use crate::metrics::Metrics;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::ServerConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections at once (the aggregator keeps a few alive; this bounds everyone else).
pub const MAX_CONNECTIONS: usize = 256;

/// What the handlers share.
pub struct MetricsApi {
    /// The front-proxy settings, or why there are none yet.
    pub request_header: watch::Receiver<Result<Arc<RequestHeaderConfig>, String>>,
    pub authorizer: Arc<dyn Authorizer>,
    pub load: Arc<dyn LoadSource>,
    pub metrics: Arc<Metrics>,
}

/// The client certificate chain of the connection (leaf first; empty without one).
#[derive(Debug, Clone, Default)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

pub fn router(api: Arc<MetricsApi>) -> Router {
    Router::new().fallback(handle).with_state(api)
}

/// Accepts TLS connections until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<ServerConfig>, router: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&connections).acquire_owned().await else { return };
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!(%error, "the metrics API failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "metrics API TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "metrics API TLS handshake timed out");
                    return;
                }
            };
            let chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec).unwrap_or_default();
            let service = TowerToHyperService::new(router.layer(Extension(PeerCertificates(Arc::new(chain)))));
            if let Err(error) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%remote, %error, "metrics API connection ended with an error");
            }
        });
    }
}

/// An answer and its outcome label.
struct Answer {
    status: StatusCode,
    body: Value,
    outcome: &'static str,
}

fn failure(status: StatusCode, reason: &str, outcome: &'static str, message: &str, details: Option<Value>) -> Answer {
    Answer { status, body: api::status(status.as_u16(), reason, message, details), outcome }
}

fn ok(body: Value) -> Answer {
    Answer { status: StatusCode::OK, body, outcome: "ok" }
}

async fn handle(
    State(api): State<Arc<MetricsApi>>,
    Extension(peer): Extension<PeerCertificates>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let target = api::target(uri.path());
    if target == Target::Health {
        return (StatusCode::OK, "ok\n").into_response();
    }
    let answer = answer(&api, &peer, &method, &uri, &headers, target).await;
    api.metrics.metrics_api_requests.with_label_values(&[answer.outcome]).inc();
    (answer.status, [(header::CONTENT_TYPE, "application/json")], answer.body.to_string()).into_response()
}

async fn answer(api: &MetricsApi, peer: &PeerCertificates, method: &Method, uri: &Uri, headers: &HeaderMap, target: Target) -> Answer {
    let config = api.request_header.borrow().clone();
    let authenticated = match &config {
        Ok(config) => authn::authenticate(config, &peer.0, headers, UnixTime::now()),
        Err(reason) => Err(authn::Unauthenticated::NotConfigured { reason: reason.clone() }),
    };
    let user = match authenticated {
        Ok(user) => user,
        Err(reason) => {
            tracing::debug!(path = uri.path(), %reason, "metrics API request not authenticated");
            return failure(StatusCode::UNAUTHORIZED, "Unauthorized", "unauthenticated", "Unauthorized", None);
        }
    };
    let watch = api::query_parameter(uri.query(), "watch").is_some_and(|value| value == "true" || value == "1");
    let attributes = match &target {
        Target::Resource { namespace, resource, name } => Attributes::Resource {
            verb: authz::resource_verb(method, name.is_some(), watch),
            group: api::GROUP.to_string(),
            version: api::VERSION.to_string(),
            namespace: namespace.clone(),
            resource: resource.clone(),
            name: name.clone(),
        },
        _ => Attributes::NonResource { verb: method.as_str().to_ascii_lowercase(), path: uri.path().to_string() },
    };
    match api.authorizer.authorize(&user, &attributes).await {
        Ok(decision) if decision.allowed => {}
        Ok(decision) => {
            tracing::debug!(user = user.name, ?attributes, reason = decision.reason, "metrics API request denied");
            return failure(StatusCode::FORBIDDEN, "Forbidden", "forbidden", &attributes.describe_denial(&user.name), None);
        }
        Err(error) => {
            tracing::warn!(%error, "metrics API authorization failed");
            return failure(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "error", &error.to_string(), None);
        }
    }
    if *method != Method::GET && *method != Method::HEAD {
        let message = format!("the server does not allow this method on the requested resource: {method}");
        return failure(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method_not_allowed", &message, None);
    }
    let not_found = |kind: &str, name: &str| {
        failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "not_found",
            "the server could not find the requested resource",
            Some(json!({"group": api::GROUP, "kind": kind, "name": name})),
        )
    };
    match target {
        Target::Health => ok(json!({})),
        Target::NonResource { path } => match api::non_resource_document(&path) {
            Some(document) => ok(document),
            None => not_found("", &path),
        },
        Target::Resource { namespace: Some(namespace), resource, name: None } if resource == api::METRIC => {
            metric_list(api, &namespace, api::query_parameter(uri.query(), "labelSelector").unwrap_or_default()).await
        }
        Target::Resource { resource, name, .. } => not_found(&resource, name.as_deref().unwrap_or_default()),
    }
}

/// The metric for the pool the selector names (`app.kubernetes.io/instance=<pool>`).
async fn metric_list(api: &MetricsApi, namespace: &str, label_selector: String) -> Answer {
    let bad_request = |message: String| failure(StatusCode::BAD_REQUEST, "BadRequest", "bad_request", &message, None);
    let requirements = match selector::parse(&label_selector) {
        Ok(requirements) => requirements,
        Err(error) => return bad_request(error.to_string()),
    };
    let labels = selector::pinned_labels(&requirements);
    let Some(pool) = labels.get(api::POOL_LABEL) else {
        return bad_request(format!(
            "labelSelector {label_selector:?} names no AgentPool; {metric} needs {label}=<AgentPool name>, as the pool's HorizontalPodAutoscaler sends it",
            metric = api::METRIC,
            label = api::POOL_LABEL
        ));
    };
    let timestamp = serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap_or_default();
    let timestamp = timestamp.as_str().unwrap_or_default();
    // A selector the pool's agents do not match (another app name, say) selects no metric.
    if !selector::matches(&requirements, &crate::labels::pool_selector(pool)) {
        return ok(api::external_metric_value_list(timestamp, &[]));
    }
    match api.load.pool_bandwidth(namespace, pool).await {
        Ok(bandwidth) => ok(api::external_metric_value_list(timestamp, &[(labels.clone(), api::quantity(bandwidth.bytes_per_second))])),
        Err(error @ (LoadError::PoolNotFound { .. } | LoadError::VirtualClusterNotFound { .. })) => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            "not_found",
            &error.to_string(),
            Some(json!({"group": "floe.dev", "kind": "agentpools", "name": pool})),
        ),
        Err(error) => {
            tracing::warn!(%error, kind = error.kind(), "failed to read a pool's load for the metrics API");
            failure(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "unavailable", &error.to_string(), None)
        }
    }
}
