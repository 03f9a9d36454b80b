//! `floe-operator`: `run` reconciles VirtualCluster and AgentPool resources (and serves the
//! external metrics API when given its certificate); `crds` prints their
//! CustomResourceDefinitions (what `make crds` commits) or applies them to the cluster.

use clap::{Args, Parser, Subcommand};
use floe_operator::agent_pool::build::BuildSettings;
use floe_operator::context::{Context, HealthIntervals};
use floe_operator::metrics::Metrics;
use floe_operator::run::{run, LeaderSettings, RunSettings};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "floe-operator", version, about = "Reconciles Floe VirtualCluster and AgentPool resources")]
struct Cli {
    /// Log filter, e.g. `info` or `floe_operator=debug,kube=info`.
    #[arg(long, env = "FLOE_LOG", default_value = "info", global = true)]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the `run` variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the controllers (uses the in-cluster service account, or KUBECONFIG outside a cluster).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions as YAML, write them into the repository, or apply them.
    Crds(CrdArgs),
}

#[derive(Debug, Args)]
struct CrdArgs {
    /// Write `<name>.yaml` per CRD here (e.g. `crds`) instead of printing.
    #[arg(long, conflicts_with = "apply")]
    out_dir: Option<std::path::PathBuf>,
    /// Install or upgrade them in the cluster (in-cluster service account or KUBECONFIG) and wait
    /// until they are Established, as `run --install-crds` does at start.
    #[arg(long)]
    apply: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Install or upgrade the VirtualCluster and AgentPool CRDs at start (server-side apply), and
    /// wait until they are Established before reconciling. The chart turns it on (crds.enabled).
    #[arg(long, env = "FLOE_OPERATOR_INSTALL_CRDS", default_value_t = false, action = clap::ArgAction::Set)]
    install_crds: bool,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "FLOE_OPERATOR_HTTP_LISTEN", default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// Agent image for AgentPools that name none.
    #[arg(long, env = "FLOE_AGENT_IMAGE", default_value = concat!("ghcr.io/floe-dev/floe:", env!("CARGO_PKG_VERSION")))]
    agent_image: String,
    /// Elect one leader among replicas through a Lease (needed with more than one replica).
    #[arg(long, env = "FLOE_OPERATOR_LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, env = "FLOE_OPERATOR_LEASE_NAME", default_value = "floe-operator")]
    lease_name: String,
    /// Reconcile only this namespace (default: all namespaces).
    #[arg(long, env = "FLOE_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Address of the external metrics API (HTTPS, `external.metrics.k8s.io/v1beta1`), served
    /// only with --metrics-api-cert-file and --metrics-api-key-file.
    #[arg(long, env = "FLOE_OPERATOR_METRICS_API_LISTEN", default_value = "0.0.0.0:6443")]
    metrics_api_listen: SocketAddr,
    /// PEM certificate (chain) of the external metrics API; re-read when the file changes.
    #[arg(long, env = "FLOE_OPERATOR_METRICS_API_CERT_FILE", requires = "metrics_api_key_file")]
    metrics_api_cert_file: Option<PathBuf>,
    /// PEM private key of that certificate (RSA PKCS#1, PKCS#8 or EC); re-read when it changes.
    #[arg(long, env = "FLOE_OPERATOR_METRICS_API_KEY_FILE", requires = "metrics_api_cert_file")]
    metrics_api_key_file: Option<PathBuf>,
    /// Whether AgentPool autoscalers also scale on bandwidth per agent (`true`) or on CPU alone
    /// (`false`). Bandwidth needs the external metrics API registered in the cluster (the chart's
    /// metricsApi.enabled); default: true exactly when this operator serves it.
    #[arg(long, env = "FLOE_OPERATOR_BANDWIDTH_AUTOSCALING", action = clap::ArgAction::Set)]
    bandwidth_autoscaling: Option<bool>,
    /// How often a Ready VirtualCluster's etcd and bucket are checked again, e.g. `30s`: the
    /// longest a dead dependency goes unreported.
    #[arg(long, env = "FLOE_OPERATOR_HEALTH_CHECK_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    health_check_interval: Duration,
    /// How soon a VirtualCluster whose check failed is checked again, e.g. `5s`.
    #[arg(long, env = "FLOE_OPERATOR_HEALTH_RETRY_INTERVAL", default_value = "5s", value_parser = parse_interval)]
    health_retry_interval: Duration,
}

