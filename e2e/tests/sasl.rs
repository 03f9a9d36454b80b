//! SASL on the Kafka listener against real clients: a playground with TLS and SCRAM-SHA-512,
//! SCRAM-SHA-256 and PLAIN, its bootstrap user creating another with Kafka 4.1.1's `kafka-configs`
//! (AlterUserScramCredentials), the Java console tools and librdkafka producing and consuming as
//! that user with each mechanism, a deleted user refused, and the records read back after a
//! restart; then, on the wire, what an unauthenticated connection may and may not do.

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use floe_e2e::matrix::Cell;
use floe_e2e::pki::Pki;
use floe_e2e::verifiable::{self, Expected};
use floe_e2e::wire::RawConnection;
use floe_e2e::{
    franz_go_driver, http_get, kafka, kafka_tool, kafkajs_driver, kcat_driver, metric_value, python_driver, run_with_timeout, wait_until,
    Playground,
};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
    MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const CONFIGS: &str = "kafka.admin.ConfigCommand";
const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const ADMIN_PASSWORD: &str = "admin-secret";
const ALICE_PASSWORD: &str = "alice-secret";

/// Kafka's error codes this suite expects.
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;

/// The playground's flags: SASL with every mechanism and a bootstrap user, over TLS when `pki`.
fn sasl_flags(directory: &Path, pki: Option<&Pki>) -> Result<Vec<String>> {
    let password_file = directory.join("admin.password");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n"))?;
    let mut flags = vec![
        "--sasl-mechanisms".to_string(),
        "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN".to_string(),
        "--sasl-bootstrap-user".to_string(),
        "admin".to_string(),
        "--sasl-bootstrap-password-file".to_string(),
        password_file.display().to_string(),
    ];
    if let Some(pki) = pki {
        flags.extend(["--tls-cert-file".to_string(), pki.arg("server.crt"), "--tls-key-file".to_string(), pki.arg("server.key")]);
    }
    Ok(flags)
}

fn start(flags: &[String]) -> Result<Playground> {
    let arguments: Vec<&str> = flags.iter().map(String::as_str).collect();
    Playground::start(&arguments)
}

/// librdkafka over SASL_SSL as `user` with `mechanism`.
fn rdkafka(pki: &Pki, bootstrap: &str, mechanism: &str, user: &str, password: &str) -> ClientConfig {
    let mut config = pki.rdkafka(bootstrap, false);
    config.set("security.protocol", "sasl_ssl").set("sasl.mechanism", mechanism).set("sasl.username", user).set("sasl.password", password);
    config
}

/// The Java client's properties for SASL_SSL as `user` with `mechanism`.
fn java_properties(pki: &Pki, name: &str, mechanism: &str, user: &str, password: &str) -> Result<String> {
    let module = if mechanism == "PLAIN" {
        "org.apache.kafka.common.security.plain.PlainLoginModule"
    } else {
        "org.apache.kafka.common.security.scram.ScramLoginModule"
    };
    let path = pki.path(&format!("{name}.properties"));
    std::fs::write(
        &path,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism={mechanism}\n\
             sasl.jaas.config={module} required username=\"{user}\" password=\"{password}\";\n{}",
            pki.java_truststore_lines()
        ),
    )?;
    Ok(path.display().to_string())
}

fn sasl_metric(playground: &Playground, mechanism: &str, outcome: &str) -> Result<f64> {
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    Ok(metric_value(&metrics, &format!("floe_sasl_authentications_total{{mechanism=\"{mechanism}\",outcome=\"{outcome}\"}}"))
        .unwrap_or(0.0))
}

/// Runs `kafka-configs` with `properties` and fails with its output unless it succeeds.
fn kafka_configs(bootstrap: &str, properties: &str, arguments: &[&str]) -> Result<String> {
    let mut command_line = vec!["--bootstrap-server", bootstrap, "--command-config", properties];
    command_line.extend_from_slice(arguments);
    let mut command = kafka_tool(CONFIGS, &command_line)?;
    command.stdin(Stdio::null());
    let output = run_with_timeout(command, TOOL_TIMEOUT)?;
    ensure!(output.status.success(), "kafka-configs {arguments:?} failed:\n{}\n{}", output.stdout, output.stderr);
    Ok(output.stdout)
}

