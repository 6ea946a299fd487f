//! Finding the input fields a kind's schema does not know, for
//! `fieldValidation=Strict|Warn`.
//!
//! Decoding into the k8s-openapi type drops unknown fields and re-encoding keeps every
//! known one, so an input member missing from the round trip is unknown. Map-typed
//! fields (labels, `data`) survive the round trip whole, so their keys never show up.

use serde_json::Value;

/// Paths (`.spec.template.spec.containers[0].bogus`) of members of `input` that are
/// absent from `round_trip`. `input` must already have its `null` members removed.
pub(crate) fn diff(input: &Value, round_trip: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(input, round_trip, &mut String::new(), &mut out);
    out
}

fn walk(input: &Value, known: &Value, path: &mut String, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(inp), Value::Object(kn)) => {
            for (key, value) in inp {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                match kn.get(key) {
                    Some(k) => walk(value, k, path, out),
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(inp), Value::Array(kn)) => {
            for (i, (value, k)) in inp.iter().zip(kn).enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(value, k, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reports_missing_members_with_kubernetes_paths() {
        let input = json!({"spec": {"foo": 1, "containers": [{"name": "a", "bogus": true}], "x": {"y": 1}}});
        let known = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            diff(&input, &known),
            vec![".spec.foo", ".spec.containers[0].bogus", ".spec.x"]
        );
    }
}
