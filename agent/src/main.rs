//! The `floe` binary: `floe agent` and `floe playground`.

use anyhow::Context;
use clap::Parser;
use floe_agent::agent::{self, AgentSettings};
use floe_agent::config::{Cli, Command, CommonArgs, MetadataUrl};
use floe_agent::storage::ObjectStoreUrl;

fn settings(metadata: MetadataUrl, object_store: ObjectStoreUrl, common: CommonArgs) -> AgentSettings {
    AgentSettings {
        metadata,
        object_store,
        kafka_listen: common.kafka_listen,
        advertise: common.advertise,
        http_listen: common.http_listen,
        flush_interval: common.flush_interval,
        flush_max_bytes: common.flush_max_bytes,
        max_request_bytes: common.max_request_bytes,
        cache_bytes: common.cache_bytes,
        default_partitions: common.default_partitions,
        group_initial_rebalance_delay: common.group_initial_rebalance_delay,
        node_id: common.node_id,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter; example: info")?)
        .with_writer(std::io::stderr)
        .init();
    let (settings, playground_directory) = match cli.command {
        Command::Agent(args) => (settings(args.metadata, args.object_store, args.common), None),
        Command::Playground(args) => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| format!("failed to create --data-dir {}", args.data_dir.display()))?;
            let directory =
                args.data_dir.canonicalize().with_context(|| format!("failed to resolve --data-dir {}", args.data_dir.display()))?;
            let metadata = MetadataUrl::Embedded(directory.join("metadata"));
            let bucket = ObjectStoreUrl::File(directory.join("bucket"));
            (settings(metadata, bucket, args.common), Some(directory))
        }
    };
    let running = agent::start(settings).await?;
    if let Some(directory) = playground_directory {
        println!("Floe playground is running.");
        println!("  Kafka bootstrap: {}", running.advertised);
        println!("  HTTP:            http://{}/metrics  /healthz  /readyz", running.http_address);
        println!("  Data directory:  {}", directory.display());
        println!("Try: kcat -b {} -L", running.advertised);
        println!("Stop with Ctrl-C; data survives a restart.");
    }
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and the last flush");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
