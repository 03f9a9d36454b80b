//! May the caller do this: each request becomes authorization attributes (pure, [`attributes`])
//! and an [`Authorizer`] decides. The real one asks kube-apiserver with a SubjectAccessReview
//! (`system:auth-delegator` lets the operator create them), so the cluster's RBAC decides who
//! reads the metric, exactly as for a built-in API.

use super::authn::UserInfo;
use futures::future::BoxFuture;
use k8s_openapi::api::authorization::v1::{NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What a request does, in RBAC's terms (the fields of a SubjectAccessReview).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attributes {
    Resource { verb: String, group: String, version: String, namespace: Option<String>, resource: String, name: Option<String> },
    NonResource { verb: String, path: String },
}

impl Attributes {
    /// Kubernetes' wording for a denial: `User "bob" cannot list resource "m" in API group "g"
    /// in the namespace "n"`.
    pub fn describe_denial(&self, user: &str) -> String {
        match self {
            Self::Resource { verb, group, namespace, resource, name, .. } => {
                let object = match name {
                    Some(name) => format!("{resource}.{group} {name:?} is forbidden"),
                    None => format!("{resource}.{group} is forbidden"),
                };
                let scope = namespace.as_ref().map(|namespace| format!(" in the namespace {namespace:?}")).unwrap_or_default();
                format!("{object}: User {user:?} cannot {verb} resource {resource:?} in API group {group:?}{scope}")
            }
            Self::NonResource { verb, path } => format!("forbidden: User {user:?} cannot {verb} path {path:?}"),
        }
    }
}

/// The verb RBAC sees for a request: Go's apiserver maps a GET on a collection to `list`, with
/// `?watch=true` to `watch`, and a GET on a named object to `get`.
pub fn resource_verb(method: &axum::http::Method, named: bool, watch: bool) -> String {
    use axum::http::Method;
    match *method {
        Method::GET | Method::HEAD if watch => "watch",
        Method::GET | Method::HEAD if named => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => return method.as_str().to_ascii_lowercase(),
    }
    .to_string()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The authorizer's reason, for the log.
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("failed to create a SubjectAccessReview: {0}")]
    Review(#[source] kube::Error),
}

pub trait Authorizer: Send + Sync {
    fn authorize<'a>(&'a self, user: &'a UserInfo, attributes: &'a Attributes) -> BoxFuture<'a, Result<Decision, AuthorizeError>>;
}

/// How long a decision is reused (Go's delegated authorizer uses 10 s both ways).
pub const DECISION_TTL: Duration = Duration::from_secs(10);
const CACHE_LIMIT: usize = 4096;

/// Asks kube-apiserver, and remembers the answer for [`DECISION_TTL`].
pub struct SubjectAccessReviewAuthorizer {
    client: Client,
    cache: Mutex<HashMap<(UserInfo, Attributes), (Decision, Instant)>>,
}

impl SubjectAccessReviewAuthorizer {
    pub fn new(client: Client) -> Self {
        Self { client, cache: Mutex::new(HashMap::new()) }
    }
}

