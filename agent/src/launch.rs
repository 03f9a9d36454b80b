//! From command-line arguments to an agent's settings: what `floe agent` and `floe playground`
//! start with, and what the in-process test tier (`agent/tests/`) starts with too, so a test runs
//! the agent exactly as the binary would.

use crate::agent::{AgentSettings, ClusterSettings, DiskCacheSettings};
use crate::config::{ClusterArgs, CommonArgs, MetadataUrl};
use crate::handlers::RequestLimits;
use crate::jobs::JobSettings;
use crate::memory_limit;
use crate::metadata::etcd::EtcdSettings;
use crate::server::ServerSettings;
use crate::storage::{ObjectStoreUrl, S3Options};
use crate::tls::{ListenerTls, ListenerTlsError};
use std::path::Path;
use std::time::Duration;

/// Flags that name something unusable: start-up stops with the message.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Tls(#[from] ListenerTlsError),
    #[error("{0}")]
    Sasl(String),
    #[error("{0}")]
    Authorization(String),
}

/// The playground's settings: embedded metadata under `<directory>/metadata` and a file bucket under
/// `<directory>/bucket`.
pub fn playground_settings(directory: &Path, mut common: CommonArgs) -> Result<AgentSettings, SettingsError> {
    // A playground behaves like Kafka out of the box: a client's first produce creates its topic.
    common.auto_create_topics.get_or_insert(true);
    settings(MetadataUrl::Embedded(directory.join("metadata")), ObjectStoreUrl::File(directory.join("bucket")), common, None)
}

/// The settings `floe agent` (with `cluster`) or `floe playground` start with.
pub fn settings(
    metadata: MetadataUrl,
    object_store: ObjectStoreUrl,
    common: CommonArgs,
    cluster: Option<&ClusterArgs>,
) -> Result<AgentSettings, SettingsError> {
    // Every TLS and SASL file is read and checked now: a bad one stops start-up naming its flag.
    let tls = common.tls.settings().map(|tls| ListenerTls::load(&tls)).transpose()?;
    let sasl = common.sasl.settings().map_err(SettingsError::Sasl)?;
    if let Some(sasl) = &sasl {
        if tls.is_none() && sasl.mechanisms.contains(&crate::sasl::Mechanism::Plain) {
            tracing::warn!("SASL PLAIN without --tls-cert-file: clients send their passwords in clear text");
        }
    }
    let bootstrap_user = sasl.as_ref().and_then(|sasl| sasl.bootstrap_user.as_ref()).map(|user| user.name.as_str());
    let authorization = common.authorization.settings(bootstrap_user).map_err(SettingsError::Authorization)?;
    if authorization.is_some() && sasl.is_none() && (tls.is_none() || common.tls.tls_client_auth == crate::config::TlsClientAuth::None) {
        tracing::warn!("--acl-authorization without SASL or client certificates: every client is User:ANONYMOUS");
    }
    let flush_spacing = match (common.flush_interval, common.max_puts_per_second) {
        (Some(interval), _) => interval,
        (None, rate) => Duration::from_secs_f64(1.0 / rate.unwrap_or_else(|| default_puts_per_second(&object_store))),
    };
    let file_bucket = matches!(object_store, ObjectStoreUrl::File(_));
    Ok(AgentSettings {
        authorization,
        cluster: cluster.and_then(|cluster| cluster_settings(&metadata, cluster)),
        jobs: JobSettings {
            snapshot_interval: common.jobs.snapshot_interval,
            compaction_interval: common.jobs.compaction_interval,
            compaction_fan_in: common.jobs.compaction_fan_in as usize,
            key_compaction_interval: common.jobs.key_compaction_interval,
            small_segment_bytes: (common.flush_max_bytes / 2) as u64,
            retention_interval: common.jobs.retention_interval,
            gc_grace: common.jobs.gc_grace,
            lag_metrics_interval: common.jobs.lag_metrics_interval,
            lag_metrics_max_series: common.jobs.lag_metrics_max_series as usize,
        },
        s3: cluster.map(s3_options).unwrap_or_default(),
        metadata,
        object_store,
        kafka_listen: common.kafka_listen,
        advertise: common.advertise,
        http_listen: common.http_listen,
        flush_spacing,
        flush_max_bytes: common.flush_max_bytes,
        server: ServerSettings {
            max_request_bytes: common.max_request_bytes,
            queued_max_request_bytes: common.queued_max_request_bytes,
            max_in_flight_requests_per_connection: common.max_in_flight_requests_per_connection as usize,
            connections_max_idle: common.connections_max_idle,
            max_connections: common.max_connections as usize,
            max_connections_per_ip: common.max_connections_per_ip as usize,
            tls,
            sasl,
        },
        limits: RequestLimits {
            fetch_max_bytes: common.fetch_max_bytes,
            offset_metadata_max_bytes: common.offset_metadata_max_bytes,
            group_max_size: common.group_max_size as usize,
            group_max_member_metadata_bytes: common.group_max_member_metadata_bytes,
            max_partitions_per_request: common.max_partitions_per_request as usize,
            max_partitions: common.max_partitions as usize,
            fetch_session_cache_slots: common.fetch_session_cache_slots as usize,
        },
        cache_bytes: cache_bytes(common.cache_bytes, memory_limit::cgroup_memory_limit(), file_bucket),
        disk_cache: cluster.and_then(|cluster| {
            let directory = cluster.disk_cache_dir.clone()?;
            Some(DiskCacheSettings { directory, capacity_bytes: cluster.disk_cache_bytes as u64 })
        }),
        default_partitions: common.default_partitions,
        auto_create_topics: common.auto_create_topics.unwrap_or(false),
        group_initial_rebalance_delay: common.group_initial_rebalance_delay,
        node_id: common.node_id,
        produce_validation_threads: common
            .produce_validation_threads
            .map(usize::from)
            // Half the CPUs: bombs can never take the cores the async workers, flushes and
            // heartbeats need, and one thread checks about 2 GiB/s of lz4 batches.
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cpus| (cpus.get() / 2).max(1))),
        produce_max_decompressed_bytes_per_request: common.produce_max_decompressed_bytes_per_request,
    })
}

