//! The read-only web console on the agent's HTTP port: server-rendered HTML with an inline style
//! sheet and inline SVG, no scripts and no external assets.
//!
//! | Path | Shows |
//! |---|---|
//! | `/` | agents, the cluster's throughput, PUT rate and cost, a throughput plot, object-store and journal health |
//! | `/topics`, `/topics/{name}` | partitions, offsets, records, bytes, chunks and objects |
//! | `/groups`, `/groups/{name}` | state, members, committed offsets and lag |
//! | `/rates` | this agent's throughput samples as JSON, for the other agents' overviews |
//!
//! Every page reads the metadata replica (one read lock), the cluster view and the metrics; none
//! changes anything. The overview also asks every other live agent for its rates (`rates`, each
//! bounded by a short timeout, all at once) and sums them. `html` escapes, `throughput` samples
//! rates, `plot` draws them, and `overview`, `topics` and `groups` each build and render their pages
//! from what the handler read.

pub mod groups;
pub mod html;
pub mod overview;
pub mod plot;
pub mod rates;
pub mod throughput;
pub mod topics;

use super::HttpState;
use crate::cluster::registry::Registry;
use crate::cluster::ClusterView;
use crate::metadata::replica::Replica;
use crate::metrics::Metrics;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use overview::{AgentRow, Health, Overview, Rates};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use throughput::ThroughputHistory;

/// What the console reads.
pub struct Console {
    pub replica: Arc<Replica>,
    pub cluster: Arc<dyn ClusterView>,
    /// The etcd registry in cluster mode, for each agent's zone, roles and drain state.
    pub registry: Option<Arc<Registry>>,
    pub metrics: Arc<Metrics>,
    pub throughput: Arc<ThroughputHistory>,
}

/// The console's routes, to merge into the agent's router.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(|State(state): State<HttpState>| async move { Html(overview_page(&state.console).await) }))
        .route(
            "/rates",
            get(|State(state): State<HttpState>| async move {
                let console = &state.console;
                let rates = rates::AgentRates { node_id: console.cluster.local().node_id, samples: console.throughput.samples() };
                ([(axum::http::header::CONTENT_TYPE, "application/json")], serde_json::to_string(&rates).unwrap_or_default())
            }),
        )
        .route("/topics", get(|State(state): State<HttpState>| async move { Html(topics_page(&state.console)) }))
        .route(
            "/topics/{name}",
            get(|State(state): State<HttpState>, Path(name): Path<String>| async move { topic_page(&state.console, &name) }),
        )
        .route("/groups", get(|State(state): State<HttpState>| async move { Html(groups_page(&state.console)) }))
        .route(
            "/groups/{name}",
            get(|State(state): State<HttpState>, Path(name): Path<String>| async move { group_page(&state.console, &name) }),
        )
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, Html(html::page("Not found", "", &format!("<p>{}</p>", html::escape(what))))).into_response()
}

/// A live agent as the registry (or the cluster view) lists it, with where to ask for its rates.
struct Listed {
    node_id: i32,
    address: String,
    zone: Option<String>,
    roles: Vec<String>,
    draining: bool,
    http: Option<String>,
}

fn listed(console: &Console) -> Vec<Listed> {
    match &console.registry {
        Some(registry) => {
            let mut records = registry.live_records();
            records.sort_by_key(|record| record.node_id);
            records
                .into_iter()
                .map(|record| Listed {
                    node_id: record.node_id,
                    address: format!("{}:{}", record.host, record.port),
                    zone: record.zone,
                    roles: record.roles,
                    draining: record.draining,
                    http: record.http,
                })
                .collect()
        }
        None => console
            .cluster
            .live()
            .into_iter()
            .map(|node| Listed {
                node_id: node.node_id,
                address: format!("{}:{}", node.host, node.port),
                zone: node.rack,
                roles: Vec::new(),
                draining: console.metrics.draining.get() > 0,
                http: None,
            })
            .collect(),
    }
}

/// Every live agent with its rates: this agent's from its own history, the others' asked for all
/// at once, so the slowest peer (at most `rates::PEER_TIMEOUT`) bounds the wait.
async fn agents(console: &Console) -> Vec<AgentRow> {
    let local = console.cluster.local().node_id;
    let rows = listed(console).into_iter().map(|agent| async move {
        let rates = if agent.node_id == local {
            Rates::Answered(console.throughput.samples())
        } else {
            match rates::fetch(agent.node_id, agent.http.as_deref()).await {
                Ok(samples) => Rates::Answered(samples),
                Err(why) => Rates::Silent(why),
            }
        };
        AgentRow {
            node_id: agent.node_id,
            address: agent.address,
            zone: agent.zone,
            roles: agent.roles,
            draining: agent.draining,
            local: agent.node_id == local,
            rates,
        }
    });
    futures::future::join_all(rows).await
}

async fn overview_page(console: &Console) -> String {
    let (topics, partitions, groups, metadata_version, halted_at_version) = console.replica.read(|state| {
        let groups = state.group_memberships.keys().chain(state.group_offsets.keys()).collect::<std::collections::BTreeSet<_>>().len();
        let partitions = state.topics.values().map(|topic| topic.partitions.len()).sum();
        (state.topics.len(), partitions, groups, state.metadata_version, state.halted_at_version)
    });
    let operations = throughput::object_store_operations(&console.metrics);
    let mut object_store_errors: Vec<(String, u64)> = Vec::new();
    for ((operation, outcome), count) in &operations {
        if outcome == "error" && *count > 0 {
            object_store_errors.push((operation.clone(), *count));
        }
    }
    let overview = Overview {
        agents: agents(console).await,
        window_seconds: throughput::SAMPLES_KEPT as f64 * throughput::SAMPLE_INTERVAL.as_secs_f64(),
        topics,
        partitions,
        groups,
        health: Health {
            object_store_errors,
            object_store_operations: operations.values().sum(),
            bucket_problem: console.metrics.bucket_problem(),
            applied_revision: console.replica.applied_revision(),
            replica_lag_revisions: console.metrics.replica_lag_revisions.get(),
            metadata_version,
            halted_at_version,
        },
    };
    overview::render(&overview)
}

fn topics_page(console: &Console) -> String {
    topics::render_list(&console.replica.read(topics::topics))
}

fn topic_page(console: &Console, name: &str) -> Response {
    match console.replica.read(|state| topics::topic(state, name)) {
        Some(topic) => Html(topics::render_topic(&topic)).into_response(),
        None => not_found(&format!("no topic named {name:?}")),
    }
}

fn groups_page(console: &Console) -> String {
    let now = now_ms();
    groups::render_list(&console.replica.read(|state| groups::groups(state, now)))
}

fn group_page(console: &Console, name: &str) -> Response {
    let now = now_ms();
    match console.replica.read(|state| groups::group(state, name, now)) {
        Some(group) => Html(groups::render_group(&group)).into_response(),
        None => not_found(&format!("no consumer group named {name:?}")),
    }
}
