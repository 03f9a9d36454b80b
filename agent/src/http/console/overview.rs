//! `/`: the agents of the virtual cluster, the cluster's throughput and object-store PUT rate
//! (with what those PUTs cost a month at S3's list price) summed over the agents that answered, each
//! agent's own rates, a plot of the last minutes, and the health of the object store and the
//! metadata journal as this agent sees them. Pure: the handler gathers [`Overview`] (asking the
//! peers for their rates), this sums and renders.

use super::html::{self, Cell};
use super::plot;
use super::throughput::{self, Sample};
use std::fmt::Write;

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
    pub rates: Rates,
}

/// An agent's throughput as the console learnt it.
#[derive(Debug, Clone, PartialEq)]
pub enum Rates {
    /// Its samples, oldest first; none in its first seconds.
    Answered(Vec<Sample>),
    /// It did not answer (within `rates::PEER_TIMEOUT`), and why: its rates are missing from the totals.
    Silent(String),
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
    /// Each with its rates (this agent's read directly, the others' asked for).
    pub agents: Vec<AgentRow>,
    pub window_seconds: f64,
    pub topics: usize,
    pub partitions: usize,
    pub groups: usize,
    pub health: Health,
}

/// The cluster's current rates: the sum of the newest sample of every agent that answered.
pub fn cluster_latest(agents: &[AgentRow]) -> Sample {
    let mut total = Sample::default();
    for sample in agents.iter().filter_map(|agent| latest(&agent.rates)) {
        total.unix_ms = total.unix_ms.max(sample.unix_ms);
        total.produce_bytes_per_second += sample.produce_bytes_per_second;
        total.fetch_bytes_per_second += sample.fetch_bytes_per_second;
        total.puts_per_second += sample.puts_per_second;
    }
    total
}

/// The cluster's history over the agents that answered (see [`throughput::sum_series`]).
pub fn cluster_series(agents: &[AgentRow]) -> Vec<Sample> {
    let histories: Vec<&[Sample]> = agents
        .iter()
        .filter_map(|agent| match &agent.rates {
            Rates::Answered(samples) => Some(samples.as_slice()),
            Rates::Silent(_) => None,
        })
        .collect();
    throughput::sum_series(&histories, throughput::SAMPLE_INTERVAL.as_millis() as i64)
}

fn latest(rates: &Rates) -> Option<Sample> {
    match rates {
        Rates::Answered(samples) => samples.last().copied(),
        Rates::Silent(_) => None,
    }
}

/// What `puts_per_second` costs over a month at S3's PUT price, in dollars.
pub fn monthly_put_cost(puts_per_second: f64) -> f64 {
    puts_per_second.max(0.0) * SECONDS_PER_MONTH * DOLLARS_PER_PUT
}

pub fn render(overview: &Overview) -> String {
    let latest = cluster_latest(&overview.agents);
    let mut body = html::cards(&[
        ("produce", format!("{}/s", html::bytes(latest.produce_bytes_per_second))),
        ("fetch", format!("{}/s", html::bytes(latest.fetch_bytes_per_second))),
        ("object-store PUTs", format!("{:.2}/s", latest.puts_per_second)),
        ("PUT cost per month", format!("${:.2}", monthly_put_cost(latest.puts_per_second))),
        ("topics", overview.topics.to_string()),
        ("partitions", overview.partitions.to_string()),
        ("consumer groups", overview.groups.to_string()),
    ]);
    let answered = overview.agents.iter().filter(|agent| matches!(agent.rates, Rates::Answered(_))).count();
    let only_this_agent = overview.agents.iter().all(|agent| agent.local);
    let interval = throughput::SAMPLE_INTERVAL.as_secs();
    let scope = if only_this_agent {
        format!("Rates of this agent over its last sample (taken every {interval} s)")
    } else {
        format!("Rates of the cluster: the sum of the last sample (taken every {interval} s) of the {answered} agents that answered")
    };
    let _ = write!(body, "<p class=\"muted\">{scope}; PUTs priced at S3's $0.005 per 1,000 over a 30-day month.</p>");
    body.push_str(&render_silent(&overview.agents));
    let plotted = if only_this_agent { "this agent" } else { "sum of the agents that answered" };
    let _ = write!(body, "<h2>Throughput, last minutes ({plotted})</h2>");
    body.push_str(&plot::throughput(&cluster_series(&overview.agents), overview.window_seconds));
    body.push_str("<h2>Agents</h2>");
    let rows: Vec<Vec<Cell>> = overview
        .agents
        .iter()
        .map(|agent| {
            let mut row = vec![
                Cell::number(agent.node_id),
                Cell::text(if agent.local { format!("{} (this agent)", agent.address) } else { agent.address.clone() }),
                Cell::text(agent.zone.as_deref().unwrap_or("—")),
                Cell::text(if agent.roles.is_empty() { "all".to_string() } else { agent.roles.join(", ") }),
                Cell::Html(if agent.draining {
                    "<span class=\"bad\">draining</span>".into()
                } else {
                    "<span class=\"ok\">serving</span>".into()
                }),
            ];
            row.extend(rate_cells(&agent.rates));
            row
        })
        .collect();
    body.push_str(&html::table(&["Node", "Address", "Zone", "Roles", "State", "Produce", "Fetch", "PUTs"], &rows, "no live agents"));
    body.push_str(&render_health(&overview.health));
    html::page("Overview", "/", &body)
}

