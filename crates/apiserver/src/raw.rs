//! Serving stored objects without re-parsing them.
//!
//! Objects are stored as `{"apiVersion":…,"kind":…,"metadata":{…},…}` with
//! `resourceVersion` left out (it is the key's revision). When the stored prefix is
//! exactly that and the apiVersion is the one being served, the reply is the stored
//! bytes with `"resourceVersion":"N"` spliced in as the first metadata field: no
//! JSON parse or serialization per object. Anything else (an older layout, another
//! served version) falls back to a full decode.

use bytes::{BufMut, Bytes, BytesMut};

/// Read one JSON string starting at `at` (which must be `"`); returns the index
/// just after its closing quote and whether it contained escapes.
fn string_end(raw: &[u8], at: usize) -> Option<(usize, bool)> {
    if raw.get(at) != Some(&b'"') {
        return None;
    }
    let mut i = at + 1;
    let mut escaped = false;
    while let Some(&c) = raw.get(i) {
        match c {
            b'\\' => {
                escaped = true;
                i += 2;
            }
            b'"' => return Some((i + 1, escaped)),
            _ => i += 1,
        }
    }
    None
}

/// `raw` starts with `{"apiVersion":"<api_version>","kind":"<kind>","metadata":{`:
/// the index just after that `{`.
fn metadata_body(raw: &[u8], api_version: &str, kind: &str) -> Option<usize> {
    let mut i = 0;
    let expect = |i: &mut usize, lit: &[u8]| -> Option<()> {
        if raw.get(*i..*i + lit.len())? == lit {
            *i += lit.len();
            Some(())
        } else {
            None
        }
    };
    expect(&mut i, b"{\"apiVersion\":")?;
    let (end, esc) = string_end(raw, i)?;
    if esc || raw.get(i + 1..end - 1)? != api_version.as_bytes() {
        return None;
    }
    i = end;
    expect(&mut i, b",\"kind\":")?;
    let (end, esc) = string_end(raw, i)?;
    if esc || raw.get(i + 1..end - 1)? != kind.as_bytes() {
        return None;
    }
    i = end;
    expect(&mut i, b",\"metadata\":{")?;
    Some(i)
}

/// The stored object with its `resourceVersion`, if the fast path applies.
pub fn with_resource_version(
    raw: &[u8],
    revision: u64,
    api_version: &str,
    kind: &str,
) -> Option<Bytes> {
    let at = metadata_body(raw, api_version, kind)?;
    let rv = format!("\"resourceVersion\":\"{revision}\"");
    let mut out = BytesMut::with_capacity(raw.len() + rv.len() + 1);
    out.put_slice(raw.get(..at)?);
    out.put_slice(rv.as_bytes());
    if raw.get(at) != Some(&b'}') {
        out.put_u8(b',');
    }
    out.put_slice(raw.get(at..)?);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn splices_the_resource_version() {
        let raw =
            br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"x":"1"}}"#;
        let out = with_resource_version(raw, 42, "v1", "ConfigMap").unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert_eq!(v["metadata"]["name"], "a");
        assert_eq!(v["data"]["x"], "1");
        let empty = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#;
        let v: Value =
            serde_json::from_slice(&with_resource_version(empty, 7, "v1", "ConfigMap").unwrap())
                .unwrap();
        assert_eq!(v["metadata"]["resourceVersion"], "7");
    }

    #[test]
    fn falls_back_on_any_other_layout() {
        assert!(with_resource_version(
            br#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{}}"#,
            1,
            "v1",
            "ConfigMap"
        )
        .is_none());
        assert!(with_resource_version(
            br#"{"apiVersion":"v2","kind":"ConfigMap","metadata":{}}"#,
            1,
            "v1",
            "ConfigMap"
        )
        .is_none());
        assert!(with_resource_version(
            br#"{"apiVersion":"v1","kind":"Con\"fig","metadata":{}}"#,
            1,
            "v1",
            "Con\"fig"
        )
        .is_none());
        assert!(with_resource_version(
            br#"{"apiVersion":"v1","kind":"ConfigMap","data":{},"metadata":{}}"#,
            1,
            "v1",
            "ConfigMap"
        )
        .is_none());
        assert!(with_resource_version(b"{\"apiVersion\":\"v1", 1, "v1", "ConfigMap").is_none());
        assert!(with_resource_version(b"", 1, "v1", "ConfigMap").is_none());
    }
}
