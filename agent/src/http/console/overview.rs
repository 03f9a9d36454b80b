//! `/`: the agents of the virtual cluster, this agent's throughput and object-store PUT rate (with
//! what those PUTs cost a month at S3's list price), a plot of the last minutes, and the health of
//! the object store and the metadata journal. Pure: the handler gathers [`Overview`], this renders.

use super::html::{self, Cell};
use super::plot;
use super::throughput::Sample;

/// S3 Standard's price of PUT/COPY/POST/LIST requests: $0.005 per 1,000.
pub const DOLLARS_PER_PUT: f64 = 0.005 / 1_000.0;
/// A month of 30 days, in seconds: what a steady rate per second adds up to.
pub const SECONDS_PER_MONTH: f64 = 30.0 * 24.0 * 3600.0;

/// One agent as the console lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRow {
    pub node_id: i32,
    pub address: String,
    pub zone: Option<String>,
    /// Empty: every role (an agent started without `--roles`).
    pub roles: Vec<String>,
    pub draining: bool,
    /// The agent serving this page.
    pub local: bool,
}

/// The object store's and the journal's state, as this agent sees them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    /// Failed object-store operations since start, by operation.
    pub object_store_errors: Vec<(String, u64)>,
    pub object_store_operations: u64,
    /// Why the last object-store operation failed, when the last one did.
    pub bucket_problem: Option<String>,
    pub applied_revision: u64,
    /// etcd revisions the replica is behind the journal (0 with embedded metadata).
    pub replica_lag_revisions: i64,
    pub metadata_version: u32,
    pub halted_at_version: Option<u32>,
}

/// Everything the overview shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overview {
    pub agents: Vec<AgentRow>,
    /// Oldest first.
    pub samples: Vec<Sample>,
    pub window_seconds: f64,
    pub topics: usize,
    pub partitions: usize,
    pub groups: usize,
    pub health: Health,
}

/// What `puts_per_second` costs over a month at S3's PUT price, in dollars.
pub fn monthly_put_cost(puts_per_second: f64) -> f64 {
    puts_per_second.max(0.0) * SECONDS_PER_MONTH * DOLLARS_PER_PUT
}

pub fn render(overview: &Overview) -> String {
    let latest = overview.samples.last().copied().unwrap_or_default();
    let mut body = html::cards(&[
        ("produce", format!("{}/s", html::bytes(latest.produce_bytes_per_second))),
        ("fetch", format!("{}/s", html::bytes(latest.fetch_bytes_per_second))),
        ("object-store PUTs", format!("{:.2}/s", latest.puts_per_second)),
        ("PUT cost per month", format!("${:.2}", monthly_put_cost(latest.puts_per_second))),
        ("topics", overview.topics.to_string()),
        ("partitions", overview.partitions.to_string()),
        ("consumer groups", overview.groups.to_string()),
    ]);
    body.push_str(
        "<p class=\"muted\">Rates of this agent over its last sample; PUTs priced at S3's $0.005 per 1,000 over a 30-day month.</p>",
    );
    body.push_str("<h2>Throughput, last minutes</h2>");
    body.push_str(&plot::throughput(&overview.samples, overview.window_seconds));
    body.push_str("<h2>Agents</h2>");
    let rows: Vec<Vec<Cell>> = overview
        .agents
        .iter()
        .map(|agent| {
            vec![
                Cell::number(agent.node_id),
                Cell::text(if agent.local { format!("{} (this agent)", agent.address) } else { agent.address.clone() }),
                Cell::text(agent.zone.as_deref().unwrap_or("—")),
                Cell::text(if agent.roles.is_empty() { "all".to_string() } else { agent.roles.join(", ") }),
                Cell::Html(if agent.draining {
                    "<span class=\"bad\">draining</span>".into()
                } else {
                    "<span class=\"ok\">serving</span>".into()
                }),
            ]
        })
        .collect();
    body.push_str(&html::table(&["Node", "Address", "Zone", "Roles", "State"], &rows, "no live agents"));
    body.push_str(&render_health(&overview.health));
    html::page("Overview", "/", &body)
}

fn render_health(health: &Health) -> String {
    let mut body = String::from("<h2>Object store and journal</h2>");
    let errors: u64 = health.object_store_errors.iter().map(|(_, count)| count).sum();
    let store_state = match (&health.bucket_problem, errors) {
        (Some(problem), _) => format!("<span class=\"bad\">failing: {}</span>", html::escape(problem)),
        (None, 0) => "<span class=\"ok\">healthy</span>".to_string(),
        (None, _) => "<span class=\"ok\">healthy</span> (recovered from earlier errors)".to_string(),
    };
    let error_detail = if health.object_store_errors.is_empty() {
        "none".to_string()
    } else {
        health.object_store_errors.iter().map(|(operation, count)| format!("{operation}: {count}")).collect::<Vec<_>>().join(", ")
    };
    let journal_state = match health.halted_at_version {
        Some(version) => format!("<span class=\"bad\">halted: the journal needs metadata version {version}</span>"),
        None if health.replica_lag_revisions > 0 => {
            format!("<span class=\"bad\">{} revisions behind</span>", health.replica_lag_revisions)
        }
        None => "<span class=\"ok\">caught up</span>".to_string(),
    };
    let rows = vec![
        vec![Cell::text("Object store"), Cell::Html(store_state)],
        vec![Cell::text("Object-store operations"), Cell::text(health.object_store_operations.to_string())],
        vec![Cell::text("Object-store errors"), Cell::text(error_detail)],
        vec![Cell::text("Journal replica"), Cell::Html(journal_state)],
        vec![Cell::text("Applied revision"), Cell::text(health.applied_revision.to_string())],
        vec![Cell::text("Metadata version"), Cell::text(health.metadata_version.to_string())],
    ];
    body.push_str(&html::table(&["Check", "State"], &rows, ""));
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_puts_a_second_cost_about_130_dollars_a_month() {
        assert!((monthly_put_cost(10.0) - 129.6).abs() < 1e-9);
        assert_eq!(monthly_put_cost(-1.0), 0.0);
    }

    #[test]
    fn the_overview_lists_agents_rates_and_a_failing_bucket() {
        let overview = Overview {
            agents: vec![AgentRow {
                node_id: 3,
                address: "10.0.0.3:9092".into(),
                zone: Some("eu-<1a>".into()),
                roles: vec!["produce".into()],
                draining: true,
                local: true,
            }],
            samples: vec![Sample { unix_ms: 1, produce_bytes_per_second: 2048.0, fetch_bytes_per_second: 0.0, puts_per_second: 4.0 }],
            window_seconds: 300.0,
            health: Health {
                object_store_errors: vec![("put".into(), 2)],
                bucket_problem: Some("put failed: <denied>".into()),
                ..Health::default()
            },
            ..Overview::default()
        };
        let page = render(&overview);
        assert!(page.contains("2.0 KiB/s") && page.contains("4.00/s") && page.contains("$51.84"), "{page}");
        assert!(page.contains("eu-&lt;1a&gt;") && page.contains("draining") && page.contains("produce"));
        assert!(page.contains("failing: put failed: &lt;denied&gt;") && page.contains("put: 2"));
        assert!(page.contains("<svg"));
    }
}
