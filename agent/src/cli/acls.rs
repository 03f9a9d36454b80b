//! `floe acl create`, `list` and `delete`: Kafka ACLs through CreateAcls, DescribeAcls and
//! DeleteAcls (v3, which every Floe agent and Kafka 4 broker accept), in the spirit of `rpk acl`.
//! The flags become requests in pure functions ([`bindings`], [`filters`]) that the tests below
//! check; the rest is one round trip per request and a table. A refusal names Kafka's error and
//! says what to do about it ([`refusal`]).

use super::client::{check_with_message, Client};
use super::{print_rows, ClientArgs, Output};
use anyhow::{anyhow, bail, Result};
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use floe_meta::acl::{AclBinding, Operation, PatternType, Permission, ResourceType, ANY_CODE, CLUSTER_NAME, MATCH_CODE};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeSet;

/// The version of CreateAcls, DescribeAcls and DeleteAcls sent: the agents accept 1 to 3, Kafka 4
/// brokers too.
const VERSION: i16 = 3;
const HEADER: [&str; 7] = ["PRINCIPAL", "HOST", "RESOURCE TYPE", "RESOURCE NAME", "PATTERN TYPE", "OPERATION", "PERMISSION"];

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Create ACLs: each principal is allowed (or denied) each --operation on each resource named,
    /// e.g. floe acl create --allow-principal User:alice --operation write --topic orders
    Create(CreateArgs),
    /// ACLs matching the filters (every ACL without any filter).
    List(FilterArgs),
    /// Delete the ACLs matching the filters and print them, e.g. floe acl delete
    /// --allow-principal User:alice --operation write --topic orders
    Delete(FilterArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("principal").args(["allow_principals", "deny_principals"]).required(true).multiple(true)))]
#[command(group(ArgGroup::new("resource").args(["topics", "groups", "transactional_ids", "cluster"]).required(true).multiple(true)))]
pub struct CreateArgs {
    /// A principal the ACLs allow, Type:name: User:alice, or User:* for every user (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub allow_principals: Vec<String>,
    /// A principal the ACLs deny; a deny wins over every allow (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub deny_principals: Vec<String>,
    /// What is allowed or denied (repeatable, or comma-separated: read,write).
    #[arg(long = "operation", value_name = "OPERATION", value_enum, ignore_case = true, value_delimiter = ',', required = true)]
    pub operations: Vec<AclOperation>,
    #[command(flatten)]
    pub resources: Resources,
    /// How the resource names match: literal (that name; * for every one) or prefixed (every
    /// name that starts with it).
    #[arg(long, value_enum, ignore_case = true, default_value = "literal")]
    pub resource_pattern_type: CreatePattern,
    /// The client address the ACLs apply to (as the agent sees it, without port); * for any.
    #[arg(long, default_value = "*")]
    pub host: String,
}

/// Which ACLs `list` shows and `delete` removes: those matching every flag given; a repeated
/// flag matches any of its values.
#[derive(Debug, Clone, Args)]
pub struct FilterArgs {
    /// Only ACLs that allow this principal, e.g. User:alice (repeatable).
    #[arg(long = "allow-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub allow_principals: Vec<String>,
    /// Only ACLs that deny this principal (repeatable).
    #[arg(long = "deny-principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub deny_principals: Vec<String>,
    /// Only ACLs of this principal, allow or deny (repeatable).
    #[arg(long = "principal", value_name = "PRINCIPAL", value_parser = parse_principal)]
    pub principals: Vec<String>,
    /// Only ACLs for this operation (repeatable, or comma-separated).
    #[arg(long = "operation", value_name = "OPERATION", value_enum, ignore_case = true, value_delimiter = ',')]
    pub operations: Vec<AclOperation>,
    #[command(flatten)]
    pub resources: Resources,
    /// How the resource names are compared: any (literal and prefixed ACLs of that name), match
    /// (every ACL that applies to that name: literal, * and prefixes of it), literal or prefixed.
    #[arg(long, value_enum, ignore_case = true, default_value = "any")]
    pub resource_pattern_type: FilterPattern,
    /// Only ACLs for this host.
    #[arg(long)]
    pub host: Option<String>,
}