/// A positive duration such as `30s`, `500ms` or `1m`.
fn parse_interval(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(interval) if !interval.is_zero() => Ok(interval),
        Ok(_) => Err("must be more than zero; example: 30s".to_string()),
        Err(error) => Err(format!("{error}; example: 30s")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .map_err(|error| anyhow::anyhow!("--log {:?}: {error}; example: info", cli.log))?,
        )
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: in a file or a log collector the escape codes
        // are noise around every level and field name.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        Command::Crds(CrdArgs { out_dir: Some(out_dir), .. }) => {
            for path in floe_operator::crdgen::write(&out_dir)? {
                eprintln!("wrote {path}");
            }
            Ok(())
        }
        Command::Crds(CrdArgs { apply: true, .. }) => tokio::runtime::Runtime::new()?.block_on(async {
            install_crds(&kubernetes_client().await?).await?;
            Ok(())
        }),
        Command::Crds(_) => {
            print!("{}", floe_operator::crdgen::render_yaml()?);
            Ok(())
        }
        Command::Run(args) => tokio::runtime::Runtime::new()?.block_on(run_operator(args)),
    }
}

async fn kubernetes_client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .map_err(|error| anyhow::anyhow!("failed to configure the Kubernetes client (in-cluster service account or KUBECONFIG): {error}"))
}

async fn install_crds(client: &kube::Client) -> anyhow::Result<()> {
    for outcome in floe_operator::crd_install::install(client).await? {
        match outcome {
            floe_operator::crd_install::Installed::Applied { name } => {
                tracing::info!(crd = %name, "CustomResourceDefinition applied and Established")
            }
            floe_operator::crd_install::Installed::KeptNewer { name, version } => {
                tracing::info!(crd = %name, installed_by = %version, "CustomResourceDefinition left as a newer operator applied it")
            }
        }
    }
    Ok(())
}

async fn run_operator(args: RunArgs) -> anyhow::Result<()> {
    let client = kubernetes_client().await?;
    // Before the HTTP server: the pod becomes Ready only once the CRDs it reconciles exist, so
    // `helm install --wait` and `kubectl rollout status` return when a VirtualCluster can be created.
    if args.install_crds {
        install_crds(&client).await?;
    }
    let identity = args.identity.unwrap_or_else(|| format!("floe-operator-{}", uuid::Uuid::new_v4()));
    let metrics = Arc::new(Metrics::new());
    let serves_metrics_api = args.metrics_api_cert_file.is_some();
    let bandwidth_metric = args.bandwidth_autoscaling.unwrap_or(serves_metrics_api);
    tracing::info!(bandwidth_metric, "AgentPool autoscalers scale on CPU{}", if bandwidth_metric { " and bandwidth" } else { " only" });
    let build = BuildSettings { default_image: args.agent_image, bandwidth_metric };
    let health = HealthIntervals { ready: args.health_check_interval, failing: args.health_retry_interval };
    let context =
        Arc::new(Context::new(client.clone(), metrics, build, &identity).watching(args.watch_namespace.clone()).checking_health(health));
    let leader_election = args.leader_election.then(|| LeaderSettings {
        namespace: args.leader_election_namespace,
        lease_name: args.lease_name,
        identity: identity.clone(),
    });
    let metrics_api = match (args.metrics_api_cert_file, args.metrics_api_key_file) {
        (Some(certificate), Some(key)) => Some(floe_operator::metrics_api::Settings { listen: args.metrics_api_listen, certificate, key }),
        _ => None,
    };
    run(client, context, RunSettings { http_listen: args.http_listen, namespace: args.watch_namespace, leader_election, metrics_api }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_intervals_take_durations_and_refuse_zero_with_an_example() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0s").unwrap_err().contains("example: 30s"));
        assert!(parse_interval("often").unwrap_err().contains("example: 30s"));
    }

    #[test]
    fn the_health_flags_default_to_30_and_5_seconds() {
        let Cli { command: Command::Run(args), .. } = Cli::try_parse_from(["floe-operator", "run"]).unwrap() else { panic!("not run") };
        assert_eq!((args.health_check_interval, args.health_retry_interval), (Duration::from_secs(30), Duration::from_secs(5)));
        assert_eq!(args.bandwidth_autoscaling, None);
        assert!(!args.install_crds, "a binary run by hand changes no cluster-wide object unless asked");
    }
}
