//! Record bytes through the produce path's streaming record validator, the plain reference reader
//! and the whole produce check in every codec. See `floe_agent::fuzzing::record_validator`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_agent::fuzzing::record_validator(data));