/// The review sent for `user` doing `attributes`.
pub fn review(user: &UserInfo, attributes: &Attributes) -> SubjectAccessReview {
    let (resource_attributes, non_resource_attributes) = match attributes {
        Attributes::Resource { verb, group, version, namespace, resource, name } => (
            Some(ResourceAttributes {
                verb: Some(verb.clone()),
                group: Some(group.clone()),
                version: Some(version.clone()),
                namespace: namespace.clone(),
                resource: Some(resource.clone()),
                name: name.clone(),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Attributes::NonResource { verb, path } => {
            (None, Some(NonResourceAttributes { verb: Some(verb.clone()), path: Some(path.clone()) }))
        }
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone().into_iter().collect()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}

impl Authorizer for SubjectAccessReviewAuthorizer {
    fn authorize<'a>(&'a self, user: &'a UserInfo, attributes: &'a Attributes) -> BoxFuture<'a, Result<Decision, AuthorizeError>> {
        Box::pin(async move {
            let key = (user.clone(), attributes.clone());
            if let Some((decision, at)) = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&key) {
                if at.elapsed() < DECISION_TTL {
                    return Ok(decision.clone());
                }
            }
            let reviews: Api<SubjectAccessReview> = Api::all(self.client.clone());
            let answer = reviews.create(&PostParams::default(), &review(user, attributes)).await.map_err(AuthorizeError::Review)?;
            let status = answer.status.unwrap_or_default();
            // Like Go's webhook authorizer: `allowed` decides; an evaluation error is only a reason.
            let reason = status.reason.filter(|reason| !reason.is_empty()).or(status.evaluation_error).unwrap_or_default();
            let decision = Decision { allowed: status.allowed, reason };
            let mut cache = self.cache.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if cache.len() >= CACHE_LIMIT {
                cache.retain(|_, (_, at)| at.elapsed() < DECISION_TTL);
                if cache.len() >= CACHE_LIMIT {
                    cache.clear();
                }
            }
            cache.insert(key, (decision.clone(), Instant::now()));
            Ok(decision)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;
    use std::collections::BTreeMap;

    fn hpa() -> UserInfo {
        UserInfo {
            name: "system:serviceaccount:kube-system:horizontal-pod-autoscaler".to_string(),
            uid: Some("1234".to_string()),
            groups: vec!["system:serviceaccounts".to_string(), "system:authenticated".to_string()],
            extra: BTreeMap::from([("authentication.kubernetes.io/pod-name".to_string(), vec!["kcm-0".to_string()])]),
        }
    }

    #[test]
    fn a_metric_list_is_reviewed_as_list_on_the_metric_resource_in_the_namespace() {
        let attributes = Attributes::Resource {
            verb: resource_verb(&Method::GET, false, false),
            group: "external.metrics.k8s.io".to_string(),
            version: "v1beta1".to_string(),
            namespace: Some("team-a".to_string()),
            resource: "floe_agent_network_bytes_per_second".to_string(),
            name: None,
        };
        let review = serde_json::to_value(review(&hpa(), &attributes)).unwrap();
        assert_eq!(
            review["spec"],
            serde_json::json!({
                "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                "uid": "1234",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["kcm-0"]},
                "resourceAttributes": {
                    "verb": "list", "group": "external.metrics.k8s.io", "version": "v1beta1",
                    "namespace": "team-a", "resource": "floe_agent_network_bytes_per_second",
                },
            })
        );
        assert_eq!(review["apiVersion"], "authorization.k8s.io/v1");
        assert_eq!(review["kind"], "SubjectAccessReview");
        assert_eq!(
            attributes.describe_denial("bob"),
            "floe_agent_network_bytes_per_second.external.metrics.k8s.io is forbidden: User \"bob\" cannot list resource \
             \"floe_agent_network_bytes_per_second\" in API group \"external.metrics.k8s.io\" in the namespace \"team-a\""
        );
    }

    #[test]
    fn discovery_is_reviewed_as_a_non_resource_path() {
        let attributes = Attributes::NonResource { verb: "get".to_string(), path: "/apis/external.metrics.k8s.io/v1beta1".to_string() };
        let review = serde_json::to_value(review(&hpa(), &attributes)).unwrap();
        assert_eq!(
            review["spec"]["nonResourceAttributes"],
            serde_json::json!({"verb": "get", "path": "/apis/external.metrics.k8s.io/v1beta1"})
        );
        assert!(review["spec"].get("resourceAttributes").is_none());
    }

    #[test]
    fn verbs_follow_the_apiservers_request_info() {
        assert_eq!(resource_verb(&Method::GET, false, false), "list");
        assert_eq!(resource_verb(&Method::GET, true, false), "get");
        assert_eq!(resource_verb(&Method::GET, false, true), "watch");
        assert_eq!(resource_verb(&Method::DELETE, false, false), "deletecollection");
        assert_eq!(resource_verb(&Method::POST, false, false), "create");
    }
}
