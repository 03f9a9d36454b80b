//! TLS on the Kafka listener against real clients: a CA, server and client certificates made at
//! test time (rcgen), a playground serving them, the Java client (Kafka 4.1.1's console tools,
//! PEM truststore and keystore) and librdkafka (the rdkafka crate, built with OpenSSL) producing
//! and consuming over mutual TLS; the certificate replaced under a connected client; a plaintext
//! client and a client that stalls in the handshake.

use anyhow::{bail, ensure, Context, Result};
use floe_e2e::matrix::Cell;
use floe_e2e::pki::{connect_tls, served_serial, Pki};
use floe_e2e::{http_get, kafka, kafka_tool, metric_value, run_with_timeout, wait_until, Playground};
use rcgen::DnType;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// The subject of the client certificate, in DER order; Kafka names it in RFC 2253 order (last
/// first).
const CLIENT_SUBJECT: [(DnType, &str); 2] = [(DnType::OrganizationName, "Floe E2E"), (DnType::CommonName, "floe-e2e-client")];
const CLIENT_PRINCIPAL: &str = "User:CN=floe-e2e-client,O=Floe E2E";

/// The agent's flags for TLS with these files.
fn tls_flags(pki: &Pki, client_auth: &str) -> Vec<String> {
    let mut flags = vec![
        "--tls-cert-file".to_string(),
        pki.arg("server.crt"),
        "--tls-key-file".to_string(),
        pki.arg("server.key"),
        "--tls-client-auth".to_string(),
        client_auth.to_string(),
        "--tls-handshake-timeout".to_string(),
        "2s".to_string(),
    ];
    if client_auth != "none" {
        flags.extend(["--tls-client-ca-file".to_string(), pki.arg("ca.crt")]);
    }
    flags
}

fn start(flags: &[String], log: Option<&Path>) -> Result<Playground> {
    let arguments: Vec<&str> = flags.iter().map(String::as_str).collect();
    Playground::start_with_log(&arguments, log)
}

fn handshake_failures(playground: &Playground, reason: &str) -> Result<f64> {
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    Ok(metric_value(&metrics, &format!("floe_tls_handshake_failures_total{{reason=\"{reason}\"}}")).unwrap_or(0.0))
}

