//! Topic configuration keys Floe understands, their defaults, and validation.

use std::collections::BTreeMap;

pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// (name, default value, validator). The order is the order DescribeConfigs lists them in.
type Validator = fn(&str) -> Result<(), String>;

const KNOWN: &[(&str, &str, Validator)] = &[
    ("cleanup.policy", "delete", validate_cleanup_policy),
    ("compression.type", "producer", validate_compression_type),
    ("max.message.bytes", "1048588", validate_positive_integer),
    ("message.timestamp.type", "CreateTime", validate_timestamp_type),
    ("min.insync.replicas", "1", validate_positive_integer),
    ("retention.bytes", "-1", validate_integer_or_minus_one),
    ("retention.ms", "604800000", validate_integer_or_minus_one),
    ("segment.bytes", "1073741824", validate_positive_integer),
    ("segment.ms", "604800000", validate_positive_integer),
];

fn validate_cleanup_policy(value: &str) -> Result<(), String> {
    match value {
        "delete" => Ok(()),
        "compact" | "compact,delete" | "delete,compact" => {
            Err("cleanup.policy=compact is not supported yet; use cleanup.policy=delete".to_string())
        }
        other => Err(format!("cleanup.policy must be delete, got {other:?}")),
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
        let compact = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        assert!(validate(&compact).unwrap_err().contains("not supported"));
        let good = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        assert!(validate(&good).is_ok());
    }
}
