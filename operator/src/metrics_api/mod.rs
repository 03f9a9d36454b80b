//! The operator's `external.metrics.k8s.io/v1beta1` API (ARCHITECTURE §8): one metric,
//! `floe_agent_network_bytes_per_second`, the bytes in plus out per second of one AgentPool's
//! agents, which each pool's HorizontalPodAutoscaler divides by its replicas (`AverageValue`).
//! kube-apiserver proxies to it as an aggregated API (the chart registers the APIService).
//!
//! Layers: `api` and `selector` are pure (paths, bodies, selectors); `tls` holds the serving
//! certificate; `authn` believes the aggregator's identity headers only behind its front-proxy
//! certificate; `authz` asks kube-apiserver (SubjectAccessReview); `load` reads the agent
//! registry in etcd; `server` puts them together. Authentication and authorization sit behind
//! [`authz::Authorizer`] and a [`authn::RequestHeaderConfig`] value so tests can drive the real
//! server with their own.

pub mod api;
pub mod authn;
pub mod authz;
pub mod load;
pub mod selector;
pub mod server;
pub mod tls;

use crate::metrics::Metrics;
use kube::Client;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// `--metrics-api-listen`, `--metrics-api-cert-file`, `--metrics-api-key-file`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--metrics-api-cert-file / --metrics-api-key-file: {0}; example: --metrics-api-cert-file /var/run/floe/metrics-api/tls.crt --metrics-api-key-file /var/run/floe/metrics-api/tls.key")]
    Certificate(#[from] tls::TlsError),
    #[error("failed to listen on --metrics-api-listen {address}: {source}; example: 0.0.0.0:6443")]
    Listen { address: SocketAddr, source: std::io::Error },
}

/// Loads the certificate, binds, starts reading the front-proxy settings and serves in a task.
/// `namespace` is the operator's `--watch-namespace`: only pools there are reported.
pub async fn start(
    client: Client,
    metrics: Arc<Metrics>,
    settings: &Settings,
    namespace: Option<String>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StartError> {
    let provider = tls::provider();
    let certificate =
        tls::ReloadingCertificate::load(tls::PURPOSE, &settings.certificate, &settings.key, Arc::clone(&provider), tls::RECHECK_INTERVAL)?;
    let config = tls::server_config(Arc::new(certificate), Arc::clone(&provider))?;
    let listener =
        tokio::net::TcpListener::bind(settings.listen).await.map_err(|source| StartError::Listen { address: settings.listen, source })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen { address: settings.listen, source })?;
    let api = Arc::new(server::MetricsApi {
        request_header: authn::watch_config(client.clone(), provider),
        authorizer: Arc::new(authz::SubjectAccessReviewAuthorizer::new(client.clone())),
        load: Arc::new(load::RegistryLoad::new(client, namespace)),
        metrics,
    });
    let task = tokio::spawn(server::serve(listener, Arc::new(config), server::router(api)));
    Ok((address, task))
}
