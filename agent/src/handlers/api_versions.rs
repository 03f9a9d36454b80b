//! ApiVersions: advertises exactly `SUPPORTED`. No feature tags are ever sent (librdkafka < 2.2
//! mis-parses them).

use super::SUPPORTED;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

/// The response; with `Some(error)` it is the v0-shaped UNSUPPORTED_VERSION answer that still
/// lists our ranges so the client can retry with a version we speak.
pub fn response(error: Option<ResponseError>) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|(key, min, max)| ApiVersion::default().with_api_key(*key as i16).with_min_version(*min).with_max_version(*max))
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.map(|error| error.code()).unwrap_or(0))
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(-1)
}
