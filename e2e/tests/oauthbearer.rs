//! SASL/OAUTHBEARER against real clients: a playground that checks JWTs against an identity
//! provider's JSON Web Key Set served over HTTP on loopback (the agent fetches it as it would from
//! a real provider), librdkafka (a token from the application's callback) and the Java console
//! tools (Kafka's OAuthBearerLoginCallbackHandler reading the token from a file) producing and
//! consuming, the records read back after a restart; then, on the wire, every kind of bad token
//! refused with SASL_AUTHENTICATION_FAILED and a reason, and a rotated provider key picked up
//! without a restart.

use anyhow::{ensure, Context, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use floe_e2e::matrix::Cell;
use floe_e2e::wire::RawConnection;
use floe_e2e::{http_get, kafka, kafka_tool_with_properties, metric_value, run_with_timeout, wait_until, Playground};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kafka_protocol::messages::{ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;
use rdkafka::client::OAuthToken;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerContext;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientContext;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://idp.floe.test";
const AUDIENCE: &str = "floe";
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
const RECORDS: u64 = 300;

/// One signing key of the test identity provider (ECDSA P-256, ES256).
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

impl SigningKey {
    fn new(kid: &str) -> Result<Self> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        // The uncompressed point: 0x04, then X and Y (32 bytes each).
        let point = pair.public_key_raw();
        ensure!(point.len() == 65 && point[0] == 4, "unexpected P-256 public key encoding");
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        });
        Ok(Self { kid: kid.to_string(), encoding: EncodingKey::from_ec_der(&pair.serialize_der()), jwk })
    }

    fn sign(&self, claims: &serde_json::Value) -> Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// Claims a valid token for `subject` carries.
fn claims(subject: &str) -> serde_json::Value {
    json!({"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 3600})
}

/// The test identity provider's key set, served over HTTP/1.1 on loopback until the test ends
/// (what the agent reads from `--sasl-oauthbearer-jwks-url`).
struct KeySetServer {
    url: String,
    keys: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl KeySetServer {
    fn start(keys: Vec<serde_json::Value>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}/.well-known/jwks.json", listener.local_addr()?);
        let keys = Arc::new(Mutex::new(keys));
        let served = Arc::clone(&keys);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut stream = stream;
                let mut request = [0u8; 8192];
                let _ = stream.read(&mut request);
                let body = json!({"keys": *served.lock().expect("not poisoned")}).to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Ok(Self { url, keys })
    }

    fn publish(&self, keys: Vec<serde_json::Value>) {
        *self.keys.lock().expect("not poisoned") = keys;
    }
}

/// librdkafka's token callback (`oauthbearer_token_refresh_cb`): the application fetches a token
/// from its identity provider and hands it over; here, one the test provider signed. (librdkafka's
/// built-in OIDC client needs libcurl, which the bundled build leaves out.)
struct ProviderToken {
    token: String,
    subject: String,
}

impl ClientContext for ProviderToken {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _config: Option<&str>) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        Ok(OAuthToken { token: self.token.clone(), principal_name: self.subject.clone(), lifetime_ms: (now() + 3600) * 1000 })
    }
}

impl ConsumerContext for ProviderToken {}

fn rdkafka_config(bootstrap: &str) -> ClientConfig {
    let mut config = kafka::config(bootstrap);
    config.set("security.protocol", "sasl_plaintext").set("sasl.mechanism", "OAUTHBEARER");
    config
}

fn flags(server: &KeySetServer) -> Vec<String> {
    [
        "--sasl-mechanisms",
        "OAUTHBEARER",
        "--sasl-oauthbearer-jwks-url",
        &server.url,
        "--sasl-oauthbearer-issuer",
        ISSUER,
        "--sasl-oauthbearer-audience",
        AUDIENCE,
    ]
    .iter()
    .map(|flag| flag.to_string())
    .collect()
}

/// One OAUTHBEARER exchange on the wire with `token`: the SaslAuthenticate answer.
fn authenticate_with(bootstrap: &str, token: &str) -> Result<SaslAuthenticateResponse> {
    let mut connection = RawConnection::connect(bootstrap)?;
    let handshake = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("OAUTHBEARER"));
    let correlation_id = connection.send(ApiKey::SaslHandshake, 1, &handshake)?;
    let answered: SaslHandshakeResponse = connection.receive(ApiKey::SaslHandshake, 1, correlation_id)?;
    ensure!(answered.error_code == 0, "the OAUTHBEARER handshake answered {}", answered.error_code);
    let message = format!("n,,\u{1}auth=Bearer {token}\u{1}\u{1}");
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message.into_bytes()));
    let correlation_id = connection.send(ApiKey::SaslAuthenticate, 2, &request)?;
    connection.receive(ApiKey::SaslAuthenticate, 2, correlation_id)
}

