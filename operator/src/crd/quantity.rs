//! Kubernetes quantities, parsed just far enough to turn `8Mi` into bytes and to tell that the
//! apiserver's canonical `500m` is the `0.5` we sent (so an unchanged object is not rewritten).

/// The value of a quantity as a rational number scaled by 10^-9 (nano units), enough for CPU
/// millis and byte sizes up to exabytes. `None` if the text is not a quantity.
pub fn nano_units(text: &str) -> Option<i128> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let split = text
        .find(|character: char| !(character.is_ascii_digit() || character == '.' || character == '+' || character == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (negative, number) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number.strip_prefix('+').unwrap_or(number)),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || !whole.chars().chain(fraction.chars()).all(|character| character.is_ascii_digit()) {
        return None;
    }
    let fraction = &fraction[..fraction.len().min(9)];
    let mut value: i128 = whole.parse::<i128>().unwrap_or(0).checked_mul(1_000_000_000)?;
    if !fraction.is_empty() {
        value += fraction.parse::<i128>().ok()? * 10_i128.pow(9 - fraction.len() as u32);
    }
    let multiplier: i128 = match suffix {
        "" => 1_000_000_000,
        "n" => 1,
        "u" => 1_000,
        "m" => 1_000_000,
        "k" => 1_000_000_000_000,
        "M" => 1_000_000_000_000_000,
        "G" => 1_000_000_000_000_000_000,
        "T" => 1_000_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    // Decimal suffixes above are already in nano units; binary ones multiply the base value.
    let value = if matches!(suffix, "Ki" | "Mi" | "Gi" | "Ti" | "Pi") {
        value.checked_mul(multiplier)?
    } else {
        value.checked_mul(multiplier)? / 1_000_000_000
    };
    Some(if negative { -value } else { value })
}

/// Whole bytes of a byte quantity (`8Mi` → 8388608), rounding a fraction up.
pub fn bytes(text: &str) -> Option<u64> {
    let nano = nano_units(text)?;
    if nano < 0 {
        return None;
    }
    u64::try_from((nano + 999_999_999) / 1_000_000_000).ok()
}

/// True when both texts are quantities of the same value (`0.5` and `500m`, `1Gi` and `1024Mi`).
pub fn same_value(left: &str, right: &str) -> bool {
    matches!((nano_units(left), nano_units(right)), (Some(left), Some(right)) if left == right)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_suffixes_become_bytes() {
        assert_eq!(bytes("8Mi"), Some(8 << 20));
        assert_eq!(bytes("50M"), Some(50_000_000));
        assert_eq!(bytes("1.5Ki"), Some(1536));
        assert_eq!(bytes("1048576"), Some(1 << 20));
        assert_eq!(bytes("-1"), None);
        assert_eq!(bytes("8MiB"), None);
        assert_eq!(bytes(""), None);
    }

    #[test]
    fn the_apiservers_canonical_form_equals_what_we_sent() {
        assert!(same_value("0.5", "500m"));
        assert!(same_value("1Gi", "1024Mi"));
        assert!(same_value("2", "2000m"));
        assert!(!same_value("1G", "1Gi"));
        assert!(!same_value("abc", "abc"));
    }
}
