//! The console's HTML building blocks: escaping, the page frame with its inline style sheet,
//! tables and number formats. Pure string building, no I/O.
//!
//! Everything a user can name (topics, groups, client ids) goes through [`escape`] before it is
//! written into a page: the console serves a fixed style sheet and no scripts, and an escaped name
//! can neither add markup nor leave an attribute.

use std::fmt::Write;

/// `text` safe to place in element content and in a double- or single-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// `segment` safe inside a URL path: everything but unreserved characters percent-encoded, so a
/// topic named `a/b` or `x?y` links to its own page.
pub fn path_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2430;background:#f5f7fa}\
header{background:#123c5a;color:#fff;padding:12px 24px;display:flex;align-items:center;gap:28px}\
header b{font-size:20px;letter-spacing:.5px}header a{color:#d6e6f5;text-decoration:none;font-size:15px}\
header a.current{color:#fff;border-bottom:2px solid #6fc3ff}\
main{padding:16px 24px;max-width:1200px}h1{font-size:22px;margin:8px 0 14px}h2{font-size:17px;margin:22px 0 8px}\
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:420px}\
th,td{padding:6px 12px;border-bottom:1px solid #e3e8ef;text-align:left;font-size:14px}\
th{background:#eef2f7;font-weight:600}td.number,th.number{text-align:right;font-variant-numeric:tabular-nums}\
.cards{display:flex;gap:14px;flex-wrap:wrap}.card{background:#fff;padding:10px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:120px}\
.card .value{font-size:22px;font-weight:600}.card .label{font-size:12px;color:#5b6676;text-transform:uppercase}\
.ok{color:#1b7a3a}.bad{color:#b3261e;font-weight:600}.muted{color:#7a8594}a{color:#0b5cad}\
footer{padding:12px 24px;color:#7a8594;font-size:12px}";

/// The console's sections, in header order: (path, title).
const SECTIONS: [(&str, &str); 3] = [("/", "Overview"), ("/topics", "Topics"), ("/groups", "Groups")];

/// A whole page: `title` (plain text, escaped here), the header with `current` highlighted, and
/// `body` (HTML, already escaped by its builder).
pub fn page(title: &str, current: &str, body: &str) -> String {
    let mut html = String::with_capacity(body.len() + 4096);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · Floe console</title>\
         <meta http-equiv=\"refresh\" content=\"10\"><style>{STYLE}</style></head><body><header><b>Floe</b>",
        escape(title)
    );
    for (path, name) in SECTIONS {
        let class = if path == current { " class=\"current\"" } else { "" };
        let _ = write!(html, "<a href=\"{path}\"{class}>{name}</a>");
    }
    let _ = write!(
        html,
        "</header><main><h1>{}</h1>{body}</main><footer>Floe {} · read-only console · refreshes every 10 s</footer></body></html>",
        escape(title),
        escape(crate::VERSION)
    );
    html
}

/// A cell of a table: its HTML and whether it is a number (right-aligned).
pub enum Cell {
    Text(String),
    Number(String),
    Html(String),
}

impl Cell {
    pub fn text(text: impl AsRef<str>) -> Self {
        Cell::Text(text.as_ref().to_string())
    }

    pub fn number(value: impl ToString) -> Self {
        Cell::Number(value.to_string())
    }

    /// A link to `href` (already a path built from [`path_segment`]s) showing `text`.
    pub fn link(href: &str, text: &str) -> Self {
        Cell::Html(format!("<a href=\"{}\">{}</a>", escape(href), escape(text)))
    }
}

/// A table with `headers`; `numeric` headers are right-aligned like their cells. `empty` is shown
/// in place of a table without rows.
pub fn table(headers: &[&str], rows: &[Vec<Cell>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{}</p>", escape(empty));
    }
    let mut html = String::from("<table><thead><tr>");
    let numeric: Vec<bool> = rows[0].iter().map(|cell| matches!(cell, Cell::Number(_))).collect();
    for (index, header) in headers.iter().enumerate() {
        let class = if numeric.get(index).copied().unwrap_or(false) { " class=\"number\"" } else { "" };
        let _ = write!(html, "<th{class}>{}</th>", escape(header));
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            match cell {
                Cell::Text(text) => {
                    let _ = write!(html, "<td>{}</td>", escape(text));
                }
                Cell::Number(text) => {
                    let _ = write!(html, "<td class=\"number\">{}</td>", escape(text));
                }
                Cell::Html(inner) => {
                    let _ = write!(html, "<td>{inner}</td>");
                }
            }
        }
        html.push_str("</tr>");
    }
    html.push_str("</tbody></table>");
    html
}

/// A row of headline figures: (label, value) pairs, both plain text.
pub fn cards(figures: &[(&str, String)]) -> String {
    let mut html = String::from("<div class=\"cards\">");
    for (label, value) in figures {
        let _ = write!(
            html,
            "<div class=\"card\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
            escape(value),
            escape(label)
        );
    }
    html.push_str("</div>");
    html
}

/// A byte count in binary units: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut scaled = value.max(0.0);
    let mut unit = 0;
    while scaled >= 1024.0 && unit < UNITS.len() - 1 {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{scaled:.0} {}", UNITS[0])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

/// A duration in seconds, at a precision a person reads: `0 s`, `4.2 s`, `3 min 5 s`, `2 h 10 min`.
pub fn seconds(value: f64) -> String {
    let value = value.max(0.0);
    if value < 60.0 {
        if value == 0.0 {
            "0 s".to_string()
        } else {
            format!("{value:.1} s")
        }
    } else if value < 3600.0 {
        format!("{} min {} s", (value / 60.0) as u64, (value % 60.0) as u64)
    } else {
        format!("{} h {} min", (value / 3600.0) as u64, ((value % 3600.0) / 60.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup_and_no_way_out_of_an_attribute() {
        let name = "<script>alert('x')</script>&\"quoted\"";
        let escaped = escape(name);
        assert_eq!(escaped, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;quoted&quot;");
        for forbidden in ['<', '>', '"', '\''] {
            assert!(!escaped.contains(forbidden), "{escaped}");
        }
    }

    #[test]
    fn a_table_escapes_its_cells_and_link_targets() {
        let rows = vec![vec![Cell::link(&format!("/topics/{}", path_segment("a/<b>")), "a/<b>"), Cell::number(3)]];
        let html = table(&["Topic", "Partitions"], &rows, "none");
        assert!(html.contains("<a href=\"/topics/a%2F%3Cb%3E\">a/&lt;b&gt;</a>"), "{html}");
        assert!(html.contains("<th class=\"number\">Partitions</th>") && html.contains("<td class=\"number\">3</td>"), "{html}");
        assert!(!html.contains("<b>"));
    }

    #[test]
    fn an_empty_table_says_so_instead() {
        assert_eq!(table(&["Group"], &[], "no <groups> yet"), "<p class=\"muted\">no &lt;groups&gt; yet</p>");
    }

    #[test]
    fn the_page_title_is_escaped_and_the_current_section_marked() {
        let html = page("Topic <x>", "/topics", "<p>body</p>");
        assert!(html.contains("<h1>Topic &lt;x&gt;</h1>"));
        assert!(html.contains("<a href=\"/topics\" class=\"current\">Topics</a>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn sizes_and_durations_read_like_a_person_writes_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert_eq!(seconds(0.0), "0 s");
        assert_eq!(seconds(4.25), "4.2 s");
        assert_eq!(seconds(185.0), "3 min 5 s");
        assert_eq!(seconds(7800.0), "2 h 10 min");
    }
}
