//! Label selectors as the HPA sends them in `?labelSelector=` (Go's `labels.Selector.String()`):
//! `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, joined by commas. Pure.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals { key: String, value: String },
    NotEquals { key: String, value: String },
    In { key: String, values: Vec<String> },
    NotIn { key: String, values: Vec<String> },
    Exists { key: String },
    DoesNotExist { key: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("labelSelector {selector:?}: {reason}; example: app.kubernetes.io/instance=agents")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.' | '/'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= 63 && value.chars().all(|character| character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
}

/// Splits at commas outside parentheses.
fn terms(selector: &str) -> Result<Vec<&str>, String> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (index, character) in selector.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.checked_sub(1).ok_or("unbalanced parentheses")?,
            ',' if depth == 0 => {
                terms.push(&selector[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced parentheses".to_string());
    }
    terms.push(&selector[start..]);
    Ok(terms)
}

fn set(key: &str, rest: &str) -> Result<(String, Vec<String>), String> {
    let inner = rest.trim().strip_prefix('(').and_then(|rest| rest.strip_suffix(')')).ok_or("a set must be in parentheses: k in (a,b)")?;
    let values: Vec<String> = inner.split(',').map(|value| value.trim().to_string()).collect();
    if values.iter().any(|value| !valid_value(value)) {
        return Err(format!("invalid value in the set of {key:?}"));
    }
    Ok((key.to_string(), values))
}

fn requirement(term: &str) -> Result<Requirement, String> {
    let term = term.trim();
    if term.is_empty() {
        return Err("empty requirement".to_string());
    }
    let checked = |key: &str| if valid_key(key.trim()) { Ok(key.trim().to_string()) } else { Err(format!("invalid key {:?}", key.trim())) };
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Requirement::DoesNotExist { key: checked(key)? });
    }
    for (operator, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((key, rest)) = term.split_once(operator) {
            let (key, values) = set(&checked(key)?, rest)?;
            return Ok(if notin { Requirement::NotIn { key, values } } else { Requirement::In { key, values } });
        }
    }
    for (operator, negated) in [("!=", true), ("==", false), ("=", false)] {
        if let Some((key, value)) = term.split_once(operator) {
            let (key, value) = (checked(key)?, value.trim().to_string());
            if !valid_value(&value) {
                return Err(format!("invalid value {value:?} for {key:?}"));
            }
            return Ok(if negated { Requirement::NotEquals { key, value } } else { Requirement::Equals { key, value } });
        }
    }
    if term.contains(['<', '>', ' ']) {
        return Err(format!("unsupported requirement {term:?}"));
    }
    Ok(Requirement::Exists { key: checked(term)? })
}

/// Parses a selector; the empty selector selects everything.
pub fn parse(selector: &str) -> Result<Vec<Requirement>, SelectorError> {
    let error = |reason: String| SelectorError { selector: selector.to_string(), reason };
    if selector.trim().is_empty() {
        return Ok(Vec::new());
    }
    terms(selector).map_err(error)?.into_iter().map(|term| requirement(term).map_err(error)).collect()
}

/// Whether a set of labels satisfies every requirement.
pub fn matches(requirements: &[Requirement], labels: &BTreeMap<String, String>) -> bool {
    requirements.iter().all(|requirement| match requirement {
        Requirement::Equals { key, value } => labels.get(key) == Some(value),
        Requirement::NotEquals { key, value } => labels.get(key) != Some(value),
        Requirement::In { key, values } => labels.get(key).is_some_and(|label| values.contains(label)),
        Requirement::NotIn { key, values } => labels.get(key).is_none_or(|label| !values.contains(label)),
        Requirement::Exists { key } => labels.contains_key(key),
        Requirement::DoesNotExist { key } => !labels.contains_key(key),
    })
}

/// The labels the selector pins to one value (`k=v`, or `k in (v)`): the metric's labels.
pub fn pinned_labels(requirements: &[Requirement]) -> BTreeMap<String, String> {
    requirements
        .iter()
        .filter_map(|requirement| match requirement {
            Requirement::Equals { key, value } => Some((key.clone(), value.clone())),
            Requirement::In { key, values } if values.len() == 1 => Some((key.clone(), values[0].clone())),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    #[test]
    fn the_hpa_selector_of_a_pool_parses_to_its_two_labels() {
        let requirements = parse("app.kubernetes.io/instance=agents,app.kubernetes.io/name=floe-agent").unwrap();
        assert_eq!(
            pinned_labels(&requirements),
            labels(&[("app.kubernetes.io/instance", "agents"), ("app.kubernetes.io/name", "floe-agent")])
        );
        assert!(matches(&requirements, &crate::labels::pool_selector("agents")));
        assert!(!matches(&requirements, &crate::labels::pool_selector("other")));
    }

    #[test]
    fn every_operator_of_go_selectors_parses() {
        let requirements = parse("a==1, b!=2,c in (x, y),d notin (z),e,!f").unwrap();
        assert_eq!(
            requirements,
            vec![
                Requirement::Equals { key: "a".into(), value: "1".into() },
                Requirement::NotEquals { key: "b".into(), value: "2".into() },
                Requirement::In { key: "c".into(), values: vec!["x".into(), "y".into()] },
                Requirement::NotIn { key: "d".into(), values: vec!["z".into()] },
                Requirement::Exists { key: "e".into() },
                Requirement::DoesNotExist { key: "f".into() },
            ]
        );
        assert!(matches(&requirements, &labels(&[("a", "1"), ("b", "3"), ("c", "y"), ("e", "")])));
        assert!(!matches(&requirements, &labels(&[("a", "1"), ("b", "3"), ("c", "y"), ("e", ""), ("f", "")])));
        assert!(!matches(&requirements, &labels(&[("a", "1"), ("c", "y"), ("d", "z"), ("e", "")])));
        assert_eq!(pinned_labels(&parse("k in (only)").unwrap()), labels(&[("k", "only")]));
    }

    #[test]
    fn the_empty_selector_selects_everything() {
        assert_eq!(parse("").unwrap(), Vec::new());
        assert!(matches(&[], &labels(&[("a", "b")])));
    }

    #[test]
    fn malformed_selectors_are_refused_with_the_selector_and_an_example() {
        for selector in ["a=b,,c=d", "c in (x", "k in x", "a=b c", "x>1", "=v", "a=b=c"] {
            let error = parse(selector).unwrap_err();
            assert_eq!(error.selector, selector);
            assert!(error.to_string().contains("example: app.kubernetes.io/instance=agents"), "{error}");
        }
    }
}
