//! Text for people: condition messages and event notes are one short sentence, so long causes
//! from elsewhere (the apiserver, an S3 server) are cut to fit.

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

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_on_a_character_boundary() {
        assert_eq!(shorten(" fine ", 10), "fine");
        let cut = shorten("éééééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("abcdefghij", 8), "abcde…");
    }
}
