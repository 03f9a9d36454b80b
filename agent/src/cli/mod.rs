//! `floe topic`, `floe produce`, `floe consume`, `floe group`, `floe cluster` and `floe acl`: the everyday
//! commands of a Kafka user, speaking the Kafka protocol to any agent (or any Kafka broker), in
//! the spirit of Redpanda's `rpk`. Human tables by default, `-o json` for scripts (one JSON
//! object per line). `floe diagnose` ([`diagnose`]) checks a cluster's etcd, bucket and agents.

mod acls;
mod client;
pub mod demo;
pub mod diagnose;
mod groups;
mod membership;
pub mod partitioner;
mod records;
pub mod security;
mod topics;

use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

pub use acls::AclCommand;
pub use client::Client;
pub use diagnose::DiagnoseArgs;

/// Where the commands connect and how they print.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Any agent of the cluster, host:port (several separated by commas).
    #[arg(long, short = 'b', env = "FLOE_BOOTSTRAP", default_value = "127.0.0.1:9092", global = true)]
    pub bootstrap: String,
    /// Output: human-readable tables, or one JSON object per line.
    #[arg(long, short = 'o', value_enum, default_value = "table", global = true)]
    pub output: Output,
    /// TLS and SASL, for a secured listener.
    #[command(flatten)]
    pub security: security::SecurityArgs,
}

impl ClientArgs {
    /// A client connected to `--bootstrap` with the TLS and SASL options.
    pub fn connect(&self) -> anyhow::Result<Client> {
        Client::connect_with(&self.bootstrap, self.security.security()?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, short = 'p', default_value_t = 1)]
        partitions: i32,
        /// A topic config, e.g. -c retention.ms=3600000 (repeatable).
        #[arg(long = "config", short = 'c', value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List topics with their partition counts.
    List,
    /// A topic's partitions (leader, log start and end offsets) and its configs.
    Describe { name: String },
    /// Set (-s key=value) or reset (-d key) topic configs.
    AlterConfig {
        name: String,
        #[arg(long = "set", short = 's', value_parser = parse_key_value)]
        set: Vec<(String, String)>,
        #[arg(long = "delete", short = 'd')]
        delete: Vec<String>,
    },
    /// Raise a topic's partition count to --to.
    AddPartitions {
        name: String,
        #[arg(long)]
        to: i32,
    },
    /// Delete topics and their records.
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// Records from standard input (or --file), one per line.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    pub topic: String,
    /// The key of every record.
    #[arg(long, short = 'k', conflicts_with = "key_separator")]
    pub key: Option<String>,
    /// Split each line at the first SEPARATOR into key and value, e.g. --key-separator :
    #[arg(long)]
    pub key_separator: Option<String>,
    /// A header of every record, e.g. -H source=cli (repeatable).
    #[arg(long = "header", short = 'H', value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    /// The partition; without it keyed records go where the Java client would put them
    /// (murmur2 of the key), others round-robin.
    #[arg(long, short = 'p')]
    pub partition: Option<i32>,
    /// Read the records from this file instead of standard input.
    #[arg(long, short = 'f')]
    pub file: Option<std::path::PathBuf>,
}

/// Records of a topic, printed with --format.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read as a member of this consumer group: the group splits the topic's partitions between
    /// its members, each starts from the group's committed offsets and commits what it read.
    #[arg(long, short = 'g', conflicts_with = "partition")]
    pub group: Option<String>,
    /// Where to start (where the group has no commit): beginning, end, an offset, or @<unix ms>.
    #[arg(long, default_value = "beginning", value_parser = parse_start)]
    pub from: Start,
    /// Only these partitions (repeatable; default: all). Not with --group, which assigns them.
    #[arg(long, short = 'p')]
    pub partition: Vec<i32>,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Stop once nothing new arrived for this long (default: with --count, wait for it; without,
    /// never stop).
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub idle: Option<Duration>,
    /// How each record is printed: %t topic, %p partition, %o offset, %k key, %v value,
    /// %h headers, %T timestamp (ms), %% a percent sign, \n a newline, \t a tab.
    #[arg(long, short = 'f', default_value = "%v\\n")]
    pub format: String,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// A group's state, members, and per partition its committed offset, end offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets of a topic (the group must have no active members).
    Seek {
        group: String,
        #[arg(long)]
        topic: String,
        /// beginning, end, an offset, or @<unix ms>.
        #[arg(long, value_parser = parse_start)]
        to: Start,
    },
    /// Delete groups and their committed offsets (the groups must have no active members).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The cluster id, the agents (node id, address, zone) and the controller.
    Info,
}

