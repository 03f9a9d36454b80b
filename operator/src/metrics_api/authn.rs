//! Who is asking: kube-apiserver's aggregator proxies each request with its front-proxy client
//! certificate and names the user in `X-Remote-User` / `X-Remote-Group` / `X-Remote-Extra-*`
//! headers ("request header" authentication, as every aggregated API server does it). The trust
//! settings come from ConfigMap `kube-system/extension-apiserver-authentication`, re-read every
//! [`REFRESH_INTERVAL`].
//!
//! # Guarantees
//! - The headers are believed only when the connection's client certificate chains to the
//!   front-proxy CA (`requestheader-client-ca-file`) right now, is valid for client
//!   authentication, and its common name is in `requestheader-allowed-names` (when that list is
//!   not empty). Anything else is unauthenticated: the caller answers 401.
//! - Only [`parse_config`] and [`authenticate`] decide; both are pure.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const CONFIG_MAP_NAMESPACE: &str = "kube-system";
pub const CONFIG_MAP_NAME: &str = "extension-apiserver-authentication";
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Every authenticated user is also in this group (Go's apiserver adds it the same way), so
/// RBAC rules for `system:authenticated` (discovery, OpenAPI) apply.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The front-proxy settings kube-apiserver publishes.
pub struct RequestHeaderConfig {
    verifier: Arc<dyn ClientCertVerifier>,
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_header_prefixes: Vec<String>,
}

impl std::fmt::Debug for RequestHeaderConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RequestHeaderConfig")
            .field("allowed_names", &self.allowed_names)
            .field("username_headers", &self.username_headers)
            .field("group_headers", &self.group_headers)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} has no requestheader-client-ca-file: kube-apiserver runs without --requestheader-client-ca-file, so it cannot proxy to aggregated APIs")]
    NoCertificateAuthority,
    #[error("requestheader-client-ca-file in {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} is unusable: {reason}")]
    CertificateAuthority { reason: String },
    #[error("{key} in {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} is not a JSON list of strings: {reason}")]
    List { key: &'static str, reason: String },
}

fn string_list(data: &BTreeMap<String, String>, key: &'static str, default: &[&str]) -> Result<Vec<String>, ConfigError> {
    match data.get(key).map(|text| text.trim()).filter(|text| !text.is_empty()) {
        None => Ok(default.iter().map(|value| value.to_string()).collect()),
        Some(text) => serde_json::from_str::<Vec<String>>(text)
            .map(|values| values.into_iter().map(|value| value.trim().to_string()).filter(|value| !value.is_empty()).collect())
            .map_err(|error| ConfigError::List { key, reason: error.to_string() }),
    }
}

/// Builds the settings from the ConfigMap's data. Header lists default to the names
/// kube-apiserver itself uses when the keys are absent.
pub fn parse_config(data: &BTreeMap<String, String>, provider: Arc<CryptoProvider>) -> Result<RequestHeaderConfig, ConfigError> {
    let bundle =
        data.get("requestheader-client-ca-file").filter(|text| !text.trim().is_empty()).ok_or(ConfigError::NoCertificateAuthority)?;
    let authorities =
        super::tls::certificates_from_pem(bundle.as_bytes()).map_err(|reason| ConfigError::CertificateAuthority { reason })?;
    let mut roots = RootCertStore::empty();
    for authority in authorities {
        roots.add(authority).map_err(|error| ConfigError::CertificateAuthority { reason: error.to_string() })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|error| ConfigError::CertificateAuthority { reason: error.to_string() })?;
    Ok(RequestHeaderConfig {
        verifier,
        allowed_names: string_list(data, "requestheader-allowed-names", &[])?,
        username_headers: string_list(data, "requestheader-username-headers", &["X-Remote-User"])?,
        uid_headers: string_list(data, "requestheader-uid-headers", &[])?,
        group_headers: string_list(data, "requestheader-group-headers", &["X-Remote-Group"])?,
        extra_header_prefixes: string_list(data, "requestheader-extra-headers-prefix", &["X-Remote-Extra-"])?,
    })
}

