//! The operator's log written to a file carries no ANSI colour codes (issue 16, item 6): the real
//! binary, its stderr redirected to a file, against a kubeconfig whose apiserver does not answer
//! (the start-up lines are logged before anything is reached).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn the_log_written_to_a_file_has_no_colour_codes() {
    let directory = tempfile::tempdir().unwrap();
    let kubeconfig = directory.path().join("kubeconfig");
    std::fs::File::create(&kubeconfig)
        .unwrap()
        .write_all(
            b"apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: 'http://127.0.0.1:1'}}]\n\
              users: [{name: none, user: {}}]\ncontexts: [{name: none, context: {cluster: none, user: none}}]\ncurrent-context: none\n",
        )
        .unwrap();
    let log_path = directory.path().join("operator.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_floe-operator"))
        .args(["run", "--http-listen", "127.0.0.1:0"])
        .env("KUBECONFIG", &kubeconfig)
        .env("FLOE_LOG", "info")
        // Colour must be off because stderr is a file, not because the environment asks.
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("serving /metrics") || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(log.contains("serving /metrics"), "the operator did not start: {log}");
    // With colours the field name is wrapped in escape codes and this exact text is absent.
    assert!(log.contains("bandwidth_metric=false"), "{log}");
    assert!(!log.contains('\u{1b}'), "ANSI escape codes in the log file: {log:?}");
}
