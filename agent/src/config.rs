//! Command-line configuration. Every flag has an environment twin; every value is validated at
//! start-up with a message that names the flag, says what was wrong and shows a good value.

use crate::storage::ObjectStoreUrl;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(name = "floe", version, about = "Floe: a Kafka-compatible streaming agent whose data lives in object storage")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter, e.g. info or floe_agent=debug
    #[arg(long, env = "FLOE_LOG", default_value = "info", global = true)]
    pub log: String,
}

// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one agent with explicit metadata and object-store backends.
    Agent(AgentArgs),
    /// Run a single-process playground: embedded metadata and a file bucket under --data-dir.
    Playground(PlaygroundArgs),
    /// The playground with built-in traffic: producers writing to a `demo` topic and two consumer
    /// groups reading it (one deliberately slow), to watch in the web console.
    Demo(PlaygroundArgs),
    /// Operator tools.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Topics: create, list, describe, alter-config, add-partitions, delete.
    Topic {
        #[command(subcommand)]
        command: crate::cli::TopicCommand,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// Produce records, one per line, from standard input or --file.
    Produce {
        #[command(flatten)]
        args: crate::cli::ProduceArgs,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// Print a topic's records, from an offset, a time or a group's commits.
    Consume {
        #[command(flatten)]
        args: crate::cli::ConsumeArgs,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// Consumer groups: list, describe (with lag), seek, delete.
    Group {
        #[command(subcommand)]
        command: crate::cli::GroupCommand,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// The cluster: its agents and zones.
    Cluster {
        #[command(subcommand)]
        command: crate::cli::ClusterCommand,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// Kafka ACLs: create, list, delete (enforced when the agents run with --acl-authorization).
    Acl {
        #[command(subcommand)]
        command: crate::cli::AclCommand,
        #[command(flatten)]
        client: crate::cli::ClientArgs,
    },
    /// Check a cluster: the bucket, etcd, every agent (reachable, metadata version, journal lag,
    /// clock) and fsck. One line per check; exits 1 when any check fails.
    Diagnose(crate::cli::DiagnoseArgs),
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Check the bucket against the metadata: every referenced object exists and its footer
    /// matches; unreferenced objects (orphans) are listed. Exits 1 when anything is wrong.
    Fsck(FsckArgs),
    /// Declare a segment object lost for good (deleted or damaged beyond repair, as fsck or a
    /// fetch's KAFKA_STORAGE_ERROR reported): its chunks leave the index and consumers skip the
    /// offsets it held. Without --confirm-data-loss it only prints what would be dropped.
    MarkLost(MarkLostArgs),
}

#[derive(Debug, Clone, Args)]
pub struct MarkLostArgs {
    /// The object, as fsck or the agent's log names it (e.g. clusters/<id>/segments/<name>.seg).
    #[arg(long)]
    pub object: String,
    /// Really drop the object's records from the index. The decision cannot be undone.
    #[arg(long)]
    pub confirm_data_loss: bool,
    #[command(flatten)]
    pub fsck: FsckArgs,
}

#[derive(Debug, Clone, Args)]
pub struct FsckArgs {
    /// The agents' metadata: etcd://host:2379[,host:2379]/prefix (or a playground's embedded:///path)
    #[arg(long, env = "FLOE_METADATA")]
    pub metadata: MetadataUrl,
    /// The agents' object store: s3://bucket/prefix or file:///path (S3 settings as the agent's)
    #[arg(long, env = "FLOE_OBJECT_STORE")]
    pub object_store: ObjectStoreUrl,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataUrl {
    Embedded(PathBuf),
    /// `etcd://host:port[,host:port]/prefix`
    Etcd {
        endpoints: Vec<String>,
        prefix: String,
    },
}

impl std::str::FromStr for MetadataUrl {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, String> {
        if let Some(path) = value.strip_prefix("embedded://") {
            if !path.starts_with('/') {
                return Err(format!("{value:?} is not an absolute path; example: embedded:///var/lib/floe/metadata"));
            }
            return Ok(Self::Embedded(PathBuf::from(path)));
        }
        if let Some(rest) = value.strip_prefix("etcd://") {
            const EXAMPLE: &str = "example: etcd://10.0.0.1:2379,10.0.0.2:2379/floe";
            let (hosts, prefix) = rest.split_once('/').unwrap_or((rest, "floe"));
            let endpoints: Vec<String> = hosts.split(',').filter(|host| !host.is_empty()).map(|host| format!("http://{host}")).collect();
            if endpoints.is_empty()
                || hosts.split(',').any(|host| host.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()))
            {
                return Err(format!("{value:?} must list etcd endpoints as host:port; {EXAMPLE}"));
            }
            let prefix = format!("/{}", prefix.trim_matches('/'));
            if prefix == "/" {
                return Err(format!("{value:?} needs a key prefix after the endpoints; {EXAMPLE}"));
            }
            return Ok(Self::Etcd { endpoints, prefix });
        }
        Err(format!("unsupported metadata URL {value:?}; examples: embedded:///var/lib/floe/metadata, etcd://127.0.0.1:2379/floe"))
    }
}

pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|error| format!("{value:?} is not a duration ({error}); example: 250ms or 1s"))
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err(format!("{value:?} must be longer than zero; example: 3s"));
    }
    Ok(duration)
}

pub fn parse_flush_interval(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration < Duration::from_millis(10) || duration > Duration::from_secs(60) {
        return Err(format!("{value:?} is outside 10ms..=60s; example: 250ms"));
    }
    Ok(duration)
}

pub fn parse_puts_per_second(value: &str) -> Result<f64, String> {
    let rate: f64 = value.trim().parse().map_err(|_| format!("{value:?} is not a number of PUTs per second; example: 10"))?;
    if !(0.1..=1000.0).contains(&rate) {
        return Err(format!("{value:?} is outside 0.1..=1000 PUTs per second; example: 10"));
    }
    Ok(rate)
}

/// Sizes like 8MiB, 512KiB, 100MB or a plain number of bytes.
pub fn parse_size(value: &str) -> Result<usize, String> {
    let trimmed = value.trim();
    let split = trimmed.find(|character: char| !character.is_ascii_digit()).unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let number: usize = digits.parse().map_err(|_| format!("{value:?} is not a size; example: 8MiB"))?;
    let multiplier: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("{value:?} has an unknown unit {other:?}; example: 8MiB")),
    };
    let bytes = number.checked_mul(multiplier).ok_or_else(|| format!("{value:?} is too large"))?;
    if bytes == 0 {
        return Err(format!("{value:?} must be larger than zero; example: 8MiB"));
    }
    Ok(bytes)
}

fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    value.parse().map_err(|_| format!("{value:?} is not HOST:PORT with a numeric address; example: 127.0.0.1:9092"))
}

fn parse_advertise(value: &str) -> Result<String, String> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(value.to_string()),
        _ => Err(format!("{value:?} is not HOST:PORT; example: floe-0.floe.svc:9092")),
    }
}

/// Settings shared by `agent` and `playground`.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Address the Kafka listener binds.
    #[arg(long, env = "FLOE_KAFKA_LISTEN", default_value = "127.0.0.1:9092", value_parser = parse_listen)]
    pub kafka_listen: SocketAddr,
    /// HOST:PORT clients are told to connect to (default: the Kafka listen address).
    #[arg(long, env = "FLOE_ADVERTISE", value_parser = parse_advertise)]
    pub advertise: Option<String>,
    /// Address of the HTTP server (health, readiness, Prometheus metrics).
    #[arg(long, env = "FLOE_HTTP_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub http_listen: SocketAddr,
    /// The least time between two flushes (10ms..=60s), which is also the longest a produced
    /// batch waits for its flush to start: another way to give --max-puts-per-second (1 / this).
    /// Give one of the two.
    #[arg(long, env = "FLOE_FLUSH_INTERVAL", value_parser = parse_flush_interval, conflicts_with = "max_puts_per_second")]
    pub flush_interval: Option<Duration>,
    /// Segment PUTs per second this agent makes at most (0.1..=1000): a segment is flushed as soon
    /// as the previous PUT returned and the cap allows (a full segment at once). Each PUT costs a
    /// request on a paid object store (README "What flushing costs"). Default: 10 on s3://, 250
    /// on file:// and memory://, where a PUT costs nothing.
    #[arg(long, env = "FLOE_MAX_PUTS_PER_SECOND", value_parser = parse_puts_per_second)]
    pub max_puts_per_second: Option<f64>,
    /// Flush as soon as the open segment holds this many bytes.
    #[arg(long, env = "FLOE_FLUSH_MAX_BYTES", default_value = "8MiB", value_parser = parse_size)]
    pub flush_max_bytes: usize,
    /// Largest request frame accepted; larger frames close the connection before any allocation.
    #[arg(long, env = "FLOE_MAX_REQUEST_BYTES", default_value = "100MiB", value_parser = parse_size)]
    pub max_request_bytes: usize,
    /// Bytes that request frames of all connections may hold together (Kafka's
    /// queued.max.request.bytes): past it, connections stop reading until requests finish. A frame
    /// is charged as its bytes arrive, never at its declared size.
    #[arg(long, env = "FLOE_QUEUED_MAX_REQUEST_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub queued_max_request_bytes: usize,
    /// Produce requests one connection may have in flight (an acknowledgement waits for a flush,
    /// so producers pipeline). Every other request is handled one at a time per connection, as
    /// Kafka does.
    #[arg(long, env = "FLOE_MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub max_in_flight_requests_per_connection: u32,
    /// Close a connection that has nothing in flight and has not read or written a byte for this
    /// long (Kafka's connections.max.idle.ms, 10 minutes).
    #[arg(long, env = "FLOE_CONNECTIONS_MAX_IDLE", default_value = "10m", value_parser = parse_positive_duration)]
    pub connections_max_idle: Duration,
    /// Open Kafka connections at most; at the limit the listener stops accepting until one closes
    /// (Kafka's max.connections; default: unlimited, 2147483647).
    #[arg(long, env = "FLOE_MAX_CONNECTIONS", default_value_t = i32::MAX as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Open Kafka connections from one IP address at most; further ones are closed at once
    /// (Kafka's max.connections.per.ip; default: unlimited, 2147483647).
    #[arg(long, env = "FLOE_MAX_CONNECTIONS_PER_IP", default_value_t = i32::MAX as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// Most record bytes one Fetch response carries, whatever the client asks for (Kafka's broker
    /// fetch.max.bytes, 55 MiB); as in Kafka, the first batch still goes whole so consumers progress.
    /// A consumer fetches from every agent leading its partitions at once, so each agent answers
    /// at most this divided by their number (the agents of the client's zone, else all), never
    /// below 8 MiB: the pool sends a consumer about what one Kafka broker would.
    #[arg(long, env = "FLOE_FETCH_MAX_BYTES", default_value = "57671680", value_parser = parse_size)]
    pub fetch_max_bytes: usize,
    /// Incremental fetch sessions (KIP-227) this agent keeps in memory, so consumers send and
    /// receive only the partitions that changed instead of all of them on every fetch (Kafka's
    /// max.incremental.fetch.session.cache.slots). When all are taken, a new session replaces the
    /// least recently used one idle for over 2 minutes, else the consumer fetches without one.
    /// 0 disables sessions.
    #[arg(long, env = "FLOE_FETCH_SESSION_CACHE_SLOTS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub fetch_session_cache_slots: u32,
    /// Longest committed-offset metadata string; longer ones get OFFSET_METADATA_TOO_LARGE (Kafka's
    /// offset.metadata.max.bytes).
    #[arg(long, env = "FLOE_OFFSET_METADATA_MAX_BYTES", default_value = "4096", value_parser = parse_size)]
    pub offset_metadata_max_bytes: usize,
    /// Members one consumer group may have; a JoinGroup past it gets GROUP_MAX_SIZE_REACHED (Kafka's
    /// group.max.size; default: unlimited, 2147483647).
    #[arg(long, env = "FLOE_GROUP_MAX_SIZE", default_value_t = i32::MAX as u32, value_parser = clap::value_parser!(u32).range(1..))]
    pub group_max_size: u32,
    /// Largest protocol metadata one JoinGroup member may send, and largest assignment a leader may
    /// hand one member in SyncGroup; larger ones get MESSAGE_TOO_LARGE. Kafka has no separate limit:
    /// the group record holding them must fit message.max.bytes (1 MiB), else SyncGroup fails.
    #[arg(long, env = "FLOE_GROUP_MAX_MEMBER_METADATA_BYTES", default_value = "1MiB", value_parser = parse_size)]
    pub group_max_member_metadata_bytes: usize,
    /// Partitions one CreateTopics or CreatePartitions request may add in total; past it every
    /// topic of the request gets POLICY_VIOLATION with a message.
    #[arg(long, env = "FLOE_MAX_PARTITIONS_PER_REQUEST", default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_partitions_per_request: u32,
    /// Partitions the virtual cluster may hold in total; a topic or partition increase past it gets
    /// POLICY_VIOLATION with a message.
    #[arg(long, env = "FLOE_MAX_PARTITIONS", default_value_t = 200_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_partitions: u32,
    /// Memory for recently written and recently read segment bytes. Default: 256 MiB (64 MiB over a
    /// file:// bucket, the playground's, whose reads the page cache serves), or a quarter of the
    /// container's (cgroup's) memory limit when that is smaller (at least 16 MiB).
    #[arg(long, env = "FLOE_CACHE_BYTES", value_parser = parse_size)]
    pub cache_bytes: Option<usize>,
    /// Partitions of a topic created without an explicit count.
    #[arg(long, env = "FLOE_DEFAULT_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=100_000))]
    pub default_partitions: i32,
    /// How long the first rebalance of an empty consumer group waits for more members.
    #[arg(long, env = "FLOE_GROUP_INITIAL_REBALANCE_DELAY", default_value = "3s", value_parser = parse_duration)]
    pub group_initial_rebalance_delay: Duration,
    /// Create a topic (with --default-partitions) when a client asks for it in Metadata and allows
    /// auto-creation, as Kafka's auto.create.topics.enable does. On by default in the playground
    /// (as in Kafka), off on `floe agent`; `--auto-create-topics=false` turns it off.
    #[arg(long, env = "FLOE_AUTO_CREATE_TOPICS", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub auto_create_topics: Option<bool>,
    /// Kafka node id this agent advertises.
    #[arg(long, env = "FLOE_NODE_ID", default_value_t = 1, value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: i32,
    /// Threads that may check produced batches (CRC, decompression, every record) at once, off
    /// the async workers [default: half the CPUs, at least 1]
    #[arg(long, env = "FLOE_PRODUCE_VALIDATION_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub produce_validation_threads: Option<u16>,
    /// Decompressed bytes one produce request may inflate while its batches are checked; batches
    /// past it are refused with MESSAGE_TOO_LARGE (the Java producer splits and resends them).
    #[arg(long, env = "FLOE_PRODUCE_MAX_DECOMPRESSED_BYTES_PER_REQUEST", default_value = "256MiB", value_parser = parse_size)]
    pub produce_max_decompressed_bytes_per_request: usize,
    #[command(flatten)]
    pub jobs: JobArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub sasl: SaslArgs,
    #[command(flatten)]
    pub authorization: AuthorizationArgs,
}