/// The caller, as the aggregator named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserInfo {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a request is not authenticated (each becomes a 401; the variant name is the log field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    #[error("the front-proxy settings are not loaded yet: {reason}")]
    NotConfigured { reason: String },
    #[error("no client certificate")]
    NoClientCertificate,
    #[error("the client certificate is not signed by the front-proxy CA: {reason}")]
    UntrustedCertificate { reason: String },
    #[error("the client certificate's common name {common_name:?} is not in requestheader-allowed-names")]
    NameNotAllowed { common_name: String },
    #[error("the request names no user (no {headers} header)")]
    NoUser { headers: String },
}

/// Decides who sent a request from the connection's client certificate chain (leaf first) and
/// the request headers.
pub fn authenticate(
    config: &RequestHeaderConfig,
    chain: &[CertificateDer<'static>],
    headers: &axum::http::HeaderMap,
    now: UnixTime,
) -> Result<UserInfo, Unauthenticated> {
    let (leaf, intermediates) = chain.split_first().ok_or(Unauthenticated::NoClientCertificate)?;
    config
        .verifier
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|error| Unauthenticated::UntrustedCertificate { reason: error.to_string() })?;
    if !config.allowed_names.is_empty() {
        let common_name = subject_common_name(leaf).unwrap_or_default();
        if !config.allowed_names.contains(&common_name) {
            return Err(Unauthenticated::NameNotAllowed { common_name });
        }
    }
    let first = |names: &[String]| {
        names.iter().find_map(|name| headers.get(name.as_str()).and_then(|value| value.to_str().ok()).filter(|value| !value.is_empty()))
    };
    let name = first(&config.username_headers).ok_or_else(|| Unauthenticated::NoUser { headers: config.username_headers.join(" or ") })?;
    let mut groups: Vec<String> = config
        .group_headers
        .iter()
        .flat_map(|header| headers.get_all(header.as_str()).iter())
        .filter_map(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_string)
        .collect();
    if !groups.iter().any(|group| group == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in &config.extra_header_prefixes {
        for (header, value) in headers {
            let header = header.as_str();
            if header.len() > prefix.len() && header[..prefix.len()].eq_ignore_ascii_case(prefix) {
                let key = header[prefix.len()..].to_ascii_lowercase();
                let key = percent_decode(&key).unwrap_or(key);
                extra.entry(key).or_default().extend(value.to_str().ok().map(str::to_string));
            }
        }
    }
    Ok(UserInfo { name: name.to_string(), uid: first(&config.uid_headers).map(str::to_string), groups, extra })
}

/// `%XX` escapes decoded; `None` for a malformed escape or non-UTF-8 result.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// One DER element: tag, contents, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        (rest[..count].iter().fold(0usize, |length, byte| (length << 8) | usize::from(*byte)), &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

/// The subject common name of a DER certificate (the last one if there are several, as Go reads
/// it), enough to check `requestheader-allowed-names` without a full X.509 parser.
pub fn subject_common_name(certificate: &[u8]) -> Option<String> {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    let (SEQUENCE, certificate, _) = der_element(certificate)? else { return None };
    let (SEQUENCE, mut fields, _) = der_element(certificate)? else { return None };
    // [0] version is optional; then serialNumber, signature, issuer, validity, subject.
    if fields.first() == Some(&0xa0) {
        fields = der_element(fields)?.2;
    }
    for _ in 0..4 {
        fields = der_element(fields)?.2;
    }
    let (SEQUENCE, mut names, _) = der_element(fields)? else { return None };
    let mut common_name = None;
    while !names.is_empty() {
        let (SET, mut attributes, rest) = der_element(names)? else { return None };
        names = rest;
        while !attributes.is_empty() {
            let (SEQUENCE, attribute, rest) = der_element(attributes)? else { return None };
            attributes = rest;
            let (0x06, oid, value) = der_element(attribute)? else { return None };
            if oid == COMMON_NAME {
                let (tag, value, _) = der_element(value)?;
                common_name = Some(match tag {
                    // BMPString: UTF-16 big-endian.
                    0x1e => String::from_utf16_lossy(
                        &value.chunks(2).map(|pair| u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])).collect::<Vec<_>>(),
                    ),
                    _ => String::from_utf8_lossy(value).into_owned(),
                });
            }
        }
    }
    common_name
}

