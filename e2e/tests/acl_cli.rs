//! `floe acl create`, `list` and `delete` run as a user runs them: the `floe` binary against a
//! playground with SASL/SCRAM and `--acl-authorization`, logged in as its bootstrap user (a super
//! user) and as alice (made with Kafka 4.1.1's `kafka-configs`). An ACL the admin creates lets
//! alice produce with `floe produce` and nothing more, deleting it takes that back, and each
//! refusal names its Kafka error and its cause: alice may not manage ACLs, and a playground
//! without `--acl-authorization` keeps none.

use anyhow::{ensure, Context, Result};
use floe_e2e::{kafka, kafka_tool, run_with_timeout, Finished, Playground};
use std::process::{Command, Stdio};
use std::time::Duration;

const CONFIGS: &str = "kafka.admin.ConfigCommand";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN_PASSWORD: &str = "admin-secret";
const ALICE_PASSWORD: &str = "alice-secret";
const TOPIC: &str = "acl-cli-orders";

/// A login as `FLOE_CLIENT_*` variables, as a user would export them.
fn login(user: &'static str, password: &'static str) -> [(&'static str, &'static str); 3] {
    [("FLOE_CLIENT_SASL_MECHANISM", "SCRAM-SHA-512"), ("FLOE_CLIENT_SASL_USERNAME", user), ("FLOE_CLIENT_SASL_PASSWORD", password)]
}

/// Runs `floe <arguments>` against `bootstrap` with `login`.
fn floe(bootstrap: &str, login: &[(&str, &str)], arguments: &[&str]) -> Result<Finished> {
    let mut command = Command::new(floe_e2e::floe_binary()?);
    command.args(arguments).env("FLOE_BOOTSTRAP", bootstrap).envs(login.iter().copied()).stdin(Stdio::null());
    run_with_timeout(command, TOOL_TIMEOUT)
}

/// Fails with what the command printed unless it succeeded.
fn succeeded(what: &str, finished: Finished) -> Result<String> {
    ensure!(finished.status.success(), "{what} failed ({}):\n{}\n{}", finished.status, finished.stdout, finished.stderr);
    Ok(finished.stdout)
}

/// Fails unless the command failed and its error names every one of `expected`.
fn refused(what: &str, finished: Finished, expected: &[&str]) -> Result<()> {
    ensure!(!finished.status.success(), "{what} succeeded:\n{}", finished.stdout);
    for text in expected {
        ensure!(finished.stderr.contains(text), "{what} was refused without {text:?}:\n{}", finished.stderr);
    }
    Ok(())
}

/// The rows of `floe ... -o json`, one JSON object a line.
fn json_rows(stdout: &str) -> Result<Vec<serde_json::Value>> {
    stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("{line:?}")))
        .collect()
}

