//! Assembles an agent from its parts and runs it until shutdown. Tests start agents in-process
//! through `start` with port 0 listeners.

use crate::cluster::NodeInfo;
use crate::config::MetadataUrl;
use crate::groups::GroupCoordinator;
use crate::handlers::{AgentContext, HandlerSettings};
use crate::http::{self, HttpState};
use crate::metadata::journal::{EmbeddedJournal, JournalError};
use crate::metadata::replica::Replica;
use crate::metadata::{JournalRecord, MetadataClient, MetadataError};
use crate::metrics::Metrics;
use crate::server::{self, ServerSettings};
use crate::storage::{ObjectStoreUrl, SegmentCache, SegmentReader, SegmentStore, SegmentWriter, StoreError, WriterConfig};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub metadata: MetadataUrl,
    pub object_store: ObjectStoreUrl,
    pub kafka_listen: SocketAddr,
    pub advertise: Option<String>,
    pub http_listen: SocketAddr,
    pub flush_interval: Duration,
    pub flush_max_bytes: usize,
    pub max_request_bytes: usize,
    pub cache_bytes: usize,
    pub default_partitions: i32,
    pub group_initial_rebalance_delay: Duration,
    pub node_id: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("failed to open the metadata journal: {0}")]
    Journal(#[from] JournalError),
    #[error("failed to initialise the cluster record: {0}")]
    Metadata(#[from] MetadataError),
    #[error("failed to open the object store: {0}")]
    Store(#[from] StoreError),
    #[error("failed to bind {what} on {address}: {source} (is another process using it? pick another with {flag})")]
    Bind { what: &'static str, address: SocketAddr, flag: &'static str, source: std::io::Error },
}

/// A started agent. Dropping it without `shutdown` leaves its tasks running until the runtime ends.
pub struct RunningAgent {
    pub kafka_address: SocketAddr,
    pub http_address: SocketAddr,
    pub advertised: String,
    pub metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    writer_task: JoinHandle<()>,
    sweeper: JoinHandle<()>,
}

impl RunningAgent {
    /// Stops accepting, finishes in-flight requests and the last flush, then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.writer_task.await;
        self.sweeper.abort();
    }
}

pub async fn start(settings: AgentSettings) -> Result<RunningAgent, StartError> {
    let metrics = Arc::new(Metrics::new());
    let replica = Arc::new(Replica::new());
    let journal = match &settings.metadata {
        MetadataUrl::Embedded(directory) => Arc::new(EmbeddedJournal::open(&directory.join("journal.log"), Arc::clone(&replica))?),
    };
    let metadata = MetadataClient::new(journal, Arc::clone(&replica));
    if metadata.read(|state| state.cluster_id.is_none()) {
        metadata.submit(JournalRecord::InitCluster { cluster_id: new_cluster_id() }).await?;
    }
    let store = Arc::new(SegmentStore::open(&settings.object_store, Arc::clone(&metrics))?);
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
    let sweeper = groups.spawn_sweeper(Duration::from_millis(200));

    let kafka_listener = TcpListener::bind(settings.kafka_listen).await.map_err(|source| StartError::Bind {
        what: "the Kafka listener",
        address: settings.kafka_listen,
        flag: "--kafka-listen",
        source,
    })?;
    let kafka_address = kafka_listener.local_addr().map_err(|source| StartError::Bind {
        what: "the Kafka listener",
        address: settings.kafka_listen,
        flag: "--kafka-listen",
        source,
    })?;
    let http_listener = TcpListener::bind(settings.http_listen).await.map_err(|source| StartError::Bind {
        what: "the HTTP listener",
        address: settings.http_listen,
        flag: "--http-listen",
        source,
    })?;
    let http_address = http_listener.local_addr().map_err(|source| StartError::Bind {
        what: "the HTTP listener",
        address: settings.http_listen,
        flag: "--http-listen",
        source,
    })?;
    let advertised = settings.advertise.clone().unwrap_or_else(|| {
        let host = if kafka_address.ip().is_unspecified() { "127.0.0.1".to_string() } else { kafka_address.ip().to_string() };
        format!("{host}:{}", kafka_address.port())
    });
    let (host, port) = advertised.rsplit_once(':').expect("validated HOST:PORT");
    let node = NodeInfo { node_id: settings.node_id, host: host.to_string(), port: port.parse().expect("validated port"), rack: None };
    let context = Arc::new(AgentContext {
        node,
        metadata,
        writer,
        reader: Arc::new(SegmentReader::new(store, cache)),
        groups,
        metrics: Arc::clone(&metrics),
        settings: HandlerSettings { default_partitions: settings.default_partitions, max_partitions_per_topic: 10_000 },
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
    tracing::info!(%kafka_address, %http_address, %advertised, "agent started");
    Ok(RunningAgent {
        kafka_address,
        http_address,
        advertised,
        metrics,
        shutdown,
        tasks: vec![server_task, http_task],
        writer_task,
        sweeper,
    })
}

/// Kafka-style cluster id: 22 characters of URL-safe base64 of a random UUID.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = uuid::Uuid::new_v4().as_u128();
    (0..22).map(|index| ALPHABET[((value >> (index * 6)) & 63) as usize] as char).collect()
}