/// The segment cache: `--cache-bytes` when given, else the default (smaller over a file bucket)
/// within the memory limit. The default is logged with the limit it followed, and a given value
/// over half of the limit is warned about, so that an agent killed for memory shows why in its
/// first lines.
fn cache_bytes(given: Option<usize>, limit: Option<u64>, file_bucket: bool) -> usize {
    const MIB: u64 = 1 << 20;
    match given {
        Some(bytes) => {
            if let Some(limit) = limit.filter(|&limit| bytes as u64 > limit / 2) {
                tracing::warn!(
                    cache_mib = bytes as u64 / MIB,
                    memory_limit_mib = limit / MIB,
                    "--cache-bytes is more than half of this container's memory limit: the agent needs about 250 MiB beside its cache and may be killed for memory; lower --cache-bytes or raise the limit"
                );
            }
            bytes
        }
        None => {
            let bytes = memory_limit::default_cache_bytes(limit, file_bucket);
            let cache_mib = bytes as u64 / MIB;
            let most_mib = memory_limit::most_default_cache_bytes(file_bucket) as u64 / MIB;
            let why = if file_bucket { " over a file bucket, whose reads the page cache serves" } else { "" };
            let most = format!("at most {most_mib} MiB{why}");
            match limit {
                Some(limit) => tracing::info!(
                    cache_mib,
                    memory_limit_mib = limit / MIB,
                    "segment cache sized within this container's memory limit (a quarter of it, {most}; --cache-bytes overrides)"
                ),
                None => tracing::info!(
                    cache_mib,
                    "segment cache at its default ({most}; no container memory limit found; --cache-bytes overrides)"
                ),
            }
            bytes
        }
    }
}