/// A position in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    End,
    Offset(i64),
    /// The first record at or after this time (Unix milliseconds).
    Timestamp(i64),
}

fn parse_start(value: &str) -> Result<Start, String> {
    match value {
        "beginning" | "earliest" | "start" => Ok(Start::Beginning),
        "end" | "latest" => Ok(Start::End),
        _ => {
            if let Some(time) = value.strip_prefix('@') {
                return time
                    .parse()
                    .map(Start::Timestamp)
                    .map_err(|_| format!("{value:?}: expected @<unix milliseconds>, e.g. @1767225600000"));
            }
            match value.parse::<i64>() {
                Ok(offset) if offset >= 0 => Ok(Start::Offset(offset)),
                _ => Err(format!("{value:?}: expected beginning, end, an offset (e.g. 42) or @<unix ms>")),
            }
        }
    }
}

fn parse_key_value(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{value:?}: expected key=value, e.g. retention.ms=3600000")),
    }
}

pub fn topic(args: &ClientArgs, command: TopicCommand) -> anyhow::Result<()> {
    topics::run(args, command)
}

pub fn produce(args: &ClientArgs, produce: ProduceArgs) -> anyhow::Result<()> {
    records::produce(args, produce)
}

pub fn consume(args: &ClientArgs, consume: ConsumeArgs) -> anyhow::Result<()> {
    records::consume(args, consume)
}

pub fn group(args: &ClientArgs, command: GroupCommand) -> anyhow::Result<()> {
    groups::run(args, command)
}

pub fn cluster(args: &ClientArgs, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Info => topics::cluster_info(args),
    }
}

pub fn acl(args: &ClientArgs, command: AclCommand) -> anyhow::Result<()> {
    acls::run(args, command)
}

/// Prints rows as an aligned table (a header, then the rows) or as one JSON object per row.
fn print_rows(output: Output, header: &[&str], rows: &[Vec<String>]) {
    match output {
        Output::Json => {
            for row in rows {
                let object: serde_json::Map<String, serde_json::Value> = header
                    .iter()
                    .zip(row)
                    .map(|(name, value)| {
                        let value = value.parse::<i64>().map_or_else(|_| serde_json::Value::String(value.clone()), serde_json::Value::from);
                        (name.to_lowercase().replace(' ', "_"), value)
                    })
                    .collect();
                println!("{}", serde_json::Value::Object(object));
            }
        }
        Output::Table => {
            let mut widths: Vec<usize> = header.iter().map(|name| name.len()).collect();
            for row in rows {
                for (width, cell) in widths.iter_mut().zip(row) {
                    *width = (*width).max(cell.chars().count());
                }
            }
            let line = |cells: Vec<&str>| {
                let padded: Vec<String> = cells.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
                println!("{}", padded.join("  ").trim_end());
            };
            line(header.to_vec());
            for row in rows {
                line(row.iter().map(String::as_str).collect());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_and_configs_parse_with_examples_in_their_errors() {
        assert_eq!(parse_start("beginning"), Ok(Start::Beginning));
        assert_eq!(parse_start("end"), Ok(Start::End));
        assert_eq!(parse_start("42"), Ok(Start::Offset(42)));
        assert_eq!(parse_start("@1767225600000"), Ok(Start::Timestamp(1_767_225_600_000)));
        assert!(parse_start("-3").unwrap_err().contains("e.g. 42"));
        assert!(parse_start("@soon").unwrap_err().contains("@<unix milliseconds>"));
        assert_eq!(parse_key_value("retention.ms=60000"), Ok(("retention.ms".into(), "60000".into())));
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_key_value("retention.ms").unwrap_err().contains("key=value"));
    }
}
