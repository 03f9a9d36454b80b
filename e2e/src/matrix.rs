//! The client compatibility matrix, written by the suites themselves.
//!
//! A suite opens a [`Cell`] for (client, feature) before exercising it and calls [`Cell::pass`]
//! once its assertions hold. A cell dropped without `pass` (a failed assertion, an early `?`
//! return, a panic) is recorded as failed. Each cell is one JSON file under
//! `target/compat-matrix/`; `cargo run -p floe-e2e --bin compat-matrix` renders them into
//! `docs/compatibility.md` (make test does it after the suites). Nobody writes that file by hand.

use std::path::PathBuf;

/// The clients the matrix has a row for, in display order.
pub const CLIENTS: &[&str] = &["java", "librdkafka", "kcat", "franz-go", "kafka-python", "kafkajs", "kafka-cli"];
/// The features the matrix has a column for, in display order.
/// `tls`: produce and consume over TLS; `mtls`: the same with a client certificate, whose subject
/// is the principal; `sasl`: produce, consume and admin over SASL (SCRAM and
/// PLAIN); `oauthbearer`: produce and consume with SASL/OAUTHBEARER tokens checked against a JWKS;
/// `acls`: Kafka's authorization codes when an ACL is missing, and access once granted;
/// `compaction`: reading a topic that key compaction cleaned (gaps, rewritten batches);
/// `transactions`: transactional producers, committed records read once and aborted ones never
/// by read_committed consumers; `kip848`: a group of consumers on the KIP-848 protocol
/// (`group.protocol=consumer`) splits, rebalances and commits.
pub const FEATURES: &[&str] = &[
    "produce",
    "consume",
    "groups",
    "admin",
    "idempotence",
    "tls",
    "mtls",
    "sasl",
    "oauthbearer",
    "acls",
    "compaction",
    "transactions",
    "kip848",
];

/// Where cell results are written: `$FLOE_MATRIX_DIR`, else `<target>/compat-matrix`.
pub fn results_directory() -> PathBuf {
    if let Ok(directory) = std::env::var("FLOE_MATRIX_DIR") {
        return PathBuf::from(directory);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| crate::repository_root().join("target"));
    target.join("compat-matrix")
}

/// One (client, feature) result in the making.
pub struct Cell {
    client: &'static str,
    feature: &'static str,
    evidence: String,
    passed: bool,
}

impl Cell {
    /// Opens a cell. `evidence` says what the suite does to prove the feature (shown in the
    /// matrix), for example "100,000 records in 5 codecs, read back byte for byte".
    pub fn open(client: &'static str, feature: &'static str, evidence: impl Into<String>) -> Self {
        assert!(CLIENTS.contains(&client), "unknown matrix client {client:?}; add it to matrix::CLIENTS");
        assert!(FEATURES.contains(&feature), "unknown matrix feature {feature:?}; add it to matrix::FEATURES");
        Self { client, feature, evidence: evidence.into(), passed: false }
    }

    /// Records the cell as passed. Call it only after the assertions that prove the feature.
    pub fn pass(mut self) {
        self.passed = true;
    }

    fn write(&self) -> std::io::Result<()> {
        let directory = results_directory();
        std::fs::create_dir_all(&directory)?;
        // One file per (client, feature, test): several tests may prove parts of one cell, and
        // the cell passes only if all of them did.
        let test = std::thread::current().name().unwrap_or("unknown").to_string();
        let test_file: String = test.chars().map(|character| if character.is_ascii_alphanumeric() { character } else { '_' }).collect();
        let path = directory.join(format!("{}__{}__{test_file}.json", self.client, self.feature));
        let body = format!(
            "{{\"client\":{},\"feature\":{},\"passed\":{},\"evidence\":{},\"test\":{}}}\n",
            json_string(self.client),
            json_string(self.feature),
            self.passed,
            json_string(&self.evidence),
            json_string(&test),
        );
        std::fs::write(path, body)
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        if let Err(error) = self.write() {
            eprintln!("failed to record matrix cell {}/{}: {error}", self.client, self.feature);
        }
    }
}

/// A JSON string literal (the matrix files are tiny; no serde needed in the suites).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            control if (control as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", control as u32)),
            other => out.push(other),
        }
    }
    out.push('"');
    out
}
