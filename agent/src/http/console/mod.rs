//! The read-only web console on the agent's HTTP port: server-rendered HTML with an inline style
//! sheet and inline SVG, no scripts and no external assets.
//!
//! | Path | Shows |
//! |---|---|
//! | `/` | agents, throughput, PUT rate and cost, a throughput plot, object-store and journal health |
//! | `/topics`, `/topics/{name}` | partitions, offsets, records, bytes, chunks and objects |
//! | `/groups`, `/groups/{name}` | state, members, committed offsets and lag |
//!
//! Every page reads the metadata replica (one read lock), the cluster view and the metrics; none
//! changes anything. `html` escapes, `throughput` samples rates, `plot` draws them, and
//! `overview`, `topics` and `groups` each build and render their pages from what the handler read.

pub mod groups;
pub mod html;
pub mod overview;
pub mod plot;
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
use overview::{AgentRow, Health, Overview};
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
        .route("/", get(|State(state): State<HttpState>| async move { Html(overview_page(&state.console)) }))
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

fn agents(console: &Console) -> Vec<AgentRow> {
    let local = console.cluster.local().node_id;
    match &console.registry {
        Some(registry) => {
            let mut records = registry.live_records();
            records.sort_by_key(|record| record.node_id);
            records
                .into_iter()
                .map(|record| AgentRow {
                    node_id: record.node_id,
                    address: format!("{}:{}", record.host, record.port),
                    zone: record.zone,
                    roles: record.roles,
                    draining: record.draining,
                    local: record.node_id == local,
                })
                .collect()
        }
        None => console
            .cluster
            .live()
            .into_iter()
            .map(|node| AgentRow {
                node_id: node.node_id,
                address: format!("{}:{}", node.host, node.port),
                zone: node.rack,
                roles: Vec::new(),
                draining: console.metrics.draining.get() > 0,
                local: node.node_id == local,
            })
            .collect(),
    }
}

fn overview_page(console: &Console) -> String {
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
        agents: agents(console),
        samples: console.throughput.samples(),
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
