//! Assembles an agent from its parts and runs it until shutdown. Tests start agents in-process
//! through `start` with port 0 listeners.

use crate::cluster::load::LoadMeter;
use crate::cluster::registry::{AgentRecord, Registry};
use crate::cluster::{ClusterView, NodeInfo, SingleAgent};
use crate::config::{MetadataUrl, Roles, DEFAULT_LOAD_REPORT_INTERVAL};
use crate::groups::GroupCoordinator;
use crate::handlers::produce::ValidationPool;
use crate::handlers::{AgentContext, HandlerSettings, RequestLimits};
use crate::http::console::throughput::ThroughputHistory;
use crate::http::console::{self, Console};
use crate::http::status::StatusSource;
use crate::http::{self, HttpState};
use crate::jobs::{self, JobSettings};
use crate::metadata::etcd::{self, EtcdError, EtcdJournal, EtcdSettings};
use crate::metadata::journal::{EmbeddedJournal, JournalBackend, JournalError};
use crate::metadata::keys::KeyLayout;
use crate::metadata::replica::Replica;
use crate::metadata::{JournalRecord, MetadataClient, MetadataError, SUPPORTED_METADATA_VERSION};
use crate::metrics::Metrics;
use crate::server::{self, ServerSettings};
use crate::storage::{
    DiskCache, ObjectStoreUrl, S3Options, SegmentCache, SegmentReader, SegmentStore, SegmentWriter, StoreError, WriterConfig,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Cluster-mode settings (etcd metadata).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub virtual_cluster: String,
    /// The VirtualCluster uid the etcd registration must name, when set (`--virtual-cluster-uid`).
    pub virtual_cluster_uid: Option<String>,
    pub etcd: EtcdSettings,
    pub zone: Option<String>,
    pub roles: Roles,
    pub registry_ttl: Duration,
    /// How often the load is published to the registry (shorter than `registry_ttl`).
    pub load_report_interval: Duration,
    /// The Kubernetes pod and AgentPool this agent runs for, published in its registry record.
    pub pod: Option<String>,
    pub pool: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub metadata: MetadataUrl,
    pub object_store: ObjectStoreUrl,
    pub s3: S3Options,
    pub cluster: Option<ClusterSettings>,
    /// Background jobs: run by the elected jobs agent on etcd, by this agent on embedded metadata.
    pub jobs: JobSettings,
    pub kafka_listen: SocketAddr,
    pub advertise: Option<String>,
    pub http_listen: SocketAddr,
    /// Least time between two flushes: `--flush-interval`, or 1 / `--max-puts-per-second` (whose
    /// default depends on the object store).
    pub flush_spacing: Duration,
    pub flush_max_bytes: usize,
    /// Connection limits and the request memory budget (`max_request_bytes` included).
    pub server: ServerSettings,
    pub limits: RequestLimits,
    /// `Some` when Kafka ACLs are enforced (`--acl-authorization`).
    pub authorization: Option<crate::authorization::AuthorizationSettings>,
    pub cache_bytes: usize,
    /// The local disk tier of the segments this agent wrote (`--disk-cache-dir`), if any.
    pub disk_cache: Option<DiskCacheSettings>,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub group_initial_rebalance_delay: Duration,
    pub node_id: i32,
    /// Blocking threads that check produced batches at once (`--produce-validation-threads`).
    pub produce_validation_threads: usize,
    /// `--produce-max-decompressed-bytes-per-request`.
    pub produce_max_decompressed_bytes_per_request: usize,
}

