//! Assembles an agent from its parts and runs it until shutdown. Tests start agents in-process
//! through `start` with port 0 listeners.

use crate::cluster::registry::{AgentRecord, Registry};
use crate::cluster::{ClusterView, NodeInfo, SingleAgent};
use crate::config::{MetadataUrl, Roles};
use crate::groups::GroupCoordinator;
use crate::handlers::{AgentContext, HandlerSettings};
use crate::http::{self, HttpState};
use crate::jobs::{self, JobSettings};
use crate::metadata::etcd::{self, EtcdError, EtcdJournal, EtcdSettings};
use crate::metadata::journal::{EmbeddedJournal, JournalBackend, JournalError};
use crate::metadata::keys::KeyLayout;
use crate::metadata::replica::Replica;
use crate::metadata::{JournalRecord, MetadataClient, MetadataError, SUPPORTED_METADATA_VERSION};
use crate::metrics::Metrics;
use crate::server::{self, ServerSettings};
use crate::storage::{ObjectStoreUrl, S3Options, SegmentCache, SegmentReader, SegmentStore, SegmentWriter, StoreError, WriterConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Cluster-mode settings (etcd metadata).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    pub virtual_cluster: String,
    pub etcd: EtcdSettings,
    pub zone: Option<String>,
    pub roles: Roles,
    pub jobs: JobSettings,
    pub registry_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub metadata: MetadataUrl,
    pub object_store: ObjectStoreUrl,
    pub s3: S3Options,
    pub cluster: Option<ClusterSettings>,
    pub kafka_listen: SocketAddr,
    pub advertise: Option<String>,
    pub http_listen: SocketAddr,
    pub flush_interval: Duration,
    pub flush_max_bytes: usize,
    pub max_request_bytes: usize,
    pub cache_bytes: usize,
    pub default_partitions: i32,
    pub auto_create_topics: bool,
    pub group_initial_rebalance_delay: Duration,
    pub node_id: i32,
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
}

/// A started agent. Dropping it without `shutdown` leaves its tasks running until the runtime ends.
pub struct RunningAgent {
    pub kafka_address: SocketAddr,
    pub http_address: SocketAddr,
    pub advertised: String,
    pub node_id: i32,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer_task: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl RunningAgent {
    /// Stops accepting, finishes in-flight requests and the last flush, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.writer_task.await;
        for task in self.background {
            task.abort();
        }
    }
}

async fn bind(address: SocketAddr, what: &'static str, flag: &'static str) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(address).await.map_err(|source| StartError::Bind { what, address, flag, source })?;
    let bound = listener.local_addr().map_err(|source| StartError::Bind { what, address, flag, source })?;
    Ok((listener, bound))
}

