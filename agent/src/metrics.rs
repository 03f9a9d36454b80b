//! Prometheus metrics, prefix `floe_`. One registry per agent, passed in (never global) so tests
//! can read counters.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    /// Root cause of the last object-store operation when it failed; cleared by a success.
    /// Published in the registry record (`bucket_problem`).
    bucket_problem: std::sync::Mutex<Option<String>>,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub bytes_in: IntCounter,
    pub duplicate_batches: IntCounter,
    /// Produced batches refused, by reason (a bounded label from the error variant).
    pub refused_batches: IntCounterVec,
    pub bytes_out: IntCounter,
    pub flushes: IntCounter,
    pub flush_bytes: Histogram,
    pub flush_duration: Histogram,
    pub object_store_operations: IntCounterVec,
    pub object_store_duration: HistogramVec,
    pub journal_commit_duration: Histogram,
    pub connections: IntCounterVec,
    pub job_runs: IntCounterVec,
    pub key_compaction_records_removed: IntCounter,
    pub snapshot_revision: IntGauge,
    pub snapshot_unix_seconds: Gauge,
    pub replica_lag_revisions: IntGauge,
    pub journal_appends: IntCounterVec,
    pub etcd_transactions: IntCounterVec,
    pub snapshot_loads: IntCounter,
    /// Bytes written to (`put`) and read from (`get`) the object store.
    pub object_store_bytes: IntCounterVec,
    /// Load over the last load-report period (see `cluster::load`), as published to the registry.
    pub network_bytes_per_second: Gauge,
    pub object_store_bytes_per_second: Gauge,
    pub cpu_seconds_per_second: Gauge,
    /// 1 while the agent drains after SIGTERM (no longer advertised, finishing its work).
    pub draining: IntGauge,
    /// The segment cache's budget (`--cache-bytes`, or its default within the memory limit).
    pub segment_cache_capacity_bytes: IntGauge,
    /// The disk tier (`--disk-cache-dir`): its budget, what it holds, its reads by result (`hit`,
    /// `miss`, `failed`) and its writes by result (`ok`, `failed`, `skipped` behind a slow disk).
    pub disk_cache_capacity_bytes: IntGauge,
    pub disk_cache_resident_bytes: IntGauge,
    pub disk_cache_reads: IntCounterVec,
    pub disk_cache_writes: IntCounterVec,
    /// Segment commits refused because garbage collection had sealed the object's name.
    pub refused_commits: IntCounter,
    /// Transactions this agent ended, by result (`commit`, `abort`).
    pub transactions_ended: IntCounterVec,
    /// Transactions this agent aborted because they outlived `transaction.timeout.ms`.
    pub transactions_timed_out: IntCounter,
    /// Live incremental fetch sessions (KIP-227) in this agent's cache.
    pub fetch_sessions: IntGauge,
    /// Fetch sessions evicted to make room for a new one (`--fetch-session-cache-slots`).
    pub fetch_session_evictions: IntCounter,
    /// Fetch requests by kind: `full` (opens a session), `incremental` (on a session),
    /// `sessionless` (no session), `refused` (unknown session or wrong epoch).
    pub fetch_requests: IntCounterVec,
    /// Chunks a fetch could not read (missing or damaged object): each answered KAFKA_STORAGE_ERROR.
    pub unreadable_chunks: IntCounter,
    /// Unreferenced segment objects the garbage collector deleted.
    pub gc_deleted_objects: IntCounter,
    /// The journal's garbage-collection seal as this agent's replica sees it.
    pub sealed_through_revision: IntGauge,
    /// Requests (or parts of one: a partition, a member) refused or cut down by a limit, by the
    /// limit's Kafka name (`fetch_max_bytes`, `offset_metadata_max_bytes`, `group_max_size`, ...).
    pub requests_refused: IntCounterVec,
    /// Connections refused or closed by a limit (`max_connections`, `max_connections_per_ip`,
    /// `connections_max_idle_ms`).
    pub connections_refused: IntCounterVec,
    /// TLS handshakes on the Kafka listener that failed, by reason (`tls::HandshakeError::reason`:
    /// `not_tls`, `timeout`, `no_client_certificate`, `bad_client_certificate`, ...).
    pub tls_handshake_failures: IntCounterVec,
    /// SASL authentications on the Kafka listener, by mechanism (`PLAIN`, `SCRAM-SHA-256`,
    /// `SCRAM-SHA-512`) and outcome (`success`, `failure`).
    pub sasl_authentications: IntCounterVec,
    /// KIP-368 re-authentications on open connections, by outcome (`success`, `failure`, and
    /// `expired` for a session closed because it was not renewed in time).
    pub sasl_reauthentications: IntCounterVec,
    /// Authenticated connections closed because their user's last SCRAM credential was removed
    /// (a deleted KafkaUser, `kafka-configs --delete-config`).
    pub sasl_sessions_revoked: IntCounter,
    /// Requests (or parts of one: a topic, a group) refused by the ACLs, by resource type and
    /// operation (`topic`/`write`, `group`/`read`, `cluster`/`alter`, ...).
    pub authorization_denials: IntCounterVec,
    /// Bytes of request frames held right now (the `--queued-max-request-bytes` budget).
    pub request_memory_bytes: IntGauge,
    /// Times a connection stopped reading because the request memory budget was used up.
    pub request_memory_waits: IntCounter,
    /// Consumer lag from the metadata replica (`jobs::cluster_metrics`), exported only by the agent
    /// running the background jobs: every agent holds the same replica. Per partition while the
    /// series fit `--lag-metrics-max-series`, per group always.
    pub consumer_lag: ConsumerLagMetrics,
    /// etcd's database size and quota, exported only by the jobs leader in cluster mode. Label-less
    /// vectors so that no series exists where nothing is measured.
    pub etcd_database_bytes: IntGaugeVec,
    pub etcd_database_quota_bytes: IntGaugeVec,
}