/// `--disk-cache-dir` and `--disk-cache-bytes`.
#[derive(Debug, Clone)]
pub struct DiskCacheSettings {
    pub directory: std::path::PathBuf,
    pub capacity_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to open the metadata journal: {0}")]
    Journal(#[from] JournalError),
    #[error("failed to reach etcd: {0}")]
    Etcd(#[from] EtcdError),
    #[error("failed to register in the agent registry: {0}")]
    Registry(#[from] crate::cluster::registry::RegistryError),
    #[error("failed to initialise the cluster record: {0}")]
    Metadata(#[from] MetadataError),
    #[error("failed to open the object store: {0}")]
    Store(#[from] StoreError),
    #[error("failed to bind {what} on {address}: {source} (is another process using it? pick another with {flag})")]
    Bind { what: &'static str, address: SocketAddr, flag: &'static str, source: std::io::Error },
    #[error("cluster mode (etcd metadata) needs cluster settings")]
    MissingClusterSettings,
    #[error("--sasl-oauthbearer-jwks-url: {0}")]
    OAuthKeys(String),
    #[error(transparent)]
    DiskCache(#[from] crate::storage::disk_cache::DiskCacheError),
    /// The registration could not be read, or names another VirtualCluster (`--virtual-cluster-uid`).
    #[error(transparent)]
    Registration(#[from] crate::metadata::registration::StartCheckError),
}

/// A started agent. Dropping it without `drain` or `shutdown` leaves its tasks running until the
/// runtime ends.
pub struct RunningAgent {
    /// What every handler works with: the in-process test tier calls `handlers::dispatch` on it.
    pub context: Arc<AgentContext>,
    pub kafka_address: SocketAddr,
    pub http_address: SocketAddr,
    pub advertised: String,
    pub node_id: i32,
    pub metrics: Arc<Metrics>,
    registry: Option<Arc<Registry>>,
    groups: Arc<GroupCoordinator>,
    writer: Arc<SegmentWriter>,
    ready: Arc<AtomicBool>,
    /// Each turned true in its drain phase, in this order.
    stop_jobs: watch::Sender<bool>,
    stop_serving: watch::Sender<bool>,
    stop_writer: watch::Sender<bool>,
    stop_http: watch::Sender<bool>,
    jobs_task: Option<JoinHandle<()>>,
    server_task: JoinHandle<()>,
    writer_task: JoinHandle<()>,
    http_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

/// Bound of each etcd call of the drain (the draining mark, the lease revocation): an unreachable
/// etcd must not use up the whole drain timeout before the final flush.
const ETCD_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one drain phase and logs how long it took.
async fn phase<T>(name: &'static str, work: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let outcome = work.await;
    tracing::info!(phase = name, elapsed = ?started.elapsed(), "drain phase done");
    outcome
}

impl RunningAgent {
    /// Leaves the cluster without client errors (ARCHITECTURE.md §8, DESIGN.md "Drain"):
    /// 1. mark: draining in the registry (one etcd put; Metadata everywhere stops listing this
    ///    agent), not ready, give up coordinated groups (waiting members hear NOT_COORDINATOR),
    ///    hand the jobs leadership over;
    /// 2. grace: keep serving for `grace`, answering produce and fetch with NOT_LEADER_OR_FOLLOWER
    ///    and group calls with NOT_COORDINATOR while others are live, so clients move promptly;
    /// 3. stop accepting, answer the requests already read (a produce is answered only once its
    ///    segment is stored and committed);
    /// 4. final flush: store and commit whatever is still in the open segment;
    /// 5. leave: revoke the registry lease (the key goes at once), stop HTTP.
    ///
    /// Not bounded here: the caller bounds the whole drain (`--drain-timeout`).
    pub async fn drain(self, grace: Duration) {
        let started = Instant::now();
        let Self {
            registry,
            groups,
            writer,
            ready,
            metrics,
            stop_jobs,
            stop_serving,
            stop_writer,
            stop_http,
            jobs_task,
            server_task,
            writer_task,
            http_task,
            background,
            ..
        } = self;
        phase("mark draining", async {
            ready.store(false, Ordering::Release);
            metrics.draining.set(1);
            if let Some(registry) = &registry {
                match tokio::time::timeout(ETCD_STEP_TIMEOUT, registry.mark_draining()).await {
                    Ok(Ok(())) => {}
                    // This agent's own view already excludes it; others drop it when its lease goes.
                    Ok(Err(error)) => tracing::error!(%error, "failed to mark this agent draining in the registry"),
                    Err(_) => tracing::error!(timeout = ?ETCD_STEP_TIMEOUT, "etcd did not take the draining mark in time"),
                }
            }
            let groups_given_up = groups.step_down(kafka_protocol::error::ResponseError::NotCoordinator);
            tracing::info!(groups_given_up, "gave up the consumer groups this agent coordinated");
            let _ = stop_jobs.send(true);
        })
        .await;
        if !grace.is_zero() {
            phase("grace", tokio::time::sleep(grace)).await;
        }
        phase("stop accepting and answer in-flight requests", async {
            // The writer keeps running (a produce read before the stop is answered once its
            // segment is committed) but no longer waits for the flush interval.
            writer.flush_promptly();
            let _ = stop_serving.send(true);
            let _ = server_task.await;
        })
        .await;
        phase("flush and commit the open segment", async {
            let _ = stop_writer.send(true);
            let _ = writer_task.await;
        })
        .await;
        phase("leave", async {
            if let Some(jobs_task) = jobs_task {
                let _ = jobs_task.await;
            }
            if let Some(registry) = &registry {
                match tokio::time::timeout(ETCD_STEP_TIMEOUT, registry.leave()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(%error, "failed to leave the registry; the entry lapses with its lease"),
                    Err(_) => tracing::warn!(timeout = ?ETCD_STEP_TIMEOUT, "etcd did not revoke the lease in time; the entry lapses"),
                }
            }
            for task in background {
                task.abort();
            }
            let _ = stop_http.send(true);
            let _ = http_task.await;
        })
        .await;
        tracing::info!(elapsed = ?started.elapsed(), "drained");
    }

    /// Stops without a grace period: the drain's phases with `grace` zero (tests, playground).
    pub async fn shutdown(self) {
        self.drain(Duration::ZERO).await
    }
}

async fn bind(address: SocketAddr, what: &'static str, flag: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(address).await.map_err(|source| StartError::Bind { what, address, flag, source })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind { what, address, flag, source })?;
    Ok((listener, bound))
}

/// How often each agent looks for transactions past their `transaction.timeout.ms`.
const TRANSACTION_TIMEOUT_CHECK: Duration = Duration::from_secs(1);

pub async fn start(settings: AgentSettings) -> Result<RunningAgent, StartError> {
    let metrics = Arc::new(Metrics::new());
    let replica = Arc::new(Replica::new());
    let store = Arc::new(SegmentStore::open(&settings.object_store, &settings.s3, metrics.clone())?);
    let (kafka_listener, kafka_address) = bind(settings.kafka_listen, "the Kafka listener", "--kafka-listen").await?;
    let (http_listener, http_address) = bind(settings.http_listen, "the HTTP listener", "--http-listen").await?;
    let advertised = settings.advertise.clone().unwrap_or_else(|| {
        let host = if kafka_address.ip().is_unspecified() { "127.0.0.1".to_string() } else { kafka_address.ip().to_string() };
        format!("{host}:{}", kafka_address.port())
    });
    let (host, port) = advertised.rsplit_once(':').expect("validated HOST:PORT");
    let port: i32 = port.parse().expect("validated port");
    let mut background = Vec::new();
    let mut registry_handle: Option<Arc<Registry>> = None;

    let (journal, cluster, etcd_parts): (Arc<dyn JournalBackend>, Arc<dyn ClusterView>, _) = match &settings.metadata {
        MetadataUrl::Embedded(directory) => {
            let journal =
                Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica))?.with_metrics(Arc::clone(&metrics)));
            let node = NodeInfo { node_id: settings.node_id, host: host.to_string(), port, rack: None };
            (journal, Arc::new(SingleAgent(node)), None)
        }
        MetadataUrl::Etcd { .. } => {
            let cluster_settings = settings.cluster.as_ref().ok_or(StartError::MissingClusterSettings)?;
            let client = etcd::connect(&cluster_settings.etcd).await?;
            let keys = KeyLayout::new(&cluster_settings.etcd.prefix, &cluster_settings.virtual_cluster);
            if let Some(uid) = &cluster_settings.virtual_cluster_uid {
                crate::metadata::registration::check_at_start(&mut client.clone(), &keys, uid).await?;
            }
            let (journal, follower) =
                EtcdJournal::open(client.clone(), keys.clone(), Arc::clone(&replica), Arc::clone(&store), Arc::clone(&metrics)).await?;
            background.push(follower);
            let record = AgentRecord {
                node_id: 0,
                host: host.to_string(),
                port,
                zone: cluster_settings.zone.clone(),
                roles: cluster_settings.roles.0.clone(),
                draining: false,
                bytes_in_per_second: 0.0,
                bytes_out_per_second: 0.0,
                object_store_bytes_per_second: 0.0,
                cpu_seconds_per_second: 0.0,
                pod: cluster_settings.pod.clone(),
                pool: cluster_settings.pool.clone(),
                bucket_problem: None,
                version: Some(crate::VERSION.to_string()),
                supported_metadata_version: Some(SUPPORTED_METADATA_VERSION),
                http: Some(reachable_http_address(http_address, host)),
            };
            let (registry, tasks) = Registry::join(client.clone(), keys.clone(), record, cluster_settings.registry_ttl).await?;
            background.extend(tasks);
            registry_handle = Some(Arc::clone(&registry));
            (Arc::new(journal) as Arc<dyn JournalBackend>, registry as Arc<dyn ClusterView>, Some((client, keys, cluster_settings.clone())))
        }
    };
    let load_report_interval = settings.cluster.as_ref().map_or(DEFAULT_LOAD_REPORT_INTERVAL, |cluster| cluster.load_report_interval);
    background.push(tokio::spawn(report_load(Arc::clone(&metrics), registry_handle.clone(), load_report_interval)));
    let metadata = MetadataClient::new(journal, Arc::clone(&replica));
    if metadata.read(|state| state.cluster_id.is_none()) {
        metadata.submit(JournalRecord::InitCluster { cluster_id: new_cluster_id() }).await?;
    }
    // Raise the journal to this build's format before writing anything in it. Replicas of an
    // older build then halt (they would assign different offsets) until they are upgraded.
    if metadata.read(|state| state.metadata_version < SUPPORTED_METADATA_VERSION) {
        metadata.submit(JournalRecord::SetMetadataVersion { version: SUPPORTED_METADATA_VERSION }).await?;
    }
    if let Some(user) = settings.server.sasl.as_ref().and_then(|sasl| sasl.bootstrap_user.as_ref()) {
        // PBKDF2 per mechanism: milliseconds, off the async workers all the same.
        let stored = metadata.read(|state| state.scram_credentials.get(&user.name).cloned().unwrap_or_default());
        let user = user.clone();
        let (credentials, name) = tokio::task::spawn_blocking(move || (user.credentials_to_write(&stored), user.name))
            .await
            .expect("deriving SCRAM credentials does not panic");
        if !credentials.is_empty() {
            tracing::info!(user = %name, "writing the SASL bootstrap user's SCRAM credentials");
            metadata.submit(JournalRecord::AlterScramCredentials { user: name, set: credentials, remove: Vec::new() }).await?;
        }
    }
    if let Some(oauth) = settings.server.sasl.as_ref().and_then(|sasl| sasl.oauth.clone()) {
        // A key file that cannot be read is a configuration error; an identity provider that does
        // not answer yet is retried (every token naming an unknown key triggers a refresh).
        match (oauth.refresh().await, oauth.jwks_is_file()) {
            (Ok(keys), _) => tracing::info!(keys, "loaded the OAUTHBEARER key set"),
            (Err(error), true) => return Err(StartError::OAuthKeys(error)),
            (Err(error), false) => tracing::warn!(%error, "could not load the OAUTHBEARER key set yet; retrying when a token arrives"),
        }
        background.push(oauth.spawn_refresh());
    }
    let disk_cache = match &settings.disk_cache {
        Some(disk) => {
            let opened = DiskCache::open(&disk.directory, disk.capacity_bytes, Arc::clone(&metrics))?;
            tracing::info!(directory = %disk.directory.display(), capacity_mib = disk.capacity_bytes >> 20, "disk cache of the segments this agent writes, emptied at start");
            Some(Arc::new(opened))
        }
        None => None,
    };
    let cache = Arc::new(SegmentCache::with_disk(settings.cache_bytes, disk_cache));
    metrics.segment_cache_capacity_bytes.set(i64::try_from(settings.cache_bytes).unwrap_or(i64::MAX));
    let (stop_jobs, jobs_stopped) = watch::channel(false);
    let (stop_serving, serving_stopped) = watch::channel(false);
    let (stop_writer, writer_stopped) = watch::channel(false);
    let (stop_http, http_stopped) = watch::channel(false);
    let writer = Arc::new(SegmentWriter::new(
        WriterConfig { flush_spacing: settings.flush_spacing, flush_max_bytes: settings.flush_max_bytes },
        Arc::clone(&store),
        Arc::clone(&cache),
        metadata.clone(),
        Arc::clone(&metrics),
    ));
    let writer_task = tokio::spawn(Arc::clone(&writer).run(writer_stopped));
    let stored_groups = metadata.clone();
    let groups =
        Arc::new(GroupCoordinator::new(settings.group_initial_rebalance_delay).with_max_size(settings.limits.group_max_size).with_stored(
            Arc::new(move |group: &str, held| {
                stored_groups.read(|state| {
                    state.group_memberships.get(group).filter(|stored| crate::groups::coordinator::is_newer(stored, held)).cloned()
                })
            }),
        ));
    background.push(groups.spawn_sweeper(Duration::from_millis(200)));
    background.push(groups.spawn_persister(persist_group_membership(metadata.clone(), Arc::clone(&cluster))));
    let reader = Arc::new(SegmentReader::new(Arc::clone(&store), cache));
    let job_resources = jobs::JobResources {
        settings: settings.jobs.clone(),
        metadata: metadata.clone(),
        store: Arc::clone(&store),
        reader: Arc::clone(&reader),
        metrics: Arc::clone(&metrics),
    };
    let jobs_task = match etcd_parts {
        Some((client, keys, cluster_settings)) => {
            cluster_settings.roles.has("jobs").then(|| jobs::spawn(client, keys, job_resources, jobs_stopped))
        }
        // Embedded metadata: this process alone writes the journal, so it runs the jobs itself.
        None => Some(jobs::spawn_sole(job_resources, jobs_stopped)),
    };
    let node_id = cluster.local().node_id;
    let flushing = Arc::clone(&writer);
    let context = Arc::new(AgentContext {
        cluster,
        metadata,
        writer,
        reader,
        groups: Arc::clone(&groups),
        metrics: Arc::clone(&metrics),
        settings: HandlerSettings {
            default_partitions: settings.default_partitions,
            max_partitions_per_topic: 10_000,
            auto_create_topics: settings.auto_create_topics,
            limits: settings.limits.clone(),
            authorization: settings.authorization.clone(),
        },
        fetch_sessions: crate::handlers::fetch_sessions::FetchSessions::new(
            settings.limits.fetch_session_cache_slots,
            crate::handlers::fetch_sessions::MAX_CACHED_PARTITIONS,
        ),
        validation: ValidationPool::new(settings.produce_validation_threads, settings.produce_max_decompressed_bytes_per_request),
    });
    let ready = Arc::new(AtomicBool::new(false));
    // Transactions past their timeout are aborted by their coordinator (liveness only: apply
    // decides between a commit and the abort).
    background.push(tokio::spawn(crate::handlers::transactions::run_timeouts(
        Arc::clone(&context),
        TRANSACTION_TIMEOUT_CHECK,
        serving_stopped.clone(),
    )));
    let server_task = tokio::spawn(server::run(kafka_listener, Arc::clone(&context), settings.server.clone(), serving_stopped));
    let status = Arc::new(StatusSource { replica: Arc::clone(&replica), cluster: Arc::clone(&context.cluster) });
    let throughput = Arc::new(ThroughputHistory::default());
    background.push(tokio::spawn(console::throughput::run_sampler(
        Arc::clone(&metrics),
        Arc::clone(&throughput),
        console::throughput::SAMPLE_INTERVAL,
    )));
    let console = Arc::new(Console {
        replica: Arc::clone(&replica),
        cluster: Arc::clone(&context.cluster),
        registry: registry_handle.clone(),
        metrics: Arc::clone(&metrics),
        throughput,
    });
    let http_task = tokio::spawn(http::run(
        http_listener,
        HttpState { metrics: Arc::clone(&metrics), ready: Arc::clone(&ready), status, console },
        http_stopped,
    ));
    ready.store(true, Ordering::Release);
    tracing::info!(%kafka_address, %http_address, %advertised, node_id, "agent started");
    Ok(RunningAgent {
        context,
        kafka_address,
        http_address,
        advertised,
        node_id,
        metrics,
        registry: registry_handle,
        groups,
        writer: flushing,
        ready,
        stop_jobs,
        stop_serving,
        stop_writer,
        stop_http,
        jobs_task,
        server_task,
        writer_task,
        http_task,
        background,
    })
}

/// The HTTP address others reach this agent at, for its registry record: the bound address, or
/// on a wildcard bind (`0.0.0.0:8080` in a pod) the advertised Kafka host with the HTTP port.
fn reachable_http_address(bound: SocketAddr, advertised_host: &str) -> String {
    if bound.ip().is_unspecified() {
        format!("{advertised_host}:{}", bound.port())
    } else {
        bound.to_string()
    }
}

/// Every `interval`: turn the counters into rates, set the load gauges and, in cluster mode,
/// publish them in this agent's registry record.
async fn report_load(metrics: Arc<Metrics>, registry: Option<Arc<Registry>>, interval: Duration) {
    let mut meter = LoadMeter::new(&metrics);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let load = meter.sample(&metrics);
        if let Some(registry) = &registry {
            registry.publish_load(load, metrics.bucket_problem()).await;
        }
    }
}

/// Kafka-style cluster id: 22 characters of URL-safe base64 of a random UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = uuid::Uuid::new_v4().as_u128();
    (0..22).map(|index| ALPHABET[((value >> (index * 6)) & 63) as usize] as char).collect()
}

/// Appends a group's membership to the journal if this agent still coordinates the group: an
/// agent the group has moved away from (another agent joined, or this one drains) must not write
/// what it last knew over the new coordinator's rebalances. A failed append is logged; the next
/// rebalance writes again, and until then a new coordinator would make the members rejoin.
fn persist_group_membership(
    metadata: crate::metadata::MetadataClient,
    cluster: Arc<dyn ClusterView>,
) -> impl Fn(String, floe_meta::groups::StoredGroup) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static {
    move |group, stored| {
        let metadata = metadata.clone();
        let cluster = Arc::clone(&cluster);
        Box::pin(async move {
            // The same placement FindCoordinator answers with (groups over the agents serving fetch).
            let coordinator =
                crate::handlers::coordinator::coordinator_in(cluster.as_ref(), crate::handlers::coordinator::Coordinated::Group, &group);
            let coordinates = coordinator.node_id == cluster.local().node_id;
            if !coordinates {
                return;
            }
            let generation = stored.generation;
            if let Err(error) = metadata.submit(JournalRecord::GroupMembership { group: group.clone(), stored }).await {
                tracing::warn!(%group, generation, %error, "could not store a group's membership; a new coordinator would make its members rejoin");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_http_address_is_the_bound_one_or_the_advertised_host_on_a_wildcard_bind() {
        assert_eq!(reachable_http_address("127.0.0.1:8081".parse().unwrap(), "agent-1.floe.svc"), "127.0.0.1:8081");
        assert_eq!(reachable_http_address("0.0.0.0:8080".parse().unwrap(), "agent-1.floe.svc"), "agent-1.floe.svc:8080");
        assert_eq!(reachable_http_address("[::]:8080".parse().unwrap(), "10.0.0.7"), "10.0.0.7:8080");
    }
}