pub async fn start(settings: AgentSettings) -> Result<RunningAgent, StartError> {
    let metrics = Arc::new(Metrics::new());
    let replica = Arc::new(Replica::new());
    let store = Arc::new(SegmentStore::open(&settings.object_store, &settings.s3, Arc::clone(&metrics))?);
    let (kafka_listener, kafka_address) = bind(settings.kafka_listen, "the Kafka listener", "--kafka-listen").await?;
    let (http_listener, http_address) = bind(settings.http_listen, "the HTTP listener", "--http-listen").await?;
    let advertised = settings.advertise.clone().unwrap_or_else(|| {
        let host = if kafka_address.ip().is_unspecified() { "127.0.0.1".to_string() } else { kafka_address.ip().to_string() };
        format!("{host}:{}", kafka_address.port())
    });
    let (host, port) = advertised.rsplit_once(':').expect("validated HOST:PORT");
    let port: i32 = port.parse().expect("validated port");
    let mut background = Vec::new();

    let (journal, cluster, etcd_parts): (Arc<dyn JournalBackend>, Arc<dyn ClusterView>, _) = match &settings.metadata {
        MetadataUrl::Embedded(directory) => {
            let journal = Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica))?);
            let node = NodeInfo { node_id: settings.node_id, host: host.to_string(), port, rack: None };
            (journal, Arc::new(SingleAgent(node)), None)
        }
        MetadataUrl::Etcd { .. } => {
            let cluster_settings = settings.cluster.as_ref().ok_or(StartError::MissingClusterSettings)?;
            let client = etcd::connect(&cluster_settings.etcd).await?;
            let keys = KeyLayout::new(&cluster_settings.etcd.prefix, &cluster_settings.virtual_cluster);
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
            };
            let (registry, tasks) =
                Registry::join(client.clone(), keys.clone(), record, cluster_settings.registry_ttl, Arc::clone(&metrics)).await?;
            background.extend(tasks);
            (Arc::new(journal) as Arc<dyn JournalBackend>, registry as Arc<dyn ClusterView>, Some((client, keys, cluster_settings.clone())))
        }
    };
    let metadata = MetadataClient::new(journal, Arc::clone(&replica));
    if metadata.read(|state| state.cluster_id.is_none()) {
        metadata.submit(JournalRecord::InitCluster { cluster_id: new_cluster_id() }).await?;
    }
    // Raise the journal to this build's format before writing anything in it. Replicas of an
    // older build then halt (they would assign different offsets) until they are upgraded.
    if metadata.read(|state| state.metadata_version < SUPPORTED_METADATA_VERSION) {
        metadata.submit(JournalRecord::SetMetadataVersion { version: SUPPORTED_METADATA_VERSION }).await?;
    }
    let cache = Arc::new(SegmentCache::new(settings.cache_bytes));
    let (shutdown, shutdown_receiver) = watch::channel(false);
    let writer = Arc::new(SegmentWriter::new(
        WriterConfig { flush_interval: settings.flush_interval, flush_max_bytes: settings.flush_max_bytes },
        Arc::clone(&store),
        Arc::clone(&cache),
        metadata.clone(),
        Arc::clone(&metrics),
    ));
    let writer_task = tokio::spawn(Arc::clone(&writer).run(shutdown_receiver.clone()));
    let groups = Arc::new(GroupCoordinator::new(settings.group_initial_rebalance_delay));
    background.push(groups.spawn_sweeper(Duration::from_millis(200)));
    let reader = Arc::new(SegmentReader::new(Arc::clone(&store), cache));
    if let Some((client, keys, cluster_settings)) = etcd_parts {
        if cluster_settings.roles.has("jobs") {
            background.push(jobs::spawn(
                client,
                keys,
                cluster_settings.jobs.clone(),
                metadata.clone(),
                Arc::clone(&store),
                Arc::clone(&reader),
                Arc::clone(&metrics),
            ));
        }
    }
    let node_id = cluster.local().node_id;
    let context = Arc::new(AgentContext {
        cluster,
        metadata,
        writer,
        reader,
        groups,
        metrics: Arc::clone(&metrics),
        settings: HandlerSettings {
            default_partitions: settings.default_partitions,
            max_partitions_per_topic: 10_000,
            auto_create_topics: settings.auto_create_topics,
        },
    });
    let ready = Arc::new(AtomicBool::new(false));
    let server_task = tokio::spawn(server::run(
        kafka_listener,
        context,
        ServerSettings { max_request_bytes: settings.max_request_bytes },
        shutdown_receiver.clone(),
    ));
    let http_task =
        tokio::spawn(http::run(http_listener, HttpState { metrics: Arc::clone(&metrics), ready: Arc::clone(&ready) }, shutdown_receiver));
    ready.store(true, Ordering::Release);
    tracing::info!(%kafka_address, %http_address, %advertised, node_id, "agent started");
    Ok(RunningAgent {
        kafka_address,
        http_address,
        advertised,
        node_id,
        metrics,
        shutdown,
        tasks: vec![server_task, http_task],
        writer_task,
        background,
    })
}

/// Kafka-style cluster id: 22 characters of URL-safe base64 of a random UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = uuid::Uuid::new_v4().as_u128();
    (0..22).map(|index| ALPHABET[((value >> (index * 6)) & 63) as usize] as char).collect()
}
