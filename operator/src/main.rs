//! `floe-operator`: a skeleton. The VirtualCluster and AgentPool reconcilers arrive with the
//! operator issue; until then the binary only says so.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "floe-operator", version, about = "Reconciles Floe VirtualCluster and AgentPool resources")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller (not implemented yet).
    Run,
    /// Print the CustomResourceDefinitions (not implemented yet).
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run | Command::Crds => anyhow::bail!("the operator is not implemented yet; see the operator issue"),
    }
}