/// Authorization with Kafka ACLs. Off unless --acl-authorization is set.
#[derive(Debug, Clone, Args)]
pub struct AuthorizationArgs {
    /// Enforce Kafka ACLs: a request is refused with Kafka's *_AUTHORIZATION_FAILED code unless an
    /// ACL in the virtual cluster allows it (kafka-acls --add ...) or its principal is a super
    /// user. Off, every client may do everything and the ACL APIs answer SECURITY_DISABLED.
    #[arg(long, env = "FLOE_ACL_AUTHORIZATION")]
    pub acl_authorization: bool,
    /// Principals allowed everything, separated by ';' as Kafka's super.users (User:admin;User:ops).
    /// The SASL bootstrap user (--sasl-bootstrap-user) is always one.
    #[arg(long, env = "FLOE_SUPER_USERS", requires = "acl_authorization")]
    pub super_users: Option<String>,
}

impl AuthorizationArgs {
    /// The authorization settings, or `None` when ACLs are not enforced. `bootstrap_user` (the
    /// SASL bootstrap user's name) becomes a super user: it creates the first ACLs.
    pub fn settings(&self, bootstrap_user: Option<&str>) -> Result<Option<crate::authorization::AuthorizationSettings>, String> {
        if !self.acl_authorization {
            return Ok(None);
        }
        let mut super_users = crate::authorization::AuthorizationSettings::parse_super_users(self.super_users.as_deref().unwrap_or(""))?;
        if let Some(user) = bootstrap_user {
            super_users.insert(format!("User:{user}"));
        }
        Ok(Some(crate::authorization::AuthorizationSettings { super_users }))
    }
}

