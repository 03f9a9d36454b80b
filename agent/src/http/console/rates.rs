//! `/rates` and asking peers for theirs: every agent answers its own throughput history as JSON,
//! and the overview asks each other live agent for it, so the page shows the cluster's rates
//! rather than those of the agent it was opened on. Only this module does network I/O for the
//! console; what it asks is bounded by [`PEER_TIMEOUT`].

use super::throughput::Sample;
use floe_meta::messages::plain_cause;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::time::Duration;

/// How long the overview waits for a peer's rates. A dead or partitioned peer costs the page this
/// much once (peers are asked concurrently), then is named as not answering.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(500);

/// What `/rates` answers: the node and its samples, oldest first. New fields must default, so
/// agents of different builds read each other's answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRates {
    pub node_id: i32,
    pub samples: Vec<Sample>,
}

/// One HTTP client for every page load, so connections to peers are reused. Built on first use:
/// the console's state is built by the agent's start-up, which has no use for it otherwise.
fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    // No proxy: peers are reached at the addresses they published, as Kafka clients reach them.
    CLIENT.get_or_init(|| reqwest::Client::builder().no_proxy().build().unwrap_or_default())
}

/// The samples of node `node_id`, asked at `http` (its registry record's HTTP address); the error
/// says, in a few words for the page, why there are none.
pub async fn fetch(node_id: i32, http: Option<&str>) -> Result<Vec<Sample>, String> {
    let Some(http) = http else {
        return Err("its registry record names no HTTP address (a floe build older than the console)".to_string());
    };
    match tokio::time::timeout(PEER_TIMEOUT, ask(http)).await {
        Ok(Ok(rates)) if rates.node_id == node_id => Ok(rates.samples),
        Ok(Ok(rates)) => Err(format!("{http} answers as node {}, not as this node", rates.node_id)),
        Ok(Err(cause)) => Err(cause),
        Err(_) => Err(format!("no answer from {http} within {} ms", PEER_TIMEOUT.as_millis())),
    }
}

async fn ask(http: &str) -> Result<AgentRates, String> {
    let url = format!("http://{http}/rates");
    let response = client().get(&url).send().await.map_err(|error| format!("no answer from {http}: {}", plain_cause(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status} (a floe build older than the console's cluster totals)"));
    }
    let body = response.bytes().await.map_err(|error| format!("the answer of {url} broke off: {}", plain_cause(&error)))?;
    serde_json::from_slice(&body).map_err(|error| format!("{url} answered something that is not an agent's rates ({error})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;

    /// An HTTP server on a free port answering `/rates` with `answer` after `delay`.
    async fn peer(answer: AgentRates, delay: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let address = listener.local_addr().expect("bound").to_string();
        let body = serde_json::to_string(&answer).expect("serializes");
        let app = axum::Router::new().route(
            "/rates",
            get(move || async move {
                tokio::time::sleep(delay).await;
                body
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    fn rates(node_id: i32) -> AgentRates {
        AgentRates {
            node_id,
            samples: vec![Sample { unix_ms: 7, produce_bytes_per_second: 10.0, fetch_bytes_per_second: 2.5, puts_per_second: 0.25 }],
        }
    }

    #[tokio::test]
    async fn a_peer_that_answers_as_its_node_gives_its_samples() {
        let address = peer(rates(2), Duration::ZERO).await;
        assert_eq!(fetch(2, Some(&address)).await, Ok(rates(2).samples));
    }

    #[tokio::test]
    async fn a_peer_answering_as_another_node_is_not_counted() {
        let address = peer(rates(5), Duration::ZERO).await;
        let error = fetch(2, Some(&address)).await.expect_err("another node's rates");
        assert!(error.contains("answers as node 5"), "{error}");
    }

    #[tokio::test]
    async fn a_silent_peer_is_given_up_on_after_the_timeout() {
        let address = peer(rates(2), Duration::from_secs(30)).await;
        let started = std::time::Instant::now();
        let error = fetch(2, Some(&address)).await.expect_err("no answer in time");
        assert!(started.elapsed() < PEER_TIMEOUT * 3, "waited {:?}", started.elapsed());
        assert!(error.contains("no answer from") && error.contains(&address), "{error}");
    }

    #[tokio::test]
    async fn an_agent_without_an_http_address_is_named_as_such() {
        let error = fetch(2, None).await.expect_err("nowhere to ask");
        assert!(error.contains("no HTTP address"), "{error}");
    }
}
