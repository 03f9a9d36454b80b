//! Topic configuration keys Floe understands, their defaults, and validation.

use std::collections::BTreeMap;

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// (name, default value, validator). The order is the order DescribeConfigs lists them in.
type Validator = fn(&str) -> Result<(), String>;

const KNOWN: &[(&str, &str, Validator)] = &[
    ("cleanup.policy", "delete", validate_cleanup_policy),
    ("compression.type", "producer", validate_compression_type),
    ("delete.retention.ms", "86400000", validate_non_negative_integer),
    ("max.compaction.lag.ms", "9223372036854775807", validate_positive_integer),
    ("max.message.bytes", "1048588", validate_positive_integer),
    ("message.timestamp.type", "CreateTime", validate_timestamp_type),
    ("min.cleanable.dirty.ratio", "0.5", validate_ratio),
    ("min.compaction.lag.ms", "0", validate_non_negative_integer),
    ("min.insync.replicas", "1", validate_positive_integer),
    ("retention.bytes", "-1", validate_integer_or_minus_one),
    ("retention.ms", "604800000", validate_integer_or_minus_one),
    ("segment.bytes", "1073741824", validate_positive_integer),
    ("segment.ms", "604800000", validate_positive_integer),
];

fn validate_cleanup_policy(value: &str) -> Result<(), String> {
    let policies: Vec<&str> = value.split(',').map(str::trim).collect();
    if policies.is_empty() || policies.iter().any(|policy| !matches!(*policy, "delete" | "compact")) {
        return Err(format!("cleanup.policy must be delete, compact or compact,delete, got {value:?}"));
    }
    Ok(())
}
fn validate_non_negative_integer(value: &str) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(number) if number >= 0 => Ok(()),
        _ => Err(format!("expected an integer >= 0, got {value:?}")),
    }
}
fn validate_ratio(value: &str) -> Result<(), String> {
    match value.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(()),
        _ => Err(format!("expected a number between 0 and 1, got {value:?}")),
    }
}
fn validate_compression_type(value: &str) -> Result<(), String> {
    match value {
        "producer" => Ok(()),
        other => Err(format!("compression.type={other} would require recompressing batches; only compression.type=producer is supported")),
    }
}
fn validate_positive_integer(value: &str) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(number) if number > 0 => Ok(()),
        _ => Err(format!("expected a positive integer, got {value:?}")),
    }
}
fn validate_integer_or_minus_one(value: &str) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(number) if number >= -1 => Ok(()),
        _ => Err(format!("expected an integer >= -1, got {value:?}")),
    }
}
fn validate_timestamp_type(value: &str) -> Result<(), String> {
    match value {
        "CreateTime" => Ok(()),
        "LogAppendTime" => Err("message.timestamp.type=LogAppendTime is not supported yet".to_string()),
        other => Err(format!("message.timestamp.type must be CreateTime, got {other:?}")),
    }
}

/// Validates user-supplied configs; the error names the key and what is wrong.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        let Some((_, _, validator)) = KNOWN.iter().find(|(known, _, _)| known == name) else {
            return Err(format!("unknown topic config {name:?}"));
        };
        validator(value).map_err(|reason| format!("invalid value for {name}: {reason}"))?;
    }
    Ok(())
}

/// Every known config with its effective value and whether it was set on the topic.
pub fn effective(configs: &BTreeMap<String, String>) -> Vec<(&'static str, String, bool)> {
    KNOWN
        .iter()
        .map(|(name, default, _)| match configs.get(*name) {
            Some(value) => (*name, value.clone(), true),
            None => (*name, default.to_string(), false),
        })
        .collect()
}

fn policies(configs: &BTreeMap<String, String>) -> impl Iterator<Item = &str> {
    configs.get("cleanup.policy").map(String::as_str).unwrap_or("delete").split(',').map(str::trim)
}

/// `cleanup.policy` includes `compact`: the key-compaction job keeps the latest record per key,
/// and produced records must carry a key (Kafka refuses keyless records with INVALID_RECORD).
pub fn is_compacted(configs: &BTreeMap<String, String>) -> bool {
    policies(configs).any(|policy| policy == "compact")
}

/// `cleanup.policy` includes `delete`: retention.ms and retention.bytes apply. A topic that is
/// only compacted keeps its latest values for ever, as in Kafka.
pub fn is_deleted_by_retention(configs: &BTreeMap<String, String>) -> bool {
    policies(configs).any(|policy| policy == "delete")
}

/// An integer setting (or its default when unset or unreadable; validation kept it readable).
pub fn integer(configs: &BTreeMap<String, String>, name: &str) -> i64 {
    let default = KNOWN.iter().find(|(known, _, _)| *known == name).and_then(|(_, default, _)| default.parse().ok()).unwrap_or_default();
    configs.get(name).and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// `min.cleanable.dirty.ratio`, or its default.
pub fn min_cleanable_dirty_ratio(configs: &BTreeMap<String, String>) -> f64 {
    configs.get("min.cleanable.dirty.ratio").and_then(|value| value.parse().ok()).unwrap_or(0.5)
}

pub fn max_message_bytes(configs: &BTreeMap<String, String>) -> usize {
    configs.get("max.message.bytes").and_then(|value| value.parse().ok()).unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_unsupported_configs_are_named_in_the_error() {
        let unknown = BTreeMap::from([("retention.days".to_string(), "3".to_string())]);
        assert!(validate(&unknown).unwrap_err().contains("retention.days"));
        let bogus = BTreeMap::from([("cleanup.policy".to_string(), "compress".to_string())]);
        assert!(validate(&bogus).unwrap_err().contains("compact,delete"));
        let good = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        assert!(validate(&good).is_ok());
    }

    #[test]
    fn cleanup_policies_say_whether_compaction_and_retention_apply() {
        let with = |policy: &str| BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())]);
        for (policy, compacted, retained) in
            [("delete", false, true), ("compact", true, false), ("compact,delete", true, true), ("delete, compact", true, true)]
        {
            assert!(validate(&with(policy)).is_ok(), "{policy}");
            assert_eq!(is_compacted(&with(policy)), compacted, "{policy}");
            assert_eq!(is_deleted_by_retention(&with(policy)), retained, "{policy}");
        }
        assert!(!is_compacted(&BTreeMap::new()) && is_deleted_by_retention(&BTreeMap::new()), "the default is delete");
        assert_eq!(integer(&BTreeMap::new(), "delete.retention.ms"), 86_400_000);
        assert!(validate(&BTreeMap::from([("min.cleanable.dirty.ratio".to_string(), "1.5".to_string())])).is_err());
    }
}