/// SASL on the Kafka listener. Off unless --sasl-mechanisms is set; then every connection must
/// authenticate before anything but ApiVersions is answered (Kafka's SASL_PLAINTEXT, or SASL_SSL
/// with --tls-cert-file).
#[derive(Debug, Clone, Args)]
pub struct SaslArgs {
    /// Mechanisms offered, comma-separated: SCRAM-SHA-512, SCRAM-SHA-256, PLAIN, OAUTHBEARER.
    /// Users are SCRAM credentials in the virtual cluster's journal (kafka-configs --entity-type
    /// users --alter --add-config 'SCRAM-SHA-512=[password=...]'); PLAIN checks the same passwords;
    /// OAUTHBEARER checks JWTs against --sasl-oauthbearer-jwks-url.
    #[arg(long, env = "FLOE_SASL_MECHANISMS", value_delimiter = ',')]
    pub sasl_mechanisms: Vec<crate::sasl::Mechanism>,
    /// A user whose SCRAM credentials the agent writes at start-up when they are missing or do
    /// not match --sasl-bootstrap-password-file: the first user, who can then create the others.
    #[arg(long, env = "FLOE_SASL_BOOTSTRAP_USER", requires = "sasl_bootstrap_password_file")]
    pub sasl_bootstrap_user: Option<String>,
    /// File holding the bootstrap user's password (the whole file, without a trailing newline);
    /// a file so the password never shows in the process list.
    #[arg(long, env = "FLOE_SASL_BOOTSTRAP_PASSWORD_FILE", requires = "sasl_bootstrap_user")]
    pub sasl_bootstrap_password_file: Option<PathBuf>,
    /// How long the answer to a failed authentication is held before the connection closes, as
    /// Kafka's connection.failed.authentication.delay.ms: each password guess costs at least this.
    #[arg(long, env = "FLOE_SASL_FAILED_AUTHENTICATION_DELAY", default_value = "100ms", value_parser = parse_duration)]
    pub sasl_failed_authentication_delay: Duration,
    /// Longest a SASL session lasts before the client must re-authenticate on its connection
    /// (KIP-368, Kafka's connections.max.reauth.ms); an OAUTHBEARER session also ends with its
    /// token. A connection that does not re-authenticate is closed at its next request, so a
    /// deleted user or an expired token loses its open connections too. 0s turns it off.
    #[arg(long, env = "FLOE_CONNECTIONS_MAX_REAUTH", default_value = "0s", value_parser = parse_duration)]
    pub connections_max_reauth: Duration,
    /// OAUTHBEARER: the identity provider's JSON Web Key Set, https://... or file://... (Kafka's
    /// sasl.oauthbearer.jwks.endpoint.url). Needed when --sasl-mechanisms offers OAUTHBEARER.
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_JWKS_URL")]
    pub sasl_oauthbearer_jwks_url: Option<crate::sasl::oauthbearer::JwksSource>,
    /// OAUTHBEARER: the issuer (iss) every token must name, when set.
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_ISSUER")]
    pub sasl_oauthbearer_issuer: Option<String>,
    /// OAUTHBEARER: an audience (aud) every token must include, when set.
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_AUDIENCE")]
    pub sasl_oauthbearer_audience: Option<String>,
    /// OAUTHBEARER: the claim whose value names the principal (User:<value>).
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_PRINCIPAL_CLAIM", default_value = "sub")]
    pub sasl_oauthbearer_principal_claim: String,
    /// OAUTHBEARER: how often the key set is re-read (it is also re-read, at most every 10 s, when
    /// a token names an unknown key).
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_JWKS_REFRESH", default_value = "1h", value_parser = parse_duration)]
    pub sasl_oauthbearer_jwks_refresh: Duration,
    /// OAUTHBEARER: slack allowed on exp and nbf for clocks that disagree.
    #[arg(long, env = "FLOE_SASL_OAUTHBEARER_CLOCK_SKEW", default_value = "30s", value_parser = parse_duration)]
    pub sasl_oauthbearer_clock_skew: Duration,
}

impl SaslArgs {
    /// The listener's SASL settings, or `None` without SASL; reads the bootstrap password file.
    pub fn settings(&self) -> Result<Option<crate::sasl::SaslSettings>, String> {
        if self.sasl_mechanisms.is_empty() {
            if self.sasl_bootstrap_user.is_some() {
                return Err("--sasl-bootstrap-user needs --sasl-mechanisms; example: --sasl-mechanisms SCRAM-SHA-512".to_string());
            }
            return Ok(None);
        }
        let bootstrap_user = match (&self.sasl_bootstrap_user, &self.sasl_bootstrap_password_file) {
            (Some(name), Some(file)) => {
                let password =
                    std::fs::read_to_string(file).map_err(|error| format!("--sasl-bootstrap-password-file {}: {error}", file.display()))?;
                let password = password.strip_suffix('\n').unwrap_or(&password).to_string();
                if name.is_empty() || password.is_empty() {
                    return Err(format!("--sasl-bootstrap-user and --sasl-bootstrap-password-file {} must not be empty", file.display()));
                }
                Some(crate::sasl::BootstrapUser { name: name.clone(), password })
            }
            _ => None,
        };
        let mut mechanisms = Vec::new();
        for mechanism in &self.sasl_mechanisms {
            if !mechanisms.contains(mechanism) {
                mechanisms.push(*mechanism);
            }
        }
        let offers_oauth = mechanisms.contains(&crate::sasl::Mechanism::OAuthBearer);
        let oauth = match (&self.sasl_oauthbearer_jwks_url, offers_oauth) {
            (Some(jwks), true) => Some(crate::sasl::oauthbearer::OAuthValidator::new(crate::sasl::oauthbearer::OAuthSettings {
                jwks: jwks.clone(),
                issuer: self.sasl_oauthbearer_issuer.clone(),
                audience: self.sasl_oauthbearer_audience.clone(),
                principal_claim: self.sasl_oauthbearer_principal_claim.clone(),
                refresh_interval: self.sasl_oauthbearer_jwks_refresh,
                clock_skew: self.sasl_oauthbearer_clock_skew,
            })),
            (None, true) => {
                return Err("OAUTHBEARER needs --sasl-oauthbearer-jwks-url, e.g. https://idp.example.com/.well-known/jwks.json".to_string())
            }
            (Some(_), false) => return Err("--sasl-oauthbearer-jwks-url needs OAUTHBEARER in --sasl-mechanisms".to_string()),
            (None, false) => None,
        };
        Ok(Some(crate::sasl::SaslSettings {
            mechanisms,
            bootstrap_user,
            failed_authentication_delay: self.sasl_failed_authentication_delay,
            oauth,
            max_reauth: self.connections_max_reauth,
        }))
    }
}

