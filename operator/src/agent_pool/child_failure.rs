//! A child the apiserver would not take: what it means for the user, as a condition reason and a
//! one-sentence message. Pure; the reconcile turns it into `Reconciled=False` and one Warning event.

use crate::messages::shorten;

/// Condition messages stay under this: `kubectl get -o wide` and `describe` stay readable.
pub const MAX_MESSAGE: usize = 200;

#[derive(Debug, thiserror::Error)]
#[error("failed to {action} the {kind} {name}: {source}")]
pub struct ChildFailure {
    /// `apply` or `read`.
    pub action: &'static str,
    pub kind: &'static str,
    pub name: String,
    pub source: kube::Error,
}

impl ChildFailure {
    /// A bounded condition reason (and metric/event label): what kind of refusal this is.
    pub fn reason(&self) -> &'static str {
        match self.status_code() {
            // The object is invalid for a check the CRD schema cannot make (e.g. requests above
            // limits): only a change of the AgentPool helps.
            Some(422) | Some(400) => "ChildInvalid",
            // A ResourceQuota, LimitRange or admission policy of the namespace, or RBAC.
            Some(403) => "ChildForbidden",
            // Conflicts, timeouts, apiserver errors, no connection: retried.
            _ => "ApplyFailed",
        }
    }

    /// True when retrying without a change cannot succeed.
    pub fn needs_a_change(&self) -> bool {
        matches!(self.status_code(), Some(400 | 403 | 422))
    }

    /// One sentence: which child, the apiserver's own cause, what to do. Under `MAX_MESSAGE`
    /// (the same bound as `virtual_cluster::problems`).
    pub fn message(&self) -> String {
        let advice = match self.reason() {
            "ChildInvalid" => "fix the AgentPool spec; agents run the last applied one",
            "ChildForbidden" => "check the namespace's quotas and admission policies",
            _ => "retrying",
        };
        let head = match self.action {
            "apply" => format!("{} {} refused by the apiserver: ", self.kind, self.name),
            action => format!("failed to {action} {} {}: ", self.kind, self.name),
        };
        let cause = match &self.source {
            // The agent container's fields are the pool's own (`resources.requests` is the
            // pool's spec.resources.requests): drop the pod template's path.
            kube::Error::Api(status) => {
                admission_first(strip_object_prefix(&status.message)).replace("spec.template.spec.containers[0].", "")
            }
            _ => "no answer from the apiserver".to_string(),
        };
        let room = (MAX_MESSAGE - 1).saturating_sub(head.len() + advice.len() + 2);
        format!("{head}{}; {advice}", shorten(&cause, room))
    }

    fn status_code(&self) -> Option<u16> {
        match &self.source {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        }
    }
}

/// The apiserver starts with `Deployment.apps "agents" is invalid: ` (or `is forbidden: `); the
/// message already names the object, so keep only the cause.
fn strip_object_prefix(message: &str) -> &str {
    for marker in [" is invalid: ", " is forbidden: "] {
        if let Some(index) = message.find(marker) {
            return &message[index + marker.len()..];
        }
    }
    message
}

/// `ValidatingAdmissionPolicy 'max-two' with binding 'max-two' denied request: at most 2
/// replicas` becomes `at most 2 replicas (ValidatingAdmissionPolicy 'max-two')`: the policy's
/// own words first, so cutting to fit drops the name rather than the reason.
fn admission_first(cause: &str) -> String {
    const DENIED: &str = " denied request: ";
    match cause.find(DENIED) {
        Some(index) => {
            let policy = cause[..index].split(" with binding ").next().unwrap_or_default();
            format!("{} ({policy})", &cause[index + DENIED.len()..])
        }
        None => cause.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn api_error(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure(message, reason).with_code(code)))
    }

    fn failure(code: u16, reason: &str, message: &str) -> ChildFailure {
        ChildFailure { action: "apply", kind: "Deployment", name: "agents".to_string(), source: api_error(code, reason, message) }
    }

    #[test]
    fn an_invalid_deployment_names_the_child_the_cause_and_the_fix() {
        let failure = failure(
            422,
            "Invalid",
            r#"Deployment.apps "agents" is invalid: spec.template.spec.containers[0].resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1"#,
        );
        assert_eq!(failure.reason(), "ChildInvalid");
        assert!(failure.needs_a_change());
        let message = failure.message();
        assert_eq!(
            message,
            r#"Deployment agents refused by the apiserver: resources.requests: Invalid value: "2": must be less than or equal to cpu limit of 1; fix the AgentPool spec; agents run the last applied one"#
        );
        assert!(message.len() <= MAX_MESSAGE, "{} bytes: {message}", message.len());
    }

    #[test]
    fn a_quota_refusal_points_at_the_namespace_policies() {
        let failure = failure(
            403,
            "Forbidden",
            r#"deployments.apps "agents" is forbidden: exceeded quota: no-deployments, requested: count/deployments.apps=1, used: count/deployments.apps=0, limited: count/deployments.apps=0"#,
        );
        assert_eq!(failure.reason(), "ChildForbidden");
        assert!(failure.message().contains("exceeded quota: no-deployments"), "{}", failure.message());
        assert!(failure.message().contains("quotas and admission policies"), "{}", failure.message());
        assert!(failure.message().len() <= MAX_MESSAGE);
    }

    #[test]
    fn a_server_error_is_retried_and_a_long_cause_is_cut_to_fit() {
        let failure = failure(500, "InternalError", &"etcdserver: request timed out ".repeat(20));
        assert_eq!(failure.reason(), "ApplyFailed");
        assert!(!failure.needs_a_change());
        assert!(failure.message().len() <= MAX_MESSAGE, "{}", failure.message());
        assert!(failure.message().ends_with("; retrying"));
    }

    #[test]
    fn an_admission_policy_refusal_leads_with_the_policys_reason() {
        let failure = failure(
            403,
            "Forbidden",
            "deployments.apps \"agents\" is forbidden: ValidatingAdmissionPolicy 'floe-e2e-max-two-admission-01kbx' with binding 'floe-e2e-max-two-admission-01kbx' denied request: deployments in this namespace may run at most 2 replicas",
        );
        let message = failure.message();
        assert!(
            message.starts_with("Deployment agents refused by the apiserver: deployments in this namespace may run at most 2 replicas"),
            "{message}"
        );
        assert!(message.chars().count() < MAX_MESSAGE, "{message}");
    }
}
