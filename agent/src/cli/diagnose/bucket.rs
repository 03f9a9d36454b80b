//! The bucket check: PUT, GET, LIST and DELETE of one small probe object, the four operations
//! agents need (LIST for garbage collection), under `_floe/diagnose/<virtual cluster>/` so a
//! probe never lands among a cluster's segments. A failure names the operation, the cause in plain
//! words and what to check for that cause.

use super::Check;
use crate::storage::{SegmentStore, StoreError};
use bytes::Bytes;
use floe_meta::messages::{plain_cause, shorten};
use std::time::Duration;

const NAME: &str = "bucket";

/// Where the probe objects go, below the store's own prefix.
pub fn probe_prefix(virtual_cluster: &str) -> String {
    format!("_floe/diagnose/{virtual_cluster}")
}

/// The store could not even be configured (a malformed endpoint, say).
pub fn unusable(url: &str, error: &StoreError) -> Check {
    Check::fail(NAME, format!("{url} cannot be opened: {}; check --object-store and --s3-endpoint (AWS_ENDPOINT)", plain_cause(error)))
}

/// The probe, bounded by `timeout` as a whole.
pub async fn probe(store: &SegmentStore, url: &str, virtual_cluster: &str, timeout: Duration) -> Check {
    let prefix = probe_prefix(virtual_cluster);
    let name = format!("{prefix}/{}", ulid::Ulid::new());
    match tokio::time::timeout(timeout, round_trip(store, &prefix, &name, url.starts_with("file://"))).await {
        Ok(Ok(())) => Check::pass(NAME, format!("{url}: PUT, GET, LIST and DELETE of a probe object under {prefix}/ succeeded")),
        Ok(Err(failure)) => {
            let leftover = if failure.operation == "PUT" || failure.operation == "DELETE" {
                String::new()
            } else {
                // The round trip stopped before its DELETE: try once more so no probe is left.
                match store.delete(&name).await {
                    Ok(()) => String::new(),
                    Err(_) => format!(" (the probe object {name} may be left behind)"),
                }
            };
            Check::fail(NAME, format!("{url}: {} of a probe object failed: {}{leftover}", failure.operation, failure.explanation))
        }
        Err(_) => Check::fail(
            NAME,
            format!(
                "{url} did not finish the probe (PUT, GET, LIST, DELETE) within {}; check --s3-endpoint (AWS_ENDPOINT), \
                 the network path to it and the store's health",
                super::human_duration(timeout)
            ),
        ),
    }
}

/// Which operation failed and why, in words.
struct Failure {
    operation: &'static str,
    explanation: String,
}

async fn round_trip(store: &SegmentStore, prefix: &str, name: &str, file_bucket: bool) -> Result<(), Failure> {
    let body = Bytes::from(format!("floe diagnose probe {name}"));
    let failed =
        |operation: &'static str| move |error: StoreError| Failure { operation, explanation: explain(operation, &error, file_bucket) };
    store.put(name, body.clone()).await.map_err(failed("PUT"))?;
    let read = store.get(name).await.map_err(failed("GET"))?;
    if read != body {
        return Err(Failure {
            operation: "GET",
            explanation: format!(
                "it returned {} bytes other than the {} just written; the store is not consistent",
                read.len(),
                body.len()
            ),
        });
    }
    let listed = store.list(prefix).await.map_err(failed("LIST"))?;
    if !listed.iter().any(|listed| listed == name) {
        return Err(Failure {
            operation: "LIST",
            explanation: format!("the listing of {prefix}/ lacks the object just written; the store is not consistent"),
        });
    }
    store.delete(name).await.map_err(failed("DELETE"))?;
    Ok(())
}

/// What kind of trouble an error is, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trouble {
    /// 401/403: wrong credentials, or credentials without the permission.
    Denied,
    /// 404 on a PUT: the bucket itself is missing.
    NoBucket,
    /// Nothing answered: refused, timed out, unknown host.
    Unreachable,
    Other,
}