#[test]
fn a_user_made_with_kafka_configs_produces_and_consumes_with_scram_and_plain_from_java_and_librdkafka_until_deleted() -> Result<()> {
    let java_cell =
        Cell::open("java", "sasl", "console producer (SCRAM-SHA-512) and group consumer (PLAIN) over SASL_SSL, read back after a restart");
    let cli_cell = Cell::open("kafka-cli", "sasl", "kafka-configs adds, describes and deletes a SCRAM user over SASL_SSL");
    let cli_tls_cell = Cell::open("kafka-cli", "tls", "kafka-configs over SASL_SSL, trusting only the test CA (PEM truststore)");
    let librdkafka_cell = Cell::open(
        "librdkafka",
        "sasl",
        "admin, produce (SCRAM-SHA-256) and consume (PLAIN) over SASL_SSL, read back after a restart; wrong and deleted users refused",
    );
    let pki = Pki::new()?;
    pki.issue_server()?;
    let mut playground = start(&sasl_flags(pki.directory(), Some(&pki))?)?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;

    // The bootstrap user creates alice with kafka-configs (SCRAM-SHA-512 with 8192 iterations
    // and SCRAM-SHA-256 with the default).
    let admin = java_properties(&pki, "admin", "SCRAM-SHA-512", "admin", ADMIN_PASSWORD)?;
    let add = format!("SCRAM-SHA-512=[iterations=8192,password={ALICE_PASSWORD}],SCRAM-SHA-256=[password={ALICE_PASSWORD}]");
    let added = kafka_configs(&bootstrap, &admin, &["--alter", "--add-config", &add, "--entity-type", "users", "--entity-name", "alice"])?;
    ensure!(added.contains("Completed updating config for user alice"), "kafka-configs said: {added}");
    let described = kafka_configs(&bootstrap, &admin, &["--describe", "--entity-type", "users", "--entity-name", "alice"])?;
    ensure!(
        described.contains("SCRAM-SHA-512=iterations=8192") && described.contains("SCRAM-SHA-256=iterations=4096"),
        "kafka-configs --describe said: {described}"
    );

    // Java as alice: SCRAM-SHA-512 to produce, PLAIN to consume in a group.
    runtime.block_on(kafka::create_topic_with(rdkafka(&pki, &bootstrap, "SCRAM-SHA-512", "alice", ALICE_PASSWORD), "sasl-java", 1))?;
    let producer_properties = java_properties(&pki, "alice-scram", "SCRAM-SHA-512", "alice", ALICE_PASSWORD)?;
    const JAVA_RECORDS: u64 = 100;
    let input = pki.path("java-input.txt");
    std::fs::write(&input, (0..JAVA_RECORDS).map(|index| format!("java-{index}\n")).collect::<String>())?;
    let mut producer = kafka_tool(
        CONSOLE_PRODUCER,
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "sasl-java",
            "--producer.config",
            &producer_properties,
            "--producer-property",
            "acks=all",
        ],
    )?;
    producer.stdin(std::fs::File::open(&input)?);
    let produced = run_with_timeout(producer, TOOL_TIMEOUT)?;
    ensure!(produced.status.success(), "the Java console producer failed over SASL_SSL (SCRAM-SHA-512):\n{}", produced.stderr);
    let consumer_properties = java_properties(&pki, "alice-plain", "PLAIN", "alice", ALICE_PASSWORD)?;
    let java_expected: Vec<String> = (0..JAVA_RECORDS).map(|index| format!("java-{index}")).collect();
    let read_with_java = |bootstrap: &str, group: &str| -> Result<Vec<String>> {
        let mut consumer = kafka_tool(
            CONSOLE_CONSUMER,
            &[
                "--bootstrap-server",
                bootstrap,
                "--topic",
                "sasl-java",
                "--group",
                group,
                "--from-beginning",
                "--max-messages",
                &JAVA_RECORDS.to_string(),
                "--timeout-ms",
                "60000",
                "--consumer.config",
                &consumer_properties,
            ],
        )?;
        consumer.stdin(Stdio::null());
        let consumed = run_with_timeout(consumer, TOOL_TIMEOUT)?;
        ensure!(consumed.status.success(), "the Java console consumer failed over SASL_SSL (PLAIN):\n{}", consumed.stderr);
        Ok(consumed.stdout.lines().map(str::to_string).collect())
    };
    ensure!(
        read_with_java(&bootstrap, "sasl-java-1")? == java_expected,
        "the Java consumer did not read back what the Java producer wrote"
    );

    // librdkafka as alice: SCRAM-SHA-256 to produce, PLAIN to read back.
    const LIBRDKAFKA_RECORDS: u64 = 1000;
    runtime.block_on(kafka::create_topic_with(
        rdkafka(&pki, &bootstrap, "SCRAM-SHA-256", "alice", ALICE_PASSWORD),
        "sasl-librdkafka",
        1,
    ))?;
    let producer: FutureProducer = rdkafka(&pki, &bootstrap, "SCRAM-SHA-256", "alice", ALICE_PASSWORD).set("acks", "all").create()?;
    runtime.block_on(kafka::produce_indexed(&producer, "sasl-librdkafka", 0..LIBRDKAFKA_RECORDS))?;
    drop(producer);
    kafka::verify_indexed(rdkafka(&pki, &bootstrap, "PLAIN", "alice", ALICE_PASSWORD), "sasl-librdkafka", LIBRDKAFKA_RECORDS)?;

    // A wrong password is refused and counted.
    let failures_before = sasl_metric(&playground, "SCRAM-SHA-512", "failure")?;
    let wrong: BaseConsumer = rdkafka(&pki, &bootstrap, "SCRAM-SHA-512", "alice", "not-the-password").create()?;
    ensure!(wrong.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a wrong SCRAM password got Metadata");
    drop(wrong);
    ensure!(sasl_metric(&playground, "SCRAM-SHA-512", "failure")? > failures_before, "the failed authentication was not counted");
    ensure!(sasl_metric(&playground, "PLAIN", "success")? >= 1.0, "PLAIN successes were not counted");

    // Durability: every acknowledged record read back after the agent restarted.
    playground.restart()?;
    let bootstrap = playground.bootstrap.clone();
    kafka::verify_indexed(rdkafka(&pki, &bootstrap, "SCRAM-SHA-512", "alice", ALICE_PASSWORD), "sasl-librdkafka", LIBRDKAFKA_RECORDS)?;
    ensure!(read_with_java(&bootstrap, "sasl-java-2")? == java_expected, "the Java records did not survive the restart");
    java_cell.pass();

    // Deleting alice's credentials revokes her: new connections are refused with every mechanism.
    let deleted = kafka_configs(
        &bootstrap,
        &admin,
        &["--alter", "--delete-config", "SCRAM-SHA-512,SCRAM-SHA-256", "--entity-type", "users", "--entity-name", "alice"],
    )?;
    ensure!(deleted.contains("Completed updating config for user alice"), "kafka-configs said: {deleted}");
    cli_cell.pass();
    cli_tls_cell.pass();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let revoked: BaseConsumer = rdkafka(&pki, &bootstrap, mechanism, "alice", ALICE_PASSWORD).create()?;
        ensure!(revoked.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a deleted user still authenticated with {mechanism}");
    }
    librdkafka_cell.pass();
    playground.stop()
}

