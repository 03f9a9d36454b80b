//! `floe-operator`: `crds` prints the CustomResourceDefinitions; `run` reconciles.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "floe-operator", version, about = "Reconciles Floe VirtualCluster and AgentPool resources")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the controller.
    Run,
    /// Print the CustomResourceDefinitions as YAML.
    Crds,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds => {
            print!("{}", floe_operator::crdgen::render_yaml()?);
            Ok(())
        }
        Command::Run => anyhow::bail!("not yet"),
    }
}