fn explain(operation: &str, error: &StoreError, file_bucket: bool) -> String {
    let text = chain_text(error);
    let trouble = classify(operation, error, &text);
    let cause = match (status_line(&text), s3_code(&text)) {
        (Some(status), Some(code)) => format!("{status} ({code})"),
        (Some(status), None) => status,
        _ => plain_cause(error),
    };
    let advice = match trouble {
        Trouble::Denied if file_bucket => {
            format!("this user may not {} in the directory; fix its owner or mode, or run as the agents' user", permission(operation))
        }
        Trouble::Denied => format!(
            "the credentials are wrong or may not {} here; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (--s3-access-key-id, --s3-secret-access-key) and the bucket policy",
            permission(operation)
        ),
        Trouble::NoBucket => "the bucket does not exist; create it, or fix the bucket name in --object-store".to_string(),
        Trouble::Unreachable => {
            "nothing answered at the endpoint; check --s3-endpoint (AWS_ENDPOINT), AWS_REGION and the network path to the store".to_string()
        }
        Trouble::Other => "check the store's health and its logs".to_string(),
    };
    format!("{}; {advice}", shorten(&cause, 120))
}

/// The S3 permission an operation needs, as a policy names it.
fn permission(operation: &str) -> &'static str {
    match operation {
        "PUT" => "write (s3:PutObject)",
        "GET" => "read (s3:GetObject)",
        "LIST" => "list (s3:ListBucket)",
        _ => "delete (s3:DeleteObject)",
    }
}

fn classify(operation: &str, error: &StoreError, text: &str) -> Trouble {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        match error.downcast_ref::<object_store::Error>() {
            Some(object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }) => return Trouble::Denied,
            Some(object_store::Error::NotFound { .. }) if operation == "PUT" => return Trouble::NoBucket,
            _ => {}
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            match io.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::ConnectionReset
                | ErrorKind::TimedOut
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::NotConnected => return Trouble::Unreachable,
                // A file:// bucket in a directory this user may not write.
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => return Trouble::Denied,
                _ => {}
            }
        }
        current = error.source();
    }
    if ["AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId"].iter().any(|code| text.contains(code)) {
        Trouble::Denied
    } else if text.contains("NoSuchBucket") {
        Trouble::NoBucket
    } else if ["error sending request", "dns error", "connect"].iter().any(|words| text.contains(words)) {
        Trouble::Unreachable
    } else {
        Trouble::Other
    }
}

/// Every message of the error chain, joined: the HTTP status and the S3 error code sit deep in it.
fn chain_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(error) = current {
        text.push_str(": ");
        text.push_str(&error.to_string());
        current = error.source();
    }
    text
}

/// `403 Forbidden` from object_store's "status code: 403 Forbidden: <body>".
fn status_line(text: &str) -> Option<String> {
    let start = text.find("status code: ")? + "status code: ".len();
    let status = text[start..].split(':').next()?.trim();
    (!status.is_empty()).then(|| status.to_string())
}

/// The S3 error code of an XML error body: `<Code>SignatureDoesNotMatch</Code>`.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{ObjectStoreUrl, S3Options};

    #[tokio::test]
    async fn a_writable_bucket_passes_and_keeps_no_probe() {
        let directory = tempfile::tempdir().unwrap();
        let store = SegmentStore::open_unobserved(&ObjectStoreUrl::File(directory.path().to_path_buf()), &S3Options::default()).unwrap();
        let check = probe(&store, "file:///bucket", "payments", Duration::from_secs(10)).await;
        assert_eq!(check.outcome, super::super::Outcome::Pass, "{check:?}");
        assert!(store.list(&probe_prefix("payments")).await.unwrap().is_empty(), "the probe object was deleted");
    }

    #[test]
    fn status_and_s3_code_are_read_from_an_error_body() {
        let text = "failed to write object _floe/diagnose/x: Error performing PUT http://127.0.0.1:9000/b/x in 3ms - \
                    Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code></Error>";
        assert_eq!(status_line(text).as_deref(), Some("403 Forbidden"));
        assert_eq!(s3_code(text).as_deref(), Some("SignatureDoesNotMatch"));
        assert_eq!((status_line("connection refused"), s3_code("connection refused")), (None, None));
    }

    #[test]
    fn each_operation_names_the_permission_it_needs() {
        assert_eq!(permission("PUT"), "write (s3:PutObject)");
        assert_eq!(permission("LIST"), "list (s3:ListBucket)");
    }
}