type Published = Result<Arc<RequestHeaderConfig>, String>;

fn publish(sender: &watch::Sender<Published>, value: Published) {
    // The previous value is simply replaced.
    let _previous = sender.send_replace(value);
}

/// Keeps the latest front-proxy settings: read now and every [`REFRESH_INTERVAL`]. Until the
/// first successful read the value is the error, and every request is unauthenticated.
pub fn watch_config(client: Client, provider: Arc<CryptoProvider>) -> watch::Receiver<Published> {
    let (sender, receiver) = watch::channel(Err("not read yet".to_string()));
    tokio::spawn(async move {
        let config_maps: Api<ConfigMap> = Api::namespaced(client, CONFIG_MAP_NAMESPACE);
        let mut last: Option<BTreeMap<String, String>> = None;
        loop {
            match config_maps.get_opt(CONFIG_MAP_NAME).await {
                Ok(Some(config_map)) => {
                    let data = config_map.data.unwrap_or_default();
                    if last.as_ref() != Some(&data) {
                        match parse_config(&data, Arc::clone(&provider)) {
                            Ok(config) => {
                                tracing::info!(allowed_names = ?config.allowed_names, "loaded the front-proxy settings for the metrics API");
                                publish(&sender, Ok(Arc::new(config)));
                            }
                            Err(error) => {
                                tracing::warn!(%error, "the metrics API cannot authenticate the aggregator");
                                publish(&sender, Err(error.to_string()));
                            }
                        }
                        last = Some(data);
                    }
                }
                Ok(None) => {
                    let reason = format!("ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME} does not exist");
                    tracing::warn!(%reason, "the metrics API cannot authenticate the aggregator");
                    publish(&sender, Err(reason));
                    last = None;
                }
                // Keep the last good settings through an API hiccup.
                Err(error) => tracing::warn!(%error, "failed to read ConfigMap {CONFIG_MAP_NAMESPACE}/{CONFIG_MAP_NAME}"),
            }
            if sender.is_closed() {
                return;
            }
            tokio::time::sleep(REFRESH_INTERVAL).await;
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderName, HeaderValue};

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics-api").join(name)).unwrap()
    }

    fn chain(name: &str) -> Vec<CertificateDer<'static>> {
        super::super::tls::certificates_from_pem(&fixture(name)).unwrap()
    }

    fn data(allowed: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("requestheader-client-ca-file".to_string(), String::from_utf8(fixture("front-proxy-ca.crt")).unwrap()),
            ("requestheader-allowed-names".to_string(), allowed.to_string()),
            ("requestheader-username-headers".to_string(), r#"["X-Remote-User"]"#.to_string()),
            ("requestheader-group-headers".to_string(), r#"["X-Remote-Group"]"#.to_string()),
            ("requestheader-extra-headers-prefix".to_string(), r#"["X-Remote-Extra-"]"#.to_string()),
        ])
    }

    fn config(allowed: &str) -> RequestHeaderConfig {
        parse_config(&data(allowed), super::super::tls::provider()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> axum::http::HeaderMap {
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in pairs {
            headers.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_common_name_is_read_from_the_certificate_subject() {
        assert_eq!(subject_common_name(&chain("front-proxy-client.crt")[0]).as_deref(), Some("front-proxy-client"));
        assert_eq!(subject_common_name(&chain("stranger.crt")[0]).as_deref(), Some("stranger"));
        assert_eq!(subject_common_name(&chain("front-proxy-ca.crt")[0]).as_deref(), Some("floe-test-front-proxy-ca"));
        assert_eq!(subject_common_name(b"\x30\x03\x02\x01"), None);
    }

    #[test]
    fn the_front_proxy_with_a_user_header_is_that_user_in_its_groups_plus_system_authenticated() {
        let user = authenticate(
            &config(r#"["front-proxy-client"]"#),
            &chain("front-proxy-client.crt"),
            &headers(&[
                ("X-Remote-User", "system:serviceaccount:kube-system:horizontal-pod-autoscaler"),
                ("X-Remote-Group", "system:serviceaccounts"),
                ("X-Remote-Group", "system:serviceaccounts:kube-system"),
                ("X-Remote-Extra-Authentication.kubernetes.io%2fpod-name", "kcm-0"),
            ]),
            UnixTime::now(),
        )
        .unwrap();
        assert_eq!(user.name, "system:serviceaccount:kube-system:horizontal-pod-autoscaler");
        assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:kube-system", AUTHENTICATED_GROUP]);
        assert_eq!(user.extra, BTreeMap::from([("authentication.kubernetes.io/pod-name".to_string(), vec!["kcm-0".to_string()])]));
    }

    #[test]
    fn requests_without_a_trusted_allowed_certificate_or_a_user_are_unauthenticated() {
        let config = config(r#"["front-proxy-client"]"#);
        let user = headers(&[("X-Remote-User", "alice")]);
        let now = UnixTime::now();
        assert_eq!(authenticate(&config, &[], &user, now), Err(Unauthenticated::NoClientCertificate));
        assert!(matches!(authenticate(&config, &chain("impostor.crt"), &user, now), Err(Unauthenticated::UntrustedCertificate { .. })));
        assert_eq!(
            authenticate(&config, &chain("stranger.crt"), &user, now),
            Err(Unauthenticated::NameNotAllowed { common_name: "stranger".to_string() })
        );
        assert!(matches!(authenticate(&config, &chain("front-proxy-client.crt"), &headers(&[]), now), Err(Unauthenticated::NoUser { .. })));
        // A server certificate is no client certificate, even from the right CA.
        assert!(matches!(authenticate(&config, &chain("serving-ec.crt"), &user, now), Err(Unauthenticated::UntrustedCertificate { .. })));
    }

    #[test]
    fn an_empty_allowed_names_list_accepts_any_certificate_of_the_front_proxy_ca() {
        for allowed in ["", "[]"] {
            let user = authenticate(&config(allowed), &chain("stranger.crt"), &headers(&[("X-Remote-User", "alice")]), UnixTime::now());
            assert_eq!(user.map(|user| user.name).as_deref(), Ok("alice"));
        }
    }

    #[test]
    fn a_config_map_without_a_front_proxy_ca_or_with_a_broken_list_is_refused() {
        let provider = super::super::tls::provider();
        assert_eq!(parse_config(&BTreeMap::new(), Arc::clone(&provider)).unwrap_err(), ConfigError::NoCertificateAuthority);
        let mut broken = data("front-proxy-client");
        assert!(matches!(parse_config(&broken, Arc::clone(&provider)), Err(ConfigError::List { key: "requestheader-allowed-names", .. })));
        broken.insert("requestheader-allowed-names".to_string(), "[]".to_string());
        broken.insert("requestheader-client-ca-file".to_string(), "not pem".to_string());
        assert!(matches!(parse_config(&broken, provider), Err(ConfigError::CertificateAuthority { .. })));
    }

    #[test]
    fn percent_escapes_decode_and_malformed_ones_are_refused() {
        assert_eq!(percent_decode("a%2fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("plain").as_deref(), Some("plain"));
        assert_eq!(percent_decode("bad%2"), None);
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
