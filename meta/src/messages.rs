//! Text for people: condition messages, event notes and `floe diagnose` lines are one short
//! sentence, so long causes from elsewhere (the apiserver, an S3 server, etcd) are cut to fit, and
//! an error chain is told by its root cause in plain words ("connection refused"), never by its
//! `Debug` dump. Shared because the operator's conditions and the agent's `floe diagnose` report
//! the same failures of etcd and the bucket and should word them alike.

use std::error::Error;

/// Longest cause we quote from an error chain.
const MAX_CAUSE: usize = 100;

/// The root cause of `error` in plain words: the `std::io::Error` at the bottom of the chain as
/// "connection refused", "timed out", ...; otherwise the innermost error's own text, cut to fit.
/// etcd-client's error does not expose its gRPC status as a `source`, so it is opened here.
pub fn plain_cause(error: &(dyn Error + 'static)) -> String {
    let mut current = error;
    loop {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            return io_words(io);
        }
        let next = match current.downcast_ref::<etcd_client::Error>() {
            Some(etcd_client::Error::GRpcStatus(status)) => match status.source() {
                Some(source) => Some(source),
                None if !status.message().is_empty() => return shorten(status.message(), MAX_CAUSE),
                None => return format!("etcd answered {:?}", status.code()).to_lowercase(),
            },
            Some(etcd_client::Error::TransportError(transport)) => Some(transport as &(dyn Error + 'static)),
            _ => current.source(),
        };
        match next {
            Some(next) => current = next,
            None => return shorten(&without_url_paths(&current.to_string()), MAX_CAUSE),
        }
    }
}

/// `http://host:port/bucket/object-<random id>` becomes `http://host:port`: the endpoint is what
/// a person checks, and a random object name only hides the cause that follows it.
fn without_url_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = [rest.find("http://"), rest.find("https://")].into_iter().flatten().min() {
        let scheme_end = start + rest[start..].find("://").unwrap_or(0) + 3;
        let token_end = rest[scheme_end..]
            .find(|character: char| character.is_whitespace() || character == ')' || character == ',')
            .map_or(rest.len(), |end| scheme_end + end);
        let path_start = rest[scheme_end..token_end].find('/').map_or(token_end, |slash| scheme_end + slash);
        out.push_str(&rest[..path_start]);
        rest = &rest[token_end..];
    }
    out.push_str(rest);
    out
}

fn io_words(error: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::AddrNotAvailable => "address not available".to_string(),
        ErrorKind::HostUnreachable => "host unreachable".to_string(),
        ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
        // e.g. DNS: "failed to lookup address information: Name or service not known".
        _ => shorten(&error.to_string(), MAX_CAUSE),
    }
}

/// `text` cut to at most `max` bytes on a character boundary, with `…` when something was cut.
pub fn shorten(text: &str, max: usize) -> String {
    let text = text.trim();
    if text.len() <= max {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", text[..end].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("tcp connect error")]
    struct Connect(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request for url (http://127.0.0.1:1/bucket/probe-2f1c): {0:?}")]
    struct Request(#[source] Connect);

    #[test]
    fn an_error_chain_is_told_by_its_root_cause_in_plain_words() {
        let refused = Request(Connect(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)));
        assert_eq!(plain_cause(&refused), "connection refused");
        let timed_out = Connect(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(plain_cause(&timed_out), "timed out");
    }

    #[test]
    fn a_url_keeps_its_endpoint_and_loses_its_path() {
        assert_eq!(
            without_url_paths("Error performing PUT http://127.0.0.1:9000/bucket/probe-1234 in 3s (see https://x.io/a/b)"),
            "Error performing PUT http://127.0.0.1:9000 in 3s (see https://x.io)"
        );
        assert_eq!(without_url_paths("no url here"), "no url here");
    }

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_on_a_character_boundary() {
        assert_eq!(shorten(" fine ", 10), "fine");
        let cut = shorten("éééééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("abcdefghij", 8), "abcde…");
    }
}