/// Consumer lag gauges (see [`Metrics::consumer_lag`]).
pub struct ConsumerLagMetrics {
    /// Records between a group's committed offset and the partition's high watermark.
    pub records: IntGaugeVec,
    /// Approximate age of the next record the group has to consume; 0 when caught up.
    pub seconds: GaugeVec,
    /// Per group: the largest lag in seconds over its partitions.
    pub group_max_seconds: GaugeVec,
    /// Per group: the lag in records summed over its partitions.
    pub group_records: IntGaugeVec,
    /// 1 when the per-partition series were dropped because there were more than
    /// `--lag-metrics-max-series` of them.
    pub partitions_dropped: IntGaugeVec,
}

impl ConsumerLagMetrics {
    fn new() -> Self {
        Self {
            records: IntGaugeVec::new(
                Opts::new(
                    "floe_consumer_group_lag_records",
                    "Records between a consumer group's committed offset and the partition's high watermark (jobs agent only)",
                ),
                &["group", "topic", "partition"],
            )
            .expect("valid metric"),
            seconds: GaugeVec::new(
                Opts::new(
                    "floe_consumer_group_lag_seconds",
                    "Approximate age of the next record a consumer group has to consume, 0 when caught up (jobs agent only)",
                ),
                &["group", "topic", "partition"],
            )
            .expect("valid metric"),
            group_max_seconds: GaugeVec::new(
                Opts::new("floe_consumer_group_max_lag_seconds", "Largest floe_consumer_group_lag_seconds over a group's partitions"),
                &["group"],
            )
            .expect("valid metric"),
            group_records: IntGaugeVec::new(
                Opts::new("floe_consumer_group_total_lag_records", "floe_consumer_group_lag_records summed over a group's partitions"),
                &["group"],
            )
            .expect("valid metric"),
            partitions_dropped: IntGaugeVec::new(
                Opts::new(
                    "floe_consumer_group_lag_partitions_dropped",
                    "1 when per-partition lag series are not exported because there are more than --lag-metrics-max-series",
                ),
                &[],
            )
            .expect("valid metric"),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.records.clone()),
            Box::new(self.seconds.clone()),
            Box::new(self.group_max_seconds.clone()),
            Box::new(self.group_records.clone()),
            Box::new(self.partitions_dropped.clone()),
        ]
    }

    /// Removes every series: an agent that stops running the jobs stops exporting lag.
    pub fn clear(&self) {
        self.records.reset();
        self.seconds.reset();
        self.group_max_seconds.reset();
        self.group_records.reset();
        self.partitions_dropped.reset();
    }
}

