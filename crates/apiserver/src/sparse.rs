//! Decoding only the parts of a stored object that a selector looks at.
//!
//! A watch with a label or field selector must test every event of its kind;
//! parsing each whole object (for pods, kilobytes of nested maps) for every
//! such watcher made selector watches the most expensive thing the server
//! did. [`Paths::sparse`] walks the JSON once and builds a skeleton holding
//! only the requested paths, skipping everything else without allocating.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A set of dotted paths (`metadata.labels`, `spec.nodeName`) as a trie.
#[derive(Debug, Default, Clone)]
pub(crate) struct Paths {
    children: BTreeMap<String, Paths>,
    /// The whole value at this point is wanted.
    whole: bool,
}

impl Paths {
    pub(crate) fn new<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut root = Paths::default();
        for p in paths {
            let mut node = &mut root;
            for part in p.split('.') {
                node = node.children.entry(part.to_string()).or_default();
            }
            node.whole = true;
        }
        root
    }

    /// The skeleton of `json` holding only these paths; `None` if `json`
    /// is not valid JSON.
    pub(crate) fn sparse(&self, json: &[u8]) -> Option<Value> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let v = self.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(v)
    }
}

impl<'de> DeserializeSeed<'de> for &Paths {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.whole {
            return Value::deserialize(d);
        }
        d.deserialize_any(Skeleton(self))
    }
}

/// Keeps the wanted keys of a map; anything else at an inner point is null.
struct Skeleton<'a>(&'a Paths);

impl<'de> Visitor<'de> for Skeleton<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.0.children.get(&key) {
                Some(child) => {
                    let v = map.next_value_seed(child)?;
                    out.insert(key, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_only_the_paths() {
        let obj = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "labels": {"a": "b"}, "annotations": {"x": "y"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
            "status": {"phase": "Running"}
        });
        let paths = Paths::new(["metadata.name", "metadata.labels", "spec.nodeName"]);
        let got = paths
            .sparse(&serde_json::to_vec(&obj).expect("json"))
            .expect("sparse");
        assert_eq!(
            got,
            json!({"metadata": {"name": "p", "labels": {"a": "b"}}, "spec": {"nodeName": "n1"}})
        );
        // Paths through non-objects give null, not an error.
        let got = Paths::new(["spec.nodeName.deeper"])
            .sparse(br#"{"spec": {"nodeName": "n1"}}"#)
            .expect("sparse");
        assert_eq!(got, json!({"spec": {"nodeName": null}}));
        assert!(Paths::new(["a"]).sparse(b"{").is_none());
    }
}
