//! Record batches through validation, storage, fetch and capped decoding (every codec). See
//! `floe_agent::fuzzing::record_batch_decoder`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    floe_agent::fuzzing::record_batch_decoder(data);
});
