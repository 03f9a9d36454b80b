//! The problems a user fixes about a VirtualCluster's etcd and bucket, worded: one sentence of
//! cause in plain words, the endpoint or object, and what to do, under [`MAX_MESSAGE`]. Pure, so
//! a test can hold every message to that (see `tests` below).

use crate::messages::{plain_cause, shorten};
use std::error::Error;

/// Longest condition message: `kubectl describe` and `get -o wide` stay readable.
pub const MAX_MESSAGE: usize = 200;
/// Longest endpoint, URL or object name quoted in a message.
const MAX_NAME: usize = 64;

/// A problem the user fixes: it becomes a condition message and an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Unusable {
    /// CamelCase reason for the condition.
    pub reason: &'static str,
    pub message: String,
}

/// `head`, the cause cut to what room is left, then `advice`: always under [`MAX_MESSAGE`].
pub fn sentence(reason: &'static str, head: &str, cause: &str, advice: &str) -> Unusable {
    let room = (MAX_MESSAGE - 1).saturating_sub(head.len() + advice.len() + 2);
    Unusable { reason, message: format!("{head}{}; {advice}", shorten(cause, room)) }
}

/// The kube error of a failed Secret read in plain words (the apiserver's message, not the
/// client's `Debug`).
fn kube_cause(error: &kube::Error) -> String {
    match error {
        // The apiserver's 403 text repeats the Secret and the service account at length.
        kube::Error::Api(status) if status.code == 403 => "the operator may not read it (403 Forbidden)".to_string(),
        kube::Error::Api(status) => status.message.clone(),
        other => plain_cause(other),
    }
}

/// First endpoint, and how many more: a list of sixteen would fill the message.
fn endpoints(endpoints: &[String]) -> String {
    let first = shorten(endpoints.first().map(String::as_str).unwrap_or("(none)"), MAX_NAME);
    match endpoints.len() {
        0 | 1 => first,
        count => format!("{first} (and {} more)", count - 1),
    }
}

pub fn secret_unreadable(name: &str, field: &str, error: &kube::Error) -> Unusable {
    let head = format!("failed to read Secret {} ({field}): ", shorten(name, MAX_NAME));
    sentence("SecretUnreadable", &head, &kube_cause(error), "check the operator's RBAC and the apiserver")
}

pub fn secret_not_found(name: &str, field: &str) -> Unusable {
    let message =
        format!("Secret {} ({field}) does not exist in this namespace; create it or change the reference", shorten(name, MAX_NAME));
    Unusable { reason: "SecretNotFound", message }
}

pub fn secret_key_missing(name: &str, field: &str, key: &str) -> Unusable {
    let message = format!("Secret {} ({field}) has no key {key}; add it to the Secret", shorten(name, MAX_NAME));
    Unusable { reason: "SecretKeyMissing", message }
}

pub fn secret_key_empty(name: &str, field: &str, key: &str) -> Unusable {
    let message = format!("Secret {} ({field}) has an empty {key}; put a value in it", shorten(name, MAX_NAME));
    Unusable { reason: "SecretKeyEmpty", message }
}

pub fn secret_key_invalid(key: &str) -> Unusable {
    Unusable { reason: "SecretKeyInvalid", message: format!("Secret key {key} is not UTF-8 text; store it as plain text") }
}

pub fn no_identity() -> Unusable {
    Unusable { reason: "InvalidSpec", message: "the VirtualCluster has no namespace or name".to_string() }
}

pub fn bucket_url_invalid(reason: &str) -> Unusable {
    sentence("InvalidSpec", "spec.objectStore.url is not usable: ", reason, "example: s3://bucket/prefix")
}

pub fn bucket_url_in_memory() -> Unusable {
    let message = "spec.objectStore.url memory:// loses data on restart; use s3://bucket/prefix".to_string();
    Unusable { reason: "InvalidSpec", message }
}

