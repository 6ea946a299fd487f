//! RFC 6902 JSON patch (`application/json-patch+json`).

use serde_json::Value;

use crate::error::{invalid, Error, Result};

/// Applies an RFC 6902 patch (an array of operations) to a copy of `doc`.
///
/// A malformed patch is [`Error::InvalidPatch`]; a well-formed one that does not
/// fit the document is [`Error::JsonPatchFailed`], naming the operation.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value> {
    let Value::Array(raw_ops) = patch else {
        return Err(invalid("json patch must be a JSON array of operations"));
    };
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| invalid(format!("malformed json patch: {e}")))?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(|e| {
        let op = raw_ops
            .get(e.operation)
            .and_then(|o| o.get("op"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        Error::JsonPatchFailed {
            index: e.operation,
            op,
            path: e.path.to_string(),
            reason: e.kind.to_string(),
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_operations_in_order() {
        let doc = json!({"data": {"a": "1"}, "list": [1, 2]});
        let patch = json!([
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "replace", "path": "/data/a", "value": "x"},
            {"op": "remove", "path": "/list/0"},
            {"op": "test", "path": "/list/0", "value": 2},
            {"op": "copy", "from": "/data/b", "path": "/c"},
            {"op": "move", "from": "/c", "path": "/d"},
        ]);
        assert_eq!(
            json_patch(&doc, &patch).unwrap(),
            json!({"data": {"a": "x", "b": "2"}, "list": [2], "d": "2"})
        );
    }

    #[test]
    fn errors_name_the_failing_operation() {
        let doc = json!({"a": 1});
        let cases = [
            (
                json!([{"op": "test", "path": "/a", "value": 2}]),
                0,
                "test",
                "/a",
            ),
            (
                json!([{"op": "add", "path": "/b", "value": 1}, {"op": "remove", "path": "/zz"}]),
                1,
                "remove",
                "/zz",
            ),
            (
                json!([{"op": "replace", "path": "/x/y", "value": 1}]),
                0,
                "replace",
                "/x/y",
            ),
        ];
        for (patch, index, op, path) in cases {
            match json_patch(&doc, &patch) {
                Err(Error::JsonPatchFailed {
                    index: i,
                    op: o,
                    path: p,
                    ..
                }) => {
                    assert_eq!((i, o.as_str(), p.as_str()), (index, op, path), "{patch}");
                }
                other => panic!("{patch}: {other:?}"),
            }
        }
        let msg = json_patch(&doc, &json!([{"op": "test", "path": "/a", "value": 2}]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "json patch operation 0 (test /a) failed: value did not match"
        );
    }

    #[test]
    fn malformed_patches_are_invalid() {
        for patch in [
            json!({"op": "add"}),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "/a"}]),
            json!(["add"]),
        ] {
            assert!(
                matches!(json_patch(&json!({}), &patch), Err(Error::InvalidPatch(_))),
                "{patch}"
            );
        }
    }
}