#[test]
fn floe_acl_grants_lists_and_revokes_a_write_and_explains_each_refusal() -> Result<()> {
    let directory = tempfile::tempdir()?;
    let password_file = directory.path().join("admin.password");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n"))?;
    let password_file = password_file.display().to_string();
    let playground = Playground::start(&[
        "--sasl-mechanisms",
        "SCRAM-SHA-512",
        "--sasl-bootstrap-user",
        "admin",
        "--sasl-bootstrap-password-file",
        &password_file,
        "--acl-authorization",
    ])?;
    let bootstrap = playground.bootstrap.as_str();
    let (admin, alice) = (login("admin", ADMIN_PASSWORD), login("alice", ALICE_PASSWORD));

    // The admin makes the topic and alice, who has no ACL yet.
    succeeded("floe topic create as the admin", floe(bootstrap, &admin, &["topic", "create", TOPIC, "-p", "1"])?)?;
    let admin_properties = kafka::scram_plaintext_java_properties(directory.path(), "admin", ADMIN_PASSWORD)?;
    let add_alice = format!("SCRAM-SHA-512=[password={ALICE_PASSWORD}]");
    let mut configs = kafka_tool(
        CONFIGS,
        &[
            "--bootstrap-server",
            bootstrap,
            "--command-config",
            &admin_properties,
            "--alter",
            "--add-config",
            &add_alice,
            "--entity-type",
            "users",
            "--entity-name",
            "alice",
        ],
    )?;
    configs.stdin(Stdio::null());
    let made = run_with_timeout(configs, TOOL_TIMEOUT)?;
    ensure!(made.status.success(), "kafka-configs could not create alice:\n{}\n{}", made.stdout, made.stderr);
    let records = directory.path().join("records.txt");
    std::fs::write(&records, "first\nsecond\n")?;
    refused(
        "a produce by alice without an ACL",
        floe(bootstrap, &alice, &["produce", TOPIC, "--file", &records.display().to_string()])?,
        &["TOPIC_AUTHORIZATION_FAILED"],
    )?;

    // Alice may not manage ACLs, and is told why and what would let her.
    refused(
        "floe acl list as alice",
        floe(bootstrap, &alice, &["acl", "list"])?,
        &["CLUSTER_AUTHORIZATION_FAILED", "User:alice is not allowed to manage ACLs", "DESCRIBE on the cluster"],
    )?;
    refused(
        "floe acl create as alice",
        floe(bootstrap, &alice, &["acl", "create", "--allow-principal", "User:alice", "--operation", "read", "--topic", TOPIC])?,
        &["CLUSTER_AUTHORIZATION_FAILED", "User:alice is not allowed to manage ACLs", "ALTER on the cluster"],
    )?;

    // The admin allows alice to write the topic; list shows it, as a table and as JSON.
    let grant = ["--allow-principal", "User:alice", "--operation", "write", "--topic", TOPIC];
    let created = succeeded("floe acl create as the admin", floe(bootstrap, &admin, &[&["acl", "create"][..], &grant].concat())?)?;
    ensure!(created.contains("User:alice") && created.contains(TOPIC) && created.contains("write"), "floe acl create printed:\n{created}");
    let listed = succeeded("floe acl list", floe(bootstrap, &admin, &["acl", "list"])?)?;
    let table: Vec<Vec<&str>> = listed.lines().map(|line| line.split_whitespace().collect()).collect();
    ensure!(
        table
            == [
                vec!["PRINCIPAL", "HOST", "RESOURCE", "TYPE", "RESOURCE", "NAME", "PATTERN", "TYPE", "OPERATION", "PERMISSION"],
                vec!["User:alice", "*", "topic", TOPIC, "literal", "write", "allow"],
            ],
        "floe acl list printed:\n{listed}"
    );
    let listed = json_rows(&succeeded("floe acl list -o json", floe(bootstrap, &admin, &["acl", "list", "-o", "json"])?)?)?;
    ensure!(
        listed
            == [serde_json::json!({
                "principal": "User:alice",
                "host": "*",
                "resource_type": "topic",
                "resource_name": TOPIC,
                "pattern_type": "literal",
                "operation": "write",
                "permission": "allow",
            })],
        "floe acl list -o json printed {listed:?}"
    );
    let filtered = succeeded(
        "floe acl list --principal User:bob",
        floe(bootstrap, &admin, &["acl", "list", "--principal", "User:bob", "-o", "json"])?,
    )?;
    ensure!(filtered.trim().is_empty(), "a filter for bob's ACLs listed:\n{filtered}");

    // Alice now writes, and only writes: reading needs READ.
    let produced = succeeded(
        "a produce by alice with WRITE",
        floe(bootstrap, &alice, &["produce", TOPIC, "--file", &records.display().to_string(), "-o", "json"])?,
    )?;
    let produced = json_rows(&produced)?;
    ensure!(produced.iter().map(|row| row["records"].as_i64().unwrap_or(0)).sum::<i64>() == 2, "floe produce printed {produced:?}");
    refused(
        "a consume by alice without READ",
        floe(bootstrap, &alice, &["consume", TOPIC, "--count", "2"])?,
        &["TOPIC_AUTHORIZATION_FAILED"],
    )?;

    // The admin deletes the ACL: delete prints it, list no longer shows it, alice's write is refused.
    let deleted = succeeded("floe acl delete", floe(bootstrap, &admin, &[&["acl", "delete", "-o", "json"][..], &grant].concat())?)?;
    let deleted = json_rows(&deleted)?;
    ensure!(
        deleted.len() == 1 && deleted[0]["principal"] == "User:alice" && deleted[0]["operation"] == "write",
        "floe acl delete printed {deleted:?}"
    );
    let listed = succeeded("floe acl list after the delete", floe(bootstrap, &admin, &["acl", "list", "-o", "json"])?)?;
    ensure!(listed.trim().is_empty(), "floe acl list still shows:\n{listed}");
    refused(
        "a produce by alice after her ACL was deleted",
        floe(bootstrap, &alice, &["produce", TOPIC, "--file", &records.display().to_string()])?,
        &["TOPIC_AUTHORIZATION_FAILED"],
    )?;
    let again = floe(bootstrap, &admin, &[&["acl", "delete"][..], &grant].concat())?;
    ensure!(again.status.success() && again.stderr.contains("nothing was deleted"), "a second delete gave:\n{}", again.stderr);

    // Mistakes are refused before anything is sent, saying what is wrong.
    refused(
        "a principal without its type",
        floe(bootstrap, &admin, &["acl", "create", "--allow-principal", "alice", "--operation", "write", "--topic", TOPIC])?,
        &["is not a principal: expected Type:name, e.g. User:alice"],
    )?;
    refused(
        "floe acl create without a resource",
        floe(bootstrap, &admin, &["acl", "create", "--allow-principal", "User:alice", "--operation", "write"])?,
        &["required arguments were not provided", "--topic", "--cluster"],
    )?;
    refused(
        "an unknown operation",
        floe(bootstrap, &admin, &["acl", "create", "--allow-principal", "User:alice", "--operation", "wirte", "--topic", TOPIC])?,
        &["invalid value 'wirte' for '--operation", "write"],
    )?;
    Ok(())
}

#[test]
fn floe_acl_says_an_agent_without_acl_authorization_keeps_no_acls() -> Result<()> {
    let playground = Playground::start(&[])?;
    for (command, what) in [
        (&["acl", "list"][..], "listing ACLs"),
        (&["acl", "create", "--allow-principal", "User:alice", "--operation", "read", "--topic", TOPIC][..], "creating ACLs"),
        (&["acl", "delete", "--topic", TOPIC][..], "deleting ACLs"),
    ] {
        refused(
            &format!("floe {}", command.join(" ")),
            floe(&playground.bootstrap, &[], command)?,
            &[what, "SECURITY_DISABLED", "the agents run without --acl-authorization"],
        )?;
    }
    Ok(())
}