/// The resources ACLs name; several flags name several resources.
#[derive(Debug, Clone, Default, Args)]
pub struct Resources {
    /// A topic (repeatable).
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// A consumer group (repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A transactional id (repeatable).
    #[arg(long = "transactional-id", value_name = "TRANSACTIONAL_ID")]
    pub transactional_ids: Vec<String>,
    /// The cluster: creating topics (create), managing ACLs (alter, describe), idempotent-write,
    /// cluster configs.
    #[arg(long)]
    pub cluster: bool,
}

impl Resources {
    /// Each resource named, in the order of the flags' kinds.
    fn named(&self) -> Vec<(ResourceType, String)> {
        let mut named: Vec<(ResourceType, String)> = Vec::new();
        named.extend(self.topics.iter().map(|name| (ResourceType::Topic, name.clone())));
        named.extend(self.groups.iter().map(|name| (ResourceType::Group, name.clone())));
        named.extend(self.transactional_ids.iter().map(|name| (ResourceType::TransactionalId, name.clone())));
        if self.cluster {
            named.push((ResourceType::Cluster, CLUSTER_NAME.to_string()));
        }
        named
    }
}

/// Kafka's ACL operations, spelled as `--operation` takes them (kafka-acls' spellings such as
/// ClusterAction are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AclOperation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    #[value(alias = "clusteraction", alias = "cluster_action")]
    ClusterAction,
    #[value(alias = "describeconfigs", alias = "describe_configs")]
    DescribeConfigs,
    #[value(alias = "alterconfigs", alias = "alter_configs")]
    AlterConfigs,
    #[value(alias = "idempotentwrite", alias = "idempotent_write")]
    IdempotentWrite,
}

