//! Replays every input saved under `fuzz/regressions/<target>/` through the entry point the fuzz
//! target calls, so each crash the fuzzer ever found stays fixed (`make test` runs this; `make fuzz`
//! runs the fuzzers themselves). A regression that comes back panics or aborts this test.

use std::path::{Path, PathBuf};

fn saved_inputs(target: &str) -> Vec<PathBuf> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions").join(target);
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("unable to list {}: {error}", directory.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.is_file() && path.extension().is_none_or(|extension| extension != "md"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{} holds no saved inputs", directory.display());
    inputs
}

fn replay(target: &str, run: fn(&[u8])) {
    for input in saved_inputs(target) {
        let bytes = std::fs::read(&input).unwrap_or_else(|error| panic!("unable to read {}: {error}", input.display()));
        eprintln!("replaying {} ({} bytes)", input.display(), bytes.len());
        run(&bytes);
    }
}

#[test]
fn every_saved_request_decoder_input_is_handled_without_a_crash() {
    replay("request_decoder", floe_agent::fuzzing::request_decoder);
}

#[test]
fn every_saved_record_validator_input_is_handled_without_a_crash() {
    replay("record_validator", floe_agent::fuzzing::record_validator);
}

#[test]
fn every_saved_record_batch_decoder_input_is_handled_without_a_crash() {
    replay("record_batch_decoder", |data| {
        floe_agent::fuzzing::record_batch_decoder(data);
    });
}