#[test]
fn java_and_librdkafka_round_trip_over_mutual_tls_the_subject_is_the_principal_and_the_records_survive_a_restart() -> Result<()> {
    let java_cell = Cell::open("java", "tls", "console producer and consumer over mutual TLS (PEM stores), read back after a restart");
    let librdkafka_cell = Cell::open(
        "librdkafka",
        "tls",
        "1,000 records produced and read over mutual TLS, read back after a restart; no certificate refused",
    );
    let mtls_evidence = "a client certificate the agent requires, its subject logged as the connection's principal";
    let java_mtls_cell =
        Cell::open("java", "mtls", format!("console producer and consumer with {mtls_evidence}, read back after a restart"));
    let librdkafka_mtls_cell = Cell::open("librdkafka", "mtls", format!("1,000 records with {mtls_evidence}, read back after a restart"));
    let pki = Pki::new()?;
    pki.issue_server()?;
    pki.issue("client", &[0x30, 0x03], &CLIENT_SUBJECT, false)?;
    let log = pki.path("agent.log");
    let mut flags = tls_flags(&pki, "required");
    flags.extend(["--log".to_string(), "warn,floe_agent::server=debug".to_string()]);
    let mut playground = start(&flags, Some(&log))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let bootstrap = playground.bootstrap.clone();
    for topic in ["tls-java", "tls-librdkafka"] {
        runtime.block_on(kafka::create_topic_with(pki.rdkafka(&bootstrap, true), topic, 1))?;
    }

    // The Java client: console producer and consumer with a PEM truststore and keystore.
    let properties = pki.java_properties()?;
    let properties = properties.to_str().context("non-UTF-8 temporary path")?;
    const JAVA_RECORDS: u64 = 200;
    let input = pki.path("java-input.txt");
    std::fs::write(&input, (0..JAVA_RECORDS).map(|index| format!("java-{index}\n")).collect::<String>())?;
    let mut producer = kafka_tool(
        CONSOLE_PRODUCER,
        &["--bootstrap-server", &bootstrap, "--topic", "tls-java", "--producer.config", properties, "--producer-property", "acks=all"],
    )?;
    producer.stdin(std::fs::File::open(&input)?);
    let produced = run_with_timeout(producer, TOOL_TIMEOUT)?;
    ensure!(produced.status.success(), "the Java console producer failed over TLS:\n{}", produced.stderr);
    let java_expected: Vec<String> = (0..JAVA_RECORDS).map(|index| format!("java-{index}")).collect();
    let read_with_java = |bootstrap: &str| -> Result<Vec<String>> {
        let mut consumer = kafka_tool(
            CONSOLE_CONSUMER,
            &[
                "--bootstrap-server",
                bootstrap,
                "--topic",
                "tls-java",
                "--from-beginning",
                "--max-messages",
                &JAVA_RECORDS.to_string(),
                "--timeout-ms",
                "60000",
                "--consumer.config",
                properties,
            ],
        )?;
        consumer.stdin(Stdio::null());
        let consumed = run_with_timeout(consumer, TOOL_TIMEOUT)?;
        ensure!(consumed.status.success(), "the Java console consumer failed over TLS:\n{}", consumed.stderr);
        Ok(consumed.stdout.lines().map(str::to_string).collect())
    };
    ensure!(read_with_java(&bootstrap)? == java_expected, "the Java consumer did not read back what the Java producer wrote");

    // librdkafka with its client certificate.
    const LIBRDKAFKA_RECORDS: u64 = 1000;
    let producer: FutureProducer = pki.rdkafka(&bootstrap, true).set("acks", "all").create()?;
    runtime.block_on(kafka::produce_indexed(&producer, "tls-librdkafka", 0..LIBRDKAFKA_RECORDS))?;
    drop(producer);
    kafka::verify_indexed(pki.rdkafka(&bootstrap, true), "tls-librdkafka", LIBRDKAFKA_RECORDS)?;

    // Without a certificate: refused at the handshake.
    let before = handshake_failures(&playground, "no_client_certificate")?;
    let anonymous: BaseConsumer = pki.rdkafka(&bootstrap, false).create()?;
    ensure!(
        anonymous.fetch_metadata(None, Duration::from_secs(5)).is_err(),
        "a client without a certificate got Metadata from a listener that requires one"
    );
    drop(anonymous);
    wait_until("a no_client_certificate handshake failure", Duration::from_secs(10), || {
        Ok(handshake_failures(&playground, "no_client_certificate")? > before)
    })?;

    // The subject became the connection's principal.
    wait_until("the principal in the agent's log", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&log)?
            .lines()
            .any(|line| line.contains("TLS connection established") && line.contains(&format!("principal={CLIENT_PRINCIPAL}"))))
    })?;

    // Durability: every acknowledged record is read back over TLS after the agent restarted.
    playground.restart()?;
    let bootstrap = playground.bootstrap.clone();
    kafka::verify_indexed(pki.rdkafka(&bootstrap, true), "tls-librdkafka", LIBRDKAFKA_RECORDS)?;
    ensure!(read_with_java(&bootstrap)? == java_expected, "the Java records did not survive the restart");
    java_cell.pass();
    librdkafka_cell.pass();
    java_mtls_cell.pass();
    librdkafka_mtls_cell.pass();
    playground.stop()
}

/// An ApiVersions v0 request with correlation id 7 and a null client id.
const API_VERSIONS_V0: [u8; 14] = [0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0xff, 0xff];

/// Sends ApiVersions on an open TLS connection and checks the answer.
async fn api_versions_over(stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Result<()> {
    stream.write_all(&API_VERSIONS_V0).await?;
    stream.flush().await?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).await?;
    let mut body = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await?;
    ensure!(body.len() >= 6 && body[..4] == [0, 0, 0, 7] && body[4..6] == [0, 0], "unexpected ApiVersions answer {body:?}");
    Ok(())
}

