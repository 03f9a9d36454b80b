//! The agent registry record: what each agent publishes under `agents/<node id>` (see
//! `KeyLayout::agent_key`). The agent writes and watches these (`agent/src/cluster/registry.rs`);
//! the operator reads them for a pool's load (`operator/src/metrics_api/load.rs`) and for a
//! virtual cluster's status (`registration::stats`). Both decode with [`AgentRecord::decode`].

use serde::{Deserialize, Serialize};

/// What an agent publishes about itself. Every field added after the first release carries
/// `#[serde(default)]`, so records written by older agents still parse (and the other way round:
/// older agents ignore fields they do not know).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub zone: Option<String>,
    pub roles: Vec<String>,
    /// Set on SIGTERM: the agent is leaving; it is no longer advertised, leads no partition and
    /// coordinates no group.
    #[serde(default)]
    pub draining: bool,
    /// Kafka bytes in and out per second over the last load-report period.
    #[serde(default)]
    pub bytes_in_per_second: f64,
    #[serde(default)]
    pub bytes_out_per_second: f64,
    /// Object-store bytes written plus read per second over the same period.
    #[serde(default)]
    pub object_store_bytes_per_second: f64,
    /// Process CPU seconds per wall-clock second over the same period (1.0 = one core busy).
    #[serde(default)]
    pub cpu_seconds_per_second: f64,
    /// The Kubernetes pod this agent runs in (`--pod-name`).
    #[serde(default)]
    pub pod: Option<String>,
    /// The AgentPool this agent belongs to (`--pool`); the operator sums load per pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// Why this agent's last object-store operation failed (its root cause, e.g. "connection
    /// refused"); absent once one succeeds. The operator shows it on the VirtualCluster
    /// (`AgentsHealthy`), since agents may reach the bucket differently from the operator
    /// (network policies, a pod's cloud identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_problem: Option<String>,
    /// The agent's build (its crate version); absent in records of builds before `floe diagnose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The newest journal metadata version this agent's build implements
    /// (`state::SUPPORTED_METADATA_VERSION`); a journal raised beyond it halts the agent. Published
    /// here, not only on the agent's HTTP port, because it is a fixed fact of the build that whoever
    /// reads the registry needs before changing the version, even for an agent it cannot reach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_metadata_version: Option<u32>,
    /// `host:port` of the agent's HTTP server (`/healthz`, `/metrics`, `/status`), as others reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
}

impl AgentRecord {
    /// Decodes a registry value. Fields of the first release (`node_id`, `host`, `port`, `roles`)
    /// are required; later ones default, so records of older agents decode, and fields this
    /// version does not know (a newer agent's) are ignored.
    pub fn decode(value: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_written_before_the_load_and_pool_fields_still_parses() {
        let old = r#"{"node_id":3,"host":"10.0.0.3","port":9092,"zone":"eu-1a","roles":["produce","fetch"],"bytes_in_per_second":12.5}"#;
        let record = AgentRecord::decode(old.as_bytes()).expect("old records parse");
        assert_eq!(record.node_id, 3);
        assert_eq!(record.bytes_in_per_second, 12.5);
        assert!(!record.draining);
        assert_eq!((record.object_store_bytes_per_second, record.cpu_seconds_per_second), (0.0, 0.0));
        assert_eq!((record.pod, record.pool), (None, None));
        assert_eq!((record.version, record.supported_metadata_version, record.http), (None, None, None));
    }

    #[test]
    fn a_record_round_trips_with_load_pod_and_pool() {
        let record = AgentRecord {
            node_id: 7,
            host: "floe-abc.floe.svc".into(),
            port: 9092,
            zone: None,
            roles: vec!["produce".into()],
            draining: true,
            bytes_in_per_second: 1.0,
            bytes_out_per_second: 2.0,
            object_store_bytes_per_second: 3.0,
            cpu_seconds_per_second: 0.25,
            pod: Some("floe-abc".into()),
            pool: Some("ingest".into()),
            bucket_problem: None,
            version: Some("0.1.0".into()),
            supported_metadata_version: Some(7),
            http: Some("floe-abc.floe.svc:8080".into()),
        };
        let json = serde_json::to_string(&record).expect("serializes");
        for field in [
            r#""pool":"ingest""#,
            r#""pod":"floe-abc""#,
            r#""cpu_seconds_per_second":0.25"#,
            r#""draining":true"#,
            r#""supported_metadata_version":7"#,
            r#""http":"floe-abc.floe.svc:8080""#,
        ] {
            assert!(json.contains(field), "{json} lacks {field}");
        }
        assert_eq!(AgentRecord::decode(json.as_bytes()).expect("parses"), record);
    }

    #[test]
    fn a_record_from_a_newer_agent_with_unknown_fields_decodes() {
        let newer = br#"{"node_id":1,"host":"a","port":9092,"zone":null,"roles":[],"pool":"ingest","added_later":{"x":1}}"#;
        let record = AgentRecord::decode(newer).expect("unknown fields are ignored");
        assert_eq!(record.pool.as_deref(), Some("ingest"));
    }

    #[test]
    fn a_value_without_the_first_release_fields_is_not_a_record() {
        assert!(AgentRecord::decode(br#"{"pool":"ingest","bytes_in_per_second":5}"#).is_err());
        assert!(AgentRecord::decode(b"not json").is_err());
    }
}