/// The S3 client options of `--s3-*`.
pub fn s3_options(cluster: &ClusterArgs) -> S3Options {
    S3Options {
        endpoint: cluster.s3_endpoint.clone(),
        region: cluster.s3_region.clone(),
        access_key_id: cluster.s3_access_key_id.clone(),
        secret_access_key: cluster.s3_secret_access_key.clone(),
        allow_http: cluster.s3_allow_http,
        virtual_hosted_style: cluster.s3_virtual_hosted_style,
    }
}

/// Cluster mode's settings, when the metadata is etcd.
pub fn cluster_settings(metadata: &MetadataUrl, cluster: &ClusterArgs) -> Option<ClusterSettings> {
    let MetadataUrl::Etcd { endpoints, prefix } = metadata else { return None };
    Some(ClusterSettings {
        virtual_cluster: cluster.virtual_cluster.clone(),
        virtual_cluster_uid: cluster.virtual_cluster_uid.clone(),
        etcd: EtcdSettings {
            endpoints: endpoints.clone(),
            prefix: prefix.clone(),
            user: cluster.etcd_user.clone().zip(cluster.etcd_password.clone()),
            ca_file: cluster.etcd_ca_file.clone(),
            cert_file: cluster.etcd_cert_file.clone(),
            key_file: cluster.etcd_key_file.clone(),
        },
        zone: cluster.zone.clone(),
        roles: cluster.roles.clone(),
        registry_ttl: cluster.registry_ttl,
        load_report_interval: cluster.load_report_interval(),
        pod: cluster.pod_name.clone(),
        pool: cluster.pool.clone(),
    })
}

/// The PUT cap when neither `--max-puts-per-second` nor `--flush-interval` is given: a paid object
/// store bills every PUT (10 a second is about $130 a month per busy agent on S3 Standard); a
/// local bucket does not, and 250 a second (4 ms apart) keeps a light producer's latency near
/// Kafka's (README "What flushing costs") while compaction keeps up with the objects.
fn default_puts_per_second(store: &ObjectStoreUrl) -> f64 {
    match store {
        ObjectStoreUrl::S3 { .. } => 10.0,
        ObjectStoreUrl::File(_) | ObjectStoreUrl::Memory => 250.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Cli, Command};
    use clap::Parser;

    fn playground_common(extra: &[&str]) -> CommonArgs {
        match Cli::try_parse_from(["floe", "playground"].iter().chain(extra)).expect("parses").command {
            Command::Playground(args) => args.common,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn the_flush_spacing_comes_from_either_flag_or_the_buckets_default() {
        let spacing = |extra: &[&str]| playground_settings(Path::new("/nonexistent"), playground_common(extra)).unwrap().flush_spacing;
        assert_eq!(spacing(&[]), Duration::from_millis(4), "250 PUTs a second on a file bucket");
        assert_eq!(spacing(&["--max-puts-per-second", "4"]), Duration::from_millis(250));
        assert_eq!(spacing(&["--flush-interval", "50ms"]), Duration::from_millis(50));
        assert_eq!(default_puts_per_second(&ObjectStoreUrl::S3 { bucket: "b".into(), prefix: String::new() }), 10.0);
    }

    #[test]
    fn the_playground_creates_topics_on_demand_unless_told_not_to_and_an_agent_only_when_told() {
        let playground =
            |extra: &[&str]| playground_settings(Path::new("/nonexistent"), playground_common(extra)).unwrap().auto_create_topics;
        assert!(playground(&[]));
        assert!(!playground(&["--auto-create-topics=false"]));
        let agent = |common| settings(MetadataUrl::Embedded("/nonexistent".into()), ObjectStoreUrl::Memory, common, None).unwrap();
        assert!(!agent(playground_common(&[])).auto_create_topics, "unset means off outside the playground");
        assert!(agent(playground_common(&["--auto-create-topics"])).auto_create_topics);
    }
}