/// Whether the Kafka listener asks clients for a certificate (Kafka's ssl.client.auth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsClientAuth {
    /// No client certificate is asked for.
    None,
    /// A certificate is asked for; a client without one is admitted anonymously, one with a
    /// certificate that does not chain to --tls-client-ca-file is refused.
    Requested,
    /// A certificate chaining to --tls-client-ca-file is needed to connect.
    Required,
}

impl TlsClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Requested => "requested",
            Self::Required => "required",
        }
    }
}

/// TLS on the Kafka listener. Off unless --tls-cert-file is set; then every connection is TLS
/// (1.2 or 1.3, rustls's safe default cipher suites).
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM, leaf first) the Kafka listener serves; turns TLS on. Re-read when
    /// the file changes: new connections get the new certificate, open ones keep theirs.
    #[arg(long, env = "FLOE_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, RSA PKCS#1 or EC SEC1) of --tls-cert-file.
    #[arg(long, env = "FLOE_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA bundle (PEM) that client certificates must chain to (with --tls-client-auth requested or
    /// required).
    #[arg(long, env = "FLOE_TLS_CLIENT_CA_FILE", requires = "tls_cert_file")]
    pub tls_client_ca_file: Option<PathBuf>,
    /// Client certificates (Kafka's ssl.client.auth): none, requested or required. A verified
    /// certificate's subject becomes the connection's principal (User:CN=...,O=...).
    #[arg(long, env = "FLOE_TLS_CLIENT_AUTH", value_enum, default_value_t = TlsClientAuth::None)]
    pub tls_client_auth: TlsClientAuth,
    /// A TLS handshake not finished within this long closes the connection, so a client that
    /// connects and stalls cannot hold a connection slot.
    #[arg(long, env = "FLOE_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub tls_handshake_timeout: Duration,
}

impl TlsArgs {
    /// The listener's TLS settings, or `None` for plaintext.
    pub fn settings(&self) -> Option<crate::tls::ListenerTlsSettings> {
        Some(crate::tls::ListenerTlsSettings {
            certificate: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
            client_auth: self.tls_client_auth,
            handshake_timeout: self.tls_handshake_timeout,
        })
    }
}

/// The roles an agent takes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles(pub Vec<String>);

impl Roles {
    pub fn has(&self, role: &str) -> bool {
        self.0.iter().any(|candidate| candidate == role)
    }
}

fn parse_roles(value: &str) -> Result<Roles, String> {
    let roles: Vec<String> = value.split(',').map(|role| role.trim().to_string()).filter(|role| !role.is_empty()).collect();
    if roles.is_empty() {
        return Err(format!("{value:?} names no role; example: produce,fetch,jobs"));
    }
    if let Some(unknown) = roles.iter().find(|role| !matches!(role.as_str(), "produce" | "fetch" | "jobs")) {
        return Err(format!("unknown role {unknown:?}; roles are produce, fetch and jobs (example: produce,fetch,jobs)"));
    }
    Ok(Roles(roles))
}

/// Background jobs (compaction, retention, garbage collection, snapshots): in cluster mode the
/// agent with the jobs role that wins the election runs them; with embedded metadata (the
/// playground) the agent runs them itself.
#[derive(Debug, Clone, Args)]
pub struct JobArgs {
    /// How often the jobs leader snapshots the metadata and trims the journal (etcd metadata only).
    #[arg(long, env = "FLOE_SNAPSHOT_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub snapshot_interval: Duration,
    /// How often the jobs leader looks for small segments to compact.
    #[arg(long, env = "FLOE_COMPACTION_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub compaction_interval: Duration,
    /// How often the jobs leader compacts the topics whose cleanup.policy includes compact (keeps
    /// the latest record per key; Kafka's log cleaner).
    #[arg(long, env = "FLOE_KEY_COMPACTION_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub key_compaction_interval: Duration,
    /// Number of small segments merged into one.
    #[arg(long, env = "FLOE_COMPACTION_FAN_IN", default_value_t = 32, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub compaction_fan_in: u32,
    /// How often retention and garbage collection run.
    #[arg(long, env = "FLOE_RETENTION_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub retention_interval: Duration,
    /// Unreferenced objects younger than this are never deleted (writes in flight, readers of
    /// compacted segments).
    #[arg(long, env = "FLOE_GC_GRACE", default_value = "10m", value_parser = parse_duration)]
    pub gc_grace: Duration,
    /// How often the agent running the jobs refreshes the consumer lag metrics
    /// (floe_consumer_group_lag_*) and, in cluster mode, floe_etcd_db_size_bytes.
    #[arg(long, env = "FLOE_LAG_METRICS_INTERVAL", default_value = "5s", value_parser = parse_positive_duration)]
    pub lag_metrics_interval: Duration,
    /// Per-partition consumer lag series (one per group and partition it committed) past which
    /// only the per-group totals are exported (floe_consumer_group_max_lag_seconds,
    /// floe_consumer_group_total_lag_records); 0 exports the totals only.
    #[arg(long, env = "FLOE_LAG_METRICS_MAX_SERIES", default_value_t = 10_000)]
    pub lag_metrics_max_series: u32,
}