impl AclOperation {
    fn operation(self) -> Operation {
        match self {
            Self::All => Operation::All,
            Self::Read => Operation::Read,
            Self::Write => Operation::Write,
            Self::Create => Operation::Create,
            Self::Delete => Operation::Delete,
            Self::Alter => Operation::Alter,
            Self::Describe => Operation::Describe,
            Self::ClusterAction => Operation::ClusterAction,
            Self::DescribeConfigs => Operation::DescribeConfigs,
            Self::AlterConfigs => Operation::AlterConfigs,
            Self::IdempotentWrite => Operation::IdempotentWrite,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CreatePattern {
    Literal,
    Prefixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterPattern {
    Any,
    Match,
    Literal,
    Prefixed,
}

impl FilterPattern {
    fn kafka_code(self) -> i8 {
        match self {
            Self::Any => ANY_CODE,
            Self::Match => MATCH_CODE,
            Self::Literal => PatternType::Literal.kafka_code(),
            Self::Prefixed => PatternType::Prefixed.kafka_code(),
        }
    }
}

/// A principal as Kafka writes it, `Type:name`.
fn parse_principal(value: &str) -> Result<String, String> {
    match value.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(value.to_string()),
        _ => Err(format!("{value:?} is not a principal: expected Type:name, e.g. User:alice (or User:* for every user)")),
    }
}

pub fn run(args: &ClientArgs, command: AclCommand) -> Result<()> {
    let principal = logged_in_principal(args);
    match command {
        AclCommand::Create(create) => {
            let bindings = bindings(&create).map_err(|message| anyhow!(message))?;
            let mut client = args.connect()?;
            create_acls(&mut client, args.output, &bindings, &principal)
        }
        AclCommand::List(filter) => {
            let filters = filters(&filter);
            let mut client = args.connect()?;
            list(&mut client, args.output, &filters, &principal)
        }
        AclCommand::Delete(filter) => {
            if filter.resources.named().is_empty()
                && filter.allow_principals.is_empty()
                && filter.deny_principals.is_empty()
                && filter.principals.is_empty()
            {
                bail!(
                    "floe acl delete needs a resource (--topic, --group, --transactional-id, --cluster) or a principal \
                     (--allow-principal, --deny-principal, --principal) to match, so that it never deletes every ACL by accident; \
                     e.g. floe acl delete --principal User:alice"
                );
            }
            let filters = filters(&filter);
            let mut client = args.connect()?;
            delete(&mut client, args.output, &filters, &principal)
        }
    }
}

/// Who the agent will see, for messages: the SASL user, or what an unauthenticated connection is.
fn logged_in_principal(args: &ClientArgs) -> String {
    match (&args.security.sasl_mechanism, &args.security.sasl_username) {
        (Some(_), Some(user)) => format!("User:{user}"),
        _ => "this connection's principal (no SASL login: User:ANONYMOUS, or the name in its TLS client certificate)".to_string(),
    }
}

/// The flag that names resources of `resource_type`.
fn resource_flag(resource_type: ResourceType) -> String {
    format!("--{}", resource_type.label().replace('_', "-"))
}

/// Kafka's spelling of an operation as `--operation` takes it.
fn operation_name(operation: Operation) -> String {
    operation.label().replace('_', "-")
}

/// The ACLs `floe acl create` asks for: every principal, for every operation, on every resource.
/// An operation that means nothing for a resource type is refused, as kafka-acls refuses it.
pub fn bindings(args: &CreateArgs) -> Result<Vec<AclBinding>, String> {
    for (resource_type, _) in args.resources.named() {
        let valid = resource_type.reported_operations();
        if let Some(operation) = args
            .operations
            .iter()
            .map(|operation| operation.operation())
            .find(|operation| *operation != Operation::All && !valid.contains(operation))
        {
            let valid: Vec<String> = valid.iter().copied().map(operation_name).collect();
            return Err(format!(
                "--operation {} does not apply to {}: it takes {} or all",
                operation_name(operation),
                resource_flag(resource_type),
                valid.join(", ")
            ));
        }
    }
    let pattern_type = match args.resource_pattern_type {
        CreatePattern::Literal => PatternType::Literal,
        CreatePattern::Prefixed => PatternType::Prefixed,
    };
    let principals = args
        .allow_principals
        .iter()
        .map(|principal| (Permission::Allow, principal))
        .chain(args.deny_principals.iter().map(|principal| (Permission::Deny, principal)));
    let mut bindings = Vec::new();
    for (permission, principal) in principals {
        for (resource_type, resource_name) in args.resources.named() {
            for operation in &args.operations {
                bindings.push(AclBinding {
                    resource_type,
                    pattern_type,
                    resource_name: resource_name.clone(),
                    principal: principal.clone(),
                    host: args.host.clone(),
                    operation: operation.operation(),
                    permission,
                });
            }
        }
    }
    Ok(bindings)
}

/// One DescribeAcls or DeleteAcls filter, in Kafka's codes (ANY where a field is not filtered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

/// The filters the flags mean: one per resource, principal and operation combination, each field
/// ANY where no flag of its kind was given.
pub fn filters(args: &FilterArgs) -> Vec<Filter> {
    let resources: Vec<(i8, Option<String>)> = match args.resources.named() {
        named if named.is_empty() => vec![(ANY_CODE, None)],
        named => named.into_iter().map(|(resource_type, name)| (resource_type.kafka_code(), Some(name))).collect(),
    };
    let mut principals: Vec<(i8, Option<String>)> = Vec::new();
    principals.extend(args.allow_principals.iter().map(|principal| (Permission::Allow.kafka_code(), Some(principal.clone()))));
    principals.extend(args.deny_principals.iter().map(|principal| (Permission::Deny.kafka_code(), Some(principal.clone()))));
    principals.extend(args.principals.iter().map(|principal| (ANY_CODE, Some(principal.clone()))));
    if principals.is_empty() {
        principals.push((ANY_CODE, None));
    }
    let operations: Vec<i8> = match args.operations.as_slice() {
        [] => vec![ANY_CODE],
        operations => operations.iter().map(|operation| operation.operation().kafka_code()).collect(),
    };
    let mut filters = Vec::new();
    for (resource_type, resource_name) in &resources {
        for (permission, principal) in &principals {
            for operation in &operations {
                filters.push(Filter {
                    resource_type: *resource_type,
                    resource_name: resource_name.clone(),
                    pattern_type: args.resource_pattern_type.kafka_code(),
                    principal: principal.clone(),
                    host: args.host.clone(),
                    operation: *operation,
                    permission: *permission,
                });
            }
        }
    }
    filters
}

fn optional(value: &Option<String>) -> Option<StrBytes> {
    value.as_ref().map(|value| StrBytes::from_string(value.clone()))
}

impl Filter {
    fn describe_request(&self) -> DescribeAclsRequest {
        DescribeAclsRequest::default()
            .with_resource_type_filter(self.resource_type)
            .with_resource_name_filter(optional(&self.resource_name))
            .with_pattern_type_filter(self.pattern_type)
            .with_principal_filter(optional(&self.principal))
            .with_host_filter(optional(&self.host))
            .with_operation(self.operation)
            .with_permission_type(self.permission)
    }

    fn delete_filter(&self) -> DeleteAclsFilter {
        DeleteAclsFilter::default()
            .with_resource_type_filter(self.resource_type)
            .with_resource_name_filter(optional(&self.resource_name))
            .with_pattern_type_filter(self.pattern_type)
            .with_principal_filter(optional(&self.principal))
            .with_host_filter(optional(&self.host))
            .with_operation(self.operation)
            .with_permission_type(self.permission)
    }
}

fn creation(binding: &AclBinding) -> AclCreation {
    AclCreation::default()
        .with_resource_type(binding.resource_type.kafka_code())
        .with_resource_name(StrBytes::from_string(binding.resource_name.clone()))
        .with_resource_pattern_type(binding.pattern_type.kafka_code())
        .with_principal(StrBytes::from_string(binding.principal.clone()))
        .with_host(StrBytes::from_string(binding.host.clone()))
        .with_operation(binding.operation.kafka_code())
        .with_permission_type(binding.permission.kafka_code())
}

/// An ACL as a table row, from Kafka's codes (a code this CLI has no name for shows as the code).
fn row(
    principal: &str,
    host: &str,
    resource_type: i8,
    resource_name: &str,
    pattern_type: i8,
    operation: i8,
    permission: i8,
) -> Vec<String> {
    let or_code = |name: Option<&str>, code: i8| name.map_or_else(|| format!("code {code}"), |name| name.replace('_', "-"));
    vec![
        principal.to_string(),
        host.to_string(),
        or_code(ResourceType::from_kafka_code(resource_type).map(ResourceType::label), resource_type),
        resource_name.to_string(),
        or_code(
            PatternType::from_kafka_code(pattern_type).map(|pattern| match pattern {
                PatternType::Literal => "literal",
                PatternType::Prefixed => "prefixed",
            }),
            pattern_type,
        ),
        or_code(Operation::from_kafka_code(operation).map(Operation::label), operation),
        or_code(
            Permission::from_kafka_code(permission).map(|permission| match permission {
                Permission::Allow => "allow",
                Permission::Deny => "deny",
            }),
            permission,
        ),
    ]
}

fn binding_row(binding: &AclBinding) -> Vec<String> {
    row(
        &binding.principal,
        &binding.host,
        binding.resource_type.kafka_code(),
        &binding.resource_name,
        binding.pattern_type.kafka_code(),
        binding.operation.kafka_code(),
        binding.permission.kafka_code(),
    )
}

/// The error of an ACL request, named as Kafka names it and explained where the cause is ours to
/// state: no authorizer on the agents, or a principal that may not manage ACLs.
fn refusal(code: i16, message: Option<&StrBytes>, what: &str, principal: &str, needs: Operation) -> anyhow::Error {
    if code == ResponseError::SecurityDisabled.code() {
        return anyhow!(
            "{what}: SECURITY_DISABLED: the agents run without --acl-authorization, so they keep and enforce no ACLs \
             (start them with --acl-authorization to use ACLs)"
        );
    }
    if code == ResponseError::ClusterAuthorizationFailed.code() {
        let needs = needs.label().to_uppercase();
        let grantee = if principal.starts_with("User:") { principal } else { "User:NAME" };
        return anyhow!(
            "{what}: CLUSTER_AUTHORIZATION_FAILED: {principal} is not allowed to manage ACLs (it needs {needs} on the cluster); \
             log in as a super user (the --sasl-bootstrap-user or one in --super-users), or have one run \
             floe acl create --allow-principal {grantee} --operation {} --cluster",
            needs.to_lowercase()
        );
    }
    check_with_message(code, message, what).err().unwrap_or_else(|| anyhow!("{what}: no error"))
}

/// Fails with every distinct refusal among `errors` (one request usually fails for one reason,
/// answered once per ACL or filter).
fn fail_with(errors: Vec<anyhow::Error>) -> Result<()> {
    let mut seen = BTreeSet::new();
    let messages: Vec<String> = errors.into_iter().map(|error| error.to_string()).filter(|message| seen.insert(message.clone())).collect();
    if messages.is_empty() {
        return Ok(());
    }
    bail!("{}", messages.join("; "))
}

fn create_acls(client: &mut Client, output: Output, bindings: &[AclBinding], principal: &str) -> Result<()> {
    let request = CreateAclsRequest::default().with_creations(bindings.iter().map(creation).collect());
    let response: CreateAclsResponse = client.call(ApiKey::CreateAcls, VERSION, &request)?;
    if response.results.len() != bindings.len() {
        bail!("CreateAcls answered {} results for {} ACLs", response.results.len(), bindings.len());
    }
    let mut created = Vec::new();
    let mut errors = Vec::new();
    for (binding, result) in bindings.iter().zip(&response.results) {
        if result.error_code == 0 {
            created.push(binding_row(binding));
        } else {
            errors.push(refusal(result.error_code, result.error_message.as_ref(), "creating ACLs", principal, Operation::Alter));
        }
    }
    if !created.is_empty() {
        print_rows(output, &HEADER, &created);
    }
    fail_with(errors)
}

fn list(client: &mut Client, output: Output, filters: &[Filter], principal: &str) -> Result<()> {
    let mut rows: BTreeSet<Vec<String>> = BTreeSet::new();
    for filter in filters {
        let response: DescribeAclsResponse = client.call(ApiKey::DescribeAcls, VERSION, &filter.describe_request())?;
        if response.error_code != 0 {
            return Err(refusal(response.error_code, response.error_message.as_ref(), "listing ACLs", principal, Operation::Describe));
        }
        for resource in &response.resources {
            for acl in &resource.acls {
                rows.insert(row(
                    &acl.principal,
                    &acl.host,
                    resource.resource_type,
                    &resource.resource_name,
                    resource.pattern_type,
                    acl.operation,
                    acl.permission_type,
                ));
            }
        }
    }
    print_rows(output, &HEADER, &rows.into_iter().collect::<Vec<_>>());
    Ok(())
}

fn delete(client: &mut Client, output: Output, filters: &[Filter], principal: &str) -> Result<()> {
    let request = DeleteAclsRequest::default().with_filters(filters.iter().map(Filter::delete_filter).collect());
    let response: DeleteAclsResponse = client.call(ApiKey::DeleteAcls, VERSION, &request)?;
    let mut deleted: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut errors = Vec::new();
    for result in &response.filter_results {
        if result.error_code != 0 {
            errors.push(refusal(result.error_code, result.error_message.as_ref(), "deleting ACLs", principal, Operation::Alter));
            continue;
        }
        for acl in &result.matching_acls {
            if acl.error_code != 0 {
                let what = format!("deleting the ACL {}", binding_text(acl));
                errors.push(refusal(acl.error_code, acl.error_message.as_ref(), &what, principal, Operation::Alter));
                continue;
            }
            deleted.insert(row(
                &acl.principal,
                &acl.host,
                acl.resource_type,
                &acl.resource_name,
                acl.pattern_type,
                acl.operation,
                acl.permission_type,
            ));
        }
    }
    if !deleted.is_empty() {
        print_rows(output, &HEADER, &deleted.into_iter().collect::<Vec<_>>());
    } else if errors.is_empty() && output == Output::Table {
        eprintln!("no ACL matched the filters; nothing was deleted");
    }
    fail_with(errors)
}

/// An ACL's row in one line, for an error about that ACL.
fn binding_text(acl: &kafka_protocol::messages::delete_acls_response::DeleteAclsMatchingAcl) -> String {
    row(&acl.principal, &acl.host, acl.resource_type, &acl.resource_name, acl.pattern_type, acl.operation, acl.permission_type).join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AclCommand,
    }

    fn parse(arguments: &[&str]) -> Result<AclCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("acl").chain(arguments.iter().copied())).map(|cli| cli.command)
    }