#[test]
fn franz_go_kafka_python_kafkajs_and_kcat_round_trip_over_sasl_ssl_with_scram_sha_512_and_plain() -> Result<()> {
    const RECORDS: &str = "2000";
    let pki = Pki::new()?;
    pki.issue_server()?;
    let playground = start(&sasl_flags(pki.directory(), Some(&pki))?)?;
    let ca = pki.arg("ca.crt");
    type Driver = fn(&[&str]) -> Result<std::process::Command>;
    // (matrix client, verifiable-client driver).
    let drivers: [(&'static str, Driver); 3] =
        [("franz-go", franz_go_driver), ("kafka-python", python_driver), ("kafkajs", kafkajs_driver)];
    for (client, driver) in drivers {
        let sasl_cell = Cell::open(
            client,
            "sasl",
            "the driver's round trip (create the topic, produce 2,000 records in five codecs, consume them in a group, commit and \
             check the commits) over SASL_SSL, once with SCRAM-SHA-512 and once with PLAIN",
        );
        let tls_cell = Cell::open(client, "tls", "the same round trips over TLS, trusting only the test CA");
        for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
            let topic = format!("sasl-{client}-{}", mechanism.to_ascii_lowercase());
            let arguments = [
                "roundtrip",
                "--bootstrap",
                &playground.bootstrap,
                "--topic",
                &topic,
                "--partitions",
                "3",
                "--records",
                RECORDS,
                "--tls-ca-file",
                &ca,
                "--sasl-mechanism",
                mechanism,
                "--sasl-user",
                "admin",
                "--sasl-password",
                ADMIN_PASSWORD,
            ];
            verifiable::run(driver(&arguments)?, TOOL_TIMEOUT)
                .and_then(|events| events.check_group_round_trip(&Expected::new(&topic, 3, RECORDS.parse()?)))
                .with_context(|| format!("{client} over SASL_SSL with {mechanism}"))?;
        }
        sasl_cell.pass();
        tls_cell.pass();
    }

    // kcat (Debian's, on librdkafka 2.0.2) through the same round trip script as in clients.rs,
    // every run reading a properties file.
    let kcat_sasl = Cell::open(
        "kcat",
        "sasl",
        "produce in five codecs, a simple and a group consumer, resume from commits, over SASL_SSL with SCRAM-SHA-512 and PLAIN",
    );
    let kcat_tls = Cell::open("kcat", "tls", "the same round trips over TLS, trusting only the test CA");
    let runtime = tokio::runtime::Runtime::new()?;
    for mechanism in ["SCRAM-SHA-512", "PLAIN"] {
        let topic = format!("sasl-kcat-{}", mechanism.to_ascii_lowercase());
        runtime.block_on(kafka::create_topic_with(rdkafka(&pki, &playground.bootstrap, mechanism, "admin", ADMIN_PASSWORD), &topic, 3))?;
        let properties = pki.path(&format!("kcat-{mechanism}.properties"));
        std::fs::write(
            &properties,
            format!(
                "security.protocol=sasl_ssl\nssl.ca.location={ca}\nsasl.mechanisms={mechanism}\nsasl.username=admin\nsasl.password={ADMIN_PASSWORD}\n"
            ),
        )?;
        let mut command = kcat_driver(&[&playground.bootstrap, &topic, RECORDS])?;
        command.env("KCAT_CONFIG", &properties);
        verifiable::run(command, TOOL_TIMEOUT)
            .and_then(|events| events.check_kcat_round_trip(&Expected::kcat(&topic, 3, RECORDS.parse()?)))
            .with_context(|| format!("kcat over SASL_SSL with {mechanism}"))?;
    }
    kcat_sasl.pass();
    kcat_tls.pass();
    ensure!(sasl_metric(&playground, "SCRAM-SHA-512", "failure")? == 0.0, "a client failed to authenticate along the way");
    Ok(())
}

/// SaslHandshake v1 for `mechanism` on `connection`.
fn handshake(connection: &mut RawConnection, mechanism: &str) -> Result<SaslHandshakeResponse> {
    let request = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.to_string()));
    let correlation_id = connection.send(ApiKey::SaslHandshake, 1, &request)?;
    connection.receive(ApiKey::SaslHandshake, 1, correlation_id)
}

