//! RFC 7386 JSON merge patch (`application/merge-patch+json`).

use serde_json::Value;

use crate::error::{invalid, Result, MAX_DEPTH};

/// Applies an RFC 7386 merge patch to a copy of `doc`: objects merge recursively,
/// `null` deletes a key, anything else (arrays included) replaces.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value> {
    if depth(patch, 0) > MAX_DEPTH {
        return Err(invalid(format!(
            "merge patch nests deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Nesting depth of `v`, stopping early once past the limit.
fn depth(v: &Value, at: usize) -> usize {
    if at > MAX_DEPTH {
        return at;
    }
    match v {
        Value::Object(m) => m.values().map(|c| depth(c, at + 1)).max().unwrap_or(at),
        Value::Array(a) => a.iter().map(|c| depth(c, at + 1)).max().unwrap_or(at),
        _ => at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_cases() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(merge_patch(&doc, &patch).unwrap(), want, "{doc} + {patch}");
        }
    }

    #[test]
    fn absurd_nesting_is_rejected() {
        let mut v = json!(1);
        for _ in 0..(MAX_DEPTH + 5) {
            v = json!({ "a": v });
        }
        assert!(merge_patch(&json!({}), &v).is_err());
    }
}
