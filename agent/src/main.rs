//! The `floe` binary: `floe agent`, `floe playground`, `floe admin`, `floe diagnose`, and the
//! Kafka client commands (`floe topic`, `produce`, `consume`, `group`, `cluster`, `acl`).

use anyhow::Context;
use clap::Parser;
use floe_agent::admin;
use floe_agent::agent;
use floe_agent::config::{AdminCommand, Cli, Command, MetadataUrl};
use floe_agent::launch::{cluster_settings, s3_options, settings};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// What SIGTERM does: keep serving this long once marked draining, and give up after the timeout.
struct DrainSettings {
    grace: Duration,
    timeout: Duration,
}

/// The playground has no registry to leave and no clients to move: it stops at once, with the
/// same bound as an agent's default drain timeout.
const PLAYGROUND_DRAIN: DrainSettings = DrainSettings { grace: Duration::ZERO, timeout: Duration::from_secs(60) };

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

/// The glibc malloc arenas a server runs with, unless the environment says otherwise.
const SERVER_MALLOC_ARENAS: &str = "1";

/// Re-executes this process (same PID, arguments and environment) with
/// `MALLOC_ARENA_MAX=1` when the variable is unset; returns only when it is set or the exec failed.
///
/// glibc gives a thread that meets contention an arena of its own (up to eight per core), and an
/// arena keeps what it freed for reuse by its own threads. An agent's large short-lived buffers
/// (GET bodies, assembled fetches of tens of MiB) are freed on whichever worker or blocking thread
/// ran them, so every arena grows to hold some. In the bench's 1,000-partition catch-up the
/// playground's peak RSS was 684-847 MiB with glibc's default, 524-555 MiB with two arenas and
/// 435-450 MiB with one, at the same throughput and CPU per MiB (produce too); mimalloc peaked
/// at 853-1,432 MiB (agent/DESIGN.md, "Memory"). glibc reads the variable only at start-up, and
/// setting it from inside (`mallopt`) would take unsafe code, which the workspace forbids.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn restart_with_one_malloc_arena() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(executable) = std::env::current_exe() else { return };
    let mut arguments = std::env::args_os();
    let program = arguments.next().unwrap_or_else(|| executable.clone().into_os_string());
    let error = std::process::Command::new(&executable).arg0(program).args(arguments).env("MALLOC_ARENA_MAX", SERVER_MALLOC_ARENAS).exec();
    // exec returns only on failure (the binary was replaced or removed meanwhile): carry on with
    // glibc's default arenas, which costs memory, not correctness.
    eprintln!(
        "warning: could not restart with MALLOC_ARENA_MAX={SERVER_MALLOC_ARENAS} ({error}); running with glibc's default malloc arenas"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn restart_with_one_malloc_arena() {}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Agent(_) | Command::Playground(_) | Command::Demo(_)) {
        restart_with_one_malloc_arena();
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).context("invalid --log filter; example: info")?)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal (as the operator does): in a file or a log
        // collector the escape codes are noise around every level and field name.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let demo = matches!(cli.command, Command::Demo(_));
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
        Command::Playground(args) | Command::Demo(args) => {
            std::fs::create_dir_all(&args.data_dir).with_context(|| format!("failed to create --data-dir {}", args.data_dir.display()))?;
            let directory =
                args.data_dir.canonicalize().with_context(|| format!("failed to resolve --data-dir {}", args.data_dir.display()))?;
            (floe_agent::launch::playground_settings(&directory, args.common)?, Some(directory), PLAYGROUND_DRAIN)
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
        // The Kafka client commands: blocking, one request at a time, nothing to drain.
        Command::Topic { command, client } => return floe_agent::cli::topic(&client, command),
        Command::Produce { args, client } => return floe_agent::cli::produce(&client, args),
        Command::Consume { args, client } => return floe_agent::cli::consume(&client, args),
        Command::Group { command, client } => return floe_agent::cli::group(&client, command),
        Command::Cluster { command, client } => return floe_agent::cli::cluster(&client, command),
        Command::Acl { command, client } => return floe_agent::cli::acl(&client, command),
        Command::Diagnose(args) => {
            let report = floe_agent::cli::diagnose::run(&args).await?;
            report.print(args.output);
            std::process::exit(if report.healthy() { 0 } else { 1 });
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
    let kind = match (demo, playground_directory.is_some()) {
        (true, _) => "demo",
        (false, true) => "playground",
        (false, false) => "agent",
    };
    println!("Floe {kind} is running.");
    println!("  Kafka bootstrap: {}", running.advertised);
    println!("  HTTP:            http://{}/metrics  /healthz  /readyz", running.http_address);
    println!("  Console:         http://{}/", running.http_address);
    println!("  Node id:         {}", running.node_id);
    if let Some(directory) = playground_directory {
        println!("  Data directory:  {}", directory.display());
        if demo {
            use floe_agent::cli::demo;
            demo::start(&running.advertised);
            println!(
                "Demo traffic: {} producers writing ~{} records/s to topic {:?} ({} partitions); groups {:?} (keeps up) and {:?} (reads {}/s, lags).",
                demo::PRODUCERS,
                demo::PRODUCERS * demo::RECORDS_PER_SECOND_PER_PRODUCER,
                demo::TOPIC,
                demo::PARTITIONS,
                demo::FAST_GROUP,
                demo::SLOW_GROUP,
                demo::SLOW_RECORDS_PER_SECOND
            );
            println!("Open the console: http://{}/", running.http_address);
        } else {
            println!("Try: kcat -b {} -L", running.advertised);
        }
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