const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        let requests =
            IntCounterVec::new(Opts::new("floe_requests_total", "Kafka requests handled, by API and outcome"), &["api", "outcome"])
                .expect("valid metric");
        let request_duration =
            HistogramVec::new(latency("floe_request_duration_seconds", "Kafka request latency by API"), &["api"]).expect("valid metric");
        let bytes_in = IntCounter::new("floe_bytes_in_total", "Record batch bytes accepted from producers").expect("valid metric");
        let duplicate_batches = IntCounter::new(
            "floe_produce_duplicate_batches_total",
            "Retried idempotent batches answered with their original offsets instead of being written again",
        )
        .expect("valid metric");
        let refused_batches = IntCounterVec::new(
            Opts::new("floe_produce_refused_batches_total", "Produced batches refused before they were written, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let bytes_out = IntCounter::new("floe_bytes_out_total", "Record batch bytes returned to consumers").expect("valid metric");
        let flushes = IntCounter::new("floe_flushes_total", "Segment objects flushed and committed").expect("valid metric");
        let flush_bytes = Histogram::with_opts(
            HistogramOpts::new("floe_flush_bytes", "Size of flushed segment objects")
                .buckets(prometheus::exponential_buckets(1024.0, 4.0, 10).expect("valid buckets")),
        )
        .expect("valid metric");
        let flush_duration =
            Histogram::with_opts(latency("floe_flush_duration_seconds", "Time from flush start to journal commit")).expect("valid metric");
        let object_store_operations = IntCounterVec::new(
            Opts::new("floe_object_store_operations_total", "Object store operations by kind and outcome"),
            &["operation", "outcome"],
        )
        .expect("valid metric");
        let object_store_duration =
            HistogramVec::new(latency("floe_object_store_duration_seconds", "Object store operation latency by kind"), &["operation"])
                .expect("valid metric");
        let journal_commit_duration =
            Histogram::with_opts(latency("floe_journal_commit_duration_seconds", "Metadata journal append latency")).expect("valid metric");
        let connections = IntCounterVec::new(Opts::new("floe_connections_total", "Kafka connections by how they ended"), &["outcome"])
            .expect("valid metric");
        let job_runs = IntCounterVec::new(Opts::new("floe_job_runs_total", "Background job runs by job and outcome"), &["job", "outcome"])
            .expect("valid metric");
        let key_compaction_records_removed = IntCounter::new(
            "floe_key_compaction_records_removed_total",
            "Records key compaction removed: superseded by a later record of their key, or tombstones past delete.retention.ms",
        )
        .expect("valid metric");
        let snapshot_revision =
            IntGauge::new("floe_snapshot_revision", "Journal revision of the latest snapshot this agent wrote").expect("valid metric");
        let snapshot_unix_seconds =
            Gauge::new("floe_snapshot_timestamp_seconds", "When this agent last wrote a snapshot (snapshot age = now - this)")
                .expect("valid metric");
        let replica_lag_revisions =
            IntGauge::new("floe_replica_lag_revisions", "etcd revisions the local metadata replica is behind the journal")
                .expect("valid metric");
        let journal_appends = IntCounterVec::new(
            Opts::new("floe_journal_appends_total", "Journal records appended by this agent, by record type"),
            &["record"],
        )
        .expect("valid metric");
        let etcd_transactions = IntCounterVec::new(
            Opts::new("floe_etcd_transactions_total", "etcd write transactions sent by this agent, by purpose"),
            &["purpose"],
        )
        .expect("valid metric");
        let snapshot_loads = IntCounter::new(
            "floe_snapshot_loads_total",
            "Metadata snapshots this agent loaded (start-up, or a watch behind etcd compaction)",
        )
        .expect("valid metric");
        let object_store_bytes = IntCounterVec::new(
            Opts::new("floe_object_store_bytes_total", "Bytes written to (put) and read from (get) the object store"),
            &["operation"],
        )
        .expect("valid metric");
        let network_bytes_per_second = Gauge::new(
            "floe_agent_network_bytes_per_second",
            "Kafka record bytes in plus out per second over the last load-report period (the autoscaling metric)",
        )
        .expect("valid metric");
        let object_store_bytes_per_second = Gauge::new(
            "floe_agent_object_store_bytes_per_second",
            "Object store bytes written plus read per second over the last load-report period",
        )
        .expect("valid metric");
        let cpu_seconds_per_second = Gauge::new(
            "floe_agent_cpu_seconds_per_second",
            "Process CPU seconds (user + system) per wall-clock second over the last load-report period",
        )
        .expect("valid metric");
        let draining = IntGauge::new("floe_agent_draining", "1 while the agent drains after SIGTERM, else 0").expect("valid metric");
        let segment_cache_capacity_bytes = IntGauge::new(
            "floe_segment_cache_capacity_bytes",
            "Budget of the in-memory segment cache: --cache-bytes, or by default 256 MiB or a quarter of the container's memory limit when smaller",
        )
        .expect("valid metric");
        let disk_cache_capacity_bytes = IntGauge::new(
            "floe_disk_cache_capacity_bytes",
            "Budget of the local disk tier of segments this agent wrote (--disk-cache-bytes; 0 without --disk-cache-dir)",
        )
        .expect("valid metric");
        let disk_cache_resident_bytes =
            IntGauge::new("floe_disk_cache_resident_bytes", "Segment bytes the local disk tier holds").expect("valid metric");
        let disk_cache_reads = IntCounterVec::new(
            Opts::new("floe_disk_cache_reads_total", "Reads the local disk tier was asked for, by result (hit, miss, failed)"),
            &["result"],
        )
        .expect("valid metric");
        let disk_cache_writes = IntCounterVec::new(
            Opts::new("floe_disk_cache_writes_total", "Segments offered to the local disk tier, by result (ok, failed, skipped)"),
            &["result"],
        )
        .expect("valid metric");
        let refused_commits = IntCounter::new(
            "floe_segment_commits_refused_total",
            "Segment commits refused because garbage collection sealed the object while the commit was in flight (the data is stored again)",
        )
        .expect("valid metric");
        let transactions_ended = IntCounterVec::new(
            Opts::new("floe_transactions_ended_total", "Transactions this agent committed or aborted (markers written), by result"),
            &["result"],
        )
        .expect("valid metric");
        let transactions_timed_out = IntCounter::new(
            "floe_transactions_timed_out_total",
            "Transactions this agent aborted (and fenced) because they outlived transaction.timeout.ms",
        )
        .expect("valid metric");
        let fetch_sessions =
            IntGauge::new("floe_fetch_sessions", "Incremental fetch sessions (KIP-227) this agent holds").expect("valid metric");
        let fetch_session_evictions = IntCounter::new(
            "floe_fetch_session_evictions_total",
            "Fetch sessions evicted to make room for a new one (--fetch-session-cache-slots)",
        )
        .expect("valid metric");
        let fetch_requests = IntCounterVec::new(
            Opts::new(
                "floe_fetch_requests_total",
                "Fetch requests by kind: full (opens a session), incremental, sessionless, refused (unknown session or wrong epoch)",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let unreadable_chunks = IntCounter::new(
            "floe_unreadable_chunks_total",
            "Partition chunks a fetch could not read from the object store (missing or damaged object); see the log for the object",
        )
        .expect("valid metric");
        let gc_deleted_objects =
            IntCounter::new("floe_gc_deleted_objects_total", "Unreferenced segment objects deleted by garbage collection")
                .expect("valid metric");
        let sealed_through_revision = IntGauge::new(
            "floe_gc_sealed_through_revision",
            "Segment objects named at or below this journal revision can no longer be committed (garbage collection's fence)",
        )
        .expect("valid metric");
        let requests_refused = IntCounterVec::new(
            Opts::new("floe_requests_refused_total", "Requests, partitions or members refused or cut down by a limit, by limit"),
            &["limit"],
        )
        .expect("valid metric");
        let tls_handshake_failures = IntCounterVec::new(
            Opts::new("floe_tls_handshake_failures_total", "TLS handshakes on the Kafka listener that failed, by reason"),
            &["reason"],
        )
        .expect("valid metric");
        let sasl_authentications = IntCounterVec::new(
            Opts::new("floe_sasl_authentications_total", "SASL authentications on the Kafka listener, by mechanism and outcome"),
            &["mechanism", "outcome"],
        )
        .expect("valid metric");
        let sasl_reauthentications = IntCounterVec::new(
            Opts::new("floe_sasl_reauthentications_total", "SASL re-authentications on open connections (KIP-368), by outcome"),
            &["outcome"],
        )
        .expect("valid metric");
        let sasl_sessions_revoked = IntCounter::new(
            "floe_sasl_sessions_revoked_total",
            "Authenticated connections closed because their user no longer has any SASL credential",
        )
        .expect("valid metric");
        let authorization_denials = IntCounterVec::new(
            Opts::new("floe_authorization_denials_total", "Requests or parts of one refused by the ACLs, by resource type and operation"),
            &["resource_type", "operation"],
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new("floe_connections_refused_total", "Connections refused, delayed at accept or closed by a limit, by limit"),
            &["limit"],
        )
        .expect("valid metric");
        let request_memory_bytes = IntGauge::new(
            "floe_request_memory_bytes",
            "Bytes of request frames held by connections right now (budget: --queued-max-request-bytes)",
        )
        .expect("valid metric");
        let request_memory_waits = IntCounter::new(
            "floe_request_memory_waits_total",
            "Times a connection stopped reading because the request memory budget (--queued-max-request-bytes) was used up",
        )
        .expect("valid metric");
        let consumer_lag = ConsumerLagMetrics::new();
        let etcd_database_bytes = IntGaugeVec::new(
            Opts::new("floe_etcd_db_size_bytes", "Size of etcd's database file, as etcd reports it (jobs leader only)"),
            &[],
        )
        .expect("valid metric");
        let etcd_database_quota_bytes = IntGaugeVec::new(
            Opts::new("floe_etcd_db_size_quota_bytes", "etcd's database quota (etcd 3.6+ reports it; jobs leader only)"),
            &[],
        )
        .expect("valid metric");
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(bytes_in.clone()),
            Box::new(duplicate_batches.clone()),
            Box::new(refused_batches.clone()),
            Box::new(bytes_out.clone()),
            Box::new(flushes.clone()),
            Box::new(flush_bytes.clone()),
            Box::new(flush_duration.clone()),
            Box::new(object_store_operations.clone()),
            Box::new(object_store_duration.clone()),
            Box::new(journal_commit_duration.clone()),
            Box::new(connections.clone()),
            Box::new(job_runs.clone()),
            Box::new(key_compaction_records_removed.clone()),
            Box::new(snapshot_revision.clone()),
            Box::new(snapshot_unix_seconds.clone()),
            Box::new(replica_lag_revisions.clone()),
            Box::new(journal_appends.clone()),
            Box::new(etcd_transactions.clone()),
            Box::new(snapshot_loads.clone()),
            Box::new(object_store_bytes.clone()),
            Box::new(network_bytes_per_second.clone()),
            Box::new(object_store_bytes_per_second.clone()),
            Box::new(cpu_seconds_per_second.clone()),
            Box::new(draining.clone()),
            Box::new(segment_cache_capacity_bytes.clone()),
            Box::new(disk_cache_capacity_bytes.clone()),
            Box::new(disk_cache_resident_bytes.clone()),
            Box::new(disk_cache_reads.clone()),
            Box::new(disk_cache_writes.clone()),
            Box::new(refused_commits.clone()),
            Box::new(transactions_ended.clone()),
            Box::new(transactions_timed_out.clone()),
            Box::new(fetch_sessions.clone()),
            Box::new(fetch_session_evictions.clone()),
            Box::new(fetch_requests.clone()),
            Box::new(unreadable_chunks.clone()),
            Box::new(gc_deleted_objects.clone()),
            Box::new(sealed_through_revision.clone()),
            Box::new(requests_refused.clone()),
            Box::new(connections_refused.clone()),
            Box::new(tls_handshake_failures.clone()),
            Box::new(sasl_authentications.clone()),
            Box::new(authorization_denials.clone()),
            Box::new(sasl_reauthentications.clone()),
            Box::new(sasl_sessions_revoked.clone()),
            Box::new(request_memory_bytes.clone()),
            Box::new(request_memory_waits.clone()),
            Box::new(etcd_database_bytes.clone()),
            Box::new(etcd_database_quota_bytes.clone()),
        ]
        .into_iter()
        .chain(consumer_lag.collectors())
        {
            registry.register(collector).expect("metric names are unique");
        }
        Self {
            registry,
            bucket_problem: std::sync::Mutex::new(None),
            requests,
            request_duration,
            bytes_in,
            duplicate_batches,
            refused_batches,
            bytes_out,
            flushes,
            flush_bytes,
            flush_duration,
            object_store_operations,
            object_store_duration,
            journal_commit_duration,
            connections,
            job_runs,
            key_compaction_records_removed,
            snapshot_revision,
            snapshot_unix_seconds,
            replica_lag_revisions,
            journal_appends,
            etcd_transactions,
            snapshot_loads,
            object_store_bytes,
            network_bytes_per_second,
            object_store_bytes_per_second,
            cpu_seconds_per_second,
            draining,
            segment_cache_capacity_bytes,
            disk_cache_capacity_bytes,
            disk_cache_resident_bytes,
            disk_cache_reads,
            disk_cache_writes,
            refused_commits,
            transactions_ended,
            transactions_timed_out,
            fetch_sessions,
            fetch_session_evictions,
            fetch_requests,
            unreadable_chunks,
            gc_deleted_objects,
            sealed_through_revision,
            requests_refused,
            connections_refused,
            tls_handshake_failures,
            sasl_authentications,
            authorization_denials,
            sasl_reauthentications,
            sasl_sessions_revoked,
            request_memory_bytes,
            request_memory_waits,
            consumer_lag,
            etcd_database_bytes,
            etcd_database_quota_bytes,
        }
    }

    /// Why the last object-store operation failed, if it did.
    pub fn bucket_problem(&self) -> Option<String> {
        self.bucket_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    pub fn render(&self) -> String {
        TextEncoder::new().encode_to_string(&self.registry.gather()).unwrap_or_default()
    }
}

/// The object store's operations and bytes, as `floe_object_store_*` metrics.
impl floe_meta::bucket::StoreObserver for Metrics {
    fn operation(&self, operation: &str, elapsed: std::time::Duration, succeeded: bool) {
        let outcome = if succeeded { "ok" } else { "error" };
        self.object_store_operations.with_label_values(&[operation, outcome]).inc();
        self.object_store_duration.with_label_values(&[operation]).observe(elapsed.as_secs_f64());
        if succeeded {
            *self.bucket_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
    }

    fn failure(&self, operation: &str, cause: &str) {
        *self.bucket_problem.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(format!("{operation} failed: {cause}"));
    }

    fn bytes(&self, direction: &str, bytes: u64) {
        self.object_store_bytes.with_label_values(&[direction]).inc_by(bytes);
    }
}
