//! The `floe` binary: `floe agent`, `floe playground` and `floe admin`.

use anyhow::Context;
use clap::Parser;
use floe_agent::admin;
use floe_agent::agent::{self, AgentSettings, ClusterSettings};
use floe_agent::config::{AdminCommand, Cli, ClusterArgs, Command, CommonArgs, MetadataUrl};
use floe_agent::handlers::RequestLimits;
use floe_agent::jobs::JobSettings;
use floe_agent::metadata::etcd::EtcdSettings;
use floe_agent::server::ServerSettings;
use floe_agent::storage::{ObjectStoreUrl, S3Options};
use floe_agent::tls::ListenerTls;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

fn s3_options(cluster: &ClusterArgs) -> S3Options {
    S3Options {
        endpoint: cluster.s3_endpoint.clone(),
        region: cluster.s3_region.clone(),
        access_key_id: cluster.s3_access_key_id.clone(),
        secret_access_key: cluster.s3_secret_access_key.clone(),
        allow_http: cluster.s3_allow_http,
        virtual_hosted_style: cluster.s3_virtual_hosted_style,
    }
}

fn cluster_settings(metadata: &MetadataUrl, cluster: &ClusterArgs) -> Option<ClusterSettings> {
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

/// What SIGTERM does: keep serving this long once marked draining, and give up after the timeout.
struct DrainSettings {
    grace: Duration,
    timeout: Duration,
}

/// The playground has no registry to leave and no clients to move: it stops at once, with the
/// same bound as an agent's default drain timeout.
const PLAYGROUND_DRAIN: DrainSettings = DrainSettings { grace: Duration::ZERO, timeout: Duration::from_secs(60) };

fn settings(
    metadata: MetadataUrl,
    object_store: ObjectStoreUrl,
    common: CommonArgs,
    cluster: Option<&ClusterArgs>,
) -> anyhow::Result<AgentSettings> {
    // Every TLS file is read and checked now: a bad one stops start-up naming its flag.
    let tls = common.tls.settings().map(|tls| ListenerTls::load(&tls)).transpose()?;
    Ok(AgentSettings {
        cluster: cluster.and_then(|cluster| cluster_settings(&metadata, cluster)),
        jobs: JobSettings {
            snapshot_interval: common.jobs.snapshot_interval,
            compaction_interval: common.jobs.compaction_interval,
            compaction_fan_in: common.jobs.compaction_fan_in as usize,
            small_segment_bytes: (common.flush_max_bytes / 2) as u64,
            retention_interval: common.jobs.retention_interval,
            gc_grace: common.jobs.gc_grace,
        },
        s3: cluster.map(s3_options).unwrap_or_default(),
        metadata,
        object_store,
        kafka_listen: common.kafka_listen,
        advertise: common.advertise,
        http_listen: common.http_listen,
        flush_interval: common.flush_interval,
        flush_max_bytes: common.flush_max_bytes,
        server: ServerSettings {
            max_request_bytes: common.max_request_bytes,
            queued_max_request_bytes: common.queued_max_request_bytes,
            max_in_flight_requests_per_connection: common.max_in_flight_requests_per_connection as usize,
            connections_max_idle: common.connections_max_idle,
            max_connections: common.max_connections as usize,
            max_connections_per_ip: common.max_connections_per_ip as usize,
            tls,
        },
        limits: RequestLimits {
            fetch_max_bytes: common.fetch_max_bytes,
            offset_metadata_max_bytes: common.offset_metadata_max_bytes,
            group_max_size: common.group_max_size as usize,
            group_max_member_metadata_bytes: common.group_max_member_metadata_bytes,
            max_partitions_per_request: common.max_partitions_per_request as usize,
            max_partitions: common.max_partitions as usize,
        },
        cache_bytes: common.cache_bytes,
        default_partitions: common.default_partitions,
        auto_create_topics: common.auto_create_topics,
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

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `Debug`: an operator reads one line, not a cause list and a backtrace.
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. A cause whose text the message already holds is left
/// out: our error types print their source inside their own message.
fn one_line(error: &anyhow::Error) -> String {
    let mut message = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message.push_str(": ");
            message.push_str(&cause);
        }
    }
    message
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter; example: info")?)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal (as the operator does): in a file or a log
        // collector the escape codes are noise around every level and field name.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let (settings, playground_directory, drain) = match cli.command {
        Command::Agent(args) => {
            args.cluster.validate().map_err(|message| anyhow::anyhow!(message))?;
            // Embedded metadata means a single agent: nobody to hand over to, so no grace.
            let grace = if matches!(args.metadata, MetadataUrl::Etcd { .. }) { args.cluster.drain_grace() } else { Duration::ZERO };
            if args.cluster.drain_grace() < args.cluster.drain_grace {
                tracing::warn!(
                    grace = ?args.cluster.drain_grace(),
                    "--drain-grace is longer than half of --drain-timeout; using half of the timeout"
                );
            }
            let drain = DrainSettings { grace, timeout: args.cluster.drain_timeout };
            (settings(args.metadata, args.object_store, args.common, Some(&args.cluster))?, None, drain)
        }
        Command::Playground(args) => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| format!("failed to create --data-dir {}", args.data_dir.display()))?;
            let directory =
                args.data_dir.canonicalize().with_context(|| format!("failed to resolve --data-dir {}", args.data_dir.display()))?;
            let metadata = MetadataUrl::Embedded(directory.join("metadata"));
            let bucket = ObjectStoreUrl::File(directory.join("bucket"));
            (settings(metadata, bucket, args.common, None)?, Some(directory), PLAYGROUND_DRAIN)
        }
        Command::Admin(AdminCommand::MarkLost(args)) => {
            let cluster = cluster_settings(&args.fsck.metadata, &args.fsck.cluster);
            let report = admin::mark_lost(
                &args.fsck.metadata,
                cluster.as_ref(),
                &args.fsck.object_store,
                &s3_options(&args.fsck.cluster),
                &args.object,
                args.confirm_data_loss,
            )
            .await?;
            print!("{report}");
            return Ok(());
        }
        Command::Admin(AdminCommand::Fsck(args)) => {
            let cluster = cluster_settings(&args.metadata, &args.cluster);
            let report = admin::fsck(&args.metadata, cluster.as_ref(), &args.object_store, &s3_options(&args.cluster)).await?;
            print!("{report}");
            std::process::exit(if report.is_clean() { 0 } else { 1 });
        }
    };
    // Installed before start-up so an early SIGTERM starts a drain instead of killing the process.
    let mut signals = Signals::install()?;
    let running = agent::start(settings).await?;
    println!("Floe {} is running.", if playground_directory.is_some() { "playground" } else { "agent" });
    println!("  Kafka bootstrap: {}", running.advertised);
    println!("  HTTP:            http://{}/metrics  /healthz  /readyz", running.http_address);
    println!("  Node id:         {}", running.node_id);
    if let Some(directory) = playground_directory {
        println!("  Data directory:  {}", directory.display());
        println!("Try: kcat -b {} -L", running.advertised);
        println!("Stop with Ctrl-C; data survives a restart.");
    }
    let first = signals.next().await;
    tracing::info!(signal = first, grace = ?drain.grace, timeout = ?drain.timeout, "draining before exit");
    tokio::select! {
        drained = tokio::time::timeout(drain.timeout, running.drain(drain.grace)) => {
            if drained.is_err() {
                tracing::error!(timeout = ?drain.timeout, "the drain did not finish within --drain-timeout; exiting anyway");
                std::process::exit(1);
            }
        }
        second = signals.next() => {
            tracing::error!(signal = second, "second signal during the drain; exiting at once");
            std::process::exit(1);
        }
    }
    Ok(())
}

/// SIGTERM and SIGINT, installed once so a second signal during the drain is not missed.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            terminate: signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