/// Fails unless `token` is refused with SASL_AUTHENTICATION_FAILED and a message containing `reason`.
fn expect_refused(bootstrap: &str, what: &str, token: &str, reason: &str) -> Result<()> {
    let answer = authenticate_with(bootstrap, token)?;
    let message = answer.error_message.as_ref().map(|message| message.to_string()).unwrap_or_default();
    ensure!(answer.error_code == SASL_AUTHENTICATION_FAILED, "{what} answered {} ({message})", answer.error_code);
    ensure!(message.contains(reason), "{what} was refused with {message:?}, which does not say {reason:?}");
    Ok(())
}

/// The Java client's properties for OAUTHBEARER with the token in `token_file`.
fn java_properties(directory: &Path, token_file: &Path) -> Result<String> {
    let path = directory.join("oauth.properties");
    std::fs::write(
        &path,
        format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=OAUTHBEARER\n\
             sasl.login.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginCallbackHandler\n\
             sasl.oauthbearer.token.endpoint.url=file://{}\n\
             sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;\n",
            token_file.display()
        ),
    )?;
    Ok(path.display().to_string())
}

#[test]
fn oauthbearer_tokens_from_the_providers_keys_let_librdkafka_and_java_in_and_bad_tokens_are_refused_with_a_reason() -> Result<()> {
    let librdkafka_cell = Cell::open(
        "librdkafka",
        "oauthbearer",
        "produce and read back over SASL/OAUTHBEARER (a token from the application's refresh callback), the ES256 token checked \
         against a JWKS fetched over HTTP; read back after a restart too",
    );
    let java_cell = Cell::open(
        "java",
        "oauthbearer",
        "kafka-topics, console producer and group consumer with Kafka's OAuthBearerLoginCallbackHandler (token from a file) over \
         SASL/OAUTHBEARER",
    );
    let cli_cell = Cell::open("kafka-cli", "oauthbearer", "kafka-topics --create over SASL/OAUTHBEARER with Kafka's login handler");
    let directory = tempfile::tempdir()?;
    let provider = SigningKey::new("key-1")?;
    let server = KeySetServer::start(vec![provider.jwk.clone()])?;
    let mut playground = Playground::start(&flags(&server).iter().map(String::as_str).collect::<Vec<_>>())?;
    let bootstrap = playground.bootstrap.clone();
    let runtime = tokio::runtime::Runtime::new()?;

    let token = provider.sign(&claims("svc-orders"))?;
    let context = || ProviderToken { token: token.clone(), subject: "svc-orders".to_string() };
    let token_file = directory.path().join("token.jwt");
    std::fs::write(&token_file, provider.sign(&claims("svc-java"))?)?;
    let properties = java_properties(directory.path(), &token_file)?;
    let allowed = format!("org.apache.kafka.sasl.oauthbearer.allowed.urls=file://{}", token_file.display());
    let java = |main_class: &str, arguments: &[&str]| kafka_tool_with_properties(main_class, &[&allowed], arguments);

    // The Java admin client (kafka-topics) creates the topics; librdkafka produces and reads back.
    for topic in ["oauth-orders", "oauth-java"] {
        let mut create = java(
            "org.apache.kafka.tools.TopicCommand",
            &["--bootstrap-server", &bootstrap, "--command-config", &properties, "--create", "--topic", topic, "--partitions", "1"],
        )?;
        create.stdin(Stdio::null());
        let created = run_with_timeout(create, TOOL_TIMEOUT)?;
        ensure!(created.status.success(), "kafka-topics --create over OAUTHBEARER failed:\n{}\n{}", created.stdout, created.stderr);
    }
    cli_cell.pass();
    let producer: FutureProducer<ProviderToken> = rdkafka_config(&bootstrap).set("acks", "all").create_with_context(context())?;
    runtime.block_on(kafka::produce_indexed(&producer, "oauth-orders", 0..RECORDS)).context("produce over OAUTHBEARER")?;
    drop(producer);
    let (_, metrics) = http_get(&playground.http, "/metrics")?;
    ensure!(
        metric_value(&metrics, "floe_sasl_authentications_total{mechanism=\"OAUTHBEARER\",outcome=\"success\"}").unwrap_or(0.0) >= 1.0,
        "OAUTHBEARER successes were not counted"
    );

    // Java: Kafka's own login handler reads the token from a file.
    let input = directory.path().join("java-input.txt");
    std::fs::write(&input, (0..50).map(|index| format!("java-{index}\n")).collect::<String>())?;
    let mut producer = java(
        "org.apache.kafka.tools.ConsoleProducer",
        &["--bootstrap-server", &bootstrap, "--topic", "oauth-java", "--producer.config", &properties, "--producer-property", "acks=all"],
    )?;
    producer.stdin(std::fs::File::open(&input)?);
    let produced = run_with_timeout(producer, TOOL_TIMEOUT)?;
    ensure!(produced.status.success(), "the Java console producer failed over OAUTHBEARER:\n{}", produced.stderr);
    let mut consumer = java(
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
        &[
            "--bootstrap-server",
            &bootstrap,
            "--topic",
            "oauth-java",
            "--group",
            "oauth-java",
            "--from-beginning",
            "--max-messages",
            "50",
            "--timeout-ms",
            "60000",
            "--consumer.config",
            &properties,
        ],
    )?;
    consumer.stdin(Stdio::null());
    let consumed = run_with_timeout(consumer, TOOL_TIMEOUT)?;
    let expected: Vec<String> = (0..50).map(|index| format!("java-{index}")).collect();
    ensure!(
        consumed.stdout.lines().map(str::to_string).collect::<Vec<_>>() == expected,
        "the Java consumer did not read back what the Java producer wrote over OAUTHBEARER:\n{}",
        consumed.stderr
    );
    java_cell.pass();

    // Bad tokens, each refused with a reason.
    let stranger = SigningKey::new("key-1")?; // the same kid, another key: the signature fails
    expect_refused(&bootstrap, "a token signed by another key", &stranger.sign(&claims("mallory"))?, "InvalidSignature")?;
    let expired = json!({"sub": "old", "iss": ISSUER, "aud": AUDIENCE, "exp": now() - 600});
    expect_refused(&bootstrap, "an expired token", &provider.sign(&expired)?, "ExpiredSignature")?;
    let no_expiry = json!({"sub": "forever", "iss": ISSUER, "aud": AUDIENCE});
    expect_refused(&bootstrap, "a token without exp", &provider.sign(&no_expiry)?, "exp")?;
    let other_issuer = json!({"sub": "x", "iss": "https://elsewhere", "aud": AUDIENCE, "exp": now() + 600});
    expect_refused(&bootstrap, "a token from another issuer", &provider.sign(&other_issuer)?, "InvalidIssuer")?;
    let other_audience = json!({"sub": "x", "iss": ISSUER, "aud": "someone-else", "exp": now() + 600});
    expect_refused(&bootstrap, "a token for another audience", &provider.sign(&other_audience)?, "InvalidAudience")?;
    let no_subject = json!({"iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    expect_refused(&bootstrap, "a token without sub", &provider.sign(&no_subject)?, "\"sub\" claim")?;
    let shared_secret = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims("x"), &EncodingKey::from_secret(b"guessed"))?;
    expect_refused(&bootstrap, "an HS256 token", &shared_secret, "not accepted")?;
    let unsigned = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(claims("x").to_string()));
    expect_refused(&bootstrap, "an unsigned token", &unsigned, "invalid OAUTHBEARER token")?;
    expect_refused(&bootstrap, "garbage", "not-a-jwt", "invalid OAUTHBEARER token")?;

    // The provider rotates to a new key: tokens it signs are accepted without a restart (an unknown
    // key id makes the agent re-read the key set, at most every 10 s).
    let rotated = SigningKey::new("key-2")?;
    server.publish(vec![provider.jwk.clone(), rotated.jwk.clone()]);
    let rotated_token = rotated.sign(&claims("svc-rotated"))?;
    wait_until("a token signed by the rotated key is accepted", Duration::from_secs(30), || {
        Ok(authenticate_with(&bootstrap, &rotated_token)?.error_code == 0)
    })?;

    // Durability: the records read back after the agent restarted.
    playground.restart()?;
    let bootstrap = playground.bootstrap.clone();
    let read = kafka::read_all_with_context(rdkafka_config(&bootstrap), context(), "oauth-orders", 1, Duration::from_secs(60))?;
    let records = read.get(&0).cloned().unwrap_or_default();
    ensure!(records.len() as u64 == RECORDS, "read {} records back after the restart, expected {RECORDS}", records.len());
    for (index, record) in records.iter().enumerate() {
        ensure!(record.value == floe_e2e::records::value(index as u64), "record {index} came back changed");
    }
    librdkafka_cell.pass();
    playground.stop()
}