/// An agent's produce, fetch and PUT rates of its newest sample.
fn rate_cells(rates: &Rates) -> [Cell; 3] {
    match rates {
        Rates::Answered(samples) => match samples.last() {
            Some(sample) => [
                Cell::number(format!("{}/s", html::bytes(sample.produce_bytes_per_second))),
                Cell::number(format!("{}/s", html::bytes(sample.fetch_bytes_per_second))),
                Cell::number(format!("{:.2}/s", sample.puts_per_second)),
            ],
            None => [Cell::number("no sample yet"), Cell::number("—"), Cell::number("—")],
        },
        Rates::Silent(_) => [Cell::Html("<span class=\"bad\">no answer</span>".into()), Cell::number("—"), Cell::number("—")],
    }
}

/// Which agents did not answer and why: their rates are missing from the totals and the plot.
fn render_silent(agents: &[AgentRow]) -> String {
    let silent: Vec<String> = agents
        .iter()
        .filter_map(|agent| match &agent.rates {
            Rates::Silent(why) => Some(format!("node {} ({}): {}", agent.node_id, html::escape(&agent.address), html::escape(why))),
            Rates::Answered(_) => None,
        })
        .collect();
    if silent.is_empty() {
        return String::new();
    }
    let count = if silent.len() == 1 { "1 agent".to_string() } else { format!("{} agents", silent.len()) };
    format!("<p class=\"bad\">Missing from these totals and the plot, {count} that did not answer: {}.</p>", silent.join("; "))
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

    fn agent(node_id: i32, local: bool, rates: Rates) -> AgentRow {
        AgentRow { node_id, address: format!("10.0.0.{node_id}:9092"), zone: None, roles: Vec::new(), draining: false, local, rates }
    }

    fn sample(unix_ms: i64, produce: f64, puts: f64) -> Sample {
        Sample { unix_ms, produce_bytes_per_second: produce, fetch_bytes_per_second: produce / 2.0, puts_per_second: puts }
    }

    /// The text of the card labelled `label`.
    fn card<'a>(page: &'a str, label: &str) -> &'a str {
        let before = page.split(&format!("<div class=\"label\">{label}</div>")).next().expect("the page");
        before.rsplit("<div class=\"value\">").next().expect("a card").split('<').next().expect("its value")
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
                rates: Rates::Answered(vec![sample(1, 2048.0, 4.0)]),
            }],
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
        assert!(page.contains("Rates of this agent") && page.contains("(this agent)</h2>"), "{page}");
        assert!(page.contains("eu-&lt;1a&gt;") && page.contains("draining") && page.contains("produce"));
        assert!(page.contains("failing: put failed: &lt;denied&gt;") && page.contains("put: 2"));
        assert!(page.contains("<svg"));
    }

    #[test]
    fn the_cards_show_the_sum_of_every_answering_agents_newest_sample() {
        let overview = Overview {
            agents: vec![
                agent(1, true, Rates::Answered(vec![sample(0, 9_999.0, 9.0), sample(3_000, 1024.0, 1.0)])),
                agent(2, false, Rates::Answered(vec![sample(1_000, 2048.0, 2.0)])),
                agent(3, false, Rates::Answered(vec![sample(2_000, 1024.0, 0.5)])),
                agent(4, false, Rates::Answered(Vec::new())),
            ],
            window_seconds: 300.0,
            ..Overview::default()
        };
        assert_eq!(cluster_latest(&overview.agents), sample(3_000, 4096.0, 3.5));
        let page = render(&overview);
        assert_eq!(card(&page, "produce"), "4.0 KiB/s");
        assert_eq!(card(&page, "fetch"), "2.0 KiB/s");
        assert_eq!(card(&page, "object-store PUTs"), "3.50/s");
        assert_eq!(card(&page, "PUT cost per month"), format!("${:.2}", monthly_put_cost(3.5)));
        assert!(page.contains("of the 4 agents that answered") && page.contains("(sum of the agents that answered)</h2>"), "{page}");
        // Each agent's own figures, in its row.
        assert!(page.contains("<td class=\"number\">2.0 KiB/s</td><td class=\"number\">1.0 KiB/s</td><td class=\"number\">2.00/s</td>"));
        assert!(page.contains("no sample yet") && !page.contains("did not answer"), "{page}");
    }

    #[test]
    fn an_agent_that_did_not_answer_is_named_and_left_out_of_the_totals() {
        let overview = Overview {
            agents: vec![
                agent(1, true, Rates::Answered(vec![sample(0, 1024.0, 1.0)])),
                agent(2, false, Rates::Silent("no answer from <10.0.0.2:8080> within 500 ms".into())),
                agent(3, false, Rates::Answered(vec![sample(0, 1024.0, 1.0)])),
            ],
            window_seconds: 300.0,
            ..Overview::default()
        };
        let page = render(&overview);
        assert_eq!(card(&page, "produce"), "2.0 KiB/s");
        assert!(page.contains("of the 2 agents that answered"), "{page}");
        assert!(
            page.contains(
                "<p class=\"bad\">Missing from these totals and the plot, 1 agent that did not answer: node 2 (10.0.0.2:9092): \
                 no answer from &lt;10.0.0.2:8080&gt; within 500 ms.</p>"
            ),
            "{page}"
        );
        assert!(page.contains("<span class=\"bad\">no answer</span>"), "{page}");
    }

    #[test]
    fn the_plot_draws_the_sum_of_the_answering_agents() {
        let agents = vec![
            agent(1, true, Rates::Answered(vec![sample(0, 100.0, 1.0), sample(3_000, 100.0, 1.0)])),
            agent(2, false, Rates::Answered(vec![sample(1_000, 10.0, 1.0), sample(4_000, 10.0, 1.0)])),
            agent(3, false, Rates::Silent("no answer".into())),
        ];
        let series = cluster_series(&agents);
        assert_eq!(series, vec![sample(0, 110.0, 2.0), sample(3_000, 110.0, 2.0)]);
    }
}