#[test]
fn a_replaced_certificate_reaches_new_connections_while_connected_clients_keep_working() -> Result<()> {
    let pki = Pki::new()?;
    pki.issue_server()?;
    let playground = start(&tls_flags(&pki, "none"), None)?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        kafka::create_topic_with(pki.rdkafka(&bootstrap, false), "tls-rotation", 1).await?;
        let producer: FutureProducer = pki.rdkafka(&bootstrap, false).set("acks", "all").create()?;
        kafka::produce_indexed(&producer, "tls-rotation", 0..100).await?;
        let mut before = connect_tls(&pki.path("ca.crt"), &bootstrap).await?;
        ensure!(served_serial(&before)? == [0x10, 0x01], "the first certificate was not served");
        api_versions_over(&mut before).await?;

        pki.issue("server", &[0x20, 0x02], &[(DnType::CommonName, "localhost")], true)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let after = connect_tls(&pki.path("ca.crt"), &bootstrap).await?;
            if served_serial(&after)? == [0x20, 0x02] {
                break;
            }
            ensure!(Instant::now() < deadline, "new connections still get the old certificate 15 s after the files changed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // The connection opened before the change still answers, and the producer (connected
        // since before) keeps being acknowledged.
        api_versions_over(&mut before).await.context("the connection opened before the certificate changed stopped working")?;
        kafka::produce_indexed(&producer, "tls-rotation", 100..200).await?;

        // The listener's limits hold inside TLS too: a frame declaring more than
        // --max-request-bytes closes the connection before anything is allocated.
        let mut oversized = connect_tls(&pki.path("ca.crt"), &bootstrap).await?;
        oversized.write_all(&(200u32 << 20).to_be_bytes()).await?;
        oversized.flush().await?;
        let mut buffer = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), oversized.read(&mut buffer)).await;
        ensure!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "a 200 MiB frame over TLS did not close the connection: {read:?}");
        anyhow::Ok(())
    })?;
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    ensure!(
        metric_value(&metrics, "floe_requests_refused_total{limit=\"socket_request_max_bytes\"}") == Some(1.0),
        "the oversized frame over TLS was not refused by --max-request-bytes"
    );
    kafka::verify_indexed(pki.rdkafka(&bootstrap, false), "tls-rotation", 200)?;
    Ok(())
}

/// Reads until the agent closes the connection; returns how long that took.
fn time_until_closed(stream: &mut std::net::TcpStream, limit: Duration) -> Result<Duration> {
    stream.set_read_timeout(Some(limit))?;
    let started = Instant::now();
    let mut buffer = [0u8; 256];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(started.elapsed()),
            // A TLS alert may come first; the close follows.
            Ok(_) => continue,
            Err(error) if matches!(error.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted) => {
                return Ok(started.elapsed())
            }
            Err(error) => bail!("the connection was not closed within {limit:?}: {error}"),
        }
    }
}

#[test]
fn a_plaintext_client_is_closed_at_once_and_a_stalled_handshake_at_the_timeout() -> Result<()> {
    let pki = Pki::new()?;
    pki.issue_server()?;
    let log = pki.path("agent.log");
    let playground = start(&tls_flags(&pki, "none"), Some(&log))?;

    // A plaintext Kafka client: closed as soon as its first bytes arrive, logged once with its
    // address.
    let mut plaintext = std::net::TcpStream::connect(&playground.bootstrap)?;
    let local = plaintext.local_addr()?;
    plaintext.write_all(&API_VERSIONS_V0)?;
    let closed_after = time_until_closed(&mut plaintext, Duration::from_secs(5))?;
    ensure!(closed_after < Duration::from_secs(1), "a plaintext client waited {closed_after:?} to be closed");
    wait_until("the not-TLS warning", Duration::from_secs(5), || {
        Ok(std::fs::read_to_string(&log)?.lines().filter(|line| line.contains("not TLS") && line.contains(&local.to_string())).count() == 1)
    })?;
    ensure!(handshake_failures(&playground, "not_tls")? == 1.0, "the not_tls failure was not counted once");

    // librdkafka configured for plaintext gets an error, not a hang.
    let started = Instant::now();
    let plaintext_client: BaseConsumer = kafka::config(&playground.bootstrap).create()?;
    ensure!(plaintext_client.fetch_metadata(None, Duration::from_secs(5)).is_err(), "a plaintext client got Metadata from a TLS listener");
    ensure!(started.elapsed() < Duration::from_secs(6), "the plaintext librdkafka client hung for {:?}", started.elapsed());
    drop(plaintext_client);

    // A client that connects and says nothing, and one that stops inside its ClientHello: both
    // closed at --tls-handshake-timeout (2 s).
    let connected = Instant::now();
    let mut silent = std::net::TcpStream::connect(&playground.bootstrap)?;
    let mut partial = std::net::TcpStream::connect(&playground.bootstrap)?;
    partial.write_all(&[0x16, 0x03, 0x01, 0x02])?;
    for (who, stream) in [("silent", &mut silent), ("partial", &mut partial)] {
        time_until_closed(stream, Duration::from_secs(10))?;
        let closed_after = connected.elapsed();
        ensure!(
            closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
            "the {who} client was closed after {closed_after:?}, not at the 2 s timeout"
        );
    }
    wait_until("two handshake timeouts counted", Duration::from_secs(5), || Ok(handshake_failures(&playground, "timeout")? >= 2.0))?;
    Ok(())
}