/// SaslAuthenticate v2 with `auth_bytes`.
fn authenticate(connection: &mut RawConnection, auth_bytes: &[u8]) -> Result<SaslAuthenticateResponse> {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(auth_bytes));
    let correlation_id = connection.send(ApiKey::SaslAuthenticate, 2, &request)?;
    connection.receive(ApiKey::SaslAuthenticate, 2, correlation_id)
}

#[test]
fn before_authentication_only_api_versions_and_sasl_are_answered_and_a_large_frame_or_a_wrong_password_closes_the_connection() -> Result<()>
{
    let directory = tempfile::Builder::new().prefix("floe-e2e-sasl-").tempdir()?;
    let playground = start(&sasl_flags(directory.path(), None)?)?;
    let bootstrap = &playground.bootstrap;

    // ApiVersions is answered and lists the SASL APIs; Metadata closes the connection.
    let mut connection = RawConnection::connect(bootstrap)?;
    let correlation_id = connection.send(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default())?;
    let versions: ApiVersionsResponse = connection.receive(ApiKey::ApiVersions, 3, correlation_id)?;
    ensure!(versions.error_code == 0, "ApiVersions before authentication answered {}", versions.error_code);
    for key in [ApiKey::SaslHandshake, ApiKey::SaslAuthenticate, ApiKey::AlterUserScramCredentials] {
        ensure!(versions.api_keys.iter().any(|api| api.api_key == key as i16), "ApiVersions does not list {key:?}");
    }
    connection.send(ApiKey::Metadata, 12, &MetadataRequest::default())?;
    ensure!(connection.is_closed_by_peer(), "Metadata before authentication did not close the connection");

    // A 1 MiB frame before authentication: closed from its length prefix (the limit is 512 KiB,
    // and no body byte was sent, so nothing was waiting to be read into memory).
    let mut large = RawConnection::connect(bootstrap)?;
    large.send_bytes(&(1u32 << 20).to_be_bytes())?;
    ensure!(large.is_closed_by_peer(), "a 1 MiB frame before authentication did not close the connection");
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    ensure!(
        metric_value(&metrics, "floe_requests_refused_total{limit=\"sasl_server_max_receive_size\"}") == Some(1.0),
        "the large pre-authentication frame was not refused by the SASL limit"
    );

    // A mechanism the listener does not offer: UNSUPPORTED_SASL_MECHANISM with the list, then closed.
    let mut unsupported = RawConnection::connect(bootstrap)?;
    let refused = handshake(&mut unsupported, "GSSAPI")?;
    ensure!(refused.error_code == UNSUPPORTED_SASL_MECHANISM, "GSSAPI answered {}", refused.error_code);
    let offered: Vec<String> = refused.mechanisms.iter().map(|mechanism| mechanism.to_string()).collect();
    ensure!(offered == ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"], "offered {offered:?}");
    ensure!(unsupported.is_closed_by_peer(), "the connection stayed open after an unsupported mechanism");

    // A wrong password: SASL_AUTHENTICATION_FAILED after --sasl-failed-authentication-delay
    // (100 ms by default; a right password is answered at once), then closed.
    let mut wrong = RawConnection::connect(bootstrap)?;
    ensure!(handshake(&mut wrong, "PLAIN")?.error_code == 0, "the PLAIN handshake failed");
    let asked = std::time::Instant::now();
    let failed = authenticate(&mut wrong, format!("\0admin\0{ADMIN_PASSWORD}x").as_bytes())?;
    let waited = asked.elapsed();
    ensure!(failed.error_code == SASL_AUTHENTICATION_FAILED, "a wrong password answered {}", failed.error_code);
    ensure!(waited >= Duration::from_millis(100), "a failed authentication was answered after {waited:?}, before the 100 ms delay");
    ensure!(wrong.is_closed_by_peer(), "the connection stayed open after a failed authentication");

    // The right password: then every API is served, DescribeUserScramCredentials included.
    let mut good = RawConnection::connect(bootstrap)?;
    ensure!(handshake(&mut good, "PLAIN")?.error_code == 0, "the PLAIN handshake failed");
    let accepted = authenticate(&mut good, format!("\0admin\0{ADMIN_PASSWORD}").as_bytes())?;
    ensure!(accepted.error_code == 0, "the bootstrap user was refused: {:?}", accepted.error_message);
    let correlation_id = good.send(ApiKey::DescribeUserScramCredentials, 0, &DescribeUserScramCredentialsRequest::default())?;
    let described: DescribeUserScramCredentialsResponse = good.receive(ApiKey::DescribeUserScramCredentials, 0, correlation_id)?;
    let admin = described.results.iter().find(|result| result.user.as_str() == "admin").context("the bootstrap user is not described")?;
    let mut mechanisms: Vec<(i8, i32)> = admin.credential_infos.iter().map(|info| (info.mechanism, info.iterations)).collect();
    mechanisms.sort_unstable();
    ensure!(mechanisms == [(1, 4096), (2, 4096)], "the bootstrap user has {mechanisms:?}, expected SCRAM-SHA-256 and -512 at 4096");

    // librdkafka over SASL_PLAINTEXT with SCRAM-SHA-512.
    let runtime = tokio::runtime::Runtime::new()?;
    let mut config = kafka::config(bootstrap);
    config
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "admin")
        .set("sasl.password", ADMIN_PASSWORD);
    runtime.block_on(kafka::create_topic_with(config.clone(), "sasl-plaintext", 1))?;
    let producer: FutureProducer = config.clone().set("acks", "all").create()?;
    runtime.block_on(kafka::produce_indexed(&producer, "sasl-plaintext", 0..100))?;
    drop(producer);
    kafka::verify_indexed(config, "sasl-plaintext", 100)
}