/// Cluster-mode settings: etcd access, identity, S3.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Virtual cluster this agent serves (its etcd keys and objects are kept apart from others').
    #[arg(long, env = "FLOE_VIRTUAL_CLUSTER", default_value = "default")]
    pub virtual_cluster: String,
    /// uid of the VirtualCluster this agent serves (set by the operator). When set, the agent
    /// refuses to start if the virtual cluster's etcd registration names another VirtualCluster,
    /// so a pool pointed at a prefix someone else owns never writes into that journal.
    #[arg(long, env = "FLOE_VIRTUAL_CLUSTER_UID")]
    pub virtual_cluster_uid: Option<String>,
    /// etcd user name (with --etcd-password).
    #[arg(long, env = "FLOE_ETCD_USER")]
    pub etcd_user: Option<String>,
    #[arg(long, env = "FLOE_ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    /// CA certificate (PEM) to verify etcd's TLS certificate; enables TLS.
    #[arg(long, env = "FLOE_ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for etcd mutual TLS.
    #[arg(long, env = "FLOE_ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    #[arg(long, env = "FLOE_ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
    /// Lease of this agent's registry entry: a dead agent stops being advertised after this long.
    #[arg(long, env = "FLOE_REGISTRY_TTL", default_value = "10s", value_parser = parse_duration)]
    pub registry_ttl: Duration,
    /// How often the agent publishes its load (bytes in/out, object-store bytes, CPU) to the
    /// registry; shorter than --registry-ttl [default: 3s, or a third of --registry-ttl if less]
    #[arg(long, env = "FLOE_LOAD_REPORT_INTERVAL", value_parser = parse_positive_duration)]
    pub load_report_interval: Option<Duration>,
    /// Kubernetes pod this agent runs in, published in its registry record.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// AgentPool this agent belongs to, published in its registry record (the operator sums the
    /// load of a pool's agents for its autoscaler).
    #[arg(long, env = "FLOE_POOL")]
    pub pool: Option<String>,
    /// After SIGTERM, how long the agent keeps serving once it is marked draining, so clients
    /// refresh their metadata and move on before it stops accepting (at most half of
    /// --drain-timeout).
    #[arg(long, env = "FLOE_DRAIN_GRACE", default_value = "5s", value_parser = parse_duration)]
    pub drain_grace: Duration,
    /// Upper bound of the whole drain after SIGTERM (grace, in-flight requests, final flush,
    /// leaving the registry); past it the agent exits anyway with an error. Keep it below the
    /// pod's terminationGracePeriodSeconds.
    #[arg(long, env = "FLOE_DRAIN_TIMEOUT", default_value = "60s", value_parser = parse_positive_duration)]
    pub drain_timeout: Duration,
    /// Zone of this agent; clients whose client.id carries floe_az=<zone> are led to agents in it.
    #[arg(long, env = "FLOE_ZONE")]
    pub zone: Option<String>,
    /// A local directory (an emptyDir volume in a pod) where the agent keeps the segment objects it
    /// wrote, so consumers reading recent data are served from local disk instead of bucket GETs.
    /// A cache only: its floe-segment-cache subdirectory is emptied at start.
    #[arg(long, env = "FLOE_DISK_CACHE_DIR")]
    pub disk_cache_dir: Option<PathBuf>,
    /// Budget of the disk cache (with --disk-cache-dir); the oldest objects are deleted past it.
    #[arg(long, env = "FLOE_DISK_CACHE_BYTES", default_value = "2GiB", value_parser = parse_size)]
    pub disk_cache_bytes: usize,
    /// Roles of this agent: produce, fetch, jobs (background compaction, retention, GC, snapshots).
    #[arg(long, env = "FLOE_ROLES", default_value = "produce,fetch,jobs", value_parser = parse_roles)]
    pub roles: Roles,
    /// S3 endpoint for S3-compatible stores (default: AWS).
    #[arg(long, env = "AWS_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION")]
    pub s3_region: Option<String>,
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (local S3-compatible servers).
    #[arg(long, env = "AWS_ALLOW_HTTP")]
    pub s3_allow_http: bool,
    /// Use virtual-hosted-style requests instead of path-style.
    #[arg(long, env = "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")]
    pub s3_virtual_hosted_style: bool,
}

/// The load-report period: `--load-report-interval`, else 3 s or a third of the registry TTL,
/// whichever is shorter.
pub const DEFAULT_LOAD_REPORT_INTERVAL: Duration = Duration::from_secs(3);

impl ClusterArgs {
    /// etcd credentials travel only over TLS: a user name and password without `--etcd-ca-file`
    /// would go to whatever answers at the endpoint in clear text (etcd's Authenticate call).
    fn check_etcd_credentials(&self) -> Result<(), String> {
        match (&self.etcd_user, &self.etcd_password) {
            (Some(_), None) | (None, Some(_)) => Err("--etcd-user and --etcd-password go together".to_string()),
            (Some(_), Some(_)) if self.etcd_ca_file.is_none() => Err(
                "--etcd-user/--etcd-password would be sent to etcd in clear text: add --etcd-ca-file (TLS to etcd), or drop the credentials"
                    .to_string(),
            ),
            _ => Ok(()),
        }
    }

