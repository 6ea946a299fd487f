//! Turning "keys under a prefix, after a cursor" into an indexable SQL range.
//!
//! SQLite compares TEXT with memcmp over UTF-8, which orders strings exactly as
//! Rust's `str` does (by code point), so a prefix is the half-open range
//! `[prefix, prefix_end)` and the index on the key column serves it.

use rusqlite::types::Value;

/// The smallest string greater than every string that starts with `prefix`, or
/// `None` when no such string exists (empty prefix, or only `char::MAX`).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    let next = u32::from(c) + 1;
    // Skip the surrogate block, which holds no chars.
    let next = if next == 0xD800 { 0xE000 } else { next };
    char::from_u32(next)
}

/// A key range as a SQL condition on one column plus its positional parameters.
pub(crate) struct KeyRange {
    pub(crate) condition: String,
    pub(crate) params: Vec<Value>,
}

impl KeyRange {
    /// Keys of `column` that start with `prefix` and sort strictly after `start_after`.
    pub(crate) fn new(column: &str, prefix: &str, start_after: Option<&str>) -> Self {
        let mut params = Vec::with_capacity(2);
        let mut condition = match start_after {
            Some(after) if after >= prefix => {
                params.push(Value::Text(after.to_owned()));
                format!("{column} > ?")
            }
            _ => {
                params.push(Value::Text(prefix.to_owned()));
                format!("{column} >= ?")
            }
        };
        if let Some(end) = prefix_end(prefix) {
            params.push(Value::Text(end));
            condition.push_str(&format!(" AND {column} < ?"));
        }
        KeyRange { condition, params }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_char() {
        assert_eq!(
            prefix_end("/registry/pods/"),
            Some("/registry/pods0".to_owned())
        );
        assert_eq!(prefix_end("a"), Some("b".to_owned()));
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a\u{10FFFF}"), Some("b".to_owned()));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end("x\u{D7FF}"), Some("x\u{E000}".to_owned()));
    }

    #[test]
    fn range_uses_cursor_only_when_inside_prefix() {
        let r = KeyRange::new("k", "/a/", Some("/a/x"));
        assert_eq!(r.condition, "k > ? AND k < ?");
        assert_eq!(
            r.params,
            vec![Value::Text("/a/x".into()), Value::Text("/a0".into())]
        );
        let r = KeyRange::new("k", "/b/", Some("/a/x"));
        assert_eq!(r.condition, "k >= ? AND k < ?");
        let r = KeyRange::new("k", "", None);
        assert_eq!(r.condition, "k >= ?");
    }
}
