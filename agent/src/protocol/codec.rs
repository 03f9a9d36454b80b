//! Request decoding and response encoding on the `kafka-protocol` crate.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("failed to decode {api_key:?} v{version} request header: {reason}")]
    Header { api_key: ApiKey, version: i16, reason: String },
    #[error("failed to decode {api_key:?} v{version} request body: {reason}")]
    Body { api_key: ApiKey, version: i16, reason: String },
    #[error("failed to encode {api_key:?} v{version} response: {reason}")]
    Encode { api_key: ApiKey, version: i16, reason: String },
}

/// The api key and version of a frame, read without decoding anything else.
pub fn peek_key_and_version(frame: &[u8]) -> Result<(ApiKey, i16), CodecError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(raw_key).map_err(|_| CodecError::UnknownApiKey { api_key: raw_key })?;
    Ok((api_key, version))
}

/// The correlation id sits at the same place in every request header version.
pub fn peek_correlation_id(frame: &[u8]) -> i32 {
    i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]])
}

/// Decodes the header and body of a request whose version the caller has already checked.
///
/// The crate's decoder is wrapped so that a panic on hostile input becomes an error that closes
/// one connection instead of the process.
pub fn decode_request(frame: Bytes, api_key: ApiKey, version: i16) -> Result<(RequestHeader, RequestKind), CodecError> {
    let outcome = std::panic::catch_unwind(move || {
        let mut frame = frame;
        let header_version = api_key.request_header_version(version);
        let header = RequestHeader::decode(&mut frame, header_version).map_err(|error| CodecError::Header {
            api_key,
            version,
            reason: error.to_string(),
        })?;
        let body = RequestKind::decode(api_key, &mut frame, version).map_err(|error| CodecError::Body {
            api_key,
            version,
            reason: error.to_string(),
        })?;
        // Kafka brokers ignore bytes after a request body, and some clients send them (librdkafka
        // 2.12 adds 3 to Metadata v12 when asking for all topics), so they are tolerated.
        if frame.has_remaining() {
            tracing::debug!(?api_key, version, trailing = frame.remaining(), "ignoring trailing bytes after the request body");
        }
        Ok((header, body))
    });
    outcome.unwrap_or_else(|_| Err(CodecError::Body { api_key, version, reason: "decoder panicked".to_string() }))
}

/// Encodes a response frame (size prefix included). ApiVersions always uses response header v0.
pub fn encode_response(api_key: ApiKey, version: i16, correlation_id: i32, body: &ResponseKind) -> Result<Bytes, CodecError> {
    let header_version = api_key.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // A fetch response can be tens of MiB: sized up front it is written once, where a buffer that
    // doubles as it fills would copy it about twice more and hold two copies at its peak.
    let body_size = match body {
        ResponseKind::Fetch(fetch) => fetch.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buffer = BytesMut::with_capacity(64 + body_size);
    buffer.put_i32(0);
    let encode_error = |reason: String| CodecError::Encode { api_key, version, reason };
    header.encode(&mut buffer, header_version).map_err(|error| encode_error(error.to_string()))?;
    body.encode(&mut buffer, version).map_err(|error| encode_error(error.to_string()))?;
    let size = (buffer.len() - 4) as i32;
    buffer[0..4].copy_from_slice(&size.to_be_bytes());
    Ok(buffer.freeze())
}