    pub fn load_report_interval(&self) -> Duration {
        self.load_report_interval.unwrap_or_else(|| DEFAULT_LOAD_REPORT_INTERVAL.min(self.registry_ttl / 3))
    }

    /// The grace period actually used: `--drain-grace`, but at most half of `--drain-timeout`, so
    /// the phases after it (answering, the final flush, leaving) keep half the budget. The operator
    /// derives the timeout from the pod's termination grace period, and a short one must shorten
    /// the grace rather than stop the agent from starting.
    pub fn drain_grace(&self) -> Duration {
        self.drain_grace.min(self.drain_timeout / 2)
    }

    /// Checks the flags that constrain each other; the message names them and shows good values.
    pub fn validate(&self) -> Result<(), String> {
        let interval = self.load_report_interval();
        if interval >= self.registry_ttl {
            return Err(format!(
                "--load-report-interval ({}) must be shorter than --registry-ttl ({}), or the operator may read a record \
                 older than the lease; example: --load-report-interval 3s --registry-ttl 10s",
                humantime::format_duration(interval),
                humantime::format_duration(self.registry_ttl)
            ));
        }
        self.check_etcd_credentials()
    }
}

#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// Metadata backend: embedded:///var/lib/floe/metadata or etcd://host:2379[,host:2379]/prefix
    #[arg(long, env = "FLOE_METADATA")]
    pub metadata: MetadataUrl,
    /// Object store for segments: file:///path, memory:// or s3://bucket/prefix (S3 settings come
    /// from the standard AWS_* environment, e.g. AWS_ENDPOINT, AWS_REGION, AWS_ALLOW_HTTP)
    #[arg(long, env = "FLOE_OBJECT_STORE")]
    pub object_store: ObjectStoreUrl,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Clone, Args)]
