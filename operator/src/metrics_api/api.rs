//! The `external.metrics.k8s.io/v1beta1` surface, without I/O: what a path addresses (as Go's
//! apiserver classifies requests for authorization) and every response body.

use serde_json::{json, Value};
use std::collections::BTreeMap;

pub const GROUP: &str = "external.metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const GROUP_VERSION: &str = "external.metrics.k8s.io/v1beta1";
/// The one metric served; each AgentPool's HPA targets it (`agent_pool::build`).
pub const METRIC: &str = crate::agent_pool::build::BANDWIDTH_METRIC;
/// The label naming the pool in the HPA's selector (`labels::pool_selector`).
pub const POOL_LABEL: &str = "app.kubernetes.io/instance";

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `/healthz`, `/readyz`, `/livez` and their sub-paths: no authentication, as in Go's
    /// apiserver (`--authorization-always-allow-paths`).
    Health,
    /// Anything that is not an object of our group: discovery, OpenAPI, unknown paths.
    NonResource { path: String },
    /// `/apis/external.metrics.k8s.io/v1beta1/[namespaces/<namespace>/]<resource>[/<name>]`.
    Resource { namespace: Option<String>, resource: String, name: Option<String> },
}

pub fn target(path: &str) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => Target::Health,
        ["apis", GROUP, VERSION, "namespaces", namespace, resource, rest @ ..] if rest.len() <= 1 && !resource.is_empty() => {
            Target::Resource {
                namespace: Some(namespace.to_string()),
                resource: resource.to_string(),
                name: rest.first().map(|name| name.to_string()),
            }
        }
        ["apis", GROUP, VERSION, resource, rest @ ..] if rest.len() <= 1 && !resource.is_empty() => {
            Target::Resource { namespace: None, resource: resource.to_string(), name: rest.first().map(|name| name.to_string()) }
        }
        _ => Target::NonResource { path: path.to_string() },
    }
}

/// The value of one query parameter, decoded (`+` is a space, as in Go's `url.ParseQuery`).
pub fn query_parameter(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = super::authn::percent_decode(&key.replace('+', " "))?;
        (key == name).then(|| super::authn::percent_decode(&value.replace('+', " "))).flatten()
    })
}

pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [api_group_body()]})
}

fn api_group_body() -> Value {
    json!({
        "name": GROUP,
        "versions": [{"groupVersion": GROUP_VERSION, "version": VERSION}],
        "preferredVersion": {"groupVersion": GROUP_VERSION, "version": VERSION},
    })
}

pub fn api_group() -> Value {
    let mut group = api_group_body();
    group["kind"] = json!("APIGroup");
    group["apiVersion"] = json!("v1");
    group
}

/// Discovery of the group version: the metric as a namespaced resource (the HPA lists it).
pub fn api_resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{
            "name": METRIC,
            "singularName": "",
            "namespaced": true,
            "kind": "ExternalMetricValueList",
            "verbs": ["get", "list"],
        }],
    })
}

/// OpenAPI v2: valid and empty (the aggregator merges it into the cluster's document; external
/// metric adapters describe nothing a client generates code from).
pub fn openapi_v2() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": "floe-operator external metrics", "version": VERSION},
        "paths": {},
        "definitions": {},
    })
}

/// The OpenAPI v3 document of the group version, as valid and empty as [`openapi_v2`].
pub fn openapi_v3_document() -> Value {
    json!({
        "openapi": "3.0.0",
        "info": {"title": "floe-operator external metrics", "version": VERSION},
        "paths": {},
        "components": {"schemas": {}},
    })
}

pub const OPENAPI_V3_PATH: &str = "/openapi/v3/apis/external.metrics.k8s.io/v1beta1";

