//! Kafka wire protocol glue: frame reading with a size cap, request decoding and response encoding
//! on the `kafka-protocol` crate, and record-batch header validation. This module performs no I/O
//! beyond reading frames from an `AsyncRead` it is handed.

pub mod batch;
pub mod codec;
pub mod frame;
