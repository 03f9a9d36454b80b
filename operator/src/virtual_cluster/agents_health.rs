//! The `AgentsHealthy` condition: what the agents themselves report about the bucket. The operator
//! probes the bucket with its own credentials and network path; the agents may differ (a network
//! policy, a pod's cloud identity, an endpoint only the operator resolves), so each agent publishes
//! the root cause of its last failed object-store operation in its registry record and this
//! condition names them. It does not change `Ready`: pools follow `Ready`, and a fix to the
//! VirtualCluster must still reach agents that cannot use the bucket.

use crate::messages::shorten;
use floe_meta::agents::AgentRecord;

pub const CONDITION: &str = "AgentsHealthy";
pub const REASON_HEALTHY: &str = "NoProblemReported";
pub const REASON_BUCKET: &str = "AgentsCannotUseBucket";

/// Status, reason and message of the condition for these live agents' records.
pub fn assess(records: &[AgentRecord]) -> (bool, &'static str, String) {
    let live: Vec<&AgentRecord> = records.iter().filter(|record| !record.draining).collect();
    let failing: Vec<&AgentRecord> = live.iter().copied().filter(|record| record.bucket_problem.is_some()).collect();
    let Some(first) = failing.first() else {
        let noun = if live.len() == 1 { "agent" } else { "agents" };
        return (true, REASON_HEALTHY, format!("{} {noun} running; none reports a problem with the bucket", live.len()));
    };
    let who = first.pod.clone().unwrap_or_else(|| format!("node {}", first.node_id));
    let cause = first.bucket_problem.as_deref().unwrap_or_default();
    let message =
        format!("{} of {} agents cannot use the bucket; {}: {}", failing.len(), live.len(), shorten(&who, 40), shorten(cause, 100));
    (false, REASON_BUCKET, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(node_id: i32, pod: &str, problem: Option<&str>, draining: bool) -> AgentRecord {
        AgentRecord {
            node_id,
            host: "127.0.0.1".into(),
            port: 9092,
            draining,
            pod: Some(pod.into()),
            bucket_problem: problem.map(str::to_string),
            ..AgentRecord::default()
        }
    }

    #[test]
    fn agents_without_problems_are_healthy() {
        let (healthy, reason, message) = assess(&[record(1, "a", None, false), record(2, "b", None, false)]);
        assert!(healthy);
        assert_eq!(reason, REASON_HEALTHY);
        assert_eq!(message, "2 agents running; none reports a problem with the bucket");
    }

    #[test]
    fn a_failing_agent_is_named_with_its_cause_and_a_draining_one_is_not_counted() {
        let records = [
            record(1, "agents-7c9f-abcde", Some("put failed: Connection refused (os error 111)"), false),
            record(2, "agents-7c9f-fghij", None, false),
            record(3, "agents-7c9f-leaving", Some("get failed: timed out"), true),
        ];
        let (healthy, reason, message) = assess(&records);
        assert!(!healthy);
        assert_eq!(reason, REASON_BUCKET);
        assert_eq!(message, "1 of 2 agents cannot use the bucket; agents-7c9f-abcde: put failed: Connection refused (os error 111)");
    }

    #[test]
    fn the_message_stays_short_whatever_the_cause() {
        let long = "x".repeat(5000);
        let (_, _, message) = assess(&[record(1, &"p".repeat(300), Some(&long), false)]);
        assert!(message.chars().count() < 200, "{}", message.chars().count());
    }
}