    fn create(arguments: &[&str]) -> Vec<AclBinding> {
        match parse(&[&["create"], arguments].concat()).expect("valid flags") {
            AclCommand::Create(create) => bindings(&create).expect("valid operations"),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn filter(command: &str, arguments: &[&str]) -> Vec<Filter> {
        match parse(&[&[command], arguments].concat()).expect("valid flags") {
            AclCommand::List(filter) | AclCommand::Delete(filter) => filters(&filter),
            other => panic!("parsed as {other:?}"),
        }
    }

    fn binding(principal: &str, permission: Permission, operation: Operation, resource_type: ResourceType, name: &str) -> AclBinding {
        AclBinding {
            resource_type,
            pattern_type: PatternType::Literal,
            resource_name: name.to_string(),
            principal: principal.to_string(),
            host: "*".to_string(),
            operation,
            permission,
        }
    }

    #[test]
    fn create_makes_one_acl_per_principal_operation_and_resource_with_kafkas_codes() {
        let created = create(&[
            "--allow-principal",
            "User:alice",
            "--deny-principal",
            "User:mallory",
            "--operation",
            "read,describe",
            "--topic",
            "orders",
            "--group",
            "billing",
        ]);
        use Operation::{Describe, Read};
        use Permission::{Allow, Deny};
        use ResourceType::{Group, Topic};
        assert_eq!(
            created,
            vec![
                binding("User:alice", Allow, Read, Topic, "orders"),
                binding("User:alice", Allow, Describe, Topic, "orders"),
                binding("User:alice", Allow, Read, Group, "billing"),
                binding("User:alice", Allow, Describe, Group, "billing"),
                binding("User:mallory", Deny, Read, Topic, "orders"),
                binding("User:mallory", Deny, Describe, Topic, "orders"),
                binding("User:mallory", Deny, Read, Group, "billing"),
                binding("User:mallory", Deny, Describe, Group, "billing"),
            ]
        );
        let wire = creation(&created[0]);
        assert_eq!(
            (wire.resource_type, wire.resource_pattern_type, wire.operation, wire.permission_type),
            (2, 3, 3, 3),
            "TOPIC, LITERAL, READ, ALLOW in Kafka's codes"
        );
        assert_eq!((wire.principal.as_str(), wire.host.as_str(), wire.resource_name.as_str()), ("User:alice", "*", "orders"));
    }

    #[test]
    fn create_takes_kafka_acls_spellings_the_cluster_a_prefixed_pattern_and_a_host() {
        let cluster = create(&[
            "--allow-principal",
            "User:*",
            "--operation",
            "IdempotentWrite",
            "--operation",
            "cluster_action",
            "--operation",
            "describe-configs",
            "--cluster",
        ]);
        let operations: Vec<Operation> = cluster.iter().map(|binding| binding.operation).collect();
        assert_eq!(operations, [Operation::IdempotentWrite, Operation::ClusterAction, Operation::DescribeConfigs]);
        assert!(cluster.iter().all(|binding| binding.resource_type == ResourceType::Cluster && binding.resource_name == CLUSTER_NAME));
        let prefixed = create(&[
            "--allow-principal",
            "User:alice",
            "--operation",
            "Write",
            "--transactional-id",
            "tx-",
            "--resource-pattern-type",
            "PREFIXED",
            "--host",
            "10.0.0.7",
        ]);
        assert_eq!(prefixed.len(), 1);
        assert_eq!(
            (prefixed[0].resource_type, prefixed[0].pattern_type, prefixed[0].resource_name.as_str(), prefixed[0].host.as_str()),
            (ResourceType::TransactionalId, PatternType::Prefixed, "tx-", "10.0.0.7")
        );
    }

    #[test]
    fn create_refuses_a_principal_without_a_type_a_missing_resource_and_an_unknown_operation() {
        let error = parse(&["create", "--allow-principal", "alice", "--operation", "read", "--topic", "t"]).unwrap_err().to_string();
        assert!(error.contains("\"alice\" is not a principal: expected Type:name, e.g. User:alice"), "{error}");
        let error = parse(&["create", "--allow-principal", "User:alice", "--operation", "read"]).unwrap_err().to_string();
        assert!(error.contains("--topic") && error.contains("--cluster"), "{error}");
        let error = parse(&["create", "--operation", "read", "--topic", "t"]).unwrap_err().to_string();
        assert!(error.contains("--allow-principal") && error.contains("--deny-principal"), "{error}");
        let error = parse(&["create", "--allow-principal", "User:alice", "--operation", "raed", "--topic", "t"]).unwrap_err().to_string();
        assert!(error.contains("raed") && error.contains("possible values") && error.contains("read"), "{error}");
        let AclCommand::Create(read_cluster) =
            parse(&["create", "--allow-principal", "User:alice", "--operation", "all,read", "--cluster"]).expect("valid flags")
        else {
            panic!("not create")
        };
        assert_eq!(
            bindings(&read_cluster).unwrap_err(),
            "--operation read does not apply to --cluster: it takes create, alter, describe, cluster-action, describe-configs, \
             alter-configs, idempotent-write or all"
        );
        let error = parse(&["create", "--allow-principal", "User:alice", "--topic", "t"]).unwrap_err().to_string();
        assert!(error.contains("--operation"), "{error}");
        let error =
            parse(&["create", "--allow-principal", "User:a", "--operation", "read", "--topic", "t", "--resource-pattern-type", "any"])
                .unwrap_err()
                .to_string();
        assert!(error.contains("literal") && error.contains("prefixed"), "{error}");
    }

    #[test]
    fn list_without_flags_is_one_filter_matching_every_acl() {
        let any = Filter {
            resource_type: ANY_CODE,
            resource_name: None,
            pattern_type: ANY_CODE,
            principal: None,
            host: None,
            operation: ANY_CODE,
            permission: ANY_CODE,
        };
        assert_eq!(filter("list", &[]), vec![any.clone()]);
        let request = any.describe_request();
        assert_eq!((request.resource_type_filter, request.pattern_type_filter, request.operation, request.permission_type), (1, 1, 1, 1));
        assert_eq!((request.resource_name_filter, request.principal_filter, request.host_filter), (None, None, None));
    }

    #[test]
    fn filters_combine_each_resource_principal_and_operation_given() {
        let filters = filter(
            "delete",
            &[
                "--allow-principal",
                "User:alice",
                "--principal",
                "User:bob",
                "--operation",
                "write",
                "--topic",
                "orders",
                "--resource-pattern-type",
                "match",
                "--host",
                "10.0.0.7",
            ],
        );
        let expected = |principal: &str, permission: i8| Filter {
            resource_type: ResourceType::Topic.kafka_code(),
            resource_name: Some("orders".to_string()),
            pattern_type: MATCH_CODE,
            principal: Some(principal.to_string()),
            host: Some("10.0.0.7".to_string()),
            operation: Operation::Write.kafka_code(),
            permission,
        };
        assert_eq!(filters, vec![expected("User:alice", Permission::Allow.kafka_code()), expected("User:bob", ANY_CODE)]);
        let wire = filters[1].delete_filter();
        assert_eq!(wire.principal_filter.as_ref().map(|principal| principal.as_str()), Some("User:bob"));
        assert_eq!(wire.resource_name_filter.as_ref().map(|name| name.as_str()), Some("orders"));
        let cluster = filter("list", &["--cluster", "--deny-principal", "User:mallory"]);
        assert_eq!(cluster.len(), 1);
        assert_eq!((cluster[0].resource_type, cluster[0].resource_name.as_deref()), (4, Some(CLUSTER_NAME)));
        assert_eq!(cluster[0].permission, Permission::Deny.kafka_code());
    }

    #[test]
    fn rows_name_what_kafka_codes_mean_and_show_unknown_codes_as_numbers() {
        let row = row("User:alice", "*", 5, "tx-", 4, 9, 2);
        assert_eq!(row, ["User:alice", "*", "transactional-id", "tx-", "prefixed", "cluster-action", "deny"]);
        assert_eq!(super::row("User:a", "*", 99, "x", 3, 3, 3)[2], "code 99");
    }

    #[test]
    fn refusals_say_why_security_is_disabled_and_who_may_not_manage_acls() {
        let disabled = refusal(ResponseError::SecurityDisabled.code(), None, "listing ACLs", "User:admin", Operation::Describe).to_string();
        assert!(disabled.starts_with("listing ACLs: SECURITY_DISABLED: the agents run without --acl-authorization"), "{disabled}");
        let denied =
            refusal(ResponseError::ClusterAuthorizationFailed.code(), None, "creating ACLs", "User:alice", Operation::Alter).to_string();
        assert!(
            denied.contains("CLUSTER_AUTHORIZATION_FAILED: User:alice is not allowed to manage ACLs (it needs ALTER on the cluster)"),
            "{denied}"
        );
        assert!(denied.contains("floe acl create --allow-principal User:alice --operation alter --cluster"), "{denied}");
        let message = StrBytes::from_static_str("Invalid operation 0");
        let invalid = refusal(ResponseError::InvalidRequest.code(), Some(&message), "creating ACLs", "User:a", Operation::Alter);
        assert_eq!(invalid.to_string(), "creating ACLs: INVALID_REQUEST: Invalid operation 0");
    }

    #[test]
    fn the_same_refusal_of_every_acl_is_reported_once() {
        let errors = vec![anyhow!("creating ACLs: SECURITY_DISABLED"), anyhow!("creating ACLs: SECURITY_DISABLED"), anyhow!("other")];
        assert_eq!(fail_with(errors).unwrap_err().to_string(), "creating ACLs: SECURITY_DISABLED; other");
        assert!(fail_with(Vec::new()).is_ok());
    }

    #[test]
    fn delete_without_a_resource_or_principal_is_refused_before_connecting() {
        let args = ClientArgs { bootstrap: "127.0.0.1:1".to_string(), output: Output::Table, security: Default::default() };
        let AclCommand::Delete(filter) = parse(&["delete", "--operation", "read"]).expect("valid flags") else { panic!("not delete") };
        let error = run(&args, AclCommand::Delete(filter)).unwrap_err().to_string();
        assert!(error.contains("floe acl delete needs a resource"), "{error}");
    }
}
