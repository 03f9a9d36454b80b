//! ApiVersions: advertises exactly the handler table (`APIS`). No feature tags are ever sent (librdkafka < 2.2
//! mis-parses them).

use super::APIS;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

/// The response; with `Some(error)` it is the v0-shaped UNSUPPORTED_VERSION answer that still
/// lists our ranges so the client can retry with a version we speak.
pub fn response(error: Option<ResponseError>) -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|api| ApiVersion::default().with_api_key(api.key as i16).with_min_version(api.min).with_max_version(api.max))
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error.map(|error| error.code()).unwrap_or(0))
        .with_api_keys(api_keys)
        .with_finalized_features_epoch(-1)
}
