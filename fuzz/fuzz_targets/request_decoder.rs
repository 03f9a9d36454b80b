//! Every advertised (api key, version) request decoder, on the server's frame path; the first
//! four input bytes choose the pair. See `floe_agent::fuzzing::request_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| floe_agent::fuzzing::request_decoder(data));