#[test]
fn with_connections_max_reauth_librdkafka_reauthenticates_on_its_connection_and_a_deleted_users_connection_is_cut_off() -> Result<()> {
    let directory = tempfile::Builder::new().prefix("floe-e2e-reauth-").tempdir()?;
    let mut flags = sasl_flags(directory.path(), None)?;
    flags.extend(["--connections-max-reauth".to_string(), "2s".to_string()]);
    let mut playground = start(&flags)?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    let admin_properties = kafka::scram_plaintext_java_properties(directory.path(), "admin", ADMIN_PASSWORD)?;
    let add = format!("SCRAM-SHA-512=[password={ALICE_PASSWORD}]");
    kafka_configs(&bootstrap, &admin_properties, &["--alter", "--add-config", &add, "--entity-type", "users", "--entity-name", "alice"])?;
    runtime.block_on(kafka::create_topic_with(kafka::scram_plaintext(&bootstrap, "admin", ADMIN_PASSWORD), "sasl-reauth", 1))?;

    // One producer connection for 6 s, three sessions of 2 s: every record acknowledged, and the
    // connection re-authenticated in place (not reconnected).
    let producer: FutureProducer = kafka::scram_plaintext(&bootstrap, "alice", ALICE_PASSWORD)
        .set("message.timeout.ms", "5000")
        .set("enable.idempotence", "false")
        .create()?;
    const RECORDS: u64 = 30;
    runtime.block_on(async {
        for index in 0..RECORDS {
            kafka::produce_indexed(&producer, "sasl-reauth", index..index + 1).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::Ok(())
    })?;
    let reauthentications = |outcome: &str| -> Result<f64> {
        let (_, metrics) = http_get(&playground.http, "/metrics")?;
        Ok(metric_value(&metrics, &format!("floe_sasl_reauthentications_total{{outcome=\"{outcome}\"}}")).unwrap_or(0.0))
    };
    ensure!(
        reauthentications("success")? >= 2.0,
        "librdkafka did not re-authenticate its connection ({} times)",
        reauthentications("success")?
    );

    // Deleting alice: her open connection is closed at its next request (her last credential is
    // gone), or fails its next re-authentication, so her producer is cut off at once, not when it
    // happens to reconnect.
    kafka_configs(
        &bootstrap,
        &admin_properties,
        &["--alter", "--delete-config", "SCRAM-SHA-512", "--entity-type", "users", "--entity-name", "alice"],
    )?;
    let deleted_at = std::time::Instant::now();
    let mut next = RECORDS;
    wait_until("the deleted user's producer is refused", Duration::from_secs(20), || {
        next += 1;
        Ok(runtime.block_on(kafka::produce_indexed(&producer, "sasl-reauth-after", next..next + 1)).is_err())
    })?;
    println!("the deleted user was cut off {:?} after the deletion", deleted_at.elapsed());
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    let revoked = metric_value(&metrics, "floe_sasl_sessions_revoked_total").unwrap_or(0.0);
    ensure!(
        revoked + reauthentications("failure")? + reauthentications("expired")? >= 1.0,
        "the cut-off was not a revoked, failed or expired session"
    );
    drop(producer);

    // Durability: what alice produced reads back after a restart.
    playground.restart()?;
    kafka::verify_indexed(kafka::scram_plaintext(&playground.bootstrap, "admin", ADMIN_PASSWORD), "sasl-reauth", RECORDS)?;
    playground.stop()
}