/// The OpenAPI v3 root (`/openapi/v3`): where the group version's document is.
pub fn openapi_v3_root() -> Value {
    // The hash only has to change when the document does; it is fixed with the binary.
    let hash = fnv1a(openapi_v3_document().to_string().as_bytes());
    json!({"paths": {format!("apis/{GROUP_VERSION}"): {"serverRelativeURL": format!("{OPENAPI_V3_PATH}?hash={hash:016X}")}}})
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

/// The document a non-resource path serves, if any.
pub fn non_resource_document(path: &str) -> Option<Value> {
    match path.trim_end_matches('/') {
        "/apis" => Some(api_group_list()),
        "/apis/external.metrics.k8s.io" => Some(api_group()),
        "/apis/external.metrics.k8s.io/v1beta1" => Some(api_resource_list()),
        "/openapi/v2" => Some(openapi_v2()),
        "/openapi/v3" => Some(openapi_v3_root()),
        OPENAPI_V3_PATH => Some(openapi_v3_document()),
        _ => None,
    }
}

/// Whole bytes per second as a Kubernetes quantity (`"4000"`); negative or non-finite is 0.
pub fn quantity(bytes_per_second: f64) -> String {
    let rounded = if bytes_per_second.is_finite() && bytes_per_second > 0.0 { bytes_per_second.round() } else { 0.0 };
    // `as` saturates at u64::MAX, far beyond any real rate.
    format!("{}", rounded as u64)
}

/// An `ExternalMetricValueList` with one value per entry of `values` (labels and quantity).
pub fn external_metric_value_list(timestamp: &str, values: &[(BTreeMap<String, String>, String)]) -> Value {
    let items: Vec<Value> = values
        .iter()
        .map(|(labels, value)| json!({"metricName": METRIC, "metricLabels": labels, "timestamp": timestamp, "value": value}))
        .collect();
    json!({"kind": "ExternalMetricValueList", "apiVersion": GROUP_VERSION, "metadata": {}, "items": items})
}

/// A `Status` failure body, as Kubernetes answers errors.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    if let Some(details) = details {
        status["details"] = details;
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_classified_like_the_apiservers_request_info() {
        assert_eq!(target("/healthz"), Target::Health);
        assert_eq!(target("/readyz/ping"), Target::Health);
        assert_eq!(target("/livez"), Target::Health);
        assert_eq!(
            target("/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/floe_agent_network_bytes_per_second"),
            Target::Resource { namespace: Some("team-a".into()), resource: METRIC.into(), name: None }
        );
        assert_eq!(
            target("/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/other_metric/x"),
            Target::Resource { namespace: Some("team-a".into()), resource: "other_metric".into(), name: Some("x".into()) }
        );
        assert_eq!(
            target("/apis/external.metrics.k8s.io/v1beta1/metric"),
            Target::Resource { namespace: None, resource: "metric".into(), name: None }
        );
        for path in ["/apis", "/apis/external.metrics.k8s.io/v1beta1", "/openapi/v2", "/", "/apis/other.group/v1/things"] {
            assert_eq!(target(path), Target::NonResource { path: path.into() }, "{path}");
        }
    }

    #[test]
    fn the_label_selector_query_parameter_is_decoded() {
        let query = "labelSelector=app.kubernetes.io%2Finstance%3Dagents%2Capp.kubernetes.io%2Fname%3Dfloe-agent&watch=false";
        assert_eq!(
            query_parameter(Some(query), "labelSelector").as_deref(),
            Some("app.kubernetes.io/instance=agents,app.kubernetes.io/name=floe-agent")
        );
        assert_eq!(query_parameter(Some("labelSelector=a+in+(b)"), "labelSelector").as_deref(), Some("a in (b)"));
        assert_eq!(query_parameter(Some("watch=false"), "labelSelector"), None);
        assert_eq!(query_parameter(None, "labelSelector"), None);
    }

    #[test]
    fn discovery_lists_the_metric_as_a_namespaced_external_metric_value_list() {
        let list = non_resource_document("/apis/external.metrics.k8s.io/v1beta1").unwrap();
        assert_eq!(list["kind"], "APIResourceList");
        assert_eq!(list["groupVersion"], "external.metrics.k8s.io/v1beta1");
        assert_eq!(
            list["resources"],
            json!([{"name": "floe_agent_network_bytes_per_second", "singularName": "", "namespaced": true, "kind": "ExternalMetricValueList", "verbs": ["get", "list"]}])
        );
        assert_eq!(non_resource_document("/apis").unwrap()["groups"][0]["preferredVersion"]["version"], "v1beta1");
        assert_eq!(non_resource_document("/apis/external.metrics.k8s.io").unwrap()["kind"], "APIGroup");
        assert_eq!(non_resource_document("/unknown"), None);
    }

    #[test]
    fn the_openapi_documents_are_valid_and_the_v3_root_points_at_the_served_document() {
        assert_eq!(openapi_v2()["swagger"], "2.0");
        assert!(openapi_v2()["paths"].is_object() && openapi_v2()["info"]["title"].is_string());
        let root = openapi_v3_root();
        let url = root["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"].as_str().unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(hash.len(), 16);
        assert_eq!(non_resource_document(path).unwrap()["openapi"], "3.0.0");
    }

    #[test]
    fn a_metric_value_list_has_the_shape_the_hpa_decodes() {
        let labels = crate::labels::pool_selector("agents");
        let list = external_metric_value_list("2025-01-02T03:04:05Z", &[(labels, quantity(4000.4))]);
        assert_eq!(
            list,
            json!({
                "kind": "ExternalMetricValueList",
                "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": [{
                    "metricName": "floe_agent_network_bytes_per_second",
                    "metricLabels": {"app.kubernetes.io/instance": "agents", "app.kubernetes.io/name": "floe-agent"},
                    "timestamp": "2025-01-02T03:04:05Z",
                    "value": "4000",
                }],
            })
        );
    }

    #[test]
    fn quantities_are_whole_non_negative_bytes() {
        assert_eq!(quantity(0.0), "0");
        assert_eq!(quantity(1999.5), "2000");
        assert_eq!(quantity(-3.0), "0");
        assert_eq!(quantity(f64::NAN), "0");
        assert_eq!(quantity(52_428_800.2), "52428800");
    }

    #[test]
    fn errors_are_status_objects() {
        let body = status(404, "NotFound", "the server could not find the requested resource", Some(json!({"group": GROUP, "kind": "x"})));
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["status"], "Failure");
        assert_eq!(body["code"], 404);
        assert_eq!(body["reason"], "NotFound");
        assert_eq!(body["details"]["group"], GROUP);
    }
}