pub fn temporary_files(action: &str, path: &str, error: &(dyn Error + 'static)) -> Unusable {
    let head = format!("failed to {action} {} for the etcd TLS files: ", shorten(path, MAX_NAME));
    sentence("TemporaryFiles", &head, &plain_cause(error), "check the operator's writable temporary directory")
}

pub fn etcd_unreachable(endpoint_list: &[String], cause: &str) -> Unusable {
    let head = format!("etcd at {} did not answer: ", endpoints(endpoint_list));
    sentence("EtcdUnreachable", &head, cause, "check spec.etcd.endpoints, the credentials and the network policy")
}

pub fn etcd_timeout(endpoint_list: &[String], seconds: u64) -> Unusable {
    let message =
        format!("etcd at {} did not answer within {seconds}s; check spec.etcd.endpoints and the network policy", endpoints(endpoint_list));
    Unusable { reason: "EtcdUnreachable", message }
}

pub fn registration_failed(error: &(dyn Error + 'static)) -> Unusable {
    sentence(
        "RegistrationFailed",
        "failed to register in etcd: ",
        &plain_cause(error),
        "check that the etcd user may write spec.etcd.prefix",
    )
}

pub fn bucket_unusable(error: &(dyn Error + 'static)) -> Unusable {
    sentence("BucketUnusable", "spec.objectStore cannot be opened: ", &plain_cause(error), "check url, endpoint and region")
}

/// `cause` is `PUT failed: connection refused` and the like.
pub fn bucket_unreachable(url: &str, cause: &str) -> Unusable {
    let head = format!("bucket {}: ", shorten(url, MAX_NAME));
    sentence("BucketUnreachable", &head, cause, "check spec.objectStore (url, endpoint, region) and the credentials Secret")
}

pub fn bucket_timeout(url: &str, seconds: u64) -> Unusable {
    let message = format!(
        "bucket {} did not answer within {seconds}s; check spec.objectStore.endpoint and the network policy",
        shorten(url, MAX_NAME)
    );
    Unusable { reason: "BucketUnreachable", message }
}

/// Deleting with `deletionPolicy: Delete` is blocked: `what` is "etcd" or "the objects".
pub fn cleanup_blocked(what: &str, cause: &str) -> String {
    let head = format!("deletionPolicy Delete cannot remove {what} yet: ");
    sentence("CleanupFailed", &head, cause, "fix access, or set deletionPolicy: Retain to keep the data").message
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A realistic worst case of every input: long names, a sixteen-endpoint list, a long URL,
    /// and causes as deep error chains (the one that used to print
    /// `tonic::transport::Error(Transport, ConnectError(...))`).
    pub(crate) fn every_problem() -> Vec<Unusable> {
        #[derive(Debug, thiserror::Error)]
        #[error(
            "error sending request for url (http://127.0.0.1:1/floe-test/demo/_floe/probe-8a1f0c3e-5b7d-4d8e-9a0b-1c2d3e4f5a6b): {0:?}"
        )]
        struct Request(#[source] std::io::Error);
        let refused = Request(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let weird = Request(std::io::Error::other("failed to lookup address information: Name or service not known"));
        #[derive(Debug, thiserror::Error)]
        #[error("Error performing PUT http://127.0.0.1:9000/floe-test/demo/_floe/probes/probe-8a1f0c3e-5b7d-4d8e-9a0b-1c2d3e4f5a6b in 3.19s, after 10 retries, max_retries: 10, retry_timeout: 180s - Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>")]
        struct Denied;
        let long_name = "floe-production-eu-west-1-object-store-credentials-secret";
        let endpoints: Vec<String> =
            (0..16).map(|index| format!("etcd-{index}.floe-etcd-headless.floe-system.svc.cluster.local:2379")).collect();
        let url = "s3://floe-production-eu-west-1-data/virtual-clusters/team-analytics/clickstream-events";
        let forbidden = kube::Error::Api(Box::new(
            kube::core::Status::failure(
                &format!(r#"secrets "{long_name}" is forbidden: User "system:serviceaccount:floe-system:floe-operator" cannot get resource "secrets" in API group "" in the namespace "team-analytics""#),
                "Forbidden",
            )
            .with_code(403),
        ));
        vec![
            secret_unreadable(long_name, "spec.objectStore.credentialsSecretRef", &forbidden),
            secret_not_found(long_name, "spec.objectStore.credentialsSecretRef"),
            secret_key_missing(long_name, "spec.objectStore.credentialsSecretRef", "AWS_SECRET_ACCESS_KEY"),
            secret_key_invalid("AWS_SECRET_ACCESS_KEY"),
            no_identity(),
            bucket_url_invalid(&"bucket names must be 3 to 63 characters of a-z, 0-9, dot and hyphen; ".repeat(4)),
            bucket_url_in_memory(),
            temporary_files("write", "/tmp/floe-operator/8a1f0c3e-5b7d-4d8e-9a0b-1c2d3e4f5a6b/tls.key", &weird),
            etcd_unreachable(&endpoints, &plain_cause(&refused)),
            etcd_unreachable(&endpoints[..1], &plain_cause(&weird)),
            etcd_timeout(&endpoints, 10),
            registration_failed(&refused),
            bucket_unusable(&weird),
            bucket_unreachable(url, &format!("PUT failed: {}", plain_cause(&refused))),
            bucket_unreachable(url, &format!("GET failed: {}", plain_cause(&weird))),
            bucket_unreachable(url, &format!("PUT failed: {}", plain_cause(&Denied))),
            bucket_timeout(url, 10),
            Unusable {
                reason: "CleanupFailed",
                message: cleanup_blocked("etcd", &etcd_unreachable(&endpoints, &plain_cause(&refused)).message),
            },
            Unusable { reason: "CleanupFailed", message: cleanup_blocked("the objects", &plain_cause(&Denied)) },
        ]
    }

    #[test]
    fn every_problem_is_one_short_sentence_without_debug_formatting() {
        for problem in every_problem() {
            let message = &problem.message;
            assert!(message.len() < MAX_MESSAGE, "{} ({} characters): {message}", problem.reason, message.len());
            assert!(!message.contains("Error(") && !message.contains("{ "), "{}: debug formatting in {message}", problem.reason);
            assert!(!message.contains("probe-8a1f"), "{}: a random probe id in {message}", problem.reason);
        }
    }

    #[test]
    fn a_refused_connection_says_so_in_plain_words() {
        let problem = bucket_unreachable("s3://floe-test/demo", "PUT failed: connection refused");
        assert_eq!(
            problem.message,
            "bucket s3://floe-test/demo: PUT failed: connection refused; check spec.objectStore (url, endpoint, region) and the credentials Secret"
        );
        let endpoints = ["127.0.0.1:2".to_string()];
        assert!(etcd_unreachable(&endpoints, "connection refused")
            .message
            .starts_with("etcd at 127.0.0.1:2 did not answer: connection refused;"));
    }
}
