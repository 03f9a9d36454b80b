//! Kafka wire protocol glue: frame reading with a size cap, request decoding and response encoding
//! on the `kafka-protocol` crate, record-batch header validation, and record decoding under a memory
//! budget. This module performs no I/O beyond reading frames from an `AsyncRead` it is handed.

pub mod batch;
pub mod codec;
pub mod fetch_frame;
pub mod frame;
pub mod layout;
pub mod payload;
pub mod records;
pub mod retain;
