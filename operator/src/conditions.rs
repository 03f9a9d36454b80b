//! Status conditions whose `lastTransitionTime` moves only when their status changes, so an
//! unchanged world produces an identical status and no write.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Builds condition `kind`, keeping the previous transition time when the status is unchanged.
pub fn condition(
    previous: &[Condition],
    kind: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|condition| condition.type_ == kind && condition.status == status)
        .map(|condition| condition.last_transition_time.clone())
        .unwrap_or_else(|| Time(Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)));
    Condition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

pub fn is_true(conditions: &[Condition], kind: &str) -> bool {
    conditions.iter().any(|condition| condition.type_ == kind && condition.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_status_keeps_its_transition_time() {
        let first = condition(&[], "Ready", true, "Ready", "all good", Some(1));
        let old = Condition { last_transition_time: Time(Timestamp::UNIX_EPOCH), ..first };
        let again = condition(std::slice::from_ref(&old), "Ready", true, "Ready", "all good", Some(2));
        assert_eq!(again.last_transition_time, old.last_transition_time);
        let flipped = condition(std::slice::from_ref(&old), "Ready", false, "BucketUnreachable", "no", Some(2));
        assert_ne!(flipped.last_transition_time, old.last_transition_time);
    }
}