pub struct PlaygroundArgs {
    /// Directory holding the playground's metadata journal and file bucket.
    #[arg(long, env = "FLOE_DATA_DIR", default_value = "./floe-data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse_with_examples_in_errors() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("100MiB").unwrap(), 100 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("8 parsecs").unwrap_err().contains("example: 8MiB"));
        assert_eq!(parse_flush_interval("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_flush_interval("1ms").unwrap_err().contains("10ms"));
        assert!(parse_flush_interval("soon").unwrap_err().contains("example"));
        assert_eq!(parse_puts_per_second("2.5").unwrap(), 2.5);
        assert!(parse_puts_per_second("0").unwrap_err().contains("0.1..=1000"));
        assert!(parse_puts_per_second("many").unwrap_err().contains("example: 10"));
        // Two ways to give the same spacing: both at once is refused, naming both.
        let error =
            Cli::try_parse_from(["floe", "playground", "--flush-interval", "10ms", "--max-puts-per-second", "5"]).unwrap_err().to_string();
        assert!(error.contains("--flush-interval") && error.contains("--max-puts-per-second"), "{error}");
    }

    #[test]
    fn a_bad_flag_names_itself() {
        let error = Cli::try_parse_from(["floe", "playground", "--flush-max-bytes", "lots"]).unwrap_err().to_string();
        assert!(error.contains("--flush-max-bytes"), "{error}");
        assert!(error.contains("example: 8MiB"), "{error}");
        let error = Cli::try_parse_from(["floe", "agent", "--metadata", "zk://x", "--object-store", "memory://"]).unwrap_err().to_string();
        assert!(error.contains("--metadata") && error.contains("embedded:///"), "{error}");
        let error = Cli::try_parse_from(["floe", "agent", "--metadata", "etcd://nohost/floe", "--object-store", "memory://"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("--metadata") && error.contains("example: etcd://"), "{error}");
        let error =
            Cli::try_parse_from(["floe", "agent", "--metadata", "etcd://h:2379/p", "--object-store", "memory://", "--roles", "cook"])
                .unwrap_err()
                .to_string();
        assert!(error.contains("--roles") && error.contains("example"), "{error}");
    }

    #[test]
    fn etcd_credentials_are_refused_without_tls_to_etcd() {
        let error = agent_args(&["--etcd-user", "floe", "--etcd-password", "secret"]).cluster.validate().unwrap_err();
        assert!(error.contains("clear text") && error.contains("--etcd-ca-file"), "{error}");
        assert!(agent_args(&["--etcd-user", "floe"]).cluster.validate().unwrap_err().contains("go together"));
        let with_tls = agent_args(&["--etcd-user", "floe", "--etcd-password", "secret", "--etcd-ca-file", "/etc/etcd/ca.crt"]);
        assert_eq!(with_tls.cluster.validate(), Ok(()));
    }

    #[test]
    fn auto_create_topics_is_a_switch_that_also_takes_false() {
        let playground = |extra: &[&str]| match Cli::try_parse_from(["floe", "playground"].iter().chain(extra)).expect("parses").command {
            Command::Playground(args) => args.common.auto_create_topics,
            other => panic!("parsed {other:?}"),
        };
        assert_eq!(playground(&[]), None, "unset: the playground and `floe agent` each choose");
        assert_eq!(playground(&["--auto-create-topics"]), Some(true));
        assert_eq!(playground(&["--auto-create-topics=false"]), Some(false));
        assert_eq!(agent_args(&["--auto-create-topics=true"]).common.auto_create_topics, Some(true));
        assert!(Cli::try_parse_from(["floe", "playground", "--auto-create-topics=maybe"]).is_err());
    }

    fn agent_args(extra: &[&str]) -> AgentArgs {
        let base = ["floe", "agent", "--metadata", "etcd://h:2379/p", "--object-store", "memory://"];
        match Cli::try_parse_from(base.iter().chain(extra)).expect("parses").command {
            Command::Agent(args) => args,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn load_reporting_defaults_to_three_seconds_and_stays_below_the_registry_ttl() {
        let defaults = agent_args(&[]);
        assert_eq!(defaults.cluster.load_report_interval(), Duration::from_secs(3));
        assert_eq!(defaults.cluster.drain_grace, Duration::from_secs(5));
        assert_eq!(defaults.cluster.drain_timeout, Duration::from_secs(60));
        assert_eq!(defaults.cluster.validate(), Ok(()));
        // A short TTL shortens the default period instead of refusing to start.
        assert_eq!(agent_args(&["--registry-ttl", "3s"]).cluster.load_report_interval(), Duration::from_secs(1));
        let error = agent_args(&["--load-report-interval", "10s"]).cluster.validate().unwrap_err();
        assert!(error.contains("--load-report-interval") && error.contains("--registry-ttl") && error.contains("example"), "{error}");
        // The operator sets only the timeout (from the pod's grace period); a short one shortens
        // the grace instead of refusing to start.
        let short = agent_args(&["--drain-timeout", "4s"]).cluster;
        assert_eq!(short.validate(), Ok(()));
        assert_eq!(short.drain_grace(), Duration::from_secs(2));
        assert_eq!(agent_args(&[]).cluster.drain_grace(), Duration::from_secs(5));
    }

    #[test]
    fn limits_default_to_kafkas_values_and_come_from_flags_or_their_environment_twins() {
        let defaults = agent_args(&[]).common;
        assert_eq!(defaults.max_request_bytes, 100 << 20);
        assert_eq!(defaults.queued_max_request_bytes, 256 << 20);
        assert_eq!(defaults.connections_max_idle, Duration::from_millis(600_000));
        assert_eq!(defaults.max_connections, i32::MAX as u32);
        assert_eq!(defaults.max_connections_per_ip, i32::MAX as u32);
        assert_eq!(defaults.fetch_max_bytes, 57_671_680);
        assert_eq!(defaults.offset_metadata_max_bytes, 4096);
        assert_eq!(defaults.group_max_size, i32::MAX as u32);
        assert_eq!(defaults.group_max_member_metadata_bytes, 1 << 20);
        assert_eq!(defaults.fetch_session_cache_slots, 1000);
        let set = agent_args(&[
            "--fetch-max-bytes",
            "1MiB",
            "--max-connections-per-ip",
            "3",
            "--connections-max-idle",
            "2s",
            "--offset-metadata-max-bytes",
            "100",
            "--fetch-session-cache-slots",
            "0",
        ])
        .common;
        assert_eq!(set.fetch_max_bytes, 1 << 20);
        assert_eq!(set.max_connections_per_ip, 3);
        assert_eq!(set.connections_max_idle, Duration::from_secs(2));
        assert_eq!(set.offset_metadata_max_bytes, 100);
        assert_eq!(set.fetch_session_cache_slots, 0);
        let error = Cli::try_parse_from(["floe", "playground", "--connections-max-idle", "0s"]).unwrap_err().to_string();
        assert!(error.contains("--connections-max-idle") && error.contains("example"), "{error}");
    }

    #[test]
    fn tls_is_off_by_default_and_a_certificate_needs_its_key() {
        let defaults = agent_args(&[]).common.tls;
        assert!(defaults.settings().is_none());
        assert_eq!(defaults.tls_client_auth, TlsClientAuth::None);
        assert_eq!(defaults.tls_handshake_timeout, Duration::from_secs(10));
        let set = agent_args(&[
            "--tls-cert-file",
            "/tls/tls.crt",
            "--tls-key-file",
            "/tls/tls.key",
            "--tls-client-ca-file",
            "/tls/ca.crt",
            "--tls-client-auth",
            "required",
            "--tls-handshake-timeout",
            "3s",
        ])
        .common
        .tls
        .settings()
        .expect("TLS on");
        assert_eq!(set.client_auth, TlsClientAuth::Required);
        assert_eq!(set.handshake_timeout, Duration::from_secs(3));
        let error = Cli::try_parse_from(["floe", "playground", "--tls-cert-file", "/tls/tls.crt"]).unwrap_err().to_string();
        assert!(error.contains("--tls-key-file"), "{error}");
        let error = Cli::try_parse_from(["floe", "playground", "--tls-client-auth", "maybe"]).unwrap_err().to_string();
        assert!(error.contains("--tls-client-auth") && error.contains("required"), "{error}");
    }

    #[test]
    fn pod_and_pool_come_from_flags_or_their_environment_twins() {
        let args = agent_args(&["--pod-name", "floe-ingest-7d9f-abcde", "--pool", "ingest"]);
        assert_eq!(args.cluster.pod_name.as_deref(), Some("floe-ingest-7d9f-abcde"));
        assert_eq!(args.cluster.pool.as_deref(), Some("ingest"));
    }

    #[test]
    fn the_virtual_cluster_uid_is_optional_and_comes_from_a_flag() {
        assert_eq!(agent_args(&[]).cluster.virtual_cluster_uid, None);
        let args = agent_args(&["--virtual-cluster-uid", "0b5c3c9e-52d1-4c5e-9a55-1f3f7f2f0a11"]);
        assert_eq!(args.cluster.virtual_cluster_uid.as_deref(), Some("0b5c3c9e-52d1-4c5e-9a55-1f3f7f2f0a11"));
    }

    #[test]
    fn etcd_urls_list_endpoints_and_a_prefix() {
        assert_eq!(
            "etcd://a:2379,b:2379/floe/prod".parse::<MetadataUrl>().unwrap(),
            MetadataUrl::Etcd { endpoints: vec!["http://a:2379".into(), "http://b:2379".into()], prefix: "/floe/prod".into() }
        );
    }
}
